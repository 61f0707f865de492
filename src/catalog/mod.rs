//! The music library as the scheduler sees it: a list of track keys, a way to get a track onto
//! local disk ready to decode ([`TrackData`]), and a small place to keep the playout state. One
//! trait, implemented by the local folder (the default) and by S3 (`s3.rs`, one storage site),
//! which is read through a disk cache (`cache.rs`) over a primary and an optional backup site
//! (`cached.rs`), so that a storage outage does not silence the radio.

pub mod cache;
pub mod cached;
pub mod local;
pub mod s3;
pub mod store;
pub mod track;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use cache::{Cache, CacheError};
pub use cached::CachedCatalog;
pub use local::LocalCatalog;
pub use s3::{S3Catalog, S3SetupError};
pub use track::{TrackData, TrackReader};

use crate::config::{self, LibraryKind};

/// A track in the library, identified by its key (a path relative to the library root, or an
/// object key). `version` changes when the content does (mtime+size, or an ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackRef {
    pub key: Arc<str>,
    pub version: Arc<str>,
}

/// What kind of storage failure an [`CatalogError::Unavailable`] is (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// No connection (refused, reset, DNS, TLS).
    Connect,
    /// No answer in time: a frozen or overloaded gateway.
    Timeout,
    /// A body stopped arriving, and storage did not answer a probe either.
    Stall,
    /// A 5xx answer.
    Server,
    /// Told to slow down (429, 503 SlowDown).
    Throttled,
    /// An answer that could not be read.
    Response,
    /// Refused without asking: storage is down and its probe is not due.
    Down,
    /// Anything else the service did wrong (a listing refused, …).
    Other,
}

impl StorageErrorKind {
    /// Label for `onair_storage_failed_requests_total{kind}`.
    pub fn label(self) -> &'static str {
        match self {
            StorageErrorKind::Connect => "connect",
            StorageErrorKind::Timeout => "timeout",
            StorageErrorKind::Stall => "stall",
            StorageErrorKind::Server => "http_5xx",
            StorageErrorKind::Throttled => "throttled",
            StorageErrorKind::Response => "response",
            StorageErrorKind::Down => "down",
            StorageErrorKind::Other => "other",
        }
    }

    /// Every label, so metrics can start at zero.
    pub const ALL: [StorageErrorKind; 8] = [
        StorageErrorKind::Connect,
        StorageErrorKind::Timeout,
        StorageErrorKind::Stall,
        StorageErrorKind::Server,
        StorageErrorKind::Throttled,
        StorageErrorKind::Response,
        StorageErrorKind::Down,
        StorageErrorKind::Other,
    ];
}

/// Why a catalog operation failed, by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The track is gone since the last listing (or changed: it is listed again with its new
    /// version): skip it.
    #[error("track {0} no longer exists")]
    NotFound(String),
    /// Storage refuses this one object (403, …): skip it until its version changes.
    #[error("storage refuses track {key}: {detail}")]
    Refused { key: String, detail: String },
    /// Larger than `library.max_track_bytes`: skip it until its version changes.
    #[error("track {key} has {bytes} bytes, more than library.max_track_bytes = {max}")]
    TooLarge { key: String, bytes: u64, max: u64 },
    /// The track's body stopped arriving while storage kept answering: skip it until its
    /// version changes.
    #[error("track {key} stopped arriving while storage answers other requests")]
    Stalled { key: String },
    /// The storage service failed (connect, timeout, 5xx, throttling): keep what we have, try
    /// other tracks, retry later. Consecutive ones mark a storage site down.
    #[error("storage unavailable ({}): {detail}", kind.label())]
    Unavailable {
        kind: StorageErrorKind,
        detail: String,
    },
    /// A local problem (the disk cache cannot be written): try again later; storage is fine.
    #[error("local: {0}")]
    Local(String),
}

impl CatalogError {
    /// For an error about one object (skip that track until its version changes): the label of
    /// `onair_tracks_skipped_total{reason}`. `None` for failures of storage or of this host.
    pub fn skip_reason(&self) -> Option<&'static str> {
        match self {
            CatalogError::NotFound(_) => Some("missing"),
            CatalogError::Refused { .. } => Some("forbidden"),
            CatalogError::TooLarge { .. } => Some("too_large"),
            CatalogError::Stalled { .. } => Some("stalled"),
            CatalogError::Unavailable { .. } | CatalogError::Local(_) => None,
        }
    }

    /// A storage service failure (counts towards marking a site down).
    pub fn storage_kind(&self) -> Option<StorageErrorKind> {
        match self {
            CatalogError::Unavailable { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn unavailable(kind: StorageErrorKind, detail: impl Into<String>) -> CatalogError {
        CatalogError::Unavailable {
            kind,
            detail: detail.into(),
        }
    }
}

/// A source of tracks.
pub trait Catalog: Send + Sync + 'static {
    /// Every playable-looking track key, sorted by key. Files that are clearly not audio by name
    /// (text, images, playlists) are left out; everything else is probed when fetched.
    fn list(&self) -> impl Future<Output = Result<Vec<TrackRef>, CatalogError>> + Send;
    /// One track, on local disk (or, when small and the disk will not take it, in memory).
    fn fetch(
        &self,
        track: &TrackRef,
    ) -> impl Future<Output = Result<TrackData, CatalogError>> + Send;
    /// One track to be analysed: as `fetch`, but a track not cached is read from a scratch
    /// copy that the cache never keeps.
    fn fetch_to_analyse(
        &self,
        track: &TrackRef,
    ) -> impl Future<Output = Result<TrackData, CatalogError>> + Send {
        self.fetch(track)
    }
    /// Where the library lives, for logs and status.
    fn describe(&self) -> String;
    /// Where a fetch of `track` would be served from now, so the scheduler can prefer tracks
    /// that do not depend on storage while it is slow or down.
    fn availability(&self, _track: &TrackRef) -> Availability {
        Availability::Local
    }
    /// While storage is down, how soon to list again, whatever the rescan interval: listing is
    /// what notices storage is back and brings back the tracks that are not cached.
    fn relist_after(&self) -> Option<Duration> {
        None
    }
    /// Every stored copy of the small state object `name` (one per storage site that answers),
    /// for the caller to pick the newest. Empty when there is none.
    fn load_state(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<Bytes>, CatalogError>> + Send;
    /// Replaces the small state object `name` where the library is served from now.
    fn save_state(
        &self,
        name: &str,
        data: Bytes,
    ) -> impl Future<Output = Result<(), CatalogError>> + Send;
    /// The analysis sidecar kept for `track` (any version: the caller checks it), if any.
    fn load_sidecar(
        &self,
        track: &TrackRef,
    ) -> impl Future<Output = Result<Option<Bytes>, CatalogError>> + Send;
    /// Keeps the analysis sidecar of `track`: beside it when the storage takes it, else in a
    /// local cache folder (said by the result).
    fn save_sidecar(
        &self,
        track: &TrackRef,
        data: Bytes,
    ) -> impl Future<Output = Result<SidecarPlace, CatalogError>> + Send;
}

/// Where a sidecar was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarPlace {
    /// Beside the track (an object in the bucket, a file under the folder's `.onair/`).
    Beside,
    /// The library refused it: in the disk cache (or a temporary folder) instead.
    Cache,
}

/// Where a fetch would be served from (see [`Catalog::availability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// From local disk: a local folder or a cache hit. Fast whatever storage does.
    Local,
    /// From storage, which answered last time.
    Storage,
    /// From storage, which is down: the fetch fails at once.
    Down,
}

/// The library the config asks for: one type for the scheduler whichever the storage.
#[derive(Debug, Clone)]
pub enum Library {
    Local(LocalCatalog),
    /// Read through the disk cache; clones share the cache, counters and up/down state.
    S3(CachedCatalog<S3Catalog>),
}

/// Why the library cannot be set up at start (a mistake in the config or the environment).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("S3 library: {0}")]
    S3(#[from] S3SetupError),
    #[error("S3 backup site (library.backup): {0}")]
    Backup(S3SetupError),
    #[error("disk cache (library.cache_dir): {0}")]
    Cache(#[from] CacheError),
}

impl Library {
    /// Builds the catalog; for S3, opens the disk cache (which must be writable) and a client
    /// per site with credentials from the environment. Makes no storage request: a gateway
    /// that is down at start is an outage to ride out, not a setup error.
    pub async fn open(config: &config::Library) -> Result<Library, SetupError> {
        match &config.kind {
            LibraryKind::Local { path } => Ok(Library::Local(LocalCatalog::new(
                path.clone(),
                config.max_track_bytes,
            ))),
            LibraryKind::S3(s3) => {
                let cache = Cache::open(&s3.cache_dir, s3.cache_max_bytes).await?;
                let primary = S3Catalog::from_env(&s3.storage)?;
                let backup = match &s3.backup {
                    Some(b) => Some(S3Catalog::from_env(b).map_err(SetupError::Backup)?),
                    None => None,
                };
                Ok(Library::S3(CachedCatalog::new(
                    primary,
                    backup,
                    cache,
                    cached::Options {
                        retry_after: s3.retry_after,
                        max_track_bytes: config.max_track_bytes,
                        probe_timeout: s3.storage.timeouts.stall,
                    },
                )))
            }
        }
    }
}

impl Catalog for Library {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        match self {
            Library::Local(c) => c.list().await,
            Library::S3(c) => c.list().await,
        }
    }

    async fn fetch(&self, track: &TrackRef) -> Result<TrackData, CatalogError> {
        match self {
            Library::Local(c) => c.fetch(track).await,
            Library::S3(c) => c.fetch(track).await,
        }
    }

    async fn fetch_to_analyse(&self, track: &TrackRef) -> Result<TrackData, CatalogError> {
        match self {
            Library::Local(c) => c.fetch_to_analyse(track).await,
            Library::S3(c) => c.fetch_to_analyse(track).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Library::Local(c) => c.describe(),
            Library::S3(c) => c.describe(),
        }
    }

    fn availability(&self, track: &TrackRef) -> Availability {
        match self {
            Library::Local(c) => c.availability(track),
            Library::S3(c) => c.availability(track),
        }
    }

    fn relist_after(&self) -> Option<Duration> {
        match self {
            Library::Local(c) => c.relist_after(),
            Library::S3(c) => c.relist_after(),
        }
    }

    async fn load_state(&self, name: &str) -> Result<Vec<Bytes>, CatalogError> {
        match self {
            Library::Local(c) => c.load_state(name).await,
            Library::S3(c) => c.load_state(name).await,
        }
    }

    async fn save_state(&self, name: &str, data: Bytes) -> Result<(), CatalogError> {
        match self {
            Library::Local(c) => c.save_state(name, data).await,
            Library::S3(c) => c.save_state(name, data).await,
        }
    }

    async fn load_sidecar(&self, track: &TrackRef) -> Result<Option<Bytes>, CatalogError> {
        match self {
            Library::Local(c) => c.load_sidecar(track).await,
            Library::S3(c) => c.load_sidecar(track).await,
        }
    }

    async fn save_sidecar(
        &self,
        track: &TrackRef,
        data: Bytes,
    ) -> Result<SidecarPlace, CatalogError> {
        match self {
            Library::Local(c) => c.save_sidecar(track, data).await,
            Library::S3(c) => c.save_sidecar(track, data).await,
        }
    }
}

/// Extensions that are never audio, so they are not even tried (as `93-notes.txt`). Everything else
/// is probed by content: a FLAC file named `.mp3` still plays.
pub(crate) fn is_ignored_name(name: &str) -> bool {
    const IGNORED: [&str; 16] = [
        "txt", "md", "nfo", "log", "jpg", "jpeg", "png", "gif", "webp", "bmp", "m3u", "m3u8",
        "pls", "cue", "xspf", "json",
    ];
    if name.starts_with('.') {
        return true;
    }
    match name.rsplit_once('.') {
        Some((_, ext)) => IGNORED.iter().any(|i| ext.eq_ignore_ascii_case(i)),
        None => false,
    }
}

/// Where state objects live, relative to the library root or prefix: hidden, so listings
/// never take them for tracks.
pub(crate) const STATE_DIR: &str = ".onair/state/";
/// Where live shows are recorded, relative to the library root or prefix (a top-level folder).
/// It is not hidden, so operators find the shows, but it is never listed as tracks.
pub const RECORDINGS_DIR: &str = "recordings";

/// Whether `key` (relative to the library root or prefix) is a show recording.
pub(crate) fn is_recording(key: &str) -> bool {
    key.strip_prefix(RECORDINGS_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Where a local folder keeps sidecars (relative to its root; hidden likewise).
pub(crate) const SIDECAR_DIR: &str = ".onair/analysis/";

/// The file name a sidecar of `track` takes in a cache folder: flat, from a hash of the key.
pub(crate) fn sidecar_file_name(track: &TrackRef) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(track.key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}{}", crate::analysis::sidecar::SUFFIX)
}

/// Writes `data` to `path` whole (a temporary file renamed into place), making its folder.
pub(crate) fn write_whole(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!(
        "tmp-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::write(&temp, data)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_obvious_non_audio_names_only() {
        assert!(is_ignored_name("93-notes.txt"));
        assert!(is_ignored_name("cover.JPG"));
        assert!(is_ignored_name(".DS_Store"));
        assert!(is_ignored_name(".onair"));
        assert!(!is_ignored_name("94-flac-named.mp3"));
        assert!(!is_ignored_name("track"));
        assert!(!is_ignored_name("a.weird-extension"));
    }

    #[test]
    fn only_the_top_level_recordings_folder_holds_recordings() {
        assert!(is_recording("recordings/2026-12-02T10-00-00Z-dj.mp3"));
        assert!(!is_recording("recordings-2026.mp3"));
        assert!(!is_recording("albums/recordings/a.mp3"));
        assert!(!is_recording("recordings"));
    }
}
