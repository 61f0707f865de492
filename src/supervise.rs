//! Watching the stages that must never end while the radio runs: the pipeline thread, the
//! fan-out thread and the scheduler task. One that panics, or ends before shutdown was asked
//! for, is reported to the [`Watchdog`]; `app::run` then turns `/healthz` to 503 and returns an
//! error, so the process exits non-zero and the orchestrator replaces it. Without this, a dead
//! pipeline left every listener connected to silence while the health probe said all was well.
//!
//! Faults inside one track (a decoder that panics on a damaged file) are not this module's: the
//! pipeline and the scheduler catch those per track and skip the track.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::watch;

/// Where stages report that they stopped. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Watchdog {
    dead: Arc<watch::Sender<Option<&'static str>>>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog::new()
    }
}

impl Watchdog {
    pub fn new() -> Watchdog {
        Watchdog {
            dead: Arc::new(watch::Sender::new(None)),
        }
    }

    /// `stage` ended while it should have run on; the first report wins.
    pub fn died(&self, stage: &'static str) {
        self.dead.send_if_modified(|dead| {
            let first = dead.is_none();
            if first {
                *dead = Some(stage);
            }
            first
        });
    }

    /// The stage that died, if one did.
    pub fn dead(&self) -> Option<&'static str> {
        *self.dead.borrow()
    }

    /// Completes when a stage dies, with its name.
    pub async fn wait(&self) -> &'static str {
        let mut rx = self.dead.subscribe();
        // Copied out at once: the watch's read guard must not be held across an await.
        let stage = rx.wait_for(Option::is_some).await.map(|s| *s);
        match stage {
            Ok(Some(stage)) => stage,
            // The sender lives in `self`: it cannot be dropped while this waits.
            _ => std::future::pending().await,
        }
    }

    /// Runs a stage's body on the calling thread: a panic is logged and reported, and so is a
    /// return while `expected_end()` is false.
    pub fn run(&self, stage: &'static str, expected_end: impl Fn() -> bool, body: impl FnOnce()) {
        match std::panic::catch_unwind(AssertUnwindSafe(body)) {
            Ok(()) if expected_end() => {}
            Ok(()) => {
                tracing::error!(stage, "a stage of the radio ended on its own");
                self.died(stage);
            }
            Err(panic) => {
                tracing::error!(stage, panic = %panic_message(&*panic), "a stage of the radio panicked");
                self.died(stage);
            }
        }
    }
}

/// The text of a caught panic, when it has one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Faults on purpose, for the tests that prove the supervision: compiled in only with the
/// `fault-injection` feature, which the test builds enable (a dev-dependency of the crate on
/// itself) and a release build never has. A fault fires when the track key (or the listener's
/// user agent) it is checked against contains `onair-fault-<point>`.
#[cfg(feature = "fault-injection")]
pub fn fault(point: &str, subject: &str) {
    if subject.contains(&format!("onair-fault-{point}")) {
        panic!("fault injected: {point} ({subject})");
    }
}

/// Without the `fault-injection` feature: nothing at all.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn fault(_point: &str, _subject: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_death_is_reported_once() {
        let w = Watchdog::new();
        assert_eq!(w.dead(), None);
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.wait().await }
        });
        w.run("pipeline", || false, || {});
        w.run("fan-out", || false, || panic!("boom"));
        assert_eq!(waiting.await.unwrap(), "pipeline");
        assert_eq!(w.dead(), Some("pipeline"));
    }

    #[test]
    fn an_expected_end_is_no_death() {
        let w = Watchdog::new();
        w.run("scheduler", || true, || {});
        assert_eq!(w.dead(), None);
        w.run("scheduler", || true, || panic!("still a death"));
        assert_eq!(w.dead(), Some("scheduler"));
    }
}
