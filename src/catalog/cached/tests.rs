//! CachedCatalog over in-memory stores that fail on demand: hits and misses, errors by kind
//! (one object vs the service), down only after failures in a row, the backup site, the empty
//! listing that must not wipe the cache, and the cached listing during an outage. The real
//! storage, frozen and killed, is in the drills (`tests/drills`).

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;

use bytes::Bytes;

use super::*;
use crate::catalog::store::Object;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Connections refused.
    Down,
}

#[derive(Debug, Default)]
struct FakeState {
    objects: BTreeMap<String, (String, Bytes)>,
    down: bool,
    forbidden: HashSet<String>,
    /// Keys whose body stops after the first piece.
    stalling: HashSet<String>,
    requests: u64,
    state: BTreeMap<String, Bytes>,
}

#[derive(Debug, Clone, Default)]
struct Fake {
    state: Arc<StdMutex<FakeState>>,
}

impl Fake {
    fn with(n: usize) -> Fake {
        let fake = Fake::default();
        for i in 0..n {
            fake.put(&format!("t{i}.mp3"), "v1", vec![i as u8; 1000 + i]);
        }
        fake
    }
    fn put(&self, key: &str, version: &str, data: Vec<u8>) {
        self.lock()
            .objects
            .insert(key.into(), (version.into(), Bytes::from(data)));
    }
    fn set(&self, mode: Mode) {
        self.lock().down = mode == Mode::Down;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
    fn requests(&self) -> u64 {
        self.lock().requests
    }
    fn refuse_if_down(&self) -> Result<(), CatalogError> {
        let mut s = self.lock();
        s.requests += 1;
        if s.down {
            return Err(CatalogError::unavailable(
                StorageErrorKind::Connect,
                "connection refused",
            ));
        }
        Ok(())
    }
}

struct FakeBody {
    pieces: Vec<Bytes>,
    stall_after_first: bool,
}

impl ObjectBody for FakeBody {
    async fn next(&mut self) -> Result<Option<Bytes>, CatalogError> {
        if self.pieces.is_empty() {
            return Ok(None);
        }
        let piece = self.pieces.remove(0);
        if self.stall_after_first && self.pieces.len() < 2 {
            return Err(CatalogError::unavailable(
                StorageErrorKind::Stall,
                "no byte for 5s",
            ));
        }
        Ok(Some(piece))
    }
}

impl ObjectStore for Fake {
    type Body = FakeBody;

    async fn list(&self) -> Result<Vec<TrackRef>, CatalogError> {
        self.refuse_if_down()?;
        Ok(self
            .lock()
            .objects
            .iter()
            .map(|(k, (v, _))| TrackRef {
                key: Arc::from(k.as_str()),
                version: Arc::from(v.as_str()),
            })
            .collect())
    }

    async fn probe(&self) -> Result<(), CatalogError> {
        self.refuse_if_down()
    }

    async fn open(&self, track: &TrackRef, exact: bool) -> Result<Object<FakeBody>, CatalogError> {
        self.refuse_if_down()?;
        let s = self.lock();
        if s.forbidden.contains(&*track.key) {
            return Err(CatalogError::Refused {
                key: track.key.to_string(),
                detail: "HTTP 403 AccessDenied".into(),
            });
        }
        let Some((version, data)) = s.objects.get(&*track.key) else {
            return Err(CatalogError::NotFound(track.key.to_string()));
        };
        if exact && **version != *track.version {
            return Err(CatalogError::NotFound(track.key.to_string()));
        }
        let pieces = data.chunks(100).map(Bytes::copy_from_slice).collect();
        Ok(Object {
            len: Some(data.len() as u64),
            version: Some(Arc::from(version.as_str())),
            body: FakeBody {
                pieces,
                stall_after_first: s.stalling.contains(&*track.key),
            },
        })
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, CatalogError> {
        self.refuse_if_down()?;
        Ok(self.lock().state.get(name).cloned())
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), CatalogError> {
        self.refuse_if_down()?;
        self.lock().state.insert(name.into(), data);
        Ok(())
    }

    fn describe(&self) -> String {
        "fake".into()
    }
}

fn options() -> Options {
    Options {
        retry_after: Duration::from_millis(200),
        max_track_bytes: None,
        probe_timeout: Duration::from_secs(1),
    }
}

async fn setup(primary: &Fake, backup: Option<&Fake>) -> (CachedCatalog<Fake>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let cat = CachedCatalog::new(primary.clone(), backup.cloned(), cache, options());
    (cat, dir)
}

async fn bytes(cat: &CachedCatalog<Fake>, t: &TrackRef) -> Result<Vec<u8>, CatalogError> {
    cat.fetch(t).await.map(|d| d.read_all().unwrap())
}

#[tokio::test]
async fn misses_stream_into_the_cache_and_hits_never_ask_storage() {
    let fake = Fake::with(3);
    let (cat, _dir) = setup(&fake, None).await;
    let tracks = cat.list().await.unwrap();
    assert_eq!(bytes(&cat, &tracks[1]).await.unwrap(), vec![1u8; 1001]);
    let asked = fake.requests();
    assert_eq!(bytes(&cat, &tracks[1]).await.unwrap(), vec![1u8; 1001]);
    assert_eq!(fake.requests(), asked, "a hit does not touch storage");
    assert_eq!((cat.hits(), cat.misses()), (1, 1));
    assert_eq!((cat.hit_bytes(), cat.fetched_bytes()), (1001, 1001));
    assert_eq!(cat.availability(&tracks[1]), Availability::Local);
    assert_eq!(cat.availability(&tracks[0]), Availability::Storage);
}

#[tokio::test]
async fn tracks_fetched_to_be_analysed_are_not_kept_in_the_cache() {
    let fake = Fake::with(3);
    let (cat, dir) = setup(&fake, None).await;
    let tracks = cat.list().await.unwrap();
    let data = cat.fetch_to_analyse(&tracks[0]).await.unwrap();
    assert_eq!(data.read_all().unwrap(), vec![0u8; 1000]);
    drop(data);
    assert_eq!(cat.availability(&tracks[0]), Availability::Storage);
    assert_eq!(cat.cached_bytes(), 0, "nothing kept");
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 0, "no file left behind");
    // A cached track is analysed from its entry, without asking storage.
    bytes(&cat, &tracks[1]).await.unwrap();
    let asked = fake.requests();
    cat.fetch_to_analyse(&tracks[1]).await.unwrap();
    assert_eq!(fake.requests(), asked);
}

#[tokio::test]
async fn object_errors_skip_the_track_and_leave_storage_up() {
    let fake = Fake::with(3);
    fake.lock().forbidden.insert("t0.mp3".into());
    fake.lock().stalling.insert("t1.mp3".into());
    let (cat, dir) = setup(&fake, None).await;
    let tracks = cat.list().await.unwrap();
    for _ in 0..3 {
        let e = cat.fetch(&tracks[0]).await.unwrap_err();
        assert_eq!(e.skip_reason(), Some("forbidden"), "{e}");
        let e = cat.fetch(&tracks[1]).await.unwrap_err();
        assert_eq!(e.skip_reason(), Some("stalled"), "{e}");
    }
    fake.lock().objects.remove("t2.mp3");
    assert_eq!(
        cat.fetch(&tracks[2]).await.unwrap_err().skip_reason(),
        Some("missing")
    );
    assert!(!cat.storage_down());
    let stats = cat.site_stats();
    assert!(stats[0].up);
    assert!(stats[0].failures.iter().all(|(_, n)| *n == 0), "{stats:?}");
    // A stalled body leaves no half entry behind.
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing cached"
    );
}

#[tokio::test]
async fn one_failure_is_not_an_outage_two_in_a_row_are() {
    let fake = Fake::with(4);
    let (cat, _dir) = setup(&fake, None).await;
    let tracks = cat.list().await.unwrap();
    fake.set(Mode::Down);
    assert!(
        cat.fetch(&tracks[0])
            .await
            .unwrap_err()
            .storage_kind()
            .is_some()
    );
    assert!(!cat.storage_down(), "one failure");
    fake.set(Mode::Up);
    bytes(&cat, &tracks[0]).await.unwrap();
    fake.set(Mode::Down);
    cat.fetch(&tracks[1]).await.unwrap_err();
    assert!(
        !cat.storage_down(),
        "a success in between starts the count again"
    );
    cat.fetch(&tracks[1]).await.unwrap_err();
    assert!(cat.storage_down());
    // Down: misses fail at once, without asking; the listing is what is cached.
    let asked = fake.requests();
    let e = cat.fetch(&tracks[2]).await.unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageErrorKind::Down), "{e}");
    assert_eq!(cat.availability(&tracks[2]), Availability::Down);
    assert_eq!(cat.list().await.unwrap(), vec![tracks[0].clone()]);
    assert!(fake.requests() <= asked + 1, "at most the background probe");
    assert_eq!(cat.relist_after(), Some(Duration::from_millis(200)));
    // Back: the next probe notices.
    fake.set(Mode::Up);
    let start = Instant::now();
    while cat.storage_down() {
        assert!(start.elapsed() < Duration::from_secs(10), "never came back");
        let _ = cat.list().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cat.list().await.unwrap().len(), 4);
    assert_eq!(cat.relist_after(), None);
}

#[tokio::test]
async fn down_with_an_empty_cache_is_an_error_until_storage_answers() {
    let fake = Fake::with(2);
    fake.set(Mode::Down);
    let (cat, _dir) = setup(&fake, None).await;
    assert!(cat.list().await.is_err());
    assert!(cat.list().await.is_err());
    assert!(cat.storage_down());
    fake.set(Mode::Up);
    let start = Instant::now();
    loop {
        if let Ok(tracks) = cat.list().await {
            assert_eq!(tracks.len(), 2);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deletions_leave_the_cache_but_an_empty_listing_does_not_wipe_it() {
    let fake = Fake::with(3);
    let (cat, _dir) = setup(&fake, None).await;
    let tracks = cat.list().await.unwrap();
    for t in &tracks {
        bytes(&cat, t).await.unwrap();
    }
    fake.lock().objects.remove("t0.mp3");
    assert_eq!(cat.list().await.unwrap().len(), 2);
    assert_eq!(
        cat.cache().entries().len(),
        2,
        "a deleted track leaves the cache"
    );
    // Everything gone at once (a wrong prefix, a sync gone wrong): the cache stays and plays.
    fake.lock().objects.clear();
    assert_eq!(cat.list().await.unwrap(), tracks[1..].to_vec());
    assert_eq!(cat.cache().entries().len(), 2);
}

#[tokio::test]
async fn the_backup_site_serves_while_the_primary_is_down() {
    let primary = Fake::with(3);
    let backup = Fake::with(3);
    // The backup holds one track under another ETag (a multipart copy, say).
    backup.put("t2.mp3", "other-etag", vec![2u8; 1002]);
    let (cat, _dir) = setup(&primary, Some(&backup)).await;
    let tracks = cat.list().await.unwrap();
    bytes(&cat, &tracks[0]).await.unwrap();
    primary.set(Mode::Down);
    // The first failure already falls through to the backup; the second marks the primary down.
    assert_eq!(bytes(&cat, &tracks[1]).await.unwrap(), vec![1u8; 1001]);
    assert!(!cat.site_down(0));
    let from_backup = cat.list().await.unwrap();
    assert!(cat.site_down(0) && !cat.site_down(1));
    assert!(!cat.storage_down());
    assert_eq!(from_backup[2].version.as_ref(), "other-etag");
    // A track listed by the primary is fetched from the backup whatever version it holds there.
    assert_eq!(bytes(&cat, &tracks[2]).await.unwrap(), vec![2u8; 1002]);
    assert_eq!(cat.availability(&tracks[2]), Availability::Storage);
    // State goes where the library is served from.
    cat.save_state("playout.json", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert_eq!(backup.lock().state.len(), 1);
    // The backup's listing never deletes from the cache: it may lag behind the primary.
    backup.lock().objects.remove("t0.mp3");
    cat.list().await.unwrap();
    assert!(cat.is_cached(&tracks[0]));
    // The primary back: it serves again.
    primary.set(Mode::Up);
    let start = Instant::now();
    while cat.site_down(0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "primary never came back"
        );
        let _ = cat.list().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = cat.list().await.unwrap();
    assert_eq!(again[2].version.as_ref(), "v1");
    cat.save_state("playout.json", Bytes::from_static(b"p"))
        .await
        .unwrap();
    assert_eq!(primary.lock().state.len(), 1);
    let copies = cat.load_state("playout.json").await.unwrap();
    assert_eq!(copies.len(), 2, "both sites' copies, for the newest to win");
}

#[tokio::test]
async fn tracks_over_the_limit_are_too_large_before_a_byte_is_stored() {
    let fake = Fake::with(1);
    fake.put("big.flac", "v1", vec![0; 5000]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let cat = CachedCatalog::new(
        fake.clone(),
        None,
        cache,
        Options {
            max_track_bytes: Some(4000),
            ..options()
        },
    );
    let tracks = cat.list().await.unwrap();
    let big = tracks.iter().find(|t| &*t.key == "big.flac").unwrap();
    assert_eq!(
        cat.fetch(big).await.unwrap_err().skip_reason(),
        Some("too_large")
    );
    assert_eq!(cat.fetched_bytes(), 0);
}
