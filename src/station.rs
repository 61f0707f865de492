//! The live state of the radio that the pipeline, the scheduler and the HTTP side share: each mount's
//! ring and listener counts, what is playing, the library's condition, and readiness.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MountConfig};
use crate::metrics::Metrics;
use crate::ring::FrameRing;
use crate::title::StreamTitle;

/// A mount with no new audio for this long makes the radio not ready.
pub const READY_WINDOW: Duration = Duration::from_secs(2);
/// Tracks kept in the played history.
pub const HISTORY_LEN: usize = 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is plain state updated in single statements; a panic elsewhere while
    // holding the lock cannot leave it half-written, so recovering it is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connected listener, as `/admin/listclients` shows it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub user_agent: Arc<str>,
    pub connected: Instant,
    /// Raised by `/admin/killclient`; the stream ends at its next wake-up (at most one publish,
    /// 100 ms, later).
    pub kicked: Arc<AtomicBool>,
}

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
    clients: Mutex<Clients>,
}

/// The listeners of a mount, by id and counted by address.
#[derive(Default)]
struct Clients {
    by_id: BTreeMap<u64, Client>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a listener was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The mount is at `max_listeners`.
    Full,
    /// The client's address is at `max_listeners_per_ip`.
    PerIp,
}

impl Mount {
    /// Listeners connected now, oldest first.
    pub fn clients(&self) -> Vec<Client> {
        lock(&self.clients).by_id.values().cloned().collect()
    }

    /// Asks a listener's stream to end; false when there is no such listener.
    pub fn kick(&self, id: u64) -> bool {
        match lock(&self.clients).by_id.get(&id) {
            Some(c) => {
                c.kicked.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Current listener count.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Highest listener count since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes a listener slot, or says why not. The slot is given back on drop.
    pub fn admit(self: &Arc<Self>, client: Client) -> Result<ListenerSlot, Refusal> {
        let ip = client.addr.ip();
        // The per-address check and the count change under one lock, so two listeners from one
        // address arriving at once cannot both take the last place.
        let mut clients = lock(&self.clients);
        if let Some(limit) = self.config.max_listeners_per_ip
            && clients.per_ip.get(&ip).copied().unwrap_or(0) >= limit
        {
            return Err(Refusal::PerIp);
        }
        let max = self.config.max_listeners;
        let prev = self
            .listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Refusal::Full)?;
        self.peak.fetch_max(prev + 1, Ordering::Relaxed);
        let id = client.id;
        *clients.per_ip.entry(ip).or_insert(0) += 1;
        clients.by_id.insert(id, client);
        Ok(ListenerSlot {
            mount: Arc::clone(self),
            id,
        })
    }
}

/// A counted, registered listener; dropping it frees the place.
pub struct ListenerSlot {
    mount: Arc<Mount>,
    id: u64,
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        let mut clients = lock(&self.mount.clients);
        if let Some(c) = clients.by_id.remove(&self.id) {
            let ip = c.addr.ip();
            if let Some(n) = clients.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    clients.per_ip.remove(&ip);
                }
            }
        }
        drop(clients);
        self.mount.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A track as the now-playing API describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    /// `Artist - Title` (or the file name).
    pub title: String,
    pub artist: Option<String>,
    pub track_title: Option<String>,
    pub key: Arc<str>,
    pub duration: Option<Duration>,
}

/// A track that has played.
#[derive(Debug, Clone)]
pub struct Played {
    pub track: TrackInfo,
    pub started: SystemTime,
}

/// What is on air.
#[derive(Debug, Clone)]
pub struct NowPlaying {
    /// The title listeners see (the track's, or one set by an operator), with its ICY block.
    pub title: Arc<StreamTitle>,
    /// The track playing; `None` while the radio plays filler silence.
    pub track: Option<TrackInfo>,
    pub started: SystemTime,
    pub started_at: Instant,
}

impl NowPlaying {
    /// The state before the first track (and whenever the library has nothing to play).
    pub fn nothing() -> NowPlaying {
        NowPlaying {
            title: StreamTitle::new(""),
            track: None,
            started: SystemTime::now(),
            started_at: Instant::now(),
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

/// What an operator asks of the programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/admin/next`: the track on air fades out over a second while the next one starts.
    Skip,
    /// `/admin/metadata`: the title listeners see until the next track starts.
    SetTitle(String),
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
    /// Fires when the radio starts shutting down; long-lived responses (event streams) end on it.
    pub stopping: CancellationToken,
    /// Where the pipeline, the fan-out thread and the scheduler report an end nobody asked for.
    pub watchdog: crate::supervise::Watchdog,
    history: Mutex<VecDeque<Played>>,
    up_next: Mutex<Option<TrackInfo>>,
    /// Operator commands for the pipeline thread, taken at its next block.
    /// Operator commands for the pipeline, which takes them between two blocks.
    commands: std::sync::mpsc::Sender<Command>,
    next_client_id: AtomicU64,
}

impl Station {
    /// The station, and the receiving end of its operator commands (for the pipeline).
    pub fn new(
        config: Arc<Config>,
        metrics: Metrics,
    ) -> (Arc<Station>, std::sync::mpsc::Receiver<Command>) {
        let (commands, received) = std::sync::mpsc::channel();
        let started = SystemTime::now();
        let mounts = config
            .mounts
            .iter()
            .map(|m| {
                metrics.init_mount(&m.path, m.codec.name());
                let content_type = crate::encode::content_type(m.codec);
                Arc::new(Mount {
                    ring: FrameRing::new(m.queue.bytes(m.bytes_per_sec())),
                    content_type,
                    config: m.clone(),
                    listeners: AtomicUsize::new(0),
                    peak: AtomicUsize::new(0),
                    last_publish_ms: AtomicU64::new(0),
                    started,
                    clients: Mutex::new(Clients::default()),
                })
            })
            .collect();
        let station = Arc::new(Station {
            config,
            mounts,
            metrics,
            now_playing: watch::Sender::new(NowPlaying::nothing()),
            library: Mutex::new(LibraryState::Starting),
            last_track_audio_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            started,
            start: Instant::now(),
            stopping: CancellationToken::new(),
            watchdog: crate::supervise::Watchdog::new(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
            up_next: Mutex::new(None),
            commands,
            next_client_id: AtomicU64::new(1),
        });
        (station, received)
    }

    /// A fresh listener id, unique for the life of the process.
    pub fn client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Listeners on every mount.
    pub fn total_listeners(&self) -> usize {
        self.mounts.iter().map(|m| m.listeners()).sum()
    }

    /// Called by the pipeline when a track goes on air, `offset` into it (a resumed programme):
    /// the previous one moves to the history.
    pub fn begin_track(&self, title: Arc<StreamTitle>, track: TrackInfo, offset: Duration) {
        {
            let mut next = lock(&self.up_next);
            if next.as_ref().is_some_and(|n| n.key == track.key) {
                *next = None;
            }
        }
        // The history is updated before watchers are notified, so an event built on the change
        // already shows the previous track among the played ones.
        self.now_playing.send_modify(|now| {
            let previous = std::mem::replace(
                now,
                NowPlaying {
                    title,
                    track: Some(track),
                    started: SystemTime::now()
                        .checked_sub(offset)
                        .unwrap_or_else(SystemTime::now),
                    started_at: Instant::now()
                        .checked_sub(offset)
                        .unwrap_or_else(Instant::now),
                },
            );
            if let Some(track) = previous.track {
                self.push_history(track, previous.started);
            }
        });
    }

    /// Called by the pipeline when filler silence follows a track: nothing is on air any more.
    pub fn end_track(&self) {
        if self.now_playing.borrow().track.is_none() {
            return;
        }
        self.now_playing.send_modify(|now| {
            let previous = std::mem::replace(now, NowPlaying::nothing());
            if let Some(track) = previous.track {
                self.push_history(track, previous.started);
            }
        });
    }

    fn push_history(&self, track: TrackInfo, started: SystemTime) {
        let mut h = lock(&self.history);
        if h.len() == HISTORY_LEN {
            h.pop_back();
        }
        h.push_front(Played { track, started });
    }

    /// Puts back the history of a saved programme (most recent first), before anything plays.
    pub fn restore_history(&self, played: Vec<Played>) {
        let mut h = lock(&self.history);
        h.clear();
        h.extend(played.into_iter().take(HISTORY_LEN));
    }

    /// Tracks played before the current one, most recent first.
    pub fn history(&self) -> Vec<Played> {
        lock(&self.history).iter().cloned().collect()
    }

    /// Set by the scheduler when it hands the pipeline the next track.
    pub fn set_up_next(&self, track: Option<TrackInfo>) {
        *lock(&self.up_next) = track;
    }

    pub fn up_next(&self) -> Option<TrackInfo> {
        lock(&self.up_next).clone()
    }

    /// Hands an operator command to the pipeline (`/admin/next`, `/admin/metadata`). It is
    /// applied at the next block; a pipeline that is gone (shutting down) drops it.
    pub fn command(&self, command: Command) {
        let _ = self.commands.send(command);
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
            } else if now.saturating_sub(last) > window {
                why.push(format!(
                    "{}: no audio for {:.1} s",
                    m.config.path,
                    now.saturating_sub(last) as f64 / 1000.0
                ));
            }
        }
        let last_track = self.last_track_audio_ms.load(Ordering::Relaxed);
        // The pipeline thread may stamp a time later than `now` meanwhile: saturate, not underflow.
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
