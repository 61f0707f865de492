//! The playout state, so that a restarted or replacement pod carries on the programme: what is
//! playing and since when, the rest of the shuffle round, and the recent history. It is saved to
//! the library's own storage (`.onair/state/playout.json` beside the tracks: an object in the
//! bucket, or a file in the local folder) whenever it changes, checked every `save_interval`, and
//! read once at start.
//!
//! Positions are never saved: the current track's start time is, so a reader knows where the
//! programme should be *now*, however long ago the state was written. Each save is one whole
//! object written at once, stamped with its writer and time: two pods of the same radio that
//! overlap during a rollout cannot corrupt it, the last writer wins, and a reader takes the
//! newest copy (with a backup site, one copy may be on each).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::station::{OnAir, Played, TrackInfo};

/// The state object's name under the library's `.onair/state/`.
pub const STATE_NAME: &str = "playout.json";
/// Format of the saved JSON; a reader ignores states of another format.
const FORMAT: u32 = 1;
/// The longest a start waits for the saved state before playing without it.
pub const LOAD_WAIT: Duration = Duration::from_secs(5);
/// The longest the last save at shutdown may take.
const FINAL_SAVE_WAIT: Duration = Duration::from_secs(2);

/// What is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayoutState {
    pub format: u32,
    /// Which pod wrote it (host name and a random id per process).
    pub writer: String,
    pub saved_at_ms: u64,
    /// The track on air, if one was.
    pub current: Option<SavedTrack>,
    /// Tracks to play next, in order: the ones already prepared, then the rest of the round.
    pub upcoming: Vec<String>,
    /// Tracks played before the current one, most recent first.
    pub history: Vec<SavedTrack>,
}

/// A track in the saved programme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTrack {
    pub key: String,
    pub title: String,
    /// When it started on air, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// What the scheduler does with a saved state at start.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The track to play first, and when it started in the saved programme (the pipeline seeks
    /// to where it should be by now). `None` when it must have ended already.
    pub current: Option<(Arc<str>, SystemTime)>,
    /// The rest of the round, after `current`.
    pub upcoming: Vec<Arc<str>>,
    /// The track played last (the policy's "no repeat" rule), `current`'s key when there is one.
    pub last: Option<Arc<str>>,
    pub history: Vec<Played>,
    pub writer: String,
    pub age: Duration,
}

/// A process's writer id: the host (pod) name and a random part.
pub fn writer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "onair".into());
    format!("{host}/{:08x}", fastrand::u32(..))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl PlayoutState {
    /// The newest readable state among `copies` (one per storage site); damaged or foreign
    /// copies are logged and ignored.
    pub fn newest(copies: &[Bytes]) -> Option<PlayoutState> {
        copies
            .iter()
            .filter_map(|c| match serde_json::from_slice::<PlayoutState>(c) {
                Ok(s) if s.format == FORMAT => Some(s),
                Ok(s) => {
                    tracing::warn!(
                        format = s.format,
                        "ignoring a playout state of another format"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unreadable playout state");
                    None
                }
            })
            .max_by_key(|s| s.saved_at_ms)
    }

    /// How to carry on this state at `now`: the current track resumes if it has not ended yet
    /// (its duration unknown: it resumes, and the pipeline moves on if it has).
    pub fn resume(&self, now: SystemTime) -> Resume {
        let age = now
            .duration_since(from_unix_ms(self.saved_at_ms))
            .unwrap_or_default();
        let current = self.current.as_ref().and_then(|c| {
            let started = from_unix_ms(c.started_at_ms);
            let ended = c
                .duration_ms
                .is_some_and(|d| started + Duration::from_millis(d) <= now);
            (!ended).then(|| (Arc::from(c.key.as_str()), started))
        });
        let history = self
            .history
            .iter()
            .chain(
                // A current track that ended while no pod played it is history now.
                self.current.iter().filter(|_| current.is_none()),
            )
            .map(|t| Played {
                track: TrackInfo {
                    title: t.title.clone(),
                    artist: None,
                    track_title: None,
                    key: Arc::from(t.key.as_str()),
                    duration: t.duration_ms.map(Duration::from_millis),
                },
                started: from_unix_ms(t.started_at_ms),
            })
            .collect::<Vec<_>>();
        let mut history = history;
        history.sort_by_key(|p| std::cmp::Reverse(p.started));
        Resume {
            last: self.current.as_ref().map(|c| Arc::from(c.key.as_str())),
            current,
            upcoming: self
                .upcoming
                .iter()
                .map(|k| Arc::from(k.as_str()))
                .collect(),
            history,
            writer: self.writer.clone(),
            age,
        }
    }
}

/// Reads the saved state, within [`LOAD_WAIT`]; `None` (logged) when there is none or storage
/// cannot say in time.
pub async fn load<C: Catalog>(catalog: &C) -> Option<PlayoutState> {
    match tokio::time::timeout(LOAD_WAIT, catalog.load_state(STATE_NAME)).await {
        Ok(Ok(copies)) => {
            let state = PlayoutState::newest(&copies);
            if state.is_none() {
                tracing::info!("no saved playout state: starting a new programme");
            }
            state
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the saved playout state: starting a new programme");
            None
        }
        Err(_) => {
            tracing::warn!(wait = ?LOAD_WAIT, "the saved playout state did not come in time: starting a new programme");
            None
        }
    }
}

/// The state of the programme as the station shows it now.
fn snapshot(on_air: &OnAir, upcoming: &[Arc<str>], writer: &str) -> PlayoutState {
    let now = on_air.now();
    let current = now.track.as_ref().map(|t| SavedTrack {
        key: t.key.to_string(),
        title: t.title.clone(),
        started_at_ms: unix_ms(now.started),
        duration_ms: t
            .duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    });
    let mut next: Vec<String> = Vec::with_capacity(upcoming.len() + 1);
    if let Some(up) = on_air.up_next()
        && current.as_ref().is_none_or(|c| c.key != *up.key)
    {
        next.push(up.key.to_string());
    }
    next.extend(upcoming.iter().map(|k| k.to_string()));
    PlayoutState {
        format: FORMAT,
        writer: writer.to_owned(),
        saved_at_ms: unix_ms(SystemTime::now()),
        current,
        upcoming: next,
        history: on_air
            .history()
            .iter()
            .map(|p| SavedTrack {
                key: p.track.key.to_string(),
                title: p.track.title.clone(),
                started_at_ms: unix_ms(p.started),
                duration_ms: p
                    .track
                    .duration
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
            .collect(),
    }
}

/// Whether two snapshots describe the same programme (the save time aside).
fn same_programme(a: &PlayoutState, b: &PlayoutState) -> bool {
    a.current == b.current && a.upcoming == b.upcoming && a.history == b.history
}

/// Saves the state whenever it changed, checked every `interval`, and once more when `cancel`
/// fires. `upcoming` is the scheduler's view of what follows the track in its hand-off channel.
pub fn spawn_saver<C: Catalog>(
    catalog: Arc<C>,
    on_air: Arc<OnAir>,
    upcoming: watch::Receiver<Vec<Arc<str>>>,
    interval: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let writer = writer_id();
        tracing::info!(writer = %writer, every = ?interval, "saving the playout state");
        let mut now_playing = on_air.subscribe();
        let mut saved: Option<PlayoutState> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = cancel.cancelled() => true,
                // A new track is saved at once: the position of a resume depends on it.
                _ = now_playing.changed() => false,
                _ = tick.tick() => false,
            };
            let state = snapshot(&on_air, &upcoming.borrow(), &writer);
            if state.current.is_none() && saved.is_none() {
                // Nothing played yet: keep the previous pod's state for a later start.
                if last {
                    return;
                }
                continue;
            }
            if saved.as_ref().is_none_or(|s| !same_programme(s, &state)) {
                let data = match serde_json::to_vec(&state) {
                    Ok(d) => Bytes::from(d),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode the playout state");
                        continue;
                    }
                };
                let wait = if last {
                    FINAL_SAVE_WAIT
                } else {
                    interval.max(FINAL_SAVE_WAIT)
                };
                match tokio::time::timeout(wait, catalog.save_state(STATE_NAME, data)).await {
                    Ok(Ok(())) => {
                        if std::mem::replace(&mut failing, false) {
                            tracing::info!("playout state saved again");
                        }
                        saved = Some(state);
                    }
                    Ok(Err(e)) if !std::mem::replace(&mut failing, true) => tracing::warn!(
                        error = %e, "cannot save the playout state; a replacement pod would start a new programme"),
                    Err(_) if !std::mem::replace(&mut failing, true) => tracing::warn!(
                        "saving the playout state timed out; a replacement pod would start a new programme"
                    ),
                    _ => {}
                }
            }
            if last {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(saved_at_ms: u64, started_at_ms: u64, duration_ms: Option<u64>) -> PlayoutState {
        PlayoutState {
            format: FORMAT,
            writer: "pod-a/1".into(),
            saved_at_ms,
            current: Some(SavedTrack {
                key: "b.mp3".into(),
                title: "B".into(),
                started_at_ms,
                duration_ms,
            }),
            upcoming: vec!["c.mp3".into(), "a.mp3".into()],
            history: vec![SavedTrack {
                key: "d.mp3".into(),
                title: "D".into(),
                started_at_ms: started_at_ms.saturating_sub(200_000),
                duration_ms: Some(200_000),
            }],
        }
    }

    #[test]
    fn the_newest_readable_copy_wins() {
        let old = Bytes::from(serde_json::to_vec(&state(1_000, 500, None)).unwrap());
        let new = Bytes::from(serde_json::to_vec(&state(2_000, 500, None)).unwrap());
        let broken = Bytes::from_static(b"{\"format\":1,");
        let mut other = state(9_000, 500, None);
        other.format = 99;
        let other = Bytes::from(serde_json::to_vec(&other).unwrap());
        let got = PlayoutState::newest(&[old, broken, new, other]).unwrap();
        assert_eq!(got.saved_at_ms, 2_000);
        assert!(PlayoutState::newest(&[]).is_none());
    }

    #[test]
    fn a_track_still_playing_resumes_from_its_start_time() {
        let start = 1_700_000_000_000;
        let s = state(start + 30_000, start, Some(180_000));
        let now = from_unix_ms(start + 40_000);
        let r = s.resume(now);
        assert_eq!(r.current, Some((Arc::from("b.mp3"), from_unix_ms(start))));
        assert_eq!(r.last.as_deref(), Some("b.mp3"));
        assert_eq!(r.upcoming, [Arc::from("c.mp3"), Arc::from("a.mp3")]);
        assert_eq!(r.age, Duration::from_secs(10));
        assert_eq!(r.history.len(), 1);
        assert_eq!(r.writer, "pod-a/1");
    }

    #[test]
    fn a_track_that_ended_meanwhile_goes_to_the_history() {
        let start = 1_700_000_000_000;
        let s = state(start + 30_000, start, Some(60_000));
        let r = s.resume(from_unix_ms(start + 61_000));
        assert_eq!(r.current, None);
        assert_eq!(
            r.last.as_deref(),
            Some("b.mp3"),
            "it must not open the programme"
        );
        assert_eq!(r.history[0].track.key.as_ref(), "b.mp3");
        assert_eq!(r.history.len(), 2);
    }

    #[test]
    fn the_saved_json_is_stable() {
        let s = state(2_000, 1_000, Some(5_000));
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.starts_with("{\"format\":1,\"writer\":\"pod-a/1\",\"saved_at_ms\":2000,"),
            "{json}"
        );
        let back: PlayoutState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
