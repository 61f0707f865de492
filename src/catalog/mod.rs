//! The music library as the scheduler sees it: a list of track keys and a way to fetch a track's
//! bytes. One trait, implemented by the local folder (the default) and by S3 (`s3.rs`), which is
//! read through a disk cache (`cache.rs`, `cached.rs`) so that a storage outage does not silence
//! the radio.

pub mod cache;
pub mod cached;
pub mod local;
pub mod s3;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use cache::{Cache, CacheError};
pub use cached::CachedCatalog;
pub use local::LocalCatalog;
pub use s3::{S3Catalog, S3SetupError};

use crate::config::{self, LibraryKind};

/// A track in the library, identified by its key (a path relative to the library root, or an
/// object key). `version` changes when the content does (mtime+size, or an ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackRef {
    pub key: Arc<str>,
    pub version: Arc<str>,
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The track is gone since the last listing: drop it and move on.
    #[error("track {0} no longer exists")]
    NotFound(String),
    /// The storage cannot be read right now: keep what we have and retry later.
    #[error("library unavailable: {0}")]
    Unavailable(String),
}

/// A source of tracks.
pub trait Catalog: Send + Sync + 'static {
    /// Every playable-looking track key, sorted by key. Files that are clearly not audio by name
    /// (text, images, playlists) are left out; everything else is probed when fetched.
    fn list(&self) -> impl Future<Output = Result<Vec<TrackRef>, CatalogError>> + Send;
    /// The whole content of one track.
    fn fetch(&self, track: &TrackRef) -> impl Future<Output = Result<Bytes, CatalogError>> + Send;
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
    #[error("disk cache (library.cache_dir): {0}")]
    Cache(#[from] CacheError),
}

impl Library {
    /// Builds the catalog; for S3, opens the disk cache (which must be writable) and the client
    /// with credentials from the `AWS_*` environment. Makes no storage request: a gateway that is
    /// down at start is an outage to ride out, not a setup error.
    pub async fn open(config: &config::Library) -> Result<Library, SetupError> {
        match &config.kind {
            LibraryKind::Local { path } => Ok(Library::Local(LocalCatalog::new(path.clone()))),
            LibraryKind::S3(s3) => {
                let cache = Cache::open(&s3.cache_dir, s3.cache_max_bytes).await?;
                let storage = S3Catalog::from_env(&s3.storage)?;
                Ok(Library::S3(CachedCatalog::with_retry_after(
                    storage,
                    cache,
                    s3.retry_after,
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

    async fn fetch(&self, track: &TrackRef) -> Result<Bytes, CatalogError> {
        match self {
            Library::Local(c) => c.fetch(track).await,
            Library::S3(c) => c.fetch(track).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_obvious_non_audio_names_only() {
        assert!(is_ignored_name("93-notes.txt"));
        assert!(is_ignored_name("cover.JPG"));
        assert!(is_ignored_name(".DS_Store"));
        assert!(!is_ignored_name("94-flac-named.mp3"));
        assert!(!is_ignored_name("track"));
        assert!(!is_ignored_name("a.weird-extension"));
    }
}
