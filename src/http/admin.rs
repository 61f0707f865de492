//! Icecast's admin interface, behind HTTP Basic auth as `[server] admin_user` with
//! `ONAIR_ADMIN_PASSWORD`: `/admin/stats`, `/admin/listclients`, `/admin/listmounts`,
//! `/admin/metadata`, `/admin/killclient`, and our own `/admin/next`. Answers are Icecast's XML, or
//! JSON when the client sends `Accept: application/json`. Panels and scripts written for Icecast
//! work unchanged. Who gets in (credentials, failed-login budget, cross-site refusal) is
//! `admin_auth.rs`'s business.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::Body;
use super::admin_auth::{
    ADMIN_BUDGET, Attempt, FAILED_LOGIN_DELAY, LoginThrottle, changes_state, cross_site, login,
};
use super::escape::xml as escape_xml;
use super::status::{self, Detail};
use crate::live::session::LiveDesk;
use crate::station::{Mount, Station};
use crate::title::clean_title;

/// The realm Icecast uses; some clients match on it.
const REALM: &str = "Basic realm=\"Icecast2 Server\"";

/// An admin answer, and how long to hold it back before sending it.
pub struct Answer {
    pub response: Response<Body>,
    /// Non-zero for a failed login, which is answered late (`admin_auth::FAILED_LOGIN_DELAY`).
    pub delay: Duration,
}

impl From<Response<Body>> for Answer {
    fn from(response: Response<Body>) -> Answer {
        Answer {
            response,
            delay: Duration::ZERO,
        }
    }
}

/// Answers a request under `/admin/` from `peer`.
pub fn handle<B>(
    req: &Request<B>,
    station: &Station,
    logins: &LoginThrottle,
    live: &LiveDesk,
    host: &str,
    peer: SocketAddr,
) -> Answer {
    let want_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let reply = Reply { json: want_json };
    let path = req.uri().path();
    let params = query(req.uri().query().unwrap_or(""));
    // The DJ on air sets their titles with their own source credentials, as Icecast lets a
    // mount's source do (and whether or not the admin interface is open).
    if is_metadata(path)
        && !cross_site(req)
        && let Some(answer) =
            super::source_meta::admin_metadata(req, station, live, &params, peer, reply)
    {
        return answer;
    }
    let Some(password) = station.config.server.admin_password.as_ref() else {
        // libshout asks without credentials first and sends the source's only after a 401:
        // with live input on, a title update is a question of credentials, not a closed door.
        let anonymous =
            !req.headers().contains_key(header::AUTHORIZATION) && !params.contains_key("pass");
        if is_metadata(path) && live.enabled() && anonymous && !cross_site(req) {
            return unauthorized(reply).into();
        }
        return reply
            .plain(
                StatusCode::FORBIDDEN,
                "admin interface disabled: set ONAIR_ADMIN_PASSWORD to enable it\n",
            )
            .into();
    };
    // Before the credentials: a forged request must not even learn whether they were right.
    if changes_state(path) && cross_site(req) {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned())
            .unwrap_or_else(|| "-".into());
        tracing::warn!(
            peer = %peer,
            path,
            origin = %origin.escape_debug(),
            "refused a cross-site admin command"
        );
        return reply
            .plain(
                StatusCode::FORBIDDEN,
                "cross-site admin commands are refused",
            )
            .into();
    }
    let check = || login(req, &station.config.server.admin_user, password.expose());
    match logins.attempt(peer.ip(), check) {
        Attempt::Granted => {}
        Attempt::Missing => return unauthorized(reply).into(),
        Attempt::Failed { user, failures } => {
            let user = user.unwrap_or_else(|| "-".into());
            // Escaped, so a user name cannot forge log lines in the text format.
            tracing::warn!(
                peer = %peer,
                user = %user.escape_debug(),
                path,
                failures,
                "admin login failed"
            );
            return Answer {
                response: unauthorized(reply),
                delay: FAILED_LOGIN_DELAY,
            };
        }
        Attempt::Refused { retry_after, first } => {
            if first {
                tracing::warn!(
                    peer = %peer,
                    failures = ADMIN_BUDGET.failures,
                    refused_for_secs = retry_after.as_secs(),
                    "too many failed admin logins: refusing this address for a while"
                );
            }
            let mut resp = reply.plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins, retry later",
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            return resp.into();
        }
    }
    let mount = || -> Result<&std::sync::Arc<Mount>, (StatusCode, &'static str)> {
        let path = params
            .get("mount")
            .ok_or((StatusCode::BAD_REQUEST, "mount parameter required"))?;
        station
            .mounts
            .find(path)
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
            // The live mount too: DJ tools name it.
            match params.get("mount") {
                Some(m) if live.is_source_mount(m) => Ok(metadata(station, &params, reply)),
                _ => mount().map(|_| metadata(station, &params, reply)),
            }
        }
        "/admin/next" => mount().map(|_| {
            station.command(crate::station::Command::Skip);
            reply.result(StatusCode::OK, "Skipping to the next track", 1)
        }),
        _ => Ok(reply.result(StatusCode::NOT_FOUND, "unknown admin command", 0)),
    };
    result
        .unwrap_or_else(|(status, message)| reply.result(status, message, 0))
        .into()
}

fn unauthorized(reply: Reply) -> Response<Body> {
    let mut resp = reply.plain(StatusCode::UNAUTHORIZED, "authentication required\n");
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    resp
}

/// `a=b&c=d` as Icecast clients send it: percent-escapes and `+` for a space, in the text
/// encoding `charset=` names (`UTF-8` or `ISO-8859-1`); without it, UTF-8 when the bytes are
/// valid UTF-8, else ISO-8859-1, which legacy DJ tools send.
pub(super) fn query(q: &str) -> HashMap<String, String> {
    let raw: Vec<(Vec<u8>, Vec<u8>)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decoded(k), percent_decoded(v))
        })
        .collect();
    let charset = raw
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
        .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase());
    let latin1 = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
    let text = |b: &[u8]| match charset.as_deref() {
        Some("iso-8859-1" | "latin1" | "latin-1" | "iso8859-1") => latin1(b),
        Some(_) => String::from_utf8_lossy(b).into_owned(),
        None => std::str::from_utf8(b).map_or_else(|_| latin1(b), str::to_owned),
    };
    raw.iter().map(|(k, v)| (text(k), text(v))).collect()
}

/// `+` as a space and `%XX` as its byte; a `%` not followed by two hex digits stays as it is.
fn percent_decoded(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |at: usize| b.get(at).and_then(|&c| char::from(c).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    out
}

/// `/admin/metadata` and `/admin.cgi` paths.
fn is_metadata(path: &str) -> bool {
    matches!(path, "/admin/metadata" | "/admin/metadata.xml")
}

/// The title an `updinfo` request sets: `song`, else `artist - title` (or either alone).
pub(super) fn title_of(params: &HashMap<String, String>) -> Result<String, &'static str> {
    // Cleaned as the title will be, so a value of only control characters counts as missing.
    let non_empty = |k: &str| {
        params
            .get(k)
            .map(|v| clean_title(v))
            .filter(|v| !v.is_empty())
    };
    match (non_empty("song"), non_empty("artist"), non_empty("title")) {
        (Some(song), _, _) => Ok(song),
        (None, Some(artist), Some(title)) => Ok(format!("{artist} - {title}")),
        (None, None, Some(title)) => Ok(title),
        (None, Some(artist), None) => Ok(artist),
        (None, None, None) => Err("song, or artist and title, required"),
    }
}

fn metadata(station: &Station, params: &HashMap<String, String>, reply: Reply) -> Response<Body> {
    if params.get("mode").map(String::as_str) != Some("updinfo") {
        return reply.result(StatusCode::BAD_REQUEST, "mode=updinfo required", 0);
    }
    let title = match title_of(params) {
        Ok(title) => title,
        Err(why) => return reply.result(StatusCode::BAD_REQUEST, why, 0),
    };
    tracing::info!(title = ?title, "metadata update from the admin interface");
    // During a live show the title is the show's, and goes on air with the DJ's audio.
    match station.live.session() {
        Some(session) if station.on_air.now().live.is_some() => {
            station.live.push_title(session.id, &title);
            station
                .metrics
                .live_metadata_updates
                .with_label_values(&["admin"])
                .inc();
        }
        _ => station.command(crate::station::Command::SetTitle(title)),
    }
    reply.result(StatusCode::OK, "Metadata update successful", 1)
}

/// Shoutcast's `/admin.cgi` (title updates from Shoutcast-mode DJ tools, on the main port).
pub fn shoutcast<B>(
    req: &Request<B>,
    station: &Station,
    live: &LiveDesk,
    peer: SocketAddr,
) -> Answer {
    let params = query(req.uri().query().unwrap_or(""));
    super::source_meta::admin_cgi(station, live, &params, peer, Reply { json: false })
}

fn stats(station: &Station, host: &str, reply: Reply) -> Response<Body> {
    let connections: u64 = station
        .mounts
        .iter()
        .map(|m| m.metrics.connections.get())
        .sum();
    let global: Vec<(&str, Value)> = vec![
        ("admin", json!("")),
        ("host", json!(status::host_without_port(host))),
        ("listener_connections", json!(connections)),
        ("listeners", json!(station.mounts.total_listeners())),
        ("location", json!("")),
        ("server_id", json!(status::SERVER_ID)),
        ("server_start", json!(crate::dates::rfc822(station.started))),
        (
            "server_start_iso8601",
            json!(crate::dates::iso8601(station.started)),
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
    for m in station.mounts.iter() {
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
    for m in station.mounts.iter() {
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
pub(super) struct Reply {
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
    pub(super) fn result(self, status: StatusCode, message: &str, ret: u8) -> Response<Body> {
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
    fn query_strings_take_the_charset_they_name_or_else_guess() {
        // Latin-1 bytes from a legacy tool, with and without charset=.
        assert_eq!(query("song=Caf%E9")["song"], "Café");
        assert_eq!(query("charset=ISO-8859-1&song=Caf%C3%A9")["song"], "CafÃ©");
        assert_eq!(query("song=Caf%C3%A9&charset=UTF-8")["song"], "Café");
        assert_eq!(query("charset=utf-8&song=Caf%E9")["song"], "Caf\u{FFFD}");
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
