//! The disk cache on its own: round trips, restart, LRU eviction under the cap, streaming
//! writes, crash leftovers, checksums, and unique file names.

use std::time::Duration;

use super::*;

fn track(key: &str, etag: &str) -> TrackRef {
    TrackRef {
        key: Arc::from(key),
        version: Arc::from(etag),
    }
}

fn data(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n]
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn bytes(cache: &Cache, t: &TrackRef) -> Option<Vec<u8>> {
    cache.get(t).await.map(|d| d.read_all().unwrap())
}

#[tokio::test]
async fn stores_and_serves_exact_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let a1 = track("dir/ä.mp3", "etag1");
    let stored = cache.put(&a1, &data(1000, 1)).await.unwrap();
    assert_eq!(stored.read_all().unwrap(), data(1000, 1));
    assert_eq!(bytes(&cache, &a1).await.unwrap(), data(1000, 1));
    assert!(cache.get(&track("dir/ä.mp3", "etag2")).await.is_none());
    assert_eq!(cache.entries(), vec![a1.clone()]);
    // A new version of the same key replaces the old one.
    let a2 = track("dir/ä.mp3", "etag2");
    cache.put(&a2, &data(10, 2)).await.unwrap();
    assert_eq!(cache.entries(), vec![a2.clone()]);
    assert_eq!(files(dir.path()).len(), 1);
    cache.remove(&a2).await;
    assert!(cache.entries().is_empty());
    assert!(files(dir.path()).is_empty());
    assert_eq!(cache.total_bytes(), 0);
}

#[tokio::test]
async fn survives_a_restart_and_verifies_what_it_finds() {
    let dir = tempfile::tempdir().unwrap();
    let tracks: Vec<TrackRef> = (0..3)
        .map(|i| track(&format!("t{i}.mp3"), &format!("e{i}")))
        .collect();
    {
        let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
        for (i, t) in tracks.iter().enumerate() {
            cache.put(t, &data(100 + i, i as u8)).await.unwrap();
        }
    }
    // One byte of one entry's data flipped while the radio was down: its checksum fails.
    let victim = files(dir.path())
        .into_iter()
        .find(|f| {
            let mut file = File::open(dir.path().join(f)).unwrap();
            read_header(&mut file).unwrap().track == tracks[1]
        })
        .unwrap();
    let path = dir.path().join(victim);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    file.write_all_at(b"\xff", len - 1).unwrap();
    drop(file);

    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    assert_eq!(cache.entries(), tracks);
    assert_eq!(bytes(&cache, &tracks[0]).await.unwrap(), data(100, 0));
    assert!(
        cache.get(&tracks[1]).await.is_none(),
        "a damaged entry never plays"
    );
    assert_eq!(bytes(&cache, &tracks[2]).await.unwrap(), data(102, 2));
    assert_eq!(cache.entries(), vec![tracks[0].clone(), tracks[2].clone()]);
    assert!(!path.exists());
}

#[tokio::test]
async fn evicts_the_least_recently_played_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    // Each entry is 1000 bytes of data plus a ~40 byte header: three fit in 3200, four do not.
    let cache = Cache::open(dir.path(), 3200).await.unwrap();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|k| track(k, "e"));
    for t in [&a, &b, &c] {
        cache.put(t, &data(1000, 0)).await.unwrap();
    }
    assert!(cache.get(&a).await.is_some()); // a played: b is now the oldest
    cache.put(&d, &data(1000, 0)).await.unwrap();
    assert_eq!(cache.entries(), vec![a.clone(), c.clone(), d.clone()]);
    assert!(cache.total_bytes() <= 3200);
    assert_eq!(files(dir.path()).len(), 3);
    // Bigger than the whole cache: played from a scratch file, not stored, nothing evicted.
    let huge = cache
        .put(&track("huge", "e"), &data(5000, 9))
        .await
        .unwrap();
    assert_eq!(huge.read_all().unwrap(), data(5000, 9));
    assert_eq!(cache.entries().len(), 3);
    assert_eq!(files(dir.path()).len(), 3);

    // The order survives a restart (file mtimes): play c, reopen with room for two.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(cache.get(&c).await.is_some());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(cache.get(&d).await.is_some());
    drop(cache);
    let cache = Cache::open(dir.path(), 2200).await.unwrap();
    assert_eq!(cache.entries(), vec![c, d]);
    assert_eq!(files(dir.path()).len(), 2);
}

#[tokio::test]
async fn a_track_streams_in_piece_by_piece_and_plays_while_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let t = track("long.flac", "e");
    let mut writer = cache.writer(&t, None).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..100u8 {
        let piece = data(7000, i);
        writer.write(&piece).await.unwrap();
        expected.extend_from_slice(&piece);
    }
    assert!(!cache.contains(&t), "not an entry before it is complete");
    assert_eq!(writer.written(), 700_000);
    let playing = writer.finish().await.unwrap();
    assert!(cache.contains(&t));
    // Evicted (or replaced) while it plays: the open file keeps its bytes.
    cache.remove(&t).await;
    assert!(files(dir.path()).is_empty());
    assert_eq!(playing.read_all().unwrap(), expected);
}

#[tokio::test]
async fn an_abandoned_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let mut writer = cache
        .writer(&track("cut.mp3", "e"), Some(10_000))
        .await
        .unwrap();
    writer.write(&data(300_000, 1)).await.unwrap();
    drop(writer);
    assert!(files(dir.path()).is_empty());
    assert!(cache.entries().is_empty());
}

#[tokio::test]
async fn every_write_gets_its_own_file_so_a_stale_delete_cannot_hit_a_new_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let t = track("again.mp3", "e");
    cache.put(&t, &data(100, 1)).await.unwrap();
    let first = files(dir.path());
    cache.put(&t, &data(100, 2)).await.unwrap();
    let second = files(dir.path());
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first, second, "a new copy has a new name");
    // A delete that names the first copy (what an eviction decided before the second store)
    // finds nothing and leaves the new copy alone.
    delete_files(vec![dir.path().join(&first[0])]).await;
    assert_eq!(bytes(&cache, &t).await.unwrap(), data(100, 2));
}

#[tokio::test]
async fn leftovers_of_a_crash_are_ignored_and_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let good = track("good.mp3", "e");
    {
        let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
        cache.put(&good, &data(500, 7)).await.unwrap();
    }
    // A write cut short before its rename, a damaged entry, an entry of the old format, and a
    // file that is not ours.
    std::fs::write(
        dir.path().join(".tmp-4242-0123456789abcdef"),
        b"ONAIRC2\nhalf",
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("0123456789abcdef0123456789abcdef-0000000000000000.track"),
        b"ONAIRC2\n\x05\0\0\0",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0123456789abcdef0123456789abcdef.track"),
        b"ONAIRC1\n\x05\0\0\0\x01\0\0\0",
    )
    .unwrap();
    std::fs::write(dir.path().join("README"), b"operator notes").unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    assert_eq!(cache.entries(), vec![good.clone()]);
    assert_eq!(bytes(&cache, &good).await.unwrap(), data(500, 7));
    let left = files(dir.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"README".to_owned()));
    assert!(!left.iter().any(|f| f.starts_with(".tmp-")));
}

#[tokio::test]
async fn a_cut_entry_is_a_miss_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 1 << 20).await.unwrap();
    let t = track("x.mp3", "e");
    cache.put(&t, &data(500, 7)).await.unwrap();
    let name = files(dir.path()).pop().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(name))
        .unwrap();
    file.set_len(300).unwrap();
    assert!(cache.get(&t).await.is_none());
    assert!(cache.entries().is_empty());
    assert!(files(dir.path()).is_empty());
}

#[tokio::test]
async fn concurrent_puts_and_gets_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 20_000).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let cache = cache.clone();
        tasks.spawn(async move {
            let t = track(&format!("k{}", i % 16), "e");
            cache.put(&t, &data(1000, (i % 16) as u8)).await.unwrap();
            if let Some(b) = bytes(&cache, &t).await {
                assert_eq!(b, data(1000, (i % 16) as u8));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(cache.total_bytes() <= 20_000);
    let on_disk = files(dir.path()).len();
    assert_eq!(on_disk, cache.entries().len());
    drop(cache);
    let reopened = Cache::open(dir.path(), 20_000).await.unwrap();
    assert_eq!(reopened.entries().len(), on_disk);
}
