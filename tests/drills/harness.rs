//! What every drill uses: the storage sites (real Ceph RGWs started by scripts/ceph.sh), the
//! radio as its own process (the real `onair` binary, so it can be SIGKILLed and its memory
//! read), a listener that records everything it receives, the analysis of that recording with
//! ffmpeg, and the report row each drill adds to the table `scripts/drill.sh` prints.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use onair::catalog::s3::{S3Catalog, S3Settings};
use serde_json::Value;

use crate::support::{RawStream, icy, media_dir};

/// Drills that stop, freeze or fill a gateway take turns: one at a time in this binary.
pub static GATEWAYS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 128 kbit/s, the drills' mount.
pub const BYTES_PER_SEC: f64 = 16_000.0;
pub const METAINT: usize = 16_000;

/// One Ceph cluster with its S3 gateway, as scripts/ceph.sh started it.
#[derive(Debug, Clone)]
pub struct Site {
    /// `primary` or `backup`.
    pub name: &'static str,
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// What `scripts/ceph.sh` needs to find (and restart) this cluster.
    ceph_env: Vec<(String, String)>,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the drills need the two Ceph clusters that scripts/drill.sh \
             (or scripts/test.sh) starts"
        )
    })
}

impl Site {
    /// The cluster of `AWS_*`, `S3_BUCKET` and `ONAIR_CEPH_*`.
    pub fn primary() -> Site {
        Site {
            name: "primary",
            endpoint: var("AWS_ENDPOINT_URL"),
            bucket: var("S3_BUCKET"),
            access_key: var("AWS_ACCESS_KEY_ID"),
            secret_key: var("AWS_SECRET_ACCESS_KEY"),
            ceph_env: vec![
                ("ONAIR_CEPH_DIR".into(), var("ONAIR_CEPH_DIR")),
                ("ONAIR_CEPH_RGW_PORT".into(), var("ONAIR_CEPH_RGW_PORT")),
                ("ONAIR_CEPH_MON_PORT".into(), var("ONAIR_CEPH_MON_PORT")),
            ],
        }
    }

    /// The second cluster, of `ONAIR_BACKUP_*`.
    pub fn backup() -> Site {
        Site {
            name: "backup",
            endpoint: var("ONAIR_BACKUP_AWS_ENDPOINT_URL"),
            bucket: var("ONAIR_BACKUP_BUCKET"),
            access_key: var("ONAIR_BACKUP_AWS_ACCESS_KEY_ID"),
            secret_key: var("ONAIR_BACKUP_AWS_SECRET_ACCESS_KEY"),
            ceph_env: vec![
                ("ONAIR_CEPH_DIR".into(), var("ONAIR_BACKUP_CEPH_DIR")),
                (
                    "ONAIR_CEPH_RGW_PORT".into(),
                    var("ONAIR_BACKUP_CEPH_RGW_PORT"),
                ),
                (
                    "ONAIR_CEPH_MON_PORT".into(),
                    var("ONAIR_BACKUP_CEPH_MON_PORT"),
                ),
                ("ONAIR_CEPH_TLS_PORT".into(), "0".into()),
                ("ONAIR_CEPH_BUCKET".into(), var("ONAIR_BACKUP_BUCKET")),
                (
                    "ONAIR_CEPH_ACCESS_KEY".into(),
                    var("ONAIR_BACKUP_AWS_ACCESS_KEY_ID"),
                ),
                (
                    "ONAIR_CEPH_SECRET_KEY".into(),
                    var("ONAIR_BACKUP_AWS_SECRET_ACCESS_KEY"),
                ),
            ],
        }
    }

    /// The gateway's address, for a proxy in front of it.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("an http://ip:port endpoint")
    }

    /// A client for a library under `prefix` of this site's bucket.
    pub fn catalog(&self, prefix: &str) -> S3Catalog {
        let settings = S3Settings::new(&self.endpoint, "us-east-1", &self.bucket, prefix);
        let creds = Credentials::new(&self.access_key, &self.secret_key, None, None, "drill");
        S3Catalog::new(&settings, creds).expect("S3 client")
    }

    fn ceph_dir(&self) -> &str {
        &self.ceph_env[0].1
    }

    /// The radosgw pid (it changes when the gateway is restarted).
    pub fn rgw_pid(&self) -> i32 {
        std::fs::read_to_string(format!("{}/pid.rgw", self.ceph_dir()))
            .expect("pid.rgw")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// SIGSTOPs the gateway; dropping the guard (also on a panic) sends SIGCONT.
    pub fn freeze(&self) -> Frozen {
        let pid = self.rgw_pid();
        signal(pid, "STOP");
        Frozen(pid)
    }

    /// Kills the gateway (the cluster behind it stays).
    pub fn kill_gateway(&self) {
        let pid = self.rgw_pid();
        signal(pid, "KILL");
        let gone = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}/stat")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(Instant::now() < gone, "radosgw {pid} did not die");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the gateway again with `scripts/ceph.sh start` (the objects survive).
    pub fn restart_gateway(&self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .envs(self.ceph_env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("ceph.sh");
        assert!(
            out.status.success(),
            "ceph.sh start ({}): {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Sends a signal with kill(1).
pub fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill(1)")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A frozen gateway; thawed on drop.
pub struct Frozen(i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// Runs `f` when dropped (also when a drill fails), so a killed gateway always comes back.
pub fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A prefix no other drill (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("drill-{name}-{}-{nanos}/", std::process::id())
}

pub fn fixture(file: &str) -> Bytes {
    Bytes::from(std::fs::read(media_dir().join(file)).unwrap())
}

pub use crate::s3_support::{delete, put};

/// Uploads `(key, fixture file)` pairs.
pub async fn upload(cat: &S3Catalog, files: &[(&str, &str)]) {
    for (key, file) in files {
        put(cat, key, fixture(file)).await;
    }
}

/// Uploads a big file from disk, streamed.
pub async fn put_file(cat: &S3Catalog, key: &str, path: &Path) {
    let body = ByteStream::from_path(path).await.unwrap();
    cat.client()
        .put_object()
        .bucket(cat.bucket())
        .key(cat.object_key(key))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
}

/// The `[library]` lines of an S3 library on `site` under `prefix`, through `endpoint` (the
/// gateway, or a proxy in front of it).
pub fn s3_library(site: &Site, endpoint: &str, prefix: &str, cache_dir: &Path) -> String {
    format!(
        "kind = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\n\
         cache_dir = \"{}\"\n",
        site.bucket,
        cache_dir.display()
    )
}

/// A whole radio config: production defaults (a rescan every 60 s, prefetch 2, the default
/// timeouts) but for the listen address and what `library` and `extra` add.
pub fn config(library: &str, extra: &str) -> String {
    format!(
        "[station]\nname = \"Drill Radio\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
         shutdown_grace = \"1s\"\n[library]\n{library}\n{extra}\n[[mount]]\n\
         path = \"/radio.mp3\"\nbitrate = 128\nicy_metaint = {METAINT}\n"
    )
}

/// The radio as its own process: the `onair` binary, its JSON log lines collected.
pub struct Radio {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Radio {
    /// Starts `onair --config` on `config` with the credentials of `sites` in its environment
    /// (the first as `AWS_*`, the second as `ONAIR_BACKUP_AWS_*`), and waits until it listens.
    pub fn start(config: &str, sites: &[&Site]) -> Radio {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("radio.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onair"));
        cmd.arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info,onair=debug")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (site, prefix) in sites.iter().zip(["AWS", "ONAIR_BACKUP_AWS"]) {
            cmd.env(format!("{prefix}_ACCESS_KEY_ID"), &site.access_key)
                .env(format!("{prefix}_SECRET_ACCESS_KEY"), &site.secret_key);
        }
        let mut child = cmd.spawn().expect("onair binary");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "radio on air"
                    && let Some(addr) = v["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
                if std::env::var_os("ONAIR_DRILL_LOGS").is_some() {
                    eprintln!("radio: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "onair did not start; its log:\n{}",
                    logs.lock().unwrap().join("\n")
                )
            })
            .parse()
            .unwrap();
        Radio {
            child,
            addr,
            logs,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until `/readyz` answers 200 (music on every mount).
    pub async fn wait_ready(&self, limit: Duration) {
        until(limit, "radio ready", || async {
            (get(&self.url("/readyz")).await.0 == 200).then_some(())
        })
        .await;
    }

    /// Waits until the metric `series` reads `value`; the seconds since `since` when it did.
    pub async fn seen(&self, series: &str, value: f64, since: Instant, limit: Duration) -> f64 {
        until(limit, &format!("{series} = {value}"), || async {
            (metrics(self).await.get(series) == Some(value)).then(|| since.elapsed().as_secs_f64())
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Log lines whose message contains `needle`.
    pub fn logged(&self, needle: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The process's resident memory, in bytes (VmRSS).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// SIGKILL: no shutdown, no last save.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("onair did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Radio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failed drill shows what the radio said.
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            let from = logs.len().saturating_sub(300);
            eprintln!("--- the radio's last log lines ---");
            for line in &logs[from..] {
                eprintln!("{line}");
            }
        }
    }
}

/// GET `url` as text: (status, body); (0, error) when there was no answer.
pub async fn get(url: &str) -> (u16, String) {
    match reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The radio's metrics, parsed: `name{labels}` → value.
pub async fn metrics(radio: &Radio) -> Metrics {
    Metrics(get(&radio.url("/metrics")).await.1)
}

pub struct Metrics(String);

impl Metrics {
    /// The value of the series `name` (exactly as written, labels included, e.g.
    /// `onair_storage_up{site="primary"}`).
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    /// The sum of every series of `name` whose labels contain all of `labels`.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                series.split('{').next() == Some(name) && labels.iter().all(|x| series.contains(x))
            })
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }
}

/// What is on air: (key, elapsed seconds, duration seconds).
pub async fn now_playing(radio: &Radio) -> Option<(String, f64, f64)> {
    let (status, body) = get(&radio.url("/api/nowplaying")).await;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let now = &v["now_playing"];
    Some((
        now["key"].as_str()?.to_owned(),
        now["elapsed"].as_f64()?,
        now["duration"].as_f64().unwrap_or(0.0),
    ))
}

/// Keys in the played history, oldest first.
pub async fn history(radio: &Radio) -> Vec<String> {
    let (_, body) = get(&radio.url("/api/nowplaying")).await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut keys: Vec<String> = v["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|p| p["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    keys.reverse();
    keys
}

/// Polls `check` every 100 ms until it returns `Some`; fails naming `what` after `limit`.
pub async fn until<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    check: impl FnMut() -> F,
) -> T {
    crate::support::until(limit, what, check).await
}

/// A listener that reads for the whole drill: every byte, and when each arrived.
/// How long a new listener's burst takes to arrive (it comes at the link's speed, in well
/// under a second on loopback): the pace is measured after it.
const SETTLE: Duration = Duration::from_secs(3);

/// (seconds since connect, bytes received by then).
type Mark = (f64, usize);

pub struct Recorder {
    started: Instant,
    stop: Arc<AtomicBool>,
    /// The bytes, and (seconds, bytes) when the burst had settled.
    task: tokio::task::JoinHandle<(Vec<u8>, Option<Mark>)>,
}

impl Recorder {
    pub async fn connect(addr: SocketAddr) -> Recorder {
        let mut stream = RawStream::get(addr, "/radio.mp3", "Icy-MetaData: 1\r\n").await;
        assert!(stream.status_line.contains("200"), "{}", stream.status_line);
        assert_eq!(stream.header("icy-metaint"), Some("16000"));
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut data = Vec::new();
            let mut settled = None;
            while !s.load(Ordering::Relaxed) {
                let chunk = stream.read(4000, Duration::from_millis(100)).await;
                data.extend_from_slice(&chunk);
                if settled.is_none() && started.elapsed() >= SETTLE {
                    settled = Some((started.elapsed().as_secs_f64(), data.len()));
                }
            }
            (data, settled)
        });
        Recorder {
            started,
            stop,
            task,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops and returns the stream split into audio and titles.
    pub async fn finish(self) -> Capture {
        self.stop.store(true, Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        let (data, settled) = self.task.await.unwrap();
        // Bytes per second once the burst is in: the pace the radio keeps, whatever the burst
        // held when the listener came (more after a cold start's filler, say).
        let paced_rate = settled
            .filter(|(at, _)| seconds - at >= 5.0)
            .map(|(at, len)| (data.len() - len) as f64 / (seconds - at));
        let split = icy::split(&data, METAINT);
        Capture {
            split,
            seconds,
            paced_rate,
        }
    }
}

/// A listener kept on the radio for a whole drill, and the filler-silence count when it came.
pub struct Watch {
    listener: Recorder,
    silence_before: f64,
}

impl Watch {
    pub async fn start(radio: &Radio) -> Watch {
        let silence_before = metrics(radio)
            .await
            .get("onair_silence_seconds_total")
            .unwrap_or(0.0);
        Watch {
            listener: Recorder::connect(radio.addr).await,
            silence_before,
        }
    }

    /// Ends the drill: the capture decoded and judged ([`verdict`]), with `problems` the drill
    /// found itself; reports the table row, then fails on any problem. The final metrics.
    pub async fn judge(
        self,
        radio: &Radio,
        drill: &str,
        recovered: Option<f64>,
        mut problems: Vec<String>,
    ) -> Metrics {
        let m = metrics(radio).await;
        let silence = m.get("onair_silence_seconds_total").unwrap_or(0.0) - self.silence_before;
        let capture = self.listener.finish().await;
        let analysis = capture.analyse();
        let (dead, found) = verdict(&capture, &analysis, silence);
        problems.extend(found);
        report(drill, dead, recovered, &sources(&m));
        eprintln!("{drill}: titles {:?}", capture.titles());
        assert!(problems.is_empty(), "{drill}: {problems:?}");
        m
    }
}

/// What a listener received.
pub struct Capture {
    pub split: icy::Split,
    /// How long it listened.
    pub seconds: f64,
    /// Bytes per second (stream and metadata) after the first [`SETTLE`] seconds, when the
    /// listening went on for 5 s or more past them.
    pub paced_rate: Option<f64>,
}

/// What ffmpeg makes of a capture.
#[derive(Debug)]
pub struct Analysis {
    /// Stretches of 0.25 s or more below -50 dBFS: (start, length) in seconds of audio.
    pub silences: Vec<(f64, f64)>,
    /// ffmpeg's error lines while decoding.
    pub errors: Vec<String>,
    /// Seconds of audio decoded.
    pub seconds: f64,
}

impl Analysis {
    /// Seconds of silence, the first `skip` seconds (the start of the stream) left out.
    pub fn dead_air(&self, skip: f64) -> f64 {
        self.silences
            .iter()
            .filter(|(start, _)| *start >= skip)
            .map(|(_, len)| len)
            .sum()
    }
}

impl Capture {
    /// Decodes the audio with ffmpeg and finds its silences (`silencedetect`).
    pub fn analyse(&self) -> Analysis {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.mp3");
        std::fs::write(&path, &self.split.audio).unwrap();
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostats", "-v", "info", "-i"])
            .arg(&path)
            .args(["-af", "silencedetect=noise=-50dB:d=0.25", "-f", "null", "-"])
            .output()
            .expect("ffmpeg (apt-get install ffmpeg)");
        assert!(out.status.success(), "ffmpeg failed");
        let text = String::from_utf8_lossy(&out.stderr);
        let mut silences = Vec::new();
        let mut start = None;
        let mut errors = Vec::new();
        let mut seconds = 0.0;
        for line in text.lines() {
            if let Some(s) = line.split("silence_start: ").nth(1) {
                start = s.trim().parse::<f64>().ok();
            } else if let Some(d) = line.split("silence_duration: ").nth(1) {
                if let (Some(s), Ok(d)) = (start.take(), d.trim().parse::<f64>()) {
                    silences.push((s, d));
                }
            } else if let Some(t) = line.split(" time=").nth(1) {
                seconds = parse_clock(t.split_whitespace().next().unwrap_or("")).unwrap_or(seconds);
            } else if line.contains("rror") || line.contains("nvalid") {
                errors.push(line.to_owned());
            }
        }
        // A silence still running at the end of the capture.
        if let Some(s) = start {
            silences.push((s, (seconds - s).max(0.0)));
        }
        Analysis {
            silences,
            errors,
            seconds,
        }
    }

    /// Distinct titles in the order they arrived.
    pub fn titles(&self) -> Vec<String> {
        let mut titles: Vec<String> = Vec::new();
        for t in &self.split.titles {
            if titles.last() != Some(&t.title) {
                titles.push(t.title.clone());
            }
        }
        titles
    }

    /// The pace the listener was fed at, once the burst was in; over the whole capture when
    /// it was too short to tell.
    pub fn rate(&self) -> f64 {
        self.paced_rate
            .unwrap_or(self.split.audio.len() as f64 / self.seconds)
    }
}

fn parse_clock(t: &str) -> Option<f64> {
    let mut parts = t.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// One row of the drill table: drill, seconds of dead air, seconds until storage was seen
/// again, tracks played from which site. Appended to `$ONAIR_DRILL_REPORT` when it is set.
pub fn report(drill: &str, dead_air: f64, recovered: Option<f64>, sources: &str) {
    let recovered = recovered.map_or("-".to_owned(), |s| format!("{s:.1}"));
    let row = format!("{drill}\t{:.2}\t{recovered}\t{sources}\n", dead_air + 0.0);
    eprint!("DRILL {row}");
    if let Ok(path) = std::env::var("ONAIR_DRILL_REPORT")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(PathBuf::from(path))
    {
        let _ = file.write_all(row.as_bytes());
    }
}

/// Where the tracks of a run came from, from the metrics: cache hits and fetches per site.
pub fn sources(m: &Metrics) -> String {
    let fetched = |site: &str| {
        m.sum(
            "onair_storage_fetches_total",
            &[&format!("site=\"{site}\"")],
        )
    };
    format!(
        "cache {}, primary {}, backup {}",
        m.get("onair_cache_hits_total").unwrap_or(0.0),
        fetched("primary"),
        fetched("backup")
    )
}

/// The checks every drill makes of a listener's capture: no dead air the tracks do not have
/// (the drills' tracks have no silence of 0.25 s of their own), no decoder error, titles that
/// keep changing, the mount's bitrate, and no filler silence counted by the radio. Returns the
/// seconds of dead air and what is wrong (empty when the drill passes).
pub fn verdict(capture: &Capture, analysis: &Analysis, silence_metric: f64) -> (f64, Vec<String>) {
    let mut problems = Vec::new();
    // The first second of a capture is the burst's start: nothing to judge there.
    let dead = analysis.dead_air(1.0);
    if dead > 0.0 {
        problems.push(format!("dead air: {:?}", analysis.silences));
    }
    if !analysis.errors.is_empty() {
        problems.push(format!("decoder errors: {:?}", analysis.errors));
    }
    if analysis.seconds < capture.seconds * 0.9 {
        problems.push(format!(
            "{:.1} s of audio decoded from {:.1} s of listening",
            analysis.seconds, capture.seconds
        ));
    }
    if capture.titles().len() < 2 {
        problems.push(format!("titles did not change: {:?}", capture.titles()));
    }
    if (capture.rate() - BYTES_PER_SEC).abs() > 0.05 * BYTES_PER_SEC {
        problems.push(format!("listener got {:.0} B/s", capture.rate()));
    }
    if silence_metric > 0.0 {
        problems.push(format!(
            "onair_silence_seconds_total rose by {silence_metric}"
        ));
    }
    (dead, problems)
}
