//! Live shows: real source clients (ffmpeg by PUT and by SOURCE) go on air while a listener stays
//! connected, and the AutoDJ comes back when they leave; the byte-level cases of the source
//! protocol (logins, busy mount, probes, stalls) replayed over raw sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use onair::config::{Config, Secrets};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::raw::{self, Answer};
use crate::support::synth::{FRAME_S, Programme, Synth, present};
use crate::support::{RawStream, TestServer, config_with_library, decode, icy, require, until};

pub(crate) const PASSWORD: &str = "dj-secret-1";
/// The AutoDJ's tracks are tones in their own bands, far from the DJs' tones.
const AUTODJ_HZ: [f64; 3] = [440.0, 550.0, 660.0];
/// ffmpeg's `sine` source (1/8 of full scale) as the band meter reads it back, -22 dB, less
/// a margin for the MP3 codec's ripple.
const LIVE_DB: f64 = -25.0;
/// How far audio may trail its ICY title in the decoded stream: the encoder's frame and
/// look-ahead and the decoder's delay (20-110 ms, measured in the programme tests), and the
/// band meter's 40 ms window.
const CODEC_DELAY: f64 = 0.25;

pub(crate) fn library() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, hz) in AUTODJ_HZ.iter().enumerate() {
        Synth::new(44_100)
            .tone(*hz, 40.0, -20.0)
            .write_wav(&dir.path().join(format!("{i}-tone-{hz}.wav")));
    }
    dir
}

pub(crate) fn live_config(library: &Path, extra: &str, password: Option<&str>) -> Config {
    config_with_library(
        &format!("kind = \"local\"\npath = \"{}\"\n", library.display()),
        &format!("[playlist]\norder = \"sequential\"\n{extra}"),
        Secrets {
            admin_password: None,
            source_password: password.map(Into::into),
        },
    )
}

fn basic(credentials: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(credentials)
}

/// ffmpeg playing a `hz` tone for `seconds` to `url`, paced to real time; `extra` arguments
/// go before the output.
pub(crate) async fn ffmpeg_source(hz: u32, seconds: u32, extra: &[&str], url: &str) {
    let mut ffmpeg = std::process::Command::new("ffmpeg");
    ffmpeg
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("sine=frequency={hz}:sample_rate=44100"))
        .args(["-t", &seconds.to_string(), "-ac", "2", "-c:a", "libmp3lame"])
        .args(["-b:a", "128k"])
        .args(extra)
        .args(["-f", "mp3", url]);
    let status = tokio::task::spawn_blocking(move || ffmpeg.status())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg {extra:?} failed: {status}");
}

/// Where, in seconds of the listener's stream, each title began.
fn titles_at(split: &icy::Split) -> Vec<(f64, String)> {
    // 128 kbps CBR: the byte offset gives the time.
    split
        .titles
        .iter()
        .map(|t| (t.audio_offset as f64 / 16_000.0, t.title.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_goes_on_air_by_put_and_by_source_and_the_autodj_comes_back_each_time() {
    require("ffmpeg");
    let lib = library();
    // Small ICY blocks: titles land within 20 ms of their audio.
    let mount = "[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = 320\n";
    let server = TestServer::start(live_config(lib.path(), mount, Some(PASSWORD))).await;
    server.wait_ready().await;
    let mut listener = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let metaint: usize = listener.header("icy-metaint").unwrap().parse().unwrap();
    let reading = tokio::spawn(async move {
        let bytes = listener.read(2_000_000, Duration::from_secs(27)).await;
        (bytes, listener.read(1, Duration::from_secs(2)).await.len())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    let port = server.addr.port();
    let eof = "onair_live_fallbacks_total{reason=\"eof\"}";
    let mut back_after = Vec::new();
    for (n, (hz, extra)) in [(3150, vec![]), (2150, vec!["-legacy_icecast", "1"])]
        .into_iter()
        .enumerate()
    {
        let url = format!("icecast://source:{PASSWORD}@127.0.0.1:{port}/live");
        ffmpeg_source(hz, 6, &extra, &url).await;
        let left = Instant::now();
        until(
            Duration::from_secs(5),
            "the AutoDJ back after the show",
            || async { (server.metric(eof).await >= (n + 1) as f64).then_some(()) },
        )
        .await;
        back_after.push(left.elapsed());
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let takeover_sum = server.metric("onair_live_takeover_seconds_sum").await;
    let takeover_count = server.metric("onair_live_takeover_seconds_count").await;
    let (bytes, still_open) = reading.await.unwrap();
    assert_eq!(
        still_open, 1,
        "the listener's stream went on after the shows"
    );

    let split = icy::split(&bytes, metaint);
    let decoded = decode::decode(split.audio.clone());
    assert_eq!(decoded.decode_errors, 0, "the capture decodes cleanly");
    assert!(decoded.seconds() > 24.0, "{} s heard", decoded.seconds());
    let programme = Programme {
        rate: decoded.sample_rate,
        pcm: decoded.pcm,
    };
    let titles = titles_at(&split);
    let live: Vec<usize> = titles
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| t == "Live: DJ")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(live.len(), 2, "two shows in {titles:?}");
    for (show, (&i, hz)) in live.iter().zip([3150.0, 2150.0]).enumerate() {
        let (on, _) = titles[i];
        let (off, ref after) = *titles
            .get(i + 1)
            .unwrap_or_else(|| panic!("no title after show {show}: {titles:?}"));
        let (_, ref before) = titles[i - 1];
        assert_ne!(
            after, before,
            "a fresh track follows the show, not the interrupted one"
        );
        // The DJ's tone: from the switch (plus the AutoDJ's 1.5 s fade) to the end of the show.
        let band = programme.band(hz);
        let runs = present(&band, LIVE_DB, 1.0);
        assert!(
            runs.iter().any(|&(a, b)| a <= on + 0.2 && b >= off - 0.3),
            "show {show}: {hz} Hz from {on:.2} s to {off:.2} s, heard {runs:?}"
        );
        // The AutoDJ's tone fades out under the show within the fade, and nothing of the show
        // is left once the AutoDJ is back.
        let autodj_during: Vec<_> = AUTODJ_HZ
            .iter()
            .flat_map(|&f| present(&programme.band(f), -60.0, 0.05))
            .filter(|&(a, b)| b > on + 1.5 + CODEC_DELAY && a < off - CODEC_DELAY)
            .collect();
        assert!(
            autodj_during.is_empty(),
            "show {show}: AutoDJ heard under the show: {autodj_during:?}"
        );
        let after_show = ((off + CODEC_DELAY) / FRAME_S) as usize..((off + 2.0) / FRAME_S) as usize;
        assert!(
            band[after_show].iter().all(|&db| db < LIVE_DB - 30.0),
            "show {show}: the DJ's tone goes on after the AutoDJ came back"
        );
    }
    let gaps = programme.gaps(-50.0, 0.25);
    assert!(gaps.is_empty(), "silences in the capture: {gaps:?}");
    eprintln!(
        "live: connect to on air {:.2} s on average, AutoDJ back {back_after:?} after the source left",
        takeover_sum / takeover_count
    );
    // Connect to on air: the pre-roll (1 s) and the time ffmpeg takes to send it.
    assert_eq!(takeover_count, 2.0);
    assert!(
        takeover_sum / 2.0 < 2.0,
        "takeover {:.2} s on average",
        takeover_sum / 2.0
    );
    // The show's buffered audio (the pre-roll) plays out, then the AutoDJ.
    for d in &back_after {
        assert!(
            *d < Duration::from_millis(2000),
            "AutoDJ back {d:?} after the source left"
        );
    }
    server.shutdown().await.unwrap();
}

/// A source head for `/live` sending MP3, with `credentials` (`user:password`) if any.
fn source_head(method_line: &str, credentials: Option<&str>, extra: &str) -> String {
    let auth = credentials
        .map(|c| format!("Authorization: Basic {}\r\n", basic(c)))
        .unwrap_or_default();
    format!("{method_line}\r\nHost: test\r\n{auth}{extra}\r\n")
}

async fn send(addr: SocketAddr, head: &str) -> Answer {
    raw::exchange(addr, head.as_bytes(), Duration::from_secs(5)).await
}

/// A source that has logged in and sends an MP3 file at its bitrate, from `skip` bytes in (a
/// reconnect lands mid-frame), until `stall` says to pause.
struct PacedSource {
    stream: TcpStream,
    data: Vec<u8>,
    pos: usize,
}

impl PacedSource {
    /// Logs in with `head` and checks that the answer starts with `expect`.
    async fn connect(addr: SocketAddr, head: &str, skip: usize, expect: &str) -> PacedSource {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = raw::read_head(&mut stream, Duration::from_secs(5)).await;
        assert!(
            answer.bytes.starts_with(expect.as_bytes()),
            "{head:?} answered {}",
            String::from_utf8_lossy(&answer.bytes)
        );
        let data = std::fs::read(crate::support::media_dir().join("01-cbr128.mp3")).unwrap();
        PacedSource {
            stream,
            data,
            pos: skip,
        }
    }

    /// Sends `seconds` of audio at once, as a tool that buffers does.
    async fn burst(&mut self, seconds: f64) -> std::io::Result<()> {
        let n = (seconds * 16_000.0) as usize;
        let end = (self.pos + n).min(self.data.len());
        self.stream.write_all(&self.data[self.pos..end]).await?;
        self.pos = end;
        Ok(())
    }

    /// Sends `seconds` of audio in real time (128 kbps), looping the file.
    async fn play(&mut self, seconds: f64) -> std::io::Result<()> {
        let start = Instant::now();
        let mut sent = 0.0;
        while sent < seconds {
            let n = 1_600;
            if self.pos + n > self.data.len() {
                self.pos = 1_000;
            }
            self.stream
                .write_all(&self.data[self.pos..self.pos + n])
                .await?;
            self.pos += n;
            sent += 0.1;
            let due = start + Duration::from_secs_f64(sent);
            tokio::time::sleep_until(due.into()).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_protocol_is_answered_as_source_clients_expect() {
    let lib = library();
    // Live input off: no source password, no accounts.
    let closed = TestServer::start(live_config(lib.path(), "", None)).await;
    let put = "PUT /live HTTP/1.1";
    let a = send(
        closed.addr,
        &source_head(put, Some("source:x"), "Content-Type: audio/mpeg\r\n"),
    )
    .await;
    assert_eq!(
        a.status(),
        Some(403),
        "{}",
        String::from_utf8_lossy(&a.bytes)
    );
    closed.shutdown().await.unwrap();

    let extra = "[live]\npreroll = \"0.3s\"\nunderrun_grace = \"1s\"\nsource_timeout = \"3s\"\n";
    let server = TestServer::start(live_config(lib.path(), extra, Some(PASSWORD))).await;
    server.wait_ready().await;
    let addr = server.addr;
    let mpeg = "Content-Type: audio/mpeg\r\n";
    let right = format!("source:{PASSWORD}");

    // libshout's probes: OPTIONS (with and without a TLS upgrade) and !POKE.
    let a = send(addr, "OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(a.status(), Some(204));
    assert!(a.header("allow").unwrap().contains("PUT"));
    let a = send(
        addr,
        "OPTIONS * HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: TLS/1.0, HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(a.status(), Some(400));
    let a = send(addr, "GET /admin/!POKE HTTP/1.0\r\n\r\n").await;
    assert_eq!(a.status(), Some(400));
    // No credentials (libshout's first try), then wrong ones: 401 with Icecast's realm.
    for creds in [None, Some("source:wrong")] {
        let a = send(addr, &source_head(put, creds, mpeg)).await;
        assert_eq!(a.status(), Some(401), "{creds:?}");
        assert_eq!(
            a.header("www-authenticate").as_deref(),
            Some("Basic realm=\"Icecast2 Server\"")
        );
        assert!(a.header("allow").unwrap().contains("SOURCE"));
    }
    // A PUT must say what it sends, and what it sends must be audio onair decodes.
    let a = send(addr, &source_head(put, Some(&right), "")).await;
    assert_eq!(a.status(), Some(400));
    let a = send(
        addr,
        &source_head(put, Some(&right), "Content-Type: video/mp4\r\n"),
    )
    .await;
    assert_eq!(a.status(), Some(415));
    assert_eq!(
        server
            .metric("onair_live_connects_total{result=\"type\"}")
            .await,
        2.0
    );

    // Ogg without its header pages (a tool that reconnects mid-stream): it cannot decode, so
    // it is closed within the Ogg probe time, counted, and nothing of it goes on air.
    let ogg = std::fs::read(crate::support::media_dir().join("06-vorbis.ogg")).unwrap();
    let pages: Vec<usize> = (0..ogg.len() - 4)
        .filter(|&i| &ogg[i..i + 4] == b"OggS")
        .collect();
    let mut headless = TcpStream::connect(addr).await.unwrap();
    let head = source_head(
        "SOURCE /live HTTP/1.0",
        Some(&right),
        "Content-Type: application/ogg\r\n",
    );
    headless.write_all(head.as_bytes()).await.unwrap();
    let answer = raw::read_head(&mut headless, Duration::from_secs(5)).await;
    assert_eq!(answer.status(), Some(200));
    // Audio pages only, sent faster than real time: far more than the probe needs.
    let _ = headless.write_all(&ogg[pages[3]..]).await;
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        let mut buf = [0u8; 256];
        loop {
            match tokio::io::AsyncReadExt::read(&mut headless, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a headless Ogg stream is closed");
    assert_eq!(
        server
            .metric("onair_live_connects_total{result=\"probe\"}")
            .await,
        1.0
    );
    assert_eq!(server.metric("onair_live_connected").await, 0.0);

    // darkice's shape: SOURCE, LF-only lines, ICE/1.0, no type (MP3), audio from mid-frame.
    let head = format!(
        "SOURCE /radio.mp3 ICE/1.0\nAuthorization: Basic {}\nice-name: Night Shift\n\
         ice-genre: Deep House\nice-url: http://night.example/\n\n",
        basic(&right)
    );
    let mut dj = PacedSource::connect(addr, &head, 1_001, "HTTP/1.0 200 OK\r\n").await;
    dj.play(1.5).await.unwrap();
    until(Duration::from_secs(3), "the show on air", || async {
        let (_, text) = crate::support::get_text(server.url("/status-json.xsl")).await;
        text.contains("Live: Night Shift").then_some(())
    })
    .await;
    // Another source while the show sends: busy.
    let a = send(addr, &source_head(put, Some(&right), mpeg)).await;
    assert_eq!(a.status(), Some(403));
    assert!(String::from_utf8_lossy(&a.bytes).contains("Mountpoint in use"));
    let (_, now) = crate::support::get_text(server.url("/api/nowplaying")).await;
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["live"]["is_live"], true, "{now}");
    assert_eq!(now["live"]["streamer"], "Night Shift");
    // The status shows what the DJ's tool sent, as Icecast does for the mount a source feeds.
    let (_, text) = crate::support::get_text(server.url("/status-json.xsl")).await;
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    let source = &status["icestats"]["source"];
    assert_eq!(source["server_name"], "Night Shift", "{status}");
    assert_eq!(source["genre"], "Deep House");
    assert_eq!(source["server_url"], "http://night.example/");

    // The DJ's tool sets titles with its source credentials, Icecast's way and Shoutcast's; a
    // title goes on air with the audio sent after it, not ahead of the buffered audio.
    let get = |target: &str, credentials: Option<&str>| {
        let auth = credentials
            .map(|c| format!("Authorization: Basic {}\r\n", basic(c)))
            .unwrap_or_default();
        format!("GET {target} HTTP/1.0\r\nHost: test\r\n{auth}\r\n")
    };
    let status_title = || async {
        let (_, text) = crate::support::get_text(server.url("/status-json.xsl")).await;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["icestats"]["source"]["title"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    // libshout asks without credentials first, and sends them only after a 401: the admin
    // interface being off (no admin password here) must not close that door.
    let anonymous = send(
        addr,
        &get("/admin/metadata?mode=updinfo&mount=/live&song=x", None),
    )
    .await;
    assert_eq!(anonymous.status(), Some(401));
    assert_eq!(
        anonymous.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Icecast2 Server\"")
    );
    for (target, credentials, title) in [
        (
            "/admin/metadata?mode=updinfo&mount=/live&song=Artist+-+First",
            Some(right.as_str()),
            "Artist - First",
        ),
        (
            &*format!(
                "/admin/metadata?mode=updinfo&mount=%2flive&pass={PASSWORD}&charset=UTF-8&artist=Zo%C3%AB&title=Second"
            ),
            None,
            "Zoë - Second",
        ),
        (
            &*format!("/admin.cgi?pass={PASSWORD}&mode=updinfo&song=Caf%E9+Third"),
            None,
            "Café Third",
        ),
    ] {
        // The DJ keeps sending meanwhile: the pre-roll's worth of audio is always buffered.
        let playing = tokio::spawn(async move {
            dj.play(1.2).await.unwrap();
            dj
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let a = send(addr, &get(target, credentials)).await;
        assert_eq!(
            a.status(),
            Some(200),
            "{target}: {}",
            String::from_utf8_lossy(&a.bytes)
        );
        assert!(String::from_utf8_lossy(&a.bytes).contains("<return>1</return>"));
        assert_ne!(
            status_title().await,
            title,
            "{target}: on air ahead of its audio"
        );
        dj = playing.await.unwrap();
        assert_eq!(status_title().await, title, "{target}");
    }
    let wrong = get("/admin.cgi?pass=nope&mode=updinfo&song=X", None);
    assert_eq!(send(addr, &wrong).await.status(), Some(401));
    dj.play(0.3).await.unwrap();
    assert_eq!(
        server
            .metric("onair_live_metadata_updates_total{via=\"admin\"}")
            .await,
        2.0
    );
    assert_eq!(
        server
            .metric("onair_live_metadata_updates_total{via=\"admincgi\"}")
            .await,
        1.0
    );
    // A 0.5 s stall is within the grace: the show stays on air.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dj.play(1.0).await.unwrap();
    let underrun = "onair_live_fallbacks_total{reason=\"underrun\"}";
    assert_eq!(server.metric(underrun).await, 0.0);
    // A longer stall: the AutoDJ comes back after the grace, and the source is dropped after
    // source_timeout.
    until(
        Duration::from_secs(4),
        "fallback after the grace",
        || async { (server.metric(underrun).await == 1.0).then_some(()) },
    )
    .await;
    until(
        Duration::from_secs(5),
        "the silent source dropped",
        || async {
            (server
                .metric("onair_live_fallbacks_total{reason=\"timeout\"}")
                .await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    // The session leaves the desk just after counting its timeout.
    until(Duration::from_secs(2), "the desk free", || async {
        (server.metric("onair_live_connected").await == 0.0).then_some(())
    })
    .await;

    // The same DJ reconnecting while their dead session still holds the desk replaces it.
    let head = source_head(put, Some(&right), mpeg);
    let mut first = PacedSource::connect(addr, &head, 0, "HTTP/1.0 200 OK\r\n").await;
    first.play(1.0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let head = source_head(
        put,
        Some(&right),
        &format!("Expect: 100-continue\r\n{mpeg}"),
    );
    let mut second = PacedSource::connect(addr, &head, 0, "HTTP/1.1 100 Continue\r\n").await;
    second.play(1.0).await.unwrap();
    assert_eq!(server.metric("onair_live_connected").await, 1.0);
    drop((first, second));
    until(Duration::from_secs(5), "the desk free again", || async {
        (server.metric("onair_live_connected").await == 0.0).then_some(())
    })
    .await;

    // A tool that sends its start in one burst and then nothing for longer than the probe's
    // 2 s has probed all the same: it is not closed as "no audio".
    let probe_refusals = "onair_live_connects_total{result=\"probe\"}";
    let refused_before = server.metric(probe_refusals).await;
    let mut bursty = PacedSource::connect(addr, &head, 0, "HTTP/1.1 100 Continue\r\n").await;
    bursty.burst(1.5).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    bursty.play(0.5).await.unwrap();
    assert_eq!(server.metric("onair_live_connected").await, 1.0);
    assert_eq!(server.metric(probe_refusals).await, refused_before);
    drop(bursty);

    // Five wrong passwords in a minute: the address waits, even with the right one.
    for _ in 0..5 {
        send(addr, &source_head(put, Some("source:guess"), mpeg)).await;
    }
    let a = send(addr, &source_head(put, Some(&right), mpeg)).await;
    assert_eq!(a.status(), Some(429));
    assert!(a.header("retry-after").is_some());
    server.shutdown().await.unwrap();
}

/// A listening socket on 127.0.0.1 whose next port is free too: Shoutcast clients connect to
/// the port they are given plus one.
fn listener_with_free_next_port() -> (tokio::net::TcpListener, u16) {
    loop {
        let listener = onair::http::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return (listener, port + 1);
        }
    }
}

/// Starts a DJ tool, its output to nowhere (`input` on its stdin).
fn start_tool(program: &str, args: &[String], input: Option<&Path>) -> std::process::Child {
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(file) = input {
        command.stdin(std::fs::File::open(file).unwrap());
    }
    command.spawn().unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Stops a DJ tool as a DJ closing it would (SIGINT), and waits for it.
async fn stop_tool(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libshout_liquidsoap_and_ffmpeg_go_on_air_in_every_protocol_and_format() {
    for tool in ["ffmpeg", "shout", "liquidsoap"] {
        require(tool);
    }
    let lib = library();
    let (main, icy_port) = listener_with_free_next_port();
    let extra = format!(
        "[live]\nicy_port = {icy_port}\n[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = 320\n"
    );
    let config = live_config(lib.path(), &extra, Some(PASSWORD));
    let server = TestServer::start_on(config, main, onair::Options::default()).await;
    server.wait_ready().await;
    let port = server.addr.port();
    // An MP3 for libshout, which sends a file at its bitrate.
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.mp3");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .args([
            "sine=frequency=3150:sample_rate=44100",
            "-t",
            "30",
            "-ac",
            "2",
        ])
        .args(["-c:a", "libmp3lame", "-b:a", "128k"])
        .arg(&tone)
        .status()
        .unwrap();
    assert!(made.success());
    // A chained Ogg Vorbis stream, as ices2 and ezstream send a playlist: two songs, two titles.
    let chained = dir.path().join("chained.ogg");
    let mut chain = Vec::new();
    for song in ["Tone A", "Tone B"] {
        let part = dir.path().join(format!("{song}.ogg"));
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .args([
                "sine=frequency=3150:sample_rate=44100",
                "-t",
                "3",
                "-ac",
                "2",
            ])
            .args(["-c:a", "libvorbis", "-metadata", &format!("title={song}")])
            .args(["-metadata", "artist=The Band"])
            .arg(&part)
            .status()
            .unwrap();
        assert!(made.success());
        chain.extend(std::fs::read(&part).unwrap());
    }
    std::fs::write(&chained, chain).unwrap();

    let mut listener = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let done = Arc::new(tokio::sync::Notify::new());
    let reading = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            let mut bytes = Vec::new();
            loop {
                tokio::select! {
                    _ = done.notified() => break,
                    chunk = listener.read(16_000, Duration::from_secs(2)) => {
                        if chunk.is_empty() {
                            break;
                        }
                        bytes.extend(chunk);
                    }
                }
            }
            (bytes, listener.read(1, Duration::from_secs(2)).await.len())
        }
    });
    let shout = |proto: &[&str]| {
        let mut args: Vec<String> = ["--usage", "audio", "--format", "mp3", "-H", "127.0.0.1"]
            .map(String::from)
            .to_vec();
        args.extend([
            "-P".into(),
            port.to_string(),
            "--mount".into(),
            "/live".into(),
        ]);
        args.extend(["--user", "source", "--pass", PASSWORD].map(String::from));
        args.extend(proto.iter().map(|s| s.to_string()));
        args
    };
    let shout_ogg: Vec<String> = shout(&[])
        .into_iter()
        .map(|a| if a == "mp3" { "ogg".into() } else { a })
        .collect();
    let ffmpeg = |codec: &[&str]| {
        let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi"]
            .map(String::from)
            .to_vec();
        args.extend(["-i", "sine=frequency=3150:sample_rate=48000", "-ac", "2"].map(String::from));
        args.extend(codec.iter().map(|s| s.to_string()));
        args.push(format!("icecast://source:{PASSWORD}@127.0.0.1:{port}/live"));
        args
    };
    let liquidsoap = |options: &str| {
        vec![format!(
            "settings.init.allow_root.set(true) \
             output.icecast(%mp3(bitrate=128), host=\"127.0.0.1\", port={port}, user=\"source\", \
             password=\"{PASSWORD}\", mount=\"live\", {options} sine(3150.))"
        )]
    };
    let clients: Vec<(&str, &str, Vec<String>, Option<&Path>)> = vec![
        // libshout probes with OPTIONS and an unauthenticated PUT first, then logs in.
        ("libshout, HTTP", "shout", shout(&[]), Some(&tone)),
        (
            "libshout, ICY",
            "shout",
            shout(&["--proto", "icy"]),
            Some(&tone),
        ),
        ("libshout, Ogg chain", "shout", shout_ogg, Some(&chained)),
        (
            "ffmpeg, Ogg Vorbis",
            "ffmpeg",
            ffmpeg(&[
                "-c:a",
                "libvorbis",
                "-content_type",
                "audio/ogg",
                "-f",
                "ogg",
            ]),
            None,
        ),
        (
            "ffmpeg, ADTS AAC",
            "ffmpeg",
            ffmpeg(&[
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-content_type",
                "audio/aac",
                "-f",
                "adts",
            ]),
            None,
        ),
        (
            "Liquidsoap, SOURCE",
            "liquidsoap",
            liquidsoap("method=\"source\","),
            None,
        ),
        (
            "Liquidsoap, PUT",
            "liquidsoap",
            liquidsoap("method=\"put\","),
            None,
        ),
        (
            "Liquidsoap, ICY",
            "liquidsoap",
            liquidsoap("protocol=\"icy\","),
            None,
        ),
    ];
    let eof = "onair_live_fallbacks_total{reason=\"eof\"}";
    for (n, (name, program, args, input)) in clients.into_iter().enumerate() {
        let tool = start_tool(program, &args, input);
        // Liquidsoap takes seconds to start on a busy machine: the show is timed from on air.
        until(
            Duration::from_secs(20),
            &format!("{name}: on air"),
            || async {
                let on = server.metric("onair_live_takeover_seconds_count").await;
                (on >= (n + 1) as f64).then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop_tool(tool).await;
        until(
            Duration::from_secs(4),
            &format!("{name}: AutoDJ back"),
            || async { (server.metric(eof).await >= (n + 1) as f64).then_some(()) },
        )
        .await;
        assert_eq!(server.metric("onair_live_connected").await, 0.0, "{name}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    done.notify_one();
    assert_eq!(
        server
            .metric("onair_live_connects_total{result=\"auth\"}")
            .await,
        0.0
    );
    let (bytes, still_open) = reading.await.unwrap();
    assert_eq!(
        still_open, 1,
        "the listener's stream went on through every show"
    );
    let split = icy::split(&bytes, 320);
    let shows = split
        .titles
        .iter()
        .filter(|t| t.title.starts_with("Live: "))
        .count();
    assert_eq!(shows, 7, "{:?}", split.titles);
    let decoded = decode::decode(split.audio);
    assert_eq!(decoded.decode_errors, 0);
    let programme = Programme {
        rate: decoded.sample_rate,
        pcm: decoded.pcm,
    };
    let gaps = programme.gaps(-50.0, 0.25);
    assert!(gaps.is_empty(), "silences in the capture: {gaps:?}");
    server.shutdown().await.unwrap();
}

/// ezstream (libshout) plays a playlist of two tagged MP3s to `/live` and sends each file's
/// title through `/admin/metadata` with the source's own credentials, as libshout does: the
/// listener hears the show under those titles, in order, then the AutoDJ again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ezstream_plays_a_playlist_with_its_titles_through_admin_metadata() {
    for tool in ["ffmpeg", "ezstream"] {
        require(tool);
    }
    let lib = library();
    let extra = "[[mount]]\npath = \"/radio.mp3\"\nicy_metaint = 320\n";
    let server = TestServer::start(live_config(lib.path(), extra, Some(PASSWORD))).await;
    server.wait_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let mut playlist = String::new();
    for (song, hz) in [("Tone A", 3150), ("Tone B", 2500)] {
        let file = dir.path().join(format!("{song}.mp3"));
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!("sine=frequency={hz}:sample_rate=44100"))
            .args(["-t", "4", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"])
            .args(["-metadata", &format!("title={song}")])
            .args(["-metadata", "artist=The Band"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        playlist.push_str(&format!("{}\n", file.display()));
    }
    std::fs::write(dir.path().join("playlist.m3u"), playlist).unwrap();
    let config = dir.path().join("ezstream.xml");
    std::fs::write(
        &config,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server>
    <protocol>HTTP</protocol><hostname>127.0.0.1</hostname><port>{port}</port>
    <user>source</user><password>{PASSWORD}</password><tls>None</tls>
  </server></servers>
  <streams><stream>
    <mountpoint>/live</mountpoint><format>MP3</format>
    <stream_name>Playlist Show</stream_name>
  </stream></streams>
  <intakes><intake>
    <type>playlist</type><filename>{playlist}</filename><stream_once>Yes</stream_once>
  </intake></intakes>
  <metadata><format_str>@a@ - @t@</format_str></metadata>
</ezstream>
"#,
            port = server.addr.port(),
            playlist = dir.path().join("playlist.m3u").display()
        ),
    )
    .unwrap();
    // ezstream refuses a configuration others can read: it holds the password.
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let mut listener = RawStream::get(server.addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
    let reading = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut after_show = None;
        while Instant::now() < deadline {
            let chunk = listener.read(16_000, Duration::from_secs(2)).await;
            if chunk.is_empty() {
                break;
            }
            bytes.extend(chunk);
            let split = icy::split(&bytes, 320);
            let back = split
                .titles
                .iter()
                .rev()
                .take_while(|t| !t.title.contains("Tone"))
                .count();
            let show_seen = split.titles.iter().any(|t| t.title.ends_with("Tone B"));
            // Two seconds of the AutoDJ after the show, then stop.
            if show_seen && back > 0 && after_show.is_none() {
                after_show = Some(Instant::now());
            }
            if after_show.is_some_and(|at| at.elapsed() > Duration::from_secs(2)) {
                break;
            }
        }
        (bytes, listener.read(1, Duration::from_secs(2)).await.len())
    });
    let ezstream = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            std::process::Command::new("ezstream")
                .arg("-c")
                .arg(&config)
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(30), ezstream)
        .await
        .expect("ezstream plays 8 s of playlist and exits")
        .unwrap();
    assert!(
        out.status.success(),
        "ezstream: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (bytes, still_open) = reading.await.unwrap();
    assert_eq!(
        still_open, 1,
        "the listener's stream went on after the show"
    );

    let split = icy::split(&bytes, 320);
    let titles: Vec<&str> = split.titles.iter().map(|t| t.title.as_str()).collect();
    let a = titles.iter().position(|t| *t == "The Band - Tone A");
    let b = titles.iter().position(|t| *t == "The Band - Tone B");
    assert!(
        a.is_some() && b > a,
        "the playlist's titles, in order: {titles:?}"
    );
    let last = titles.last().copied().unwrap_or_default();
    assert!(
        !last.contains("Tone"),
        "the AutoDJ's title after the show: {titles:?}"
    );
    assert!(
        server
            .metric("onair_live_metadata_updates_total{via=\"admin\"}")
            .await
            >= 2.0
    );
    assert_eq!(
        server
            .metric("onair_live_connects_total{result=\"ok\"}")
            .await,
        1.0
    );
    // What the listener heard under each title is that song's tone.
    let decoded = decode::decode(split.audio.clone());
    assert_eq!(decoded.decode_errors, 0);
    let programme = Programme {
        rate: decoded.sample_rate,
        pcm: decoded.pcm,
    };
    let at = titles_at(&split);
    let start_of = |name: &str| at.iter().find(|(_, t)| t == name).map(|(s, _)| *s).unwrap();
    let (a_at, b_at) = (start_of("The Band - Tone A"), start_of("The Band - Tone B"));
    // A title sent beside the stream goes on air after the audio received before it; audio the
    // tool had written before it but was still in transit (its send buffer, the socket) trails
    // the title by a few hundred milliseconds (0.3 s seen in CI; the codec's delay included).
    const IN_FLIGHT: f64 = 0.5;
    for (from, to, hz) in [(a_at, b_at, 3150.0), (b_at, b_at + 3.0, 2500.0)] {
        let runs = present(&programme.band(hz), LIVE_DB, 1.0);
        assert!(
            runs.iter()
                .any(|&(on, off)| on <= from + IN_FLIGHT && off >= to - IN_FLIGHT),
            "{hz} Hz under its title from {from:.2} s to {to:.2} s, heard {runs:?}"
        );
    }
    let gaps = programme.gaps(-50.0, 0.25);
    assert!(gaps.is_empty(), "silences in the capture: {gaps:?}");
    server.shutdown().await.unwrap();
}
