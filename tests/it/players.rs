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

/// ffprobe's JSON for `entries` of the stream at `url`, read as a player asking for ICY titles
/// (`-icy 1`).
async fn ffprobe_icy(url: &str, entries: &str) -> serde_json::Value {
    let (ok, stdout, stderr) = run(["ffprobe", "-v", "error", "-icy", "1", "-show_entries"]
        .into_iter()
        .map(String::from)
        .chain([
            entries.to_owned(),
            "-of".into(),
            "json".into(),
            url.to_owned(),
        ])
        .collect())
    .await;
    assert!(ok, "ffprobe {url}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// A format tag of ffprobe's JSON by name, any case: FFmpeg reports the icy-* response headers
/// (named as the server spelled them) and StreamTitle as tags.
fn icy_tag(v: &serde_json::Value, name: &str) -> Option<String> {
    v["format"]["tags"].as_object().and_then(|tags| {
        tags.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str().unwrap_or_default().to_string())
    })
}

#[tokio::test]
async fn ffprobe_reads_the_stream_and_its_title() {
    require("ffprobe");
    let lib = library_with(&["02-vbr48k-utf8.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let v = ffprobe_icy(
        &server.url("/radio.mp3"),
        "stream=codec_name,sample_rate,channels,bit_rate:format_tags",
    )
    .await;
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "mp3");
    assert_eq!(s["sample_rate"], "44100");
    assert_eq!(s["channels"], 2);
    let tag = |name: &str| icy_tag(&v, name);
    assert_eq!(tag("icy-name").as_deref(), Some("Test Radio"), "{v}");
    assert_eq!(tag("icy-br").as_deref(), Some("128"));
    assert_eq!(
        tag("StreamTitle").as_deref(),
        Some("Zoë & Łukasz - Été à Paris — Café"),
        "{v}"
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

/// The AAC mounts, one per profile: ffprobe names codec, profile, rate and channels as the
/// config asks; ffmpeg decodes 20 s of each with no error, and what it decodes is the
/// library's tone, unbroken. The LC mount also carries its ICY titles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aac_mounts_in_every_profile_play_in_ffmpeg() {
    use crate::support::synth::{Programme, Synth, present};
    require("ffmpeg");
    require("ffprobe");
    let lib = tempfile::tempdir().unwrap();
    Synth::new(44_100)
        .tone(1000.0, 60.0, -20.0)
        .write_wav(&lib.path().join("tone.wav"));
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.aac\"\ncodec = \"aac\"\nbitrate = 128\n\
         [[mount]]\npath = \"/he.aac\"\ncodec = \"aac\"\nprofile = \"he\"\nbitrate = 48\n\
         [[mount]]\npath = \"/he2.aac\"\ncodec = \"aac\"\nprofile = \"he2\"\nbitrate = 32\n",
    ))
    .await;
    server.wait_ready().await;
    let mounts = [
        ("/radio.aac", "LC"),
        ("/he.aac", "HE-AAC"),
        ("/he2.aac", "HE-AACv2"),
    ];
    for (path, profile) in mounts {
        let v = ffprobe_icy(
            &server.url(path),
            "stream=codec_name,profile,sample_rate,channels",
        )
        .await;
        let s = &v["streams"][0];
        assert_eq!(s["codec_name"], "aac", "{path}: {v}");
        assert_eq!(s["profile"], profile, "{path}: {v}");
        assert_eq!(s["sample_rate"], "44100", "{path}: {v}");
        assert_eq!(s["channels"], 2, "{path}: {v}");
    }
    // 20 s of each mount at once, decoded to PCM.
    let decodes = mounts.map(|(path, _)| {
        let url = server.url(path);
        tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .arg("40")
                .args(["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i"])
                .arg(&url)
                .args(["-t", "20", "-ac", "2", "-ar", "44100", "-f", "f32le", "-"])
                .output()
                .expect("run ffmpeg")
        })
    });
    for ((path, _), decode) in mounts.iter().zip(decodes) {
        let out = decode.await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ffmpeg {path}: {stderr}");
        assert!(stderr.trim().is_empty(), "ffmpeg {path} printed: {stderr}");
        let programme = Programme {
            rate: 44_100,
            pcm: out
                .stdout
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        };
        let seconds = programme.pcm.len() as f64 / 2.0 / 44_100.0;
        assert!(seconds > 19.5, "{path}: {seconds:.1} s decoded");
        // The tone, -20 dBFS, read back through each codec (HE's SBR rebuilds the highs only).
        let heard = present(&programme.band(1000.0), -30.0, 1.0);
        let longest = heard.iter().map(|(a, b)| b - a).fold(0.0, f64::max);
        assert!(longest > 19.0, "{path}: 1 kHz heard in {heard:?}");
        let gaps = programme.gaps(-50.0, 0.25);
        assert!(gaps.is_empty(), "{path}: silences {gaps:?}");
    }
    // ICY titles ride an AAC mount as they do an MP3 one.
    let v = ffprobe_icy(&server.url("/radio.aac"), "format_tags").await;
    assert_eq!(icy_tag(&v, "icy-br").as_deref(), Some("128"), "{v}");
    assert_eq!(icy_tag(&v, "StreamTitle").as_deref(), Some("tone"), "{v}");
    let status = server.status().await;
    let types: Vec<&str> = status["icestats"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["audio/aac"; 3]);
    server.shutdown().await.unwrap();
}

/// An Opus mount: Ogg Opus at 48 kHz from a 44.1 kHz station, a listener joining mid-stream
/// gets the header pages first and decodes from its first byte, and a title change is a new
/// chained stream whose comments hold the title, crossed with no error and no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opus_mount_plays_in_ffmpeg_and_chains_a_stream_per_title() {
    use crate::support::synth::{Programme, Synth, present};
    use crate::support::{ADMIN_PASSWORD, RawStream, admin_config_for};
    require("ffmpeg");
    require("ffprobe");
    let lib = tempfile::tempdir().unwrap();
    Synth::new(44_100)
        .tone(1000.0, 90.0, -20.0)
        .write_wav(&lib.path().join("tone.wav"));
    let server = TestServer::start(admin_config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.opus\"\ncodec = \"opus\"\nbitrate = 96\n",
    ))
    .await;
    server.wait_ready().await;
    let v = ffprobe_icy(
        &server.url("/radio.opus"),
        "stream=codec_name,sample_rate,channels:format=format_name",
    )
    .await;
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "opus", "{v}");
    assert_eq!(s["sample_rate"], "48000", "{v}");
    assert_eq!(s["channels"], 2, "{v}");
    assert_eq!(v["format"]["format_name"], "ogg", "{v}");

    // A player asking for ICY metadata gets none on Ogg, as from Icecast.
    let mut listener = RawStream::get(server.addr, "/radio.opus", "Icy-MetaData: 1\r\n").await;
    assert_eq!(listener.header("content-type"), Some("audio/ogg"));
    assert_eq!(listener.header("icy-metaint"), None);
    let capture = tokio::spawn(async move {
        listener
            .read(1 << 20, std::time::Duration::from_secs(20))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let set = reqwest::Client::new()
        .get(server.url(
            "/admin/metadata?mode=updinfo&mount=/radio.opus&song=Night%20Artist%20-%20Late%20Song",
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let bytes = capture.await.unwrap();

    // The capture starts with a chain's header pages, then chains to the new title.
    assert!(bytes.starts_with(b"OggS"), "the body starts on a page");
    let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(&bytes[..]));
    let mut chains: Vec<(u32, String)> = Vec::new();
    while let Some(p) = reader.read_packet().unwrap() {
        if p.first_in_stream() {
            assert!(
                p.data.starts_with(b"OpusHead"),
                "each chain opens with OpusHead"
            );
            chains.push((p.stream_serial(), String::new()));
        } else if p.data.starts_with(b"OpusTags") {
            let chain = chains.last_mut().expect("OpusTags after an OpusHead");
            chain.1 = String::from_utf8_lossy(&p.data).into_owned();
        }
    }
    // One chain per title; the burst may reach back to the silence before the first track,
    // a chain with no title.
    let titled = &chains[chains.len().saturating_sub(2)..];
    assert!(chains.len() <= 3, "one chain per title: {chains:?}");
    assert!(titled[0].1.contains("TITLE=tone"), "{chains:?}");
    assert!(titled[1].1.contains("ARTIST=Night Artist"), "{chains:?}");
    assert!(titled[1].1.contains("TITLE=Late Song"), "{chains:?}");
    assert_ne!(titled[0].0, titled[1].0);

    // ffmpeg decodes the whole capture, across the chain, with no error and no gap.
    let decoded = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("timeout")
            .arg("60")
            .args([
                "ffmpeg", "-nostdin", "-v", "error", "-xerror", "-f", "ogg", "-i", "pipe:0",
            ])
            .args(["-ac", "2", "-ar", "48000", "-f", "f32le", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ffmpeg");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&bytes));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        out
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&decoded.stderr);
    assert!(decoded.status.success(), "ffmpeg: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg printed: {stderr}");
    let programme = Programme {
        rate: 48_000,
        pcm: decoded
            .stdout
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    let seconds = programme.pcm.len() as f64 / 2.0 / 48_000.0;
    assert!(seconds > 19.0, "{seconds:.1} s decoded");
    let heard = present(&programme.band(1000.0), -30.0, 1.0);
    let longest = heard.iter().map(|(a, b)| b - a).fold(0.0, f64::max);
    assert!(
        longest > seconds - 1.0,
        "1 kHz heard in {heard:?} of {seconds:.1} s"
    );
    let gaps = programme.gaps(-50.0, 0.25);
    assert!(gaps.is_empty(), "silences {gaps:?}");

    let status = server.status().await;
    let source = &status["icestats"]["source"];
    assert_eq!(source["server_type"], "audio/ogg", "{status}");
    assert_eq!(source["samplerate"], 48000, "{status}");
    server.shutdown().await.unwrap();
}
