//! Answering a mount outside hyper. A listener: admission to the mount, the Icecast-style
//! response head and the burst written straight from the accepting task (so the first byte does
//! not wait for a fan-out turn), then the hand-off of the socket to the fan-out thread. A `HEAD`
//! or a small `Range` probe ([`peek`]): the same head, and for a probe its first bytes, never
//! counted as a listener. The heads themselves are `head.rs`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Server;
use super::head::StreamHead;
use crate::fanout::position::StreamPos;
use crate::fanout::{Listener, ListenerRequest};
use crate::metrics::Disconnect;
use crate::ring::Window;
use crate::station::{Client, Mount, Refusal};

/// The answer when the client's address is at the mount's `max_listeners_per_ip`.
const IP_FULL: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 50\r\nRetry-After: 30\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\r\n\
too many listeners from your address, retry later\n";

/// Admits the listener, writes its head and burst, and passes it to the fan-out thread; or
/// answers 503 when the mount is full.
pub fn answer(
    socket: std::net::TcpStream,
    peer: SocketAddr,
    server: &Server,
    mount_index: usize,
    request: ListenerRequest,
) {
    let station = &server.station;
    let (Some(mount), Some(head)) = (
        station.mounts.get(mount_index),
        server.heads.get(mount_index),
    ) else {
        return;
    };
    let path = mount.config.path.as_str();
    let metrics = &mount.metrics;
    let kicked = Arc::new(AtomicBool::new(false));
    let id = station.mounts.client_id();
    let slot = match mount.admit(Client {
        id,
        addr: peer,
        user_agent: Arc::clone(&request.user_agent),
        connected: request.connected,
        kicked: Arc::clone(&kicked),
    }) {
        Ok(slot) => slot,
        Err(refusal) => {
            let (reason, answer) = match refusal {
                Refusal::Full => {
                    tracing::warn!(mount = %path, listener = %peer, limit = mount.config.max_listeners, "mount full; refusing listener");
                    (Disconnect::Full, head.full())
                }
                Refusal::PerIp => {
                    tracing::info!(mount = %path, listener = %peer, limit = mount.config.max_listeners_per_ip, "too many listeners from one address; refusing listener");
                    (Disconnect::IpLimit, bytes::Bytes::from_static(IP_FULL))
                }
            };
            metrics.disconnected(reason);
            // Small enough for any socket buffer; a client that is gone simply misses it.
            let _ = std::io::Write::write(&mut &socket, &answer);
            return;
        }
    };
    metrics.listeners.inc();
    metrics.connections.inc();
    tracing::info!(mount = %path, listener = %peer, user_agent = %request.user_agent, "listener connected");

    let burst = mount.config.burst.bytes(mount.config.bytes_per_sec());
    let seq = mount.ring.burst_start(burst);
    let metaint = request.icy.then_some(mount.config.icy_metaint);
    let mut window = Window::starting_at(seq);
    window.sync(&mount.ring);
    let pos = StreamPos::new(
        with_stream_header(head.ok(request.icy), &window, seq),
        seq,
        metaint,
    );
    let mut listener = Listener::new(
        socket,
        pos,
        Arc::clone(mount),
        mount_index,
        Arc::clone(&server.access_log),
        slot,
        kicked,
        peer,
        request,
        id,
    );
    let ended = listener.turn(&window, Instant::now(), true);
    metrics.sent_bytes.inc_by(listener.take_uncounted());
    if let Some(reason) = ended {
        listener.end(reason);
    } else {
        server.fanout.add(listener);
    }
}

/// The response head, followed by what a stream starting at frame `seq` needs first (an Ogg
/// mount's header pages for the logical stream `seq` belongs to). Copied once a listener, and
/// only on Ogg mounts: a few hundred bytes.
fn with_stream_header(head: bytes::Bytes, window: &Window, seq: u64) -> bytes::Bytes {
    match window.get(seq) {
        Some(f) if !f.header.is_empty() => {
            let mut both = Vec::with_capacity(head.len() + f.header.len());
            both.extend_from_slice(&head);
            both.extend_from_slice(&f.header);
            both.into()
        }
        _ => head,
    }
}

/// How long a `HEAD` or probe answer may take to write before the connection is dropped.
const PEEK_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers a `HEAD` of a mount (`with_body` false) or a `Range: bytes=0-N` probe (`range` =
/// N + 1; Safari sends one before it plays): the listener's head, and for a probe a `206` with
/// that many bytes from the live stream. Neither is a listener, so neither is counted.
pub async fn peek(
    mut stream: TcpStream,
    peer: SocketAddr,
    mount: &Mount,
    head: &StreamHead,
    icy: bool,
    range: Option<u64>,
    with_body: bool,
) {
    let answer = match range {
        Some(len) => {
            let data = first_bytes(mount, len);
            // Only in the first moments after start can the ring be empty: with no bytes to
            // range over, the plain head and no body; the player asks again.
            if data.is_empty() {
                head.ok(false).to_vec()
            } else {
                let mut out = head.partial(data.len());
                if with_body {
                    out.extend_from_slice(&data);
                }
                out
            }
        }
        None => head.ok(icy).to_vec(),
    };
    let written = tokio::time::timeout(PEEK_WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(peer = %peer, "a HEAD or probe answer could not be written");
    }
}

/// Up to `len` bytes from a little before the live edge, starting at a frame boundary.
fn first_bytes(mount: &Mount, len: u64) -> Vec<u8> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let start = mount
        .ring
        .burst_start(len.saturating_mul(2).saturating_add(8192));
    let mut window = Window::starting_at(start);
    window.sync(&mount.ring);
    let mut data = Vec::with_capacity(len.min(64 * 1024));
    if let Some(f) = window.get(start) {
        data.extend_from_slice(&f.header);
    }
    let mut seq = start;
    while data.len() < len
        && let Some(f) = window.get(seq)
    {
        data.extend_from_slice(&f.data);
        seq += 1;
    }
    data.truncate(len);
    data
}
