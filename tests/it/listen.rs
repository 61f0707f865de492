//! Listening to mounts: headers, decoded audio, bitrates, burst, lag, limits.

use std::time::{Duration, Instant};

use crate::support::{RawStream, TestServer, config_for, decode, library_with};

const TWO_MOUNTS: &str = r#"
[[mount]]
path = "/radio.mp3"
bitrate = 128
burst = "2s"
[[mount]]
path = "/radio-low.mp3"
bitrate = 64
burst = "1s"
"#;

#[tokio::test]
async fn two_mounts_stream_valid_mp3_at_their_bitrates() {
    let lib = library_with(&["01-cbr128.mp3", "04-flac16.flac"]);
    let server = TestServer::start(config_for(lib.path(), TWO_MOUNTS)).await;
    server.wait_ready().await;

    let (mut hi, mut lo) = tokio::join!(
        RawStream::get(server.addr, "/radio.mp3", ""),
        RawStream::get(server.addr, "/radio-low.mp3", "")
    );
    assert_eq!(hi.status_line, "HTTP/1.0 200 OK");
    assert_eq!(hi.header("content-type"), Some("audio/mpeg"));
    assert_eq!(hi.header("icy-br"), Some("128"));
    assert_eq!(lo.header("icy-br"), Some("64"));
    assert_eq!(
        lo.header("ice-audio-info"),
        Some("channels=2;samplerate=44100;bitrate=64")
    );
    assert_eq!(
        hi.header("transfer-encoding"),
        None,
        "close-delimited, not chunked"
    );
    assert_eq!(hi.header("content-length"), None);
    assert_eq!(hi.header("icy-metaint"), None, "metadata only when asked");

    // 4 s of audio from each, read in parallel.
    let (a, b) = tokio::join!(
        hi.read(4 * 16_000, Duration::from_secs(15)),
        lo.read(4 * 8_000, Duration::from_secs(15))
    );
    for (bytes, kbps) in [(a, 128u32), (b, 64)] {
        let n = bytes.len();
        let d = decode::decode(bytes);
        assert_eq!(d.codec, "mp3");
        assert_eq!((d.sample_rate, d.channels), (44100, 2));
        assert_eq!(d.decode_errors, 0, "{kbps} kbps: no decode errors");
        let expected = n as f64 / (f64::from(kbps) * 125.0);
        assert!(
            (d.seconds() - expected).abs() < 0.1,
            "{kbps} kbps: {n} bytes should hold {expected:.2} s, decoded {:.2} s",
            d.seconds()
        );
        assert!(
            d.rms(0, d.frames as usize) > 0.001,
            "{kbps} kbps: not silence"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn burst_gives_a_new_listener_the_configured_seconds_at_once() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\nburst = \"3s\"\n",
    ))
    .await;
    server.wait_ready().await;
    // Let the ring fill past the burst.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut s = RawStream::get(server.addr, "/radio.mp3", "").await;
    let t = Instant::now();
    // 3 s at 128 kbps is 48000 bytes; the live edge adds at most ~0.3 s in the time we read.
    let burst = s.read(46_000, Duration::from_secs(1)).await;
    assert_eq!(
        burst.len(),
        46_000,
        "the burst arrives without waiting for real time"
    );
    assert!(t.elapsed() < Duration::from_millis(1500));
    // It starts on a frame boundary: an MPEG sync word comes first.
    assert_eq!(burst[0], 0xFF);
    assert_eq!(burst[1] & 0xE0, 0xE0);
    let d = decode::decode(burst);
    assert_eq!(d.decode_errors, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_listener_that_stops_reading_is_dropped_and_counted() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\nburst = \"0s\"\nqueue = \"1s\"\n",
    ))
    .await;
    server.wait_ready().await;

    // A socket with a tiny receive buffer that never reads: the server must let it go.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stalled
        .write_all(b"GET /radio.mp3 HTTP/1.0\r\nUser-Agent: stalled\r\n\r\n")
        .await
        .unwrap();

    let client = reqwest::Client::new();
    let mut dropped = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("onair_listener_disconnects_total{mount=\"/radio.mp3\",reason=\"lagged\"} 1")
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "stalled listener was not dropped as lagged");
    // The server closed it: after draining what was buffered, the socket reports EOF.
    let mut sink = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut sink)).await;
    assert!(n.is_ok(), "connection was closed by the server");

    // Meanwhile a normal listener is unaffected.
    let mut ok = RawStream::get(server.addr, "/radio.mp3", "").await;
    assert_eq!(ok.read(16_000, Duration::from_secs(5)).await.len(), 16_000);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn full_mount_answers_503_with_retry_after() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\nmax_listeners = 2\n",
    ))
    .await;
    server.wait_ready().await;
    let mut a = RawStream::get(server.addr, "/radio.mp3", "").await;
    let b = RawStream::get(server.addr, "/radio.mp3", "").await;
    assert!(a.status_line.ends_with("200 OK") && b.status_line.ends_with("200 OK"));
    let r = reqwest::get(server.url("/radio.mp3")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());

    // A place frees up when a listener leaves.
    drop(b);
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = RawStream::get(server.addr, "/radio.mp3", "").await;
        if c.status_line.ends_with("200 OK") {
            assert!(!c.read(1000, Duration::from_secs(5)).await.is_empty());
            admitted = true;
            break;
        }
    }
    assert!(admitted);
    assert!(!a.read(1000, Duration::from_secs(5)).await.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn head_options_range_and_unknown_paths() {
    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(lib.path(), "")).await;
    server.wait_ready().await;
    let client = reqwest::Client::new();

    let head = client.head(server.url("/radio.mp3")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "audio/mpeg");
    assert_eq!(head.headers()["icy-name"], "Test Radio");
    assert_eq!(head.headers()["icy-genre"], "Testing");
    assert_eq!(head.headers()["icy-url"], "https://test.example");
    assert_eq!(head.headers()["icy-pub"], "0");
    assert_eq!(head.headers()["access-control-allow-origin"], "*");
    assert_eq!(head.headers()["cache-control"], "no-cache, no-store");
    assert_eq!(head.headers()["expires"], "Mon, 26 Jul 1997 05:00:00 GMT");

    let pre = client
        .request(reqwest::Method::OPTIONS, server.url("/radio.mp3"))
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Headers", "icy-metadata")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success());
    let allow = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allow.contains("Icy-MetaData") && allow.contains("Range"));
    let expose = pre.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(expose.contains("Icy-MetaInt") && expose.contains("Icy-Name"));

    let probe = client
        .get(server.url("/radio.mp3"))
        .header("Range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 206);
    assert_eq!(probe.bytes().await.unwrap().len(), 2);

    assert_eq!(
        client
            .get(server.url("/nope.mp3"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .post(server.url("/radio.mp3"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    // HEAD and the probe are not listeners.
    let status: serde_json::Value = client
        .get(server.url("/status-json.xsl"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["icestats"]["source"]["listener_peak"], 0);
    server.shutdown().await.unwrap();
}
