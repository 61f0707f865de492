//! The response heads of a mount, written byte for byte as Icecast 2.4 writes them, because
//! some recorders and players match the names case-sensitively (`icy-metaint:`, never
//! `Icy-MetaInt:`). After the status line come `Server`, `Connection: Close`, `Date`,
//! `Content-Type` and the three no-cache headers, in Icecast's order; then the CORS headers,
//! where Icecast writes an operator's `<http-headers>`; then the stream's `icy-*` lines, lower
//! case and with no space after the colon. Icecast derives those from the source's request
//! headers sorted by name, so `ice-audio-info` comes first, written as `icy-br:` followed by
//! itself (`src/format.c` in Icecast 2.4.4), and `icy-metaint` last when the listener asked for
//! metadata. `tests/it/icecast.rs` compares these heads with Debian's icecast2, line by line.
//!
//! hyper writes a header name either all lower case or all title case, never `icy-br` beside
//! `Content-Type`, so every head of a mount (GET, HEAD, the `Range` probe, the full-mount
//! answer) is written here and sent outside hyper.

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::status::audio_info;
use crate::config::{Audio, MountConfig, Station};
use crate::dates::http_date;

/// `Server:` on every answer.
pub const SERVER: &str = concat!("onair/", env!("CARGO_PKG_VERSION"));
/// Headers a browser player may send, and the ICY headers its scripts may read.
pub const CORS_ALLOW_HEADERS: &str = "Origin, Accept, Content-Type, Icy-MetaData, Range";
pub const CORS_EXPOSE_HEADERS: &str =
    "Icy-MetaInt, Icy-Br, Icy-Description, Icy-Genre, Icy-Name, Icy-Pub, Icy-Url, Ice-Audio-Info";
/// Icecast's no-cache trio, in its order.
const NO_CACHE: &str = "Cache-Control: no-cache, no-store\r\n\
Expires: Mon, 26 Jul 1997 05:00:00 GMT\r\nPragma: no-cache\r\n";
/// How long a player refused at a full mount waits before it tries again: drawn for each answer
/// from this range (30 s on average, as before), so that the listeners refused in a reconnect
/// storm come back spread over 20 s rather than all at the same instant, a second storm.
const FULL_RETRY_AFTER_SECS: std::ops::RangeInclusive<u32> = 20..=40;
const FULL_BODY: &str = "mount is full, retry later\n";

/// The heads of one mount: built once, except for the `Date` line, which is renewed once a
/// second and shared by every listener arriving within that second.
pub struct StreamHead {
    /// From `Content-Type` to the last `icy-*` line before `icy-metaint`, fixed for the life of
    /// the mount.
    fields: String,
    metaint: usize,
    current: Mutex<Current>,
}

/// The heads for one second of `Date`.
struct Current {
    second: u64,
    date: String,
    plain: Bytes,
    with_metaint: Bytes,
    /// The full-mount answer up to its `Retry-After`, which is drawn for each answer.
    full: Bytes,
}

impl StreamHead {
    pub fn new(
        station: &Station,
        audio: Audio,
        mount: &MountConfig,
        content_type: &str,
    ) -> StreamHead {
        let mut f = format!("Content-Type: {content_type}\r\n{NO_CACHE}");
        f += &format!(
            "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: {CORS_ALLOW_HEADERS}\r\nAccess-Control-Expose-Headers: {CORS_EXPOSE_HEADERS}\r\n"
        );
        f += &format!("icy-br:{}\r\n", mount.bitrate_kbps);
        f += &format!("ice-audio-info: {}\r\n", audio_info(audio, mount));
        for (name, value) in [
            ("icy-description", &station.description),
            ("icy-genre", &station.genre),
            ("icy-name", &station.name),
        ] {
            push_icy(&mut f, name, value);
        }
        f += "icy-pub:0\r\n";
        push_icy(&mut f, "icy-url", &station.url);
        StreamHead {
            fields: f,
            metaint: mount.icy_metaint,
            current: Mutex::new(Current {
                second: u64::MAX,
                date: String::new(),
                plain: Bytes::new(),
                with_metaint: Bytes::new(),
                full: Bytes::new(),
            }),
        }
    }

    /// `200 OK` for a listener (or a `HEAD`), with `icy-metaint` when it asked for metadata.
    pub fn ok(&self, metaint: bool) -> Bytes {
        let c = self.current();
        if metaint {
            c.with_metaint.clone()
        } else {
            c.plain.clone()
        }
    }

    /// `503` for a listener at a full mount, body included. Icecast 2.4 answers 403, which
    /// players take as final; 503 with `Retry-After` (Icecast 2.5) makes them come back.
    pub fn full(&self) -> Bytes {
        let head = self.current().full.clone();
        let mut out = Vec::with_capacity(head.len() + 40);
        out.extend_from_slice(&head);
        out.extend_from_slice(
            format!(
                "Retry-After: {}\r\n\r\n{FULL_BODY}",
                fastrand::u32(FULL_RETRY_AFTER_SECS)
            )
            .as_bytes(),
        );
        Bytes::from(out)
    }

    /// `206` for a `Range: bytes=0-N` probe answered with `len` bytes (at least one): the
    /// stream's head without `icy-metaint` (the bytes are plain audio), and the range.
    pub fn partial(&self, len: usize) -> Vec<u8> {
        let date = self.current().date.clone();
        format!(
            "HTTP/1.0 206 Partial Content\r\n{}{}Content-Length: {len}\r\nContent-Range: bytes 0-{}/*\r\n\r\n",
            preamble(&date),
            self.fields,
            len.saturating_sub(1)
        )
        .into_bytes()
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Plain data rebuilt whole under the lock; a panic cannot leave it half-written.
        let mut c = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if c.second != second {
            let date = http_date(now);
            let preamble = preamble(&date);
            let ok = format!("HTTP/1.0 200 OK\r\n{preamble}{}", self.fields);
            *c = Current {
                second,
                plain: Bytes::from(format!("{ok}\r\n")),
                with_metaint: Bytes::from(format!("{ok}icy-metaint:{}\r\n\r\n", self.metaint)),
                full: Bytes::from(format!(
                    "HTTP/1.0 503 Service Unavailable\r\n{preamble}Content-Type: text/plain; charset=utf-8\r\n{NO_CACHE}\
Access-Control-Allow-Origin: *\r\n"
                )),
                date,
            };
        }
        c
    }
}

/// The lines Icecast opens every answer with, after the status line.
fn preamble(date: &str) -> String {
    format!("Server: {SERVER}\r\nConnection: Close\r\nDate: {date}\r\n")
}

/// One `icy-*` line. An empty value is left out, as Icecast does when a source sends none.
/// Control characters cannot reach a header: config validation refuses them in `[station]`,
/// and they are dropped here as well so that no value can ever end the line.
fn push_icy(out: &mut String, name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push_str(name);
    out.push(':');
    out.extend(value.chars().filter(|c| !c.is_control()));
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> StreamHead {
        let config = crate::config::parse(
            "[station]\nname = \"Radio Zoë\"\ngenre = \"Jazz\"\nurl = \"https://r.example\"\n[[mount]]\npath = \"/a.mp3\"\nicy_metaint = 8192\n",
            crate::config::Secrets::default(),
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        StreamHead::new(
            &config.station,
            config.audio,
            &config.mounts[0],
            "audio/mpeg",
        )
    }

    fn lines(b: &[u8]) -> Vec<String> {
        String::from_utf8(b.to_vec())
            .unwrap()
            .split("\r\n")
            .map(|l| {
                if l.starts_with("Date: ") {
                    "Date: *".into()
                } else {
                    l.to_string()
                }
            })
            .collect()
    }

    #[test]
    fn listener_head_in_icecast_order_and_case() {
        let h = head();
        let plain = lines(&h.ok(false));
        assert_eq!(
            plain,
            [
                "HTTP/1.0 200 OK",
                SERVER_LINE,
                "Connection: Close",
                "Date: *",
                "Content-Type: audio/mpeg",
                "Cache-Control: no-cache, no-store",
                "Expires: Mon, 26 Jul 1997 05:00:00 GMT",
                "Pragma: no-cache",
                "Access-Control-Allow-Origin: *",
                &format!("Access-Control-Allow-Headers: {CORS_ALLOW_HEADERS}"),
                &format!("Access-Control-Expose-Headers: {CORS_EXPOSE_HEADERS}"),
                "icy-br:128",
                "ice-audio-info: channels=2;samplerate=44100;bitrate=128",
                "icy-genre:Jazz",
                "icy-name:Radio Zoë",
                "icy-pub:0",
                "icy-url:https://r.example",
                "",
                "",
            ]
        );
        let icy = lines(&h.ok(true));
        assert_eq!(icy[..plain.len() - 2], plain[..plain.len() - 2]);
        assert_eq!(icy[plain.len() - 2..], ["icy-metaint:8192", "", ""]);
    }

    const SERVER_LINE: &str = concat!("Server: onair/", env!("CARGO_PKG_VERSION"));

    #[test]
    fn full_and_partial_answers() {
        let h = head();
        let full = String::from_utf8(h.full().to_vec()).unwrap();
        assert!(full.starts_with("HTTP/1.0 503 Service Unavailable\r\nServer: onair/"));
        let retry: u32 = full
            .split_once("\r\nRetry-After: ")
            .and_then(|(_, rest)| rest.strip_suffix("\r\n\r\nmount is full, retry later\n"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After before the body in {full:?}"));
        assert!(FULL_RETRY_AFTER_SECS.contains(&retry), "{retry}");
        let partial = lines(&h.partial(2));
        assert_eq!(partial[0], "HTTP/1.0 206 Partial Content");
        assert!(!partial.iter().any(|l| l.starts_with("icy-metaint")));
        assert_eq!(
            partial[partial.len() - 4..],
            ["Content-Length: 2", "Content-Range: bytes 0-1/*", "", ""]
        );
    }

    /// Listeners refused by a full mount in a storm must not all come back at one instant.
    #[test]
    fn full_mount_retry_after_is_spread() {
        let h = head();
        let values: std::collections::BTreeSet<u32> = (0..200)
            .map(|_| {
                let full = String::from_utf8(h.full().to_vec()).unwrap();
                let (_, rest) = full.split_once("\r\nRetry-After: ").unwrap();
                rest.split("\r\n").next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(
            values.iter().all(|v| FULL_RETRY_AFTER_SECS.contains(v)),
            "{values:?}"
        );
        assert!(values.len() >= 10, "too little spread: {values:?}");
    }

    #[test]
    fn heads_share_one_buffer_within_a_second() {
        let h = head();
        let before = h.current().second;
        let (a, b) = (h.ok(true), h.ok(true));
        if h.current().second == before {
            assert_eq!(
                a.as_ptr(),
                b.as_ptr(),
                "one buffer, not a copy per listener"
            );
        }
    }
}
