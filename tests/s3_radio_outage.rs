//! Storage outages under a running radio, against the real Ceph RGW: the gateway frozen with
//! SIGSTOP for 30 s, killed and started again by scripts/ceph.sh, down while onair starts with a
//! warm cache and with an empty one. A listener connected throughout must get continuous valid
//! audio at the mount's bitrate, with titles, and the radio must use storage again afterwards
//! with no restart. A test binary of its own (cargo runs test binaries one after another), and
//! its tests take a lock: a frozen or dead gateway would break any other S3 test.

#[allow(dead_code)]
#[path = "it/support/mod.rs"]
mod support;

mod s3_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onair::catalog::{Cache, CachedCatalog, Catalog};
use serde_json::Value;
use support::s3::{S3Library, metric};
use support::{RawStream, TestServer, decode, get_text, icy, until};

static GATEWAY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 128 kbit/s, the default mount.
const BYTES_PER_SEC: f64 = 16_000.0;
const METAINT: usize = 16_000;
/// Short tracks (8–12 s), so that several play during an outage.
const TRACKS: [(&str, &str); 3] = [
    ("a.flac", "05-flac24-96k.flac"),
    ("b.mp3", "14-long-title.mp3"),
    ("c.mp3", "10-cover-art.mp3"),
];

/// Uploads the tracks and fills the radio's cache with them, as an earlier run would have.
async fn warm_library(name: &str) -> Option<S3Library> {
    let lib = S3Library::upload(name, &TRACKS).await?;
    let cache = Cache::open(lib.cache.path(), 64 << 20).await.unwrap();
    let cached = CachedCatalog::new(lib.catalog.clone(), cache);
    let tracks = cached.list().await.unwrap();
    assert_eq!(tracks.len(), TRACKS.len());
    for t in &tracks {
        cached.fetch(t).await.unwrap();
    }
    Some(lib)
}

async fn now_playing(server: &TestServer) -> (Option<String>, Option<String>) {
    let (_, body) = get_text(server.url("/api/nowplaying")).await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let field = |f: &str| v["now_playing"][f].as_str().map(str::to_owned);
    (field("key"), field("title"))
}

/// A listener reading for the whole test: every byte, and when the running total was reached.
struct Recorder {
    started: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Vec<(Duration, usize)>>>,
    task: tokio::task::JoinHandle<Vec<u8>>,
}

impl Recorder {
    async fn connect(server: &TestServer) -> Recorder {
        let mut stream = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
        assert!(stream.status_line.contains("200"), "{}", stream.status_line);
        assert_eq!(stream.header("icy-metaint"), Some("16000"));
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&progress));
        let task = tokio::spawn(async move {
            let mut data = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let chunk = stream.read(4000, Duration::from_millis(100)).await;
                data.extend_from_slice(&chunk);
                p.lock().unwrap().push((started.elapsed(), data.len()));
            }
            data
        });
        Recorder {
            started,
            stop,
            progress,
            task,
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bytes received by `at` (since connecting).
    fn bytes_at(&self, at: Duration) -> usize {
        let p = self.progress.lock().unwrap();
        p.iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .map_or(0, |(_, n)| *n)
    }

    /// Checks every 5 s window from `from` to `to` for the mount's rate, then stops and returns
    /// the stream split into audio and titles.
    async fn finish(self, from: Duration, to: Duration) -> icy::Split {
        let mut t = from;
        while t + Duration::from_secs(5) <= to {
            let got = self.bytes_at(t + Duration::from_secs(5)) - self.bytes_at(t);
            let rate = got as f64 / 5.0;
            eprintln!("MEASURE listener {:.0?}..+5s: {rate:.0} B/s", t);
            assert!(
                (rate - BYTES_PER_SEC).abs() < 0.2 * BYTES_PER_SEC,
                "listener got {rate:.0} B/s from {t:?} (expected ~{BYTES_PER_SEC})"
            );
            t += Duration::from_secs(5);
        }
        let overall = (self.bytes_at(to) - self.bytes_at(from)) as f64 / (to - from).as_secs_f64();
        assert!(
            (overall - BYTES_PER_SEC).abs() < 0.05 * BYTES_PER_SEC,
            "{overall:.0} B/s over the whole outage"
        );
        self.stop.store(true, Ordering::Relaxed);
        let data = self.task.await.unwrap();
        let split = icy::split(&data, METAINT);
        let audio_len = split.audio.len();
        let d = decode::decode(split.audio.clone());
        assert_eq!(d.decode_errors, 0, "the stream decodes cleanly");
        assert_eq!((d.sample_rate, d.channels), (44100, 2));
        assert!(
            (d.seconds() - audio_len as f64 / BYTES_PER_SEC).abs() < 0.5,
            "{:.2} s decoded from {audio_len} bytes",
            d.seconds()
        );
        split
    }
}

/// How the gateway is taken away and brought back.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGSTOP: connections are accepted and never answered.
    Freeze,
    /// SIGKILL: connections are refused; scripts/ceph.sh start brings radosgw back.
    Kill,
}

/// Brings the gateway back when dropped, also when a test fails while it is down, so that the
/// next test finds it up.
struct Down {
    outage: Outage,
    pid: i32,
    repaired: bool,
}

impl Down {
    fn start(outage: Outage) -> Down {
        let pid = s3_support::rgw_pid();
        let sig = match outage {
            Outage::Freeze => "STOP",
            Outage::Kill => "KILL",
        };
        s3_support::signal(pid, sig);
        Down {
            outage,
            pid,
            repaired: false,
        }
    }

    fn repair_now(&mut self) {
        if std::mem::replace(&mut self.repaired, true) {
            return;
        }
        match self.outage {
            Outage::Freeze => s3_support::signal(self.pid, "CONT"),
            Outage::Kill => s3_support::restart_gateway(),
        }
    }

    /// Brings the gateway back without blocking the runtime the radio runs on.
    async fn repair(mut self) {
        tokio::task::spawn_blocking(move || self.repair_now())
            .await
            .unwrap();
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        self.repair_now();
    }
}

/// The radio plays through an outage of `length` from its warm cache, stays ready, reports the
/// outage in its metrics, and afterwards plays a track uploaded after the outage, with no restart.
async fn ride_through(name: &str, outage: Outage, length: Duration) {
    let Some(lib) = warm_library(name).await else {
        return;
    };
    let server = TestServer::start(lib.config("", "")).await;
    server.wait_ready().await;
    let rec = Recorder::connect(&server).await;
    // Past the burst the listener got on connecting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let silence_before = metric(
        &get_text(server.url("/metrics")).await.1,
        "onair_silence_seconds_total",
    );

    let down = Down::start(outage);
    let from = rec.now();
    let t0 = Instant::now();
    let mut titles_on_air = BTreeSet::new();
    let mut saw_down = None;
    while t0.elapsed() < length {
        let (status, why) = get_text(server.url("/readyz")).await;
        assert_eq!(
            status,
            200,
            "not ready {:.1?} into the outage: {why}",
            t0.elapsed()
        );
        if let (_, Some(title)) = now_playing(&server).await {
            titles_on_air.insert(title);
        }
        let m = get_text(server.url("/metrics")).await.1;
        if saw_down.is_none() && metric(&m, "onair_storage_up") == Some(0.0) {
            saw_down = Some(t0.elapsed());
            let lines: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("onair_storage") || l.starts_with("onair_cache"))
                .filter(|l| !l.contains("_bucket"))
                .collect();
            eprintln!(
                "MEASURE {outage:?}: storage down after {:.1?}:\n{}",
                t0.elapsed(),
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    down.repair().await;
    let to = rec.now();
    let repaired = Instant::now();
    let after = get_text(server.url("/metrics")).await.1;
    let silence_after = metric(&after, "onair_silence_seconds_total");
    assert!(
        saw_down.is_some(),
        "onair_storage_up never went to 0 during the outage"
    );
    assert!(
        titles_on_air.len() >= 2,
        "cached tracks rotate during the outage: {titles_on_air:?}"
    );
    let silent = silence_after.unwrap_or(0.0) - silence_before.unwrap_or(0.0);
    assert!(
        silent < 0.1,
        "{silent:.2} s of filler silence during the outage"
    );

    // Storage is used again with no restart: a track uploaded now gets listed, fetched and
    // played. Once it is listed, the AutoDJ is moved on (/admin/next) until it comes up rather
    // than waiting for its place in the shuffled round.
    lib.put("new.flac", "04-flac16.flac").await;
    let played = until(
        Duration::from_secs(30),
        "the track uploaded after the outage played",
        || async {
            if now_playing(&server).await.0.as_deref() == Some("new.flac") {
                return Some(repaired.elapsed());
            }
            let m = get_text(server.url("/metrics")).await.1;
            if metric(&m, "onair_library_tracks") == Some(TRACKS.len() as f64 + 1.0) {
                let skip = reqwest::Client::new()
                    .get(server.url("/admin/next?mount=/radio.mp3"))
                    .basic_auth("admin", Some(support::ADMIN_PASSWORD))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(skip.status(), 200);
                tokio::time::sleep(Duration::from_millis(900)).await;
            }
            None
        },
    )
    .await;
    let m = get_text(server.url("/metrics")).await.1;
    assert!(
        metric(&m, "onair_cache_fetched_bytes_total").unwrap_or(0.0) > 0.0,
        "new.flac came from storage"
    );
    eprintln!(
        "MEASURE {outage:?}: new track on air {:.1?} after the repair",
        played
    );
    let m = get_text(server.url("/metrics")).await.1;
    assert_eq!(metric(&m, "onair_storage_up"), Some(1.0));

    let split = rec.finish(from, to).await;
    let titles: BTreeSet<&str> = split.titles.iter().map(|t| t.title.as_str()).collect();
    for t in &titles_on_air {
        assert!(
            titles
                .iter()
                .any(|seen| t.starts_with(seen) && !seen.is_empty()),
            "ICY title of {t:?} missing: {titles:?}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_gateway_for_30s_is_not_heard() {
    let _one = GATEWAY.lock().await;
    ride_through("radio-freeze", Outage::Freeze, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_and_restarted_gateway_is_not_heard() {
    let _one = GATEWAY.lock().await;
    ride_through("radio-kill", Outage::Kill, Duration::from_secs(15)).await;
}

/// onair started while the gateway is down: with a warm cache it plays at once; with an empty
/// one it sends silence and is not ready, then plays as soon as storage answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starting_during_an_outage_warm_and_cold() {
    let _one = GATEWAY.lock().await;
    let Some(warm_lib) = warm_library("radio-start-down").await else {
        return;
    };
    let cold_lib = S3Library {
        catalog: warm_lib.catalog.clone(),
        settings: warm_lib.settings.clone(),
        cache: tempfile::tempdir().unwrap(),
    };
    // Uploaded, never cached: listed again once storage is back, without waiting for the rescan.
    warm_lib.put("d.mp3", "12-loud.mp3").await;
    let down = Down::start(Outage::Kill);

    let started = Instant::now();
    let warm = TestServer::start(warm_lib.config("rescan = \"60s\"", "")).await;
    warm.wait_ready().await;
    eprintln!(
        "MEASURE warm start with storage down: ready after {:.2?}",
        started.elapsed()
    );
    let (key, _) = now_playing(&warm).await;
    assert!(
        TRACKS.iter().any(|(k, _)| Some(*k) == key.as_deref()),
        "plays a cached track: {key:?}"
    );
    let mut s = RawStream::get(warm.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let data = s.read(5 * 16_000, Duration::from_secs(10)).await;
    let split = icy::split(&data, METAINT);
    assert!(split.titles.iter().any(|t| !t.title.is_empty()), "a title");
    let d = decode::decode(split.audio);
    assert_eq!(d.decode_errors, 0);
    assert!(d.rms(0, d.frames as usize) > 0.005, "music, not silence");

    let cold = TestServer::start(cold_lib.config("", "")).await;
    let mut s = RawStream::get(cold.addr, "/radio.mp3", "").await;
    assert!(s.status_line.contains("200"), "{}", s.status_line);
    let t = Instant::now();
    let data = s.read(3 * 16_000, Duration::from_secs(10)).await;
    let took = t.elapsed();
    assert_eq!(data.len(), 3 * 16_000);
    assert!(
        took > Duration::from_millis(800),
        "paced, not a burst of history: {took:?}"
    );
    let d = decode::decode(data);
    assert_eq!(d.decode_errors, 0);
    assert!(d.rms(0, d.frames as usize) < 1e-4, "silence");
    // Not ready, and saying why once the first listing has failed.
    let (status, why) = until(
        Duration::from_secs(10),
        "/readyz names the outage",
        || async {
            let (status, why) = get_text(cold.url("/readyz")).await;
            assert_eq!(
                status, 503,
                "ready with storage down and nothing cached: {why}"
            );
            why.contains("library unavailable").then_some((status, why))
        },
    )
    .await;
    eprintln!("MEASURE cold start with storage down: /readyz {status}: {why}");
    let m = get_text(cold.url("/metrics")).await.1;
    assert_eq!(metric(&m, "onair_storage_up"), Some(0.0));

    let tracks = |m: &str| metric(m, "onair_library_tracks");
    let m = get_text(warm.url("/metrics")).await.1;
    assert_eq!(
        tracks(&m),
        Some(TRACKS.len() as f64),
        "only the cached tracks"
    );

    down.repair().await;
    let repaired = Instant::now();
    until(
        Duration::from_secs(10),
        "the warm radio lists d.mp3",
        || async {
            let m = get_text(warm.url("/metrics")).await.1;
            (tracks(&m) == Some(TRACKS.len() as f64 + 1.0)).then_some(())
        },
    )
    .await;
    eprintln!(
        "MEASURE warm radio (rescan 60 s): full listing back {:.2?} after the gateway restart",
        repaired.elapsed()
    );
    cold.wait_ready().await;
    eprintln!(
        "MEASURE cold start: ready {:.2?} after the gateway restart",
        repaired.elapsed()
    );
    assert!(now_playing(&cold).await.0.is_some());
    let m = get_text(cold.url("/metrics")).await.1;
    assert_eq!(metric(&m, "onair_storage_up"), Some(1.0));
    cold.shutdown().await.unwrap();
    warm.shutdown().await.unwrap();
}
