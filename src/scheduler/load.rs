//! Getting one track ready: fetched onto local disk (or memory, if small) by the catalog, then
//! probed as audio on the probe thread (`prober.rs`). A probe that panics or hangs (a decoder bug
//! on a damaged file) skips the track as corrupt, like any other undecodable file.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::analysis::Facts;
use crate::audio::decode::{DecodeError, TrackTags};
use crate::catalog::{Catalog, CatalogError, TrackData, TrackRef};
use crate::metrics::Metrics;
use crate::scheduler::prober::{ProbeError, Prober};
use crate::station::TrackInfo;
use crate::title::clean_title;

/// A track ready to decode: on local disk (or in memory, if small) and probed as audio.
#[derive(Debug, Clone)]
pub struct LoadedTrack {
    pub track: TrackRef,
    pub data: TrackData,
    pub tags: TrackTags,
    /// `Artist - Title`, as listeners see it.
    pub display: String,
    /// When this track started in a programme saved by an earlier pod: the pipeline plays it
    /// from where it should be by now.
    pub resume_from: Option<SystemTime>,
    /// Its analysis, when it has one (its gain and cues come from it).
    pub facts: Option<Arc<Facts>>,
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

/// Why a track did not become ready.
#[derive(Debug)]
pub enum Skip {
    /// Storage (or the disk) failed, not the track: it keeps its turn for later.
    Unavailable(CatalogError),
    /// Something about this one object (gone, refused, too large, stalled): skip it until it
    /// changes.
    Object(CatalogError),
    /// Not playable audio: skip it until it changes.
    Undecodable(DecodeError),
}

impl Skip {
    /// Label of `onair_tracks_skipped_total{reason}` for a track skipped for good.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Skip::Unavailable(_) => None,
            Skip::Object(e) => e.skip_reason(),
            Skip::Undecodable(e) => Some(e.reason()),
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Unavailable(e) | Skip::Object(e) => e.fmt(f),
            Skip::Undecodable(e) => e.fmt(f),
        }
    }
}

/// Fetches a track and probes it as audio.
pub async fn load<C: Catalog>(
    catalog: &C,
    prober: &Prober,
    metrics: &Metrics,
    track: &TrackRef,
    resume_from: Option<SystemTime>,
) -> Result<LoadedTrack, Skip> {
    let started = Instant::now();
    let data = catalog
        .fetch(track)
        .await
        .map_err(|e| match e.skip_reason() {
            Some(_) => Skip::Object(e),
            None => Skip::Unavailable(e),
        })?;
    metrics
        .storage_fetch_duration
        .observe(started.elapsed().as_secs_f64());
    let tags = prober.probe(data.clone()).await.map_err(|e| match e {
        ProbeError::Undecodable(e) => Skip::Undecodable(e),
        ProbeError::NoThread(e) => Skip::Unavailable(CatalogError::Local(e)),
    })?;
    // Tags are untrusted text: cleaned once here, so every place that shows them (ICY blocks,
    // XML, JSON, logs) gets the same safe title.
    let mut tags = tags;
    tags.artist = tags
        .artist
        .map(|a| clean_title(&a))
        .filter(|a| !a.is_empty());
    tags.title = tags
        .title
        .map(|t| clean_title(&t))
        .filter(|t| !t.is_empty());
    let display = clean_title(&crate::audio::display_title(
        tags.artist.as_deref(),
        tags.title.as_deref(),
        &track.key,
    ));
    tracing::debug!(track = %track.key, codec = %tags.codec, rate = tags.sample_rate,
        channels = tags.channels, bytes = data.len(), in_memory = data.in_memory(), "track ready");
    Ok(LoadedTrack {
        track: track.clone(),
        data,
        tags,
        display,
        resume_from,
        facts: None,
    })
}
