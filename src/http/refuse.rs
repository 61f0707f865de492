//! Answers the accept path writes itself before a request reaches a handler: a head too large
//! (431), too slow (408), or no room for the connection (503). Each is one small write on a
//! fresh socket, always room for it in the kernel's buffer, so none waits for the client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.0 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\nConnection: close\r\n\r\n\
request head too large\n";

pub const HEAD_TIMEOUT: &[u8] = b"HTTP/1.0 408 Request Timeout\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 26\r\nConnection: close\r\n\r\n\
request head not received\n";

/// How long a refused client's remaining request bytes are read and dropped before closing, so
/// that the close is a FIN after our answer and not a reset that could destroy it in flight.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and dropped while lingering at most.
const LINGER_BYTES: usize = 64 * 1024;

/// `503` with a `Retry-After` between 2 and 6 s, spread so that refused clients do not all come
/// back at the same instant.
pub fn busy(what: &str) -> Vec<u8> {
    let body = format!("{what}, retry later\n");
    format!(
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: {}\r\nConnection: close\r\n\
         Access-Control-Allow-Origin: *\r\n\r\n{body}",
        body.len(),
        fastrand::u32(2..=6)
    )
    .into_bytes()
}

/// Writes `answer` without waiting (a client that cannot take it misses it) and closes.
pub fn now(stream: TcpStream, answer: &[u8]) {
    let _ = stream.try_write(answer);
}

/// Writes `answer`, then reads and drops what the client still sends, for at most [`LINGER`],
/// and closes.
pub async fn lingering(mut stream: TcpStream, answer: &[u8]) {
    if stream.try_write(answer).is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status and whether `Content-Length` matches the body.
    fn check(answer: &[u8]) -> u16 {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut r = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = r.parse(answer).unwrap() else {
            panic!("incomplete head");
        };
        let declared = r
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .map(|h| {
                std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            });
        assert_eq!(declared, Some(answer.len() - len));
        r.code.unwrap()
    }

    #[test]
    fn canned_answers_are_well_formed() {
        assert_eq!(check(HEAD_TOO_LARGE), 431);
        assert_eq!(check(HEAD_TIMEOUT), 408);
        let busy = busy("server busy");
        assert_eq!(check(&busy), 503);
        assert!(String::from_utf8(busy).unwrap().contains("Retry-After: "));
    }
}
