//! CachedCatalog over an in-memory catalog that can be switched down: hits, misses, the cached
//! listing during an outage, failing fast, recovery, and pruning of deleted tracks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use onair::catalog::{Cache, CachedCatalog, Catalog, CatalogError, TrackRef};

#[derive(Default)]
struct State {
    tracks: Mutex<BTreeMap<TrackRef, Bytes>>,
    down: AtomicBool,
    calls: AtomicUsize,
}

/// The catalog under test holds a handle; the test keeps another to switch storage down.
#[derive(Clone, Default)]
struct Fake(Arc<State>);

impl std::ops::Deref for Fake {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl Catalog for Fake {
    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(CatalogError::Unavailable("connect: refused".into()));
        }
        Ok(self.tracks.lock().unwrap().keys().cloned().collect())
    }
    async fn fetch(&self, track: &TrackRef) -> Result<Bytes, CatalogError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(CatalogError::Unavailable("connect: refused".into()));
        }
        self.tracks
            .lock()
            .unwrap()
            .get(track)
            .cloned()
            .ok_or_else(|| CatalogError::NotFound(track.key.to_string()))
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

fn track(key: &str) -> TrackRef {
    TrackRef {
        key: Arc::from(key),
        version: Arc::from("v1"),
    }
}

async fn setup(n: usize) -> (Fake, CachedCatalog<Fake>, tempfile::TempDir) {
    let fake = Fake::default();
    for i in 0..n {
        fake.tracks
            .lock()
            .unwrap()
            .insert(track(&format!("t{i}")), Bytes::from(vec![i as u8; 100]));
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let cached = CachedCatalog::with_retry_after(fake.clone(), cache, Duration::from_millis(300));
    (fake, cached, dir)
}

#[tokio::test]
async fn counts_hits_misses_and_bytes() {
    let (_fake, cached, _dir) = setup(3).await;
    let list = cached.list().await.unwrap();
    cached.fetch(&list[0]).await.unwrap();
    cached.fetch(&list[0]).await.unwrap();
    cached.fetch(&list[1]).await.unwrap();
    assert_eq!((cached.hits(), cached.misses()), (1, 2));
    assert_eq!((cached.hit_bytes(), cached.fetched_bytes()), (100, 200));
    assert!(cached.is_cached(&list[0]) && !cached.is_cached(&list[2]));
    assert!(cached.cached_bytes() > 200);
}

/// Lists until `ok` holds (background probes run meanwhile), or panics after 3 s.
async fn list_until(
    cached: &CachedCatalog<Fake>,
    ok: impl Fn(&Result<Vec<TrackRef>, CatalogError>) -> bool,
) {
    for _ in 0..60 {
        if ok(&cached.list().await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn an_outage_plays_the_cache_fails_fast_and_recovers() {
    let (fake, cached, _dir) = setup(3).await;
    let list = cached.list().await.unwrap();
    cached.fetch(&list[0]).await.unwrap();
    fake.down.store(true, Ordering::SeqCst);

    assert_eq!(cached.list().await.unwrap(), vec![list[0].clone()]);
    assert!(cached.storage_down());
    assert_eq!(cached.storage_errors(), 1);
    let calls = fake.calls.load(Ordering::SeqCst);
    // Down: answered from the cache, storage not asked (until a probe is due).
    assert_eq!(cached.list().await.unwrap(), vec![list[0].clone()]);
    match cached.fetch(&list[1]).await {
        Err(CatalogError::Unavailable(m)) => assert!(m.starts_with("down: "), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cached.fetch(&list[0]).await.unwrap(),
        Bytes::from(vec![0u8; 100])
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls);

    // After retry_after a call starts one background probe and still answers from the cache.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cached.list().await.unwrap(), vec![list[0].clone()]);
    assert_eq!(cached.list().await.unwrap(), vec![list[0].clone()]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls + 1);
    assert_eq!(cached.storage_errors(), 2);

    fake.down.store(false, Ordering::SeqCst);
    list_until(&cached, |r| r.as_ref().is_ok_and(|l| l.len() == 3)).await;
    assert!(!cached.storage_down());
    assert_eq!(
        cached.fetch(&list[1]).await.unwrap(),
        Bytes::from(vec![1u8; 100])
    );
}

#[tokio::test]
async fn down_with_an_empty_cache_is_an_error_until_storage_answers() {
    let (fake, cached, _dir) = setup(2).await;
    fake.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        cached.list().await,
        Err(CatalogError::Unavailable(_))
    ));
    assert!(matches!(
        cached.list().await,
        Err(CatalogError::Unavailable(_))
    ));
    fake.down.store(false, Ordering::SeqCst);
    list_until(&cached, |r| r.as_ref().is_ok_and(|l| l.len() == 2)).await;
}

#[tokio::test]
async fn deleted_tracks_leave_the_cache_and_not_found_is_not_an_outage() {
    let (fake, cached, _dir) = setup(2).await;
    let list = cached.list().await.unwrap();
    cached.fetch(&list[0]).await.unwrap();
    cached.fetch(&list[1]).await.unwrap();
    fake.tracks.lock().unwrap().remove(&list[0]);
    assert_eq!(cached.list().await.unwrap(), vec![list[1].clone()]);
    assert_eq!(cached.cache().entries(), vec![list[1].clone()]);
    assert!(matches!(
        cached.fetch(&list[0]).await,
        Err(CatalogError::NotFound(_))
    ));
    assert!(!cached.storage_down());
}
