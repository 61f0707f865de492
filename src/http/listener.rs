//! Answering a listener outside hyper: admission to the mount, the Icecast-style response head
//! and the burst written straight from the accepting task (so the first byte does not wait for a
//! fan-out turn), then the hand-off of the socket to the fan-out thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;

use crate::fanout::position::StreamPos;
use crate::fanout::{FanoutHandle, Listener, ListenerRequest};
use crate::metrics::Disconnect;
use crate::ring::Window;
use crate::station::{Client, Refusal, Station};

/// The answer to a listener when the mount is at `max_listeners`.
const FULL: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 27\r\nRetry-After: 30\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\r\n\
mount is full, retry later\n";
/// The answer when the client's address is at the mount's `max_listeners_per_ip`.
const IP_FULL: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 50\r\nRetry-After: 30\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n\r\n\
too many listeners from your address, retry later\n";

/// Response heads, built once per mount: without and with `icy-metaint`.
pub struct Heads {
    per_mount: Vec<[Bytes; 2]>,
}

impl Heads {
    pub fn new(station: &Station) -> Heads {
        let per_mount = station
            .mounts
            .iter()
            .map(|m| {
                [false, true].map(|icy| {
                    let mut h = HeaderMap::new();
                    super::routes::stream_headers(&mut h, station, m, icy);
                    super::routes::common_headers(&mut h);
                    serialize_head(&h)
                })
            })
            .collect();
        Heads { per_mount }
    }

    fn get(&self, mount_index: usize, icy: bool) -> Bytes {
        self.per_mount
            .get(mount_index)
            .map(|h| h[usize::from(icy)].clone())
            .unwrap_or_default()
    }
}

/// `HTTP/1.0 200 OK` and the headers with their names in title case, as Icecast sends them
/// (some players match `icy-metaint` case-sensitively).
fn serialize_head(headers: &HeaderMap) -> Bytes {
    let mut out = Vec::with_capacity(640);
    out.extend_from_slice(b"HTTP/1.0 200 OK\r\n");
    for (name, value) in headers {
        let mut upper = true;
        for b in name.as_str().bytes() {
            out.push(if upper { b.to_ascii_uppercase() } else { b });
            upper = b == b'-';
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// Admits the listener, writes its head and burst, and passes it to the fan-out thread; or
/// answers 503 when the mount is full.
pub fn answer(
    socket: std::net::TcpStream,
    peer: SocketAddr,
    station: &Arc<Station>,
    heads: &Heads,
    fanout: &FanoutHandle,
    mount_index: usize,
    request: ListenerRequest,
) {
    let Some(mount) = station.mounts.get(mount_index) else {
        return;
    };
    let path = mount.config.path.as_str();
    let metrics = &station.metrics;
    let kicked = Arc::new(AtomicBool::new(false));
    let id = station.client_id();
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
                    (Disconnect::Full, FULL)
                }
                Refusal::PerIp => {
                    tracing::info!(mount = %path, listener = %peer, limit = mount.config.max_listeners_per_ip, "too many listeners from one address; refusing listener");
                    (Disconnect::IpLimit, IP_FULL)
                }
            };
            metrics
                .listener_disconnects
                .with_label_values(&[path, reason.label()])
                .inc();
            // Small enough for any socket buffer; a client that is gone simply misses it.
            let _ = std::io::Write::write(&mut &socket, answer);
            return;
        }
    };
    metrics.listeners.with_label_values(&[path]).inc();
    metrics
        .listener_connections
        .with_label_values(&[path])
        .inc();
    tracing::info!(mount = %path, listener = %peer, user_agent = %request.user_agent, "listener connected");

    let burst = mount.config.burst.bytes(mount.config.bytes_per_sec());
    let seq = mount.ring.burst_start(burst);
    let metaint = request.icy.then_some(mount.config.icy_metaint);
    let pos = StreamPos::new(heads.get(mount_index, request.icy), seq, metaint);
    let mut listener = Listener::new(
        socket,
        pos,
        Arc::clone(mount),
        mount_index,
        Arc::clone(station),
        slot,
        kicked,
        peer,
        request,
        id,
    );
    let mut window = Window::starting_at(seq);
    window.sync(&mount.ring);
    let ended = listener.turn(&window, Instant::now(), true);
    metrics
        .sent_bytes
        .with_label_values(&[path])
        .inc_by(listener.take_uncounted());
    if let Some(reason) = ended {
        listener.end(reason);
    } else {
        fanout.add(listener);
    }
}
