//! Outages of the real Ceph RGW: the gateway frozen with SIGSTOP, and killed then restarted by
//! scripts/ceph.sh. A test binary of its own (cargo runs test binaries one after another), and
//! its tests take a lock, because a frozen gateway would stall any other S3 test.

mod s3_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use onair::catalog::s3::{S3Catalog, S3Timeouts, error_kind};
use onair::catalog::{Cache, CachedCatalog, Catalog, CatalogError, TrackRef};
use s3_support::*;

static GATEWAY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const FREEZE: Duration = Duration::from_secs(15);

/// Log lines written while a test runs, to check that state changes are logged once.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

async fn setup(name: &str, timeouts: S3Timeouts) -> Option<(S3Catalog, Vec<TrackRef>, Vec<Bytes>)> {
    let mut settings = settings(&unique_prefix(name))?;
    settings.timeouts = timeouts;
    let cat = catalog(&settings);
    let media: Vec<(String, Bytes)> = media()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".mp3"))
        .take(4)
        .collect();
    put_many(&cat, media.clone()).await;
    let list = cat.list().await.unwrap();
    assert_eq!(list.len(), 4);
    Some((cat, list, media.into_iter().map(|(_, b)| b).collect()))
}

fn unavailable<T: std::fmt::Debug>(r: &Result<T, CatalogError>) -> &str {
    match r {
        Err(CatalogError::Unavailable(m)) => m,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// With the default timeouts (connect 3 s, attempt 10 s, operation 30 s, 3 attempts) a 15 s
/// freeze is shorter than one operation: calls made during it are retried and answered after
/// the thaw, or fail as timeouts, never later than the operation timeout. Cache hits stay instant.
#[tokio::test]
async fn frozen_gateway_with_default_timeouts() {
    let _one = GATEWAY.lock().await;
    let Some((s3, list, bytes)) = setup("freeze-default", S3Timeouts::default()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cached = Arc::new(CachedCatalog::new(
        s3.clone(),
        Cache::open(dir.path(), 64 << 20).await.unwrap(),
    ));
    assert_eq!(cached.list().await.unwrap(), list);
    for t in &list[..2] {
        cached.fetch(t).await.unwrap();
    }

    let frozen = Frozen::gateway();
    let t0 = Instant::now();
    let timed = |fut: std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>| {
        tokio::spawn(async move {
            let outcome = fut.await;
            (outcome, t0.elapsed())
        })
    };
    let (a, b, c) = (s3.clone(), s3.clone(), Arc::clone(&cached));
    let t2 = list[2].clone();
    let raw_list = timed(Box::pin(async move {
        format!("{:?}", a.list().await.map(|l| l.len()))
    }));
    let raw_fetch = timed(Box::pin(async move {
        format!("{:?}", b.fetch(&t2).await.map(|b| b.len()))
    }));
    let cached_list = timed(Box::pin(async move {
        format!("{:?}", c.list().await.map(|l| l.len()))
    }));
    let hit_started = Instant::now();
    assert_eq!(cached.fetch(&list[0]).await.unwrap(), bytes[0]);
    let hit = hit_started.elapsed();
    assert!(hit < Duration::from_millis(500), "cache hit took {hit:?}");

    tokio::time::sleep(FREEZE.saturating_sub(t0.elapsed())).await;
    drop(frozen);
    let thawed = t0.elapsed();
    for (name, task) in [
        ("raw list", raw_list),
        ("raw fetch", raw_fetch),
        ("cached list", cached_list),
    ] {
        let (outcome, took) = task.await.unwrap();
        eprintln!(
            "MEASURE default timeouts, {name} started at the freeze: {outcome} after {} (thawed at {})",
            secs(took),
            secs(thawed)
        );
        assert!(took <= Duration::from_secs(32), "{name} took {took:?}");
        assert!(
            outcome.starts_with("Ok") || outcome.contains("timeout"),
            "{name}: {outcome}"
        );
    }
    eprintln!("MEASURE cache hit during the freeze: {hit:?}");
    // Recovered with no restart.
    assert_eq!(cached.list().await.unwrap().len(), 4);
    assert_eq!(cached.fetch(&list[3]).await.unwrap(), bytes[3]);
    assert!(!cached.storage_down());
}

/// Short timeouts (attempt 2 s, operation 5 s) so that a 15 s freeze is an outage: calls fail
/// with a timeout, the cached catalog plays from the cache (also after a "restart"), fails
/// misses fast, logs the outage once, and uses storage again after the thaw.
#[tokio::test]
async fn frozen_gateway_is_an_outage_the_cache_rides_through() {
    let _one = GATEWAY.lock().await;
    let short = S3Timeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_secs(2),
        operation: Duration::from_secs(5),
        body: Duration::from_secs(5),
    };
    let Some((s3, list, bytes)) = setup("freeze-short", short).await else {
        return;
    };
    let logs = Captured::default();
    let _logging = logs.install();
    let dir = tempfile::tempdir().unwrap();
    let retry_after = Duration::from_secs(3);
    let cached = CachedCatalog::with_retry_after(
        s3.clone(),
        Cache::open(dir.path(), 64 << 20).await.unwrap(),
        retry_after,
    );
    assert_eq!(cached.list().await.unwrap(), list);
    for t in &list[..2] {
        cached.fetch(t).await.unwrap();
    }
    assert_eq!((cached.hits(), cached.misses()), (0, 2));

    let frozen = Frozen::gateway();
    let t0 = Instant::now();
    let r = s3.fetch(&list[2]).await;
    let took = t0.elapsed();
    eprintln!(
        "MEASURE short timeouts, raw fetch: {} after {}",
        unavailable(&r),
        secs(took)
    );
    assert_eq!(error_kind(unavailable(&r)), "timeout");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );

    let started = Instant::now();
    let during = cached.list().await.unwrap();
    eprintln!(
        "MEASURE short timeouts, cached list (goes to storage): {} tracks after {}",
        during.len(),
        secs(started.elapsed())
    );
    assert_eq!(during, list[..2].to_vec());
    assert!(cached.storage_down());
    let started = Instant::now();
    assert_eq!(cached.list().await.unwrap(), list[..2].to_vec());
    let r = cached.fetch(&list[2]).await;
    let fast = started.elapsed();
    eprintln!(
        "MEASURE while down: cached list + miss answered in {fast:?}: {}",
        unavailable(&r)
    );
    assert_eq!(error_kind(unavailable(&r)), "down");
    assert!(fast < Duration::from_millis(200), "{fast:?}");
    assert_eq!(cached.fetch(&list[1]).await.unwrap(), bytes[1]);

    // onair restarted during the outage: a new cache handle over the same directory.
    drop(cached);
    let started = Instant::now();
    let cache = Cache::open(dir.path(), 64 << 20).await.unwrap();
    let restarted = CachedCatalog::with_retry_after(s3.clone(), cache, retry_after);
    let warm = restarted.list().await.unwrap();
    assert_eq!(warm, list[..2].to_vec());
    assert_eq!(restarted.fetch(&warm[0]).await.unwrap(), bytes[0]);
    eprintln!(
        "MEASURE restart during the outage: warm listing + first track in {}",
        secs(started.elapsed())
    );

    tokio::time::sleep(FREEZE.saturating_sub(t0.elapsed())).await;
    drop(frozen);
    let thawed = Instant::now();
    // Storage is asked again once retry_after has passed since the last failure.
    let back = loop {
        match restarted.list().await {
            Ok(l) if l.len() == 4 => break l,
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    eprintln!(
        "MEASURE storage used again {} after the thaw",
        secs(thawed.elapsed())
    );
    assert_eq!(back, list);
    assert_eq!(restarted.fetch(&list[2]).await.unwrap(), bytes[2]);
    assert!(!restarted.storage_down());
    assert_eq!(
        logs.count("storage unavailable"),
        2,
        "once per catalog instance"
    );
    assert_eq!(logs.count("storage available again"), 1);
}

/// The gateway killed (connection refused) and started again by `scripts/ceph.sh start`, which
/// restarts only radosgw: the objects are still there and the catalog uses them with no restart.
#[tokio::test]
async fn killed_gateway_restarted_by_the_script() {
    let _one = GATEWAY.lock().await;
    let Some((s3, list, _)) = setup("kill", S3Timeouts::default()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cached = CachedCatalog::new(s3.clone(), Cache::open(dir.path(), 64 << 20).await.unwrap());
    cached.fetch(&list[0]).await.unwrap();

    signal(rgw_pid(), "KILL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = s3.list().await;
    eprintln!(
        "MEASURE gateway killed, raw list: {} after {}",
        unavailable(&r),
        secs(started.elapsed())
    );
    assert_eq!(error_kind(unavailable(&r)), "connect");
    assert_eq!(cached.list().await.unwrap(), list[..1].to_vec());

    let started = Instant::now();
    restart_gateway();
    eprintln!(
        "MEASURE ceph.sh start with only radosgw gone: {}",
        secs(started.elapsed())
    );
    // A background probe (every 5 s while down) notices; then listings come from storage.
    let restarted = Instant::now();
    let back = loop {
        match cached.list().await {
            Ok(l) if l.len() == 4 => break l,
            _ if restarted.elapsed() > Duration::from_secs(15) => panic!("storage not used again"),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    eprintln!(
        "MEASURE storage used again {} after the gateway restart",
        secs(restarted.elapsed())
    );
    assert_eq!(back, list);
    assert!(!cached.storage_down());
}

/// Measurement, not run by default (30 s): with the default timeouts, how long until a call
/// made against a frozen gateway gives up. `cargo test --test rgw_outage -- --ignored`.
#[tokio::test]
#[ignore]
async fn measure_time_to_unavailable_with_default_timeouts() {
    let _one = GATEWAY.lock().await;
    let Some((s3, list, _)) = setup("freeze-long", S3Timeouts::default()).await else {
        return;
    };
    let frozen = Frozen::gateway();
    let t0 = Instant::now();
    let (l, f) = tokio::join!(s3.list(), s3.fetch(&list[0]));
    let took = t0.elapsed();
    drop(frozen);
    eprintln!(
        "MEASURE default timeouts, frozen 35 s: list {} / fetch {} after {}",
        unavailable(&l),
        unavailable(&f),
        secs(took)
    );
    assert!(
        took >= Duration::from_secs(29) && took <= Duration::from_secs(32),
        "{took:?}"
    );
    assert_eq!(s3.list().await.unwrap(), list);
}
