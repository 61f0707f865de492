//! The disk cache of track files, so that a storage outage (or a restart during one) does not
//! silence the radio; `super::cached::CachedCatalog` reads the library through it.
//!
//! On disk: one file per stored track version, `<32 hex of sha256(key, etag)>-<16 hex>.track`.
//! The second part is new for every write, so a delete (eviction, replacement, a damaged entry)
//! names exactly the file it means and can never remove a newer copy of the same track. A file
//! holds a header (magic, key, ETag, data length, CRC-32 of the data) and then the track bytes,
//! so the directory alone says what is cached after a restart (no index file to keep in step).
//!
//! Tracks are streamed in ([`EntryWriter`]): storage bodies go to disk as they arrive, under a
//! `.tmp-` name, then the header gets its length and checksum, the file is fsynced and renamed
//! into place (and the directory fsynced). After a crash there is the whole entry or none, and
//! stray `.tmp-` files are deleted by [`Cache::open`]. An entry found on disk at start is verified
//! (length and checksum) before it is first served, so a torn or damaged file never plays.
//! Tracks larger than the cap go to an unnamed scratch file that lives as long as it plays.
//!
//! Eviction is least-recently-played: every hit or store stamps the entry (and the file's mtime,
//! so the order survives a restart). File work runs on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::TrackRef;
use super::track::TrackData;

const MAGIC: &[u8; 8] = b"ONAIRC2\n";
/// magic, key length (u32), ETag length (u32), data length (u64), CRC-32 (u32), reserved (u32).
const FIXED_HEADER: usize = 8 + 4 + 4 + 8 + 4 + 4;
const SUFFIX: &str = ".track";
const TEMP_PREFIX: &str = ".tmp-";
/// Bytes gathered before each write to disk while a track streams in.
const WRITE_BUFFER: usize = 256 * 1024;

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

/// A size-capped directory of tracks keyed by (key, ETag). Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
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
    /// Unique to this write: deletes name it, so they never hit a newer copy.
    file: PathBuf,
    /// Bytes on disk, header included (what counts against the cap).
    size: u64,
    last_used: u64,
    /// Its length and checksum were checked by this process (it wrote it, or read it whole).
    verified: bool,
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
        self.total = self.total.saturating_sub(entry.size);
        Some(entry)
    }

    /// Removes `track`'s entry only if it is still the one in `file`.
    fn remove_if_file(&mut self, track: &TrackRef, file: &Path) -> Option<Entry> {
        if self.entries.get(track).is_some_and(|e| e.file == file) {
            self.remove(track)
        } else {
            None
        }
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
    /// the directory cannot be created, read or written. Finds the entries left by an earlier
    /// run, deletes stray temporary and unreadable entry files, and evicts down to the cap if it
    /// shrank.
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
                index: Mutex::new(index),
            }),
        })
    }

    /// This exact track version, if cached and intact; a hit makes it the most recently used.
    /// An entry whose file has vanished, is cut short or fails its checksum is dropped and
    /// reported as a miss.
    pub async fn get(&self, track: &TrackRef) -> Option<TrackData> {
        let (file, verified) = {
            let mut index = self.index();
            let now = index.tick();
            let entry = index.entries.get_mut(track)?;
            entry.last_used = now;
            (entry.file.clone(), entry.verified)
        };
        let (expect, path) = (track.clone(), file.clone());
        match blocking(move || open_entry(&path, &expect, !verified)).await {
            Ok(data) => {
                if !verified && let Some(e) = self.index().entries.get_mut(track) {
                    e.verified |= e.file == file;
                }
                Some(data)
            }
            Err(e) => {
                // Evicted or replaced between the lookup and the open: not damage, just a miss.
                let gone = e.source.kind() == std::io::ErrorKind::NotFound;
                if !gone {
                    tracing::warn!(track = %track.key, error = %e, "dropping a damaged cache entry");
                }
                let removed = self.index().remove_if_file(track, &file);
                if removed.is_some() && !gone {
                    delete_files(vec![file]).await;
                }
                None
            }
        }
    }

    /// Starts storing a track version that storage is sending. `expected_len` is the body's
    /// length when storage said it: a track larger than the whole cap is written to an unnamed
    /// scratch file instead, which plays once and leaves nothing behind.
    pub async fn writer(
        &self,
        track: &TrackRef,
        expected_len: Option<u64>,
    ) -> Result<EntryWriter, CacheError> {
        let header_len = header_len(track);
        let keep = expected_len.is_none_or(|n| n.saturating_add(header_len) <= self.max_bytes());
        self.writer_to(track, keep).await
    }

    /// An unnamed scratch file for a track that is read once and not kept (the analysis of a
    /// track not cached): it takes no room from the tracks about to play.
    pub async fn scratch_writer(&self, track: &TrackRef) -> Result<EntryWriter, CacheError> {
        self.writer_to(track, false).await
    }

    async fn writer_to(&self, track: &TrackRef, keep: bool) -> Result<EntryWriter, CacheError> {
        let temp = self.shared.dir.join(format!(
            "{TEMP_PREFIX}{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let (path, t) = (temp.clone(), track.clone());
        let file = blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err(&path))?;
            if keep {
                // Length and checksum are filled in by `finish`, once known.
                file.write_all(&encode_header(&t, 0, 0))
                    .map_err(io_err(&path))?;
            } else {
                // Unnamed from the start: a crash cannot leave it behind.
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
            Ok(file)
        })
        .await?;
        Ok(EntryWriter {
            cache: self.clone(),
            track: track.clone(),
            temp,
            file: Some(file),
            buffer: Vec::with_capacity(WRITE_BUFFER),
            crc: crc32fast::Hasher::new(),
            written: 0,
            keep,
        })
    }

    /// Stores a whole track version at once (small tracks, tests); see [`Cache::writer`].
    pub async fn put(&self, track: &TrackRef, data: &[u8]) -> Result<TrackData, CacheError> {
        let mut writer = self.writer(track, Some(data.len() as u64)).await?;
        writer.write(data).await?;
        writer.finish().await
    }

    /// Files a finished entry: it replaces other cached versions of the same key, and entries
    /// least recently used go beyond the cap. Returns the files to delete.
    fn insert(&self, track: &TrackRef, file: PathBuf, size: u64) -> Vec<PathBuf> {
        let mut index = self.index();
        let mut doomed: Vec<PathBuf> = index.remove(track).map(|e| e.file).into_iter().collect();
        let stale: Vec<TrackRef> = index
            .entries
            .keys()
            .filter(|t| t.key == track.key)
            .cloned()
            .collect();
        doomed.extend(stale.iter().filter_map(|t| index.remove(t)).map(|e| e.file));
        let last_used = index.tick();
        index.entries.insert(
            track.clone(),
            Entry {
                file,
                size,
                last_used,
                verified: true,
            },
        );
        index.total += size;
        doomed.extend(index.evict(self.shared.max_bytes, Some(track)));
        doomed
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

    /// The cap on [`Cache::total_bytes`].
    pub fn max_bytes(&self) -> u64 {
        self.shared.max_bytes
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // Every update of the index is complete before its lock is released (no await, no
        // fallible step in between), so the data behind a poisoned lock is consistent.
        self.shared.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A track version being written into the cache as it arrives; see [`Cache::writer`]. Dropped
/// without [`EntryWriter::finish`] (a body that failed, a shutdown), it deletes its file.
pub struct EntryWriter {
    cache: Cache,
    track: TrackRef,
    temp: PathBuf,
    /// `None` once handed to `finish` (or to a blocking write in flight).
    file: Option<File>,
    buffer: Vec<u8>,
    crc: crc32fast::Hasher,
    written: u64,
    /// An entry to keep; otherwise an unnamed scratch file.
    keep: bool,
}

impl EntryWriter {
    /// Appends the next piece of the track. Writes go to disk in blocks of [`WRITE_BUFFER`],
    /// so memory stays bounded whatever the track's size.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), CacheError> {
        self.crc.update(chunk);
        self.written += chunk.len() as u64;
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Bytes of track data written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    async fn flush(&mut self) -> Result<(), CacheError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(mut file) = self.file.take() else {
            return Err(self.error(std::io::Error::other("cache writer already finished")));
        };
        let buffer = std::mem::take(&mut self.buffer);
        let temp = self.temp.clone();
        let (file, buffer) = blocking(move || {
            file.write_all(&buffer).map_err(io_err(&temp))?;
            Ok((file, buffer))
        })
        .await?;
        self.file = Some(file);
        self.buffer = buffer;
        self.buffer.clear();
        Ok(())
    }

    /// Completes the entry (length and checksum into its header, fsync, rename into place) and
    /// returns the track to play from it. A scratch file is only flushed.
    pub async fn finish(mut self) -> Result<TrackData, CacheError> {
        self.flush().await?;
        let Some(file) = self.file.take() else {
            return Err(self.error(std::io::Error::other("cache writer already finished")));
        };
        let (len, crc) = (self.written, self.crc.clone().finalize());
        if !self.keep {
            return Ok(TrackData::from_file(file, 0, len));
        }
        let header_len = header_len(&self.track);
        let size = header_len + len;
        let final_path = self.cache.shared.dir.join(format!(
            "{}-{:016x}{SUFFIX}",
            name_stem(&self.track),
            fastrand::u64(..)
        ));
        let (temp, path, track) = (self.temp.clone(), final_path.clone(), self.track.clone());
        let too_big = size > self.cache.shared.max_bytes;
        let file = blocking(move || {
            file.write_all_at(&encode_header(&track, len, crc), 0)
                .map_err(io_err(&temp))?;
            if too_big {
                // Longer than its length said, or than the cap: play it, keep nothing.
                std::fs::remove_file(&temp).map_err(io_err(&temp))?;
                return Ok(file);
            }
            file.sync_all().map_err(io_err(&temp))?;
            std::fs::rename(&temp, &path).map_err(io_err(&path))?;
            // Make the rename itself durable.
            if let Some(dir) = path.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(dir))?;
            }
            Ok(file)
        })
        .await?;
        // From here the file is either in place or unlinked: nothing for `Drop` to clean.
        self.temp = PathBuf::new();
        if !too_big {
            let doomed = self.cache.insert(&self.track, final_path, size);
            delete_files(doomed).await;
        }
        Ok(TrackData::from_file(file, header_len, len))
    }

    fn error(&self, source: std::io::Error) -> CacheError {
        CacheError {
            path: self.temp.clone(),
            source,
        }
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if self.keep && !self.temp.as_os_str().is_empty() {
            // One unlink of our own temporary file: short enough to do in place.
            let _ = std::fs::remove_file(&self.temp);
        }
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

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// First 16 bytes of sha256(len(key) key etag) in hex: the same for every copy of a version.
fn name_stem(track: &TrackRef) -> String {
    let mut hasher = Sha256::new();
    hasher.update((track.key.len() as u64).to_le_bytes());
    hasher.update(track.key.as_bytes());
    hasher.update(track.version.as_bytes());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn header_len(track: &TrackRef) -> u64 {
    (FIXED_HEADER + track.key.len() + track.version.len()) as u64
}

fn encode_header(track: &TrackRef, data_len: u64, crc: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(FIXED_HEADER + track.key.len() + track.version.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(track.key.len() as u32).to_le_bytes());
    header.extend_from_slice(&(track.version.len() as u32).to_le_bytes());
    header.extend_from_slice(&data_len.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(track.key.as_bytes());
    header.extend_from_slice(track.version.as_bytes());
    header
}

/// What an entry's header says.
struct Header {
    track: TrackRef,
    header_len: u64,
    data_len: u64,
    crc: u32,
}

/// Reads and checks an entry's header against the file's length.
fn read_header(file: &mut File) -> std::io::Result<Header> {
    let mut fixed = [0u8; FIXED_HEADER];
    file.read_exact(&mut fixed)?;
    if &fixed[..8] != MAGIC {
        return Err(invalid("not a cache entry of this version"));
    }
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&fixed[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let (key_len, etag_len) = (u32_at(8) as usize, u32_at(12) as usize);
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&fixed[16..24]);
    let data_len = u64::from_le_bytes(len8);
    let crc = u32_at(24);
    if key_len > 64 * 1024 || etag_len > 4096 {
        return Err(invalid("implausible header"));
    }
    let mut names = vec![0u8; key_len + etag_len];
    file.read_exact(&mut names)?;
    let key = std::str::from_utf8(&names[..key_len]).map_err(|_| invalid("key is not UTF-8"))?;
    let etag = std::str::from_utf8(&names[key_len..]).map_err(|_| invalid("etag is not UTF-8"))?;
    let header_len = (FIXED_HEADER + key_len + etag_len) as u64;
    let expected = header_len
        .checked_add(data_len)
        .ok_or_else(|| invalid("implausible header"))?;
    if file.metadata()?.len() != expected {
        return Err(invalid("length does not match its header (cut short?)"));
    }
    Ok(Header {
        track: TrackRef {
            key: Arc::from(key),
            version: Arc::from(etag),
        },
        header_len,
        data_len,
        crc,
    })
}

/// Opens an entry for playing, checking its header (and its checksum when `verify`).
fn open_entry(path: &Path, expect: &TrackRef, verify: bool) -> Result<TrackData, CacheError> {
    let err = io_err(path);
    let mut file = File::open(path).map_err(io_err(path))?;
    let header = read_header(&mut file).map_err(io_err(path))?;
    if &header.track != expect {
        return Err(err(invalid("entry holds another track")));
    }
    if verify {
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; WRITE_BUFFER];
        let mut at = header.header_len;
        let end = header.header_len + header.data_len;
        while at < end {
            let want = buf
                .len()
                .min(usize::try_from(end - at).unwrap_or(usize::MAX));
            let n = file.read_at(&mut buf[..want], at).map_err(io_err(path))?;
            if n == 0 {
                return Err(io_err(path)(invalid("entry was cut short")));
            }
            crc.update(&buf[..n]);
            at += n as u64;
        }
        if crc.finalize() != header.crc {
            return Err(io_err(path)(invalid("checksum does not match")));
        }
    }
    // Best effort: the mtime carries the LRU order across restarts.
    let _ = file.set_modified(SystemTime::now());
    Ok(TrackData::from_file(
        file,
        header.header_len,
        header.data_len,
    ))
}

/// Builds the index from the directory; returns it and how many files were deleted.
fn scan(dir: &Path) -> Result<(Index, usize), CacheError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Found now rather than at the first fetch, where it would only be logged: a cache that
    // cannot be written leaves nothing to play through an outage.
    let probe = dir.join(format!("{TEMP_PREFIX}writable-{}", std::process::id()));
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
        let header = File::open(&path).and_then(|mut f| {
            let header = read_header(&mut f)?;
            let meta = f.metadata()?;
            Ok((header.track, meta.len(), meta.modified()?))
        });
        match header {
            Ok((track, size, mtime)) => {
                let last_used = mtime
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                index.clock = index.clock.max(last_used);
                let entry = Entry {
                    file: path,
                    size,
                    last_used,
                    verified: false,
                };
                // Two copies of one version (a crash between a store and its clean-up): keep
                // the most recently used.
                let loser = match index.entries.remove(&track) {
                    Some(old) if old.last_used >= entry.last_used => {
                        index.entries.insert(track, old);
                        entry.file
                    }
                    Some(old) => {
                        index.entries.insert(track, entry);
                        old.file
                    }
                    None => {
                        index.entries.insert(track, entry);
                        continue;
                    }
                };
                if std::fs::remove_file(&loser).is_ok() {
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

#[cfg(test)]
mod tests;
