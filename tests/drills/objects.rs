//! Drill 4: faults of single objects while the service is fine: one deleted after it was listed
//! (404), one the bucket policy refuses (a real 403 from the gateway), and a large one whose body
//! stops after its first bytes (a proxy in front of the gateway holds it). Each is skipped with
//! its reason, the others play, and storage is never marked down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::*;
use crate::proxy::StallProxy;

/// In playing order (sequential): the faulty ones between good ones.
const LIBRARY: [(&str, &str); 4] = [
    ("1-good.mp3", "01-cbr128.mp3"),
    ("3-good.flac", "04-flac16.flac"),
    ("5-good.ogg", "06-vorbis.ogg"),
    ("7-good.mp3", "10-cover-art.mp3"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_refused_and_stalled_objects_are_skipped() {
    let _turn = GATEWAYS.lock().await;
    let name = "deleted, 403, stalled objects";
    let site = Site::primary();
    let prefix = unique_prefix("objects");
    let cat = site.catalog(&prefix);
    upload(&cat, &LIBRARY).await;
    put(&cat, "2-forbidden.mp3", fixture("03-mono22k.mp3")).await;
    // Large enough that its body is still arriving when the proxy holds it.
    let mut big = fixture("08-untagged.wav").to_vec();
    big.extend(std::iter::repeat_n(0u8, 4 << 20));
    put(&cat, "4-stall.wav", big).await;
    put(&cat, "6-deleted.mp3", fixture("12-loud.mp3")).await;
    let policy = Policy::deny_get(&site, &cat.object_key("2-forbidden.mp3")).await;

    let proxy = StallProxy::start(site.gateway_addr(), "4-stall.wav", 64 * 1024).await;
    let cache = tempfile::tempdir().unwrap();
    let library = s3_library(&site, &proxy.endpoint(), &prefix, cache.path());
    let radio = Radio::start(
        &config(&library, "[playlist]\norder = \"sequential\"\n"),
        &[&site],
    );
    radio.wait_ready(Duration::from_secs(30)).await;
    // Listed: now it goes away, before its turn comes.
    assert_eq!(metrics(&radio).await.get("onair_library_tracks"), Some(7.0));
    delete(&cat, "6-deleted.mp3").await;
    let watch = Watch::start(&radio).await;

    let skipped = |m: &Metrics, reason: &str| {
        m.get(&format!(
            "onair_tracks_skipped_total{{reason=\"{reason}\"}}"
        ))
        .unwrap_or(0.0)
    };
    let storage_down = AtomicBool::new(false);
    until(Duration::from_secs(120), "all three skipped", || {
        let (radio, storage_down) = (&radio, &storage_down);
        async move {
            let m = metrics(radio).await;
            if m.get("onair_storage_up{site=\"primary\"}") != Some(1.0) {
                storage_down.store(true, Ordering::Relaxed);
            }
            (skipped(&m, "forbidden") >= 1.0
                && skipped(&m, "stalled") >= 1.0
                && skipped(&m, "missing") >= 1.0)
                .then_some(())
        }
    })
    .await;
    // And the round goes on past them.
    until(Duration::from_secs(120), "the last good track", || async {
        now_playing(&radio)
            .await
            .filter(|(key, _, _)| key == "7-good.mp3")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(policy);

    let failures = metrics(&radio)
        .await
        .sum("onair_storage_failed_requests_total", &["site=\"primary\""]);
    let mut problems = Vec::new();
    if storage_down.load(Ordering::Relaxed) {
        problems.push("storage was marked down".to_owned());
    }
    if failures > 0.0 {
        problems.push(format!("{failures} storage failures counted"));
    }
    if proxy.stalled.load(Ordering::Relaxed) == 0 {
        problems.push("the proxy never held a body".into());
    }
    watch.judge(&radio, name, None, problems).await;
    assert!(radio.stop().success());
}

/// A bucket policy refusing GetObject on one key, removed on drop.
struct Policy {
    site: Site,
}

impl Policy {
    async fn deny_get(site: &Site, key: &str) -> Policy {
        let cat = site.catalog("");
        let document = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Deny",
                "Principal": {"AWS": ["*"]},
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{}/{key}", site.bucket),
            }]
        });
        cat.client()
            .put_bucket_policy()
            .bucket(&site.bucket)
            .policy(document.to_string())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("put policy: {}", aws_sdk_s3::error::DisplayErrorContext(e))
            });
        Policy { site: site.clone() }
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let site = self.site.clone();
        // Drop cannot await: a thread of its own with a small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cat = site.catalog("");
                let _ = cat
                    .client()
                    .delete_bucket_policy()
                    .bucket(&site.bucket)
                    .send()
                    .await;
            });
        })
        .join();
    }
}
