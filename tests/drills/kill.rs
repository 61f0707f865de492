//! Drill 2: the gateway killed for 5 minutes and started again. The radio plays its cached
//! tracks in rotation meanwhile; tracks uploaded once the gateway is back (the operators'
//! uploads that failed during the outage) are listed and played with no restart.

use std::time::{Duration, Instant};

use crate::freeze::warm_cache;
use crate::harness::*;

const OUTAGE: Duration = Duration::from_secs(300);
const UP: &str = "onair_storage_up{site=\"primary\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_gateway_for_5_minutes() {
    let _turn = GATEWAYS.lock().await;
    let name = "gateway killed 5 min";
    let site = Site::primary();
    let prefix = unique_prefix("kill");
    let cat = site.catalog(&prefix);
    upload(
        &cat,
        &[
            ("a.mp3", "01-cbr128.mp3"),
            ("b.flac", "04-flac16.flac"),
            ("c.mp3", "10-cover-art.mp3"),
            ("d.mp3", "12-loud.mp3"),
        ],
    )
    .await;
    let cache = tempfile::tempdir().unwrap();
    warm_cache(&site, &prefix, cache.path(), &[0, 1, 2]).await;
    // Rescans every 5 s, so uploads show soon after the outage.
    let library = format!(
        "{}rescan = \"5s\"\n",
        s3_library(&site, &site.endpoint, &prefix, cache.path())
    );
    let radio = Radio::start(&config(&library, ""), &[&site]);
    radio.wait_ready(Duration::from_secs(30)).await;
    let watch = Watch::start(&radio).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    site.kill_gateway();
    let restart = scopeguard(|| site.restart_gateway());
    let killed = Instant::now();
    let down = radio.seen(UP, 0.0, killed, Duration::from_secs(60)).await;
    eprintln!("{name}: storage down after {down:.1} s");
    while killed.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            get(&radio.url("/readyz")).await.0,
            200,
            "{name}: not ready during the outage"
        );
    }
    drop(restart); // the gateway starts again
    let restarted = Instant::now();
    upload(
        &cat,
        &[
            ("new-1.mp3", "02-vbr48k-utf8.mp3"),
            ("new-2.mp3", "11-quiet.mp3"),
        ],
    )
    .await;
    let recovered = radio
        .seen(UP, 1.0, restarted, Duration::from_secs(60))
        .await;
    let played_new = until(Duration::from_secs(240), "a new track on air", || async {
        now_playing(&radio)
            .await
            .map(|(key, _, _)| key)
            .filter(|key| key.starts_with("new-"))
    })
    .await;
    eprintln!(
        "{name}: {played_new} on air {:.0} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    watch.judge(&radio, name, Some(recovered), Vec::new()).await;
    assert!(radio.stop().success());
}
