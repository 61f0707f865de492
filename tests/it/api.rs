//! The now-playing API, its event stream, playlist files, listener counts and the access log.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    ADMIN_PASSWORD, RawStream, TestServer, admin_config_for, config_for, icy, library_with, until,
};

async fn nowplaying(server: &TestServer) -> serde_json::Value {
    reqwest::get(server.url("/api/nowplaying"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn nowplaying_status_and_the_stream_agree() {
    let lib = library_with(&["02-vbr48k-utf8.mp3", "04-flac16.flac"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[playlist]\norder = \"sequential\"\n[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = 2000\n",
    ))
    .await;
    server.wait_ready().await;
    let mut l = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    // The burst may reach back into the silence before the first track: take the last title.
    let heard = icy::split(&l.read(3 * 2001, Duration::from_secs(5)).await, 2000);
    let heard_title = &heard.titles.last().unwrap().title;
    let now = nowplaying(&server).await;
    let status: serde_json::Value = reqwest::get(server.url("/status-json.xsl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let title = "Zoë & Łukasz - Été à Paris — Café";
    assert_eq!(heard_title, title);
    assert_eq!(now["now_playing"]["title"], title);
    assert_eq!(status["icestats"]["source"]["title"], title);
    assert_eq!(now["now_playing"]["artist"], "Zoë & Łukasz");
    assert_eq!(now["now_playing"]["track_title"], "Été à Paris — Café");
    assert_eq!(now["now_playing"]["key"], "02-vbr48k-utf8.mp3");
    let duration = now["now_playing"]["duration"].as_f64().unwrap();
    assert!((duration - 18.0).abs() < 1.0, "{duration}");
    let elapsed = now["now_playing"]["elapsed"].as_f64().unwrap();
    assert!((0.0..duration).contains(&elapsed));
    assert!(
        now["now_playing"]["started_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(now["next"]["title"], "FLAC Five - Lossless Lounge");
    assert_eq!(now["station"]["name"], "Test Radio");
    assert_eq!(now["listeners"], 1);
    assert_eq!(now["mounts"][0]["listeners"], 1);
    assert_eq!(now["mounts"][0]["bitrate"], 128);
    assert_eq!(
        now["mounts"][0]["url"],
        format!("http://{}/radio.mp3", server.addr)
    );
    assert_eq!(now["history"].as_array().unwrap().len(), 0);
    server.shutdown().await.unwrap();
}

/// Reads server-sent events until one named `name` arrives; returns its data.
async fn next_event(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
    name: &str,
) -> serde_json::Value {
    let mut current = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        if let Some(n) = line.strip_prefix("event: ") {
            current = n.to_string();
        } else if let Some(data) = line.strip_prefix("data: ")
            && current == name
        {
            return serde_json::from_str(data).unwrap();
        }
    }
}

#[tokio::test]
async fn events_push_title_and_listener_changes() {
    let lib = library_with(&["01-cbr128.mp3", "03-mono22k.mp3"]);
    let server = TestServer::start(admin_config_for(
        lib.path(),
        "[playlist]\norder = \"sequential\"\n",
    ))
    .await;
    server.wait_ready().await;

    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"GET /api/events HTTP/1.1\r\nHost: radio.test\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    let first = next_event(&mut lines, "nowplaying").await;
    assert_eq!(first["now_playing"]["title"], "The Testers - Morning Drive");
    assert_eq!(first["mounts"][0]["url"], "http://radio.test/radio.mp3");

    let mut l = RawStream::get(server.addr, "/radio.mp3", "").await;
    l.read(100, Duration::from_secs(5)).await;
    let counts = next_event(&mut lines, "listeners").await;
    assert_eq!(counts["listeners"], 1);
    assert_eq!(counts["mounts"]["/radio.mp3"], 1);

    reqwest::Client::new()
        .get(server.url("/admin/next?mount=/radio.mp3"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    let changed = next_event(&mut lines, "nowplaying").await;
    assert_eq!(
        changed["now_playing"]["title"],
        "O'Brien - Don't Stop 'Til Dawn"
    );
    assert_eq!(
        changed["history"][0]["title"],
        "The Testers - Morning Drive"
    );

    drop(l);
    let counts = next_event(&mut lines, "listeners").await;
    assert_eq!(counts["listeners"], 0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn playlist_files_point_at_the_mount_with_the_host_used() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    let get = |ext: &'static str| {
        let url = server.url(&format!("/radio.mp3.{ext}"));
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("Host", "radio.example.org:8443")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            (ct, r.text().await.unwrap())
        }
    };
    let url = "http://radio.example.org:8443/radio.mp3";
    let (ct, m3u) = get("m3u").await;
    assert_eq!(ct, "audio/x-mpegurl");
    assert!(
        m3u.starts_with("#EXTM3U\n") && m3u.lines().any(|l| l == url),
        "{m3u}"
    );
    let (ct, pls) = get("pls").await;
    assert_eq!(ct, "audio/x-scpls");
    assert!(
        pls.contains(&format!("File1={url}")) && pls.contains("NumberOfEntries=1"),
        "{pls}"
    );
    let (_, xspf) = get("xspf").await;
    let doc = roxmltree::Document::parse(&xspf).unwrap();
    let loc = doc
        .descendants()
        .find(|n| n.has_tag_name("location"))
        .unwrap();
    assert_eq!(loc.text(), Some(url));
    assert_eq!(
        reqwest::get(server.url("/nope.mp3.m3u"))
            .await
            .unwrap()
            .status(),
        404
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn counts_and_peaks_are_exact_and_the_access_log_records_each_listener() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("access.log");
    let mut config = config_for(lib.path(), "");
    config.server.access_log = Some(log.clone());
    let server = TestServer::start(config).await;
    server.wait_ready().await;
    let mut ls = Vec::new();
    for i in 0..3 {
        let mut l = RawStream::get(
            server.addr,
            "/radio.mp3",
            &format!("User-Agent: Counter/{i}\r\n"),
        )
        .await;
        l.read(10, Duration::from_secs(5)).await;
        ls.push(l);
    }
    // Probes and HEAD requests are not listeners.
    let c = reqwest::Client::new();
    c.head(server.url("/radio.mp3")).send().await.unwrap();
    c.get(server.url("/radio.mp3"))
        .header("Range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    ls.pop();
    // A listener that leaves is noticed at its next write (within about a second), when the
    // socket reports the close.
    let now = until(
        Duration::from_secs(5),
        "the count back to 2 listeners",
        || async {
            let now = nowplaying(&server).await;
            (now["mounts"][0]["listeners"] == 2).then_some(now)
        },
    )
    .await;
    assert_eq!(now["mounts"][0]["listeners"], 2);
    assert_eq!(now["mounts"][0]["listener_peak"], 3);
    // The record reaches the file from the access-log writer thread, a moment later.
    let text = until(Duration::from_secs(5), "the access line", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (!text.is_empty()).then_some(text)
    })
    .await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
    assert!(
        lines[0].contains("\"GET /radio.mp3 HTTP/1.1\" 200 "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("\"Counter/2\""), "{}", lines[0]);
    let seconds: u64 = lines[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds <= 5, "seconds connected at the end: {}", lines[0]);
    server.shutdown().await.unwrap();
}
