//! The `onair` process itself: a stdout nobody reads, a low file-descriptor soft limit, SIGHUP
//! for the access log.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::support::process::{Onair, Stdout, config};
use crate::support::{RawStream, library_with, metric_at, until};

/// Listeners that connect, take their head and burst, and leave: three log lines each.
async fn short_listeners(addr: std::net::SocketAddr, n: usize) -> usize {
    let mut set = JoinSet::new();
    let mut served = 0;
    for _ in 0..n {
        // Bounded, so a server that stopped serving fails the test instead of hanging it.
        set.spawn(tokio::time::timeout(Duration::from_secs(20), async move {
            let mut l = RawStream::get(addr, "/radio.mp3", "").await;
            l.status_line == "HTTP/1.0 200 OK"
                && l.read(1000, Duration::from_secs(10)).await.len() == 1000
        }));
        if set.len() >= 50
            && let Some(ok) = set.join_next().await
        {
            served += usize::from(ok.unwrap().unwrap_or(false));
        }
    }
    while let Some(ok) = set.join_next().await {
        served += usize::from(ok.unwrap().unwrap_or(false));
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_leaves_listeners_at_bitrate() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let dir = tempfile::tempdir().unwrap();
    let onair = Onair::spawn(
        dir.path(),
        &config(lib.path(), ""),
        &[],
        Stdout::StopReading,
    );
    let metrics = onair.url("/metrics");
    until(Duration::from_secs(30), "ready", || async {
        let (code, _) = crate::support::get_text(onair.url("/readyz")).await;
        (code == 200).then_some(())
    })
    .await;
    // Fill the pipe (64 KiB) and the log queue: each short listener logs three lines.
    let dropped = "onair_log_lines_dropped_total";
    let mut spam = 0;
    while metric_at(&metrics, dropped).await == 0.0 {
        assert!(spam < 10_000, "no log line dropped after {spam} listeners");
        assert_eq!(
            short_listeners(onair.addr, 500).await,
            500,
            "listeners served"
        );
        spam += 500;
    }
    let dropped_before = metric_at(&metrics, dropped).await;
    eprintln!("{spam} short listeners before lines were dropped ({dropped_before} so far)");

    // Five listeners read for 10 s while others keep arriving and leaving.
    let addr = onair.addr;
    let churn = tokio::spawn(async move { short_listeners(addr, 1000).await });
    let mut readers = JoinSet::new();
    for _ in 0..5 {
        readers.spawn(async move {
            let mut l = RawStream::get(addr, "/radio.mp3", "").await;
            let t = Instant::now();
            let got = l.read(1 << 20, Duration::from_secs(10)).await.len();
            (got, t.elapsed())
        });
    }
    while let Some(r) = readers.join_next().await {
        let (got, elapsed) = r.unwrap();
        // 128 kbps is 16,000 B/s; the 2 s burst comes on top, and the last batch (up to 750 ms)
        // may not have been written yet. A blocked fan-out thread would give the burst alone.
        let rate = (got as f64 - 32_000.0) / elapsed.as_secs_f64();
        eprintln!("listener: {got} bytes in {elapsed:?}: {rate:.0} B/s after the burst");
        assert!(rate > 0.7 * 16_000.0, "{rate:.0} B/s");
    }
    assert_eq!(churn.await.unwrap(), 1000, "new listeners kept connecting");
    let dropped_after = metric_at(&metrics, dropped).await;
    eprintln!("log lines dropped: {dropped_after}");
    assert!(dropped_after > dropped_before, "the count rises");
    // Shutdown does not wait on the stuck pipe either (the last flush gives up after 2 s).
    assert_eq!(onair.stop(Duration::from_secs(15)), Some(0));
}

#[test]
fn a_low_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let dir = tempfile::tempdir().unwrap();
    let onair = Onair::spawn(
        dir.path(),
        &config(lib.path(), ""),
        &["prlimit", "--nofile=256:4096"],
        Stdout::Read,
    );
    let raised = onair
        .logged("file descriptor limit raised")
        .expect("the raise is logged");
    assert_eq!(
        (raised["was"].as_u64(), raised["soft"].as_u64()),
        (Some(256), Some(4096))
    );
    assert_eq!(raised["hard"].as_u64(), Some(4096));
    // The default mount's max_listeners (20,000) cannot be reached under 4,096: said so.
    let warned = onair.logs.lock().unwrap().iter().any(|l| {
        l["level"] == "WARN"
            && l["message"]
                .as_str()
                .unwrap_or("")
                .contains("exceed the file descriptor limit")
    });
    assert!(warned, "the shortfall is warned about");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let max_fds = runtime.block_on(metric_at(&onair.url("/metrics"), "process_max_fds"));
    assert_eq!(max_fds, 4096.0);
    assert_eq!(onair.stop(Duration::from_secs(15)), Some(0));
}

#[tokio::test]
async fn sighup_reopens_the_access_log() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = format!("access_log = \"{}\"", log.display());
    let onair = Onair::spawn(dir.path(), &config(lib.path(), &server), &[], Stdout::Read);
    let lines = |path: std::path::PathBuf| async move {
        std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
    };
    assert_eq!(short_listeners(onair.addr, 1).await, 1);
    until(Duration::from_secs(10), "the first access line", || async {
        (lines(log.clone()).await == 1).then_some(())
    })
    .await;
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    onair.signal("HUP");
    until(Duration::from_secs(10), "the reopen logged", || async {
        onair.logged("access log reopened").map(|_| ())
    })
    .await;
    assert_eq!(short_listeners(onair.addr, 2).await, 2);
    until(
        Duration::from_secs(10),
        "new lines in a new file",
        || async { (lines(log.clone()).await == 2).then_some(()) },
    )
    .await;
    assert_eq!(lines(rotated).await, 1, "the rotated file got nothing more");
    assert!(onair.logged("stopped").is_none());
    // The process did not take SIGHUP as a reason to end, and logs its last line at exit.
    let logs = std::sync::Arc::clone(&onair.logs);
    assert_eq!(onair.stop(Duration::from_secs(15)), Some(0));
    until(
        Duration::from_secs(10),
        "\"stopped\" logged at exit",
        || async {
            logs.lock()
                .unwrap()
                .iter()
                .any(|l| l["message"] == "stopped")
                .then_some(())
        },
    )
    .await;
}
