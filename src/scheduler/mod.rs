//! The AutoDJ task: picks the next track by the playlist policy, fetches and probes it ahead of
//! time, and hands it to the pipeline. `library.prefetch` tracks are kept ready ahead of the one
//! playing: one waits in the pipeline's channel of one, the others in a queue here, so the
//! hand-off never waits for a fetch. Fetches run on tasks of their own, one at a time, plus one
//! from the disk cache when a storage fetch stalls with nothing left ready. The listing is
//! refreshed by `listing.rs`, off this path. Broken tracks are skipped here, before they reach
//! the air; a track storage cannot serve now is passed over for one it can (a cached one during
//! an outage) without waiting.

mod listing;
pub mod policy;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::audio::decode::{self, TrackTags};
use crate::catalog::{Availability, Catalog, CatalogError, TrackRef};
use crate::station::{LibraryState, Station, TrackInfo};
use listing::Listing;
use policy::Policy;

/// A track ready to decode: its bytes are in memory and it probed as audio.
#[derive(Debug, Clone)]
pub struct LoadedTrack {
    pub track: TrackRef,
    pub bytes: Bytes,
    pub tags: TrackTags,
    /// `Artist - Title`, as listeners see it.
    pub display: String,
}

impl LoadedTrack {
    /// The track as the now-playing API describes it.
    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            title: self.display.clone(),
            artist: self.tags.artist.clone(),
            track_title: self.tags.title.clone(),
            key: Arc::clone(&self.track.key),
            duration: self.tags.duration,
        }
    }
}

/// With nothing playable, how long until the library is listed and picked from again.
const RETRY_EMPTY: Duration = Duration::from_secs(1);
/// After a fetch failed because storage is down and no cached track could stand in, how long
/// until the next try (each try is answered at once by the cache layer, so this only paces).
const RETRY_UNAVAILABLE: Duration = Duration::from_millis(500);
/// A storage fetch running this long with nothing left ready gets a cached track started beside
/// it, so a hanging gateway cannot run the pipeline dry while the request waits for its timeout.
const STALL: Duration = Duration::from_secs(1);

/// Spawns the scheduler; it ends when `cancel` fires or the pipeline hangs up.
pub fn spawn<C: Catalog>(
    catalog: C,
    station: Arc<Station>,
    tx: mpsc::Sender<LoadedTrack>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let catalog = Arc::new(catalog);
    let wake = Arc::new(Notify::new());
    let listing = listing::spawn(
        Arc::clone(&catalog),
        Arc::clone(&station),
        Arc::clone(&wake),
        cancel.child_token(),
    );
    let scheduler = Scheduler {
        policy: Policy::new(station.config.playlist.order),
        prefetch: station.config.library.prefetch.max(1),
        catalog,
        station,
        listing,
        applied: None,
        wake,
        ready: VecDeque::new(),
        fetches: JoinSet::new(),
        storage_fetch_since: None,
        not_before: Instant::now(),
        fetch_failing: false,
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = scheduler.run(tx) => {}
        }
    })
}

struct Scheduler<C> {
    catalog: Arc<C>,
    station: Arc<Station>,
    policy: Policy,
    listing: watch::Receiver<Listing>,
    /// The listing the policy holds.
    applied: Option<Arc<Result<Vec<TrackRef>, String>>>,
    /// Asks the listing task for a listing now (nothing playable).
    wake: Arc<Notify>,
    prefetch: usize,
    /// Loaded tracks waiting for the pipeline's channel.
    ready: VecDeque<LoadedTrack>,
    /// Fetch-and-probe tasks; dropping the set (shutdown) aborts them.
    fetches: JoinSet<(TrackRef, Result<LoadedTrack, Skip>)>,
    /// When the fetch that may wait on storage started (`None`: it is not running).
    storage_fetch_since: Option<Instant>,
    /// No new fetch starts before this (pacing after failures or with nothing to play).
    not_before: Instant,
    /// Whether fetches fail for want of storage, so that is logged once, not every retry.
    fetch_failing: bool,
}

impl<C: Catalog> Scheduler<C> {
    async fn run(mut self, tx: mpsc::Sender<LoadedTrack>) {
        loop {
            self.apply_listing();
            let in_channel = usize::from(tx.capacity() == 0);
            let ahead = in_channel + self.ready.len() + self.fetches.len();
            let now = Instant::now();
            let listed = self.listing.borrow().is_some();
            if listed && self.fetches.is_empty() && ahead < self.prefetch && now >= self.not_before
            {
                self.start_fetch();
            } else if in_channel == 0
                && self.ready.is_empty()
                && self.fetches.len() == 1
                && self
                    .storage_fetch_since
                    .is_some_and(|t| t.elapsed() >= STALL)
            {
                self.start_cached_fetch();
            }
            // Wake up when the next fetch may start, or when a stalled one needs a stand-in.
            let wake_at = if self.fetches.is_empty() {
                (listed && ahead < self.prefetch).then_some(self.not_before)
            } else if self.fetches.len() == 1 && in_channel == 0 && self.ready.is_empty() {
                self.storage_fetch_since.map(|t| t + STALL)
            } else {
                None
            };
            tokio::select! {
                permit = tx.reserve(), if !self.ready.is_empty() => {
                    let (Ok(permit), Some(loaded)) = (permit, self.ready.pop_front()) else {
                        return; // pipeline gone: shutting down
                    };
                    self.station.set_up_next(Some(loaded.info()));
                    permit.send(loaded);
                }
                Some(done) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    match done {
                        Ok((track, result)) => self.fetched(track, result),
                        Err(e) => tracing::error!(error = %e, "track fetch task failed"),
                    }
                }
                changed = self.listing.changed() => {
                    if changed.is_err() {
                        return; // listing task gone: shutting down
                    }
                }
                _ = sleep_until_opt(wake_at) => {}
            }
        }
    }

    /// Takes the newest listing, if one came since the last look.
    fn apply_listing(&mut self) {
        // Compared by identity rather than with `has_changed`, which `changed()` in the main
        // loop has already reset by the time this runs.
        let Some(listing) = self.listing.borrow_and_update().clone() else {
            return;
        };
        if self
            .applied
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &listing))
        {
            return;
        }
        self.applied = Some(Arc::clone(&listing));
        match &*listing {
            Ok(tracks) => {
                // New tracks may be playable: no need to sit out a pause taken for want of them.
                self.not_before = Instant::now();
                let before = self.policy.library_len();
                self.policy.set_library(tracks.clone());
                let now = self.policy.library_len();
                if now != before {
                    tracing::info!(library = %self.catalog.describe(), tracks = now, "library listed");
                }
                self.station.metrics.library_tracks.set(now as i64);
                self.publish_library_state();
            }
            Err(e) => {
                if self.policy.playable_len() == 0 {
                    self.station
                        .set_library_state(LibraryState::Unavailable(e.clone()));
                }
            }
        }
    }

    /// Starts fetching the next track: one that needs no storage known to be down if any.
    fn start_fetch(&mut self) {
        let catalog = &self.catalog;
        let mut track = self
            .policy
            .pick_if(|t| catalog.availability(t) != Availability::Down);
        if track.is_none() {
            // Every playable track needs storage, which is down: try one anyway (the cache layer
            // refuses it at once, and probes storage when due), at a gentle pace.
            self.not_before = Instant::now() + RETRY_UNAVAILABLE;
            track = self.policy.pick();
        }
        let Some(track) = track else {
            // Nothing playable: the pipeline plays silence; list again soon.
            self.wake.notify_one();
            self.not_before = Instant::now() + RETRY_EMPTY;
            return;
        };
        if self.catalog.availability(&track) != Availability::Local {
            self.storage_fetch_since = Some(Instant::now());
        }
        self.spawn_load(track);
    }

    /// A cached track beside a stalled storage fetch, if there is one.
    fn start_cached_fetch(&mut self) {
        let catalog = &self.catalog;
        if let Some(track) = self
            .policy
            .pick_if(|t| catalog.availability(t) == Availability::Local)
        {
            tracing::debug!(track = %track.key, "storage fetch stalled: playing a cached track meanwhile");
            self.spawn_load(track);
        }
        // One stand-in per stalled fetch.
        self.storage_fetch_since = None;
    }

    fn spawn_load(&mut self, track: TrackRef) {
        let (catalog, station) = (Arc::clone(&self.catalog), Arc::clone(&self.station));
        self.fetches.spawn(async move {
            let result = load(&*catalog, &station, &track).await;
            (track, result)
        });
    }

    /// Files a finished fetch: ready to play, or skipped with its reason.
    fn fetched(&mut self, track: TrackRef, result: Result<LoadedTrack, Skip>) {
        if self.fetches.is_empty() {
            self.storage_fetch_since = None;
        }
        let metrics = &self.station.metrics;
        match result {
            Ok(loaded) => {
                if std::mem::replace(&mut self.fetch_failing, false) {
                    tracing::info!(track = %track.key, "tracks can be fetched again");
                }
                self.ready.push_back(loaded);
            }
            Err(Skip::Gone) => {
                self.policy.mark_bad(&track);
                metrics.tracks_skipped.with_label_values(&["missing"]).inc();
                tracing::warn!(track = %track.key, "skipping track: removed from the library");
                self.publish_library_state();
            }
            Err(Skip::Unavailable(e)) => {
                metrics.storage_errors.with_label_values(&["fetch"]).inc();
                if !std::mem::replace(&mut self.fetch_failing, true) {
                    tracing::warn!(track = %track.key, error = %e,
                        "cannot fetch track; trying others (cached ones first) until storage answers");
                } else {
                    tracing::debug!(track = %track.key, error = %e, "cannot fetch track");
                }
            }
            Err(Skip::Undecodable(e)) => {
                self.policy.mark_bad(&track);
                metrics
                    .tracks_skipped
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(track = %track.key, reason = e.reason(), error = %e, "skipping track");
                self.publish_library_state();
            }
        }
    }

    fn publish_library_state(&self) {
        let tracks = self.policy.library_len();
        let playable = self.policy.playable_len();
        self.station.set_library_state(if playable == 0 {
            LibraryState::Empty { tracks }
        } else {
            LibraryState::Ready { tracks, playable }
        });
    }
}

/// Fetches a track and probes it as audio.
async fn load<C: Catalog>(
    catalog: &C,
    station: &Station,
    track: &TrackRef,
) -> Result<LoadedTrack, Skip> {
    let started = Instant::now();
    let bytes: Bytes = catalog.fetch(track).await.map_err(|e| match e {
        CatalogError::NotFound(_) => Skip::Gone,
        CatalogError::Unavailable(e) => Skip::Unavailable(e),
    })?;
    station
        .metrics
        .storage_fetch_duration
        .observe(started.elapsed().as_secs_f64());
    // Probing decodes a few packets: CPU work, kept off the async workers.
    let probe_bytes = bytes.clone();
    let tags = tokio::task::spawn_blocking(move || decode::probe(probe_bytes))
        .await
        .map_err(|e| Skip::Unavailable(format!("probe task failed: {e}")))?
        .map_err(Skip::Undecodable)?;
    let display =
        crate::audio::display_title(tags.artist.as_deref(), tags.title.as_deref(), &track.key);
    tracing::debug!(track = %track.key, codec = %tags.codec, rate = tags.sample_rate, channels = tags.channels, "track ready");
    Ok(LoadedTrack {
        track: track.clone(),
        bytes,
        tags,
        display,
    })
}

enum Skip {
    Gone,
    Unavailable(String),
    Undecodable(decode::DecodeError),
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
