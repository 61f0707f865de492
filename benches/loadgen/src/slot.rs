//! The record each connection keeps ([`Slot`]) and the run-wide state ([`Shared`]): listener tasks
//! write them through atomics while they stream, the orchestrator and the report read them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
use std::time::Instant;

use crate::cli::Config;

/// What the orchestrator tells every listener task through a `watch` channel, in this order.
pub mod phase {
    /// Connecting: not measuring yet.
    pub const RAMP: u8 = 0;
    /// The window has opened: record its start edge, then every arrival.
    pub const WINDOW: u8 = 1;
    /// The window has closed: record its end edge and stop.
    pub const END: u8 = 2;
}

/// Connection states, as stored in [`Slot::state`].
pub mod st {
    /// Connecting, or never started (a zeroed slot).
    #[allow(dead_code)]
    pub const PENDING: u8 = 0;
    pub const STREAMING: u8 = 1;
    /// Streaming, then the server closed the connection (EOF).
    pub const CLOSED: u8 = 2;
    /// Streaming, then the connection was reset or failed.
    pub const BROKEN: u8 = 3;
    /// The window ended with this connection still streaming: held.
    pub const HELD: u8 = 4;
    pub const FAIL_REFUSED: u8 = 10;
    pub const FAIL_RESET: u8 = 11;
    pub const FAIL_TIMEOUT: u8 = 12;
    pub const FAIL_HTTP: u8 = 13;
    pub const FAIL_OTHER: u8 = 14;
    /// The server closed the connection without an answer (or after a 200 head, before any body).
    pub const FAIL_CLOSED: u8 = 15;
}

/// One connection's progress and measurements. Written by its listener task, read by the
/// orchestrator and the report.
#[derive(Default)]
pub struct Slot {
    /// One of the [`st`] constants.
    pub state: AtomicU8,
    /// Body bytes received so far.
    pub bytes: AtomicU64,
    /// Body bytes at the window's start and end (u64::MAX = not recorded).
    pub win0: AtomicU64,
    pub win1: AtomicU64,
    /// When they were recorded, microseconds since the run began.
    pub win0_us: AtomicU64,
    pub win1_us: AtomicU64,
    /// Byte count and time (µs since the run began) right after the first and the latest read
    /// that brought data inside the window (u64::MAX = none yet): the bitrate between two
    /// arrivals is exact whatever the server's write batching, where the edges cut a batch.
    pub arr0: AtomicU64,
    pub arr0_us: AtomicU64,
    pub arr1: AtomicU64,
    pub arr1_us: AtomicU64,
    /// Microseconds from the start of `connect` to the first body byte (0 = none).
    pub ttfb_us: AtomicU32,
    /// Microseconds from the start of `connect` to `--burst-bytes` body bytes (0 = none).
    pub burst_us: AtomicU32,
    /// Milliseconds from the window's start to a drop (CLOSED/BROKEN after streaming).
    pub dropped_after_ms: AtomicU32,
    /// HTTP status when not 200, or errno for FAIL_OTHER.
    pub detail: AtomicU32,
    /// Seconds of a non-200 answer's `Retry-After` (0 = none).
    pub retry_after: AtomicU32,
}

impl Slot {
    /// A slot with nothing recorded yet: the window edges and arrivals start as "not recorded".
    pub fn new() -> Slot {
        Slot {
            win0: AtomicU64::new(u64::MAX),
            win1: AtomicU64::new(u64::MAX),
            arr0: AtomicU64::new(u64::MAX),
            arr1: AtomicU64::new(u64::MAX),
            ..Slot::default()
        }
    }
}

/// The run-wide state every listener task holds a handle to.
pub struct Shared {
    pub cfg: Config,
    pub slots: Vec<Slot>,
    /// Connections that have resolved: streaming, or failed.
    pub resolved: AtomicUsize,
    /// The request head every listener sends.
    pub request: Vec<u8>,
    /// Set when the measurement window opens.
    pub window_start: OnceLock<Instant>,
    /// The run's start, for the edge timestamps.
    pub epoch: Instant,
}
