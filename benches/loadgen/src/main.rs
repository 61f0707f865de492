//! Listener load generator for Icecast-compatible servers (onair, Icecast).
//!
//! Opens N listener connections to one stream URL on 127.0.0.1, spread over source addresses
//! 127.0.0.2..=127.0.0.254 (so more than one ephemeral port range fits), at a fixed connect rate or
//! all at once (`--storm`). Once every connection has resolved (streaming, or failed), it reads every
//! stream for a fixed window and reports: listeners held and failed, per-listener bitrate over the
//! window, time to first byte, and, given the server's pid, the server's CPU and memory cost per
//! listener (from /proc). Every phase is bounded in time; the program always stops by itself.
//!
//! Cheap by construction: one small task per connection, no per-connection read buffer (each worker
//! thread has one 64 KiB buffer that every read on that thread goes through), and `SO_RCVLOWAT` so a
//! fast listener wakes about once per `--lowat` bytes instead of once per server write. The byte count
//! is exact at the window's edges anyway: at each edge every task drains its socket before recording.
//!
//! Run `loadgen --help` for the options.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

const USAGE: &str = "\
loadgen: open N listeners on an Icecast-style stream and measure what they get

usage: loadgen [options] [URL]

  URL                    stream to load (default http://127.0.0.1:8000/radio.mp3); the host must be
                         an IPv4 address
  -n, --listeners N      connections to open (default 1000)
  --rate R               connections started per second (default 500)
  --storm                start all N connections at the same instant instead
  --seconds S            measurement window once all are connected (default 30)
  --timeout S            per connection: connect + response head + first byte (default 15)
  --icy                  send `Icy-MetaData: 1`
  --slow-fraction F      this fraction of listeners read slowly (default 0)
  --slow-bps B           slow listeners read at most B bytes/s (default 4000)
  --expect-kbps K        stream bitrate, to count listeners below 99 % of it (default 128)
  --burst-bytes B        also time how long the first B body bytes take (default 31000: just
                         under a 2 s burst at 128 kbps, which ends on a frame boundary)
  --lowat B              SO_RCVLOWAT once streaming: wake per B bytes (default 16384; 0 = off)
  --threads T            tokio worker threads (default: number of CPUs, at most 2)
  --pid PID              the server's pid: report its CPU and RSS cost per listener
  --no-spread            do not bind to 127.0.0.2..254 (use for a non-loopback server)
  --label TEXT           a name for this run, echoed in the report
  --json                 print one JSON line on stdout (the human table then goes to stderr)
  -h, --help             this text
";

/// Source addresses 127.0.0.2..=127.0.0.254.
const SPREAD: u32 = 253;
/// How long the window's closing snapshot may take before the report is made anyway: a base, plus
/// a little per listener (each drains its socket), at most a minute.
const SNAPSHOT_GRACE: Duration = Duration::from_secs(5);
const SNAPSHOT_GRACE_PER_LISTENER: Duration = Duration::from_millis(2);
const SNAPSHOT_GRACE_MAX: Duration = Duration::from_secs(60);
const READ_BUF: usize = 64 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Clone, Debug)]
struct Config {
    addr: SocketAddr,
    host: String,
    path: String,
    listeners: usize,
    rate: f64,
    storm: bool,
    seconds: f64,
    timeout: Duration,
    icy: bool,
    slow_fraction: f64,
    slow_bps: u64,
    expect_kbps: f64,
    burst_bytes: u64,
    lowat: usize,
    threads: usize,
    pid: Option<u32>,
    spread: bool,
    label: String,
    json: bool,
}

fn parse_args() -> Result<Config, String> {
    let mut c = Config {
        addr: "127.0.0.1:8000".parse().unwrap(),
        host: "127.0.0.1:8000".into(),
        path: "/radio.mp3".into(),
        listeners: 1000,
        rate: 500.0,
        storm: false,
        seconds: 30.0,
        timeout: Duration::from_secs(15),
        icy: false,
        slow_fraction: 0.0,
        slow_bps: 4000,
        expect_kbps: 128.0,
        burst_bytes: 31_000,
        lowat: 16 * 1024,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(2),
        pid: None,
        spread: true,
        label: String::new(),
        json: false,
    };
    let mut args = std::env::args().skip(1);
    fn val<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{name} needs a value"))?;
        v.parse().map_err(|_| format!("{name}: cannot parse {v:?}"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-n" | "--listeners" => c.listeners = val(&a, args.next())?,
            "--rate" => c.rate = val(&a, args.next())?,
            "--storm" => c.storm = true,
            "--seconds" => c.seconds = val(&a, args.next())?,
            "--timeout" => c.timeout = Duration::from_secs_f64(val(&a, args.next())?),
            "--icy" => c.icy = true,
            "--slow-fraction" => c.slow_fraction = val(&a, args.next())?,
            "--slow-bps" => c.slow_bps = val(&a, args.next())?,
            "--expect-kbps" => c.expect_kbps = val(&a, args.next())?,
            "--burst-bytes" => c.burst_bytes = val(&a, args.next())?,
            "--lowat" => c.lowat = val(&a, args.next())?,
            "--threads" => c.threads = val(&a, args.next())?,
            "--pid" => c.pid = Some(val(&a, args.next())?),
            "--no-spread" => c.spread = false,
            "--label" => c.label = val(&a, args.next())?,
            "--json" => c.json = true,
            s if s.starts_with("http://") => {
                let rest = &s["http://".len()..];
                let (host, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                let with_port = if host.contains(':') {
                    host.to_string()
                } else {
                    format!("{host}:80")
                };
                c.addr = with_port
                    .parse()
                    .map_err(|_| format!("{s}: the host must be an IPv4 address (and port)"))?;
                c.host = host.to_string();
                c.path = path.to_string();
            }
            s => return Err(format!("unknown argument {s:?} (see --help)")),
        }
    }
    if c.listeners == 0 || c.listeners > 1_000_000 {
        return Err("--listeners must be in 1..=1000000".into());
    }
    if c.rate.is_nan() || c.rate <= 0.0 {
        return Err("--rate must be positive".into());
    }
    if !(c.seconds > 0.0 && c.seconds <= 3600.0) {
        return Err("--seconds must be in (0, 3600]".into());
    }
    if !(0.0..=1.0).contains(&c.slow_fraction) {
        return Err("--slow-fraction must be in [0, 1]".into());
    }
    if c.slow_bps == 0 || c.threads == 0 {
        return Err("--slow-bps and --threads must be positive".into());
    }
    if c.timeout.is_zero() || c.timeout > Duration::from_secs(600) {
        return Err("--timeout must be in (0, 600]".into());
    }
    if c.spread && !c.addr.ip().is_loopback() {
        c.spread = false;
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Per-connection state, shared with the reporting code through atomics.

mod st {
    /// Connecting, or never started (a zeroed slot).
    #[allow(dead_code)]
    pub const PENDING: u8 = 0;
    pub const STREAMING: u8 = 1;
    /// Streaming, then the server closed the connection (EOF).
    pub const CLOSED: u8 = 2;
    /// Streaming, then the connection was reset or failed.
    pub const BROKEN: u8 = 3;
    /// The window ended with this connection still streaming: held.
    pub const HELD: u8 = 4;
    pub const FAIL_REFUSED: u8 = 10;
    pub const FAIL_RESET: u8 = 11;
    pub const FAIL_TIMEOUT: u8 = 12;
    pub const FAIL_HTTP: u8 = 13;
    pub const FAIL_OTHER: u8 = 14;
}

#[derive(Default)]
struct Slot {
    state: AtomicU8,
    /// Body bytes received so far.
    bytes: AtomicU64,
    /// Body bytes at the window's start and end (u64::MAX = not recorded).
    win0: AtomicU64,
    win1: AtomicU64,
    /// When they were recorded, microseconds since the run began.
    win0_us: AtomicU64,
    win1_us: AtomicU64,
    /// Byte count and time (µs since the run began) right after the first and the latest read
    /// that brought data inside the window (u64::MAX = none yet): the bitrate between two
    /// arrivals is exact whatever the server's write batching, where the edges cut a batch.
    arr0: AtomicU64,
    arr0_us: AtomicU64,
    arr1: AtomicU64,
    arr1_us: AtomicU64,
    /// Microseconds from the start of `connect` to the first body byte (0 = none).
    ttfb_us: AtomicU32,
    /// Microseconds from the start of `connect` to `--burst-bytes` body bytes (0 = none).
    burst_us: AtomicU32,
    /// Microseconds from the window's start to a drop (CLOSED/BROKEN after streaming).
    dropped_after_ms: AtomicU32,
    /// HTTP status when not 200, or errno for FAIL_OTHER.
    detail: AtomicU32,
}

struct Shared {
    cfg: Config,
    slots: Vec<Slot>,
    resolved: AtomicUsize,
    request: Vec<u8>,
    window_start: std::sync::OnceLock<Instant>,
    /// The run's start, for the edge timestamps.
    epoch: Instant,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

enum ReadOutcome {
    /// Bytes read; 0 only with `WouldBlock` = nothing more now.
    Data(usize),
    WouldBlock,
    Eof,
    Err(io::Error),
}

/// One non-blocking read of at most `max` bytes through this thread's shared buffer; `f` sees the
/// bytes (used only while reading the response head).
fn read_now(stream: &TcpStream, max: usize, f: impl FnOnce(&[u8])) -> ReadOutcome {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        let max = max.min(b.len());
        match stream.try_read(&mut b[..max]) {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => {
                f(&b[..n]);
                ReadOutcome::Data(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) => ReadOutcome::Err(e),
        }
    })
}

fn set_rcvlowat(stream: &TcpStream, bytes: usize) {
    let v: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The server sent its FIN (the socket is in CLOSE_WAIT), whatever is still unread.
fn peer_closed(stream: &TcpStream) -> bool {
    // SAFETY: TCP_INFO fills at most `len` bytes of a zeroed `tcp_info`.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        );
        // 8 = TCP_CLOSE_WAIT in the kernel's numbering of tcpi_state.
        r == 0 && info.tcpi_state == 8
    }
}

fn micros_since(t: Instant) -> u32 {
    t.elapsed().as_micros().clamp(1, u32::MAX as u128) as u32
}

fn classify(e: &io::Error) -> (u8, u32) {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => (st::FAIL_REFUSED, 0),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => (st::FAIL_RESET, 0),
        io::ErrorKind::TimedOut => (st::FAIL_TIMEOUT, 0),
        _ => (st::FAIL_OTHER, e.raw_os_error().unwrap_or(0) as u32),
    }
}

/// Marks a connection that never started streaming as failed.
fn fail(shared: &Shared, slot: &Slot, state: u8, detail: u32) {
    slot.detail.store(detail, Ordering::Relaxed);
    slot.state.store(state, Ordering::Release);
    shared.resolved.fetch_add(1, Ordering::AcqRel);
}

/// One listener: connect, request, read the head and the first body byte within the timeout, then
/// stream until the window closes (or the server drops it).
async fn listener(shared: Arc<Shared>, i: usize, slow: bool, mut phase: watch::Receiver<u8>) {
    let cfg = &shared.cfg;
    let slot = &shared.slots[i];
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + cfg.timeout);

    let stream = match tokio::time::timeout_at(deadline, connect(cfg, i, slow)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let (s, d) = classify(&e);
            return fail(&shared, slot, s, d);
        }
        Err(_) => return fail(&shared, slot, st::FAIL_TIMEOUT, 0),
    };
    let head = async {
        write_all(&stream, &shared.request).await?;
        read_head(&stream, slot, started).await
    };
    match tokio::time::timeout_at(deadline, head).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(status))) => return fail(&shared, slot, st::FAIL_HTTP, status),
        Ok(Err(e)) => {
            let (s, d) = classify(&e);
            return fail(&shared, slot, s, d);
        }
        Err(_) => return fail(&shared, slot, st::FAIL_TIMEOUT, 0),
    }
    slot.state.store(st::STREAMING, Ordering::Release);
    shared.resolved.fetch_add(1, Ordering::AcqRel);

    let end = if slow {
        stream_slow(&shared, &stream, slot, &mut phase).await
    } else {
        stream_fast(&shared, &stream, slot, started, &mut phase).await
    };
    if end != st::HELD
        && let Some(w) = shared.window_start.get()
    {
        slot.dropped_after_ms.store(
            w.elapsed().as_millis().min(u32::MAX as u128) as u32,
            Ordering::Relaxed,
        );
    }
    slot.state.store(end, Ordering::Release);
}

async fn connect(cfg: &Config, i: usize, slow: bool) -> io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if cfg.spread {
        let last = 2 + (i as u32 % SPREAD) as u8;
        sock.bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))?;
    }
    if slow {
        // A small receive buffer, so a slow reader falls behind the server soon, as a real one
        // on a slow link does.
        sock.set_recv_buffer_size(16 * 1024)?;
    }
    sock.connect(cfg.addr).await
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the response head. `Ok(Err(status))` for a non-200 answer. Returns once at least one body
/// byte has arrived.
async fn read_head(
    stream: &TcpStream,
    slot: &Slot,
    started: Instant,
) -> io::Result<Result<(), u32>> {
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let mut body_seen: Option<usize> = None;
    loop {
        stream.readable().await?;
        loop {
            let mut body = 0usize;
            let mut over = false;
            let r = read_now(stream, READ_BUF, |bytes| {
                if body_seen.is_some() {
                    body = bytes.len();
                    return;
                }
                let old = head.len();
                head.extend_from_slice(bytes);
                if let Some(end) = find_head_end(&head, old.saturating_sub(3)) {
                    body = head.len() - end;
                    head.truncate(end);
                    body_seen = Some(0);
                } else if head.len() > MAX_HEAD {
                    over = true;
                }
            });
            match r {
                ReadOutcome::Data(_) => {
                    if over {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
                    }
                    if body_seen.is_some() {
                        let status = parse_status(&head);
                        if status != 200 {
                            return Ok(Err(status));
                        }
                        if body > 0 {
                            slot.ttfb_us.store(micros_since(started), Ordering::Relaxed);
                            slot.bytes.store(body as u64, Ordering::Relaxed);
                            return Ok(Ok(()));
                        }
                    }
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    if body_seen.is_some() {
                        let status = parse_status(&head);
                        if status != 200 {
                            return Ok(Err(status));
                        }
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "closed before the first body byte",
                    ));
                }
                ReadOutcome::Err(e) => return Err(e),
            }
        }
    }
}

fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}

/// `HTTP/1.x 200 …` or `ICY 200 OK` → 200; 0 when unreadable.
fn parse_status(head: &[u8]) -> u32 {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Snapshot the byte count at a window edge (phase 1 = start, 2 = end), and when it was taken, so
/// each listener's bitrate is over its own exact interval.
fn record_edge(shared: &Shared, slot: &Slot, phase: u8) {
    let b = slot.bytes.load(Ordering::Relaxed);
    let at = shared.epoch.elapsed().as_micros() as u64;
    match phase {
        1 => {
            slot.win0.store(b, Ordering::Relaxed);
            slot.win0_us.store(at, Ordering::Relaxed);
        }
        2 => {
            slot.win1.store(b, Ordering::Relaxed);
            slot.win1_us.store(at, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Records a read inside the window (see `Slot::arr0`).
fn record_arrival(shared: &Shared, slot: &Slot) {
    let b = slot.bytes.load(Ordering::Relaxed);
    let at = shared.epoch.elapsed().as_micros() as u64;
    if slot.arr0.load(Ordering::Relaxed) == u64::MAX {
        slot.arr0.store(b, Ordering::Relaxed);
        slot.arr0_us.store(at, Ordering::Relaxed);
    } else {
        slot.arr1.store(b, Ordering::Relaxed);
        slot.arr1_us.store(at, Ordering::Relaxed);
    }
}

/// Drains everything the socket holds now. `Err(state)` when the connection ended.
///
/// Reads with `recv(MSG_DONTWAIT)` on the descriptor, not through tokio: tokio's `try_read` answers
/// `WouldBlock` without a system call while its cached readiness is clear, which under
/// `SO_RCVLOWAT` hides up to `--lowat` bytes the kernel already holds, and the window's edges must
/// count those.
fn drain(stream: &TcpStream, slot: &Slot) -> Result<(), u8> {
    let fd = stream.as_raw_fd();
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        // Bounded: a socket holds at most its receive buffer (a few MiB); 4096 × 64 KiB is more.
        for _ in 0..4096 {
            // SAFETY: a valid socket fd and a buffer of the given length.
            let n = unsafe {
                libc::recv(
                    fd,
                    b.as_mut_ptr() as *mut libc::c_void,
                    b.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                slot.bytes.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            if n == 0 {
                return Err(st::CLOSED);
            }
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => Err(st::BROKEN),
            };
        }
        Ok(())
    })
}

async fn stream_fast(
    shared: &Shared,
    stream: &TcpStream,
    slot: &Slot,
    started: Instant,
    phase: &mut watch::Receiver<u8>,
) -> u8 {
    let burst = shared.cfg.burst_bytes;
    let mut burst_done = burst == 0;
    let mut lowat_set = false;
    let mut in_window = false;
    loop {
        tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    return st::BROKEN;
                }
                let p = *phase.borrow_and_update();
                if let Err(s) = drain(stream, slot) {
                    return s;
                }
                record_edge(shared, slot, p);
                if p >= 2 {
                    return st::HELD;
                }
                in_window = p == 1;
            }
            ready = stream.readable() => {
                if ready.is_err() {
                    return st::BROKEN;
                }
                // Through tokio, so that a `WouldBlock` clears its readiness and the task sleeps.
                for _ in 0..4096 {
                    match read_now(stream, READ_BUF, |_| {}) {
                        ReadOutcome::Data(n) => {
                            slot.bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        ReadOutcome::WouldBlock => break,
                        ReadOutcome::Eof => return st::CLOSED,
                        ReadOutcome::Err(_) => return st::BROKEN,
                    }
                }
                if in_window {
                    record_arrival(shared, slot);
                }
                if !burst_done && slot.bytes.load(Ordering::Relaxed) >= burst {
                    burst_done = true;
                    slot.burst_us.store(micros_since(started), Ordering::Relaxed);
                }
                if burst_done && !lowat_set && shared.cfg.lowat > 0 {
                    lowat_set = true;
                    set_rcvlowat(stream, shared.cfg.lowat);
                }
            }
        }
    }
}

async fn stream_slow(
    shared: &Shared,
    stream: &TcpStream,
    slot: &Slot,
    phase: &mut watch::Receiver<u8>,
) -> u8 {
    let bps = shared.cfg.slow_bps;
    // At most a tenth of a second's worth per read, then wait until the budget allows more.
    let chunk = (bps / 10).max(1) as usize;
    let t0 = tokio::time::Instant::now();
    let mut taken: u64 = 0;
    loop {
        let due = t0 + Duration::from_secs_f64(taken as f64 / bps as f64);
        tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    return st::BROKEN;
                }
                let p = *phase.borrow_and_update();
                record_edge(shared, slot, p);
                if p >= 2 {
                    return st::HELD;
                }
            }
            ready = async {
                tokio::time::sleep_until(due).await;
                stream.readable().await
            } => {
                if ready.is_err() {
                    return st::BROKEN;
                }
                match read_now(stream, chunk, |_| {}) {
                    ReadOutcome::Data(n) => {
                        taken += n as u64;
                        slot.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    ReadOutcome::WouldBlock => {}
                    ReadOutcome::Eof => return st::CLOSED,
                    ReadOutcome::Err(_) => return st::BROKEN,
                }
                // A slow reader would see the server's close only after reading what the kernel
                // still holds, seconds later: the connection's state shows it at once.
                if peer_closed(stream) {
                    return st::CLOSED;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

#[derive(Clone, Copy, Default)]
struct ProcSample {
    /// utime + stime, seconds.
    cpu: f64,
    rss_kib: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu: (utime + stime) / clock_ticks(),
        rss_kib,
    })
}

fn raise_nofile() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
        r.rlim_cur
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn jnum(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        "null".into()
    }
}

fn jstr(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

struct Measure {
    ramp_secs: f64,
    window_secs: f64,
    server_before: Option<ProcSample>,
    server_t0: Option<ProcSample>,
    server_t1: Option<ProcSample>,
    self_t0: ProcSample,
    self_t1: ProcSample,
    nofile: u64,
}

fn report(shared: &Shared, slow_set: &[bool], m: &Measure) {
    let cfg = &shared.cfg;
    let n = cfg.listeners;
    let (mut refused, mut reset, mut timeout, mut http, mut other) = (0, 0, 0, 0, 0);
    let (mut held, mut dropped, mut pending) = (0usize, 0usize, 0usize);
    let (mut slow_n, mut slow_held, mut slow_dropped) = (0usize, 0usize, 0usize);
    let mut slow_drop_ms = Vec::new();
    let mut http_codes: Vec<u32> = Vec::new();
    let mut other_errnos: Vec<u32> = Vec::new();
    let mut kbps = Vec::new();
    let mut edge_kbps = Vec::new();
    let mut slow_kbps = Vec::new();
    let mut ttfb = Vec::new();
    let mut burst = Vec::new();
    let expect = cfg.expect_kbps;
    let mut below = 0usize;
    for (i, s) in shared.slots.iter().enumerate() {
        let state = s.state.load(Ordering::Acquire);
        let slow = slow_set[i];
        let t = s.ttfb_us.load(Ordering::Relaxed);
        if t > 0 {
            ttfb.push(t as f64 / 1000.0);
        }
        let b = s.burst_us.load(Ordering::Relaxed);
        if b > 0 {
            burst.push(b as f64 / 1000.0);
        }
        if slow {
            slow_n += 1;
        }
        match state {
            st::HELD => {
                let w0 = s.win0.load(Ordering::Relaxed);
                let w1 = s.win1.load(Ordering::Relaxed);
                let secs = s
                    .win1_us
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.win0_us.load(Ordering::Relaxed))
                    as f64
                    / 1e6;
                let edge_k = if w0 == u64::MAX || w1 == u64::MAX || w1 < w0 || secs <= 0.0 {
                    0.0
                } else {
                    (w1 - w0) as f64 * 8.0 / 1000.0 / secs
                };
                let (a0, a1) = (s.arr0.load(Ordering::Relaxed), s.arr1.load(Ordering::Relaxed));
                let arr_secs = s
                    .arr1_us
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.arr0_us.load(Ordering::Relaxed))
                    as f64
                    / 1e6;
                // Between arrivals when they span at least half the window; a listener that got
                // little or nothing in the window is judged by the edges.
                let k = if a0 != u64::MAX && a1 != u64::MAX && a1 >= a0 && arr_secs >= secs / 2.0 {
                    (a1 - a0) as f64 * 8.0 / 1000.0 / arr_secs
                } else {
                    edge_k
                };
                if slow {
                    slow_held += 1;
                    slow_kbps.push(k);
                    continue;
                }
                held += 1;
                if k < expect * 0.99 {
                    below += 1;
                }
                kbps.push(k);
                edge_kbps.push(edge_k);
            }
            st::CLOSED | st::BROKEN => {
                if slow {
                    slow_dropped += 1;
                    slow_drop_ms.push(s.dropped_after_ms.load(Ordering::Relaxed) as f64);
                } else {
                    dropped += 1;
                }
            }
            st::FAIL_REFUSED => refused += 1,
            st::FAIL_RESET => reset += 1,
            st::FAIL_TIMEOUT => timeout += 1,
            st::FAIL_HTTP => {
                http += 1;
                let c = s.detail.load(Ordering::Relaxed);
                if !http_codes.contains(&c) {
                    http_codes.push(c);
                }
            }
            st::FAIL_OTHER => {
                other += 1;
                let c = s.detail.load(Ordering::Relaxed);
                if !other_errnos.contains(&c) {
                    other_errnos.push(c);
                }
            }
            // Still "streaming" after the grace period: it never recorded the window's end.
            _ => pending += 1,
        }
    }
    let failed = refused + reset + timeout + http + other;
    let kbps = sorted(kbps);
    let edge_kbps = sorted(edge_kbps);
    let slow_kbps = sorted(slow_kbps);
    let ttfb = sorted(ttfb);
    let burst = sorted(burst);
    let slow_drop_ms = sorted(slow_drop_ms);
    let all_held = held + slow_held;

    let server_cpu = match (m.server_t0, m.server_t1) {
        (Some(a), Some(b)) => Some((b.cpu - a.cpu) / m.window_secs * 100.0),
        _ => None,
    };
    let server_ramp_cpu = match (m.server_before, m.server_t0) {
        (Some(a), Some(b)) => Some(b.cpu - a.cpu),
        _ => None,
    };
    let per_1k = server_cpu.map(|c| {
        if all_held > 0 {
            c / all_held as f64 * 1000.0
        } else {
            f64::NAN
        }
    });
    let rss_before = m.server_before.map(|s| s.rss_kib);
    let rss_during = m.server_t1.map(|s| s.rss_kib);
    let rss_per = match (rss_before, rss_during) {
        (Some(a), Some(b)) if all_held > 0 => {
            Some((b as f64 - a as f64) * 1024.0 / all_held as f64)
        }
        _ => None,
    };
    let self_cpu = (m.self_t1.cpu - m.self_t0.cpu) / m.window_secs * 100.0;

    let mut t = String::new();
    let title = if cfg.label.is_empty() {
        format!("http://{}{}", cfg.host, cfg.path)
    } else {
        format!("{} (http://{}{})", cfg.label, cfg.host, cfg.path)
    };
    let _ = writeln!(t, "== loadgen: {title}");
    let _ = writeln!(
        t,
        "   {} listeners, {}, window {:.0} s{}{}",
        n,
        if cfg.storm {
            "all at once (storm)".to_string()
        } else {
            format!("{:.0}/s", cfg.rate)
        },
        m.window_secs,
        if cfg.icy { ", Icy-MetaData: 1" } else { "" },
        if slow_n > 0 {
            format!(", {slow_n} slow readers at {} B/s", cfg.slow_bps)
        } else {
            String::new()
        }
    );
    let _ = writeln!(t, "   ramp (connect phase)         {:>10.1} s", m.ramp_secs);
    let _ = writeln!(
        t,
        "   held at the window's end     {all_held:>10}   (normal {held}, slow {slow_held})"
    );
    let _ = writeln!(
        t,
        "   dropped during the window    {dropped:>10}   (slow readers dropped: {slow_dropped})"
    );
    let _ = writeln!(
        t,
        "   failed                       {failed:>10}   (refused {refused}, reset {reset}, timeout {timeout}, http {http} {:?}, other {other} {:?})",
        http_codes, other_errnos
    );
    if pending > 0 {
        let _ = writeln!(t, "   unresolved                   {pending:>10}");
    }
    let _ = writeln!(
        t,
        "   bitrate kbps (held, normal)  min {:.1}  p1 {:.1}  median {:.1}   below 99 % of {:.0}: {}",
        pct(&kbps, 0.0),
        pct(&kbps, 1.0),
        pct(&kbps, 50.0),
        expect,
        below
    );
    let _ = writeln!(
        t,
        "     (between each listener's first and last arrival in the window; edge to edge, which\n      \
         cuts the server's write batches: min {:.1}  p1 {:.1}  median {:.1})",
        pct(&edge_kbps, 0.0),
        pct(&edge_kbps, 1.0),
        pct(&edge_kbps, 50.0),
    );
    let _ = writeln!(
        t,
        "   first byte ms                p50 {:.1}  p99 {:.1}  max {:.1}   ({} answered)",
        pct(&ttfb, 50.0),
        pct(&ttfb, 99.0),
        pct(&ttfb, 100.0),
        ttfb.len()
    );
    if cfg.burst_bytes > 0 {
        let _ = writeln!(
            t,
            "   first {} bytes ms         p50 {:.1}  p99 {:.1}  max {:.1}",
            cfg.burst_bytes,
            pct(&burst, 50.0),
            pct(&burst, 99.0),
            pct(&burst, 100.0)
        );
    }
    if !slow_kbps.is_empty() {
        let _ = writeln!(
            t,
            "   bitrate kbps (held, slow)    min {:.1}  median {:.1}  max {:.1}",
            pct(&slow_kbps, 0.0),
            pct(&slow_kbps, 50.0),
            pct(&slow_kbps, 100.0)
        );
    }
    if slow_dropped > 0 {
        let _ = writeln!(
            t,
            "   slow readers dropped after   p50 {:.1} s  max {:.1} s (from the window's start)",
            pct(&slow_drop_ms, 50.0) / 1000.0,
            pct(&slow_drop_ms, 100.0) / 1000.0
        );
    }
    if let Some(pid) = cfg.pid {
        let _ = writeln!(
            t,
            "   server pid {pid}: CPU {} % of a core over the window = {} % per 1,000 listeners; {} CPU s during the ramp",
            server_cpu.map_or("?".into(), |c| format!("{c:.1}")),
            per_1k.map_or("?".into(), |c| format!("{c:.2}")),
            server_ramp_cpu.map_or("?".into(), |c| format!("{c:.2}"))
        );
        let _ = writeln!(
            t,
            "   server RSS {} MiB before, {} MiB during = {} KiB per listener",
            rss_before.map_or("?".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            rss_during.map_or("?".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            rss_per.map_or("?".into(), |r| format!("{:.2}", r / 1024.0))
        );
    }
    let _ = writeln!(
        t,
        "   loadgen itself: CPU {:.1} % of a core over the window, RSS {:.1} MiB, {} threads, nofile {}",
        self_cpu,
        m.self_t1.rss_kib as f64 / 1024.0,
        cfg.threads,
        m.nofile
    );
    if cfg.json {
        eprint!("{t}");
    } else {
        print!("{t}");
    }

    if cfg.json {
        let o = |x: Option<f64>| x.map_or("null".to_string(), jnum);
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\"label\":{},\"url\":{},\"asked\":{},\"storm\":{},\"rate\":{},\"window_s\":{},\"icy\":{},\
\"ramp_s\":{},\"held\":{},\"held_normal\":{},\"held_slow\":{},\"dropped\":{},\"slow\":{},\"slow_dropped\":{},\
\"failed\":{},\"refused\":{},\"reset\":{},\"timeout\":{},\"http_error\":{},\"other_error\":{},\"unresolved\":{},\
\"kbps_min\":{},\"kbps_p1\":{},\"kbps_median\":{},\"below_99pct\":{},\"expect_kbps\":{},\
\"answered\":{},\"ttfb_ms_p50\":{},\"ttfb_ms_p99\":{},\"ttfb_ms_max\":{},\
\"burst_bytes\":{},\"burst_ms_p50\":{},\"burst_ms_p99\":{},\"burst_ms_max\":{},\
\"slow_drop_s_p50\":{},\"slow_kbps_median\":{},\
\"server_cpu_pct\":{},\"server_cpu_pct_per_1k\":{},\"server_ramp_cpu_s\":{},\
\"server_rss_before_kib\":{},\"server_rss_during_kib\":{},\"server_rss_per_listener_b\":{},\
\"self_cpu_pct\":{},\"self_rss_kib\":{}}}",
            jstr(&cfg.label),
            jstr(&format!("http://{}{}", cfg.host, cfg.path)),
            n,
            cfg.storm,
            jnum(cfg.rate),
            jnum(m.window_secs),
            cfg.icy,
            jnum(m.ramp_secs),
            all_held,
            held,
            slow_held,
            dropped,
            slow_n,
            slow_dropped,
            failed,
            refused,
            reset,
            timeout,
            http,
            other,
            pending,
            jnum(pct(&kbps, 0.0)),
            jnum(pct(&kbps, 1.0)),
            jnum(pct(&kbps, 50.0)),
            below,
            jnum(expect),
            ttfb.len(),
            jnum(pct(&ttfb, 50.0)),
            jnum(pct(&ttfb, 99.0)),
            jnum(pct(&ttfb, 100.0)),
            cfg.burst_bytes,
            jnum(pct(&burst, 50.0)),
            jnum(pct(&burst, 99.0)),
            jnum(pct(&burst, 100.0)),
            jnum(pct(&slow_drop_ms, 50.0) / 1000.0),
            jnum(pct(&slow_kbps, 50.0)),
            o(server_cpu),
            o(per_1k),
            o(server_ramp_cpu),
            rss_before.map_or("null".into(), |r| r.to_string()),
            rss_during.map_or("null".into(), |r| r.to_string()),
            o(rss_per),
            jnum(self_cpu),
            m.self_t1.rss_kib,
        );
        println!("{j}");
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    if (nofile as usize) < cfg.listeners + 32 {
        eprintln!(
            "loadgen: warning: RLIMIT_NOFILE is {nofile}, too low for {} connections",
            cfg.listeners
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(cfg, nofile));
    // Do not wait for thousands of sockets to be torn down one by one by the runtime's drop.
    std::process::exit(0);
}

async fn run(cfg: Config, nofile: u64) {
    let n = cfg.listeners;
    let mut request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: onair-loadgen/0.1\r\nAccept: */*\r\n",
        cfg.path, cfg.host
    );
    if cfg.icy {
        request.push_str("Icy-MetaData: 1\r\n");
    }
    request.push_str("\r\n");
    // Slow listeners spread evenly over the connection order.
    let slow_set: Vec<bool> = (0..n)
        .map(|i| {
            let f = cfg.slow_fraction;
            ((i + 1) as f64 * f).floor() > (i as f64 * f).floor()
        })
        .collect();
    let slots: Vec<Slot> = (0..n)
        .map(|_| Slot {
            win0: AtomicU64::new(u64::MAX),
            win1: AtomicU64::new(u64::MAX),
            arr0: AtomicU64::new(u64::MAX),
            arr1: AtomicU64::new(u64::MAX),
            ..Slot::default()
        })
        .collect();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        slots,
        resolved: AtomicUsize::new(0),
        request: request.into_bytes(),
        window_start: std::sync::OnceLock::new(),
        epoch: Instant::now(),
    });
    let pid = cfg.pid.map(|p| p.to_string());
    let server_sample = || pid.as_deref().and_then(sample);
    let self_sample = || sample("self").unwrap_or_default();
    if let Some(p) = &pid
        && server_sample().is_none()
    {
        eprintln!("loadgen: warning: cannot read /proc/{p}: no server figures");
    }

    let (phase_tx, phase_rx) = watch::channel(0u8);
    let server_before = server_sample();
    let ramp_start = Instant::now();

    // Ramp: bounded by N spawns, paced by the rate (or none for a storm).
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    for (i, &slow) in slow_set.iter().enumerate() {
        if !cfg.storm {
            let due = ramp_start + interval.mul_f64(i as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
        }
        tokio::spawn(listener(Arc::clone(&shared), i, slow, phase_rx.clone()));
    }
    drop(phase_rx);
    // Every connection resolves within its own timeout; wait at most that (plus a margin).
    let resolve_by = Instant::now() + cfg.timeout + Duration::from_secs(2);
    while shared.resolved.load(Ordering::Acquire) < n && Instant::now() < resolve_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    if !cfg.json {
        eprintln!(
            "loadgen: {} of {n} resolved after {ramp_secs:.1} s; measuring for {:.0} s",
            shared.resolved.load(Ordering::Acquire),
            cfg.seconds
        );
    }

    // Window.
    let w0 = Instant::now();
    let _ = shared.window_start.set(w0);
    let server_t0 = server_sample();
    let self_t0 = self_sample();
    let _ = phase_tx.send(1);
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        w0 + Duration::from_secs_f64(cfg.seconds),
    ))
    .await;
    let server_t1 = server_sample();
    let self_t1 = self_sample();
    let window_secs = w0.elapsed().as_secs_f64();
    let _ = phase_tx.send(2);

    // Every streaming task records the window's end and stops; wait for them, bounded.
    let grace = Instant::now()
        + (SNAPSHOT_GRACE + SNAPSHOT_GRACE_PER_LISTENER * n as u32).min(SNAPSHOT_GRACE_MAX);
    loop {
        let open = shared
            .slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == st::STREAMING)
            .count();
        if open == 0 || Instant::now() >= grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report(
        &shared,
        &slow_set,
        &Measure {
            ramp_secs,
            window_secs,
            server_before,
            server_t0,
            server_t1,
            self_t0,
            self_t1,
            nofile,
        },
    );
}
