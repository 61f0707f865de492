//! Path → handler: mounts, `/status-json.xsl`, `/healthz`, `/readyz`, `/metrics` and the small
//! index page. Every response carries the CORS headers web players need.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::request::range_probe;
use super::status;
use super::{Body, admin, api};
use crate::ring::Window;
use crate::station::{Mount, Station};

/// Headers a browser player may send, and the ICY headers its scripts may read.
const CORS_ALLOW_HEADERS: &str = "Origin, Accept, Content-Type, Icy-MetaData, Range";
const CORS_EXPOSE_HEADERS: &str =
    "Icy-MetaInt, Icy-Br, Icy-Description, Icy-Genre, Icy-Name, Icy-Pub, Icy-Url, Ice-Audio-Info";
const SERVER: &str = concat!("onair/", env!("CARGO_PKG_VERSION"));

/// Answers one request.
pub fn handle(req: Request<hyper::body::Incoming>, station: &Arc<Station>) -> Response<Body> {
    let path = req.uri().path();
    let mut resp = if req.method() == Method::OPTIONS {
        preflight()
    } else if let Some(mount) = station.mount(path) {
        match *req.method() {
            Method::GET | Method::HEAD => mount_response(&req, station, mount),
            _ => method_not_allowed("GET, HEAD, OPTIONS"),
        }
    } else {
        match (req.method(), path) {
            (&Method::GET | &Method::HEAD, "/status-json.xsl") => {
                json(status::icestats(station, host(&req)))
            }
            (&Method::GET, p) if p.starts_with("/admin/") => {
                admin::handle(&req, station, &host(&req))
            }
            (&Method::GET | &Method::HEAD, "/api/nowplaying") => {
                let mut r = json(api::nowplaying(station, &host(&req)));
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                r
            }
            (&Method::GET, "/api/events") => event_stream(station, host(&req)),
            (&Method::GET | &Method::HEAD, p) if playlist_target(station, p).is_some() => {
                let (mount, kind) = playlist_target(station, p).unwrap_or_default();
                match api::playlist(station, mount, kind, &host(&req)) {
                    Some((content_type, body)) => text(StatusCode::OK, content_type, body),
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
    resp
}

fn mount_response(
    req: &Request<hyper::body::Incoming>,
    station: &Station,
    mount: &Arc<Mount>,
) -> Response<Body> {
    let wants_icy = req
        .headers()
        .get("icy-metadata")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    let probe = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| range_probe(v.as_bytes()));
    let mut resp = Response::new(Body::empty());
    // Icecast answers listeners in HTTP/1.0 style: no length, no chunking, the end of the stream is
    // the end of the connection. Every player copes with that; some choke on chunked audio.
    *resp.version_mut() = Version::HTTP_10;
    stream_headers(
        resp.headers_mut(),
        station,
        mount,
        wants_icy && probe.is_none(),
    );
    if req.method() == Method::HEAD {
        return resp;
    }
    if let Some(len) = probe {
        return probe_response(resp, mount, len);
    }
    // Listeners are answered by the accept path before hyper sees them (`request::dispatch`),
    // on a fresh connection: hyper connections are not kept alive. Reaching here means a request
    // that path could not parse but hyper could; the player retries on a new connection.
    let mut retry = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        "reconnect to listen\n".into(),
    );
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

/// The headers of a listener's response (and of a `HEAD` of a mount).
pub(super) fn stream_headers(h: &mut HeaderMap, station: &Station, mount: &Mount, icy: bool) {
    let s = &station.config.station;
    let audio = station.config.audio;
    let m = &mount.config;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mount.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Mon, 26 Jul 1997 05:00:00 GMT"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    cors_headers(h);
    for (name, value) in [
        ("icy-name", s.name.as_str()),
        ("icy-description", s.description.as_str()),
        ("icy-genre", s.genre.as_str()),
        ("icy-url", s.url.as_str()),
    ] {
        // Names may be UTF-8; HTTP allows those bytes as obs-text and players show them.
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    h.insert(
        HeaderName::from_static("icy-pub"),
        HeaderValue::from_static("0"),
    );
    h.insert(
        HeaderName::from_static("icy-br"),
        HeaderValue::from(m.bitrate_kbps),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "channels={};samplerate={};bitrate={}",
        audio.channels, audio.sample_rate, m.bitrate_kbps
    )) {
        h.insert(HeaderName::from_static("ice-audio-info"), v);
    }
    if icy {
        h.insert(
            HeaderName::from_static("icy-metaint"),
            HeaderValue::from(m.icy_metaint),
        );
    }
}

fn probe_response(mut resp: Response<Body>, mount: &Arc<Mount>, len: u64) -> Response<Body> {
    let start = mount.ring.burst_start(len as usize * 2 + 8192);
    let mut window = Window::starting_at(start);
    window.sync(&mount.ring);
    let mut data = Vec::with_capacity(len as usize);
    let mut seq = start;
    while let Some(f) = window.get(seq)
        && (data.len() as u64) < len
    {
        data.extend_from_slice(&f.data);
        seq += 1;
    }
    data.truncate(len as usize);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let last = data.len().saturating_sub(1);
    if let Ok(v) = HeaderValue::from_str(&format!("bytes 0-{last}/*")) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
    *resp.body_mut() = Body::from(bytes::Bytes::from(data));
    resp
}

/// `/radio.mp3.m3u` → (`/radio.mp3`, `m3u`) when the mount exists.
fn playlist_target<'a>(station: &Station, path: &'a str) -> Option<(&'a str, &'a str)> {
    let (mount, ext) = path.rsplit_once('.')?;
    (matches!(ext, "m3u" | "pls" | "xspf") && station.mount(mount).is_some())
        .then_some((mount, ext))
}

fn event_stream(station: &Arc<Station>, host: String) -> Response<Body> {
    let mut resp = Response::new(Body::Events(api::events(station, host)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    resp
}

fn not_found() -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found\n".into(),
    )
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
    if station.is_draining() {
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
        .replace(
            "{{NOW_TITLE}}",
            &e(station.now_playing.borrow().title.text()),
        );
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
