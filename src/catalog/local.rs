//! A local folder of tracks, read recursively: the default library that needs no setup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::{Catalog, CatalogError, TrackRef, is_ignored_name};

/// Tracks under one directory; keys are paths relative to it, with '/' separators.
#[derive(Debug, Clone)]
pub struct LocalCatalog {
    root: PathBuf,
}

impl LocalCatalog {
    pub fn new(root: PathBuf) -> LocalCatalog {
        LocalCatalog { root }
    }

    fn walk(root: &Path) -> Result<Vec<TrackRef>, CatalogError> {
        let mut found = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        let top = std::fs::read_dir(root)
            .map_err(|e| CatalogError::Unavailable(format!("{}: {e}", root.display())));
        drop(top?);
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
                // Follows symlinks, as operators mount libraries that way.
                let Ok(meta) = std::fs::metadata(entry.path()) else {
                    continue;
                };
                if meta.is_dir() {
                    dirs.push(entry.path());
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
        Ok(found)
    }
}

impl Catalog for LocalCatalog {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || Self::walk(&root))
            .await
            .map_err(|e| CatalogError::Unavailable(format!("listing task failed: {e}")))?
    }

    async fn fetch(&self, track: &TrackRef) -> Result<Bytes, CatalogError> {
        let path = self.root.join(&*track.key);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(CatalogError::NotFound(track.key.to_string()))
            }
            Err(e) => Err(CatalogError::Unavailable(format!(
                "{}: {e}",
                path.display()
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("local folder {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_recursively_sorted_and_skips_ignored_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/2.mp3"), b"x").unwrap();
        std::fs::write(dir.path().join("1.flac"), b"xy").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"no").unwrap();
        let cat = LocalCatalog::new(dir.path().to_path_buf());
        let list = cat.list().await.unwrap();
        let keys: Vec<&str> = list.iter().map(|t| &*t.key).collect();
        assert_eq!(keys, ["1.flac", "b/c/2.mp3"]);
        assert_eq!(&cat.fetch(&list[1]).await.unwrap()[..], b"x");

        std::fs::remove_file(dir.path().join("1.flac")).unwrap();
        assert!(matches!(
            cat.fetch(&list[0]).await,
            Err(CatalogError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_missing_root_is_unavailable() {
        let cat = LocalCatalog::new(PathBuf::from("/nonexistent/onair"));
        assert!(matches!(
            cat.list().await,
            Err(CatalogError::Unavailable(_))
        ));
    }
}
