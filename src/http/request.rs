//! The accept path's first look at a connection: it reads the request head and picks out the
//! requests for a mount (a listener's `GET`, a `HEAD`, a `Range` probe), which are answered
//! without hyper; HLS requests go to `hls_conn`, anything else to hyper with the bytes already
//! read.
//!
//! Listeners skip hyper because a hyper connection keeps an 8 KiB read buffer and an 8 KiB write
//! buffer for its whole life: for a listener that stays hours, that is most of its memory.
//!
//! Every request head, whoever answers it, is read here first: one size limit ([`MAX_HEAD`]) and
//! one time limit (`server.head_timeout`) for all. What a listener keeps of its head is cut to
//! [`MAX_STORED`] bytes, so its memory does not depend on what the client sent.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::fanout::ListenerRequest;
use crate::station::Station;

/// Largest request head, for every request: a longer one is answered 431 before dispatch. hyper
/// is given the same limit (`max_buf_size`), though it only ever sees heads already complete.
/// 8 KiB is hyper's smallest allowed buffer, and what players and browsers stay far below.
pub const MAX_HEAD: usize = 8 * 1024;
/// Bytes a listener keeps of each string copied from its head (request line, user agent, referer).
pub const MAX_STORED: usize = 256;
/// Headers parsed before dispatch; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;
/// Largest `Range` probe answered with 206 (Safari asks for `bytes=0-1`).
pub const MAX_PROBE_BYTES: u64 = 64 * 1024;

/// Where a request goes.
pub enum Dispatch {
    /// A listener for the mount at this index of `Mounts`.
    Listener {
        mount_index: usize,
        request: ListenerRequest,
    },
    /// A `HEAD` of a mount, or a small `Range` probe of one: answered with the stream's head
    /// (and a probe's bytes) outside hyper, which cannot write Icecast's header case.
    Peek {
        /// The mount's index in `Mounts`.
        mount_index: usize,
        icy: bool,
        /// `Some(N + 1)` for `Range: bytes=0-N`.
        range: Option<u64>,
        /// False for `HEAD`.
        with_body: bool,
    },
    /// Everything else, and anything that does not parse: hyper answers it.
    Hyper,
}

/// How reading a request head ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// The blank line that ends a head came (bytes after it may have come too).
    Complete,
    /// [`MAX_HEAD`] bytes came without it.
    TooLarge,
    /// The client closed its side first.
    Closed,
}

/// Reads into `buf` until the request head is complete, [`MAX_HEAD`] bytes have come, or the
/// peer stops sending; never more than `MAX_HEAD` bytes. The caller bounds it in time. Generic
/// over the reader so that the fuzz targets can feed it bytes in any split.
pub async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> io::Result<Head> {
    loop {
        let room = MAX_HEAD - buf.len();
        if room == 0 {
            return Ok(Head::TooLarge);
        }
        if buf.capacity() == buf.len() {
            // Grows by doubling from the first 1 KiB, so most heads take one small buffer.
            buf.reserve(buf.len().max(1024).min(room));
        }
        let searched = buf.len().saturating_sub(3);
        if stream.read_buf(&mut (&mut *buf).limit(room)).await? == 0 {
            return Ok(Head::Closed);
        }
        if buf[searched..].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[searched.saturating_sub(1)..]
                .windows(2)
                .any(|w| w == b"\n\n")
        {
            return Ok(Head::Complete);
        }
    }
}

/// `s` cut to at most [`MAX_STORED`] bytes on a character boundary.
fn stored(s: &str) -> &str {
    &s[..s.floor_char_boundary(MAX_STORED)]
}

/// A header value as text a listener keeps: at most [`MAX_STORED`] bytes, invalid UTF-8 replaced.
fn stored_bytes(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(&value[..value.len().min(MAX_STORED)]);
    stored(&text).to_owned()
}

/// Decides who answers the request in `head`.
pub fn dispatch(head: &[u8], station: &Arc<Station>, received: Instant) -> Dispatch {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return Dispatch::Hyper;
    };
    let (Some(method @ ("GET" | "HEAD")), Some(target), Some(version)) =
        (req.method, req.path, req.version)
    else {
        return Dispatch::Hyper;
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let Some(mount_index) = station.mounts.position(path) else {
        return Dispatch::Hyper;
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let carries_icy = station
        .mounts
        .get(mount_index)
        .is_some_and(|m| m.config.codec.carries_icy());
    let icy = carries_icy && header("icy-metadata").is_some_and(|v| v.trim_ascii() == b"1");
    let range = header("range").and_then(range_probe);
    if method == "HEAD" || range.is_some() {
        return Dispatch::Peek {
            mount_index,
            icy: icy && range.is_none(),
            range,
            with_body: method == "GET",
        };
    }
    let text = |name: &str| header(name).map(stored_bytes).unwrap_or_default();
    Dispatch::Listener {
        mount_index,
        request: ListenerRequest {
            request_line: stored(&format!("GET {target} HTTP/1.{version}")).to_owned(),
            user_agent: Arc::from(text("user-agent")),
            referer: text("referer"),
            icy,
            connected: received,
        },
    }
}

/// `Range: bytes=0-N` with a small N: a media probe (Safari), answered with those bytes rather
/// than a stream. `bytes=0-` (Chrome's audio element) is a listener. Returns N + 1.
pub fn range_probe(value: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(value).ok()?;
    let (start, end) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start == 0 && end < MAX_PROBE_BYTES).then_some(end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_probes_are_small_ranges_from_zero() {
        assert_eq!(range_probe(b"bytes=0-1"), Some(2));
        assert_eq!(range_probe(b" bytes=0-65535 "), Some(65_536));
        assert_eq!(range_probe(b"bytes=0-"), None);
        assert_eq!(range_probe(b"bytes=0-65536"), None);
        assert_eq!(range_probe(b"bytes=5-10"), None);
        assert_eq!(range_probe(b"\xff"), None);
    }

    #[test]
    fn stored_strings_are_cut_on_a_character_boundary() {
        assert_eq!(stored("short"), "short");
        let long = "é".repeat(200);
        assert_eq!(stored(&long).len(), 256);
        let odd = format!("a{long}");
        assert_eq!(stored(&odd).len(), 255, "never half a character");
        let bytes = [b'a'; 300];
        assert_eq!(stored_bytes(&bytes).len(), 256);
        // 255 bytes, then the first byte of a two-byte character cut at the limit.
        let mut cut = vec![b'a'; 255];
        cut.extend_from_slice("é".as_bytes());
        assert_eq!(stored_bytes(&cut), "a".repeat(255));
        assert_eq!(stored_bytes(b"VLC\xff"), "VLC\u{fffd}");
    }
}
