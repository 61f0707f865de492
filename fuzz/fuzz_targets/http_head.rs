//! The accept path's first look at a connection, on arbitrary bytes: `read_head` (fed in one
//! piece and again in small pieces whose sizes come from the input) and then `dispatch`.
//!
//! Properties: `read_head` stops exactly where the oracle below says (the first `\r\n\r\n` or
//! `\n\n`, `MAX_HEAD`, or the end of the input), whatever the split; `dispatch` only sends a
//! well-formed `GET`/`HEAD` of a configured mount outside hyper, keeps at most `MAX_STORED` bytes
//! of each string, and keeps no control character that could break the access log line.
#![no_main]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use onair::http::request::{self, Dispatch, Head, MAX_HEAD, MAX_PROBE_BYTES, MAX_STORED};
use onair::station::Station;
use tokio::io::{AsyncRead, ReadBuf};

const CONFIG: &str = r#"
[station]
name = "Fuzz FM"
[[mount]]
path = "/radio.mp3"
[[mount]]
path = "/low"
bitrate = 64
"#;

static STATION: LazyLock<Arc<Station>> = LazyLock::new(|| {
    let config = onair::config::parse(CONFIG, Default::default()).expect("fuzz config is valid");
    // Nothing runs the pipeline here: its operator commands are dropped with the receiver.
    Station::new(Arc::new(config), onair::metrics::Metrics::new()).0
});

/// A peer that sends `data` in pieces of the given sizes (cycled), then closes.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = match self.sizes {
            [] => usize::MAX,
            s => usize::from(s[self.turn % s.len()]).max(1),
        };
        self.turn += 1;
        let n = size.min(buf.remaining()).min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Runs `read_head` to its end; the reader never returns `Pending`, so one poll finishes it.
fn read(data: &[u8], sizes: &[u8]) -> (Head, BytesMut) {
    let mut peer = Pieces {
        data,
        sizes,
        turn: 0,
    };
    let mut buf = BytesMut::new();
    let head = {
        let fut = std::pin::pin!(request::read_head(&mut peer, &mut buf));
        match fut.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.expect("an in-memory read cannot fail"),
            Poll::Pending => panic!("read_head waited on a reader that never waits"),
        }
    };
    (head, buf)
}

/// Where the head ends: one past the first `\r\n\r\n` or `\n\n` within the first `MAX_HEAD` bytes.
fn head_end(data: &[u8]) -> Option<usize> {
    let data = &data[..data.len().min(MAX_HEAD)];
    (0..data.len()).find_map(|i| {
        let d = &data[..=i];
        (d.ends_with(b"\r\n\r\n") || d.ends_with(b"\n\n")).then_some(i + 1)
    })
}

fn check_read(data: &[u8], sizes: &[u8]) -> (Head, BytesMut) {
    let (head, buf) = read(data, sizes);
    assert!(buf.len() <= MAX_HEAD, "read {} bytes", buf.len());
    assert_eq!(
        &data[..buf.len()],
        &buf[..],
        "the bytes read are the bytes sent"
    );
    match head_end(data) {
        Some(end) => {
            assert_eq!(head, Head::Complete, "head ends at {end}");
            assert!(buf.len() >= end, "stopped before the blank line");
        }
        None if data.len() >= MAX_HEAD => {
            assert_eq!(head, Head::TooLarge);
            assert_eq!(buf.len(), MAX_HEAD);
        }
        None => {
            assert_eq!(head, Head::Closed);
            assert_eq!(buf.len(), data.len());
        }
    }
    (head, buf)
}

fn no_control(s: &str, what: &str) {
    assert!(
        !s.chars().any(|c| c.is_ascii_control() && c != '\t'),
        "{what} {s:?} holds a control character"
    );
}

fn check_dispatch(head: &[u8]) {
    let station = &*STATION;
    let dispatch = request::dispatch(head, station, Instant::now());
    // What httparse makes of it, independently of dispatch.
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = matches!(req.parse(head), Ok(httparse::Status::Complete(_)));
    let mount_of = |target: &str| {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        station.mounts.iter().position(|m| m.config.path == path)
    };
    match dispatch {
        Dispatch::Hyper => {}
        Dispatch::Listener {
            mount_index,
            request,
        } => {
            assert!(parsed, "a listener from a head httparse refuses");
            assert_eq!(req.method, Some("GET"));
            assert_eq!(mount_of(req.path.unwrap()), Some(mount_index));
            assert!(request.request_line.len() <= MAX_STORED);
            assert!(request.user_agent.len() <= MAX_STORED);
            assert!(request.referer.len() <= MAX_STORED);
            assert!(request.request_line.starts_with("GET /"));
            no_control(&request.request_line, "request line");
            no_control(&request.user_agent, "user agent");
            no_control(&request.referer, "referer");
        }
        Dispatch::Peek {
            mount_index,
            icy,
            range,
            with_body,
        } => {
            assert!(parsed, "a peek from a head httparse refuses");
            let method = req.method.unwrap();
            assert_eq!(with_body, method == "GET", "{method}");
            assert!(method == "GET" || method == "HEAD");
            assert_eq!(mount_of(req.path.unwrap()), Some(mount_index));
            if let Some(n) = range {
                assert!((1..=MAX_PROBE_BYTES).contains(&n), "range {n}");
                assert!(!icy, "a range probe gets plain audio");
            } else {
                assert_eq!(method, "HEAD", "a GET without a probe range is a listener");
            }
        }
    }
}

/// Piece sizes a peer may send in; a first input byte below 0x20 (no request starts with one)
/// picks how many of them, cycled. Any other first byte is part of the request, sent whole.
const PIECES: [u8; 8] = [1, 2, 3, 5, 8, 13, 21, 255];

fuzz_target!(|data: &[u8]| {
    // The first byte may pick how the peer splits its bytes; the rest is what it sends.
    let (sizes, data) = match data.split_first() {
        Some((&k, rest)) if k < 0x20 => (&PIECES[..=usize::from(k % 8)], rest),
        _ => (&[][..], data),
    };
    let (whole, whole_buf) = check_read(data, &[]);
    let (split, split_buf) = check_read(data, sizes);
    assert_eq!(whole, split, "the split changed the outcome");
    if whole == Head::Complete {
        let end = head_end(data).unwrap();
        assert_eq!(whole_buf[..end], split_buf[..end]);
        check_dispatch(&whole_buf);
        // With the bytes after the head (a client that sent its body early) too.
        check_dispatch(&split_buf);
    }
});
