//! [`CachedCatalog`]: the library on one or two storage sites (a primary and an optional backup)
//! read through the disk [`Cache`], so that a storage outage, or a restart during one, does not
//! silence the radio. Hits never touch storage; misses stream the object into the cache as it
//! arrives and play from there.
//!
//! Each site has its own health. Errors about one object (404, 403, a body that stops while the
//! site answers a probe) are returned for the scheduler to skip that track; only failures of the
//! service itself (connect, timeouts, 5xx, throttling) count, and [`DOWN_AFTER`] of them in a row
//! mark the site down. Requests go to the first site that is up: the primary, else the backup.
//! A down site is probed (a one-key listing) every `retry_after` in the background and serves
//! again as soon as a probe succeeds; while the primary is down, the library is listed from the
//! backup. With every site down, listing returns what is cached and misses fail at once, so
//! nothing waits on a dead or frozen gateway. It owns the up/down states (logged once per change,
//! not per retry), which site serves (logged when it changes) and the counters for metrics.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::cache::{Cache, EntryWriter};
use super::store::{ObjectBody, ObjectStore};
use super::track::TrackData;
use super::{
    Availability, Catalog, CatalogError, STATE_DIR, SidecarPlace, StorageErrorKind, TrackRef,
    sidecar_file_name, write_whole,
};
pub use crate::metrics::SiteStats;

/// Failed requests in a row that mark a site down: one can be bad luck (a connection reset),
/// two in a row is the service.
pub const DOWN_AFTER: u32 = 2;
/// A track whose disk copy cannot be written plays from memory if it is at most this large.
const MEMORY_MAX: u64 = 16 << 20;

/// How the catalog treats its sites.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How often a down site is probed.
    pub retry_after: Duration,
    /// Objects larger than this are skipped (`too_large`).
    pub max_track_bytes: Option<u64>,
    /// How long the probe that tells a stalled object from a stalled site may take.
    pub probe_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retry_after: Duration::from_secs(5),
            max_track_bytes: None,
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// Which of a library's storage sites.
pub const SITE_NAMES: [&str; 2] = ["primary", "backup"];

/// The library read through a [`Cache`]; see the module doc. Clones share the cache, counters
/// and states (one for the scheduler, one for the metrics exporter).
#[derive(Debug)]
pub struct CachedCatalog<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for CachedCatalog<S> {
    fn clone(&self) -> Self {
        CachedCatalog {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<S> {
    sites: Vec<Site<S>>,
    cache: Cache,
    options: Options,
    hits: AtomicU64,
    misses: AtomicU64,
    hit_bytes: AtomicU64,
    fetched_bytes: AtomicU64,
    write_failing: AtomicBool,
    /// The site whose listing the library holds now.
    listed_from: AtomicUsize,
    /// The site requests went to last (`usize::MAX`: none), to log when that changes.
    serving: AtomicUsize,
    /// An empty listing is being ignored (logged once).
    ignoring_empty_listing: AtomicBool,
}

#[derive(Debug)]
struct Site<S> {
    name: &'static str,
    store: S,
    health: Mutex<Health>,
    /// Failed requests by [`StorageErrorKind::ALL`] index.
    failures: [AtomicU64; StorageErrorKind::ALL.len()],
    /// Tracks fetched whole from it.
    fetches: AtomicU64,
}

#[derive(Debug, Default)]
struct Health {
    failures_in_row: u32,
    /// Since when the site is down (None: up).
    down_since: Option<Instant>,
    /// When the site was last asked (a failure or a probe), to probe every `retry_after`.
    last_try: Option<Instant>,
    /// A background probe is running.
    probing: bool,
}

impl<S: ObjectStore> CachedCatalog<S> {
    /// Reads `primary` (and `backup` when the primary is down) through `cache`.
    pub fn new(primary: S, backup: Option<S>, cache: Cache, options: Options) -> CachedCatalog<S> {
        let site = |name, store| Site {
            name,
            store,
            health: Mutex::new(Health::default()),
            failures: Default::default(),
            fetches: AtomicU64::new(0),
        };
        let mut sites = vec![site(SITE_NAMES[0], primary)];
        sites.extend(backup.map(|b| site(SITE_NAMES[1], b)));
        CachedCatalog {
            shared: Arc::new(Shared {
                sites,
                cache,
                options,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                hit_bytes: AtomicU64::new(0),
                fetched_bytes: AtomicU64::new(0),
                write_failing: AtomicBool::new(false),
                listed_from: AtomicUsize::new(0),
                serving: AtomicUsize::new(0),
                ignoring_empty_listing: AtomicBool::new(false),
            }),
        }
    }

    /// Fetches served from the cache.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }
    /// Fetches not in the cache (whether storage then answered or not).
    pub fn misses(&self) -> u64 {
        self.shared.misses.load(Ordering::Relaxed)
    }
    /// Bytes served from the cache.
    pub fn hit_bytes(&self) -> u64 {
        self.shared.hit_bytes.load(Ordering::Relaxed)
    }
    /// Bytes fetched from storage.
    /// `track` from the first site that has it (the primary, then the backup).
    async fn fetch_from_sites(
        &self,
        track: &TrackRef,
        purpose: Purpose,
    ) -> Result<TrackData, CatalogError> {
        let shared = &self.shared;
        let mut last_error = None;
        for site in shared.candidates() {
            // The listed version is asked for only from the primary, and only when the library
            // holds its listing; a backup is a replica, served as it is.
            let exact = site == 0 && shared.listed_from.load(Ordering::Relaxed) == 0;
            match shared.fetch_from(site, track, exact, purpose).await {
                Ok(data) => return Ok(data),
                // The site failed: the next one may have it.
                Err(e) if e.storage_kind().is_some() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(all_down))
    }

    pub fn fetched_bytes(&self) -> u64 {
        self.shared.fetched_bytes.load(Ordering::Relaxed)
    }
    /// Bytes in the cache directory.
    pub fn cached_bytes(&self) -> u64 {
        self.shared.cache.total_bytes()
    }
    /// Whether every site is down (the radio plays from its disk cache).
    pub fn storage_down(&self) -> bool {
        self.shared.sites.iter().all(|s| s.is_down())
    }
    /// Whether one site (0: primary, 1: backup) is down.
    pub fn site_down(&self, site: usize) -> bool {
        self.shared.sites.get(site).is_some_and(|s| s.is_down())
    }
    /// Up/down and failed requests of every site.
    pub fn site_stats(&self) -> Vec<SiteStats> {
        self.shared
            .sites
            .iter()
            .map(|s| SiteStats {
                site: s.name,
                up: !s.is_down(),
                fetches: s.fetches.load(Ordering::Relaxed),
                failures: StorageErrorKind::ALL
                    .iter()
                    .zip(&s.failures)
                    .map(|(k, n)| (k.label(), n.load(Ordering::Relaxed)))
                    .collect(),
            })
            .collect()
    }
    /// Whether this track version would be a hit.
    pub fn is_cached(&self, track: &TrackRef) -> bool {
        self.shared.cache.contains(track)
    }
    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// Where a sidecar the bucket refused is kept: beside the cached tracks.
    fn sidecar_cache_path(&self, track: &TrackRef) -> std::path::PathBuf {
        self.shared
            .cache
            .dir()
            .join("sidecars")
            .join(sidecar_file_name(track))
    }
}

impl<S> Site<S> {
    fn health(&self) -> MutexGuard<'_, Health> {
        // Plain fields set in single statements: a panic elsewhere cannot leave them torn.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_down(&self) -> bool {
        self.health().down_since.is_some()
    }
}

impl<S: ObjectStore> Shared<S> {
    /// A request to `site` was answered: it is up.
    fn answered(&self, site: usize) {
        let s = &self.sites[site];
        let since = {
            let mut h = s.health();
            h.failures_in_row = 0;
            h.down_since.take()
        };
        if let Some(since) = since {
            tracing::info!(site = s.name, storage = %s.store.describe(),
                down_for_s = since.elapsed().as_secs(), "storage site available again");
        }
    }

    /// A request to `site` failed in a way that is the service's fault.
    fn failed(&self, site: usize, error: &CatalogError) {
        let s = &self.sites[site];
        let kind = error.storage_kind().unwrap_or(StorageErrorKind::Other);
        if let Some(i) = StorageErrorKind::ALL.iter().position(|k| *k == kind) {
            s.failures[i].fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        let newly_down = {
            let mut h = s.health();
            h.failures_in_row += 1;
            h.last_try = Some(now);
            let down = h.down_since.is_none() && h.failures_in_row >= DOWN_AFTER;
            if down {
                h.down_since = Some(now);
            }
            down
        };
        if newly_down {
            tracing::warn!(site = s.name, storage = %s.store.describe(), error = %error,
                cached_tracks = self.cache.entries().len(),
                "storage site unavailable: retrying it in the background");
        } else {
            tracing::debug!(site = s.name, error = %error, "storage request failed");
        }
    }

    /// The sites to ask, best first (the ones up); starts a background probe of each down site
    /// that is due one. Logs when the site that serves changes.
    fn candidates(self: &Arc<Self>) -> Vec<usize> {
        let mut up = Vec::with_capacity(self.sites.len());
        for (i, s) in self.sites.iter().enumerate() {
            let due = {
                let mut h = s.health();
                if h.down_since.is_none() {
                    up.push(i);
                    continue;
                }
                let due = !h.probing
                    && h.last_try
                        .is_none_or(|t| t.elapsed() >= self.options.retry_after);
                if due {
                    h.probing = true;
                    h.last_try = Some(Instant::now());
                }
                due
            };
            if due {
                self.spawn_probe(i);
            }
        }
        let first = up.first().copied().unwrap_or(usize::MAX);
        let before = self.serving.swap(first, Ordering::Relaxed);
        if before != first {
            match self.sites.get(first) {
                Some(s) => tracing::info!(site = s.name, storage = %s.store.describe(),
                    "library served from the {} site", s.name),
                None => tracing::warn!(
                    cached_tracks = self.cache.entries().len(),
                    "no storage site answers: playing from the disk cache"
                ),
            }
        }
        up
    }

    fn spawn_probe(self: &Arc<Self>, site: usize) {
        let shared = Arc::clone(self);
        let probe = async move {
            let result = shared.sites[site].store.probe().await;
            shared.sites[site].health().probing = false;
            match result {
                Ok(()) => shared.answered(site),
                Err(e) => shared.failed(site, &e),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(probe)),
            Err(_) => self.sites[site].health().probing = false, // no runtime (shutting down)
        }
    }

    /// Streams one object from `site` into the cache (or a scratch file) and returns it.
    async fn fetch_from(
        &self,
        site: usize,
        track: &TrackRef,
        exact_version: bool,
        purpose: Purpose,
    ) -> Result<TrackData, CatalogError> {
        match self.fetch_once(site, track, exact_version, purpose).await {
            Err(CatalogError::Stalled { .. }) => {
                // A body that stops once may be the path (a connection that died mid-transfer,
                // one the client's pool handed out in a bad state); twice, on a new request, is
                // the object. Only then is the track kept out until it changes.
                tracing::info!(track = %track.key, site = self.sites[site].name,
                    "a track's body stopped while storage answers: asking for it once more");
                self.fetch_once(site, track, exact_version, purpose).await
            }
            other => other,
        }
    }

    async fn fetch_once(
        &self,
        site: usize,
        track: &TrackRef,
        exact_version: bool,
        purpose: Purpose,
    ) -> Result<TrackData, CatalogError> {
        let store = &self.sites[site].store;
        let mut object = match store.open(track, exact_version).await {
            Ok(object) => object,
            Err(e) => {
                match e.storage_kind() {
                    Some(_) => self.failed(site, &e),
                    None => self.answered(site), // it answered, about this object
                }
                return Err(e);
            }
        };
        self.answered(site);
        let too_large = |bytes: u64| CatalogError::TooLarge {
            key: track.key.to_string(),
            bytes,
            max: self.options.max_track_bytes.unwrap_or(u64::MAX),
        };
        if let (Some(max), Some(len)) = (self.options.max_track_bytes, object.len)
            && len > max
        {
            return Err(too_large(len));
        }
        // From another site than the listing, the bytes are filed under the version that site
        // holds, never under a version they may not be.
        let stored_as = match (&object.version, exact_version) {
            (Some(v), false) => TrackRef {
                key: Arc::clone(&track.key),
                version: Arc::clone(v),
            },
            _ => track.clone(),
        };
        let mut sink = self.sink(&stored_as, object.len, purpose).await?;
        let mut received = 0u64;
        loop {
            match object.body.next().await {
                Ok(Some(piece)) => {
                    received += piece.len() as u64;
                    self.fetched_bytes
                        .fetch_add(piece.len() as u64, Ordering::Relaxed);
                    if self
                        .options
                        .max_track_bytes
                        .is_some_and(|max| received > max)
                    {
                        return Err(too_large(received));
                    }
                    sink.write(&piece).await?;
                }
                Ok(None) => break,
                Err(e) if e.storage_kind() == Some(StorageErrorKind::Stall) => {
                    // This object, or the whole site? Ask the site something small.
                    let probe =
                        tokio::time::timeout(self.options.probe_timeout, store.probe()).await;
                    if matches!(probe, Ok(Ok(()))) {
                        self.answered(site);
                        return Err(CatalogError::Stalled {
                            key: track.key.to_string(),
                        });
                    }
                    self.failed(site, &e);
                    return Err(e);
                }
                Err(e) => {
                    self.failed(site, &e);
                    return Err(e);
                }
            }
        }
        if let Some(len) = object.len
            && received != len
        {
            let e = CatalogError::unavailable(
                StorageErrorKind::Response,
                format!("{}: body of {received} bytes, {len} announced", track.key),
            );
            self.failed(site, &e);
            return Err(e);
        }
        let data = sink.finish().await?;
        self.sites[site].fetches.fetch_add(1, Ordering::Relaxed);
        Ok(data)
    }

    /// Where an arriving object goes: the cache, or memory when the cache cannot be written
    /// and the object is small.
    async fn sink(
        &self,
        track: &TrackRef,
        len: Option<u64>,
        purpose: Purpose,
    ) -> Result<Sink, CatalogError> {
        let writer = match purpose {
            Purpose::Play => self.cache.writer(track, len).await,
            Purpose::Analysis => self.cache.scratch_writer(track).await,
        };
        match writer {
            Ok(writer) => {
                if self.write_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("disk cache writable again");
                }
                Ok(Sink::Disk(writer))
            }
            Err(e) => {
                if !self.write_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot write to the disk cache; small tracks play from memory");
                }
                match len {
                    Some(n) if n <= MEMORY_MAX => Ok(Sink::Memory(BytesMut::with_capacity(
                        usize::try_from(n).unwrap_or(0),
                    ))),
                    _ => Err(CatalogError::Local(e.to_string())),
                }
            }
        }
    }
}

/// Why a track is fetched: to play it (kept in the cache), or to analyse it (read once from a
/// scratch file, so that analysing the library never evicts the tracks about to play).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Play,
    Analysis,
}

/// Where a fetched object's bytes go.
enum Sink {
    Disk(EntryWriter),
    Memory(BytesMut),
}

impl Sink {
    async fn write(&mut self, piece: &[u8]) -> Result<(), CatalogError> {
        match self {
            Sink::Disk(w) => w
                .write(piece)
                .await
                .map_err(|e| CatalogError::Local(e.to_string())),
            Sink::Memory(m) => {
                if m.len() as u64 + piece.len() as u64 > MEMORY_MAX {
                    return Err(CatalogError::Local(
                        "track too large to play from memory".into(),
                    ));
                }
                m.extend_from_slice(piece);
                Ok(())
            }
        }
    }

    async fn finish(self) -> Result<TrackData, CatalogError> {
        match self {
            Sink::Disk(w) => w
                .finish()
                .await
                .map_err(|e| CatalogError::Local(e.to_string())),
            Sink::Memory(m) => Ok(TrackData::from_bytes(m.freeze())),
        }
    }
}

fn all_down() -> CatalogError {
    CatalogError::unavailable(
        StorageErrorKind::Down,
        "no storage site answers; retrying in the background",
    )
}

impl<S: ObjectStore> Catalog for CachedCatalog<S> {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        let shared = &self.shared;
        let mut last_error = None;
        for site in shared.candidates() {
            match shared.sites[site].store.list().await {
                Ok(tracks) => {
                    shared.answered(site);
                    shared.listed_from.store(site, Ordering::Relaxed);
                    let cached = shared.cache.entries();
                    if tracks.is_empty() && !cached.is_empty() {
                        // A wrong prefix, a bucket emptied by a sync gone wrong: do not let it
                        // wipe what an outage would play. Deletions come through one by one.
                        if !shared.ignoring_empty_listing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                site = shared.sites[site].name,
                                cached_tracks = cached.len(),
                                "storage lists no tracks at all: keeping the disk cache and playing it"
                            );
                        }
                        return Ok(cached);
                    }
                    shared
                        .ignoring_empty_listing
                        .store(false, Ordering::Relaxed);
                    // Only the primary's listing says what was deleted: a backup may lag.
                    if site == 0 {
                        let keep: HashSet<TrackRef> = tracks.iter().cloned().collect();
                        shared.cache.retain(&keep).await;
                    }
                    return Ok(tracks);
                }
                Err(e) => {
                    shared.failed(site, &e);
                    last_error = Some(e);
                }
            }
        }
        let cached = shared.cache.entries();
        if cached.is_empty() {
            Err(last_error.unwrap_or_else(all_down))
        } else {
            Ok(cached)
        }
    }

    async fn fetch(&self, track: &TrackRef) -> Result<TrackData, CatalogError> {
        let shared = &self.shared;
        if let Some(data) = shared.cache.get(track).await {
            shared.hits.fetch_add(1, Ordering::Relaxed);
            shared.hit_bytes.fetch_add(data.len(), Ordering::Relaxed);
            return Ok(data);
        }
        shared.misses.fetch_add(1, Ordering::Relaxed);
        self.fetch_from_sites(track, Purpose::Play).await
    }

    async fn fetch_to_analyse(&self, track: &TrackRef) -> Result<TrackData, CatalogError> {
        // A cached copy costs nothing; otherwise a scratch copy that the cache never holds.
        if let Some(data) = self.shared.cache.get(track).await {
            return Ok(data);
        }
        self.fetch_from_sites(track, Purpose::Analysis).await
    }

    fn availability(&self, track: &TrackRef) -> Availability {
        if self.is_cached(track) {
            Availability::Local
        } else if self.storage_down() {
            Availability::Down
        } else {
            Availability::Storage
        }
    }

    fn relist_after(&self) -> Option<Duration> {
        // The primary down: list often, to come back to it soon.
        self.site_down(0).then_some(self.shared.options.retry_after)
    }

    fn describe(&self) -> String {
        let sites: Vec<String> = self
            .shared
            .sites
            .iter()
            .map(|s| match s.name {
                "primary" => s.store.describe(),
                name => format!("{name} {}", s.store.describe()),
            })
            .collect();
        format!(
            "{} (cache {})",
            sites.join(", "),
            self.shared.cache.dir().display()
        )
    }

    async fn load_state(&self, name: &str) -> Result<Vec<bytes::Bytes>, CatalogError> {
        let shared = &self.shared;
        let key = format!("{STATE_DIR}{name}");
        let (mut found, mut last_error, mut answered) = (Vec::new(), None, false);
        for site in shared.candidates() {
            match shared.sites[site].store.get(&key).await {
                Ok(copy) => {
                    shared.answered(site);
                    answered = true;
                    found.extend(copy);
                }
                Err(e) => {
                    if e.storage_kind().is_some() {
                        shared.failed(site, &e);
                    }
                    last_error = Some(e);
                }
            }
        }
        match (answered, last_error) {
            (false, Some(e)) => Err(e),
            (false, None) => Err(all_down()),
            (true, _) => Ok(found),
        }
    }

    async fn save_state(&self, name: &str, data: bytes::Bytes) -> Result<(), CatalogError> {
        let shared = &self.shared;
        let key = format!("{STATE_DIR}{name}");
        let mut last_error = None;
        for site in shared.candidates() {
            match shared.sites[site].store.put(&key, data.clone()).await {
                Ok(()) => {
                    shared.answered(site);
                    return Ok(());
                }
                Err(e) if e.storage_kind().is_some() => {
                    shared.failed(site, &e);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(all_down))
    }

    async fn load_sidecar(&self, track: &TrackRef) -> Result<Option<bytes::Bytes>, CatalogError> {
        let shared = &self.shared;
        let name = format!("{}{}", track.key, crate::analysis::sidecar::SUFFIX);
        if let Some(site) = shared.candidates().first().copied() {
            match shared.sites[site].store.get(&name).await {
                Ok(Some(data)) => return Ok(Some(data)),
                Ok(None) => {}
                Err(e) if e.storage_kind().is_some() => {
                    shared.failed(site, &e);
                }
                Err(_) => {} // refused: maybe it went to the cache folder
            }
        }
        let path = self.sidecar_cache_path(track);
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(data) => Ok(Some(bytes::Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CatalogError::Local(format!("{}: {e}", path.display()))),
        })
        .await
        .unwrap_or_else(|e| Err(CatalogError::Local(format!("sidecar task failed: {e}"))))
    }

    async fn save_sidecar(
        &self,
        track: &TrackRef,
        data: bytes::Bytes,
    ) -> Result<SidecarPlace, CatalogError> {
        let shared = &self.shared;
        let name = format!("{}{}", track.key, crate::analysis::sidecar::SUFFIX);
        if let Some(site) = shared.candidates().first().copied() {
            match shared.sites[site].store.put(&name, data.clone()).await {
                Ok(()) => return Ok(SidecarPlace::Beside),
                Err(e) => {
                    if e.storage_kind().is_some() {
                        shared.failed(site, &e);
                    }
                    tracing::debug!(track = %track.key, error = %e,
                        "the bucket refused the sidecar; keeping it in the disk cache");
                }
            }
        }
        let path = self.sidecar_cache_path(track);
        tokio::task::spawn_blocking(move || {
            write_whole(&path, &data)
                .map(|()| SidecarPlace::Cache)
                .map_err(|e| CatalogError::Local(format!("{}: {e}", path.display())))
        })
        .await
        .unwrap_or_else(|e| Err(CatalogError::Local(format!("sidecar task failed: {e}"))))
    }
}

#[cfg(test)]
mod tests;
