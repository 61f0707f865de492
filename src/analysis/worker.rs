//! The background analysis: a task that walks the library (the tracks about to play first) and,
//! for each version with no valid sidecar, fetches it, has it measured on the analysis thread,
//! and keeps the sidecar beside it. One track at a time, at most `max_speed` × real time, never
//! on the pipeline thread or a tokio worker; nothing waits for it: a track not analysed yet plays
//! with its tags' gain and is analysed for next time. Long shows are analysed like the rest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::facts::{Facts, Pace, analyse};
use super::sidecar;
use super::store::{Analyses, Status};
use crate::catalog::{Availability, Catalog, SidecarPlace, TrackData, TrackRef};
use crate::metrics::Metrics;
use crate::supervise::panic_message;

/// The library as the scheduler's listing task publishes it.
pub type Listing = Option<Arc<Result<Vec<TrackRef>, String>>>;

/// How long the worker rests when a track could not be fetched (storage down, say).
const RETRY: Duration = Duration::from_secs(5);

type Job = (TrackData, oneshot::Sender<Result<Facts, String>>);

/// Starts the analysis thread and the task that feeds it; both end with `cancel`.
pub fn spawn<C: Catalog>(
    catalog: Arc<C>,
    analyses: Arc<Analyses<C>>,
    metrics: Metrics,
    listing: watch::Receiver<Listing>,
    upcoming: watch::Receiver<Vec<Arc<str>>>,
    max_speed: f64,
    cancel: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1);
    std::thread::Builder::new()
        .name("onair-analysis".into())
        .spawn(move || {
            // Ends when the task below drops its sender.
            for (data, reply) in queue {
                let pace = Pace::new(max_speed);
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| analyse(&data, &pace)))
                    .map_err(|p| format!("the analyser panicked: {}", panic_message(&*p)))
                    .and_then(|r| r.map_err(|e| e.to_string()));
                let _ = reply.send(result);
            }
        })?;
    let worker = Worker {
        catalog,
        analyses,
        metrics,
        jobs,
        failed: HashMap::new(),
    };
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = worker.run(listing, upcoming) => {}
        }
    }))
}

struct Worker<C> {
    catalog: Arc<C>,
    analyses: Arc<Analyses<C>>,
    metrics: Metrics,
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// Versions the analyser could not measure: not tried again until they change.
    failed: HashMap<Arc<str>, Arc<str>>,
}

impl<C: Catalog> Worker<C> {
    async fn run(
        mut self,
        mut listing: watch::Receiver<Listing>,
        mut upcoming: watch::Receiver<Vec<Arc<str>>>,
    ) {
        loop {
            let todo = self.todo(&listing, &upcoming);
            self.metrics.analysis_queue.set(todo.len() as i64);
            let Some(track) = todo.front().cloned() else {
                // Everything known is analysed: wait for the library to change.
                tokio::select! {
                    changed = listing.changed() => if changed.is_err() { return },
                    changed = upcoming.changed() => if changed.is_err() { return },
                }
                continue;
            };
            if !self.one(&track).await {
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Listed versions still to look at: the ones about to play first.
    fn todo(
        &self,
        listing: &watch::Receiver<Listing>,
        upcoming: &watch::Receiver<Vec<Arc<str>>>,
    ) -> VecDeque<TrackRef> {
        let listing = listing.borrow().clone();
        let Some(Ok(tracks)) = listing.as_deref() else {
            return VecDeque::new();
        };
        let keys: HashSet<Arc<str>> = tracks.iter().map(|t| Arc::clone(&t.key)).collect();
        self.analyses.retain(&keys);
        let pending = |t: &&TrackRef| {
            self.analyses.status(t) != Status::Analysed
                && self.failed.get(&t.key) != Some(&t.version)
        };
        let by_key: HashMap<&Arc<str>, &TrackRef> = tracks.iter().map(|t| (&t.key, t)).collect();
        let mut todo: VecDeque<TrackRef> = VecDeque::new();
        let soon = upcoming.borrow();
        for key in soon.iter() {
            if let Some(t) = by_key.get(key).copied().filter(|t| pending(t)) {
                todo.push_back(t.clone());
            }
        }
        let first: HashSet<Arc<str>> = todo.iter().map(|t| Arc::clone(&t.key)).collect();
        todo.extend(
            tracks
                .iter()
                .filter(pending)
                .filter(|t| !first.contains(&t.key))
                .cloned(),
        );
        todo
    }

    /// Looks at one track: its sidecar, else an analysis. False when it must wait (storage).
    async fn one(&mut self, track: &TrackRef) -> bool {
        if self.analyses.facts(track).await.is_some() {
            return true;
        }
        if self.catalog.availability(track) == Availability::Down {
            return false;
        }
        let data = match self.catalog.fetch_to_analyse(track).await {
            Ok(data) => data,
            Err(e) => {
                tracing::debug!(track = %track.key, error = %e, "cannot fetch a track to analyse it");
                if e.skip_reason().is_some() {
                    self.failed
                        .insert(Arc::clone(&track.key), Arc::clone(&track.version));
                    return true;
                }
                return false;
            }
        };
        let started = Instant::now();
        let (reply, result) = oneshot::channel();
        let jobs = self.jobs.clone();
        // The thread takes one job at a time; handing it over may wait for the one before.
        let sent = tokio::task::spawn_blocking(move || jobs.send((data, reply)))
            .await
            .is_ok_and(|r| r.is_ok());
        let result = match (sent, result.await) {
            (true, Ok(result)) => result,
            _ => Err("the analysis thread is gone".to_owned()),
        };
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(facts) => {
                tracing::info!(track = %track.key, seconds,
                    lufs = facts.integrated_lufs, true_peak = facts.true_peak_dbtp,
                    duration_s = facts.duration_s, "track analysed");
                let json = Bytes::from(sidecar::encode(&track.key, &track.version, &facts));
                match self.catalog.save_sidecar(track, json).await {
                    Ok(SidecarPlace::Beside) => {}
                    Ok(SidecarPlace::Cache) => self.metrics.sidecars_in_cache.inc(),
                    Err(e) => {
                        tracing::warn!(track = %track.key, error = %e, "cannot keep the analysis; it will be redone after a restart")
                    }
                }
                self.analyses.insert(track, Arc::new(facts));
                // Counted once kept (or found unkeepable): whoever watches the count for a
                // finished analysis then finds its sidecar.
                self.metrics.analysis_seconds.observe(seconds);
                self.metrics.analysis_total.with_label_values(&["ok"]).inc();
            }
            Err(e) => {
                self.metrics
                    .analysis_total
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(track = %track.key, error = %e, "cannot analyse track; it plays with its tags' gain");
                self.failed
                    .insert(Arc::clone(&track.key), Arc::clone(&track.version));
            }
        }
        true
    }
}
