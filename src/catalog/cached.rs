//! [`CachedCatalog`]: any catalog read through the disk [`Cache`], so that a storage outage, or a
//! restart during one, does not silence the radio. Hits never touch storage. Once a storage
//! request has failed, storage is "down": listing returns what is cached and misses fail at once,
//! so nothing waits on a dead or frozen gateway; a background listing probes storage every
//! `retry_after`, and the first one that succeeds brings storage back, with no restart. It owns
//! the up/down state (logged once per change, not per retry) and the counters for metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cache::Cache;
use super::{Availability, Catalog, CatalogError, TrackRef};

/// A catalog read through a [`Cache`]; see the module doc for the outage behaviour. Clones
/// share the cache, counters and state (one for the scheduler, one for the metrics exporter).
#[derive(Debug)]
pub struct CachedCatalog<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for CachedCatalog<C> {
    fn clone(&self) -> Self {
        CachedCatalog {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<C> {
    inner: C,
    cache: Cache,
    retry_after: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    hit_bytes: AtomicU64,
    fetched_bytes: AtomicU64,
    storage_errors: AtomicU64,
    write_failing: AtomicBool,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Since when storage is down (None: up).
    down_since: Option<Instant>,
    /// When storage was last asked (a failure or a probe), to probe every `retry_after`.
    last_try: Option<Instant>,
    /// A background probe is running.
    probing: bool,
}

impl<C: Catalog> CachedCatalog<C> {
    /// Wraps `inner`; while storage is down it is probed every 5 s.
    pub fn new(inner: C, cache: Cache) -> CachedCatalog<C> {
        CachedCatalog::with_retry_after(inner, cache, Duration::from_secs(5))
    }

    /// Wraps `inner`; while storage is down it is probed every `retry_after`.
    pub fn with_retry_after(inner: C, cache: Cache, retry_after: Duration) -> CachedCatalog<C> {
        CachedCatalog {
            shared: Arc::new(Shared {
                inner,
                cache,
                retry_after,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                hit_bytes: AtomicU64::new(0),
                fetched_bytes: AtomicU64::new(0),
                storage_errors: AtomicU64::new(0),
                write_failing: AtomicBool::new(false),
                health: Mutex::new(Health::default()),
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
    pub fn fetched_bytes(&self) -> u64 {
        self.shared.fetched_bytes.load(Ordering::Relaxed)
    }
    /// Failed storage requests: lists, fetches and probes (not the misses refused while down).
    pub fn storage_errors(&self) -> u64 {
        self.shared.storage_errors.load(Ordering::Relaxed)
    }
    /// Bytes in the cache directory.
    pub fn cached_bytes(&self) -> u64 {
        self.shared.cache.total_bytes()
    }
    /// Whether storage is considered down (the last request failed, no probe succeeded since).
    pub fn storage_down(&self) -> bool {
        self.shared.health().down_since.is_some()
    }
    /// Whether this track version would be a hit.
    pub fn is_cached(&self, track: &TrackRef) -> bool {
        self.shared.cache.contains(track)
    }
    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }
    /// The wrapped catalog.
    pub fn inner(&self) -> &C {
        &self.shared.inner
    }

    /// `Some(reason)` while storage is down; starts a background probe when one is due.
    fn while_down(&self) -> Option<String> {
        let mut health = self.shared.health();
        let since = health.down_since?;
        let due = health
            .last_try
            .is_none_or(|t| t.elapsed() >= self.shared.retry_after);
        if due && !health.probing {
            health.probing = true;
            health.last_try = Some(Instant::now());
            let shared = Arc::clone(&self.shared);
            let probe = async move {
                let result = shared.inner.list().await;
                shared.health().probing = false;
                match result {
                    Ok(_) => shared.answered(),
                    Err(e) => shared.failed(&e),
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(probe)),
                Err(_) => health.probing = false, // no runtime (shutting down): no probe
            }
        }
        Some(format!(
            "down: {} unreachable for {:.0?}",
            self.shared.inner.describe(),
            since.elapsed()
        ))
    }
}

impl<C: Catalog> Shared<C> {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, error: &CatalogError) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
        let mut health = self.health();
        let now = Instant::now();
        health.last_try = Some(now);
        if health.down_since.is_none() {
            health.down_since = Some(now);
            drop(health);
            tracing::warn!(library = %self.inner.describe(), error = %error,
                cached_tracks = self.cache.entries().len(),
                "storage unavailable: playing from the disk cache, retrying in the background");
        }
    }

    fn answered(&self) {
        let since = self.health().down_since.take();
        if let Some(since) = since {
            tracing::info!(library = %self.inner.describe(), down_for_s = since.elapsed().as_secs(),
                "storage available again");
        }
    }
}

impl<C: Catalog> Catalog for CachedCatalog<C> {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        let error = match self.while_down() {
            Some(reason) => CatalogError::Unavailable(reason),
            None => match self.shared.inner.list().await {
                Ok(tracks) => {
                    self.shared.answered();
                    // Deleted or changed objects leave the cache, so an outage never plays them.
                    self.shared
                        .cache
                        .retain(&tracks.iter().cloned().collect())
                        .await;
                    return Ok(tracks);
                }
                Err(e) => {
                    self.shared.failed(&e);
                    e
                }
            },
        };
        let cached = self.shared.cache.entries();
        if cached.is_empty() {
            Err(error)
        } else {
            Ok(cached)
        }
    }

    async fn fetch(&self, track: &TrackRef) -> Result<Bytes, CatalogError> {
        let shared = &self.shared;
        if let Some(bytes) = shared.cache.get(track).await {
            shared.hits.fetch_add(1, Ordering::Relaxed);
            let n = bytes.len() as u64;
            shared.hit_bytes.fetch_add(n, Ordering::Relaxed);
            return Ok(bytes);
        }
        shared.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(reason) = self.while_down() {
            return Err(CatalogError::Unavailable(reason));
        }
        match shared.inner.fetch(track).await {
            Ok(bytes) => {
                shared.answered();
                let n = bytes.len() as u64;
                shared.fetched_bytes.fetch_add(n, Ordering::Relaxed);
                match shared.cache.put(track, &bytes).await {
                    Ok(()) => {
                        if shared.write_failing.swap(false, Ordering::Relaxed) {
                            tracing::info!("disk cache writable again");
                        }
                    }
                    Err(e) if !shared.write_failing.swap(true, Ordering::Relaxed) => {
                        tracing::warn!(error = %e, "cannot write to the disk cache; playing uncached");
                    }
                    Err(_) => {}
                }
                Ok(bytes)
            }
            Err(CatalogError::NotFound(key)) => {
                shared.answered(); // storage answered: it is up
                Err(CatalogError::NotFound(key))
            }
            Err(e) => {
                shared.failed(&e);
                Err(e)
            }
        }
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
        self.storage_down().then_some(self.shared.retry_after)
    }

    fn describe(&self) -> String {
        format!(
            "{} (cache {})",
            self.shared.inner.describe(),
            self.shared.cache.dir().display()
        )
    }
}
