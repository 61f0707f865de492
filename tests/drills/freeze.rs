//! Drill 1: the gateway frozen with SIGSTOP for 45 s (it accepts connections, never answers),
//! starting 1 s before a track boundary, exactly at one, and mid-track. Every other track of the
//! library is not in the cache and the order is sequential, so the scheduler does ask the frozen
//! gateway for a track it has not fetched yet (the case that gave 3 s of dead air): it must
//! never make the pipeline wait.

use std::time::{Duration, Instant};

use onair::catalog::cached::Options;
use onair::catalog::{Cache, CachedCatalog, Catalog};

use crate::harness::*;

const FREEZE: Duration = Duration::from_secs(45);
const UP: &str = "onair_storage_up{site=\"primary\"}";

/// Seven tracks of 12–20 s, none with silences of its own.
pub const LIBRARY: [(&str, &str); 7] = [
    ("a.mp3", "01-cbr128.mp3"),
    ("b.mp3", "03-mono22k.mp3"),
    ("c.flac", "04-flac16.flac"),
    ("d.ogg", "06-vorbis.ogg"),
    ("e.m4a", "09-aac.m4a"),
    ("f.mp3", "10-cover-art.mp3"),
    ("g.mp3", "12-loud.mp3"),
];

/// Where the freeze starts, relative to the track on air.
#[derive(Debug, Clone, Copy)]
enum Start {
    BeforeBoundary,
    AtBoundary,
    MidTrack,
}

/// Fills a fresh cache with the library's tracks at `indices` (in key order), as an earlier run
/// would have.
pub async fn warm_cache(site: &Site, prefix: &str, dir: &std::path::Path, indices: &[usize]) {
    let cache = Cache::open(dir, 2 << 30).await.unwrap();
    let lib = CachedCatalog::new(site.catalog(prefix), None, cache, Options::default());
    let tracks = lib.list().await.unwrap();
    for &i in indices {
        lib.fetch(&tracks[i]).await.unwrap();
    }
}

async fn drill(slug: &str, name: &str, start: Start) {
    let _turn = GATEWAYS.lock().await;
    let site = Site::primary();
    let prefix = unique_prefix(slug);
    upload(&site.catalog(&prefix), &LIBRARY).await;
    let cache = tempfile::tempdir().unwrap();
    warm_cache(&site, &prefix, cache.path(), &[0, 2, 4]).await;
    let radio = Radio::start(
        &config(
            &s3_library(&site, &site.endpoint, &prefix, cache.path()),
            "[playlist]\norder = \"sequential\"\n",
        ),
        &[&site],
    );
    radio.wait_ready(Duration::from_secs(30)).await;
    let watch = Watch::start(&radio).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Line the freeze up with the track on air.
    let (key, elapsed, duration) = until(Duration::from_secs(10), "a track on air", || async {
        now_playing(&radio).await.filter(|(_, _, d)| *d > 0.0)
    })
    .await;
    let left = Duration::from_secs_f64((duration - elapsed).max(0.0));
    let wait = match start {
        // At least 2 s ahead, so "1 s before" is never already past: else the next boundary.
        Start::BeforeBoundary if left > Duration::from_secs(2) => left - Duration::from_secs(1),
        Start::BeforeBoundary => left + Duration::from_secs(11), // the next track is 12 s or more
        Start::AtBoundary => left,
        Start::MidTrack => left / 2,
    };
    eprintln!("{name}: {key} has {left:?} left; freezing in {wait:?}");
    tokio::time::sleep(wait).await;
    let frozen = site.freeze();
    let froze_at = Instant::now();
    let mut went_down = false;
    while froze_at.elapsed() < FREEZE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        went_down |= metrics(&radio).await.get(UP) == Some(0.0);
    }
    drop(frozen);
    let thawed = Instant::now();
    let late = radio.logged("a storage fetch is late").len();
    let recovered = radio.seen(UP, 1.0, thawed, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut problems = Vec::new();
    if late == 0 {
        problems.push("no fetch hung during the freeze, so the drill proved nothing".into());
    }
    watch
        .judge(&radio, name, went_down.then_some(recovered), problems)
        .await;
    assert!(radio.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_gateway_from_1s_before_a_boundary() {
    drill(
        "freeze-before",
        "freeze 45 s, 1 s before a boundary",
        Start::BeforeBoundary,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_gateway_at_a_boundary() {
    drill("freeze-at", "freeze 45 s, at a boundary", Start::AtBoundary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_gateway_mid_track() {
    drill("freeze-mid", "freeze 45 s, mid-track", Start::MidTrack).await;
}
