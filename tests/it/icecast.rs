//! The listener head against the real thing: Debian's icecast2 is started on 127.0.0.1 with the
//! same station, fed by ffmpeg, and its answers for the same mount are compared with onair's
//! line by line: names, order, case and values, with only the values that must differ masked.
//!
//! Nothing is installed here. The test command installs `icecast2` and `ffmpeg`; when either is
//! missing the test fails, unless `ONAIR_SKIP_ICECAST=1` asks to skip it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestServer, config_for, library_with, media_dir, require};

/// The station every test config uses (`support::config_with_library`); Icecast gets the same
/// through the source's `ice-*` headers, as it would from any source client.
const NAME: &str = "Test Radio";
const DESCRIPTION: &str = "Tests";
const GENRE: &str = "Testing";
const URL: &str = "https://test.example";
const SOURCE_PASSWORD: &str = "source-pw-0123";
/// onair's CORS values. Icecast is told to send the same ones (as an operator would, with
/// `<http-headers>`), so the comparison checks where and how they are written.
const ALLOW_HEADERS: &str = "Origin, Accept, Content-Type, Icy-MetaData, Range";
const EXPOSE_HEADERS: &str =
    "Icy-MetaInt, Icy-Br, Icy-Description, Icy-Genre, Icy-Name, Icy-Pub, Icy-Url, Ice-Audio-Info";
const AUDIO_INFO: &str = "channels=2;samplerate=44100;bitrate=128";

/// A child process that is killed (by its own handle) when the test ends, pass or fail.
struct Running {
    child: Child,
    what: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Fails the test, with what the process logged, if it has already ended.
    fn assert_alive(&mut self, logs: &[&Path]) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let logged: Vec<String> = logs
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .collect();
            panic!("{} exited ({status}):\n{}", self.what, logged.join("\n"));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Icecast 2.4 refuses to run as root unless told which user to become; test machines and CI
/// containers often are root, so then it drops to `nobody` (and its log folder must let that
/// user write).
fn security_section(dir: &Path) -> String {
    if effective_uid() != Some(0) {
        return String::new();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    "<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group></changeowner></security>".into()
}

/// Starts icecast2 on `port` with one mount, `/radio.mp3`, limited to one listener.
fn start_icecast(dir: &Path, port: u16) -> Running {
    let security = security_section(dir);
    let config = format!(
        r#"<icecast>
  <location>Earth</location>
  <admin>icemaster@localhost</admin>
  <hostname>127.0.0.1</hostname>
  <limits><clients>20</clients><sources>2</sources><header-timeout>5</header-timeout></limits>
  <authentication>
    <source-password>{SOURCE_PASSWORD}</source-password>
    <admin-user>admin</admin-user><admin-password>admin-pw-0123</admin-password>
  </authentication>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <http-headers><header name="Access-Control-Allow-Origin" value="*" /></http-headers>
  <mount type="normal">
    <mount-name>/radio.mp3</mount-name>
    <max-listeners>1</max-listeners>
    <http-headers>
      <header name="Access-Control-Allow-Headers" value="{ALLOW_HEADERS}" />
      <header name="Access-Control-Expose-Headers" value="{EXPOSE_HEADERS}" />
    </http-headers>
  </mount>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>{logdir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  {security}
</icecast>
"#,
        logdir = dir.display()
    );
    let file = dir.join("icecast.xml");
    std::fs::write(&file, config).unwrap();
    let out = std::fs::File::create(dir.join("icecast.out")).unwrap();
    let child = Command::new("icecast2")
        .arg("-c")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start icecast2");
    Running {
        child,
        what: "icecast2",
    }
}

/// Feeds Icecast's `/radio.mp3` with a fixture, in real time and looped, as a source client
/// would.
fn start_source(dir: &Path, port: u16) -> Running {
    let log = std::fs::File::create(dir.join("ffmpeg.log")).unwrap();
    // ffmpeg's icecast protocol has no option for `ice-audio-info`, which libshout sources
    // (butt, Mixxx, Liquidsoap) send and which is where Icecast's `icy-br` comes from. ffmpeg
    // writes each `ice_*` value into its request head as given, so the header rides in after the
    // genre; Icecast then derives both lines itself.
    let genre = format!("{GENRE}\r\nice-audio-info: {AUDIO_INFO}");
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(media_dir().join("01-cbr128.mp3"))
        .args([
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "mp3",
            "-id3v2_version",
            "0",
        ])
        .args(["-content_type", "audio/mpeg"])
        .args(["-ice_name", NAME, "-ice_description", DESCRIPTION])
        .args(["-ice_genre", &genre, "-ice_url", URL, "-ice_public", "0"])
        .arg(format!(
            "icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{port}/radio.mp3"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ffmpeg");
    Running {
        child,
        what: "ffmpeg",
    }
}

/// Sends `request` and returns the response head as lines (status line first, without the
/// blank line that ends it), and the connection, still open.
async fn head_of(port: u16, request: &str) -> (Vec<String>, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            buf.push(byte[0]);
        }
    })
    .await;
    assert!(read.is_ok(), "no response head to {request:?}");
    let text = String::from_utf8_lossy(&buf);
    let lines = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .map(str::to_owned)
        .collect();
    (lines, s)
}

fn get(port: u16, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: onair-tests/1.0\r\n{extra}\r\n"
    )
}

/// The `200` head of `/radio.mp3`, waiting while the one listener slot is still held by the
/// previous connection (each server notices a closed listener at its next write).
async fn stream_head(port: u16, extra: &str) -> (Vec<String>, TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (lines, s) = head_of(port, &get(port, "/radio.mp3", extra)).await;
        if lines[0].ends_with(" 200 OK") || Instant::now() > deadline {
            return (lines, s);
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Masks the values two servers must not share:
/// - `Server`: each names itself (`Icecast 2.4.4`, `onair/x.y.z`);
/// - `Date`: each server's clock at the moment it answered.
///
/// Nothing else is masked here; the few differences particular to one answer are handled, with
/// their reasons, where that answer is compared.
fn masked(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l.split_once(": ") {
            Some((name @ ("Server" | "Date"), _)) => format!("{name}: <masked>"),
            _ => l.clone(),
        })
        .collect()
}

/// Removes `line` from `lines`, failing if it is not there.
fn take(lines: &mut Vec<String>, line: &str, why: &str) {
    let i = lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} missing ({why}) from {lines:#?}"));
    lines.remove(i);
}

#[track_caller]
fn assert_same(what: &str, icecast: &[String], onair: &[String]) {
    let (i, o) = (masked(icecast), masked(onair));
    if i != o {
        let width = i.iter().map(String::len).max().unwrap_or(0);
        let rows: Vec<String> = (0..i.len().max(o.len()))
            .map(|n| {
                let a = i.get(n).map_or("", String::as_str);
                let b = o.get(n).map_or("", String::as_str);
                let mark = if a == b { ' ' } else { '≠' };
                format!("{mark} {a:width$} | {b}")
            })
            .collect();
        panic!(
            "{what}: the heads differ (Icecast | onair)\n{}",
            rows.join("\n")
        );
    }
}

/// What each server answers for the same mount, in the same order.
struct Answers {
    with_metadata: Vec<String>,
    plain: Vec<String>,
    full: Vec<String>,
    not_found: Vec<String>,
}

async fn answers(port: u16) -> Answers {
    let (with_metadata, first) = stream_head(port, "Icy-MetaData: 1\r\n").await;
    drop(first);
    let (plain, held) = stream_head(port, "").await;
    // The one listener slot is taken: the next listener is refused.
    let (full, refused) = head_of(port, &get(port, "/radio.mp3", "")).await;
    drop(refused);
    drop(held);
    let (not_found, _) = head_of(port, &get(port, "/nope.mp3", "")).await;
    Answers {
        with_metadata,
        plain,
        full,
        not_found,
    }
}

#[tokio::test]
async fn listener_heads_match_icecast_line_by_line() {
    if std::env::var("ONAIR_SKIP_ICECAST").as_deref() == Ok("1") {
        eprintln!("SKIPPED: ONAIR_SKIP_ICECAST=1");
        return;
    }
    require("icecast2");
    require("ffmpeg");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut icecast = start_icecast(dir.path(), port);
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        icecast.assert_alive(&[
            &dir.path().join("icecast.out"),
            &dir.path().join("error.log"),
        ]);
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "icecast2 never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut source = start_source(dir.path(), port);
    let fed = Instant::now();
    loop {
        let (lines, _) = head_of(port, &get(port, "/radio.mp3", "")).await;
        if lines[0].ends_with(" 200 OK") {
            break;
        }
        source.assert_alive(&[&dir.path().join("ffmpeg.log")]);
        assert!(
            fed.elapsed() < Duration::from_secs(15),
            "the mount never came up: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ice = answers(port).await;

    let lib = library_with(&["01-cbr128.mp3"]);
    let server = TestServer::start(config_for(
        lib.path(),
        "[[mount]]\npath = \"/radio.mp3\"\nmax_listeners = 1\n",
    ))
    .await;
    server.wait_ready().await;
    let onair_port = server.addr.port();
    let ours = answers(onair_port).await;

    eprintln!(
        "Icecast, Icy-MetaData: 1:\n{}\n\nonair, Icy-MetaData: 1:\n{}\n",
        ice.with_metadata.join("\n"),
        ours.with_metadata.join("\n")
    );
    // ffmpeg's HTTP client sends `Icy-MetaData: 1` on its source request too, and Icecast 2.4
    // repeats every `icy-*` header a source sent to its listeners. No other source client
    // sends it, and a listener has no use for its own request header echoed back: it is the
    // one line of Icecast's head that comes from the tool feeding it rather than from Icecast.
    let mut ice_metadata = ice.with_metadata.clone();
    take(
        &mut ice_metadata,
        "icy-metadata:1",
        "ffmpeg's request header",
    );
    assert_same(
        "GET with Icy-MetaData: 1",
        &ice_metadata,
        &ours.with_metadata,
    );
    let mut ice_plain = ice.plain.clone();
    take(&mut ice_plain, "icy-metadata:1", "ffmpeg's request header");
    assert_same("GET", &ice_plain, &ours.plain);

    // A full mount: Icecast 2.4 answers 403, which players take as final; onair answers 503
    // with Retry-After, as Icecast 2.5 does, so they come back. Everything else is the same.
    let mut ice_full = ice.full.clone();
    let mut our_full = ours.full.clone();
    assert_eq!(ice_full[0], "HTTP/1.0 403 Forbidden");
    assert_eq!(our_full[0], "HTTP/1.0 503 Service Unavailable");
    ice_full[0] = our_full[0].clone();
    // Drawn from 20..=40 s for each answer, so refused players do not all return at once.
    let retry = our_full
        .iter()
        .position(|l| {
            l.strip_prefix("Retry-After: ")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| (20..=40).contains(&v))
        })
        .unwrap_or_else(|| {
            panic!("no Retry-After in 20..=40 (tells the player when to retry) in {our_full:#?}")
        });
    our_full.remove(retry);
    assert_same("a full mount", &ice_full, &our_full);

    // An unknown mount. The reason phrase is free text (RFC 9110 §15) and ours is the standard
    // one; the body is our own plain text where Icecast's is HTML, hence its Content-Type; and
    // hyper states the length of that short body.
    let mut ice_404 = ice.not_found.clone();
    let mut our_404 = ours.not_found.clone();
    assert_eq!(ice_404[0], "HTTP/1.0 404 File Not Found");
    assert_eq!(our_404[0], "HTTP/1.0 404 Not Found");
    ice_404[0] = our_404[0].clone();
    take(
        &mut ice_404,
        "Content-Type: text/html; charset=utf-8",
        "Icecast's HTML body",
    );
    take(
        &mut our_404,
        "Content-Type: text/plain; charset=utf-8",
        "our plain-text body",
    );
    take(&mut our_404, "Content-Length: 10", "hyper's length");
    assert_same("an unknown mount", &ice_404, &our_404);

    // Icecast 2.4 answers HEAD with 400 and ignores Range, so onair's HEAD and probe heads are
    // held to its own GET head: the same lines, and for the probe its status and range. Neither
    // takes the one listener slot, so a listener holds it meanwhile.
    let (_, _held) = stream_head(onair_port, "").await;
    let head = format!(
        "HEAD /radio.mp3 HTTP/1.1\r\nHost: 127.0.0.1:{onair_port}\r\nUser-Agent: onair-tests/1.0\r\n\r\n"
    );
    let (our_head, _) = head_of(onair_port, &head).await;
    assert_same("HEAD", &ours.plain, &our_head);
    let head_icy = head.replace("\r\n\r\n", "\r\nIcy-MetaData: 1\r\n\r\n");
    let (our_head_icy, _) = head_of(onair_port, &head_icy).await;
    assert_same(
        "HEAD with Icy-MetaData: 1",
        &ours.with_metadata,
        &our_head_icy,
    );
    let (mut probe, mut conn) = head_of(
        onair_port,
        &get(onair_port, "/radio.mp3", "Range: bytes=0-1\r\n"),
    )
    .await;
    assert_eq!(probe[0], "HTTP/1.0 206 Partial Content");
    probe[0] = "HTTP/1.0 200 OK".into();
    take(&mut probe, "Content-Length: 2", "the probe's length");
    take(
        &mut probe,
        "Content-Range: bytes 0-1/*",
        "the probe's range",
    );
    assert_same("a Range probe", &ours.plain, &probe);
    let mut body = Vec::new();
    conn.read_to_end(&mut body).await.unwrap();
    assert_eq!(body.len(), 2);
    server.shutdown().await.unwrap();
    drop(source);
    drop(icecast);
}
