//! What a DJ's source client sends before its audio, read into a typed request, and the answers it
//! expects back. Pure functions over bytes: the accept path reads the head (at most 8 KiB, 10 s)
//! and hands it here; authentication, the busy check and decoding come after.
//!
//! The shapes are the ones captured from real clients in `shared/notes/live-source.md` §1: `PUT`
//! (ffmpeg, butt, libshout once it knows PUT, Liquidsoap `method="put"`, chunked or not), `SOURCE`
//! over HTTP/1.0, HTTP/1.1 or `ICE/1.0` (darkice, Liquidsoap, libshout against older servers),
//! LF or CRLF line ends, header names in any case; libshout's `OPTIONS *` and `GET /admin/!POKE`
//! probes; and the Shoutcast v1 login on the ICY port (a password line, `OK2`, then `icy-*` lines).

use base64::Engine as _;

use crate::config::Secret;

/// Headers read from a source head; more is refused as a bad request.
const MAX_HEADERS: usize = 64;
/// The ICY port's answer to a right password.
pub const ICY_OK: &[u8] = b"OK2\r\nicy-caps:11\r\n\r\n";
/// Longest password line plus `icy-*` block taken on the ICY port.
pub const MAX_ICY_HEAD: usize = 8 * 1024;
/// What every answer to a source client offers: libshout switches to `PUT` when it sees it.
pub const ALLOW: &str = "GET, HEAD, PUT, SOURCE, OPTIONS";

/// How a source sends its audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Put,
    Source,
    /// Shoutcast v1 on the ICY port.
    Icy,
}

/// What the source says it sends (the first bytes decide in the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mp3,
    /// ADTS frames.
    Aac,
    /// Vorbis or Opus, chained or not.
    Ogg,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `Transfer-Encoding: chunked` (Liquidsoap `chunked=true`).
    Chunked,
    /// `Content-Length`: libshout's unauthenticated probe sends 0.
    Length(u64),
    /// Until the connection closes: what every other client does.
    UntilClose,
}

/// A user and password, from HTTP Basic or the ICY password line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// What the source tells about its show (`ice-*` or `icy-*` headers), as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowInfo {
    pub name: Option<String>,
    pub description: Option<String>,
    pub genre: Option<String>,
    pub url: Option<String>,
    pub public: Option<bool>,
    pub bitrate: Option<String>,
    pub audio_info: Option<String>,
    pub user_agent: Option<String>,
}

/// A source that wants to go on air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRequest {
    pub method: Method,
    /// The path it asked for, without a query.
    pub mount: String,
    /// HTTP/1.1 (`PUT`, some `SOURCE`s): its answers are HTTP/1.1 too.
    pub http11: bool,
    pub credentials: Option<Credentials>,
    pub format: Format,
    /// `Expect: 100-continue`: answered `100 Continue` first, then `200 OK`.
    pub expect_continue: bool,
    pub body: Body,
    pub info: ShowInfo,
}

/// A head that is not a source, but is answered for the sake of source clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `OPTIONS *`, asking to upgrade to TLS or not.
    Options { upgrade_tls: bool },
    /// libshout's `GET /admin/!POKE`, sent when `OPTIONS` got no answer.
    Poke,
}

/// What a head is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Boxed: the probes and others are a byte.
    Source(Box<SourceRequest>),
    Probe(Probe),
    /// Any other request: not ours to answer.
    Other,
}

/// Why a source head is refused before anything else is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the head does not parse")]
    Malformed,
    /// A `PUT` must say what it sends.
    #[error("a PUT with no Content-Type")]
    NoContentType,
    #[error("a Content-Type that is not MP3, AAC or Ogg")]
    UnsupportedType,
}

impl Refused {
    /// The answer the client gets.
    pub fn response(self) -> Vec<u8> {
        match self {
            Refused::Malformed => reply(400, "Bad Request", "the request does not parse\n"),
            Refused::NoContentType => {
                reply(400, "Bad Request", "say what you send: Content-Type\n")
            }
            Refused::UnsupportedType => reply(
                415,
                "Unsupported Media Type",
                "send MP3, AAC (ADTS) or Ogg (Vorbis, Opus)\n",
            ),
        }
    }

    /// Label of `onair_live_connects_total{result}`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::NoContentType | Refused::UnsupportedType => "type",
        }
    }
}

/// Reads an HTTP request head (complete, up to its blank line).
pub fn parse(head: &[u8]) -> Result<Head, Refused> {
    // `SOURCE /live ICE/1.0` is HTTP/1.0 under another name: read as such.
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let first = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let renamed;
    let head = match first.strip_suffix(b" ICE/1.0") {
        Some(start) => {
            let mut h = Vec::with_capacity(head.len());
            h.extend_from_slice(start);
            h.extend_from_slice(b" HTTP/1.0");
            h.extend_from_slice(&head[first.len()..]);
            renamed = h;
            &renamed[..]
        }
        None => head,
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Refused::Malformed),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refused::Malformed);
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let method = match method {
        "PUT" => Method::Put,
        "SOURCE" => Method::Source,
        "OPTIONS" if target == "*" => {
            let upgrade_tls = header("upgrade").is_some_and(|u| {
                u.split(',')
                    .any(|p| p.trim().to_ascii_uppercase().starts_with("TLS"))
            });
            return Ok(Head::Probe(Probe::Options { upgrade_tls }));
        }
        "GET" if target == "/admin/!POKE" => return Ok(Head::Probe(Probe::Poke)),
        _ => return Ok(Head::Other),
    };
    let mount = target.split_once('?').map_or(target, |(p, _)| p).to_owned();
    let format = match header("content-type") {
        Some(t) => format_of(&t).ok_or(Refused::UnsupportedType)?,
        // Icecast 1.x clients send no type and mean MP3; a PUT has always sent one.
        None if method == Method::Source => Format::Mp3,
        None => return Err(Refused::NoContentType),
    };
    let chunked = header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let body = match header("content-length").map(|l| l.parse::<u64>()) {
        _ if chunked => Body::Chunked,
        Some(Ok(n)) => Body::Length(n),
        Some(Err(_)) => return Err(Refused::Malformed),
        None => Body::UntilClose,
    };
    let ice =
        |name: &str| header(&format!("ice-{name}")).or_else(|| header(&format!("icy-{name}")));
    let info = ShowInfo {
        name: ice("name"),
        description: ice("description"),
        genre: ice("genre"),
        url: ice("url"),
        public: ice("public").or_else(|| ice("pub")).map(|p| p == "1"),
        bitrate: ice("bitrate").or_else(|| ice("br")),
        audio_info: ice("audio-info"),
        user_agent: header("user-agent"),
    };
    Ok(Head::Source(Box::new(SourceRequest {
        method,
        mount,
        http11: version == 1,
        credentials: header("authorization").and_then(|a| basic_credentials(&a)),
        format,
        expect_continue: header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")),
        body,
        info,
    })))
}

/// The format a `Content-Type` names (parameters ignored), if onair decodes it.
pub fn format_of(content_type: &str) -> Option<Format> {
    let t = content_type.split(';').next()?.trim().to_ascii_lowercase();
    match t.as_str() {
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" => Some(Format::Mp3),
        "audio/aac" | "audio/aacp" | "audio/x-aac" => Some(Format::Aac),
        "audio/ogg" | "application/ogg" | "audio/opus" | "audio/vorbis" => Some(Format::Ogg),
        _ => None,
    }
}

/// `Basic <base64 of user:password>`.
pub fn basic_credentials(value: &str) -> Option<Credentials> {
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        user: user.to_owned(),
        password: Secret::from(password),
    })
}

/// The first line on the ICY port: `password`, `/mount:password` or `user:password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcyLogin {
    pub mount: Option<String>,
    /// Who it may be, in the order to try: a line with a colon is `user:password` for a named DJ,
    /// or the whole line as the `source` password (which may hold a colon).
    pub candidates: Vec<Credentials>,
}

/// Reads the ICY password line (without its line end); `None` for libshout's `!POKE` probe.
pub fn icy_login(line: &str) -> Option<IcyLogin> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with("!POKE") {
        return None;
    }
    let source = |password: &str| Credentials {
        user: "source".into(),
        password: Secret::from(password),
    };
    if let Some(rest) = line.strip_prefix('/')
        && let Some((mount, password)) = rest.split_once(':')
    {
        return Some(IcyLogin {
            mount: Some(format!("/{mount}")),
            candidates: vec![source(password)],
        });
    }
    let mut candidates = Vec::with_capacity(2);
    if let Some((user, password)) = line.split_once(':')
        && !user.is_empty()
    {
        candidates.push(Credentials {
            user: user.to_owned(),
            password: Secret::from(password),
        });
    }
    candidates.push(source(line));
    Some(IcyLogin {
        mount: None,
        candidates,
    })
}

/// Reads the `icy-*` lines that follow `OK2` (up to the blank line): the show, and the format
/// (MP3 unless a `content-type` line says otherwise).
pub fn icy_headers(block: &str) -> Result<(ShowInfo, Format), Refused> {
    let mut info = ShowInfo::default();
    let mut format = Format::Mp3;
    for line in block.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let field = match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => {
                format = format_of(value).ok_or(Refused::UnsupportedType)?;
                continue;
            }
            "icy-name" => &mut info.name,
            "icy-genre" => &mut info.genre,
            "icy-url" => &mut info.url,
            "icy-description" => &mut info.description,
            "icy-br" => &mut info.bitrate,
            "icy-pub" => {
                info.public = Some(value == "1");
                continue;
            }
            _ => continue,
        };
        *field = (!value.is_empty()).then(|| value.to_owned());
    }
    Ok((info, format))
}

/// The answer to an `OPTIONS *` or `!POKE` probe: what makes libshout go on to its login.
pub fn probe_response(probe: Probe) -> Vec<u8> {
    match probe {
        Probe::Options { upgrade_tls: false } => format!(
            "HTTP/1.1 204 No Content\r\nAllow: {ALLOW}\r\nAccept-Encoding: identity\r\n\r\n"
        )
        .into_bytes(),
        Probe::Options { upgrade_tls: true } => {
            reply(400, "Bad Request", "TLS is not offered here\n")
        }
        Probe::Poke => reply(400, "Bad Request", "no such admin command\n"),
    }
}

/// A wrong or missing password: libshout then sends its real login.
pub fn unauthorized() -> Vec<u8> {
    let body = "a source password is needed\n";
    format!(
        "HTTP/1.0 401 Authentication Required\r\nWWW-Authenticate: Basic realm=\"Icecast2 Server\"\r\nAllow: {ALLOW}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Another source is on air.
pub fn busy() -> Vec<u8> {
    reply(403, "Forbidden", "Mountpoint in use\n")
}

/// The address failed too many logins: it waits before it is heard again.
pub fn too_many_logins(retry_after: std::time::Duration) -> Vec<u8> {
    let body = "too many failed logins from this address\n";
    format!(
        "HTTP/1.0 429 Too Many Requests\r\nRetry-After: {}\r\nAllow: {ALLOW}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        retry_after.as_secs().max(1),
        body.len()
    )
    .into_bytes()
}

/// A source sent to a path that is neither the live mount nor a listener mount.
pub fn no_such_mount() -> Vec<u8> {
    reply(
        404,
        "Not Found",
        "this radio takes sources on its live mount only\n",
    )
}

/// Where a complete head ends (after its blank line, CRLF or LF), in `buf`.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Live input is off (no source password, no accounts).
pub fn live_off() -> Vec<u8> {
    reply(
        403,
        "Forbidden",
        "live input is not enabled on this radio\n",
    )
}

/// What an accepted source gets before it sends audio: `100 Continue` first when it asked for
/// it (Liquidsoap's `method="put"` insists), then `200 OK`; on the ICY port, `OK2`.
pub fn accepted(request: &SourceRequest) -> Vec<u8> {
    match request.method {
        Method::Icy => ICY_OK.to_vec(),
        _ if request.expect_continue => {
            b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\nHTTP/1.0 200 OK\r\n\r\n".to_vec()
        }
        _ => b"HTTP/1.0 200 OK\r\n\r\n".to_vec(),
    }
}

fn reply(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {status} {reason}\r\nAllow: {ALLOW}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(head: &str) -> SourceRequest {
        match parse(head.as_bytes()) {
            Ok(Head::Source(s)) => *s,
            other => panic!("{other:?} for {head:?}"),
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn ffmpeg_puts_with_expect_and_its_ice_headers() {
        let head = format!(
            "PUT /live HTTP/1.1\r\nUser-Agent: Lavf/59.27.100\r\nAccept: */*\r\nExpect: 100-continue\r\nConnection: close\r\nHost: 127.0.0.1:18000\r\nContent-Type: audio/mpeg\r\nIcy-MetaData: 1\r\nIce-Name: Test\r\nIce-Public: 0\r\nAuthorization: Basic {}\r\n\r\n",
            b64("source:hackme")
        );
        let s = source(&head);
        assert_eq!(
            (s.method, s.mount.as_str(), s.http11, s.format, s.body),
            (Method::Put, "/live", true, Format::Mp3, Body::UntilClose)
        );
        assert!(s.expect_continue);
        let c = s.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.expose()), ("source", "hackme"));
        assert_eq!(s.info.name.as_deref(), Some("Test"));
        assert_eq!(s.info.public, Some(false));
        assert_eq!(s.info.user_agent.as_deref(), Some("Lavf/59.27.100"));
        assert!(accepted(&s).starts_with(b"HTTP/1.1 100 Continue\r\n"));
        assert!(accepted(&s).ends_with(b"HTTP/1.0 200 OK\r\n\r\n"));
    }

    #[test]
    fn darkice_sends_source_with_bare_line_feeds_and_a_lower_case_type() {
        let head = format!(
            "SOURCE /live HTTP/1.0\nContent-type: audio/mpeg\nAuthorization: Basic {}\nUser-Agent: DarkIce/1.3\nice-bitrate: 128\nice-public: 0\nice-name: Darkice Test\nice-genre: Beeps\n\n",
            b64("source:pw")
        );
        let s = source(&head);
        assert_eq!(
            (s.method, s.http11, s.format),
            (Method::Source, false, Format::Mp3)
        );
        assert_eq!(s.info.bitrate.as_deref(), Some("128"));
        assert_eq!(s.info.genre.as_deref(), Some("Beeps"));
        assert_eq!(accepted(&s), b"HTTP/1.0 200 OK\r\n\r\n");
    }

    #[test]
    fn source_without_a_type_is_mp3_and_put_without_one_is_refused() {
        let s = source("SOURCE /radio.mp3?x=1 ICE/1.0\r\n\r\n");
        assert_eq!(
            (s.method, s.mount.as_str(), s.format),
            (Method::Source, "/radio.mp3", Format::Mp3)
        );
        assert_eq!(s.credentials, None);
        assert_eq!(
            parse(b"PUT /live HTTP/1.1\r\n\r\n"),
            Err(Refused::NoContentType)
        );
        let e = parse(b"PUT /live HTTP/1.1\r\nContent-Type: video/webm\r\n\r\n").unwrap_err();
        assert_eq!(e, Refused::UnsupportedType);
        assert!(e.response().starts_with(b"HTTP/1.0 415 "));
        assert!(
            Refused::NoContentType
                .response()
                .starts_with(b"HTTP/1.0 400 ")
        );
    }

    #[test]
    fn every_content_type_the_issue_names() {
        for (t, f) in [
            ("audio/mpeg", Format::Mp3),
            ("audio/mp3", Format::Mp3),
            ("audio/aac", Format::Aac),
            ("audio/aacp", Format::Aac),
            ("audio/x-aac", Format::Aac),
            ("audio/ogg", Format::Ogg),
            ("application/ogg", Format::Ogg),
            ("Audio/Ogg; codecs=opus", Format::Ogg),
        ] {
            assert_eq!(format_of(t), Some(f), "{t}");
        }
        assert_eq!(format_of("text/plain"), None);
    }

    #[test]
    fn liquidsoap_chunked_put_and_libshout_probe_with_no_body() {
        let s = source(
            "PUT /live HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: audio/ogg\r\n\r\n",
        );
        assert_eq!(
            (s.body, s.format, s.expect_continue),
            (Body::Chunked, Format::Ogg, false)
        );
        let poke = source(
            "PUT /live HTTP/1.1\r\nHost: x\r\nUser-Agent: libshout/2.4.6\r\nContent-Type: audio/mpeg\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\nice-public: 0\r\n\r\n",
        );
        assert_eq!((poke.body, poke.credentials), (Body::Length(0), None));
        assert_eq!(
            parse(
                b"PUT /live HTTP/1.1\r\nContent-Type: audio/mpeg\r\nContent-Length: many\r\n\r\n"
            ),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn libshout_probes_get_what_lets_it_log_in() {
        let tls = parse(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: TLS/1.0, HTTP/1.1\r\n\r\n");
        assert_eq!(tls, Ok(Head::Probe(Probe::Options { upgrade_tls: true })));
        let answer = probe_response(Probe::Options { upgrade_tls: true });
        assert!(answer.starts_with(b"HTTP/1.0 400 "));
        let plain = parse(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(plain, Head::Probe(Probe::Options { upgrade_tls: false }));
        let answer =
            String::from_utf8(probe_response(Probe::Options { upgrade_tls: false })).unwrap();
        assert!(answer.starts_with("HTTP/1.1 204 "));
        assert!(answer.contains("Allow: GET, HEAD, PUT, SOURCE, OPTIONS\r\n"));
        assert_eq!(
            parse(b"GET /admin/!POKE HTTP/1.0\r\n\r\n"),
            Ok(Head::Probe(Probe::Poke))
        );
        assert!(probe_response(Probe::Poke).starts_with(b"HTTP/1.0 400 "));
        assert_eq!(parse(b"GET /radio.mp3 HTTP/1.1\r\n\r\n"), Ok(Head::Other));
        let refusal = String::from_utf8(unauthorized()).unwrap();
        assert!(refusal.starts_with("HTTP/1.0 401 "));
        assert!(refusal.contains("WWW-Authenticate: Basic realm=\"Icecast2 Server\"\r\n"));
        assert!(refusal.contains("Allow: "));
        assert!(
            String::from_utf8(busy())
                .unwrap()
                .contains("Mountpoint in use")
        );
    }

    #[test]
    fn garbage_and_bad_credentials_are_not_sources_with_a_password() {
        assert_eq!(parse(b"\x00\x01\x02\r\n\r\n"), Err(Refused::Malformed));
        assert_eq!(
            parse(b"PUT /live HTTP/1.1\r\nContent-Type: audio/mpeg\r\n"),
            Err(Refused::Malformed)
        );
        for auth in [
            "Bearer abc",
            "Basic !!!",
            &format!("Basic {}", b64("no-colon")),
        ] {
            let s = source(&format!(
                "SOURCE /live HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n"
            ));
            assert_eq!(s.credentials, None, "{auth}");
        }
        let named = source(&format!(
            "SOURCE /live HTTP/1.0\r\nauthorization: basic {}\r\n\r\n",
            b64("dj-anna:pa:ss")
        ));
        let c = named.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.expose()), ("dj-anna", "pa:ss"));
    }

    #[test]
    fn icy_logins_in_their_three_shapes() {
        let plain = icy_login("hackme\r\n").unwrap();
        assert_eq!(plain.mount, None);
        assert_eq!(plain.candidates.len(), 1);
        assert_eq!(plain.candidates[0].user, "source");
        let mounted = icy_login("/live:hackme").unwrap();
        assert_eq!(mounted.mount.as_deref(), Some("/live"));
        assert_eq!(mounted.candidates[0].password.expose(), "hackme");
        let named = icy_login("anna:secret").unwrap();
        let who: Vec<(&str, &str)> = named
            .candidates
            .iter()
            .map(|c| (c.user.as_str(), c.password.expose()))
            .collect();
        assert_eq!(who, [("anna", "secret"), ("source", "anna:secret")]);
        assert_eq!(icy_login("!POKE"), None);
    }

    #[test]
    fn icy_headers_after_ok2() {
        let block = "icy-name:EZ Test\nicy-url:http://www.icecast.org/\nicy-irc:\nicy-pub:0\nicy-genre:Beeps\nicy-br:128\n";
        let (info, format) = icy_headers(block).unwrap();
        assert_eq!(format, Format::Mp3);
        assert_eq!(info.name.as_deref(), Some("EZ Test"));
        assert_eq!(info.bitrate.as_deref(), Some("128"));
        assert_eq!(info.public, Some(false));
        let (_, aac) = icy_headers("icy-name:x\r\ncontent-type:audio/aacp\r\n").unwrap();
        assert_eq!(aac, Format::Aac);
        assert_eq!(
            icy_headers("content-type:video/mp4\n"),
            Err(Refused::UnsupportedType)
        );
        let ok = SourceRequest {
            method: Method::Icy,
            mount: "/live".into(),
            http11: false,
            credentials: None,
            format: Format::Mp3,
            expect_continue: false,
            body: Body::UntilClose,
            info: ShowInfo::default(),
        };
        assert_eq!(accepted(&ok), b"OK2\r\nicy-caps:11\r\n\r\n");
    }
}
