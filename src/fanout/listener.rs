//! One admitted listener after its request was read: its socket, its place in the stream, its
//! listener slot, and the accounting done when it ends (metrics, log line, access log).
//!
//! A listener is written in batches: at most once per its mount's `write_interval` (750 ms by
//! default: players hold seconds of audio, so the batching is inaudible, and it is several
//! times fewer writes than one per publish) unless it has fallen a second or more behind. The
//! number of writes, not their size, is what a listener costs (on loopback a send costs about
//! the same at 1.6 KB as at 8 KB).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::access_log::{AccessLog, AccessRecord};
use super::position::{Flow, StreamPos};
use crate::metrics::Disconnect;
use crate::ring::Window;
use crate::station::{ListenerSlot, Mount};

/// A listener this many frames behind (about a second) is written at once, interval or not:
/// a new listener catching up on its burst, or any listener when the pipeline runs unpaced.
const EAGER_FRAMES: u64 = 38;
/// `writev` calls per listener per turn; a listener that can take more gets them next turn.
const WRITES_PER_TURN: usize = 4;

/// What the request said about the listener, for the admin pages and the access log. Each
/// string is cut to `http::request::MAX_STORED` bytes when the head is read.
#[derive(Debug)]
pub struct ListenerRequest {
    pub request_line: String,
    pub user_agent: Arc<str>,
    pub referer: String,
    pub icy: bool,
    pub connected: Instant,
}

/// An admitted listener.
pub struct Listener {
    /// First, so it is dropped first: the listener is off the mount's count and list before
    /// its socket closes, so whoever sees the stream end sees it gone too.
    _slot: ListenerSlot,
    socket: TcpStream,
    pos: StreamPos,
    mount: Arc<Mount>,
    /// The mount's index in `Mounts`, which is the fan-out thread's window index.
    pub(super) mount_index: usize,
    access_log: Arc<AccessLog>,
    kicked: Arc<AtomicBool>,
    peer: SocketAddr,
    request: ListenerRequest,
    connected_at: SystemTime,
    next_write: Instant,
    /// Bytes of `pos.sent()` already added to the `sent_bytes` counter.
    counted: u64,
    first_byte: bool,
    end: Option<Disconnect>,
}

impl Listener {
    /// The user agent it sent (for fault injection in tests).
    pub(super) fn user_agent(&self) -> &str {
        &self.request.user_agent
    }

    /// A listener that will be sent `pos` over `socket` (non-blocking).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        socket: TcpStream,
        pos: StreamPos,
        mount: Arc<Mount>,
        mount_index: usize,
        access_log: Arc<AccessLog>,
        slot: ListenerSlot,
        kicked: Arc<AtomicBool>,
        peer: SocketAddr,
        request: ListenerRequest,
        id: u64,
    ) -> Listener {
        // Spread listeners over the interval so each fan-out turn writes to a fifth of them,
        // even when thousands arrive at the same instant.
        let interval = mount.config.write_interval;
        let phase = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) % interval.as_millis().max(1) as u64;
        Listener {
            socket,
            pos,
            mount,
            mount_index,
            access_log,
            _slot: slot,
            kicked,
            peer,
            request,
            connected_at: SystemTime::now(),
            next_write: Instant::now() + Duration::from_millis(phase),
            counted: 0,
            first_byte: false,
            end: None,
        }
    }

    /// Writes what is due and reports whether the listener ends, and why. `now` is the turn's
    /// clock reading; `force` writes regardless of the interval (first write, shutdown).
    pub fn turn(&mut self, window: &Window, now: Instant, force: bool) -> Option<Disconnect> {
        if self.kicked.load(Ordering::Relaxed) {
            tracing::info!(mount = %self.mount.config.path, listener = %self.peer, "listener disconnected by an operator");
            return Some(Disconnect::Admin);
        }
        if self.pos.lagged(window) {
            tracing::info!(mount = %self.mount.config.path, listener = %self.peer, "dropping listener that fell behind");
            return Some(Disconnect::Lagged);
        }
        let due = force
            || now >= self.next_write
            || self.pos.frames_behind(window) >= EAGER_FRAMES
            || window.closed();
        if !due {
            return None;
        }
        self.next_write = now + self.mount.config.write_interval;
        let result = self.pos.write_to(&mut self.socket, window, WRITES_PER_TURN);
        if !self.first_byte && self.pos.sent() > 0 {
            self.first_byte = true;
            self.mount
                .metrics
                .time_to_first_byte
                .observe(self.request.connected.elapsed().as_secs_f64());
        }
        match result {
            Ok(_) if window.closed() => Some(Disconnect::Shutdown),
            Ok(Flow::Drained | Flow::Blocked) => None,
            Err(e) => {
                if !is_peer_gone(&e) {
                    tracing::debug!(listener = %self.peer, error = %e, "listener write failed");
                }
                Some(Disconnect::Client)
            }
        }
    }

    /// Bytes written since the last call, for the `sent_bytes` counter.
    pub fn take_uncounted(&mut self) -> u64 {
        let n = self.pos.sent() - self.counted;
        self.counted = self.pos.sent();
        n
    }

    /// Ends the listener for `reason` (dropping it does the accounting).
    pub fn end(mut self, reason: Disconnect) {
        self.end = Some(reason);
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl Drop for Listener {
    fn drop(&mut self) {
        let uncounted = self.take_uncounted();
        let path = self.mount.config.path.as_str();
        let metrics = &self.mount.metrics;
        if uncounted > 0 {
            metrics.sent_bytes.inc_by(uncounted);
        }
        let reason = self.end.unwrap_or(Disconnect::Client);
        metrics.listeners.dec();
        metrics.disconnected(reason);
        let duration = self.request.connected.elapsed();
        let sent = self.pos.sent();
        tracing::info!(
            mount = %path,
            listener = %self.peer,
            user_agent = %self.request.user_agent,
            reason = reason.label(),
            seconds = duration.as_secs(),
            bytes = sent,
            "listener disconnected"
        );
        // The strings move into the record: no copy, no formatting and no I/O on this thread.
        self.access_log.record(AccessRecord {
            ip: self.peer.ip(),
            request_line: std::mem::take(&mut self.request.request_line),
            status: 200,
            bytes: sent,
            referer: std::mem::take(&mut self.request.referer),
            user_agent: Arc::clone(&self.request.user_agent),
            connected_at: self.connected_at,
            duration,
        });
    }
}
