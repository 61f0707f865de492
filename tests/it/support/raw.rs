//! Raw HTTP exchanges over a socket, for what a polite client library never sends: huge heads,
//! heads sent a byte at a time, connections that say nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a server sent before closing (or before `limit`, then `closed` is false).
#[derive(Debug)]
pub struct Answer {
    pub bytes: Vec<u8>,
    pub closed: bool,
}

impl Answer {
    /// The status code, if a status line came.
    pub fn status(&self) -> Option<u16> {
        let end = self.bytes.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&self.bytes[..end]).ok()?;
        line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
    }

    /// A response header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let head = text.split("\r\n\r\n").next()?.to_string();
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Reads what `stream` sends until it closes, for at most `limit`.
pub async fn read_answer(stream: &mut TcpStream, limit: Duration) -> Answer {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    Answer { bytes, closed }
}

/// Sends `request` on a new connection and reads the answer until the server closes.
pub async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A server that answers early (431) may reset the rest: what it sent is still read.
    let _ = s.write_all(request).await;
    read_answer(&mut s, limit).await
}

/// A GET of `path` with one header `X-Pad` that makes the head exactly `size` bytes long.
pub fn head_of_size(path: &str, size: usize) -> Vec<u8> {
    let start = format!("GET {path} HTTP/1.1\r\nHost: test\r\nX-Pad: ");
    let end = "\r\n\r\n";
    let pad = size - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

/// Sends `request` on a new connection and reads until the end of the response head (for
/// streams, which do not close).
pub async fn head(addr: SocketAddr, request: &[u8], limit: Duration) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    read_head(&mut s, limit).await
}

/// Reads from `s` until the end of a response head (or `limit`), leaving the connection open.
pub async fn read_head(s: &mut TcpStream, limit: Duration) -> Answer {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    Answer { bytes, closed }
}
