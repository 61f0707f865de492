//! Drill 3: the primary site's gateway down while a radio with an empty cache starts: the
//! library is listed and fetched from the backup site (another Ceph cluster, with its own
//! credentials); once the primary is back, it serves again.

use std::time::{Duration, Instant};

use crate::freeze::LIBRARY;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_on_the_backup_site_and_back() {
    let _turn = GATEWAYS.lock().await;
    let name = "primary down, cold cache: backup";
    let (primary, backup) = (Site::primary(), Site::backup());
    let prefix = unique_prefix("backup");
    upload(&primary.catalog(&prefix), &LIBRARY).await;
    upload(&backup.catalog(&prefix), &LIBRARY).await;
    let cache = tempfile::tempdir().unwrap();
    let library = format!(
        "{}[library.backup]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\n",
        s3_library(&primary, &primary.endpoint, &prefix, cache.path()),
        backup.endpoint,
        backup.bucket
    );

    primary.kill_gateway();
    let restart = scopeguard(|| primary.restart_gateway());
    let radio = Radio::start(&config(&library, ""), &[&primary, &backup]);
    radio.wait_ready(Duration::from_secs(60)).await;
    let watch = Watch::start(&radio).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    let m = metrics(&radio).await;
    assert_eq!(m.get("onair_storage_up{site=\"primary\"}"), Some(0.0));
    assert_eq!(m.get("onair_storage_up{site=\"backup\"}"), Some(1.0));
    let from_backup = m.sum("onair_storage_fetches_total", &["site=\"backup\""]);
    assert!(
        from_backup >= 2.0,
        "{name}: {from_backup} tracks from the backup"
    );
    assert_eq!(
        m.sum("onair_storage_fetches_total", &["site=\"primary\""]),
        0.0
    );
    assert!(
        !radio
            .logged("library served from the backup site")
            .is_empty(),
        "{name}: the log says which site serves"
    );

    drop(restart); // the primary's gateway starts again
    let back = Instant::now();
    let recovered = radio
        .seen(
            "onair_storage_up{site=\"primary\"}",
            1.0,
            back,
            Duration::from_secs(60),
        )
        .await;
    until(
        Duration::from_secs(90),
        "a track fetched from the primary",
        || async {
            (metrics(&radio)
                .await
                .sum("onair_storage_fetches_total", &["site=\"primary\""])
                > 0.0)
                .then_some(())
        },
    )
    .await;
    assert!(
        !radio
            .logged("library served from the primary site")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    watch.judge(&radio, name, Some(recovered), Vec::new()).await;
    assert!(radio.stop().success());
}
