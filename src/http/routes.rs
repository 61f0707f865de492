//! Path → handler for everything hyper answers: `/status-json.xsl`, `/admin/*`, `/api/*`,
//! the Shoutcast status pages (`/7.html`, `/7.xsl`, `/stats`), playlists, `/healthz`, `/readyz`, `/metrics` and the small index page (a mount's `GET`, `HEAD`
//! and probe are answered before hyper, by `listener.rs`). Every response carries the CORS
//! header web players need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::admin_auth::LoginThrottle;
use super::head::{CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS, SERVER};
use super::{Body, admin, api};
use super::{shoutcast, status};
use crate::live::session::LiveDesk;
use crate::station::Station;

/// Answers one request from `peer`. A failed admin login is answered late; the wait is a
/// timer, so it holds neither a worker nor any lock.
pub async fn handle(
    req: Request<hyper::body::Incoming>,
    station: &Arc<Station>,
    logins: &LoginThrottle,
    live: &LiveDesk,
    peer: SocketAddr,
) -> Response<Body> {
    if req.uri().path().starts_with("/hls/") && matches!(*req.method(), Method::GET | Method::HEAD)
    {
        let (path, query) = (req.uri().path(), req.uri().query().unwrap_or(""));
        let header = |name| req.headers().get(name).map_or(&b""[..], |v| v.as_bytes());
        let gzip = super::hls::takes_gzip(header(header::ACCEPT_ENCODING));
        let agent = header(header::USER_AGENT);
        let prepared = super::hls::prepare(&station.hls, path, query, gzip, agent, peer.ip());
        let head_only = req.method() == Method::HEAD;
        drop(req);
        let mut resp = match prepared {
            Some(p) => p.answer().await,
            None => not_found(),
        };
        common_headers(resp.headers_mut());
        if head_only {
            *resp.body_mut() = Body::empty();
        }
        return resp;
    }
    let (resp, delay) = respond(req, station, logins, live, peer);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    resp
}

fn respond(
    req: Request<hyper::body::Incoming>,
    station: &Arc<Station>,
    logins: &LoginThrottle,
    live: &LiveDesk,
    peer: SocketAddr,
) -> (Response<Body>, Duration) {
    let mut delay = Duration::ZERO;
    let path = req.uri().path();
    let mut resp = if req.method() == Method::OPTIONS {
        preflight()
    } else if station.mounts.find(path).is_some() {
        match *req.method() {
            Method::GET | Method::HEAD => reconnect(),
            _ => method_not_allowed("GET, HEAD, OPTIONS"),
        }
    } else {
        match (req.method(), path) {
            (&Method::GET | &Method::HEAD, "/status-json.xsl") => {
                no_store(json(status::icestats(station, host(&req))))
            }
            (&Method::GET, p) if p.starts_with("/admin/") => {
                let answer = admin::handle(&req, station, logins, live, &host(&req), peer);
                delay = answer.delay;
                no_store(answer.response)
            }
            (&Method::GET, "/admin.cgi") => {
                let answer = admin::shoutcast(&req, station, live, peer);
                delay = answer.delay;
                no_store(answer.response)
            }
            (&Method::GET | &Method::HEAD, "/7.html" | "/7.xsl" | "/stats") => {
                let page = if path == "/stats" {
                    shoutcast::Page::Stats
                } else {
                    shoutcast::Page::Seven
                };
                match shoutcast::answer(station, page, req.uri().query().unwrap_or("")) {
                    Some((content_type, body)) => {
                        no_store(text(StatusCode::OK, content_type, body))
                    }
                    None => not_found(),
                }
            }
            (&Method::GET | &Method::HEAD, "/api/nowplaying") => {
                no_store(json(api::nowplaying(station, &host(&req))))
            }
            (&Method::GET, "/api/events") => event_stream(station, host(&req)),
            (&Method::GET | &Method::HEAD, p) if playlist_target(station, p).is_some() => {
                let (mount, kind) = playlist_target(station, p).unwrap_or_default();
                match api::playlist(station, mount, kind, &host(&req)) {
                    Some((content_type, body)) => {
                        no_store(text(StatusCode::OK, content_type, body))
                    }
                    None => not_found(),
                }
            }
            (&Method::GET | &Method::HEAD, "/healthz") => health(station),
            (&Method::GET | &Method::HEAD, "/readyz") => ready(station),
            (&Method::GET | &Method::HEAD, "/metrics") => {
                station
                    .metrics
                    .ready
                    .set(i64::from(station.readiness().is_ok()));
                // HLS sessions expire by time, not by an event: they are counted at the scrape.
                for m in station.mounts.iter() {
                    m.hls_listeners();
                }
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    station.metrics.render(),
                )
            }
            (&Method::GET | &Method::HEAD, "/") => index(station),
            (&Method::GET | &Method::HEAD, _) => not_found(),
            _ => method_not_allowed("GET, HEAD, OPTIONS"),
        }
    };
    common_headers(resp.headers_mut());
    if req.method() == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    (resp, delay)
}

/// A `GET` or `HEAD` of a mount that reached hyper. The accept path answers those itself
/// (`request::dispatch`, then `listener.rs`), on a fresh connection: hyper connections are not
/// kept alive. Reaching here means a request that path could not parse but hyper could; the
/// player retries on a new connection.
fn reconnect() -> Response<Body> {
    let mut retry = icecast_error(StatusCode::SERVICE_UNAVAILABLE, "reconnect to listen\n");
    retry
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    retry
}

/// Headers on every response: who we are, and that any page may play or read us.
pub(super) fn common_headers(h: &mut HeaderMap) {
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// `/radio.mp3.m3u` → (`/radio.mp3`, `m3u`) when the mount exists.
fn playlist_target<'a>(station: &Station, path: &'a str) -> Option<(&'a str, &'a str)> {
    let (mount, ext) = path.rsplit_once('.')?;
    (matches!(ext, "m3u" | "pls" | "xspf") && station.mounts.find(mount).is_some())
        .then_some((mount, ext))
}

fn event_stream(station: &Arc<Station>, host: String) -> Response<Body> {
    let mut resp = Response::new(Body::Events(api::events(station, host)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // Host-dependent (stream URLs), like the documents below.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    resp
}

/// For answers that are built from the `Host` the client used (stream URLs) or that change
/// every second: a shared cache must not hand one client's answer to another.
fn no_store(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn not_found() -> Response<Body> {
    icecast_error(StatusCode::NOT_FOUND, "not found\n")
}

/// An error for a player, in the shape Icecast 2.4 answers one: HTTP/1.0 and its header order
/// (`Server`, `Connection: Close`, `Date`, `Content-Type`, the no-cache trio, then the CORS
/// header), so a player probing a mount sees the same whichever server it talks to. hyper keeps
/// the order the headers are inserted in and title-cases them as Icecast writes these names;
/// `common_headers` later replaces `Server` and the CORS header in place.
fn icecast_error(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    *resp.version_mut() = Version::HTTP_10;
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    h.insert(header::CONNECTION, HeaderValue::from_static("Close"));
    if let Ok(date) = HeaderValue::from_str(&crate::dates::http_date(std::time::SystemTime::now()))
    {
        h.insert(header::DATE, date);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Mon, 26 Jul 1997 05:00:00 GMT"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn preflight() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    cors_headers(h);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    resp
}

/// What a web player may send and what its scripts may read of a stream response.
fn cors_headers(h: &mut http::HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed\n".into(),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

fn health(station: &Station) -> Response<Body> {
    if let Some(stage) = station.health.watchdog().dead() {
        // The process is on its way out: the orchestrator should replace it.
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("the {stage} stopped\n"),
        )
    } else if station.health.is_draining() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "draining\n".into(),
        )
    } else {
        text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
    }
}

fn ready(station: &Station) -> Response<Body> {
    match station.readiness() {
        Ok(()) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        ),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("not ready:\n{}\n", why.join("\n")),
        ),
    }
}

/// The listener page, embedded in the binary: no files to deploy, no external assets.
const PAGE: &str = include_str!("page.html");

fn index(station: &Station) -> Response<Body> {
    let s = &station.config.station;
    let e = super::escape::xml;
    let page = PAGE
        .replace("{{STATION_NAME}}", &e(&s.name))
        .replace("{{STATION_DESCRIPTION}}", &e(&s.description))
        .replace("{{STATION_GENRE}}", &e(&s.genre))
        .replace("{{STATION_URL}}", &e(&s.url))
        .replace("{{NOW_TITLE}}", &e(station.on_air.title().text()));
    text(StatusCode::OK, "text/html; charset=utf-8", page)
}

fn json(value: serde_json::Value) -> Response<Body> {
    text(
        StatusCode::OK,
        "application/json; charset=utf-8",
        value.to_string(),
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The Host the client used, for URLs in responses.
fn host(req: &Request<hyper::body::Incoming>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost")
        .to_string()
}
