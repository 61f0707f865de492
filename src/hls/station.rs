//! The station's HLS: one [`Rendition`] per mount with `hls = true`, fed by the pipeline thread,
//! read by the HTTP side; the station's title changes, shared by every rendition's playlist; and
//! the rendered playlists, made once per published part and handed to every request as an `Arc`.
//!
//! The pipeline holds a rendition's lock for the few microseconds of a push; a request holds it
//! to clone an `Arc` or to render the playlist once after a publish. No lock is held across an
//! await: a blocking playlist request waits on the rendition's `watch` of its newest part.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use super::grid::{Grid, PARTS_PER_SEGMENT};
use super::packager::Packager;
use super::playlist::{self, Report, TitleChange, Variant};
use super::sessions::Sessions;
use crate::config::Audio;
use crate::metrics::HlsMetrics;
use crate::ring::Frame;
use crate::station::Mounts;
use crate::title::StreamTitle;

/// How far back the playlists reach: 15 minutes, Apple's recommendation for live.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain state updated between statements; a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One mount's HLS.
pub struct Rendition {
    /// The mount's index in `Mounts`.
    pub mount_index: usize,
    /// `/radio.aac`: the playlist is `/hls/radio.aac/live.m3u8`.
    pub path: String,
    /// Object file extension and MIME type.
    pub ext: &'static str,
    pub content_type: &'static str,
    pub variant: Variant,
    /// Who listens (the mount's, shared with its status).
    pub sessions: Arc<Sessions>,
    pub metrics: HlsMetrics,
    frame_samples: u32,
    packager: Mutex<Option<Packager>>,
    /// The newest complete part, (msn, index); `None` before the first.
    newest: watch::Sender<Option<(u64, u64)>>,
    /// The playlists rendered for the newest part.
    rendered: Mutex<Option<Rendered>>,
}

/// A media playlist as sent: whole and as a delta update, each plain and gzipped (made once
/// per part, however many clients ask).
#[derive(Clone)]
pub struct Rendered {
    pub part: (u64, u64),
    pub full: Bytes,
    pub full_gz: Bytes,
    pub delta: Bytes,
    pub delta_gz: Bytes,
}

fn gzip(text: String) -> (Bytes, Bytes) {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 4),
        flate2::Compression::fast(),
    );
    let zipped = z.write_all(text.as_bytes()).and_then(|()| z.finish());
    let text = Bytes::from(text);
    // Writing to a Vec cannot fail; if it did, the plain text is sent.
    let zipped = zipped.map_or_else(|_| text.clone(), Bytes::from);
    (text, zipped)
}

/// Every HLS mount of the station.
pub struct Hls {
    pub grid: Grid,
    renditions: Vec<Rendition>,
    titles: Mutex<VecDeque<TitleChange>>,
}

impl Hls {
    pub fn new(audio: Audio, epoch: SystemTime, mounts: &Mounts) -> Hls {
        let renditions = mounts
            .iter()
            .enumerate()
            .filter_map(|(i, mount)| {
                let sessions = Arc::clone(mount.hls_sessions()?);
                let metrics = mount.metrics.hls.clone()?;
                let m = &mount.config;
                let frame_samples = m.codec.frame_samples(audio)?;
                let bits = u64::from(m.bitrate_kbps) * 1000;
                let (ext, content_type) = match m.codec {
                    crate::config::Codec::Mp3 => ("mp3", "audio/mpeg"),
                    _ => ("aac", "audio/aac"),
                };
                Some(Rendition {
                    mount_index: i,
                    path: m.path.clone(),
                    ext,
                    content_type,
                    variant: Variant {
                        uri: format!("{}/live.m3u8", m.path.trim_start_matches('/')),
                        codecs: m.codec.hls_codecs(),
                        // CBR plus the ID3 tag of every part (about 100 bytes a second) and
                        // ADTS headers' share, with room for a frame's padding: 5 % over.
                        bandwidth: bits * 105 / 100,
                        average_bandwidth: bits * 102 / 100,
                    },
                    frame_samples,
                    sessions,
                    metrics,
                    packager: Mutex::new(None),
                    newest: watch::Sender::new(None),
                    rendered: Mutex::new(None),
                })
            })
            .collect();
        Hls {
            grid: Grid {
                rate: audio.sample_rate,
                epoch,
            },
            renditions,
            titles: Mutex::new(VecDeque::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.renditions.is_empty()
    }

    /// The timeline sample of `now`: where a pipeline starting now begins.
    pub fn origin(&self, now: SystemTime) -> u64 {
        self.grid.sample_at(now)
    }

    /// Starts every rendition's timeline at `origin` (the pipeline's first sample).
    pub fn start(&self, origin: u64) {
        for r in &self.renditions {
            *lock(&r.packager) = Some(Packager::new(self.grid, r.frame_samples, origin, WINDOW));
            r.newest.send_replace(None);
            *lock(&r.rendered) = None;
        }
        lock(&self.titles).clear();
    }

    /// The rendition of the mount at `mount_index`, if it has HLS.
    pub fn for_mount(&self, mount_index: usize) -> Option<&Rendition> {
        self.renditions
            .iter()
            .find(|r| r.mount_index == mount_index)
    }

    /// The rendition whose mount path is `path`.
    pub fn by_path(&self, path: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.path == path)
    }

    /// A title went on air at timeline sample `sample` (the pipeline, at the segment boundary).
    pub fn title_changed(&self, sample: u64, title: &Arc<StreamTitle>) {
        let mut titles = lock(&self.titles);
        if titles.back().is_some_and(|t| t.title.same_as(title)) {
            return;
        }
        titles.push_back(TitleChange {
            sample,
            title: Arc::clone(title),
        });
        // Keep the one in force at the window's start: everything older goes.
        let oldest = sample.saturating_sub(u64::from(self.grid.rate) * WINDOW.as_secs() * 2);
        while titles.len() > 1 && titles.get(1).is_some_and(|t| t.sample < oldest) {
            titles.pop_front();
        }
    }

    /// The multivariant playlist: AAC renditions first, in config order, then MP3 (a player
    /// starts with the first listed; AAC is what every HLS client plays best, with parts too).
    pub fn multivariant(&self) -> String {
        let mut variants: Vec<(bool, Variant)> = self
            .renditions
            .iter()
            .map(|r| (r.ext == "mp3", r.variant.clone()))
            .collect();
        variants.sort_by_key(|(mp3, _)| *mp3);
        let variants: Vec<Variant> = variants.into_iter().map(|(_, v)| v).collect();
        playlist::multivariant(&variants)
    }

    /// The media playlist of `r` for its newest part, rendered once per part.
    pub fn playlist(&self, r: &Rendition) -> Option<Rendered> {
        let newest = (*r.newest.borrow())?;
        if let Some(done) = lock(&r.rendered).as_ref().filter(|d| d.part == newest) {
            return Some(done.clone());
        }
        let reports: Vec<Report> = self
            .renditions
            .iter()
            .filter(|o| o.mount_index != r.mount_index)
            .filter_map(|o| {
                let (last_msn, last_part) = (*o.newest.borrow())?;
                Some(Report {
                    uri: format!("../{}", o.variant.uri),
                    last_msn,
                    last_part,
                })
            })
            .collect();
        let titles: Vec<TitleChange> = lock(&self.titles).iter().cloned().collect();
        let (full, delta, part) = {
            let packager = lock(&r.packager);
            let packager = packager.as_ref()?;
            let render = |skip| {
                playlist::media(&playlist::Media {
                    grid: self.grid,
                    packager,
                    ext: r.ext,
                    reports: &reports,
                    titles: &titles,
                    skip,
                })
            };
            (render(false)?, render(true)?, packager.last_part()?)
        };
        let ((full, full_gz), (delta, delta_gz)) = (gzip(full), gzip(delta));
        let done = Rendered {
            part,
            full,
            full_gz,
            delta,
            delta_gz,
        };
        *lock(&r.rendered) = Some(done.clone());
        Some(done)
    }
}

impl Rendition {
    /// Takes the mount's newest frames (the pipeline thread, before they go to the ring).
    pub fn push(&self, frames: &[Frame]) {
        let newest = {
            let mut packager = lock(&self.packager);
            let Some(p) = packager.as_mut() else {
                return;
            };
            if !p.push(frames) {
                return;
            }
            p.last_part()
        };
        self.newest.send_replace(newest);
    }

    /// Watches the newest part.
    pub fn subscribe(&self) -> watch::Receiver<Option<(u64, u64)>> {
        self.newest.subscribe()
    }

    pub fn newest(&self) -> Option<(u64, u64)> {
        *self.newest.borrow()
    }

    /// A segment's body (ID3 tag, then frames), while it is kept.
    pub fn segment(&self, msn: u64) -> Option<Arc<[Bytes]>> {
        lock(&self.packager).as_ref()?.segment(msn).cloned()
    }

    /// A part's body, while it is kept.
    pub fn part(&self, msn: u64, index: u64) -> Option<Arc<[Bytes]>> {
        lock(&self.packager).as_ref()?.part(msn, index).cloned()
    }
}

/// Parts from (msn, index) `a` to `b`: how far ahead of the newest a request asks.
pub fn parts_between(a: (u64, u64), b: (u64, u64)) -> i128 {
    let n = |(msn, i): (u64, u64)| i128::from(msn) * i128::from(PARTS_PER_SEGMENT) + i128::from(i);
    n(b) - n(a)
}
