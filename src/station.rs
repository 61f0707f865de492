//! The live state of the radio that the pipeline, the scheduler and the HTTP side share: each mount's
//! ring and listener counts, what is playing, the library's condition, and readiness.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::config::{Config, MountConfig};
use crate::http::icy::StreamTitle;
use crate::metrics::Metrics;
use crate::ring::FrameRing;

/// A mount with no new audio for this long makes the radio not ready.
pub const READY_WINDOW: Duration = Duration::from_secs(2);

/// One output stream and its audience.
pub struct Mount {
    pub config: MountConfig,
    pub ring: Arc<FrameRing>,
    pub content_type: &'static str,
    listeners: AtomicUsize,
    peak: AtomicUsize,
    /// Milliseconds since the station's start at the last publish; 0 = never.
    last_publish_ms: AtomicU64,
    pub started: SystemTime,
}

impl Mount {
    /// Current listener count.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Highest listener count since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes a listener slot, or `None` when the mount is full. The slot is given back on drop.
    pub fn admit(self: &Arc<Self>) -> Option<ListenerSlot> {
        let max = self.config.max_listeners;
        let prev = self
            .listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.peak.fetch_max(prev + 1, Ordering::Relaxed);
        Some(ListenerSlot {
            mount: Arc::clone(self),
        })
    }
}

/// A counted listener; dropping it frees the place.
pub struct ListenerSlot {
    mount: Arc<Mount>,
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.mount.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The track on air.
#[derive(Debug, Clone)]
pub struct NowPlaying {
    /// Shared title with its prebuilt ICY block.
    pub title: Arc<StreamTitle>,
    /// Library key; empty while nothing plays.
    pub key: Arc<str>,
    pub artist: Option<String>,
    pub track_title: Option<String>,
    pub started: SystemTime,
    pub duration: Option<Duration>,
}

impl NowPlaying {
    /// The state before the first track (and between tracks when the library is empty).
    pub fn nothing() -> NowPlaying {
        NowPlaying {
            title: StreamTitle::new(""),
            key: Arc::from(""),
            artist: None,
            track_title: None,
            started: SystemTime::now(),
            duration: None,
        }
    }
}

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

/// Shared state of one running radio.
pub struct Station {
    pub config: Arc<Config>,
    pub mounts: Vec<Arc<Mount>>,
    pub metrics: Metrics,
    pub now_playing: watch::Sender<NowPlaying>,
    library: Mutex<LibraryState>,
    /// Milliseconds since start at which the pipeline last played track audio (not filler).
    last_track_audio_ms: AtomicU64,
    draining: AtomicBool,
    pub started: SystemTime,
    start: Instant,
}

impl Station {
    pub fn new(config: Arc<Config>, metrics: Metrics) -> Arc<Station> {
        let started = SystemTime::now();
        let mounts = config
            .mounts
            .iter()
            .map(|m| {
                metrics.init_mount(&m.path, m.codec.name());
                Arc::new(Mount {
                    ring: FrameRing::new(m.queue.bytes(m.bytes_per_sec())),
                    content_type: crate::encode::content_type(m.codec),
                    config: m.clone(),
                    listeners: AtomicUsize::new(0),
                    peak: AtomicUsize::new(0),
                    last_publish_ms: AtomicU64::new(0),
                    started,
                })
            })
            .collect();
        Arc::new(Station {
            config,
            mounts,
            metrics,
            now_playing: watch::Sender::new(NowPlaying::nothing()),
            library: Mutex::new(LibraryState::Starting),
            last_track_audio_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            started,
            start: Instant::now(),
        })
    }

    /// The mount serving `path`.
    pub fn mount(&self, path: &str) -> Option<&Arc<Mount>> {
        self.mounts.iter().find(|m| m.config.path == path)
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "never".
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Called by the pipeline after each publish to a mount.
    pub fn mark_published(&self, mount: &Mount, with_track_audio: bool) {
        let now = self.now_ms();
        mount.last_publish_ms.store(now, Ordering::Relaxed);
        if with_track_audio {
            self.last_track_audio_ms.store(now, Ordering::Relaxed);
        }
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

    /// `/healthz` turns 503 from here on, so load balancers stop sending listeners.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready when every mount published audio lately and that audio is music, not filler.
    /// Otherwise the reasons, for `/readyz` and operators.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.is_draining() {
            why.push("shutting down".to_string());
        }
        let now = self.now_ms();
        let window = READY_WINDOW.as_millis() as u64;
        for m in &self.mounts {
            let last = m.last_publish_ms.load(Ordering::Relaxed);
            if last == 0 {
                why.push(format!("{}: no audio produced yet", m.config.path));
            } else if now - last > window {
                why.push(format!(
                    "{}: no audio for {:.1} s",
                    m.config.path,
                    (now - last) as f64 / 1000.0
                ));
            }
        }
        let last_track = self.last_track_audio_ms.load(Ordering::Relaxed);
        if last_track == 0 || now - last_track > window {
            why.push(match self.library_state() {
                LibraryState::Starting => "library not listed yet".to_string(),
                LibraryState::Empty { tracks: 0 } => "library is empty: playing silence".into(),
                LibraryState::Empty { tracks } => {
                    format!(
                        "none of the {tracks} files in the library is playable: playing silence"
                    )
                }
                LibraryState::Unavailable(e) => {
                    format!("library unavailable ({e}): playing silence")
                }
                LibraryState::Ready { .. } => "waiting for the next track: playing silence".into(),
            });
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}
