//! Path → handler: mounts, `/status-json.xsl`, `/healthz`, `/readyz`, `/metrics` and the small
//! index page. Every response carries the CORS headers web players need.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::listener::{ListenerRequest, ListenerStream};
use super::status;
use super::{Body, Conn, admin, api};
use crate::ring::Next;
use crate::station::{Mount, Station};

/// Headers a browser player may send, and the ICY headers its scripts may read.
const CORS_ALLOW_HEADERS: &str = "Origin, Accept, Content-Type, Icy-MetaData, Range";
const CORS_EXPOSE_HEADERS: &str =
    "Icy-MetaInt, Icy-Br, Icy-Description, Icy-Genre, Icy-Name, Icy-Pub, Icy-Url, Ice-Audio-Info";
const SERVER: &str = concat!("onair/", env!("CARGO_PKG_VERSION"));
/// Largest `Range` probe answered with 206 (Safari asks for `bytes=0-1`).
const MAX_PROBE_BYTES: u64 = 64 * 1024;

/// Answers one request.
pub fn handle(
    req: Request<hyper::body::Incoming>,
    station: &Arc<Station>,
    conn: &Conn,
) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path();
    let mut resp = if req.method() == Method::OPTIONS {
        preflight()
    } else if let Some(mount) = station.mount(path) {
        match *req.method() {
            Method::GET | Method::HEAD => mount_response(&req, station, mount, conn, started),
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
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if req.method() == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    resp
}

fn mount_response(
    req: &Request<hyper::body::Incoming>,
    station: &Arc<Station>,
    mount: &Arc<Mount>,
    conn: &Conn,
    started: Instant,
) -> Response<Body> {
    let wants_icy = req
        .headers()
        .get("icy-metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1");
    let probe = range_probe(req);
    let mut resp = Response::new(Body::empty());
    // Icecast answers listeners in HTTP/1.0 style: no length, no chunking, the end of the stream is
    // the end of the connection. Every player copes with that; some choke on chunked audio.
    *resp.version_mut() = Version::HTTP_10;
    stream_headers(&mut resp, station, mount, wants_icy && probe.is_none());
    if req.method() == Method::HEAD {
        return resp;
    }
    if let Some(len) = probe {
        return probe_response(resp, mount, len);
    }
    let header = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let request = ListenerRequest {
        request_line: format!(
            "{} {} {:?}",
            req.method(),
            req.uri()
                .path_and_query()
                .map_or(req.uri().path(), |p| p.as_str()),
            req.version()
        ),
        user_agent: header(header::USER_AGENT),
        referer: header(header::REFERER),
        icy: wants_icy,
        connected: started,
    };
    let Some(stream) = ListenerStream::admit(mount, station, conn, request) else {
        station
            .metrics
            .listener_disconnects
            .with_label_values(&[&mount.config.path, crate::metrics::Disconnect::Full.label()])
            .inc();
        tracing::warn!(mount = %mount.config.path, listener = %conn.peer, limit = mount.config.max_listeners, "mount full; refusing listener");
        let mut full = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "mount is full, retry later\n".into(),
        );
        full.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return full;
    };
    *resp.body_mut() = Body::Stream(Box::new(stream));
    resp
}

fn stream_headers(resp: &mut Response<Body>, station: &Station, mount: &Mount, icy: bool) {
    let s = &station.config.station;
    let audio = station.config.audio;
    let m = &mount.config;
    let h = resp.headers_mut();
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

/// `Range: bytes=0-N` with a small N: a media probe (Safari), not a listener.
fn range_probe(req: &Request<hyper::body::Incoming>) -> Option<u64> {
    let v = req.headers().get(header::RANGE)?.to_str().ok()?;
    let (start, end) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start == 0 && end < MAX_PROBE_BYTES).then_some(end + 1)
}

fn probe_response(mut resp: Response<Body>, mount: &Arc<Mount>, len: u64) -> Response<Body> {
    let mut cursor = mount.ring.cursor(len as usize * 2 + 8192);
    let mut frames = Vec::new();
    let mut data = Vec::with_capacity(len as usize);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while (data.len() as u64) < len {
        match cursor.poll_batch(&mut cx, &mut frames, 16) {
            std::task::Poll::Ready(Next::Frames) => {
                for f in frames.drain(..) {
                    data.extend_from_slice(&f.data);
                }
            }
            _ => break,
        }
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
    let e = status::escape_html;
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
