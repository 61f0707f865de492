//! A flood of junk connections with the default limits: idle sockets, byte-a-second heads and
//! more event subscribers than allowed. New listeners and health checks must still be served at
//! once (issue 11).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::support::{RawStream, TestServer, config_for, library_with, until};

const IDLE: usize = 3000;
const SLOW: usize = 500;
const SUBSCRIBERS: usize = 500;
/// Connections opened at once while building the flood (the listen backlog is 4096).
const CONNECT_BATCH: usize = 200;

/// Opens `n` connections that never send a byte.
async fn idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    while sockets.len() < n {
        let mut batch = JoinSet::new();
        for _ in 0..CONNECT_BATCH.min(n - sockets.len()) {
            batch.spawn(TcpStream::connect(addr));
        }
        while let Some(s) = batch.join_next().await {
            sockets.push(s.unwrap().unwrap());
        }
    }
    sockets
}

/// A client sending its head one byte a second; returns the status it got (0: closed).
async fn slowloris(addr: SocketAddr) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = b"GET /radio.mp3 HTTP/1.1\r\nHost: flood\r\nUser-Agent: slow\r\n\r\n";
    let mut buf = [0u8; 512];
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::select! {
            r = s.read(&mut buf) => {
                return match r {
                    Ok(n) if n >= 12 => std::str::from_utf8(&buf[9..12]).ok().and_then(|c| c.parse().ok()).unwrap_or(0),
                    _ => 0,
                };
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    0
}

/// An event subscriber: the status it got (0: closed before an answer), and its socket.
async fn subscriber(addr: SocketAddr) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: flood\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let status = match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => std::str::from_utf8(&buf[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_connections_leaves_listeners_served_at_once() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    // `run` raised this process's soft descriptor limit to the hard one: the flood below needs
    // about 8,000 descriptors in this process (both ends of every connection).
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    assert_eq!(soft, hard, "run() raises the soft limit");
    assert!(
        soft >= 9000,
        "this test needs 9,000 descriptors; the hard limit is {hard}"
    );
    let addr = server.addr;

    let idle_sockets = idle(addr, IDLE).await;
    let slow: Vec<_> = (0..SLOW).map(|_| tokio::spawn(slowloris(addr))).collect();
    // Let the slow heads start before the subscribers come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| tokio::spawn(subscriber(addr)))
        .collect();
    let mut streams = Vec::new();
    let (mut ok, mut refused, mut closed) = (0, 0, 0);
    for s in subscribers {
        let (status, socket) = s.await.unwrap();
        match status {
            200 => ok += 1,
            503 => refused += 1,
            _ => closed += 1,
        }
        streams.push(socket);
    }
    eprintln!("event subscribers: {ok} streams, {refused} refused (503), {closed} closed");
    assert_eq!(ok, 256, "max_event_subscribers streams are served");
    assert!(refused > 0, "the others get 503");
    assert_eq!(ok + refused + closed, SUBSCRIBERS);

    // The flood is still there (slow heads still arriving, streams open): a new listener gets
    // its first audio at once, and the health check answers.
    let t = Instant::now();
    let mut l = RawStream::get(addr, "/radio.mp3", "").await;
    assert_eq!(l.status_line, "HTTP/1.0 200 OK");
    let first = l.read(1, Duration::from_secs(5)).await;
    let first_audio = t.elapsed();
    eprintln!("first audio under the flood after {first_audio:?}");
    assert_eq!(first.len(), 1);
    assert!(
        first_audio < Duration::from_secs(1),
        "first audio took {first_audio:?}"
    );
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // It goes on streaming while the flood ends: 5 s of audio beyond the burst.
    let listening =
        tokio::spawn(async move { l.read(7 * 16_000, Duration::from_secs(60)).await.len() });

    // Every idle socket and every slow head is closed by the server in the end: evicted for
    // newer connections, or past the head timeout.
    let open = Arc::new(AtomicUsize::new(IDLE));
    let mut closers = JoinSet::new();
    for mut s in idle_sockets {
        let open = Arc::clone(&open);
        closers.spawn(async move {
            let mut buf = [0u8; 16];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await
            {
                open.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    while closers.join_next().await.is_some() {}
    assert_eq!(open.load(Ordering::Relaxed), 0, "idle sockets left open");
    let mut slow_statuses = std::collections::BTreeMap::new();
    for s in slow {
        *slow_statuses.entry(s.await.unwrap()).or_insert(0) += 1;
    }
    eprintln!("slow heads, by status (0 = closed silently): {slow_statuses:?}");
    assert!(
        slow_statuses.keys().all(|s| [0, 408, 503].contains(s)),
        "{slow_statuses:?}"
    );
    let evicted = server
        .metric("onair_connections_rejected_total{reason=\"evicted\"}")
        .await;
    let timed_out = server
        .metric("onair_connections_rejected_total{reason=\"head_timeout\"}")
        .await;
    eprintln!("evicted {evicted}, head timeouts {timed_out}");
    assert!(evicted + timed_out >= (IDLE + SLOW) as f64);
    assert_eq!(
        server
            .metric("onair_connections_rejected_total{reason=\"max_event_subscribers\"}")
            .await,
        refused as f64
    );
    assert_eq!(
        listening.await.unwrap(),
        7 * 16_000,
        "the listener kept streaming"
    );
    drop(streams);
    until(Duration::from_secs(60), "event streams closed", || async {
        (server.metric("onair_event_subscribers").await == 0.0).then_some(())
    })
    .await;
    server.shutdown().await.unwrap();
}
