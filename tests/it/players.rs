//! Real players read a mount: ffprobe (FFmpeg) and mpg123, as a listener would run them.

use std::process::Command;

use crate::support::{TestServer, config_for, library_with, require};

/// Runs a blocking command off the async runtime, so the server keeps streaming meanwhile.
async fn run(cmd: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("timeout")
            .arg("30")
            .args(&cmd)
            .output()
            .expect("run player");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn ffprobe_reads_the_stream_and_its_title() {
    require("ffprobe");
    let lib = library_with(&["02-vbr48k-utf8.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let (ok, stdout, stderr) = run(vec![
        "ffprobe".into(),
        "-v".into(),
        "error".into(),
        "-icy".into(),
        "1".into(),
        "-show_entries".into(),
        "stream=codec_name,sample_rate,channels,bit_rate:format_tags".into(),
        "-of".into(),
        "json".into(),
        server.url("/radio.mp3"),
    ])
    .await;
    assert!(ok, "ffprobe failed: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "mp3");
    assert_eq!(s["sample_rate"], "44100");
    assert_eq!(s["channels"], 2);
    // FFmpeg reports the icy-* response headers as tags, named as the server spelled them.
    let tags = v["format"]["tags"].as_object().expect("format tags");
    let tag = |name: &str| {
        tags.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str().unwrap_or_default().to_string())
    };
    assert_eq!(tag("icy-name").as_deref(), Some("Test Radio"), "{stdout}");
    assert_eq!(tag("icy-br").as_deref(), Some("128"));
    assert_eq!(
        tag("StreamTitle").as_deref(),
        Some("Zoë & Łukasz - Été à Paris — Café"),
        "{stdout}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn ffmpeg_decodes_seconds_of_the_stream_without_errors() {
    require("ffmpeg");
    let lib = library_with(&["03-mono22k.mp3", "05-flac24-96k.flac"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let (ok, _, stderr) = run(vec![
        "ffmpeg".into(),
        "-nostdin".into(),
        "-v".into(),
        "error".into(),
        "-xerror".into(),
        "-i".into(),
        server.url("/radio.mp3"),
        "-t".into(),
        "3".into(),
        "-f".into(),
        "null".into(),
        "-".into(),
    ])
    .await;
    assert!(ok, "ffmpeg reported errors: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg printed errors: {stderr}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn mpg123_plays_the_stream_and_shows_the_title() {
    require("mpg123");
    let lib = library_with(&["03-mono22k.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    // -t: decode without an audio device; -n: stop after 200 frames (about 5 s).
    let (ok, _, stderr) = run(vec![
        "mpg123".into(),
        "-v".into(),
        "-t".into(),
        "-n".into(),
        "200".into(),
        server.url("/radio.mp3"),
    ])
    .await;
    assert!(ok, "mpg123 failed: {stderr}");
    assert!(stderr.contains("ICY-NAME: Test Radio"), "{stderr}");
    assert!(
        stderr.contains("ICY-META: StreamTitle='O'Brien - Don't Stop 'Til Dawn';"),
        "{stderr}"
    );
    assert!(stderr.contains("MPEG 1.0 L III cbr128 44100"), "{stderr}");
    assert!(
        stderr.contains("Decoding of radio.mp3 finished"),
        "{stderr}"
    );
    server.shutdown().await.unwrap();
}
