//! HLS connections, served without hyper: read a head, answer it, write the answer with one
//! vectored write (its head, then the part's frames straight from the packager's `Bytes`), and
//! again on the same connection until the client closes it, asks to, or idles past the head
//! timeout.
//!
//! A low-latency player holds its connection open and keeps a request blocked on it nearly all
//! the time. Through hyper that connection kept an 8 KiB read buffer, an 8 KiB write buffer and
//! the pinned buffer of the waiting request's head: about 28 KiB per player, 140 MiB for 5,000.
//! Here a connection keeps its head buffer (1 KiB for a player's heads) and a small buffer for
//! the answer's head, and a waiting request holds neither.

use std::io::{self, IoSlice, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::{Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Body;
use super::hls::{self, Prepared};
use super::request::{self, Head};
use crate::hls::station::Hls;

/// Headers parsed in an HLS request head; a head with more is refused (players send about ten).
const MAX_HEADERS: usize = 48;

/// What one connection needs of the server.
pub struct HlsConn<'a> {
    pub hls: &'a Arc<Hls>,
    /// How long the client may take to send a head, the first or the next.
    pub head_timeout: Duration,
    /// How long a write may make no progress before the client counts as gone.
    pub stall_limit: Duration,
    pub cancel: &'a CancellationToken,
}

/// A request head as far as an HLS answer needs it.
struct Asked<'h> {
    prepared: Option<Prepared<'h>>,
    head_only: bool,
    keep_alive: bool,
}

/// Whether `head` holds a whole request head (its blank line).
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Whether the complete request in `head` is one this path answers: `GET` or `HEAD` under
/// `/hls/`, with no body. Anything else goes to hyper, which answers it and closes.
pub fn wanted(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    parse(head, &mut headers).is_some_and(|r| r.target.starts_with("/hls/"))
}

/// A request head this path can answer, parsed.
struct Parsed<'h, 'b> {
    head_only: bool,
    target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    headers: &'h [httparse::Header<'b>],
    /// The head's length in bytes.
    used: usize,
}

/// The complete `GET` or `HEAD` without a body at the start of `head`; `None` for any other.
fn parse<'h, 'b>(
    head: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Option<Parsed<'h, 'b>> {
    let mut req = httparse::Request::new(headers);
    let httparse::Status::Complete(used) = req.parse(head).ok()? else {
        return None;
    };
    let (Some(method @ ("GET" | "HEAD")), Some(target), Some(version)) =
        (req.method, req.path, req.version)
    else {
        return None;
    };
    let headers = &*req.headers;
    (!has_body(headers)).then_some(Parsed {
        head_only: method == "HEAD",
        target,
        version,
        headers,
        used,
    })
}

fn has_body(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
    })
}

impl HlsConn<'_> {
    /// Serves `stream`, whose first request head is in `head`, until the connection ends.
    pub async fn serve(&self, mut stream: TcpStream, mut head: BytesMut, peer: SocketAddr) {
        let mut out: Vec<u8> = Vec::with_capacity(512);
        loop {
            let Some((asked, used)) = self.read(&head, peer) else {
                let refused = error(StatusCode::BAD_REQUEST, "bad request\n");
                let _ = self
                    .write(&mut stream, &mut out, refused, false, false)
                    .await;
                return;
            };
            // The head's bytes go before the wait: a blocked request holds none of them.
            head.advance(used);
            let resp = match asked.prepared {
                Some(p) => tokio::select! {
                    r = p.answer() => r,
                    _ = self.cancel.cancelled() => return,
                },
                None => error(StatusCode::NOT_FOUND, "not found\n"),
            };
            let keep = asked.keep_alive && !self.cancel.is_cancelled();
            if self
                .write(&mut stream, &mut out, resp, asked.head_only, keep)
                .await
                .is_err()
                || !keep
            {
                let _ = stream.shutdown().await;
                return;
            }
            if !head_complete(&head) {
                let next = tokio::select! {
                    r = tokio::time::timeout(self.head_timeout, request::read_head(&mut stream, &mut head)) => r,
                    _ = self.cancel.cancelled() => return,
                };
                match next {
                    Ok(Ok(Head::Complete)) => {}
                    Ok(Ok(Head::TooLarge)) => {
                        let refused = error(
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "request head too large\n",
                        );
                        let _ = self
                            .write(&mut stream, &mut out, refused, false, false)
                            .await;
                        return;
                    }
                    // Closed, failed, or idle past the timeout: a keep-alive connection ends
                    // silently, as hyper's did.
                    Ok(Ok(Head::Closed) | Err(_)) | Err(_) => return,
                }
            }
        }
    }

    /// Parses the request at the start of `head`: what it asks, and its length in bytes.
    fn read<'h>(&'h self, head: &[u8], peer: SocketAddr) -> Option<(Asked<'h>, usize)> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = parse(head, &mut headers)?;
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map_or(&b""[..], |h| h.value)
        };
        let connection = header("connection");
        let says = |token: &[u8]| {
            connection
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        };
        // HTTP/1.1 stays open unless told otherwise; HTTP/1.0 only when it asks.
        let keep_alive = if req.version == 1 {
            !says(b"close")
        } else {
            says(b"keep-alive")
        };
        let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
        let prepared = hls::prepare(
            self.hls,
            path,
            query,
            hls::takes_gzip(header("accept-encoding")),
            header("user-agent"),
            peer.ip(),
        );
        let asked = Asked {
            prepared,
            head_only: req.head_only,
            keep_alive,
        };
        Some((asked, req.used))
    }

    /// Writes `resp` (only its head for a `HEAD`), with `Connection: close` unless `keep`.
    async fn write(
        &self,
        stream: &mut TcpStream,
        out: &mut Vec<u8>,
        mut resp: Response<Body>,
        head_only: bool,
        keep: bool,
    ) -> io::Result<()> {
        super::routes::common_headers(resp.headers_mut());
        let chunks: &[Bytes] = match resp.body() {
            Body::Full(Some(b)) => std::slice::from_ref(b),
            Body::Chunks(chunks, next) => chunks.get(*next..).unwrap_or_default(),
            _ => &[],
        };
        let length: usize = chunks.iter().map(Bytes::len).sum();
        out.clear();
        let status = resp.status();
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        for (name, value) in resp.headers() {
            title_case(out, name.as_str());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(
            out,
            "Content-Length: {length}\r\nDate: {}\r\n",
            crate::dates::http_date(SystemTime::now())
        );
        if !keep {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let body = if head_only { &[][..] } else { chunks };
        tokio::time::timeout(self.stall_limit, write_all(stream, out, body))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }
}

/// `content-type` → `Content-Type`, as hyper's `title_case_headers` wrote them.
fn title_case(out: &mut Vec<u8>, name: &str) {
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

/// Writes `head` then every chunk, with as few `writev` calls as the socket allows.
async fn write_all(stream: &mut TcpStream, head: &[u8], chunks: &[Bytes]) -> io::Result<()> {
    // Where the write stands: `at` bytes into piece `piece` (0 = the head, i = chunks[i - 1]).
    let (mut piece, mut at) = (0usize, 0usize);
    let count = chunks.len() + 1;
    let piece_bytes = |i: usize| if i == 0 { head } else { &chunks[i - 1][..] };
    while piece < count {
        let mut slices = [IoSlice::new(&[]); 64];
        let mut n = 0;
        for (i, slice) in slices.iter_mut().enumerate() {
            let p = piece + i;
            if p >= count {
                break;
            }
            let bytes = piece_bytes(p);
            *slice = IoSlice::new(if i == 0 { &bytes[at..] } else { bytes });
            n += 1;
        }
        let mut written = stream.write_vectored(&slices[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while piece < count {
            let left = piece_bytes(piece).len() - at;
            if written < left {
                at += written;
                break;
            }
            written -= left;
            piece += 1;
            at = 0;
        }
    }
    Ok(())
}

fn error(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_this_path_takes() {
        assert!(wanted(
            b"GET /hls/radio.aac/live.m3u8?_HLS_msn=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(wanted(b"HEAD /hls/master.m3u8 HTTP/1.0\r\n\r\n"));
        assert!(wanted(
            b"GET /hls/a/1.aac HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        ));
        for other in [
            &b"GET /radio.mp3 HTTP/1.1\r\n\r\n"[..],
            b"POST /hls/master.m3u8 HTTP/1.1\r\nContent-Length: 2\r\n\r\nxx",
            b"GET /hls/master.m3u8 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /hls/master.m3u8 HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET /hls/master.m3u8 HTTP/1.1\r\n",
            b"\x00\x01garbage\r\n\r\n",
        ] {
            assert!(!wanted(other), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn header_names_are_title_cased() {
        let mut out = Vec::new();
        title_case(&mut out, "access-control-expose-headers");
        assert_eq!(out, b"Access-Control-Expose-Headers");
    }

    #[tokio::test]
    async fn a_vectored_write_sends_every_piece_in_order_whatever_the_socket_takes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // More pieces than one writev takes, and more bytes than the socket buffers at once.
        let chunks: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1000 + i as usize]))
            .collect();
        let expected: Vec<u8> = b"HEAD"
            .iter()
            .copied()
            .chain(chunks.iter().flat_map(|c| c.iter().copied()))
            .collect();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut s, &mut got)
                .await
                .unwrap();
            got
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        write_all(&mut stream, b"HEAD", &chunks).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
