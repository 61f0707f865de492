//! Status, health, readiness and metrics endpoints, and the command line.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{RawStream, TestServer, config_for, library_with};

const SOURCE_KEYS: [&str; 15] = [
    "audio_info",
    "bitrate",
    "channels",
    "genre",
    "listener_peak",
    "listeners",
    "listenurl",
    "samplerate",
    "server_description",
    "server_name",
    "server_type",
    "server_url",
    "stream_start",
    "stream_start_iso8601",
    "title",
];

#[tokio::test]
async fn status_json_has_icecast_shape_and_counts_listeners() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let mut l = RawStream::get(server.addr, "/radio.mp3", "").await;
    l.read(100, Duration::from_secs(5)).await;

    let text = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stats = v["icestats"].as_object().unwrap();
    let keys: Vec<&str> = stats.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "admin",
            "host",
            "location",
            "server_id",
            "server_start",
            "server_start_iso8601",
            "source"
        ]
    );
    let src = stats["source"]
        .as_object()
        .expect("one mount: source is an object");
    let keys: Vec<&str> = src.keys().map(String::as_str).collect();
    assert_eq!(keys, SOURCE_KEYS);
    // Keys appear in the text in this order too (alphabetical, as Icecast's).
    let positions: Vec<usize> = SOURCE_KEYS
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(src["listeners"], 1);
    assert_eq!(src["listener_peak"], 1);
    assert_eq!(src["bitrate"], 128);
    assert_eq!(src["samplerate"], 44100);
    assert_eq!(src["server_type"], "audio/mpeg");
    assert_eq!(src["server_name"], "Test Radio");
    assert_eq!(src["title"], "The Testers - Morning Drive");
    assert_eq!(
        src["listenurl"],
        format!("http://{}/radio.mp3", server.addr)
    );
    assert!(
        src["stream_start_iso8601"]
            .as_str()
            .unwrap()
            .ends_with("+0000")
    );
    drop(l);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn several_mounts_give_a_source_array() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/a.mp3\"\n[[mount]]\npath = \"/b.mp3\"\nbitrate = 64\n",
    ))
    .await;
    let v: serde_json::Value = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sources = v["icestats"]["source"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[1]["bitrate"], 64);
    server.shutdown().await.unwrap();
}

/// The Shoutcast status pages DJ tools poll during a show: the mount's figures, each mount by
/// `sid` or `mount`, and polling them is not listening.
#[tokio::test]
async fn shoutcast_status_pages_show_each_mount_and_are_not_listeners() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/a.mp3\"\nmax_listeners = 50\n\
         [[mount]]\npath = \"/b.mp3\"\nbitrate = 64\n",
    ))
    .await;
    server.wait_ready().await;
    let mut first = RawStream::get(server.addr, "/a.mp3", "").await;
    let mut second = RawStream::get(server.addr, "/a.mp3", "").await;
    first.read(100, Duration::from_secs(5)).await;
    second.read(100, Duration::from_secs(5)).await;
    let title = "The Testers - Morning Drive";

    let get = |path: &str| {
        let url = server.url(path);
        async move {
            let resp = reqwest::get(url).await.unwrap();
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, kind, resp.text().await.unwrap())
        }
    };
    for path in ["/7.html", "/7.xsl", "/7.html?sid=1", "/7.xsl?mount=/a.mp3"] {
        let (status, kind, body) = get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        // listeners, stream up, peak, max, unique addresses, bitrate, title.
        assert_eq!(
            body,
            format!("<html><body>2,1,2,50,1,128,{title}</body></html>"),
            "{path}"
        );
    }
    let (_, _, second_mount) = get("/7.html?sid=2").await;
    assert!(
        second_mount.starts_with("<html><body>0,1,0,"),
        "{second_mount}"
    );
    assert!(second_mount.contains(",64,"), "{second_mount}");

    let (status, kind, xml) = get("/stats?sid=1").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/xml"), "{kind}");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "SHOUTCASTSERVER");
    let field = |name: &str| {
        root.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("CURRENTLISTENERS"), "2");
    assert_eq!(field("PEAKLISTENERS"), "2");
    assert_eq!(field("MAXLISTENERS"), "50");
    assert_eq!(field("UNIQUELISTENERS"), "1");
    assert_eq!(field("STREAMHITS"), "2");
    assert_eq!(field("STREAMSTATUS"), "1");
    assert_eq!(field("STREAMPATH"), "/a.mp3");
    assert_eq!(field("BITRATE"), "128");
    assert_eq!(field("SAMPLERATE"), "44100");
    assert_eq!(field("CONTENT"), "audio/mpeg");
    assert_eq!(field("SONGTITLE"), title);
    assert_eq!(field("SERVERTITLE"), "Test Radio");
    assert!(field("AVERAGETIME").parse::<u64>().is_ok(), "{xml}");

    let (status, kind, json) = get("/stats?sid=2&json=1").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/json"), "{kind}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["streampath"], "/b.mp3");
    assert_eq!(v["bitrate"], 64);
    assert_eq!(v["currentlisteners"], 0);
    assert_eq!(v["songtitle"], title);

    for path in [
        "/stats?sid=3",
        "/stats?sid=0",
        "/stats?sid=x",
        "/7.html?mount=/c.mp3",
    ] {
        assert_eq!(get(path).await.0, 404, "{path}");
    }
    // A tool polling every 2 s for a whole show is never a listener.
    for _ in 0..20 {
        get("/7.html").await;
        get("/stats?sid=1").await;
    }
    let (_, _, after) = get("/7.html").await;
    assert!(after.starts_with("<html><body>2,1,2,"), "{after}");
    assert_eq!(
        server
            .metric("onair_listener_connections_total{mount=\"/a.mp3\"}")
            .await,
        2.0
    );
    drop((first, second));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let mut l = RawStream::get(server.addr, "/radio.mp3", "").await;
    l.read(32_000, Duration::from_secs(5)).await;
    let m = reqwest::get(server.url("/metrics")).await.unwrap();
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = m.text().await.unwrap();
    for needle in [
        "onair_listeners{mount=\"/radio.mp3\",protocol=\"http\"} 1",
        "onair_listener_connections_total{mount=\"/radio.mp3\"} 1",
        "onair_tracks_played_total 1",
        "onair_library_tracks 1",
        "onair_time_to_first_byte_seconds_count{mount=\"/radio.mp3\"} 1",
        "onair_encoder_audio_seconds_total{codec=\"mp3\",mount=\"/radio.mp3\"}",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(m.contains(needle), "missing {needle:?}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_empty_library_keeps_listeners_on_silence_and_says_why() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(lib.path().join("notes.txt"), "not audio").unwrap();
    let server = TestServer::start(config_for(lib.path(), "")).await;
    let mut l = RawStream::get(server.addr, "/radio.mp3", "").await;
    assert!(l.status_line.ends_with("200 OK"));
    // Silence streams in real time.
    let got = l.read(32_000, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 32_000);
    let d = crate::support::decode::decode(got);
    assert!(d.rms(0, d.frames as usize) < 1e-4, "filler is silence");

    let r = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let why = r.text().await.unwrap();
    assert!(why.contains("library is empty"), "{why}");

    // A track dropped into the folder is picked up by the rescan and played.
    std::fs::copy(
        crate::support::media_dir().join("01-cbr128.mp3"),
        lib.path().join("01-cbr128.mp3"),
    )
    .unwrap();
    server.wait_ready().await;
    let now: serde_json::Value = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        now["icestats"]["source"]["title"],
        "The Testers - Morning Drive"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_listener_streams_promptly() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let mut a = RawStream::get(server.addr, "/radio.mp3", "").await;
    let mut b = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    a.read(1000, Duration::from_secs(5)).await;
    let t = Instant::now();
    let addr = server.addr;
    let stopping = tokio::spawn(server.shutdown());
    let (ea, eb) = tokio::join!(
        a.read_to_end(Duration::from_secs(2)),
        b.read_to_end(Duration::from_secs(2))
    );
    assert!(
        ea.is_some() && eb.is_some(),
        "streams end when the server stops"
    );
    stopping.await.unwrap().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_lists_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"here\"\n[audio]\nchannels = 7\n[[mount]]\npath = \"nope\"\nbitrate = 129\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_onair"))
        .args(["--check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "server.listen",
        "audio.channels",
        "mount[0].path",
        "mount[0].bitrate",
    ] {
        assert!(err.contains(field), "{field} missing from:\n{err}");
    }

    let good = Command::new(env!("CARGO_BIN_EXE_onair"))
        .args(["--check-config", "--config"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/radio.toml"))
        .output()
        .unwrap();
    assert!(good.status.success());
}

/// A pod is often stopped while it starts (a rollout replaced at once): a SIGTERM that comes as
/// soon as the port takes connections is a clean stop, never the signal's default kill.
#[test]
fn a_sigterm_as_soon_as_the_port_answers_is_a_clean_stop() {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_onair"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("ONAIR_CONFIG", "config/radio.toml")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "never listened");
            std::thread::sleep(Duration::from_millis(1));
        }
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status}");
    }
}

#[test]
fn the_binary_logs_json_and_exits_0_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_onair"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ONAIR_CONFIG", "config/radio.toml")
        .env("RUST_LOG", "info")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
    }
    assert!(up, "onair did not start listening");
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        t.elapsed()
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "radio on air"));
    // Logs go through a queue: the last line still reaches stdout before the process exits.
    assert_eq!(lines.last().unwrap()["message"], "stopped");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
}

#[tokio::test]
async fn index_page_names_the_station_and_offers_a_player_per_mount() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/a.mp3\"\n[[mount]]\npath = \"/b.mp3\"\nbitrate = 64\n",
    ))
    .await;
    server.wait_ready().await;
    let r = reqwest::get(server.url("/")).await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(!page.contains("{{"), "every placeholder is filled");
    assert!(page.contains("Test Radio") && page.contains("The Testers - Morning Drive"));
    assert!(!page.contains("src=\"http"), "no external assets");
    server.shutdown().await.unwrap();
}

/// `/readyz` is public: it says why in generic words and keeps the storage's details (paths,
/// endpoints, buckets, keys, error text) for the log and the metrics.
#[tokio::test]
async fn readyz_names_no_internals_of_a_local_library() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("private-library-folder");
    let server = TestServer::start(config_for(&missing, "")).await;
    let why = crate::support::until(
        Duration::from_secs(10),
        "/readyz says the library is unavailable",
        || async {
            let r = reqwest::get(server.url("/readyz")).await.ok()?;
            assert_eq!(r.status(), 503);
            let why = r.text().await.ok()?;
            why.contains("library unavailable").then_some(why)
        },
    )
    .await;
    assert!(
        why.contains("library unavailable: playing silence"),
        "{why}"
    );
    for internal in ["private-library-folder", "/tmp", "No such file", "os error"] {
        assert!(!why.contains(internal), "{internal:?} in /readyz: {why}");
    }
    server.shutdown().await.unwrap();
}

/// The same with S3, through the binary as deployed: the answer names no endpoint, bucket or
/// key, while the log keeps them for the operator.
#[tokio::test]
async fn readyz_names_no_internals_of_s3_and_the_log_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("radio.toml");
    // Port 9 (discard) has no listener on loopback: every request is refused at once.
    std::fs::write(
        &config,
        format!(
            "[library]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"internal-bucket-name\"\nprefix = \"internal/keys/\"\ncache_dir = \"{}/cache\"\nmax_attempts = 1\nretry_after = \"1s\"\n[[mount]]\npath = \"/radio.mp3\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_onair"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", "test-key-id")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-key-4711")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Read as it comes, so a full pipe never holds the server up.
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let url = format!("http://127.0.0.1:{port}/readyz");
    let why = crate::support::until(
        Duration::from_secs(20),
        "/readyz says the library is unavailable",
        || async {
            let r = reqwest::get(&url).await.ok()?;
            let why = r.text().await.ok()?;
            why.contains("library unavailable").then_some(why)
        },
    )
    .await;
    for internal in [
        "127.0.0.1:9",
        "internal-bucket-name",
        "internal/keys",
        "connect",
    ] {
        assert!(!why.contains(internal), "{internal:?} in /readyz: {why}");
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let log = log.join().unwrap();
    assert!(
        log.contains("internal-bucket-name") && log.contains("cannot list the library"),
        "the details stay in the log:\n{log}"
    );
    assert!(!log.contains("test-secret-key-4711"), "{log}");
}

/// Answers built from the `Host` header (stream URLs) must not be shared by caches.
#[tokio::test]
async fn host_dependent_answers_are_not_stored() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(crate::support::admin_config_for(lib.path(), "")).await;
    let client = reqwest::Client::new();
    for path in [
        "/status-json.xsl",
        "/api/nowplaying",
        "/radio.mp3.m3u",
        "/radio.mp3.pls",
        "/radio.mp3.xspf",
        "/admin/stats",
    ] {
        let r = client
            .get(server.url(path))
            .basic_auth("admin", Some(crate::support::ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    server.shutdown().await.unwrap();
}
