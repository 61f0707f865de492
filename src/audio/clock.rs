//! Real-time pacing: the pipeline produces audio no faster than it would play, so that the rings hold
//! a steady, bounded history. Tests use [`Clock::Unpaced`] to run faster than real time.

use std::time::{Duration, Instant};

/// How the pipeline keeps time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Sleep so that audio time never runs ahead of wall-clock time by more than `lead`.
    Realtime,
    /// Never sleep (benches and tests that only check content).
    Unpaced,
}

/// Tracks how much audio has been produced against the time since the start.
#[derive(Debug)]
pub struct Pacer {
    clock: Clock,
    start: Instant,
    rate: u32,
    frames: u64,
    /// Audio may run this far ahead of the wall clock, so listeners never see an empty ring because
    /// of thread scheduling jitter.
    lead: Duration,
}

impl Pacer {
    pub fn new(clock: Clock, rate: u32, lead: Duration) -> Pacer {
        Pacer {
            clock,
            start: Instant::now(),
            rate,
            frames: 0,
            lead,
        }
    }

    /// Seconds of audio produced so far.
    pub fn audio_time(&self) -> Duration {
        Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate))
    }

    /// Records `frames` more frames of audio and blocks until producing more is due.
    pub fn produced(&mut self, frames: u64) {
        self.frames += frames;
        if self.clock == Clock::Unpaced {
            return;
        }
        let due = self.audio_time().saturating_sub(self.lead);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        } else if elapsed > due + Duration::from_secs(5) {
            // We fell far behind (machine suspended, CPU starved): restart the schedule instead
            // of racing to catch up with a burst that would overflow every listener's queue.
            tracing::warn!(
                behind_ms = (elapsed - due).as_millis() as u64,
                "pipeline fell behind real time; resetting the clock"
            );
            self.start = Instant::now();
            self.frames = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_pacing_sleeps_until_audio_is_due() {
        let mut p = Pacer::new(Clock::Realtime, 1000, Duration::ZERO);
        let t = Instant::now();
        p.produced(50);
        p.produced(50);
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(p.audio_time(), Duration::from_millis(100));
    }

    #[test]
    fn unpaced_never_sleeps() {
        let mut p = Pacer::new(Clock::Unpaced, 1000, Duration::ZERO);
        let t = Instant::now();
        p.produced(1_000_000);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
