//! Icecast's admin interface, behind HTTP Basic auth as `[server] admin_user` with
//! `ONAIR_ADMIN_PASSWORD`: `/admin/stats`, `/admin/listclients`, `/admin/listmounts`,
//! `/admin/metadata`, `/admin/killclient`, and our own `/admin/next`. Answers are Icecast's XML, or
//! JSON when the client sends `Accept: application/json`. Panels and scripts written for Icecast
//! work unchanged.

use std::collections::HashMap;
use std::fmt::Write as _;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::Body;
use super::escape::xml as escape_xml;
use super::icy::clean_title;
use super::status::{self, Detail};
use crate::station::{Mount, Station};

/// The realm Icecast uses; some clients match on it.
const REALM: &str = "Basic realm=\"Icecast2 Server\"";

/// Answers a request under `/admin/`.
pub fn handle<B>(req: &Request<B>, station: &Station, host: &str) -> Response<Body> {
    let want_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let reply = Reply { json: want_json };
    let Some(password) = station.config.server.admin_password.as_deref() else {
        return reply.plain(
            StatusCode::FORBIDDEN,
            "admin interface disabled: set ONAIR_ADMIN_PASSWORD to enable it\n",
        );
    };
    if !authorized(req, &station.config.server.admin_user, password) {
        let mut resp = reply.plain(StatusCode::UNAUTHORIZED, "authentication required\n");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
        return resp;
    }
    let params = query(req.uri().query().unwrap_or(""));
    let mount = || -> Result<&std::sync::Arc<Mount>, (StatusCode, &'static str)> {
        let path = params
            .get("mount")
            .ok_or((StatusCode::BAD_REQUEST, "mount parameter required"))?;
        station
            .mount(path)
            .ok_or((StatusCode::NOT_FOUND, "Source does not exist"))
    };
    let result = match req.uri().path() {
        "/admin/stats" | "/admin/stats.xml" => Ok(stats(station, host, reply)),
        "/admin/listmounts" => Ok(listmounts(station, reply)),
        "/admin/listclients" => mount().map(|m| listclients(m, reply)),
        "/admin/killclient" => mount().map(|m| {
            match params.get("id").and_then(|id| id.parse::<u64>().ok()) {
                Some(id) if m.kick(id) => {
                    tracing::info!(mount = %m.config.path, client = id, "operator disconnected a listener");
                    reply.result(StatusCode::OK, &format!("Client {id} removed"), 1)
                }
                Some(_) => reply.result(StatusCode::NOT_FOUND, "Client not found", 0),
                None => reply.result(StatusCode::BAD_REQUEST, "id parameter required", 0),
            }
        }),
        "/admin/metadata" | "/admin/metadata.xml" => {
            mount().map(|_| metadata(station, &params, reply))
        }
        "/admin/next" => mount().map(|_| {
            station.request_skip();
            reply.result(StatusCode::OK, "Skipping to the next track", 1)
        }),
        _ => Ok(reply.result(StatusCode::NOT_FOUND, "unknown admin command", 0)),
    };
    result.unwrap_or_else(|(status, message)| reply.result(status, message, 0))
}

/// Compares credentials in time independent of where they differ.
fn authorized<B>(req: &Request<B>, user: &str, password: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| base64_decode(b64.trim()))
    else {
        return false;
    };
    let expected = format!("{user}:{password}");
    constant_time_eq(&given, expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// Decodes `a=b&c=d` with percent-escapes and '+' as space.
fn query(q: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn metadata(station: &Station, params: &HashMap<String, String>, reply: Reply) -> Response<Body> {
    if params.get("mode").map(String::as_str) != Some("updinfo") {
        return reply.result(StatusCode::BAD_REQUEST, "mode=updinfo required", 0);
    }
    // Cleaned as the title will be, so a value of only control characters counts as missing.
    let non_empty = |k: &str| {
        params
            .get(k)
            .map(|v| clean_title(v))
            .filter(|v| !v.is_empty())
    };
    let title = match (non_empty("song"), non_empty("artist"), non_empty("title")) {
        (Some(song), _, _) => song,
        (None, Some(artist), Some(title)) => format!("{artist} - {title}"),
        (None, None, Some(title)) => title,
        (None, Some(artist), None) => artist,
        (None, None, None) => {
            return reply.result(
                StatusCode::BAD_REQUEST,
                "song, or artist and title, required",
                0,
            );
        }
    };
    tracing::info!(title = ?title, "metadata update from the admin interface");
    station.override_title(title);
    reply.result(StatusCode::OK, "Metadata update successful", 1)
}

fn stats(station: &Station, host: &str, reply: Reply) -> Response<Body> {
    let connections: u64 = station
        .mounts
        .iter()
        .map(|m| {
            station
                .metrics
                .listener_connections
                .with_label_values(&[&m.config.path])
                .get()
        })
        .sum();
    let global: Vec<(&str, Value)> = vec![
        ("admin", json!("")),
        ("host", json!(status::host_without_port(host))),
        ("listener_connections", json!(connections)),
        ("listeners", json!(station.total_listeners())),
        ("location", json!("")),
        ("server_id", json!(status::SERVER_ID)),
        ("server_start", json!(status::rfc822(station.started))),
        (
            "server_start_iso8601",
            json!(status::iso8601(station.started)),
        ),
        ("sources", json!(station.mounts.len())),
    ];
    if reply.json {
        let mut o: serde_json::Map<String, Value> = global
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let sources: Vec<Value> = station
            .mounts
            .iter()
            .map(|m| {
                let mut s: serde_json::Map<String, Value> =
                    status::source_fields(station, m, host, Detail::Admin)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                s.insert("mount".into(), json!(m.config.path));
                Value::Object(s)
            })
            .collect();
        o.insert("source".into(), Value::Array(sources));
        return reply.body(StatusCode::OK, json!({ "icestats": o }).to_string());
    }
    let mut x = String::from("<?xml version=\"1.0\"?>\n<icestats>");
    push_fields(&mut x, &global);
    for m in &station.mounts {
        let _ = write!(x, "<source mount=\"{}\">", escape_xml(&m.config.path));
        push_fields(
            &mut x,
            &status::source_fields(station, m, host, Detail::Admin),
        );
        x.push_str("</source>");
    }
    x.push_str("</icestats>\n");
    reply.body(StatusCode::OK, x)
}

fn listclients(m: &Mount, reply: Reply) -> Response<Body> {
    let clients = m.clients();
    if reply.json {
        let list: Vec<Value> = clients
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "ip": c.addr.ip().to_string(),
                    "user_agent": &*c.user_agent,
                    "connected": c.connected.elapsed().as_secs(),
                })
            })
            .collect();
        return reply.body(
            StatusCode::OK,
            json!({ "mount": m.config.path, "listeners": clients.len(), "clients": list })
                .to_string(),
        );
    }
    let mut x = format!(
        "<?xml version=\"1.0\"?>\n<icestats><source mount=\"{}\"><Listeners>{n}</Listeners><listeners>{n}</listeners>",
        escape_xml(&m.config.path),
        n = clients.len()
    );
    for c in &clients {
        let _ = write!(
            x,
            "<listener id=\"{id}\"><ID>{id}</ID><IP>{ip}</IP><UserAgent>{ua}</UserAgent><Connected>{secs}</Connected></listener>",
            id = c.id,
            ip = c.addr.ip(),
            ua = escape_xml(&c.user_agent),
            secs = c.connected.elapsed().as_secs()
        );
    }
    x.push_str("</source></icestats>\n");
    reply.body(StatusCode::OK, x)
}

fn listmounts(station: &Station, reply: Reply) -> Response<Body> {
    let uptime = |m: &Mount| m.started.elapsed().map_or(0, |d| d.as_secs());
    if reply.json {
        let mounts: Vec<Value> = station
            .mounts
            .iter()
            .map(|m| {
                json!({
                    "mount": m.config.path,
                    "listeners": m.listeners(),
                    "connected": uptime(m),
                    "content_type": m.content_type,
                })
            })
            .collect();
        return reply.body(StatusCode::OK, json!({ "mounts": mounts }).to_string());
    }
    let mut x = String::from("<?xml version=\"1.0\"?>\n<icestats>");
    for m in &station.mounts {
        let _ = write!(
            x,
            "<source mount=\"{}\"><listeners>{n}</listeners><Listeners>{n}</Listeners><Connected>{}</Connected><content-type>{}</content-type></source>",
            escape_xml(&m.config.path),
            uptime(m),
            m.content_type,
            n = m.listeners(),
        );
    }
    x.push_str("</icestats>\n");
    reply.body(StatusCode::OK, x)
}

fn push_fields(x: &mut String, fields: &[(&str, Value)]) {
    for (k, v) in fields {
        let text = match v {
            Value::String(s) => escape_xml(s).into_owned(),
            other => other.to_string(),
        };
        let _ = write!(x, "<{k}>{text}</{k}>");
    }
}

/// The answer format the client asked for.
#[derive(Clone, Copy)]
struct Reply {
    json: bool,
}

impl Reply {
    fn content_type(self) -> &'static str {
        if self.json {
            "application/json; charset=utf-8"
        } else {
            "text/xml; charset=utf-8"
        }
    }

    fn body(self, status: StatusCode, body: String) -> Response<Body> {
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type()),
        );
        resp
    }

    /// Icecast's `<iceresponse>` (or its JSON twin).
    fn result(self, status: StatusCode, message: &str, ret: u8) -> Response<Body> {
        let body = if self.json {
            json!({ "message": message, "return": ret }).to_string()
        } else {
            format!(
                "<?xml version=\"1.0\"?>\n<iceresponse><message>{}</message><return>{ret}</return></iceresponse>\n",
                escape_xml(message)
            )
        };
        self.body(status, body)
    }

    fn plain(self, status: StatusCode, message: &str) -> Response<Body> {
        self.result(status, message.trim_end(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_constant_time_compare() {
        assert_eq!(
            base64_decode("YWRtaW46aHVudGVyMg==").unwrap(),
            b"admin:hunter2"
        );
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert!(base64_decode("!!!").is_none());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn query_strings_decode_like_icecast_clients_send_them() {
        let q =
            query("mode=updinfo&mount=%2Fradio.mp3&song=Zo%C3%AB+%26+%C5%81ukasz+-+Caf%C3%A9&x");
        assert_eq!(q["mode"], "updinfo");
        assert_eq!(q["mount"], "/radio.mp3");
        assert_eq!(q["song"], "Zoë & Łukasz - Café");
        assert_eq!(q["x"], "");
        assert_eq!(query("a=100%")["a"], "100%");
        assert_eq!(query("a=%zz")["a"], "%zz");
    }
}
