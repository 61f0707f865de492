//! A TCP proxy in front of a real gateway that makes one kind of fault the gateway will not make
//! on its own: the body of an object whose key contains a marker stops after its first bytes
//! (as a disk or a network path that dies mid-transfer would) while every other request, on
//! other connections, is answered as usual. Bytes pass through unchanged, so the S3 signatures
//! the gateway checks stay valid.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct StallProxy {
    pub addr: SocketAddr,
    /// Responses held back so far.
    pub stalled: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Forwards to `upstream`; a response to a request naming `marker` stops after `pass`
    /// bytes and never resumes.
    pub async fn start(upstream: SocketAddr, marker: &'static str, pass: usize) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&stalled);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, marker.as_bytes(), pass, counter).await;
                    }
                });
            }
        });
        StallProxy {
            addr,
            stalled,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a `GET` request line in `data` names `marker`. Only request lines count: request
/// bodies (the radio's saved playout state lists upcoming keys) must not mark a connection.
fn names_in_request_line(data: &[u8], marker: &[u8]) -> bool {
    let mut rest = data;
    while let Some(at) = rest.windows(4).position(|w| w == b"GET ") {
        let line = &rest[at..];
        let end = line
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(line.len());
        if line[..end].windows(marker.len()).any(|w| w == marker) {
            return true;
        }
        rest = &line[end..];
    }
    false
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    marker: &[u8],
    pass: usize,
    stalled: Arc<AtomicUsize>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let marked = AtomicBool::new(false);
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if names_in_request_line(&buf[..n], marker) {
                marked.store(true, Ordering::Relaxed);
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = pass;
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut n = n;
            if marked.load(Ordering::Relaxed) {
                n = n.min(left);
                left -= n;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
            if marked.load(Ordering::Relaxed) && left == 0 {
                stalled.fetch_add(1, Ordering::Relaxed);
                // Holds the connection open and silent until the client gives up on it.
                std::future::pending::<()>().await;
            }
        }
    };
    // Whichever side ends first (the client closing a stalled connection) ends both.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
