//! Whether the radio is well: the library's condition, when track audio last played, draining
//! at shutdown, and the watchdog of the stages it cannot go on without. `/healthz` and
//! `/readyz` are answered from here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Mounts, Uptime};
use crate::supervise::Watchdog;

/// A mount with no new audio for this long makes the radio not ready.
pub const READY_WINDOW: Duration = Duration::from_secs(2);

/// Why the AutoDJ has nothing to play, when it has nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryState {
    /// Not listed yet.
    Starting,
    /// Playable tracks exist.
    Ready { tracks: usize, playable: usize },
    /// The library lists no playable track.
    Empty { tracks: usize },
    /// The storage cannot be read.
    Unavailable(String),
}

pub struct Health {
    library: Mutex<LibraryState>,
    /// `Uptime` milliseconds at which the pipeline last played track audio (not filler).
    last_track_audio_ms: AtomicU64,
    draining: AtomicBool,
    /// Fires when the radio starts shutting down; long-lived responses (event streams) end on it.
    stopping: CancellationToken,
    /// Where the pipeline, the fan-out thread and the scheduler report an end nobody asked for.
    watchdog: Watchdog,
    uptime: Uptime,
}

impl Health {
    pub fn new(uptime: Uptime) -> Health {
        Health {
            library: Mutex::new(LibraryState::Starting),
            last_track_audio_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            stopping: CancellationToken::new(),
            watchdog: Watchdog::new(),
            uptime,
        }
    }

    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// Cancelled when the radio starts shutting down.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Called by the pipeline for each block that carried track audio.
    pub fn track_audio_played(&self) {
        self.last_track_audio_ms
            .store(self.uptime.now_ms(), Ordering::Relaxed);
    }

    pub fn set_library_state(&self, state: LibraryState) {
        *self.library.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub fn library_state(&self) -> LibraryState {
        self.library
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `/healthz` turns 503 from here on, so load balancers stop sending listeners, and
    /// long-lived responses other than listener streams (event streams) end.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.stopping.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready when every mount published audio lately and that audio is music, not filler.
    /// Otherwise the reasons, for `/readyz`, which anyone may read: generic words and mount
    /// paths only, no addresses, bucket names, keys or error text.
    pub fn readiness(&self, mounts: &Mounts) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.is_draining() {
            why.push("shutting down".to_string());
        }
        let now = self.uptime.now_ms();
        let window = READY_WINDOW.as_millis() as u64;
        for m in mounts {
            let path = &m.config.path;
            match m.last_published_ms() {
                0 => why.push(format!("{path}: no audio produced yet")),
                // The pipeline thread may stamp a time later than `now` meanwhile: saturate.
                last if now.saturating_sub(last) > window => why.push(format!(
                    "{path}: no audio for {:.1} s",
                    now.saturating_sub(last) as f64 / 1000.0
                )),
                _ => {}
            }
        }
        let last_track = self.last_track_audio_ms.load(Ordering::Relaxed);
        if last_track == 0 || now.saturating_sub(last_track) > window {
            why.push(match self.library_state() {
                LibraryState::Starting => "library not listed yet".to_string(),
                LibraryState::Empty { tracks: 0 } => "library is empty: playing silence".into(),
                LibraryState::Empty { tracks } => {
                    format!(
                        "none of the {tracks} files in the library is playable: playing silence"
                    )
                }
                // The storage's error names endpoints, buckets and keys: it goes to the log
                // and the metrics (`scheduler::listing`), never to this public answer.
                LibraryState::Unavailable(_) => "library unavailable: playing silence".into(),
                LibraryState::Ready { .. } => "waiting for the next track: playing silence".into(),
            });
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::config::{Secrets, parse};
    use crate::metrics::Metrics;

    #[test]
    fn ready_only_once_every_mount_has_music_and_never_while_draining() {
        let config = parse(
            "[[mount]]\npath = \"/a.mp3\"\n[[mount]]\npath = \"/b.mp3\"\n",
            Secrets::default(),
        )
        .unwrap();
        let uptime = Uptime::start();
        let mounts = Mounts::new(&config.mounts, &Metrics::new(), SystemTime::now(), uptime);
        let health = Health::new(uptime);
        let why = health.readiness(&mounts).unwrap_err();
        assert_eq!(
            why,
            [
                "/a.mp3: no audio produced yet",
                "/b.mp3: no audio produced yet",
                "library not listed yet"
            ]
        );
        mounts.iter().for_each(|m| m.mark_published());
        health.set_library_state(LibraryState::Unavailable("s3://secret-bucket".into()));
        let why = health.readiness(&mounts).unwrap_err();
        assert_eq!(
            why,
            ["library unavailable: playing silence"],
            "no storage detail"
        );
        health.track_audio_played();
        assert_eq!(health.readiness(&mounts), Ok(()));
        health.set_draining();
        assert!(health.stopping().is_cancelled());
        assert_eq!(health.readiness(&mounts).unwrap_err(), ["shutting down"]);
    }
}
