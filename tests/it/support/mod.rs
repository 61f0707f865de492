//! Test harness: runs onair in-process on 127.0.0.1:0 and talks to it over real sockets.

pub mod decode;
pub mod icy;
pub mod process;
pub mod raw;
pub mod s3;
pub mod synth;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use onair::audio::clock::Clock;
use onair::config::{Config, Secrets};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The shared media corpus, as shipped in the repo.
pub fn media_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media")
}

/// One row of `manifest.tsv`.
#[derive(Debug, Clone)]
pub struct ManifestEntry {
    pub file: String,
    pub status: String,
    pub seconds: f64,
    pub title: String,
    pub artist: String,
}

impl ManifestEntry {
    /// What listeners should see as the stream title.
    pub fn display_title(&self) -> String {
        match (self.artist.is_empty(), self.title.is_empty()) {
            (false, false) => format!("{} - {}", self.artist, self.title),
            (true, false) => self.title.clone(),
            _ => self
                .file
                .rsplit_once('.')
                .map_or(self.file.clone(), |(s, _)| s.to_string()),
        }
    }
}

pub fn manifest() -> Vec<ManifestEntry> {
    let text = std::fs::read_to_string(media_dir().join("manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            ManifestEntry {
                file: c[0].into(),
                status: c[1].into(),
                seconds: c[5].parse().unwrap_or(0.0),
                title: c.get(6).copied().unwrap_or("").trim_end().into(),
                artist: c.get(7).copied().unwrap_or("").trim_end().into(),
            }
        })
        .collect()
}

/// A folder with copies of some corpus files.
pub fn library_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(media_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Fails the test when an external tool it needs is missing: the README's test command installs
/// every one of them, so a missing tool is a broken setup, never a reason to pass.
pub fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed; the README's test command installs it"
    );
}

/// The admin password the admin tests configure.
pub const ADMIN_PASSWORD: &str = "hackme-0123";

/// [`config_for`] with `ONAIR_ADMIN_PASSWORD` set.
pub fn admin_config_for(library: &Path, extra: &str) -> Config {
    config_text(
        library,
        extra,
        Secrets {
            admin_password: Some(ADMIN_PASSWORD.into()),
            source_password: None,
        },
    )
}

/// Programme settings under which tracks play back to back, whole: no crossfade, no trimming.
pub const HARD_CUTS: &str =
    "[programme.crossfade]\nenabled = false\n[programme.silence]\ntrim = false\n";

/// A config text for a library folder, with extra TOML appended (mounts etc.).
pub fn config_for(library: &Path, extra: &str) -> Config {
    config_text(library, extra, Secrets::default())
}

fn config_text(library: &Path, extra: &str, secrets: Secrets) -> Config {
    let library = format!("kind = \"local\"\npath = \"{}\"\n", library.display());
    config_with_library(&library, extra, secrets)
}

/// A test config whose `[library]` section holds `library` (TOML lines; `rescan = "1s"` unless
/// they set it), with extra TOML appended (mounts etc.; one default mount if it has none).
pub fn config_with_library(library: &str, extra: &str, secrets: Secrets) -> Config {
    let library = if library.contains("rescan") {
        library.to_owned()
    } else {
        format!("rescan = \"1s\"\n{library}")
    };
    let text = format!(
        r#"
[station]
name = "Test Radio"
description = "Tests"
genre = "Testing"
url = "https://test.example"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"
[library]
{library}
{extra}
"#
    );
    let text = if extra.contains("[[mount]]") {
        text
    } else {
        format!("{text}\n[[mount]]\npath = \"/radio.mp3\"\n")
    };
    // Tests share fixture folders: no playout state is read or written unless a test asks.
    let text = if extra.contains("[playout]") {
        text
    } else {
        format!("{text}\n[playout]\nresume = false\n")
    };
    onair::config::parse(&text, secrets).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// onair running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        TestServer::start_with(config, Clock::Realtime).await
    }

    pub async fn start_with(config: Config, clock: Clock) -> TestServer {
        TestServer::start_options(
            config,
            onair::Options {
                clock,
                ..onair::Options::default()
            },
        )
        .await
    }

    pub async fn start_options(config: Config, options: onair::Options) -> TestServer {
        let listener = onair::http::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        TestServer::start_on(config, listener, options).await
    }

    /// [`TestServer::start_options`] on a listening socket the test bound.
    pub async fn start_on(
        config: Config,
        listener: tokio::net::TcpListener,
        options: onair::Options,
    ) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(onair::run_with(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            options,
        ));
        TestServer { addr, stop, task }
    }

    /// The value of the first `/metrics` line that starts with `series` (name and labels).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.url("/metrics"), series).await
    }

    /// `/status-json.xsl`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(self.url("/status-json.xsl"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Whether `run` has returned (it failed to start, or was stopped).
    pub fn task_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Takes the same shutdown path as SIGTERM and waits for it to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await??
    }

    /// Waits until `/readyz` says ready.
    pub async fn wait_ready(&self) {
        self.wait_ready_at("/readyz").await;
    }

    /// Waits until `path` answers 200 (`/healthz` when `/readyz` is on another address).
    pub async fn wait_ready_at(&self, path: &str) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(self.url(path)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server never became ready");
    }
}

/// Polls `check` every 100 ms until it returns `Some`; fails naming `what` after `limit`.
pub async fn until<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the first line of the metrics at `url` that starts with `series`; 0 when the
/// scrape fails (a test that polls must not stop at one failed request).
pub async fn metric_at(url: &str, series: &str) -> f64 {
    let (_, text) = get_text(url.to_string()).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// GET `url`: status and body; status 0 and the error when the request fails (a test that
/// polls through an outage must not stop at one refused request).
pub async fn get_text(url: String) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// A listener connection read as a player would: raw HTTP over a socket.
pub struct RawStream {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

impl RawStream {
    /// Sends a GET with extra header lines (each ending in "\r\n") and reads the response head.
    pub async fn get(addr: SocketAddr, path: &str, extra: &str) -> RawStream {
        let s = TcpStream::connect(addr).await.unwrap();
        RawStream::from_stream(s, addr, path, extra).await
    }

    /// [`RawStream::get`] on a connection the caller made (e.g. from another local address).
    pub async fn from_stream(
        mut s: TcpStream,
        addr: SocketAddr,
        path: &str,
        extra: &str,
    ) -> RawStream {
        let agent = if extra.to_ascii_lowercase().contains("user-agent:") {
            ""
        } else {
            "User-Agent: onair-tests/1.0\r\n"
        };
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{agent}{extra}\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        RawStream {
            status_line: status_line.trim_end().to_string(),
            headers,
            reader,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads exactly `n` body bytes (or fewer if the stream ends), within `limit`.
    pub async fn read(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        let mut buf = vec![0; n];
        let mut got = 0;
        let _ = tokio::time::timeout(limit, async {
            while got < n {
                match self.reader.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got += k,
                }
            }
        })
        .await;
        buf.truncate(got);
        buf
    }

    /// Reads until the server closes the stream; None if it is still open after `limit`.
    pub async fn read_to_end(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        tokio::time::timeout(limit, self.reader.read_to_end(&mut out))
            .await
            .ok()
            .map(|_| out)
    }
}
