//! HLS served to real clients: playlists read over HTTP and checked against the rules players
//! enforce, blocking reloads and the hinted part, gzip, and ffmpeg reading the AAC and MP3
//! renditions for 20 s with no error.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::synth::Synth;
use crate::support::{TestServer, config_for, get_text, library_with, require};

const MOUNTS: &str = "[[mount]]\npath = \"/radio.mp3\"\nhls = true\n\
                      [[mount]]\npath = \"/radio.aac\"\ncodec = \"aac\"\nbitrate = 128\nhls = true\n";

async fn radio() -> (TestServer, tempfile::TempDir) {
    let lib = tempfile::tempdir().unwrap();
    Synth::new(44_100)
        .tone(1000.0, 120.0, -20.0)
        .write_wav(&lib.path().join("tone.wav"));
    let server = TestServer::start(config_for(lib.path(), MOUNTS)).await;
    server.wait_ready().await;
    (server, lib)
}

/// The playlist once it lists a part (the timeline starts at a segment boundary, up to 5 s in).
async fn first_playlist(server: &TestServer, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = reqwest::get(server.url(path)).await.unwrap();
        if resp.status() == 200 {
            return resp.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "{path}: still {}", resp.status());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A radio on the library at `lib` with [`MOUNTS`] and `extra` config, once its AAC playlist
/// lists a part.
async fn publishing(lib: &std::path::Path, extra: &str) -> TestServer {
    let server = TestServer::start(config_for(lib, &format!("{MOUNTS}{extra}"))).await;
    server.wait_ready().await;
    first_playlist(&server, "/hls/radio.aac/live.m3u8").await;
    server
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(q) => q.split('"').next(),
        None => rest.split(',').next(),
    }
}

fn lines_of<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{tag}:")))
        .collect()
}

/// (msn, part) of the preload hint.
fn hint(text: &str) -> (u64, u64) {
    let hints = lines_of(text, "#EXT-X-PRELOAD-HINT");
    assert_eq!(hints.len(), 1, "{text}");
    let uri = attr(hints[0], "URI").unwrap();
    let mut n = uri.split('.');
    (
        n.next().unwrap().parse().unwrap(),
        n.next().unwrap().parse().unwrap(),
    )
}

#[tokio::test]
async fn playlists_parts_and_blocking_reloads_follow_low_latency_hls() {
    let (server, _lib) = radio().await;
    let master = reqwest::get(server.url("/hls/master.m3u8")).await.unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let master = master.text().await.unwrap();
    let inf = lines_of(&master, "#EXT-X-STREAM-INF");
    assert_eq!(inf.len(), 2, "{master}");
    assert_eq!(attr(inf[0], "CODECS"), Some("mp4a.40.2"));
    assert_eq!(attr(inf[1], "CODECS"), Some("mp4a.40.34"));
    assert!(master.contains("\nradio.aac/live.m3u8\n"), "{master}");

    let text = first_playlist(&server, "/hls/radio.aac/live.m3u8").await;
    for part in lines_of(&text, "#EXT-X-PART") {
        let d: f64 = attr(part, "DURATION").unwrap().parse().unwrap();
        assert!((0.85..=1.0).contains(&d), "{part}");
    }
    assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"));

    // A blocking reload for the hinted part returns once it is published, and lists it.
    let (msn, part) = hint(&text);
    let url = server.url(&format!(
        "/hls/radio.aac/live.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    ));
    let started = Instant::now();
    let blocked = reqwest::get(&url).await.unwrap();
    assert_eq!(blocked.status(), 200);
    assert_eq!(blocked.headers()["cache-control"], "public, max-age=24");
    let blocked = blocked.text().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        blocked.contains(&format!("URI=\"{msn}.{part}.aac\"")),
        "{blocked}"
    );
    assert_ne!(hint(&blocked), (msn, part));
    // By now the MP3 rendition has published too, and is reported.
    let report = lines_of(&blocked, "#EXT-X-RENDITION-REPORT");
    assert_eq!(report.len(), 1, "{blocked}");
    assert_eq!(attr(report[0], "URI"), Some("../radio.mp3/live.m3u8"));

    // The hinted part itself is sent whole once it exists: an ID3 tag, then ADTS frames.
    let (msn, part) = hint(&blocked);
    let body = reqwest::get(server.url(&format!("/hls/radio.aac/{msn}.{part}.aac")))
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.headers()["content-type"], "audio/aac");
    let body = body.bytes().await.unwrap();
    assert_eq!(&body[..3], b"ID3");
    let tag = 10
        + body[6..10]
            .iter()
            .fold(0usize, |n, &b| (n << 7) | usize::from(b));
    assert_eq!(body[tag], 0xff, "an ADTS sync after the tag");
    assert_eq!(body[tag + 1] & 0xf6, 0xf0);
    // 128 kbps for about a second.
    assert!((12_000..20_000).contains(&body.len()), "{}", body.len());

    // Too far ahead, or a part without its segment: 400 at once.
    for query in [
        format!("_HLS_msn={}&_HLS_part=0", msn + 5),
        "_HLS_part=1".to_string(),
    ] {
        let url = server.url(&format!("/hls/radio.aac/live.m3u8?{query}"));
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
    }
    // Objects outside the window: 404.
    let gone = reqwest::get(server.url("/hls/radio.aac/1.aac"))
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // gzip when asked for.
    let zipped = reqwest::Client::new()
        .get(server.url("/hls/radio.mp3/live.m3u8"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "Accept-Encoding");
    let z = zipped.bytes().await.unwrap();
    assert_eq!(&z[..2], [0x1f, 0x8b]);

    // Listeners: this client on both renditions, and a second player (another User-Agent) on
    // the AAC one. They count in the status, the API and the metrics, by mount and protocol.
    let other = reqwest::Client::builder()
        .user_agent("AppleCoreMedia/1.0.0")
        .build()
        .unwrap();
    let resp = other
        .get(server.url("/hls/radio.aac/live.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let status: serde_json::Value = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sources = status["icestats"]["source"].as_array().unwrap();
    let source = |path: &str| {
        sources
            .iter()
            .find(|s| s["listenurl"].as_str().unwrap().ends_with(path))
            .unwrap()
            .clone()
    };
    assert_eq!(source("/radio.aac")["hls_listeners"], 2);
    assert_eq!(source("/radio.aac")["listeners"], 2);
    assert_eq!(source("/radio.mp3")["hls_listeners"], 1);
    let np: serde_json::Value = reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(np["listeners"], 3, "{np}");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "onair_listeners{mount=\"/radio.aac\",protocol=\"hls\"} 2",
        "onair_listeners{mount=\"/radio.mp3\",protocol=\"hls\"} 1",
        "onair_listeners{mount=\"/radio.aac\",protocol=\"http\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line}");
    }
}

fn ffmpeg_reads(url: &str, seconds: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("60")
        .args([
            "ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", url, "-t",
        ])
        .arg(seconds.to_string())
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ffmpeg_reads_the_aac_and_mp3_renditions_for_20_seconds_with_no_error() {
    require("ffmpeg");
    let (server, _lib) = radio().await;
    first_playlist(&server, "/hls/radio.mp3/live.m3u8").await;
    // Wait for three segments, ffmpeg's live start.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let aac = server.url("/hls/radio.aac/live.m3u8");
    let mp3 = server.url("/hls/radio.mp3/live.m3u8");
    let (a, m) = tokio::join!(
        tokio::task::spawn_blocking(move || ffmpeg_reads(&aac, 20)),
        tokio::task::spawn_blocking(move || ffmpeg_reads(&mp3, 20)),
    );
    for (name, (ok, stderr)) in [("aac", a.unwrap()), ("mp3", m.unwrap())] {
        assert!(ok && stderr.trim().is_empty(), "{name}: {stderr}");
    }
}

/// Runs `tests/browser/<script>` with node for at most `seconds`: whether it passed (exit 0 and
/// "0 failed"), and what it printed.
fn browser_script(script: &str, seconds: u32, args: &[&str]) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout")
        .arg(seconds.to_string())
        .arg("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .output()
        .expect("run node");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && report.contains("0 failed"), report)
}

/// tests/browser/hls-test.mjs: hls.js from npm in Debian's Chromium, on a page of another origin.
fn hls_js_plays(playlist: String, options: &[&str]) -> (bool, String) {
    let args: Vec<&str> = std::iter::once(playlist.as_str())
        .chain(options.iter().copied())
        .collect();
    browser_script("hls-test.mjs", 120, &args)
}

#[tokio::test]
async fn hls_js_plays_low_latency_aac_near_live_with_its_title_cues_and_mp3_in_chromium() {
    require("node");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && root.join("tests/browser/node_modules/hls.js").exists(),
        "Chromium or hls.js missing; the README's test command installs them"
    );
    // One tagged track on repeat: its title is the one cue to see.
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = publishing(lib.path(), "").await;
    // Players join a station already on air: three segments in the window.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let aac = server.url("/hls/radio.aac/live.m3u8");
    let mp3 = server.url("/hls/radio.mp3/live.m3u8");
    // Low-latency mode on AAC: parts, under 5 s behind live, the ID3 title. hls.js may catch up
    // at 1.1x, as a low-latency page sets it (its default start, about 4 s behind, stays put
    // whatever the load on the machine at tune-in added). Normal mode on MP3
    // (hls.js 1.7.4 loses MP3 parts after a segment's first in low-latency mode: README).
    let (low_latency, normal) = tokio::join!(
        tokio::task::spawn_blocking(move || hls_js_plays(
            aac,
            &[
                "--low-latency",
                "--seconds",
                "20",
                "--title",
                "Morning Drive",
                "--catch-up",
                "1.1"
            ]
        )),
        tokio::task::spawn_blocking(move || hls_js_plays(mp3, &["--seconds", "20"])),
    );
    for (mode, (ok, report)) in [
        ("low-latency AAC", low_latency.unwrap()),
        ("normal MP3", normal.unwrap()),
    ] {
        assert!(ok, "hls.js, {mode}:\n{report}");
        eprintln!("hls.js, {mode}:\n{report}");
    }
    server.shutdown().await.unwrap();
}

/// Varnish from Debian on 127.0.0.1, with the VCL the project ships, in front of `origin`.
struct Varnish {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Varnish {
    fn start(origin: &TestServer) -> Varnish {
        require("varnishd");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let vcl = std::fs::read_to_string(root.join("deploy/varnish/onair.vcl")).unwrap();
        let origin_port = origin
            .url("")
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let vcl = vcl.replace(".port = \"8000\";", &format!(".port = \"{origin_port}\";"));
        assert!(vcl.contains(&origin_port), "the VCL names no backend port");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("onair.vcl"), vcl).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("varnishd")
            .args(["-F", "-j", "none", "-s", "malloc,64m", "-n"])
            .arg(dir.path().join("work"))
            .arg("-a")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-f")
            .arg(dir.path().join("onair.vcl"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start varnishd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "varnishd did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Varnish {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The origin's count of HLS requests of `kind` on `mount`.
async fn origin_requests(server: &TestServer, mount: &str, kind: &str) -> u64 {
    let (_, metrics) = get_text(server.url("/metrics")).await;
    let series = format!("onair_hls_requests_total{{kind=\"{kind}\",mount=\"{mount}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series}"))
        .parse()
        .unwrap()
}

/// Parts published so far, counted on the timeline (msn × 4 + part of the preload hint).
async fn parts_published(server: &TestServer) -> u64 {
    let text = reqwest::get(server.url("/hls/radio.aac/live.m3u8"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (msn, part) = hint(&text);
    msn * 4 + part
}

#[tokio::test]
async fn through_varnish_20_hls_js_players_cost_the_origin_about_one_request_per_part() {
    require("node");
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = publishing(lib.path(), "").await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let varnish = Varnish::start(&server);
    let kinds = ["part", "blocking_playlist", "segment"];
    let mut before = Vec::new();
    for kind in kinds {
        before.push(origin_requests(&server, "/radio.aac", kind).await);
    }
    let first = parts_published(&server).await;
    let playlist = varnish.url("/hls/radio.aac/live.m3u8");
    let (ok, report) = tokio::task::spawn_blocking(move || {
        hls_js_plays(
            playlist,
            &[
                "--low-latency",
                "--clients",
                "20",
                "--seconds",
                "20",
                "--catch-up",
                "1.1",
                "--max-behind-ms",
                "5500",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "20 hls.js players through Varnish:\n{report}");
    eprintln!("{report}");
    let parts = parts_published(&server).await - first;
    for (kind, before) in kinds.into_iter().zip(before) {
        let made = origin_requests(&server, "/radio.aac", kind).await - before;
        // Without the cache: 20 per part. With it: one per part, plus the parts the players
        // tuned in with (fetched once each) and the odd request that missed the waiting list.
        let allowed = match kind {
            "segment" => parts / 4 + 4,
            _ => parts + parts / 4 + 4,
        };
        assert!(
            made <= allowed,
            "{made} origin {kind} requests for {parts} parts, more than {allowed}"
        );
        eprintln!("origin {kind} requests: {made} for {parts} parts, 20 players");
    }
    drop(varnish);
    server.shutdown().await.unwrap();
}

/// The 33-bit, 90 kHz timestamp in a part's or segment's ID3 `PRIV` frame.
fn id3_timestamp(body: &[u8]) -> u64 {
    let owner = b"com.apple.streaming.transportStreamTimestamp\0";
    let at = body
        .windows(owner.len())
        .position(|w| w == owner)
        .expect("a PRIV timestamp frame")
        + owner.len();
    u64::from_be_bytes(body[at..at + 8].try_into().unwrap())
}

/// (msn, part, timestamp) of every part the playlist lists.
async fn listed_parts(server: &TestServer, mount: &str, ext: &str) -> Vec<(u64, u64, u64)> {
    let text = reqwest::get(server.url(&format!("/hls{mount}/live.m3u8")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut parts = Vec::new();
    for line in lines_of(&text, "#EXT-X-PART") {
        let uri = attr(line, "URI").unwrap();
        let mut n = uri.trim_end_matches(&format!(".{ext}")).split('.');
        let (msn, part) = (
            n.next().unwrap().parse().unwrap(),
            n.next().unwrap().parse().unwrap(),
        );
        let body = reqwest::get(server.url(&format!("/hls{mount}/{uri}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        parts.push((msn, part, id3_timestamp(&body)));
    }
    parts
}

#[tokio::test]
async fn a_restarted_radio_continues_the_numbers_and_timestamps_past_the_old_ones() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let first = publishing(lib.path(), "").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = listed_parts(&first, "/radio.aac", "aac").await;
    let text = first_playlist(&first, "/hls/radio.aac/live.m3u8").await;
    let hinted = hint(&text);
    first.shutdown().await.unwrap();

    // The replacement: the same station, a new process and timeline.
    let second = publishing(lib.path(), "").await;
    let after = listed_parts(&second, "/radio.aac", "aac").await;
    let (old, new) = (before.last().unwrap(), after.first().unwrap());
    // No name the old pod published or hinted is reused: a cache may hold them.
    assert!(
        (new.0, new.1) > hinted,
        "new first part {new:?}, old hint {hinted:?}"
    );
    assert_eq!(new.1, 0, "a new timeline starts on a segment");
    // The timestamps go on from where the old ones were (no wrap in this window: 26.5 h).
    assert!(new.2 > old.2, "timestamps {} then {}", old.2, new.2);
    let gap = (new.2 - old.2) as f64 / 90_000.0;
    assert!(gap < 15.0, "{gap} s between the two pods' timestamps");
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_33_bit_timestamp_wraps_and_ffmpeg_and_hls_js_play_through_it() {
    require("ffmpeg");
    require("node");
    // An epoch that puts the wrap (2^33 / 90 kHz = 95,443.7 s after it) 20 s from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let epoch = std::time::UNIX_EPOCH + Duration::from_secs(now - 95_443 + 20);
    let hls = format!("[hls]\nepoch = \"{}\"\n", onair::dates::iso8601_utc(epoch));
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = publishing(lib.path(), &hls).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Both start before the wrap and play 20 s across it.
    let aac = server.url("/hls/radio.aac/live.m3u8");
    let mp3 = server.url("/hls/radio.mp3/live.m3u8");
    let (player, reader) = tokio::join!(
        tokio::task::spawn_blocking(move || hls_js_plays(
            aac,
            &["--low-latency", "--seconds", "20", "--catch-up", "1.1"]
        )),
        tokio::task::spawn_blocking(move || ffmpeg_reads(&mp3, 20)),
    );
    let (ok, report) = player.unwrap();
    assert!(ok, "hls.js across the wrap:\n{report}");
    let (ok, stderr) = reader.unwrap();
    assert!(
        ok && stderr.trim().is_empty(),
        "ffmpeg across the wrap: {stderr}"
    );
    // The window now holds the wrap: timestamps rise, fall back by 2^33 once, rise again.
    let text = first_playlist(&server, "/hls/radio.aac/live.m3u8").await;
    let mut segments = Vec::new();
    for uri in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let body = reqwest::get(server.url(&format!("/hls/radio.aac/{uri}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        segments.push((uri.to_owned(), id3_timestamp(&body)));
    }
    let falls: Vec<_> = segments.windows(2).filter(|w| w[1].1 < w[0].1).collect();
    assert_eq!(falls.len(), 1, "{segments:?}");
    let (a, b) = (falls[0][0].1, falls[0][1].1);
    // A segment is 3.84 s: 345,600 ticks.
    assert!(a > (1 << 33) - 400_000 && b < 400_000, "{a} then {b}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_playlist_parses_in_strict_mode_with_npm_hls_parser() {
    require("node");
    let (server, _lib) = radio().await;
    first_playlist(&server, "/hls/radio.aac/live.m3u8").await;
    // Past CAN-SKIP-UNTIL (24 s) and a segment, so the delta update skips some.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let url = server.url("");
    // Several rounds: the playlist's shape changes with where in a segment the request falls.
    for round in 0..5 {
        let url = url.clone();
        let (ok, report) =
            tokio::task::spawn_blocking(move || browser_script("parse-playlists.mjs", 60, &[&url]))
                .await
                .unwrap();
        assert!(ok, "round {round}:\n{report}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_listener_page_plays_hls_where_the_browser_lacks_the_mount_codec() {
    require("node");
    let (server, _lib) = radio().await;
    first_playlist(&server, "/hls/radio.aac/live.m3u8").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let url = server.url("");
    let (ok, report) = tokio::task::spawn_blocking(move || {
        browser_script("page-hls-test.mjs", 90, &[&url, "/radio.aac"])
    })
    .await
    .unwrap();
    assert!(ok, "{report}");
    server.shutdown().await.unwrap();
}

/// Reads more of what `s` sends into `buf`; `what` names what must come before a close.
async fn read_more(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut chunk))
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap();
    assert!(n > 0, "closed before {what}: {buf:?}");
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads one response (head, then its `Content-Length` body unless `head_only`) from `s`,
/// keeping what follows in `buf`: (status, head text, body).
async fn one_response(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> (u16, String, Vec<u8>) {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(s, buf, "a whole head").await;
    };
    let head = String::from_utf8(buf.drain(..end).collect()).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    let length = if head_only { 0 } else { length };
    while buf.len() < length {
        read_more(s, buf, "the whole body").await;
    }
    let body = buf.drain(..length).collect();
    (status, head, body)
}

#[tokio::test]
async fn one_connection_carries_pipelined_blocking_and_head_requests_until_asked_to_close() {
    use tokio::io::AsyncWriteExt;
    let (server, _lib) = radio().await;
    let (msn, part) = hint(&first_playlist(&server, "/hls/radio.aac/live.m3u8").await);
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = Vec::new();
    // Two requests in one write: the multivariant playlist, then a reload blocked on the
    // hinted part. Both are answered, in order, on this connection.
    let pipelined = format!(
        "GET /hls/master.m3u8 HTTP/1.1\r\nHost: t\r\nUser-Agent: raw\r\n\r\n\
         GET /hls/radio.aac/live.m3u8?_HLS_msn={msn}&_HLS_part={part} HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    s.write_all(pipelined.as_bytes()).await.unwrap();
    let (status, head, body) = one_response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: application/vnd.apple.mpegurl\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Access-Control-Allow-Origin: *\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nDate: "), "{head}");
    assert!(!head.contains("Connection: close"), "{head}");
    assert!(body.starts_with(b"#EXTM3U"));
    let (status, head, body) = one_response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Cache-Control: public, max-age=24\r\n"),
        "{head}"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(&format!("URI=\"{msn}.{part}.aac\"")),
        "the blocked reload lists the part it waited for:\n{text}"
    );
    // The part itself, then a HEAD that asks to close: its head gives the body's length, no
    // body follows, and the server closes.
    let get = format!("GET /hls/radio.aac/{msn}.{part}.aac HTTP/1.1\r\nHost: t\r\n\r\n");
    s.write_all(get.as_bytes()).await.unwrap();
    let (status, head, part_body) = one_response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: audio/aac\r\n"), "{head}");
    assert!(part_body.starts_with(b"ID3"), "an ID3 tag, then ADTS");
    let head_req =
        format!("HEAD /hls/radio.aac/{msn}.{part}.aac HTTP/1.1\r\nConnection: close\r\n\r\n");
    s.write_all(head_req.as_bytes()).await.unwrap();
    let (status, head, _) = one_response(&mut s, &mut buf, true).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", part_body.len())),
        "{head}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
    let rest = crate::support::raw::read_answer(&mut s, Duration::from_secs(5)).await;
    assert!(
        rest.closed && rest.bytes.is_empty() && buf.is_empty(),
        "{rest:?}"
    );

    // HTTP/1.0 without keep-alive: one answer, then the server closes.
    let answer = crate::support::raw::exchange(
        server.addr,
        b"GET /hls/master.m3u8 HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.closed, "{answer:?}");
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    // Garbage after a good request: the good one is answered, the bad one refused, then close.
    let answer = crate::support::raw::exchange(
        server.addr,
        b"GET /hls/master.m3u8 HTTP/1.1\r\n\r\nGET \x01\x02 nonsense\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let text = String::from_utf8_lossy(&answer.bytes);
    assert!(answer.closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    server.shutdown().await.unwrap();
}
