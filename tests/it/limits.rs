//! Connection limits: request heads (size, time), `max_connections`, `max_event_subscribers`,
//! `max_listeners_per_ip`, what a listener keeps of its head, and a flood of junk connections
//! that must leave new listeners served at once.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::raw::{self, Answer};
use crate::support::{
    ADMIN_PASSWORD, RawStream, TestServer, admin_config_for, config_for, library_with, until,
};

/// Opens an event stream and reads its answer's head (and for a 200, the first event).
async fn subscribe(addr: std::net::SocketAddr) -> (TcpStream, Answer) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/events HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        // Until the head, plus the first event for a stream; a refusal closes.
        while !(bytes.windows(4).any(|w| w == b"\r\n\r\n")
            && (bytes.starts_with(b"HTTP/1.1 503") || bytes.windows(6).any(|w| w == b"data: ")))
        {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (
        s,
        Answer {
            bytes,
            closed: false,
        },
    )
}

#[tokio::test]
async fn heads_over_8_kib_get_431_whoever_would_answer_them() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(admin_config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let limit = Duration::from_secs(10);
    for path in ["/radio.mp3", "/status-json.xsl"] {
        let a = raw::exchange(server.addr, &raw::head_of_size(path, 8 * 1024 + 1), limit).await;
        assert_eq!(a.status(), Some(431), "{path}: {:?}", a);
        assert!(a.closed, "{path}: closed after the 431");
        // A big head that fits is served, by hyper too: its buffer is no smaller than ours.
        let a = raw::head(server.addr, &raw::head_of_size(path, 8 * 1024), limit).await;
        assert_eq!(a.status(), Some(200), "{path}: {:?}", a.status());
    }
    // A listener keeps at most 256 bytes of each string of its head.
    let agent = format!("Player/{}", "é".repeat(1500));
    let mut l = RawStream::get(
        server.addr,
        "/radio.mp3",
        &format!(
            "User-Agent: {agent}\r\nReferer: http://{}\r\n",
            "r".repeat(3000)
        ),
    )
    .await;
    assert_eq!(l.status_line, "HTTP/1.0 200 OK");
    l.read(1000, limit).await;
    let xml = reqwest::Client::new()
        .get(server.url("/admin/listclients?mount=/radio.mp3"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let stored = doc
        .descendants()
        .filter(|n| n.has_tag_name("UserAgent"))
        .find_map(|n| n.text().filter(|t| t.starts_with("Player/")))
        .unwrap_or_else(|| panic!("no UserAgent in {xml}"));
    assert!(
        stored.len() <= 256 && stored.len() >= 250,
        "{}",
        stored.len()
    );
    assert!(agent.starts_with(stored), "cut on a character boundary");
    assert_eq!(
        server
            .metric("onair_connections_rejected_total{reason=\"head_too_large\"}")
            .await,
        2.0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_head_not_finished_in_time_is_closed() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let mut config = config_for(lib.path(), "");
    config.server.head_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let limit = Duration::from_secs(15);
    let started = Instant::now();
    // Nothing sent: closed without a word, as Icecast does.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Half a head: told why.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET /radio.mp3 HTTP/1.1\r\nHost: t")
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        raw::read_answer(&mut silent, limit),
        raw::read_answer(&mut partial, limit)
    );
    assert!(a.closed && a.bytes.is_empty(), "{a:?}");
    assert!(b.closed, "{b:?}");
    assert_eq!(b.status(), Some(408), "{b:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    assert_eq!(
        server
            .metric("onair_connections_rejected_total{reason=\"head_timeout\"}")
            .await,
        2.0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn event_streams_past_the_limit_get_503_with_retry_after() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let mut config = config_for(lib.path(), "");
    config.server.max_event_subscribers = 2;
    let server = TestServer::start(config).await;
    let (a, first) = subscribe(server.addr).await;
    let (_b, second) = subscribe(server.addr).await;
    assert_eq!((first.status(), second.status()), (Some(200), Some(200)));
    let (_, third) = subscribe(server.addr).await;
    assert_eq!(third.status(), Some(503), "{third:?}");
    let retry: u32 = third.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry));
    assert_eq!(server.metric("onair_event_subscribers").await, 2.0);
    // A subscriber that leaves gives its place back.
    drop(a);
    until(Duration::from_secs(40), "the place given back", || async {
        (server.metric("onair_event_subscribers").await == 1.0).then_some(())
    })
    .await;
    let (_c, again) = subscribe(server.addr).await;
    assert_eq!(again.status(), Some(200));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_past_max_connections_get_503_at_once() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let mut config = config_for(lib.path(), "");
    config.server.max_connections = 3;
    config.server.max_event_subscribers = 3;
    let server = TestServer::start(config).await;
    server.wait_ready().await;
    // Three event streams hold every slot past their head: none can be evicted.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let (s, a) = subscribe(server.addr).await;
        assert_eq!(a.status(), Some(200));
        streams.push(s);
    }
    // Answered without sending anything, and closed.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let a = raw::read_answer(&mut s, Duration::from_secs(10)).await;
    assert_eq!(a.status(), Some(503), "{a:?}");
    assert!(a.header("retry-after").is_some() && a.closed);
    // A listener is admitted once a slot is free, and then leaves the gate.
    drop(streams.pop());
    let mut l = until(Duration::from_secs(40), "a free slot", || async {
        let l = RawStream::get(server.addr, "/radio.mp3", "").await;
        (l.status_line == "HTTP/1.0 200 OK").then_some(l)
    })
    .await;
    assert!(!l.read(1000, Duration::from_secs(10)).await.is_empty());
    assert!(
        server
            .metric("onair_connections_rejected_total{reason=\"max_connections\"}")
            .await
            >= 1.0
    );
    server.shutdown().await.unwrap();
}

/// A listener connected from `local` (any 127.0.0.0/8 address).
async fn listen_from(addr: std::net::SocketAddr, local: &str) -> RawStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    RawStream::from_stream(socket.connect(addr).await.unwrap(), addr, "/radio.mp3", "").await
}

#[tokio::test]
async fn listeners_per_ip_are_capped_per_mount() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\nmax_listeners_per_ip = 2\n",
    ))
    .await;
    server.wait_ready().await;
    let a = listen_from(server.addr, "127.0.0.1").await;
    let _b = listen_from(server.addr, "127.0.0.1").await;
    let third = listen_from(server.addr, "127.0.0.1").await;
    assert_eq!(a.status_line, "HTTP/1.0 200 OK");
    assert_eq!(third.status_line, "HTTP/1.0 503 Service Unavailable");
    assert!(third.header("retry-after").is_some());
    let other = listen_from(server.addr, "127.0.0.2").await;
    assert_eq!(other.status_line, "HTTP/1.0 200 OK", "another address");
    assert_eq!(
        server
            .metric("onair_listener_disconnects_total{mount=\"/radio.mp3\",reason=\"ip_limit\"}")
            .await,
        1.0
    );
    // A listener that leaves frees its address's place (noticed at its next write).
    drop(a);
    until(Duration::from_secs(10), "the place freed", || async {
        let l = listen_from(server.addr, "127.0.0.1").await;
        (l.status_line == "HTTP/1.0 200 OK").then_some(())
    })
    .await;
    server.shutdown().await.unwrap();
}
