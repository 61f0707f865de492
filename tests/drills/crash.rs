//! A kill -9 during fetches: the disk cache must come back with whole entries only. A proxy holds
//! a large object's body after its first bytes, so onair is SIGKILLed while that track is half
//! written into the cache; started again on the same cache directory, it drops the torn write,
//! keeps (and verifies) the whole entries, and plays on. Two pods of one radio that overlap (a
//! surge rollout) carry one programme: the new one resumes the old one's, and the state object
//! they both write stays whole.

use std::time::{Duration, SystemTime};

use crate::harness::*;
use crate::proxy::StallProxy;

fn cache_files(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let temp = names
        .iter()
        .filter(|n| n.starts_with(".tmp-"))
        .cloned()
        .collect();
    let entries = names
        .iter()
        .filter(|n| n.ends_with(".track"))
        .cloned()
        .collect();
    (temp, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_fetches_leaves_no_torn_entry() {
    let _turn = GATEWAYS.lock().await;
    let name = "onair SIGKILLed mid-fetch";
    let site = Site::primary();
    let prefix = unique_prefix("crash");
    let cat = site.catalog(&prefix);
    upload(
        &cat,
        &[("a.mp3", "01-cbr128.mp3"), ("b.flac", "04-flac16.flac")],
    )
    .await;
    let mut big = fixture("08-untagged.wav").to_vec();
    big.extend(std::iter::repeat_n(0u8, 8 << 20));
    put(&cat, "c-held.wav", big).await;
    let proxy = StallProxy::start(site.gateway_addr(), "c-held.wav", 1 << 20).await;
    let cache = tempfile::tempdir().unwrap();
    let config_text = config(
        &s3_library(&site, &proxy.endpoint(), &prefix, cache.path()),
        "[playlist]\norder = \"sequential\"\n[playout]\nresume = false\n",
    );
    let radio = Radio::start(&config_text, &[&site]);
    // a and b cached whole; c half written when the proxy holds it.
    until(Duration::from_secs(60), "a fetch held mid-body", || async {
        let (temp, entries) = cache_files(cache.path());
        (proxy.stalled.load(std::sync::atomic::Ordering::Relaxed) > 0
            && !temp.is_empty()
            && entries.len() >= 2)
            .then_some(())
    })
    .await;
    radio.kill9();
    let (temp, entries) = cache_files(cache.path());
    eprintln!(
        "{name}: left behind {temp:?} beside {} entries",
        entries.len()
    );
    assert!(
        !temp.is_empty(),
        "{name}: the held write should be on disk, unfinished"
    );

    // Started again on the same cache, straight to the gateway.
    let radio = Radio::start(
        &config(
            &s3_library(&site, &site.endpoint, &prefix, cache.path()),
            "[playlist]\norder = \"sequential\"\n[playout]\nresume = false\n",
        ),
        &[&site],
    );
    radio.wait_ready(Duration::from_secs(30)).await;
    // The killed process's files: the new one may be writing its own fetch by now.
    let (now, _) = cache_files(cache.path());
    let torn: Vec<_> = temp.iter().filter(|t| now.contains(t)).collect();
    assert!(
        torn.is_empty(),
        "{name}: torn writes were not cleaned: {torn:?}"
    );
    // The entries found are verified before they play: both serve as hits, none was dropped.
    until(
        Duration::from_secs(60),
        "the cached tracks served from the cache",
        || async {
            let m = metrics(&radio).await;
            (m.get("onair_cache_hits_total").unwrap_or(0.0) >= 2.0).then_some(())
        },
    )
    .await;
    assert!(
        radio.logged("dropping a damaged cache entry").is_empty(),
        "{name}: a whole entry was taken for a damaged one"
    );
    let m = metrics(&radio).await;
    report(name, 0.0, None, &sources(&m));
    assert!(radio.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_pods_carry_one_programme() {
    let _turn = GATEWAYS.lock().await;
    let name = "two pods overlapping (surge)";
    let site = Site::primary();
    let prefix = unique_prefix("overlap");
    let cat = site.catalog(&prefix);
    upload(
        &cat,
        &[
            ("a.mp3", "01-cbr128.mp3"),
            ("b.mp3", "03-mono22k.mp3"),
            ("c.flac", "04-flac16.flac"),
            ("d.ogg", "06-vorbis.ogg"),
        ],
    )
    .await;
    let (cache_a, cache_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra = "[playout]\nsave_interval = \"1s\"\n";
    let old = Radio::start(
        &config(
            &s3_library(&site, &site.endpoint, &prefix, cache_a.path()),
            extra,
        ),
        &[&site],
    );
    let (key, elapsed) = until(Duration::from_secs(30), "a track 3 s in", || async {
        now_playing(&old)
            .await
            .filter(|(_, e, d)| *e >= 3.0 && d - e > 8.0)
            .map(|(k, e, _)| (k, e))
    })
    .await;
    let started = SystemTime::now() - Duration::from_secs_f64(elapsed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The new pod starts while the old one plays: both on air for a while.
    let new = Radio::start(
        &config(
            &s3_library(&site, &site.endpoint, &prefix, cache_b.path()),
            extra,
        ),
        &[&site],
    );
    let (new_key, new_elapsed, _) =
        until(Duration::from_secs(30), "the new pod on air", || async {
            now_playing(&new).await
        })
        .await;
    let expected = SystemTime::now()
        .duration_since(started)
        .unwrap()
        .as_secs_f64();
    assert_eq!(
        new_key, key,
        "{name}: the new pod plays the old one's track"
    );
    assert!(
        (new_elapsed - expected).abs() <= 2.0,
        "{name}: the new pod is at {new_elapsed:.1} s, the programme at {expected:.1} s"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(old.stop().success());
    // Whoever wrote last, the state is whole and names the programme both played.
    let state = cat
        .client()
        .get_object()
        .bucket(cat.bucket())
        .key(cat.object_key(".onair/state/playout.json"))
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let state: serde_json::Value = serde_json::from_slice(&state).expect("a whole JSON state");
    eprintln!(
        "{name}: state by {} on {}",
        state["writer"], state["current"]["key"]
    );
    assert!(state["writer"].as_str().is_some_and(|w| !w.is_empty()));
    let m = metrics(&new).await;
    report(
        name,
        0.0,
        None,
        &format!(
            "new pod {:+.1} s off the programme; {}",
            new_elapsed - expected,
            sources(&m)
        ),
    );
    assert!(new.stop().success());
}
