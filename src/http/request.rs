//! The accept path's first look at a connection: it reads the request head and picks out the
//! requests for a mount (a listener's `GET`, a `HEAD`, a `Range` probe), which are answered
//! without hyper; anything else goes to hyper with the bytes already read.
//!
//! Listeners skip hyper because a hyper connection keeps an 8 KiB read buffer and an 8 KiB write
//! buffer for its whole life: for a listener that stays hours, that is most of its memory.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::fanout::ListenerRequest;
use crate::station::{Mount, Station};

/// Largest request head read before dispatch; a longer one goes to hyper, which refuses it.
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed before dispatch; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;
/// Largest `Range` probe answered with 206 (Safari asks for `bytes=0-1`).
pub const MAX_PROBE_BYTES: u64 = 64 * 1024;

/// Where a request goes.
pub enum Dispatch {
    /// A listener for the mount at this index of `Station::mounts`.
    Listener {
        mount_index: usize,
        request: ListenerRequest,
    },
    /// A `HEAD` of a mount, or a small `Range` probe of one: answered with the stream's head
    /// (and a probe's bytes) outside hyper, which cannot write Icecast's header case.
    Peek {
        mount: Arc<Mount>,
        icy: bool,
        /// `Some(N + 1)` for `Range: bytes=0-N`.
        range: Option<u64>,
        /// False for `HEAD`.
        with_body: bool,
    },
    /// Everything else, and anything that does not parse: hyper answers it.
    Hyper,
}

/// Reads into `buf` until the request head is complete, `MAX_HEAD` bytes have come, or the peer
/// stops sending. The caller bounds it in time.
pub async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<()> {
    loop {
        let searched = buf.len().saturating_sub(3);
        if stream.read_buf(buf).await? == 0 {
            return Ok(());
        }
        if buf[searched..].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[searched.saturating_sub(1)..]
                .windows(2)
                .any(|w| w == b"\n\n")
            || buf.len() >= MAX_HEAD
        {
            return Ok(());
        }
    }
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
    let Some((mount_index, mount)) = station
        .mounts
        .iter()
        .enumerate()
        .find(|(_, m)| m.config.path == path)
    else {
        return Dispatch::Hyper;
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let icy = header("icy-metadata").is_some_and(|v| v.trim_ascii() == b"1");
    let range = header("range").and_then(range_probe);
    if method == "HEAD" || range.is_some() {
        return Dispatch::Peek {
            mount: Arc::clone(mount),
            icy: icy && range.is_none(),
            range,
            with_body: method == "GET",
        };
    }
    let text = |name: &str| {
        header(name)
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
    };
    Dispatch::Listener {
        mount_index,
        request: ListenerRequest {
            request_line: format!("GET {target} HTTP/1.{version}"),
            user_agent: Arc::from(text("user-agent").as_ref()),
            referer: text("referer").into_owned(),
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
}
