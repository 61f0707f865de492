//! A listener's stream: the Icecast-style response head, then frames read from the mount's ring
//! through the listener's own cursor, with ICY metadata interleaved when the player asked for it.
//!
//! This is the hot path. Audio is never copied per listener: frames are `Bytes` shared with every
//! other listener, ICY blocks are built once per title, and splitting a frame at a metadata boundary
//! is a reference-counted slice. The stream ends on lag (the listener fell further behind than the
//! mount's queue) or when the ring closes at shutdown; hyper then closes the connection, as an
//! HTTP/1.0 close-delimited response requires.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::Conn;
use super::access_log::AccessEntry;
use super::icy::IcyInterleaver;
use crate::metrics::Disconnect;
use crate::ring::{Cursor, Frame, Next};
use crate::station::{Client, ListenerSlot, Mount, Station};

/// Frames taken from the ring per wake-up: a few seconds of audio at most, so one listener far
/// behind cannot hog a worker.
const MAX_FRAMES_PER_POLL: usize = 128;
/// Sent bytes are added to the shared counter in steps (about a second of audio), not per write, to keep the hot path free of
/// contended atomics.
const COUNT_STEP: u64 = 16 * 1024;

/// What the request said about the listener, for the admin pages and the access log.
pub struct ListenerRequest {
    pub request_line: String,
    pub user_agent: String,
    pub referer: String,
    pub icy: bool,
    pub connected: Instant,
}

/// The body of one listener's response.
pub struct ListenerStream {
    cursor: Cursor,
    icy: Option<IcyInterleaver>,
    batch: Vec<Frame>,
    chunks: VecDeque<Bytes>,
    /// Scratch for the ICY interleaver.
    split: Vec<Bytes>,
    mount: Arc<Mount>,
    station: Arc<Station>,
    _slot: ListenerSlot,
    peer: SocketAddr,
    stalled: Arc<AtomicBool>,
    kicked: Arc<AtomicBool>,
    request: ListenerRequest,
    connected_at: SystemTime,
    first_byte: bool,
    sent: u64,
    uncounted: u64,
    end: Option<Disconnect>,
}

impl ListenerStream {
    /// Admits a listener to `mount`, or `None` when the mount is full.
    pub fn admit(
        mount: &Arc<Mount>,
        station: &Arc<Station>,
        conn: &Conn,
        request: ListenerRequest,
    ) -> Option<ListenerStream> {
        let kicked = Arc::new(AtomicBool::new(false));
        let slot = mount.admit(Client {
            id: station.client_id(),
            addr: conn.peer,
            user_agent: request.user_agent.clone(),
            connected: request.connected,
            kicked: Arc::clone(&kicked),
        })?;
        let burst = mount.config.burst.bytes(mount.config.bytes_per_sec());
        let cursor = mount.ring.cursor(burst);
        let path = mount.config.path.as_str();
        let metrics = &station.metrics;
        metrics.listeners.with_label_values(&[path]).inc();
        metrics
            .listener_connections
            .with_label_values(&[path])
            .inc();
        tracing::info!(mount = %path, listener = %conn.peer, user_agent = %request.user_agent, "listener connected");
        Some(ListenerStream {
            cursor,
            icy: request
                .icy
                .then(|| IcyInterleaver::new(mount.config.icy_metaint)),
            // Grows to what one wake-up brings (a few frames), not to the per-poll maximum:
            // this is per-listener memory.
            batch: Vec::new(),
            chunks: VecDeque::new(),
            split: Vec::new(),
            mount: Arc::clone(mount),
            station: Arc::clone(station),
            _slot: slot,
            peer: conn.peer,
            stalled: Arc::clone(&conn.stalled),
            kicked,
            request,
            connected_at: SystemTime::now(),
            first_byte: false,
            sent: 0,
            uncounted: 0,
            end: None,
        })
    }

    /// Next chunk for hyper to write, or `None` when the stream is over.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(chunk) = self.chunks.pop_front() {
                self.account(chunk.len() as u64);
                return Poll::Ready(Some(chunk));
            }
            if self.end.is_some() {
                return Poll::Ready(None);
            }
            if self.kicked.load(Ordering::Relaxed) {
                tracing::info!(mount = %self.mount.config.path, listener = %self.peer, "listener disconnected by an operator");
                self.end = Some(Disconnect::Admin);
                continue;
            }
            match self
                .cursor
                .poll_batch(cx, &mut self.batch, MAX_FRAMES_PER_POLL)
            {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Next::Frames) => {
                    for frame in self.batch.drain(..) {
                        match &mut self.icy {
                            Some(icy) => {
                                icy.push(&frame.data, &frame.title, &mut self.split);
                                self.chunks.extend(self.split.drain(..));
                            }
                            None => self.chunks.push_back(frame.data),
                        }
                    }
                }
                Poll::Ready(Next::Lagged { missed }) => {
                    tracing::info!(mount = %self.mount.config.path, listener = %self.peer, missed_frames = missed, "dropping listener that fell behind");
                    self.end = Some(Disconnect::Lagged);
                }
                Poll::Ready(Next::Closed) => self.end = Some(Disconnect::Shutdown),
            }
        }
    }

    fn account(&mut self, n: u64) {
        if !self.first_byte {
            self.first_byte = true;
            self.station
                .metrics
                .time_to_first_byte
                .with_label_values(&[&self.mount.config.path])
                .observe(self.request.connected.elapsed().as_secs_f64());
        }
        self.sent += n;
        self.uncounted += n;
        if self.uncounted >= COUNT_STEP {
            self.flush_count();
        }
    }

    fn flush_count(&mut self) {
        self.station
            .metrics
            .sent_bytes
            .with_label_values(&[&self.mount.config.path])
            .inc_by(self.uncounted);
        self.uncounted = 0;
    }
}

impl Drop for ListenerStream {
    fn drop(&mut self) {
        self.flush_count();
        let path = self.mount.config.path.as_str();
        // A body dropped before it ended means hyper gave up on the socket: the client left, or
        // stopped reading for longer than the queue allows.
        let reason = self.end.unwrap_or(if self.stalled.load(Ordering::Relaxed) {
            Disconnect::Lagged
        } else {
            Disconnect::Client
        });
        let metrics = &self.station.metrics;
        metrics.listeners.with_label_values(&[path]).dec();
        metrics
            .listener_disconnects
            .with_label_values(&[path, reason.label()])
            .inc();
        let duration = self.request.connected.elapsed();
        tracing::info!(
            mount = %path,
            listener = %self.peer,
            user_agent = %self.request.user_agent,
            reason = reason.label(),
            seconds = duration.as_secs(),
            bytes = self.sent,
            "listener disconnected"
        );
        self.station.access_log.record(&AccessEntry {
            ip: self.peer.ip(),
            request_line: &self.request.request_line,
            status: 200,
            bytes: self.sent,
            referer: &self.request.referer,
            user_agent: &self.request.user_agent,
            connected_at: self.connected_at,
            duration,
        });
    }
}
