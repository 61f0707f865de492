//! Supervision, proved with faults injected on purpose (the `fault-injection` feature, which only
//! test builds have): a track whose decoder panics is skipped as corrupt and kept out while the
//! stream goes on; a pipeline thread, fan-out thread or scheduler that dies makes the process
//! exit non-zero within a couple of seconds (so the orchestrator replaces it) instead of keeping
//! listeners on silence behind a green health probe.

use std::time::Duration;

use onair::audio::clock::Clock;

use crate::support::process::{Onair, Stdout, config};
use crate::support::{RawStream, TestServer, config_for, get_text, media_dir, until};

fn copy(dir: &std::path::Path, file: &str, as_name: &str) {
    std::fs::copy(media_dir().join(file), dir.join(as_name)).unwrap();
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_track_whose_decoder_panics_is_skipped_and_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    copy(dir.path(), "14-long-title.mp3", "a.mp3");
    copy(
        dir.path(),
        "03-mono22k.mp3",
        "b-onair-fault-decode-panic.mp3",
    );
    copy(dir.path(), "04-flac16.flac", "c.flac");
    let server = TestServer::start_with(
        config_for(dir.path(), "[playlist]\norder = \"sequential\"\n"),
        Clock::Unpaced,
    )
    .await;
    // Three rounds' worth of tracks started: a and c go on, b was tried once.
    let played = until(Duration::from_secs(60), "two rounds played", || async {
        let m = get_text(server.url("/metrics")).await.1;
        (metric(&m, "onair_tracks_played_total") >= 6.0).then_some(m)
    })
    .await;
    assert_eq!(
        metric(&played, "onair_tracks_skipped_total{reason=\"corrupt\"}"),
        1.0,
        "skipped once, then kept out"
    );
    let (_, now) = get_text(server.url("/api/nowplaying")).await;
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    let keys: Vec<&str> = now["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert!(
        keys.iter().filter(|k| k.contains("fault")).count() <= 1,
        "the panicking track came back: {keys:?}"
    );
    assert!(
        keys.contains(&"a.mp3") && keys.contains(&"c.flac"),
        "{keys:?}"
    );
    assert_eq!(get_text(server.url("/healthz")).await.0, 200);
    server.shutdown().await.unwrap();
}

/// The radio runs `library`; `trigger` makes the fault fire; it must exit non-zero by itself.
fn dies(library: &std::path::Path, trigger: impl FnOnce(&Onair), stage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut onair = Onair::spawn(dir.path(), &config(library, ""), &[], Stdout::Read);
    trigger(&onair);
    let (code, after) = onair.wait_exit(Duration::from_secs(30));
    eprintln!("MEASURE {stage}: exited with {code:?} {after:?} after the trigger");
    assert_eq!(code, Some(1), "{stage}: a dead stage must fail the process");
    let logs = onair.logs.lock().unwrap();
    let died = logs
        .iter()
        .find(|l| l["message"] == "a stage of the radio panicked")
        .unwrap_or_else(|| panic!("{stage}: no log of the panic in {logs:?}"));
    assert_eq!(died["stage"], stage);
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the radio cannot go on without its"))),
        "{stage}: the exit is explained"
    );
}

#[test]
fn a_dead_pipeline_thread_ends_the_process() {
    let lib = tempfile::tempdir().unwrap();
    copy(
        lib.path(),
        "14-long-title.mp3",
        "onair-fault-pipeline-panic.mp3",
    );
    dies(lib.path(), |_| {}, "pipeline thread");
}

#[test]
fn a_dead_scheduler_ends_the_process() {
    let lib = tempfile::tempdir().unwrap();
    copy(
        lib.path(),
        "14-long-title.mp3",
        "onair-fault-scheduler-panic.mp3",
    );
    // A panic inside the task is caught by tokio: the radio notices its scheduler ended.
    let dir = tempfile::tempdir().unwrap();
    let mut onair = Onair::spawn(dir.path(), &config(lib.path(), ""), &[], Stdout::Read);
    let (code, after) = onair.wait_exit(Duration::from_secs(30));
    eprintln!("MEASURE scheduler: exited with {code:?} {after:?} after start");
    assert_eq!(code, Some(1));
    assert!(
        onair
            .logged("the radio cannot go on without its scheduler: exiting so that it is replaced")
            .is_some()
            || onair
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l["stage"] == "scheduler")
    );
}

#[test]
fn a_dead_fanout_thread_ends_the_process() {
    let lib = tempfile::tempdir().unwrap();
    copy(lib.path(), "14-long-title.mp3", "a.mp3");
    dies(
        lib.path(),
        |onair| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // A healthy radio first, then the listener that trips the fault.
                assert_eq!(get_text(onair.url("/healthz")).await.0, 200);
                let _l = RawStream::get(
                    onair.addr,
                    "/radio.mp3",
                    "User-Agent: onair-fault-fanout-panic\r\n",
                )
                .await;
            });
        },
        "fan-out thread",
    );
}
