//! One-shot HTTP/1.0 requests beside the listeners: the soak's status and admin polls and its
//! title changes, and the health check after a storm. Each opens a connection from 127.0.0.1,
//! sends one `GET` (with Basic auth when given), reads the answer to the server's close, and is
//! bounded by a timeout.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::listener::write_all;

/// Largest answer kept; the rest is read and dropped (an admin XML page is a few KiB).
const MAX_ANSWER: usize = 1024 * 1024;

/// A server's answer.
pub struct Answer {
    pub status: u32,
    /// The body (after the blank line), at most [`MAX_ANSWER`] bytes of head and body together.
    pub body: Vec<u8>,
    /// From the start of `connect` to the server's close.
    pub took: Duration,
}

/// `GET target` on `addr`, with `Host: host` and, given `"user:password"`, Basic auth.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    target: &str,
    auth: Option<&str>,
    timeout: Duration,
) -> io::Result<Answer> {
    let started = Instant::now();
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let mut req =
            format!("GET {target} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: onair-loadgen/0.1\r\n");
        if let Some(a) = auth {
            req.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64(a.as_bytes())
            ));
        }
        req.push_str("\r\n");
        write_all(&stream, req.as_bytes()).await?;
        let mut answer = Vec::with_capacity(4096);
        let mut buf = [0u8; 8192];
        loop {
            stream.readable().await?;
            let n = match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            let room = MAX_ANSWER.saturating_sub(answer.len());
            answer.extend_from_slice(&buf[..n.min(room)]);
        }
        Ok::<_, io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no complete answer in time"))??;
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no complete response head"))?;
    let line = answer[..end]
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    let status = String::from_utf8_lossy(line)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status in the answer"))?;
    Ok(Answer {
        status,
        body: answer[end + 4..].to_vec(),
        took: started.elapsed(),
    })
}

/// Standard base64 with padding (RFC 4648), for the `Authorization` header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `s` percent-encoded for a query string: everything but RFC 3986's unreserved characters.
pub fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("admin:secret", "YWRtaW46c2VjcmV0"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain:?}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_encode("/radio.mp3"), "%2Fradio.mp3");
        assert_eq!(query_encode("soak 1 & é"), "soak%201%20%26%20%C3%A9");
    }
}
