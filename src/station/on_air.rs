//! What is on air: the current track and the title listeners see (a watch, so event streams
//! and the playout saver wake on a change), the tracks played before it, and the one up next.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::title::StreamTitle;

/// Tracks kept in the played history.
pub const HISTORY_LEN: usize = 20;

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

/// A live show on air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveShow {
    /// The DJ's name as listeners see it.
    pub streamer: String,
    pub since: SystemTime,
}

/// What is on air.
#[derive(Debug, Clone)]
pub struct NowPlaying {
    /// The title listeners see (the track's, or one set by an operator), with its ICY block.
    pub title: Arc<StreamTitle>,
    /// The track playing; `None` while the radio plays filler silence or a live show.
    pub track: Option<TrackInfo>,
    /// The live show on air, if one is.
    pub live: Option<LiveShow>,
    pub started: SystemTime,
    pub started_at: Instant,
}

impl NowPlaying {
    /// The state before the first track (and whenever the library has nothing to play).
    pub fn nothing() -> NowPlaying {
        NowPlaying {
            title: StreamTitle::new(""),
            track: None,
            live: None,
            started: SystemTime::now(),
            started_at: Instant::now(),
        }
    }
}

/// The programme as listeners and the APIs see it. The pipeline writes it; everything else
/// reads it.
pub struct OnAir {
    now_playing: watch::Sender<NowPlaying>,
    history: Mutex<VecDeque<Played>>,
    up_next: Mutex<Option<TrackInfo>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is plain state updated in single statements; a panic elsewhere while
    // holding the lock cannot leave it half-written, so recovering it is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for OnAir {
    fn default() -> OnAir {
        OnAir::new()
    }
}

impl OnAir {
    /// Nothing on air, nothing played, nothing next.
    pub fn new() -> OnAir {
        OnAir {
            now_playing: watch::Sender::new(NowPlaying::nothing()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
            up_next: Mutex::new(None),
        }
    }

    /// What is on air now.
    pub fn now(&self) -> NowPlaying {
        self.now_playing.borrow().clone()
    }

    /// The title listeners see now.
    pub fn title(&self) -> Arc<StreamTitle> {
        Arc::clone(&self.now_playing.borrow().title)
    }

    /// The key of the track on air, if one is.
    pub fn playing_key(&self) -> Option<Arc<str>> {
        self.now_playing
            .borrow()
            .track
            .as_ref()
            .map(|t| Arc::clone(&t.key))
    }

    /// Wakes on every change of what is on air (a track, filler, a title).
    pub fn subscribe(&self) -> watch::Receiver<NowPlaying> {
        self.now_playing.subscribe()
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
                    live: None,
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

    /// A live show goes on air (after the mixer took the AutoDJ's track off): what is on air
    /// is the show, under `title`, until a track begins again.
    pub fn go_live(&self, title: Arc<StreamTitle>, show: LiveShow) {
        self.now_playing.send_modify(|now| {
            let previous = std::mem::replace(
                now,
                NowPlaying {
                    title,
                    track: None,
                    live: Some(show),
                    started: SystemTime::now(),
                    started_at: Instant::now(),
                },
            );
            if let Some(track) = previous.track {
                self.push_history(track, previous.started);
            }
        });
    }

    /// An operator's title, shown from now until the next track starts.
    pub fn set_title(&self, title: Arc<StreamTitle>) {
        self.now_playing.send_modify(|now| now.title = title);
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

    /// Set by the mixer when it takes the next track from the scheduler.
    pub fn set_up_next(&self, track: Option<TrackInfo>) {
        *lock(&self.up_next) = track;
    }

    pub fn up_next(&self) -> Option<TrackInfo> {
        lock(&self.up_next).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(key: &str) -> TrackInfo {
        TrackInfo {
            title: key.to_uppercase(),
            artist: None,
            track_title: None,
            key: key.into(),
            duration: Some(Duration::from_secs(180)),
        }
    }

    #[test]
    fn a_new_track_moves_the_last_to_the_history_and_clears_up_next() {
        let on_air = OnAir::new();
        let changes = on_air.subscribe();
        on_air.set_up_next(Some(track("b")));
        on_air.begin_track(StreamTitle::new("A"), track("a"), Duration::ZERO);
        assert_eq!(on_air.up_next().map(|t| t.key), Some("b".into()));
        on_air.begin_track(StreamTitle::new("B"), track("b"), Duration::ZERO);
        assert!(changes.has_changed().unwrap_or(false));
        assert_eq!(on_air.up_next(), None, "the track up next went on air");
        assert_eq!(on_air.playing_key(), Some("b".into()));
        let played: Vec<_> = on_air.history().into_iter().map(|p| p.track.key).collect();
        assert_eq!(played, vec![Arc::<str>::from("a")]);
        on_air.end_track();
        assert_eq!(on_air.playing_key(), None);
        assert_eq!(on_air.history().len(), 2);
        assert_eq!(on_air.title().text(), "");
    }

    #[test]
    fn a_live_show_is_on_air_until_a_track_begins() {
        let on_air = OnAir::new();
        on_air.begin_track(StreamTitle::new("A"), track("a"), Duration::ZERO);
        let show = LiveShow {
            streamer: "alice".into(),
            since: SystemTime::now(),
        };
        on_air.go_live(StreamTitle::new("Live: alice"), show.clone());
        let now = on_air.now();
        assert_eq!((now.live, now.track), (Some(show), None));
        assert_eq!(
            on_air.history().len(),
            1,
            "the interrupted track is in the history"
        );
        on_air.set_title(StreamTitle::new("alice - Song"));
        assert!(on_air.now().live.is_some(), "a title change keeps the show");
        on_air.begin_track(StreamTitle::new("B"), track("b"), Duration::ZERO);
        assert_eq!(on_air.now().live, None);
    }

    #[test]
    fn the_history_keeps_the_latest_tracks_only() {
        let on_air = OnAir::new();
        for i in 0..HISTORY_LEN + 5 {
            on_air.begin_track(StreamTitle::new("t"), track(&i.to_string()), Duration::ZERO);
        }
        let history = on_air.history();
        assert_eq!(history.len(), HISTORY_LEN);
        let newest = (HISTORY_LEN + 3).to_string();
        assert_eq!(&*history[0].track.key, newest.as_str(), "most recent first");
    }

    #[test]
    fn an_operator_title_holds_until_the_next_track() {
        let on_air = OnAir::new();
        on_air.begin_track(StreamTitle::new("A"), track("a"), Duration::from_secs(30));
        assert!(
            on_air.now().started_at.elapsed() >= Duration::from_secs(30),
            "a resumed track started earlier"
        );
        on_air.set_title(StreamTitle::new("Live from the beach"));
        assert_eq!(on_air.title().text(), "Live from the beach");
        assert_eq!(on_air.playing_key(), Some("a".into()));
        on_air.begin_track(StreamTitle::new("B"), track("b"), Duration::ZERO);
        assert_eq!(on_air.title().text(), "B");
    }
}
