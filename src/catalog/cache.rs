//! The disk cache of whole track files, so that a storage outage (or a restart during one) does
//! not silence the radio; `super::cached::CachedCatalog` reads the library through it.
//!
//! On disk: one file per track version, `<32 hex of sha256(key, etag)>.track`, holding a small
//! header (magic, key, ETag, length) followed by the track bytes, so the directory alone says what
//! is cached after a restart (no separate index to keep in step). A file is written under a
//! `.tmp-` name in the same directory, fsynced, then renamed into place (and the directory
//! fsynced): after a crash there is either the whole entry or none; stray `.tmp-` files are
//! deleted by [`Cache::open`]. Eviction is least-recently-played: every hit or store stamps the
//! entry (and the file's mtime, so the order survives a restart), and the oldest entries go when
//! the total passes `max_bytes`. All file work runs on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::TrackRef;

const MAGIC: &[u8; 8] = b"ONAIRC1\n";
const FIXED_HEADER: usize = 8 + 4 + 4 + 8;
const SUFFIX: &str = ".track";
const TEMP_PREFIX: &str = ".tmp-";

/// A cache operation that failed on the file system.
#[derive(Debug, thiserror::Error)]
#[error("cache {path}: {source}")]
pub struct CacheError {
    /// The file or directory involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

/// A size-capped directory of whole tracks keyed by (key, ETag). Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    temp_seq: AtomicU64,
    index: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<TrackRef, Entry>,
    total: u64,
    clock: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    size: u64,
    last_used: u64,
}

impl Index {
    /// A strictly increasing "now" in nanoseconds since the epoch (LRU order).
    fn tick(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.clock = now.max(self.clock + 1);
        self.clock
    }

    fn remove(&mut self, track: &TrackRef) -> Option<Entry> {
        let entry = self.entries.remove(track)?;
        self.total -= entry.size;
        Some(entry)
    }

    /// Drops least-recently-used entries (never `keep`) until the total fits `max`.
    fn evict(&mut self, max: u64, keep: Option<&TrackRef>) -> Vec<PathBuf> {
        let mut gone = Vec::new();
        while self.total > max {
            let victim = self
                .entries
                .iter()
                .filter(|(t, _)| Some(*t) != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(t, _)| t.clone());
            let Some(victim) = victim else { break };
            if let Some(entry) = self.remove(&victim) {
                tracing::debug!(track = %victim.key, bytes = entry.size, "evicting from the cache");
                gone.push(entry.file);
            }
        }
        gone
    }
}

impl Cache {
    /// Opens (creating it if needed) the cache in `dir`, capped at `max_bytes` on disk; fails if
    /// the directory cannot be created, read or written. Finds the
    /// entries left by an earlier run, deletes stray temporary and unreadable entry files, and
    /// evicts down to the cap if it shrank.
    pub async fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Cache, CacheError> {
        let dir = dir.into();
        let scan_dir = dir.clone();
        let (mut index, removed) = blocking(move || scan(&scan_dir)).await?;
        let evicted = index.evict(max_bytes, None);
        delete_files(evicted).await;
        if removed > 0 || !index.entries.is_empty() {
            tracing::info!(dir = %dir.display(), tracks = index.entries.len(), bytes = index.total,
                cleaned = removed, "disk cache opened");
        }
        Ok(Cache {
            shared: Arc::new(Shared {
                dir,
                max_bytes,
                temp_seq: AtomicU64::new(0),
                index: Mutex::new(index),
            }),
        })
    }

    /// The bytes of this exact track version, if cached; a hit makes it the most recently used.
    /// An entry whose file has vanished or is damaged is dropped and reported as a miss.
    pub async fn get(&self, track: &TrackRef) -> Option<Bytes> {
        let file = {
            let mut index = self.index();
            let now = index.tick();
            let entry = index.entries.get_mut(track)?;
            entry.last_used = now;
            entry.file.clone()
        };
        let expect = track.clone();
        let path = file.clone();
        match blocking(move || read_entry(&path, &expect)).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(track = %track.key, error = %e, "dropping an unreadable cache entry");
                {
                    let mut index = self.index();
                    if index.entries.get(track).is_some_and(|e| e.file == file) {
                        index.remove(track);
                    }
                }
                delete_files(vec![file]).await;
                None
            }
        }
    }

    /// Stores a track version atomically, replaces other cached versions of the same key, and
    /// evicts least-recently-used entries beyond the cap. A track larger than the whole cap is
    /// not stored.
    pub async fn put(&self, track: &TrackRef, data: &Bytes) -> Result<(), CacheError> {
        let size = (FIXED_HEADER + track.key.len() + track.version.len() + data.len()) as u64;
        if size > self.shared.max_bytes {
            tracing::debug!(track = %track.key, bytes = size, "track larger than the cache; not cached");
            return Ok(());
        }
        let name = file_name(track);
        let seq = self.shared.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = self.shared.dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{seq}",
            std::process::id(),
            &name
        ));
        let path = self.shared.dir.join(&name);
        let (t, d, final_path) = (track.clone(), data.clone(), path.clone());
        blocking(move || write_entry(&temp, &final_path, &t, &d)).await?;
        let doomed = {
            let mut index = self.index();
            index.remove(track);
            let stale: Vec<TrackRef> = index
                .entries
                .keys()
                .filter(|t| t.key == track.key)
                .cloned()
                .collect();
            let mut doomed: Vec<PathBuf> = stale
                .iter()
                .filter_map(|t| index.remove(t))
                .map(|e| e.file)
                .collect();
            let last_used = index.tick();
            index.entries.insert(
                track.clone(),
                Entry {
                    file: path,
                    size,
                    last_used,
                },
            );
            index.total += size;
            doomed.extend(index.evict(self.shared.max_bytes, Some(track)));
            doomed
        };
        delete_files(doomed).await;
        Ok(())
    }

    /// Forgets a track version and deletes its file.
    pub async fn remove(&self, track: &TrackRef) {
        let entry = self.index().remove(track);
        if let Some(entry) = entry {
            delete_files(vec![entry.file]).await;
        }
    }

    /// Deletes every entry not in `keep` (tracks deleted or changed in storage).
    pub async fn retain(&self, keep: &HashSet<TrackRef>) {
        let doomed: Vec<PathBuf> = {
            let mut index = self.index();
            let gone: Vec<TrackRef> = index
                .entries
                .keys()
                .filter(|t| !keep.contains(*t))
                .cloned()
                .collect();
            gone.iter()
                .filter_map(|t| index.remove(t))
                .map(|e| e.file)
                .collect()
        };
        delete_files(doomed).await;
    }

    /// What is cached, sorted by key: the library to play while storage is unreachable.
    pub fn entries(&self) -> Vec<TrackRef> {
        let mut all: Vec<TrackRef> = self.index().entries.keys().cloned().collect();
        all.sort();
        all
    }

    /// Whether this exact track version is cached.
    pub fn contains(&self, track: &TrackRef) -> bool {
        self.index().entries.contains_key(track)
    }

    /// Bytes on disk (headers included).
    pub fn total_bytes(&self) -> u64 {
        self.index().total
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves the index consistent enough to go on.
        self.shared.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(CacheError {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("cache task failed: {e}")),
        })
    })
}

async fn delete_files(files: Vec<PathBuf>) {
    if files.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for file in files {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot delete a cache file")
                }
            }
        }
    })
    .await;
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError {
        path: path.to_path_buf(),
        source,
    }
}

/// `<first 16 bytes of sha256(len(key) key etag) in hex>.track`.
fn file_name(track: &TrackRef) -> String {
    let mut hasher = Sha256::new();
    hasher.update((track.key.len() as u64).to_le_bytes());
    hasher.update(track.key.as_bytes());
    hasher.update(track.version.as_bytes());
    let digest = hasher.finalize();
    let mut name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    name.push_str(SUFFIX);
    name
}

fn write_entry(temp: &Path, path: &Path, track: &TrackRef, data: &[u8]) -> Result<(), CacheError> {
    let result = (|| {
        let mut file = std::fs::File::create(temp)?;
        let mut header = Vec::with_capacity(FIXED_HEADER + track.key.len() + track.version.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(track.key.len() as u32).to_le_bytes());
        header.extend_from_slice(&(track.version.len() as u32).to_le_bytes());
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        header.extend_from_slice(track.key.as_bytes());
        header.extend_from_slice(track.version.as_bytes());
        file.write_all(&header)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(temp, path)?;
        // Make the rename itself durable.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result.map_err(io_err(path))
}

/// Reads and checks an entry's header: `(track, header length, data length)`.
fn read_header(file: &mut std::fs::File) -> std::io::Result<(TrackRef, u64, u64)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut fixed = [0u8; FIXED_HEADER];
    file.read_exact(&mut fixed)?;
    if &fixed[..8] != MAGIC {
        return Err(bad("not a cache entry"));
    }
    let word =
        |at: usize| u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]]);
    let (key_len, etag_len) = (word(8) as usize, word(12) as usize);
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&fixed[16..24]);
    let data_len = u64::from_le_bytes(len8);
    if key_len > 64 * 1024 || etag_len > 4096 {
        return Err(bad("implausible header"));
    }
    let mut names = vec![0u8; key_len + etag_len];
    file.read_exact(&mut names)?;
    let key = std::str::from_utf8(&names[..key_len]).map_err(|_| bad("key is not UTF-8"))?;
    let etag = std::str::from_utf8(&names[key_len..]).map_err(|_| bad("etag is not UTF-8"))?;
    let header_len = (FIXED_HEADER + key_len + etag_len) as u64;
    if file.metadata()?.len() != header_len + data_len {
        return Err(bad("length does not match its header"));
    }
    let track = TrackRef {
        key: Arc::from(key),
        version: Arc::from(etag),
    };
    Ok((track, header_len, data_len))
}

fn read_entry(path: &Path, expect: &TrackRef) -> Result<Bytes, CacheError> {
    let err = io_err(path);
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let (track, _, data_len) = read_header(&mut file).map_err(io_err(path))?;
    if &track != expect {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "entry holds another track",
        )));
    }
    let mut all = Vec::with_capacity(data_len as usize);
    file.read_to_end(&mut all).map_err(io_err(path))?;
    // Best effort: the mtime carries the LRU order across restarts.
    let _ = file.set_modified(SystemTime::now());
    if all.len() as u64 != data_len {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "entry was cut short",
        )));
    }
    Ok(Bytes::from(all))
}

/// Builds the index from the directory; returns it and how many files were deleted.
fn scan(dir: &Path) -> Result<(Index, usize), CacheError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Found now rather than at the first fetch, where it would only be logged: a cache that
    // cannot be written leaves nothing to play through an outage.
    let probe = dir.join(format!("{TEMP_PREFIX}writable"));
    std::fs::write(&probe, b"").map_err(io_err(&probe))?;
    let _ = std::fs::remove_file(&probe);
    let mut index = Index::default();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            // A write cut short by a crash or kill: never renamed, so never an entry.
            if std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        if !name.ends_with(SUFFIX) {
            continue; // not ours: left alone
        }
        let header = std::fs::File::open(&path).and_then(|mut f| {
            let (track, _, _) = read_header(&mut f)?;
            let meta = f.metadata()?;
            Ok((track, meta.len(), meta.modified()?))
        });
        match header {
            Ok((track, size, mtime)) => {
                let last_used = mtime
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                index.clock = index.clock.max(last_used);
                if let Some(old) = index.entries.insert(
                    track,
                    Entry {
                        file: path,
                        size,
                        last_used,
                    },
                ) {
                    // Two files for one version (should not happen): keep one, delete the other.
                    let _ = std::fs::remove_file(&old.file);
                    removed += 1;
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "deleting an unreadable cache file");
                if std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    index.total = index.entries.values().map(|e| e.size).sum();
    Ok((index, removed))
}
