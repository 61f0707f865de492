//! One listener's task, from connect to the window's end: connect (from a spread source address),
//! send the request, read the response head and the first body byte within the timeout, then
//! stream, fast or deliberately slow, recording the byte count at the window's edges and at each
//! arrival inside it. Every socket read goes through one buffer per worker thread.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::cli::Config;
use crate::slot::{Shared, Slot, phase, st};

/// Source addresses 127.0.0.2..=127.0.0.254.
const SPREAD: u32 = 253;
pub const READ_BUF: usize = 64 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

pub enum ReadOutcome {
    /// Bytes read; 0 only with `WouldBlock` = nothing more now.
    Data(usize),
    WouldBlock,
    Eof,
    Err(io::Error),
}

/// One non-blocking read of at most `max` bytes through this thread's shared buffer; `f` sees the
/// bytes (used only while reading the response head).
pub fn read_now(stream: &TcpStream, max: usize, f: impl FnOnce(&[u8])) -> ReadOutcome {
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

pub fn set_rcvlowat(stream: &TcpStream, bytes: usize) {
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
        io::ErrorKind::UnexpectedEof => (st::FAIL_CLOSED, 0),
        _ => (st::FAIL_OTHER, e.raw_os_error().unwrap_or(0) as u32),
    }
}

/// A connection that got a `200` head and its first body byte.
pub struct Opened {
    pub stream: TcpStream,
    /// Body bytes already read with the head.
    pub body: u64,
    /// Microseconds from the start of `connect` to the first body byte.
    pub ttfb_us: u32,
}

/// Why a connection never streamed.
pub struct Failed {
    /// One of the `st::FAIL_*` states.
    pub state: u8,
    /// The HTTP status for `FAIL_HTTP`, the errno for `FAIL_OTHER`, else 0.
    pub detail: u32,
    /// The `Retry-After` seconds of a non-200 answer that carried one.
    pub retry_after: Option<u32>,
}

impl Failed {
    fn io(e: &io::Error) -> Failed {
        let (state, detail) = classify(e);
        Failed {
            state,
            detail,
            retry_after: None,
        }
    }

    fn timeout() -> Failed {
        Failed {
            state: st::FAIL_TIMEOUT,
            detail: 0,
            retry_after: None,
        }
    }
}

/// The request head every listener sends.
pub fn request(cfg: &Config) -> Vec<u8> {
    let mut request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: onair-loadgen/0.1\r\nAccept: */*\r\n",
        cfg.path, cfg.host
    );
    if cfg.icy {
        request.push_str("Icy-MetaData: 1\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Connects listener `i` (from its spread source address), sends `request`, and reads the
/// response head and the first body byte, all within `--timeout`.
pub async fn open(cfg: &Config, request: &[u8], i: usize, slow: bool) -> Result<Opened, Failed> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + cfg.timeout);
    let stream = match tokio::time::timeout_at(deadline, connect(cfg, i, slow)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failed::io(&e)),
        Err(_) => return Err(Failed::timeout()),
    };
    let head = async {
        write_all(&stream, request).await?;
        read_head(&stream).await
    };
    match tokio::time::timeout_at(deadline, head).await {
        Ok(Ok(Ok(body))) => Ok(Opened {
            stream,
            body: body as u64,
            ttfb_us: micros_since(started),
        }),
        Ok(Ok(Err((status, retry_after)))) => Err(Failed {
            state: st::FAIL_HTTP,
            detail: status,
            retry_after,
        }),
        Ok(Err(e)) => Err(Failed::io(&e)),
        Err(_) => Err(Failed::timeout()),
    }
}

/// Marks a connection that never started streaming as failed.
fn fail(shared: &Shared, slot: &Slot, f: Failed) {
    slot.detail.store(f.detail, Ordering::Relaxed);
    slot.retry_after
        .store(f.retry_after.unwrap_or(0), Ordering::Relaxed);
    slot.state.store(f.state, Ordering::Release);
    shared.resolved.fetch_add(1, Ordering::AcqRel);
}

/// One listener: connect, request, read the head and the first body byte within the timeout, then
/// stream until the window closes (or the server drops it).
pub async fn run(shared: Arc<Shared>, i: usize, slow: bool, mut phase: watch::Receiver<u8>) {
    let slot = &shared.slots[i];
    let started = Instant::now();
    let stream = match open(&shared.cfg, &shared.request, i, slow).await {
        Ok(o) => {
            slot.ttfb_us.store(o.ttfb_us, Ordering::Relaxed);
            slot.bytes.store(o.body, Ordering::Relaxed);
            o.stream
        }
        Err(f) => return fail(&shared, slot, f),
    };
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

pub(crate) async fn connect(cfg: &Config, i: usize, slow: bool) -> io::Result<TcpStream> {
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

pub async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
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

/// Reads the response head. `Ok(Err((status, retry_after)))` for a non-200 answer. Returns, with
/// the body bytes read so far, once at least one has arrived.
async fn read_head(stream: &TcpStream) -> io::Result<Result<usize, (u32, Option<u32>)>> {
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
                            return Ok(Err((status, retry_after(&head))));
                        }
                        if body > 0 {
                            return Ok(Ok(body));
                        }
                    }
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    if body_seen.is_some() {
                        let status = parse_status(&head);
                        if status != 200 {
                            return Ok(Err((status, retry_after(&head))));
                        }
                    }
                    // No answer, or a 200 head and no body: the server closed on us.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
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

/// The `Retry-After` header's seconds, if the head has one that parses.
fn retry_after(head: &[u8]) -> Option<u32> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("retry-after") {
                return None;
            }
            value.trim().parse().ok()
        })
}

/// Snapshot the byte count at a window edge (`phase::WINDOW` = start, `phase::END` = end), and when
/// it was taken, so each listener's bitrate is over its own exact interval.
fn record_edge(shared: &Shared, slot: &Slot, edge: u8) {
    let b = slot.bytes.load(Ordering::Relaxed);
    let at = shared.epoch.elapsed().as_micros() as u64;
    match edge {
        phase::WINDOW => {
            slot.win0.store(b, Ordering::Relaxed);
            slot.win0_us.store(at, Ordering::Relaxed);
        }
        phase::END => {
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

/// Reads as fast as the server sends; returns the final state (`st::HELD` at the window's end).
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
                if p >= phase::END {
                    return st::HELD;
                }
                in_window = p == phase::WINDOW;
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

/// Reads at most `--slow-bps`, as a listener on a slow link does; returns the final state.
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
                if p >= phase::END {
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
