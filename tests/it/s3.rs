//! The radio playing from the real Ceph RGW (scripts/ceph.sh): the corpus as from a folder, and
//! library changes while on air. Outages, which stop the gateway, are in `tests/s3_radio_outage.rs`
//! so that they never overlap these.

use std::time::Duration;

use onair::audio::clock::Clock;
use serde_json::Value;

use crate::corpus::{assert_corpus_plays, corpus_playlist_and_mount};
use crate::support::s3::{S3Library, metric};
use crate::support::{RawStream, TestServer, get_text, manifest, until};

#[tokio::test]
async fn the_corpus_plays_from_a_bucket_as_from_a_folder() {
    let files: Vec<String> = manifest().into_iter().map(|e| e.file).collect();
    let pairs: Vec<(&str, &str)> = files.iter().map(|f| (f.as_str(), f.as_str())).collect();
    let Some(lib) = S3Library::upload("radio-corpus", &pairs).await else {
        return;
    };
    assert_corpus_plays(lib.config("", &corpus_playlist_and_mount())).await;
}

/// A cache directory that cannot be created stops the radio at start, naming the setting;
/// no storage request is needed for that, so this runs without a cluster too.
#[tokio::test]
async fn an_unusable_cache_dir_fails_at_start() {
    let lib = tempfile::tempdir().unwrap();
    let file = lib.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let config = crate::support::config_with_library(
        &format!(
            "kind = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\ncache_dir = \"{}/cache\"\n",
            file.display()
        ),
        "",
        onair::config::Secrets::default(),
    );
    let server = TestServer::start(config).await;
    until(Duration::from_secs(10), "the start fails", || async {
        server.task_finished().then_some(())
    })
    .await;
    let message = format!("{:#}", server.shutdown().await.unwrap_err());
    assert!(
        message.contains("library.cache_dir") && message.contains("not-a-dir"),
        "{message}"
    );
}

/// What the radio reports: (now playing key, history keys newest first, tracks played).
async fn on_air(server: &TestServer) -> (Option<String>, Vec<String>, f64) {
    let now: Value = serde_json::from_str(&get_text(server.url("/api/nowplaying")).await.1)
        .unwrap_or(Value::Null);
    let key = |v: &Value| v["key"].as_str().map(str::to_owned);
    let history = now["history"]
        .as_array()
        .map(|h| h.iter().filter_map(key).collect())
        .unwrap_or_default();
    let metrics = get_text(server.url("/metrics")).await.1;
    let played = metric(&metrics, "onair_tracks_played_total").unwrap_or(0.0);
    (key(&now["now_playing"]), history, played)
}

/// Unpaced, so that many tracks play in a few seconds of test time: an object uploaded while
/// the radio runs gets played, a corrupt one is skipped with the stream going on, a deleted one
/// is no longer scheduled.
#[tokio::test]
async fn uploads_deletions_and_corrupt_objects_while_on_air() {
    let Some(lib) = S3Library::upload(
        "radio-live",
        &[("a.mp3", "01-cbr128.mp3"), ("b.mp3", "03-mono22k.mp3")],
    )
    .await
    else {
        return;
    };
    let server = TestServer::start_with(lib.config("", ""), Clock::Unpaced).await;
    server.wait_ready().await;

    lib.put("c.flac", "04-flac16.flac").await;
    lib.put("d.mp3", "91-garbage.mp3").await;
    until(
        Duration::from_secs(60),
        "the uploaded c.flac played",
        || async {
            let (now, history, _) = on_air(&server).await;
            (now.as_deref() == Some("c.flac") || history.iter().any(|k| k == "c.flac"))
                .then_some(())
        },
    )
    .await;
    let skipped = until(
        Duration::from_secs(30),
        "the corrupt d.mp3 skipped",
        || async {
            let m = get_text(server.url("/metrics")).await.1;
            metric(&m, "onair_tracks_skipped_total{reason=\"not_audio\"}").filter(|n| *n >= 1.0)
        },
    )
    .await;
    eprintln!("corrupt object skipped ({skipped} time(s))");

    lib.delete("a.mp3").await;
    // A rescan (every second) drops it; up to two tracks were fetched before that and may still
    // play, so only what starts after three more tracks counts.
    let (_, _, at_delete) = on_air(&server).await;
    until(
        Duration::from_secs(30),
        "three tracks after the deletion",
        || async {
            let (_, _, played) = on_air(&server).await;
            (played >= at_delete + 3.0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the next rescan
    let (_, _, from) = on_air(&server).await;
    let (now, history, played) = until(Duration::from_secs(60), "eight more tracks", || async {
        let seen = on_air(&server).await;
        (seen.2 >= from + 8.0).then_some(seen)
    })
    .await;
    let recent: Vec<String> = now
        .into_iter()
        .chain(history.into_iter().take((played - from) as usize - 1))
        .collect();
    assert!(
        !recent.iter().any(|k| k == "a.mp3"),
        "deleted a.mp3 played again: {recent:?}"
    );
    for key in ["b.mp3", "c.flac"] {
        assert!(recent.iter().any(|k| k == key), "{key} missing: {recent:?}");
    }
    assert!(!recent.iter().any(|k| k == "d.mp3"), "{recent:?}");

    // Tracks kept playing past the skip and the deletion, and the mount still streams.
    let mut listener = RawStream::get(server.addr, "/radio.mp3", "").await;
    assert!(
        listener.status_line.contains("200"),
        "{}",
        listener.status_line
    );
    let got = listener.read(64 * 1024, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 64 * 1024, "the stream stopped");
    server.shutdown().await.unwrap();
}

/// The radio on the gateway's https endpoint, trusting the throwaway CA of scripts/ceph.sh
/// through `ca_file`.
#[tokio::test]
async fn plays_over_https_with_a_private_ca() {
    let Some(lib) = S3Library::upload("radio-tls", &[("a.mp3", "01-cbr128.mp3")]).await else {
        return;
    };
    let Some((endpoint, ca)) = crate::s3_support::https_endpoint() else {
        return;
    };
    let mut settings = lib.settings.clone();
    settings.endpoint = endpoint;
    let tls = S3Library {
        catalog: lib.catalog.clone(),
        settings,
        cache: tempfile::tempdir().unwrap(),
    };
    let server = TestServer::start(tls.config(&format!("ca_file = \"{ca}\""), "")).await;
    server.wait_ready().await;
    assert_eq!(on_air(&server).await.0.as_deref(), Some("a.mp3"));
    let m = get_text(server.url("/metrics")).await.1;
    assert!(
        metric(&m, "onair_cache_fetched_bytes_total").unwrap_or(0.0) > 0.0,
        "fetched over https"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_track_version_is_analysed_once_and_its_sidecar_kept_beside_it() {
    use onair::catalog::store::ObjectStore;
    let Some(lib) = S3Library::upload(
        "radio-analysis",
        &[("a.mp3", "01-cbr128.mp3"), ("b.mp3", "03-mono22k.mp3")],
    )
    .await
    else {
        return;
    };
    let fast = "[analysis]\nmax_speed = 10000.0\n";
    let server = TestServer::start(lib.config("", fast)).await;
    let analysed = |server: &TestServer, n: f64| {
        let url = server.url("/metrics");
        async move {
            // The analysis thread runs at the lowest priority: with both cores busy (the live
            // tests run ffmpeg and Liquidsoap beside it), it gets a sliver of a core.
            until(Duration::from_secs(120), "tracks analysed", || async {
                let m = get_text(url.clone()).await.1;
                metric(&m, "onair_analysis_total{result=\"ok\"}").filter(|v| *v >= n)
            })
            .await
        }
    };
    analysed(&server, 2.0).await;
    for key in ["a.mp3", "b.mp3"] {
        let sidecar = lib.catalog.get(&format!("{key}.onair.json")).await.unwrap();
        let json: Value = serde_json::from_slice(&sidecar.expect("a sidecar beside the track"))
            .expect("sidecar JSON");
        assert_eq!(json["key"], key);
        assert!(json["integrated_lufs"].as_f64().is_some(), "{json}");
    }
    // Sidecars are never taken for tracks.
    assert_eq!(server.metric("onair_library_tracks").await, 2.0);
    // A new version of a.mp3 (another ETag) is analysed once, when the listing sees it.
    lib.put("a.mp3", "04-flac16.flac").await;
    analysed(&server, 3.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a few rescans
    assert_eq!(
        server.metric("onair_analysis_total{result=\"ok\"}").await,
        3.0
    );
    server.shutdown().await.unwrap();

    // A replacement pod with an empty cache reads the sidecars: nothing is analysed again.
    for entry in std::fs::read_dir(lib.cache.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let server = TestServer::start(lib.config("", fast)).await;
    // The same lowest-priority thread reads the sidecars: the same allowance as above.
    until(Duration::from_secs(120), "sidecars read", || async {
        (server
            .metric("onair_analysis_total{result=\"cached\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        server.metric("onair_analysis_total{result=\"ok\"}").await,
        0.0
    );
    server.shutdown().await.unwrap();
}
