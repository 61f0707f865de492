//! What the accept loop does when `accept()` fails. Out of descriptors or kernel memory (EMFILE,
//! ENFILE, ENOBUFS, ENOMEM), the next call would fail the same way at once: the loop sleeps a
//! moment instead of spinning, while the connections it has keep being served, and says so at
//! most every [`WARN_EVERY`]. Any other error (ECONNABORTED: a client that gave up while queued)
//! concerns one connection only and is skipped. Every failure is counted by kind. The listening
//! sockets themselves are opened here too, with a backlog sized for reconnect storms.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// Pause after a resource error before accepting again.
pub const BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this long; the next one says how many errors came meanwhile.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Listen backlog. tokio's default (1024) overflows when a few thousand players reconnect at
/// once after a network blip: the kernel then drops the handshake's last ACK, the client believes
/// it is connected and waits seconds for a retransmission. The kernel caps this at
/// `net.core.somaxconn` anyway.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr`, as every port of the radio is opened.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The label of `onair_accept_errors_total` for `e`, and whether the loop should back off.
pub fn kind(e: &io::Error) -> (&'static str, bool) {
    match e.raw_os_error() {
        Some(libc::EMFILE) => ("emfile", true),
        Some(libc::ENFILE) => ("enfile", true),
        Some(libc::ENOBUFS) => ("enobufs", true),
        Some(libc::ENOMEM) => ("enomem", true),
        _ => ("other", false),
    }
}

/// Accept failures of one listening socket.
#[derive(Default)]
pub struct AcceptErrors {
    last_warning: Option<Instant>,
    /// Resource errors since the last warning.
    unreported: u64,
}

impl AcceptErrors {
    /// Counts `e` and returns how long to pause before the next `accept()`, if at all.
    pub fn failed(&mut self, e: &io::Error, metrics: &Metrics) -> Option<Duration> {
        let (kind, back_off) = kind(e);
        metrics.accept_errors.with_label_values(&[kind]).inc();
        if !back_off {
            tracing::debug!(error = %e, "accept failed for one connection; skipped");
            return None;
        }
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            tracing::warn!(
                error = %e,
                kind,
                errors = self.unreported,
                "cannot accept connections: out of descriptors or memory; retrying"
            );
            self.last_warning = Some(now);
            self.unreported = 0;
        }
        Some(BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_resource_errors_back_off() {
        let m = Metrics::new();
        let mut errors = AcceptErrors::default();
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(errors.failed(&e, &m), Some(BACKOFF), "{e}");
        }
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(errors.failed(&aborted, &m), None);
        let text = m.render();
        for line in [
            "onair_accept_errors_total{kind=\"emfile\"} 1",
            "onair_accept_errors_total{kind=\"enomem\"} 1",
            "onair_accept_errors_total{kind=\"other\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}");
        }
    }
}
