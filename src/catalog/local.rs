//! A local folder of tracks, read recursively: the default library that needs no setup. Tracks
//! are played straight from their files (never read whole into memory), and the playout state is
//! kept under `.onair/state/` inside the folder when it is writable.
//!
//! Every file operation runs on the blocking pool under [`FILE_TIMEOUT`]: a hung network mount
//! (NFS, SMB) makes a fetch fail like a frozen storage gateway would, so the scheduler plays
//! something else instead of waiting.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use super::{
    Catalog, CatalogError, SIDECAR_DIR, STATE_DIR, SidecarPlace, StorageErrorKind, TrackData,
    TrackRef, is_ignored_name, sidecar_file_name, write_whole,
};

/// The longest a listing, an open or a state file operation may take.
const FILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Tracks under one directory; keys are paths relative to it, with '/' separators.
#[derive(Debug, Clone)]
pub struct LocalCatalog {
    root: PathBuf,
    max_track_bytes: Option<u64>,
}

impl LocalCatalog {
    /// The folder `root`; files larger than `max_track_bytes` are skipped as `too_large`.
    pub fn new(root: PathBuf, max_track_bytes: Option<u64>) -> LocalCatalog {
        LocalCatalog {
            root,
            max_track_bytes,
        }
    }

    fn walk(root: &Path) -> Result<Vec<TrackRef>, CatalogError> {
        let mut found = Vec::new();
        let top = std::fs::metadata(root).map_err(|e| {
            CatalogError::unavailable(StorageErrorKind::Other, format!("{}: {e}", root.display()))
        })?;
        // Symlinks are followed (operators mount libraries that way), so a link back up the
        // tree would loop: each directory is walked once, by device and inode.
        let mut seen = HashSet::from([(top.dev(), top.ino())]);
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            // A subfolder that vanished or is unreadable mid-walk is skipped, not fatal.
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    tracing::warn!(path = %entry.path().display(), "skipping a file name that is not UTF-8");
                    continue;
                };
                if is_ignored_name(name) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(entry.path()) else {
                    continue;
                };
                if meta.is_dir() {
                    // Live shows recorded into the library are not AutoDJ tracks.
                    if dir.as_path() == root && name == super::RECORDINGS_DIR {
                        continue;
                    }
                    if seen.insert((meta.dev(), meta.ino())) {
                        dirs.push(entry.path());
                    }
                } else if meta.is_file() {
                    let Ok(rel) = entry.path().strip_prefix(root).map(Path::to_path_buf) else {
                        continue;
                    };
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    found.push(TrackRef {
                        key: Arc::from(key),
                        version: Arc::from(format!("{}-{mtime}", meta.len())),
                    });
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(name)
    }

    /// Beside the track: `.onair/analysis/<key>.onair.json` in the folder.
    fn sidecar_path(&self, track: &TrackRef) -> PathBuf {
        self.root.join(SIDECAR_DIR).join(format!(
            "{}{}",
            track.key,
            crate::analysis::sidecar::SUFFIX
        ))
    }

    /// When the folder is read-only: a folder of its own under the system's temporary one.
    fn fallback_path(&self, track: &TrackRef) -> PathBuf {
        use sha2::{Digest, Sha256};
        let root = Sha256::digest(self.root.to_string_lossy().as_bytes());
        let root: String = root[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir()
            .join(format!("onair-analysis-{root}"))
            .join(sidecar_file_name(track))
    }
}

/// Runs file work on the blocking pool, giving up after [`FILE_TIMEOUT`].
async fn with_timeout<T: Send + 'static>(
    what: String,
    work: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    match tokio::time::timeout(FILE_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(CatalogError::Local(format!("{what}: task failed: {e}"))),
        Err(_) => Err(CatalogError::unavailable(
            StorageErrorKind::Timeout,
            format!("{what}: no answer from the file system within {FILE_TIMEOUT:?}"),
        )),
    }
}

impl Catalog for LocalCatalog {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        let root = self.root.clone();
        with_timeout(format!("listing {}", self.root.display()), move || {
            Self::walk(&root)
        })
        .await
    }

    async fn fetch(&self, track: &TrackRef) -> Result<TrackData, CatalogError> {
        let path = self.root.join(&*track.key);
        let (key, max) = (track.key.to_string(), self.max_track_bytes);
        with_timeout(format!("opening {}", path.display()), move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(CatalogError::NotFound(key));
                }
                Err(e) => {
                    return Err(CatalogError::Refused {
                        key,
                        detail: format!("{}: {e}", path.display()),
                    });
                }
            };
            let len = file
                .metadata()
                .map_err(|e| CatalogError::Refused {
                    key: key.clone(),
                    detail: format!("{}: {e}", path.display()),
                })?
                .len();
            if let Some(max) = max
                && len > max
            {
                return Err(CatalogError::TooLarge {
                    key,
                    bytes: len,
                    max,
                });
            }
            Ok(TrackData::from_file(file, 0, len))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("local folder {}", self.root.display())
    }

    async fn load_state(&self, name: &str) -> Result<Vec<Bytes>, CatalogError> {
        let path = self.state_path(name);
        with_timeout(
            format!("reading {}", path.display()),
            move || match std::fs::read(&path) {
                Ok(data) => Ok(vec![Bytes::from(data)]),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(CatalogError::Local(format!("{}: {e}", path.display()))),
            },
        )
        .await
    }

    async fn save_state(&self, name: &str, data: Bytes) -> Result<(), CatalogError> {
        let path = self.state_path(name);
        with_timeout(format!("writing {}", path.display()), move || {
            // Whole or not at all: a crash mid-write leaves the previous state.
            write_whole(&path, &data)
                .map_err(|e| CatalogError::Local(format!("{}: {e}", path.display())))
        })
        .await
    }

    async fn load_sidecar(&self, track: &TrackRef) -> Result<Option<Bytes>, CatalogError> {
        let paths = [self.sidecar_path(track), self.fallback_path(track)];
        with_timeout(format!("reading the sidecar of {}", track.key), move || {
            for path in paths {
                match std::fs::read(&path) {
                    Ok(data) => return Ok(Some(Bytes::from(data))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(CatalogError::Local(format!("{}: {e}", path.display())));
                    }
                }
            }
            Ok(None)
        })
        .await
    }

    async fn save_sidecar(
        &self,
        track: &TrackRef,
        data: Bytes,
    ) -> Result<SidecarPlace, CatalogError> {
        let (beside, fallback) = (self.sidecar_path(track), self.fallback_path(track));
        with_timeout(format!("writing the sidecar of {}", track.key), move || {
            if write_whole(&beside, &data).is_ok() {
                return Ok(SidecarPlace::Beside);
            }
            write_whole(&fallback, &data)
                .map(|()| SidecarPlace::Cache)
                .map_err(|e| CatalogError::Local(format!("{}: {e}", fallback.display())))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_recursively_sorted_and_skips_ignored_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::create_dir_all(dir.path().join(".onair/state")).unwrap();
        std::fs::write(dir.path().join("b/c/2.mp3"), b"x").unwrap();
        std::fs::write(dir.path().join("1.flac"), b"xy").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"no").unwrap();
        std::fs::write(dir.path().join(".onair/state/p.mp3"), b"no").unwrap();
        std::fs::create_dir_all(dir.path().join("recordings")).unwrap();
        std::fs::write(dir.path().join("recordings/show.mp3"), b"show").unwrap();
        let cat = LocalCatalog::new(dir.path().to_path_buf(), None);
        let list = cat.list().await.unwrap();
        let keys: Vec<&str> = list.iter().map(|t| &*t.key).collect();
        assert_eq!(keys, ["1.flac", "b/c/2.mp3"]);
        assert_eq!(cat.fetch(&list[1]).await.unwrap().read_all().unwrap(), b"x");

        std::fs::remove_file(dir.path().join("1.flac")).unwrap();
        assert!(matches!(
            cat.fetch(&list[0]).await,
            Err(CatalogError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_symlink_loop_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/song.mp3"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/loop")).unwrap();
        let cat = LocalCatalog::new(dir.path().to_path_buf(), None);
        let keys: Vec<String> = cat
            .list()
            .await
            .unwrap()
            .iter()
            .map(|t| t.key.to_string())
            .collect();
        assert_eq!(keys, ["a/song.mp3"]);
    }

    #[tokio::test]
    async fn files_over_the_limit_are_too_large() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.flac"), vec![0u8; 2000]).unwrap();
        let cat = LocalCatalog::new(dir.path().to_path_buf(), Some(1000));
        let list = cat.list().await.unwrap();
        let err = cat.fetch(&list[0]).await.unwrap_err();
        assert_eq!(err.skip_reason(), Some("too_large"), "{err}");
    }

    #[tokio::test]
    async fn state_round_trips_beside_the_tracks() {
        let dir = tempfile::tempdir().unwrap();
        let cat = LocalCatalog::new(dir.path().to_path_buf(), None);
        assert!(cat.load_state("playout.json").await.unwrap().is_empty());
        cat.save_state("playout.json", Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        cat.save_state("playout.json", Bytes::from_static(b"{\"a\":2}"))
            .await
            .unwrap();
        assert_eq!(
            cat.load_state("playout.json").await.unwrap(),
            vec![Bytes::from_static(b"{\"a\":2}")]
        );
        assert!(cat.list().await.unwrap().is_empty(), "state is not a track");
    }

    #[tokio::test]
    async fn a_missing_root_is_unavailable() {
        let cat = LocalCatalog::new(PathBuf::from("/nonexistent/onair"), None);
        assert!(cat.list().await.unwrap_err().storage_kind().is_some());
    }
}
