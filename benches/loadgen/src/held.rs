//! One soak listener connection, from connect until the soak closes it (by aborting its task) or
//! the server does: open it as every listener is opened (`listener::open`), then read as fast as
//! the server sends, recording after every read that brought data the byte count and the time.
//! The soak takes those arrivals as each minute's edges: both fall right after a server write, so
//! the bytes between them are whole writes and the bitrate over the minute is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::cli::Config;
use crate::listener::{self, READ_BUF, ReadOutcome};

/// Connection states, as stored in [`Conn::state`].
pub mod state {
    pub const PENDING: u8 = 0;
    pub const STREAMING: u8 = 1;
    /// Streaming, then the server closed it.
    pub const DROPPED: u8 = 2;
    /// Streaming, then a reset or another error.
    pub const BROKEN: u8 = 3;
    /// Never streamed ([`super::Conn::failure`] says why).
    pub const FAILED: u8 = 4;
}

/// What every soak connection shares.
pub struct Ctx {
    pub cfg: Config,
    /// The request head every listener sends.
    pub request: Vec<u8>,
    /// The run's start: arrival times are milliseconds since it.
    pub epoch: Instant,
}

/// One connection's record, written by its task and read by the soak. A reconnect gets a new
/// one, so a task that is being aborted can never write into its successor's record.
#[derive(Default)]
pub struct Conn {
    /// One of the [`state`] constants.
    pub state: AtomicU8,
    /// The latest read that brought data: milliseconds since the epoch in the high 32 bits,
    /// body bytes so far (wrapping) in the low 32, in one atomic so the pair is never torn.
    pub arrival: AtomicU64,
    /// When the first body byte came, milliseconds since the epoch.
    pub since_ms: AtomicU32,
    /// Microseconds from the start of `connect` to the first body byte.
    pub ttfb_us: AtomicU32,
    /// For `FAILED`: the `st::FAIL_*` state and its detail (HTTP status, errno).
    pub failure: AtomicU8,
    pub detail: AtomicU32,
}

/// An arrival as stored in [`Conn::arrival`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Arrival {
    pub ms: u32,
    pub bytes: u32,
}

impl Arrival {
    fn pack(self) -> u64 {
        (self.ms as u64) << 32 | self.bytes as u64
    }

    pub fn unpack(v: u64) -> Arrival {
        Arrival {
            ms: (v >> 32) as u32,
            bytes: v as u32,
        }
    }

    /// kbit/s from `earlier` to `self`; 0 when no data came between them. Bytes wrap at 4 GiB,
    /// far more than a minute brings.
    pub fn kbps_since(self, earlier: Arrival) -> f64 {
        let ms = self.ms.wrapping_sub(earlier.ms);
        if ms == 0 {
            return 0.0;
        }
        self.bytes.wrapping_sub(earlier.bytes) as f64 * 8.0 / ms as f64
    }
}

fn ms_since(epoch: Instant) -> u32 {
    epoch.elapsed().as_millis().min(u32::MAX as u128) as u32
}

/// Listener `i`'s connection: open, then stream until aborted or ended by the server.
pub async fn run(ctx: Arc<Ctx>, i: usize, conn: Arc<Conn>) {
    let cfg = &ctx.cfg;
    let opened = match listener::open(cfg, &ctx.request, i, false).await {
        Ok(o) => o,
        Err(f) => {
            conn.failure.store(f.state, Ordering::Relaxed);
            conn.detail.store(f.detail, Ordering::Relaxed);
            conn.state.store(state::FAILED, Ordering::Release);
            return;
        }
    };
    let stream = opened.stream;
    let mut bytes = opened.body;
    let now = ms_since(ctx.epoch);
    conn.ttfb_us.store(opened.ttfb_us, Ordering::Relaxed);
    conn.since_ms.store(now, Ordering::Relaxed);
    let arrival = |bytes: u64| {
        Arrival {
            ms: ms_since(ctx.epoch),
            bytes: bytes as u32,
        }
        .pack()
    };
    conn.arrival.store(arrival(bytes), Ordering::Relaxed);
    conn.state.store(state::STREAMING, Ordering::Release);

    let mut lowat_set = cfg.lowat == 0;
    let end = loop {
        if stream.readable().await.is_err() {
            break state::BROKEN;
        }
        let mut ended = None;
        for _ in 0..4096 {
            match listener::read_now(&stream, READ_BUF, |_| {}) {
                ReadOutcome::Data(n) => bytes += n as u64,
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    ended = Some(state::DROPPED);
                    break;
                }
                ReadOutcome::Err(_) => {
                    ended = Some(state::BROKEN);
                    break;
                }
            }
        }
        if let Some(s) = ended {
            break s;
        }
        conn.arrival.store(arrival(bytes), Ordering::Relaxed);
        // Past the burst, wake once per `--lowat` bytes rather than once per server write.
        if !lowat_set && bytes >= cfg.burst_bytes {
            lowat_set = true;
            listener::set_rcvlowat(&stream, cfg.lowat);
        }
    };
    conn.state.store(end, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_pack_and_give_the_bitrate_across_a_wrap() {
        let a = Arrival {
            ms: 1_000,
            bytes: u32::MAX - 7_999,
        };
        assert_eq!(Arrival::unpack(a.pack()), a);
        // 960,000 bytes in 60 s = 128 kbit/s, though the byte count wrapped meanwhile.
        let b = Arrival {
            ms: 61_000,
            bytes: a.bytes.wrapping_add(960_000),
        };
        assert!((b.kbps_since(a) - 128.0).abs() < 1e-9);
        assert_eq!(a.kbps_since(a), 0.0);
    }
}
