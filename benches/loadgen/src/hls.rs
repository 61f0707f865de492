//! `--hls`: N Low-Latency HLS clients on one media playlist (`/hls<mount>/live.m3u8`), each on
//! its own keep-alive HTTP/1.1 connection, doing what a low-latency player does once tuned in:
//! a blocking playlist request for the next part (`_HLS_msn`, `_HLS_part`, `_HLS_skip=YES`,
//! gzip), then that part, then the next. A client tunes in from a plain playlist's preload hint;
//! after that it follows the rendition's part grid (4 parts per segment) without parsing a
//! playlist again, so a wrong step would show as 404s in the report.
//!
//! Each client records, for every part, when its blocking request was answered (the response
//! head arrived) and when the part itself had arrived whole. `hls_report` turns that into the
//! delay of each answer after its part's publication, and the server's cost per client.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::cli::Config;
use crate::hls_report::{self, HlsMeasure};
use crate::listener::{self, READ_BUF, ReadOutcome};
use crate::proc_stats;

/// Parts per segment on an onair rendition (its `hls::grid`).
const PARTS_PER_SEGMENT: u64 = 4;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest tune-in playlist accepted (a 15-minute window is about 40 KiB).
const MAX_PLAYLIST: usize = 1024 * 1024;
/// After the window, how long the clients go on answering for the window's last parts.
const TAIL: Duration = Duration::from_secs(3);
/// Before the window, once every client has tuned in: a few parts for the ramp's backlog to end.
const SETTLE: Duration = Duration::from_secs(3);
/// Before the ramp: the server's own cost with no client (its encoders), subtracted per client.
const IDLE: Duration = Duration::from_secs(5);

/// Client states, as stored in [`Client::state`].
pub mod cst {
    pub const PENDING: u8 = 0;
    /// Tuned in: requesting part after part.
    pub const RUNNING: u8 = 1;
    /// Never tuned in (connect, first playlist or its hint failed).
    pub const FAILED: u8 = 2;
    /// Tuned in, then the connection failed, closed or timed out.
    pub const BROKEN: u8 = 3;
}

/// One part as one client saw it, in microseconds since the run began.
#[derive(Clone, Copy)]
pub struct Sample {
    /// `msn × 4 + part`.
    pub seq: u64,
    /// The blocking playlist request's answer (its head) arrived.
    pub answered_us: u64,
    /// The part's body had arrived whole.
    pub fetched_us: u64,
}

/// What one client records; written by its task, read by the report.
#[derive(Default)]
pub struct Client {
    pub state: AtomicU8,
    pub samples: Mutex<Vec<Sample>>,
}

/// Counters over every client.
#[derive(Default)]
pub struct Counters {
    /// `200` answers to blocking playlist requests, and to part requests.
    pub playlists: AtomicU64,
    pub parts: AtomicU64,
    /// Body bytes received (playlists and parts).
    pub bytes: AtomicU64,
    /// Answers other than `200`, by status (503 timed-out blocks, 404 a wrong step, …).
    pub statuses: Mutex<std::collections::BTreeMap<u32, u64>>,
    /// Requests not answered within `--timeout`, and connections that failed or closed.
    pub timeouts: AtomicU64,
    pub io_errors: AtomicU64,
}

pub struct HlsShared {
    pub cfg: Config,
    /// The playlist's folder, `/hls/radio.aac/`, and the parts' extension, `aac`.
    dir: String,
    ext: String,
    pub clients: Vec<Client>,
    pub counters: Counters,
    pub resolved: AtomicUsize,
    pub epoch: Instant,
}

impl HlsShared {
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// The playlist path's folder and the parts' extension, which the path's mount names
/// (`/hls/radio.aac/live.m3u8` → `/hls/radio.aac/`, `aac`).
pub fn split_playlist_path(path: &str) -> Result<(String, String), String> {
    let dir = path
        .strip_suffix("live.m3u8")
        .filter(|d| d.starts_with("/hls/") && d.ends_with('/') && d.len() > "/hls//".len())
        .ok_or_else(|| {
            format!("--hls needs a media playlist URL, /hls<mount>/live.m3u8, not {path}")
        })?;
    let mount = dir.trim_end_matches('/');
    let ext = mount
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && !e.contains('/'))
        .ok_or_else(|| format!("{path}: the mount has no extension to name its parts by"))?;
    Ok((dir.to_string(), ext.to_string()))
}

/// The run: ramp (every client tunes in), settle, window, tail, report. False when any client
/// failed to tune in or broke, or any request was not answered `200`.
pub async fn run(cfg: Config, nofile: u64) -> bool {
    let (dir, ext) = match split_playlist_path(&cfg.path) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return false;
        }
    };
    let n = cfg.listeners;
    let shared = Arc::new(HlsShared {
        dir,
        ext,
        clients: (0..n).map(|_| Client::default()).collect(),
        counters: Counters::default(),
        resolved: AtomicUsize::new(0),
        epoch: Instant::now(),
        cfg,
    });
    let cfg = &shared.cfg;
    let pid = cfg.pid.map(|p| p.to_string());
    let server_sample = || pid.as_deref().and_then(proc_stats::sample);
    let self_sample = || proc_stats::sample("self").unwrap_or_default();
    let idle_t0 = server_sample();
    if idle_t0.is_some() {
        tokio::time::sleep(IDLE).await;
    }
    let server_before = server_sample();
    let idle_cpu_pct = idle_t0
        .zip(server_before)
        .map(|(a, b)| 100.0 * (b.cpu - a.cpu) / IDLE.as_secs_f64());

    let ramp_start = Instant::now();
    crate::ramp(cfg, &shared.resolved, |i| {
        tokio::spawn(client(Arc::clone(&shared), i));
    })
    .await;
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    if !cfg.json {
        eprintln!(
            "loadgen: {} of {n} tuned in or failed after {ramp_secs:.1} s; measuring for {:.0} s",
            shared.resolved.load(Ordering::Acquire),
            cfg.seconds
        );
    }
    tokio::time::sleep(SETTLE).await;

    let w0 = Instant::now();
    let server_t0 = server_sample();
    let self_t0 = self_sample();
    let requests_t0 = requests(&shared.counters);
    let bytes_t0 = shared.counters.bytes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(cfg.seconds)).await;
    let w1 = Instant::now();
    let server_t1 = server_sample();
    let self_t1 = self_sample();
    let requests_t1 = requests(&shared.counters);
    let bytes_t1 = shared.counters.bytes.load(Ordering::Relaxed);
    tokio::time::sleep(TAIL).await;

    hls_report::print(
        &shared,
        &HlsMeasure {
            ramp_secs,
            idle_cpu_pct,
            w0_us: shared.us(w0),
            w1_us: shared.us(w1),
            server_before,
            server_t0,
            server_t1,
            self_t0,
            self_t1,
            requests: requests_t1 - requests_t0,
            bytes: bytes_t1 - bytes_t0,
            nofile,
            server_alive: pid.as_deref().map(proc_stats::alive),
        },
    )
}

fn requests(c: &Counters) -> u64 {
    c.playlists.load(Ordering::Relaxed) + c.parts.load(Ordering::Relaxed)
}

/// One client: tune in, then part after part until the process ends.
async fn client(shared: Arc<HlsShared>, i: usize) {
    let slot = &shared.clients[i];
    let cfg = &shared.cfg;
    let mut c = Conn {
        agent: format!("onair-loadgen/0.1 (hls client {i})"),
        request: Vec::with_capacity(256),
        head: Vec::with_capacity(512),
    };
    let tuned = tokio::time::timeout(cfg.timeout, async {
        let stream = listener::connect(cfg, i, false).await?;
        let next = c.tune_in(&shared, &stream).await?;
        Ok::<_, io::Error>((stream, next))
    })
    .await;
    let (stream, mut next) = match tuned {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            // The first few say why; the report counts them all.
            if !cfg.json && i < 3 {
                eprintln!("loadgen: client {i} did not tune in: {e}");
            }
            slot.state.store(cst::FAILED, Ordering::Release);
            shared.resolved.fetch_add(1, Ordering::AcqRel);
            return;
        }
        Err(_) => {
            slot.state.store(cst::FAILED, Ordering::Release);
            shared.resolved.fetch_add(1, Ordering::AcqRel);
            return;
        }
    };
    slot.state.store(cst::RUNNING, Ordering::Release);
    shared.resolved.fetch_add(1, Ordering::AcqRel);
    let counters = &shared.counters;
    loop {
        let (msn, part) = next;
        let step = async {
            c.request.clear();
            let _ = write!(
                c.request,
                "GET {}live.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES HTTP/1.1\r\n\
                 Host: {}\r\nUser-Agent: {}\r\nAccept-Encoding: gzip\r\n\r\n",
                shared.dir, cfg.host, c.agent
            );
            listener::write_all(&stream, &c.request).await?;
            let playlist = read_answer(&stream, &mut c.head, None).await?;
            if playlist.status != 200 {
                return Ok::<_, io::Error>(Err(playlist.status));
            }
            counters.playlists.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(playlist.body_len as u64, Ordering::Relaxed);
            c.request.clear();
            let _ = write!(
                c.request,
                "GET {}{msn}.{part}.{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n\r\n",
                shared.dir, shared.ext, cfg.host, c.agent
            );
            listener::write_all(&stream, &c.request).await?;
            let body = read_answer(&stream, &mut c.head, None).await?;
            if body.status != 200 {
                return Ok(Err(body.status));
            }
            counters.parts.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(body.body_len as u64, Ordering::Relaxed);
            Ok(Ok((playlist.head_at, Instant::now())))
        };
        // A blocking request waits at most 3 target durations (12 s) before the server says 503.
        match tokio::time::timeout(cfg.timeout, step).await {
            Ok(Ok(Ok((answered, fetched)))) => {
                let sample = Sample {
                    seq: msn * PARTS_PER_SEGMENT + part,
                    answered_us: shared.us(answered),
                    fetched_us: shared.us(fetched),
                };
                if let Ok(mut s) = slot.samples.lock() {
                    s.push(sample);
                }
                next = following(next);
            }
            Ok(Ok(Err(status))) => {
                if let Ok(mut s) = counters.statuses.lock() {
                    *s.entry(status).or_default() += 1;
                }
                // Tune in again, as a player does after an error.
                match c.tune_in(&shared, &stream).await {
                    Ok(n) => next = n,
                    Err(_) => break,
                }
            }
            Ok(Err(_)) => {
                counters.io_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(_) => {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    slot.state.store(cst::BROKEN, Ordering::Release);
}

/// The part after `(msn, part)` on the grid.
fn following((msn, part): (u64, u64)) -> (u64, u64) {
    if part + 1 == PARTS_PER_SEGMENT {
        (msn + 1, 0)
    } else {
        (msn, part + 1)
    }
}

/// A client's reusable buffers and its User-Agent (distinct per client, so the server counts
/// each as a session).
struct Conn {
    agent: String,
    request: Vec<u8>,
    head: Vec<u8>,
}

impl Conn {
    /// `GET live.m3u8` (plain, no directive); the next part to ask for is its preload hint.
    async fn tune_in(&mut self, shared: &HlsShared, stream: &TcpStream) -> io::Result<(u64, u64)> {
        self.request.clear();
        let _ = write!(
            self.request,
            "GET {}live.m3u8 HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n\r\n",
            shared.dir, shared.cfg.host, self.agent
        );
        listener::write_all(stream, &self.request).await?;
        let mut body = Vec::new();
        let answer = read_answer(stream, &mut self.head, Some(&mut body)).await?;
        if answer.status != 200 {
            return Err(io::Error::other(format!(
                "the playlist was answered {}",
                answer.status
            )));
        }
        preload_hint(&String::from_utf8_lossy(&body))
            .ok_or_else(|| io::Error::other("the playlist has no EXT-X-PRELOAD-HINT part"))
    }
}

/// `(msn, part)` of a playlist's `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="123.2.aac"`.
pub fn preload_hint(playlist: &str) -> Option<(u64, u64)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:") && l.contains("TYPE=PART"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    let name = uri.rsplit('/').next()?;
    let mut fields = name.split('.');
    let msn = fields.next()?.parse().ok()?;
    let part = fields.next()?.parse().ok()?;
    Some((msn, part))
}

/// A response read whole.
struct Answer {
    status: u32,
    body_len: usize,
    /// When the end of its head arrived.
    head_at: Instant,
}

/// Reads one response with a `Content-Length` body (what onair sends on every HLS path),
/// keeping the body only when asked; the head goes through `head`, the body through this
/// thread's read buffer.
async fn read_answer(
    stream: &TcpStream,
    head: &mut Vec<u8>,
    mut keep: Option<&mut Vec<u8>>,
) -> io::Result<Answer> {
    head.clear();
    // Progress through "\r\n\r\n", and once the head is read, its status, length and time.
    let mut matched = 0usize;
    let mut parsed: Option<(u32, usize, Instant)> = None;
    let mut body = 0usize;
    loop {
        stream.readable().await?;
        let mut failure: Option<io::Error> = None;
        let outcome = listener::read_now(stream, READ_BUF, |bytes| {
            let mut rest = bytes;
            if parsed.is_none() {
                let end = bytes.iter().position(|&b| {
                    matched = match (matched, b) {
                        (0 | 2, b'\r') => matched + 1,
                        (1 | 3, b'\n') => matched + 1,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    matched == 4
                });
                let upto = end.map_or(bytes.len(), |e| e + 1);
                head.extend_from_slice(&bytes[..upto]);
                rest = &bytes[upto..];
                if end.is_some() {
                    match parse_head(head) {
                        Ok((status, len)) => parsed = Some((status, len, Instant::now())),
                        Err(e) => failure = Some(e),
                    }
                } else if head.len() > MAX_HEAD {
                    failure = Some(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "response head too long",
                    ));
                }
            }
            body += rest.len();
            if let Some(k) = keep.as_deref_mut()
                && k.len() + rest.len() <= MAX_PLAYLIST
            {
                k.extend_from_slice(rest);
            }
        });
        match outcome {
            ReadOutcome::Data(_) | ReadOutcome::WouldBlock => {}
            ReadOutcome::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
            ReadOutcome::Err(e) => return Err(e),
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some((status, len, head_at)) = parsed {
            if body > len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "more bytes than the Content-Length",
                ));
            }
            if body == len {
                return Ok(Answer {
                    status,
                    body_len: len,
                    head_at,
                });
            }
        }
    }
}

/// The status and `Content-Length` of a response head.
fn parse_head(head: &[u8]) -> io::Result<(u32, usize)> {
    let text = std::str::from_utf8(head)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response head not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a chunked answer (onair sends a Content-Length on every HLS path)",
            ));
        }
    }
    length
        .map(|l| (status, l))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_and_the_grid() {
        let playlist = "#EXTM3U\n#EXT-X-PART:DURATION=0.97524,URI=\"467789143.0.aac\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"467789143.1.aac\"\n";
        assert_eq!(preload_hint(playlist), Some((467789143, 1)));
        assert_eq!(preload_hint("#EXTM3U\n"), None);
        assert_eq!(following((7, 2)), (7, 3));
        assert_eq!(following((7, 3)), (8, 0));
    }

    #[test]
    fn playlist_paths() {
        assert_eq!(
            split_playlist_path("/hls/mobile.aac/live.m3u8").unwrap(),
            ("/hls/mobile.aac/".to_string(), "aac".to_string())
        );
        assert!(split_playlist_path("/radio.mp3").is_err());
        assert!(split_playlist_path("/hls/live.m3u8").is_err());
    }

    #[test]
    fn heads() {
        let h = b"HTTP/1.1 200 OK\r\ncontent-length: 472\r\n\r\n";
        assert_eq!(parse_head(h).unwrap(), (200, 472));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 503 x\r\n\r\n").is_err());
    }
}
