//! The AutoDJ task: keeps the library listing fresh, picks the next track by the playlist policy,
//! fetches and probes it ahead of time, and hands it to the pipeline over a channel of one, so one
//! track waits ready while another is being prepared. Broken tracks are skipped here, before they
//! reach the air.

pub mod policy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use crate::audio::decode::{self, TrackTags};
use crate::catalog::{Catalog, CatalogError, TrackRef};
use crate::station::{LibraryState, Station, TrackInfo};
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

/// How long to wait before listing again when nothing is playable or storage fails.
const RETRY_EMPTY: Duration = Duration::from_secs(1);

/// Spawns the scheduler; it ends when `cancel` fires or the pipeline hangs up.
pub fn spawn<C: Catalog>(
    catalog: C,
    station: Arc<Station>,
    tx: mpsc::Sender<LoadedTrack>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let policy = Policy::new(station.config.playlist.order);
    let rescan = station.config.library.rescan;
    let scheduler = Scheduler {
        catalog,
        station,
        policy,
        rescan,
        next_scan: Instant::now(),
        unavailable: false,
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = scheduler.run(tx) => {}
        }
    })
}

struct Scheduler<C> {
    catalog: C,
    station: Arc<Station>,
    policy: Policy,
    rescan: Duration,
    next_scan: Instant,
    /// Whether the last listing failed, so that state changes are logged once, not every retry.
    unavailable: bool,
}

impl<C: Catalog> Scheduler<C> {
    async fn run(mut self, tx: mpsc::Sender<LoadedTrack>) {
        loop {
            let loaded = self.prepare_next().await;
            // Wait for the pipeline to take the track, listing the library meanwhile when due.
            loop {
                let scan_due = self.scan_due();
                tokio::select! {
                    permit = tx.reserve() => match permit {
                        Ok(p) => {
                            self.station.set_up_next(Some(loaded.info()));
                            p.send(loaded);
                            break;
                        }
                        Err(_) => return, // pipeline gone: shutting down
                    },
                    _ = sleep_until_opt(scan_due) => self.scan().await,
                }
            }
        }
    }

    fn scan_due(&self) -> Option<Instant> {
        (!self.rescan.is_zero()).then_some(self.next_scan)
    }

    /// Loops until a track is fetched and probes as playable.
    async fn prepare_next(&mut self) -> LoadedTrack {
        loop {
            if Instant::now() >= self.next_scan {
                self.scan().await;
            }
            let Some(track) = self.policy.pick() else {
                // Nothing playable: the pipeline plays silence; look again soon.
                sleep(RETRY_EMPTY).await;
                self.scan().await;
                continue;
            };
            match self.load(&track).await {
                Ok(loaded) => return loaded,
                Err(Skip::Gone) => {
                    self.policy.mark_bad(&track);
                    self.station
                        .metrics
                        .tracks_skipped
                        .with_label_values(&["missing"])
                        .inc();
                    tracing::warn!(track = %track.key, "skipping track: removed from the library");
                }
                Err(Skip::Unavailable(e)) => {
                    self.station
                        .metrics
                        .storage_errors
                        .with_label_values(&["fetch"])
                        .inc();
                    tracing::warn!(track = %track.key, error = %e, "cannot fetch track; trying another");
                    sleep(Duration::from_millis(200)).await;
                }
                Err(Skip::Undecodable(e)) => {
                    self.policy.mark_bad(&track);
                    self.station
                        .metrics
                        .tracks_skipped
                        .with_label_values(&[e.reason()])
                        .inc();
                    tracing::warn!(track = %track.key, reason = e.reason(), error = %e, "skipping track");
                    self.publish_library_state();
                }
            }
        }
    }

    async fn load(&self, track: &TrackRef) -> Result<LoadedTrack, Skip> {
        let started = Instant::now();
        let bytes = self.catalog.fetch(track).await.map_err(|e| match e {
            CatalogError::NotFound(_) => Skip::Gone,
            CatalogError::Unavailable(e) => Skip::Unavailable(e),
        })?;
        self.station
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

    /// Lists the library and updates the policy. Failure keeps the previous listing.
    async fn scan(&mut self) {
        // With rescans off, the library is listed again only while nothing is playable.
        let interval = if self.rescan.is_zero() {
            Duration::from_secs(365 * 86_400)
        } else {
            self.rescan.max(Duration::from_secs(1))
        };
        self.next_scan = Instant::now() + interval;
        match self.catalog.list().await {
            Ok(tracks) => {
                if self.unavailable {
                    tracing::info!(library = %self.catalog.describe(), "library readable again");
                    self.unavailable = false;
                }
                let before = self.policy.library_len();
                self.policy.set_library(tracks);
                let now = self.policy.library_len();
                if now != before {
                    tracing::info!(library = %self.catalog.describe(), tracks = now, "library listed");
                }
                self.station.metrics.library_tracks.set(now as i64);
                self.publish_library_state();
            }
            Err(e) => {
                self.station
                    .metrics
                    .storage_errors
                    .with_label_values(&["list"])
                    .inc();
                if !self.unavailable {
                    tracing::error!(library = %self.catalog.describe(), error = %e, "cannot list the library; playing what is already loaded");
                    self.unavailable = true;
                }
                if self.policy.playable_len() == 0 {
                    self.station
                        .set_library_state(LibraryState::Unavailable(e.to_string()));
                }
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
