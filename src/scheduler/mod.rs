//! The AutoDJ task: picks the next tracks by the playlist policy, gets them ready ahead of time
//! (on local disk and probed: `load.rs`) and hands them to the pipeline, so the pipeline never
//! waits on storage at a track boundary.
//!
//! At least `library.prefetch` tracks are kept ready: one waits in the pipeline's channel of
//! one, the others in a queue here. Tracks are handed over in the order they were picked, but a
//! load still running after [`LATE`] no longer counts as coming: another track (a cached one
//! first) is readied beside it and may overtake it. Storage fetches run beside the hand-off, at
//! most [`MAX_STORAGE_FETCHES`] at a time. Broken tracks are skipped here, before they reach the air, and kept out
//! until they change; a track storage could not serve keeps its turn. The listing is refreshed
//! by `listing.rs`, off this path; the playout state is saved and resumed by `playout.rs`.

mod listing;
pub mod load;
pub mod playout;
pub mod policy;
pub mod prober;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::analysis::Analyses;
use crate::catalog::{Availability, Catalog, TrackRef};
use crate::metrics::Metrics;
use crate::station::{Health, LibraryState, OnAir, Station};
use listing::Listing;
pub use load::LoadedTrack;
use load::Skip;
use playout::Resume;
use policy::Policy;
use prober::Prober;

/// With nothing playable, how long until the library is listed and picked from again.
const RETRY_EMPTY: Duration = Duration::from_secs(1);
/// After a fetch failed because storage is down and no cached track could stand in, how long
/// until the next try (each try is answered at once by the cache layer, so this only paces).
const RETRY_UNAVAILABLE: Duration = Duration::from_millis(500);
/// A storage fetch still running after this long no longer counts as a track to come: another
/// one is readied beside it, so a slow or hanging gateway cannot run the pipeline dry.
pub const LATE: Duration = Duration::from_secs(2);
/// Storage fetches at once: one, plus one beside a late one.
pub const MAX_STORAGE_FETCHES: usize = 2;
/// How long the resumed track of a saved programme holds back the others: long enough for a
/// cold fetch, short enough that a storage outage at start does not mean minutes of silence.
const RESUME_LATE: Duration = Duration::from_secs(5);

/// Spawns the scheduler (and the playout saver, when `playout.resume` is on); it ends when
/// `cancel` fires or the pipeline hangs up. `bad` brings back tracks the pipeline found
/// unplayable on air.
pub fn spawn<C: Catalog>(
    catalog: C,
    station: &Station,
    tx: mpsc::Sender<LoadedTrack>,
    bad: mpsc::Receiver<TrackRef>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let catalog = Arc::new(catalog);
    let wake = Arc::new(Notify::new());
    let listing = listing::spawn(
        Arc::clone(&catalog),
        station.config.library.rescan,
        station.metrics.clone(),
        Arc::clone(&wake),
        cancel.child_token(),
    );
    let (upcoming_tx, upcoming_rx) = watch::channel(Vec::new());
    let analyses = Arc::new(Analyses::new(
        Arc::clone(&catalog),
        station
            .metrics
            .analysis_total
            .with_label_values(&["cached"]),
    ));
    let analysis = station.config.analysis;
    if analysis.enabled
        && let Err(e) = crate::analysis::worker::spawn(
            Arc::clone(&catalog),
            Arc::clone(&analyses),
            station.metrics.clone(),
            listing.clone(),
            upcoming_rx.clone(),
            analysis.max_speed,
            cancel.child_token(),
        )
    {
        tracing::error!(error = %e, "cannot start the analysis thread; tracks play with their tags' gain");
    }
    let playout = station.config.playout;
    let saver = playout.resume.then(|| {
        playout::spawn_saver(
            Arc::clone(&catalog),
            Arc::clone(&station.on_air),
            upcoming_rx,
            playout.save_interval,
            cancel.child_token(),
        )
    });
    let scheduler = Scheduler {
        policy: Policy::new(station.config.playlist.order),
        prefetch: station.config.library.prefetch.max(1),
        catalog,
        analyses,
        prober: Arc::new(Prober::new()),
        metrics: station.metrics.clone(),
        on_air: Arc::clone(&station.on_air),
        health: Arc::clone(&station.health),
        listing,
        applied: None,
        wake,
        ready: VecDeque::new(),
        loads: JoinSet::new(),
        loading: Vec::new(),
        next_seq: 0,
        not_before: Instant::now(),
        fetch_failing: false,
        resume: None,
        upcoming: upcoming_tx,
        bad,
        sent: VecDeque::new(),
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = scheduler.run(tx, playout.resume) => {}
        }
        if let Some(saver) = saver {
            // The saver's token is a child of `cancel`: it makes its last save and ends.
            let _ = saver.await;
        }
    })
}

/// A load in flight.
struct Loading {
    /// Pick order: ready tracks are handed over in it, unless an earlier one is late.
    seq: u64,
    key: Arc<str>,
    /// The fetch needs storage (not a local file or a cache hit).
    storage: bool,
    /// From then on it no longer counts as coming, and later picks may overtake it.
    late_at: Instant,
}

impl Loading {
    fn is_late(&self, now: Instant) -> bool {
        now >= self.late_at
    }
}

struct Scheduler<C> {
    catalog: Arc<C>,
    /// What is known of each track's analysis (its sidecar).
    analyses: Arc<Analyses<C>>,
    prober: Arc<Prober>,
    metrics: Metrics,
    /// Read for what the mixer has taken; the history of a resumed programme goes back here.
    on_air: Arc<OnAir>,
    /// Told the library's condition, for `/readyz`.
    health: Arc<Health>,
    policy: Policy,
    listing: watch::Receiver<Listing>,
    /// The listing the policy holds.
    applied: Option<Arc<Result<Vec<TrackRef>, String>>>,
    /// Asks the listing task for a listing now (nothing playable).
    wake: Arc<Notify>,
    prefetch: usize,
    /// Ready tracks waiting for the pipeline's channel, in pick order.
    ready: VecDeque<(u64, LoadedTrack)>,
    /// Fetch-and-probe tasks; dropping the set (shutdown) aborts them.
    loads: JoinSet<(u64, TrackRef, Result<LoadedTrack, Skip>)>,
    loading: Vec<Loading>,
    next_seq: u64,
    /// No new load starts before this (pacing after failures or with nothing to play).
    not_before: Instant,
    /// Whether fetches fail for want of storage, so that is logged once, not every retry.
    fetch_failing: bool,
    /// A saved programme to carry on, once the library is listed.
    resume: Option<Resume>,
    /// What follows the hand-off channel, for the playout state.
    upcoming: watch::Sender<Vec<Arc<str>>>,
    /// Tracks the pipeline found unplayable on air.
    bad: mpsc::Receiver<TrackRef>,
    /// Tracks handed to the pipeline and not yet its next or on air, oldest first.
    sent: VecDeque<Arc<str>>,
}

impl<C: Catalog> Scheduler<C> {
    async fn run(mut self, tx: mpsc::Sender<LoadedTrack>, resume: bool) {
        if resume && let Some(state) = playout::load(&*self.catalog).await {
            self.resume = Some(state.resume(SystemTime::now()));
        }
        loop {
            self.apply_listing();
            let listed = self.applied.as_ref().is_some_and(|l| l.is_ok());
            if listed && let Some(resume) = self.resume.take() {
                self.apply_resume(resume);
            }
            let in_channel = usize::from(tx.capacity() == 0);
            let now = Instant::now();
            if listed && now >= self.not_before && self.ready_ahead(in_channel) < self.prefetch {
                self.start_load();
            }
            self.publish_upcoming();
            // Wake up when the next load may start, and when a load becomes late (it then no
            // longer counts as coming, and no longer holds back the ones after it).
            let late_at = self
                .loading
                .iter()
                .map(|l| l.late_at)
                .filter(|t| *t > now)
                .min();
            let next_load =
                (listed && self.ready_ahead(in_channel) < self.prefetch).then_some(self.not_before);
            let wake_at = match (late_at, next_load) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let hand_off = self.next_ready(now);
            tokio::select! {
                permit = tx.reserve(), if hand_off => {
                    let (Ok(permit), Some((_, loaded))) = (permit, self.ready.pop_front()) else {
                        return; // pipeline gone: shutting down
                    };
                    // The mixer takes it as its next track and says so (up next).
                    self.sent.push_back(Arc::clone(&loaded.track.key));
                    permit.send(loaded);
                }
                Some(done) = self.loads.join_next(), if !self.loads.is_empty() => {
                    match done {
                        Ok((seq, track, result)) => self.loaded(seq, track, result),
                        Err(e) => tracing::error!(error = %e, "track load task failed"),
                    }
                }
                Some(track) = self.bad.recv() => {
                    self.policy.mark_bad(&track);
                    // Already readied again for a later turn: not any more.
                    self.ready.retain(|(_, l)| l.track != track);
                    tracing::warn!(track = %track.key, "unplayable on air: kept out until it changes");
                    self.publish_library_state();
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

    /// Tracks ready or as good as ready: in the channel, queued, or loading and not late.
    fn ready_ahead(&self, in_channel: usize) -> usize {
        let now = Instant::now();
        let coming = self.loading.iter().filter(|l| !l.is_late(now)).count();
        in_channel + self.ready.len() + coming
    }

    /// Whether the first ready track may go to the pipeline: no load picked before it is still
    /// coming in time.
    fn next_ready(&self, now: Instant) -> bool {
        let Some((seq, _)) = self.ready.front() else {
            return false;
        };
        !self.loading.iter().any(|l| l.seq < *seq && !l.is_late(now))
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
        let first = self.applied.is_none();
        self.applied = Some(Arc::clone(&listing));
        match &*listing {
            Ok(tracks) => {
                // New tracks may be playable: no need to sit out a pause taken for want of them.
                self.not_before = Instant::now();
                let before = self.policy.library_len();
                self.policy.set_library(tracks.clone());
                let now = self.policy.library_len();
                if now != before || first {
                    tracing::info!(library = %self.catalog.describe(), tracks = now, "library listed");
                }
                self.metrics.library_tracks.set(now as i64);
                self.publish_library_state();
            }
            Err(e) => {
                if self.policy.playable_len() == 0 {
                    self.health
                        .set_library_state(LibraryState::Unavailable(e.clone()));
                }
            }
        }
    }

    /// Carries on a saved programme: its round, its history, and its current track first.
    fn apply_resume(&mut self, resume: Resume) {
        self.policy.restore(&resume.upcoming, resume.last.clone());
        self.on_air.restore_history(resume.history);
        let Some((key, started)) = resume.current else {
            tracing::info!(writer = %resume.writer, age_s = resume.age.as_secs(),
                "carrying on the saved programme with its next track");
            return;
        };
        let Some(track) = self.policy.find_playable(&key) else {
            tracing::info!(track = %key, "the saved current track is no longer in the library");
            return;
        };
        tracing::info!(track = %key, writer = %resume.writer, age_s = resume.age.as_secs(),
            "resuming the saved programme where it should be by now");
        self.spawn_load(track, Some(started));
    }

    /// Readies the next track: one that needs no storage known to be down if any, and a local
    /// one while storage fetches are all in use (a stand-in beside a late fetch).
    fn start_load(&mut self) {
        let catalog = &self.catalog;
        let now = Instant::now();
        let storage_busy = self.loading.iter().filter(|l| l.storage).count() >= MAX_STORAGE_FETCHES;
        let late = self
            .loading
            .iter()
            .find(|l| l.is_late(now))
            .map(|l| Arc::clone(&l.key));
        let mut track = if storage_busy {
            self.policy
                .pick_if(|t| catalog.availability(t) == Availability::Local)
        } else {
            self.policy
                .pick_if(|t| catalog.availability(t) != Availability::Down)
        };
        if track.is_none() && !storage_busy {
            // Every playable track needs storage, which is down: try one anyway (the cache layer
            // refuses it at once, and probes storage when due), at a gentle pace.
            self.not_before = Instant::now() + RETRY_UNAVAILABLE;
            track = self.policy.pick();
        }
        let Some(track) = track else {
            if self.policy.playable_len() == 0 {
                // Nothing playable: the pipeline plays silence; list again soon.
                self.wake.notify_one();
                self.not_before = Instant::now() + RETRY_EMPTY;
            } else {
                // Only tracks that need storage, which is busy: wait for a fetch to end.
                self.not_before = Instant::now() + RETRY_UNAVAILABLE;
            }
            return;
        };
        if let Some(late) = late {
            tracing::info!(late = %late, instead = %track.key,
                local = catalog.availability(&track) == Availability::Local,
                "a storage fetch is late: readying another track beside it, whichever is ready first plays first");
        }
        self.spawn_load(track, None);
    }

    fn spawn_load(&mut self, track: TrackRef, resume_from: Option<SystemTime>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let patience = if resume_from.is_some() {
            RESUME_LATE
        } else {
            LATE
        };
        self.loading.push(Loading {
            seq,
            key: Arc::clone(&track.key),
            storage: self.catalog.availability(&track) != Availability::Local,
            late_at: Instant::now() + patience,
        });
        let (catalog, metrics) = (Arc::clone(&self.catalog), self.metrics.clone());
        let (analyses, prober) = (Arc::clone(&self.analyses), Arc::clone(&self.prober));
        self.loads.spawn(async move {
            let result = load::load(&*catalog, &prober, &metrics, &track, resume_from).await;
            let result = match result {
                // Its analysis, if it has one: gain and cues for the mixer.
                Ok(mut loaded) => {
                    loaded.facts = analyses.facts(&track).await;
                    Ok(loaded)
                }
                skip => skip,
            };
            (seq, track, result)
        });
    }

    /// Files a finished load: ready to play, or skipped with its reason.
    fn loaded(&mut self, seq: u64, track: TrackRef, result: Result<LoadedTrack, Skip>) {
        crate::supervise::fault("scheduler-panic", &track.key);
        if let Some(i) = self.loading.iter().position(|l| l.seq == seq) {
            self.loading.swap_remove(i);
        }
        let metrics = &self.metrics;
        match result {
            // Found unplayable on air while it was loading again.
            Ok(_) if self.policy.is_bad(&track) => {}
            Ok(loaded) => {
                if std::mem::replace(&mut self.fetch_failing, false) {
                    tracing::info!(track = %track.key, "tracks can be fetched again");
                }
                let at = self.ready.partition_point(|(s, _)| *s < seq);
                self.ready.insert(at, (seq, loaded));
            }
            Err(Skip::Unavailable(e)) => {
                metrics.storage_errors.with_label_values(&["fetch"]).inc();
                self.policy.put_back(&track);
                if !std::mem::replace(&mut self.fetch_failing, true) {
                    tracing::warn!(track = %track.key, error = %e,
                        "cannot fetch track; trying others (cached ones first) until storage answers");
                } else {
                    tracing::debug!(track = %track.key, error = %e, "cannot fetch track");
                }
            }
            Err(skip) => {
                self.policy.mark_bad(&track);
                let reason = skip.reason().unwrap_or("corrupt");
                metrics.tracks_skipped.with_label_values(&[reason]).inc();
                tracing::warn!(track = %track.key, reason, error = %skip,
                    "skipping track until it changes");
                self.publish_library_state();
            }
        }
    }

    /// What follows the mixer's next track: what is in the hand-off channel, ready, loading,
    /// then the rest of the round.
    fn publish_upcoming(&mut self) {
        // Sent tracks up to the mixer's next (or the one on air) have left the channel.
        let next = self.on_air.up_next().map(|t| t.key);
        let playing = self.on_air.playing_key();
        if let Some(at) = self
            .sent
            .iter()
            .position(|k| Some(k) == next.as_ref() || Some(k) == playing.as_ref())
        {
            self.sent.drain(..=at);
        }
        let mut picked: Vec<(u64, &Arc<str>)> = self
            .ready
            .iter()
            .map(|(seq, l)| (*seq, &l.track.key))
            .chain(self.loading.iter().map(|l| (l.seq, &l.key)))
            .collect();
        picked.sort_by_key(|(seq, _)| *seq);
        let mut next: Vec<Arc<str>> = self.sent.iter().cloned().collect();
        next.extend(picked.into_iter().map(|(_, k)| Arc::clone(k)));
        next.extend(self.policy.round());
        self.upcoming.send_if_modified(|old| {
            let changed = *old != next;
            if changed {
                *old = next;
            }
            changed
        });
    }

    fn publish_library_state(&self) {
        let tracks = self.policy.library_len();
        let playable = self.policy.playable_len();
        self.health.set_library_state(if playable == 0 {
            LibraryState::Empty { tracks }
        } else {
            LibraryState::Ready { tracks, playable }
        });
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
