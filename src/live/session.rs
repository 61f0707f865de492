//! A source's connection, from its head to its last byte. The accept path hands over a parsed
//! [`SourceRequest`]; the desk logs it in, applies the busy and replace rules, answers, and then
//! a task reads the socket (de-chunking, bounded by `source_timeout`) into a bounded channel
//! that the session's own decoder thread (`decoder.rs`) turns into station PCM on the live feed.
//! No decoding runs on a tokio worker, and nothing a source sends is decoded before it has
//! logged in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::{SourceAuth, Verdict};
use super::chunked::Dechunker;
use super::decoder::{Decoder, EarlyTitle};
use super::feed::{LiveFeed, SessionInfo};
use super::handshake::{self, Body, Credentials, Format, Method, SourceRequest};
use super::record::{Recorder, Tap};
use crate::config::{Audio, Config, Live};
use crate::metrics::Metrics;
use crate::title::StreamTitle;

/// The same DJ may replace their own session once it has sent nothing for this long (a
/// reconnect after a dead link, before the old socket times out).
pub const REPLACE_AFTER: Duration = Duration::from_secs(2);
/// Time the first audio has to probe as MP3 or AAC.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time an Ogg stream has: an Ogg page holds up to a second of audio (ffmpeg's and libshout's
/// encoders flush one a second), and the reader needs the header pages and the first audio page.
pub const OGG_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How late a failed login is answered: a guesser on one connection gets two tries a second.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);
/// Chunks of received bytes between the socket task and the decoder thread.
const CHANNEL_CHUNKS: usize = 32;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Where sources log in: one per radio, shared by every connection.
pub struct LiveDesk {
    settings: Live,
    auth: SourceAuth,
    feed: Arc<LiveFeed>,
    metrics: Metrics,
    audio: Audio,
    /// Listener mount paths: a source sent to one is taken as sent to `settings.mount`.
    mounts: Vec<String>,
    current: Mutex<Option<Current>>,
    next_id: AtomicU64,
    start: Instant,
    shutdown: CancellationToken,
    /// Records each show, when `[live] record` is on.
    recorder: Option<Arc<Recorder>>,
}

/// The session that holds the desk.
struct Current {
    id: u64,
    user: String,
    /// Milliseconds since the desk's start at the last byte received.
    last_input_ms: Arc<AtomicU64>,
    stop: CancellationToken,
    early_title: EarlyTitle,
}

/// A session's hold on the desk.
struct Seat {
    id: u64,
    last_input_ms: Arc<AtomicU64>,
    stop: CancellationToken,
    early_title: EarlyTitle,
}

/// Why a source was refused before its audio, as the HTTP answer says it.
enum Refusal {
    Closed,
    Unauthorized,
    Waiting(Duration),
}

impl Refusal {
    fn answer(&self) -> Vec<u8> {
        match self {
            Refusal::Closed => handshake::live_off(),
            Refusal::Unauthorized => handshake::unauthorized(),
            Refusal::Waiting(retry_after) => handshake::too_many_logins(*retry_after),
        }
    }
}

/// Why a title update from a source client was refused.
pub enum OwnerRefusal {
    /// No live show is connected.
    NoShow,
    /// Wrong credentials, or another DJ's: answered after `delay`.
    Unauthorized { delay: Duration },
    /// The address failed too many logins.
    Waiting,
}

/// Time a Shoutcast source has for its password line, and again for its `icy-*` lines.
const ICY_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session ended (for the log).
#[derive(Debug, Clone, Copy)]
enum End {
    Closed,
    Timeout,
    Replaced,
    Shutdown,
    NotAudio,
    ReadError,
}

impl LiveDesk {
    pub fn new(
        config: &Config,
        feed: Arc<LiveFeed>,
        metrics: Metrics,
        recorder: Option<Arc<Recorder>>,
        shutdown: CancellationToken,
    ) -> LiveDesk {
        LiveDesk {
            settings: config.live.clone(),
            auth: SourceAuth::new(
                config.server.source_password.clone(),
                config.live.accounts_file.clone(),
            ),
            feed,
            metrics,
            audio: config.audio,
            mounts: config.mounts.iter().map(|m| m.path.clone()).collect(),
            current: Mutex::new(None),
            next_id: AtomicU64::new(1),
            start: Instant::now(),
            shutdown,
            recorder,
        }
    }

    /// Whether anyone can log in.
    pub fn enabled(&self) -> bool {
        self.auth.enabled()
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn counted(&self, result: &str) {
        self.metrics
            .live_connects
            .with_label_values(&[result])
            .inc();
    }

    /// Serves one source connection (`PUT` or `SOURCE` on the main port) to its end. `body`
    /// holds what came after the head.
    pub async fn serve(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        request: SourceRequest,
        body: Bytes,
    ) {
        let candidates: Vec<_> = request.credentials.iter().cloned().collect();
        let user = match self.login(peer, &candidates).await {
            Ok(user) => user,
            Err(refusal) => return write_and_close(stream, &refusal.answer()).await,
        };
        let Some(seat) = self.seat(peer, &user, &request.mount) else {
            let answer = if self.is_source_mount(&request.mount) {
                handshake::busy()
            } else {
                handshake::no_such_mount()
            };
            return write_and_close(stream, &answer).await;
        };
        if stream
            .write_all(&handshake::accepted(&request))
            .await
            .is_err()
        {
            return self.leave(seat.id);
        }
        self.on_air(stream, peer, user, seat, request, body).await;
    }

    /// Serves one Shoutcast v1 source (on the ICY port) to its end: the password line, `OK2`,
    /// the `icy-*` lines, then audio. Refusals are a closed socket, as the clients expect.
    pub async fn serve_icy(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let mut buf = BytesMut::new();
        let deadline = tokio::time::Instant::now() + ICY_HEAD_TIMEOUT;
        let Some(line) = Self::read_line(&mut stream, &mut buf, deadline).await else {
            return;
        };
        let Some(login) = handshake::icy_login(&String::from_utf8_lossy(&line)) else {
            return; // libshout's !POKE: it only wants to see the port open
        };
        let user = match self.login(peer, &login.candidates).await {
            Ok(user) => user,
            Err(_) => return,
        };
        let mount = login.mount.unwrap_or_else(|| self.settings.mount.clone());
        let Some(seat) = self.seat(peer, &user, &mount) else {
            return;
        };
        if stream.write_all(handshake::ICY_OK).await.is_err() {
            return self.leave(seat.id);
        }
        // The icy-* lines up to a blank line (libshout may have sent them with the password).
        let deadline = tokio::time::Instant::now() + ICY_HEAD_TIMEOUT;
        let mut block = Vec::new();
        loop {
            match Self::read_line(&mut stream, &mut buf, deadline).await {
                Some(line) if line.is_empty() => break,
                Some(line) if block.len() + line.len() < handshake::MAX_ICY_HEAD => {
                    block.extend_from_slice(&line);
                    block.push(b'\n');
                }
                _ => return self.leave(seat.id),
            }
        }
        let (info, format) = match handshake::icy_headers(&String::from_utf8_lossy(&block)) {
            Ok(parsed) => parsed,
            Err(refused) => {
                self.counted(refused.label());
                tracing::info!(source = %peer, error = %refused, "ICY source refused");
                return self.leave(seat.id);
            }
        };
        let request = SourceRequest {
            method: Method::Icy,
            mount,
            http11: false,
            credentials: None,
            format,
            expect_continue: false,
            body: Body::UntilClose,
            info,
        };
        self.on_air(stream, peer, user, seat, request, buf.freeze())
            .await;
    }

    /// The next line in `buf` (read from `stream` as needed, within `deadline` and 8 KiB in
    /// all), without its line end; what follows stays in `buf`.
    async fn read_line(
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        deadline: tokio::time::Instant,
    ) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = buf.iter().position(|&b| b == b'\n') {
                let mut line = buf.split_to(at + 1).to_vec();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(line);
            }
            if buf.len() >= handshake::MAX_ICY_HEAD {
                return None;
            }
            buf.reserve(1024);
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Checks a source's credentials; on a refusal, counts and logs it (and waits out the
    /// delay of a failed login).
    async fn login(&self, peer: SocketAddr, candidates: &[Credentials]) -> Result<String, Refusal> {
        match self.auth.check(peer.ip(), candidates) {
            Verdict::Granted { user } => Ok(user),
            Verdict::Closed => {
                self.counted("closed");
                tracing::info!(source = %peer, "source refused: live input is off (no ONAIR_SOURCE_PASSWORD, no accounts file)");
                Err(Refusal::Closed)
            }
            // libshout's first try goes without credentials, expecting a 401.
            Verdict::Missing => Err(Refusal::Unauthorized),
            Verdict::Failed { user, failures } => {
                self.counted("auth");
                tracing::warn!(source = %peer, user = user.as_deref().unwrap_or(""), failures, "source login failed");
                tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                Err(Refusal::Unauthorized)
            }
            Verdict::Waiting { retry_after } => {
                self.counted("auth");
                Err(Refusal::Waiting(retry_after))
            }
        }
    }

    /// The live session whose DJ `candidates` log in as (a title update from their tool).
    pub fn show_owner(
        &self,
        peer: SocketAddr,
        candidates: &[Credentials],
    ) -> Result<u64, OwnerRefusal> {
        // The connected session, decoding yet or not: a tool may name its first song at once.
        let Some((id, owner)) = self.lock_current().as_ref().map(|c| (c.id, c.user.clone())) else {
            return Err(OwnerRefusal::NoShow);
        };
        match self.auth.check(peer.ip(), candidates) {
            Verdict::Granted { user } if user == owner => Ok(id),
            Verdict::Granted { user } => {
                tracing::warn!(source = %peer, user, on_air = %owner, "title update for another DJ's show refused");
                Err(OwnerRefusal::Unauthorized {
                    delay: Duration::ZERO,
                })
            }
            Verdict::Failed { user, failures } => {
                self.counted("auth");
                tracing::warn!(source = %peer, user = user.as_deref().unwrap_or(""), failures, "title update with wrong source credentials");
                Err(OwnerRefusal::Unauthorized {
                    delay: FAILED_LOGIN_DELAY,
                })
            }
            Verdict::Missing | Verdict::Closed => Err(OwnerRefusal::Unauthorized {
                delay: Duration::ZERO,
            }),
            Verdict::Waiting { .. } => Err(OwnerRefusal::Waiting),
        }
    }

    /// A title for session `id` from its DJ's tool ([`Self::show_owner`]), for the audio it
    /// sends next; kept for the show's start when its audio has not decoded yet. False when
    /// the session is gone.
    pub fn push_title(&self, id: u64, title: &str) -> bool {
        let current = self.lock_current();
        let Some(c) = current.as_ref().filter(|c| c.id == id) else {
            return false;
        };
        let mut early = c.early_title.lock().unwrap_or_else(|e| e.into_inner());
        if !self.feed.push_title(id, title) {
            *early = Some(title.to_owned());
        }
        true
    }

    /// Whether a source is connected (on air, or still in its pre-roll or probe).
    pub fn has_source(&self) -> bool {
        self.lock_current().is_some()
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        // One assignment at a time under the lock: a poisoned one is still whole.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether sources may be sent to `mount` (the live mount, or a listener mount).
    pub fn is_source_mount(&self, mount: &str) -> bool {
        mount == self.settings.mount || self.mounts.iter().any(|m| m == mount)
    }

    /// The desk for `user` on `mount`, or `None` (counted and logged) when the mount takes no
    /// sources or another source holds it.
    fn seat(&self, peer: SocketAddr, user: &str, mount: &str) -> Option<Seat> {
        if !self.is_source_mount(mount) {
            self.counted("malformed");
            tracing::info!(source = %peer, mount, live_mount = %self.settings.mount, "source sent to a mount this radio does not take sources on");
            return None;
        }
        let seat = self.take_desk(user);
        if seat.is_none() {
            self.counted("busy");
            tracing::info!(source = %peer, user, "source refused: another source is on air");
        }
        seat
    }

    /// The show, from the source's first audio byte to its last.
    async fn on_air(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        user: String,
        seat: Seat,
        request: SourceRequest,
        body: Bytes,
    ) {
        let info = Arc::new(SessionInfo {
            id: seat.id,
            user,
            peer,
            method: request.method,
            show: request.info.clone(),
            since: SystemTime::now(),
            connected_at: Instant::now(),
            title: Mutex::new(StreamTitle::new("")),
        });
        info.set_title(&format!("Live: {}", info.streamer()));
        tracing::info!(source = %peer, user = %info.user, protocol = request.method.label(), format = ?request.format,
            client = info.show.user_agent.as_deref().unwrap_or(""), "live source connected");
        self.metrics.live_connected.set(1);
        let recording = self
            .recorder
            .as_ref()
            .map(|r| r.join(&info.user, request.format));
        let end = self
            .stream_in(stream, &request, body, Arc::clone(&info), &seat, recording)
            .await;
        tracing::info!(source = %peer, user = %info.user, reason = ?end,
            seconds = info.connected_at.elapsed().as_secs(), "live source disconnected");
        self.leave(seat.id);
    }

    /// Takes the desk for `user`: free, or held by the same user's session that has been
    /// silent for [`REPLACE_AFTER`] (which is told to stop).
    fn take_desk(&self, user: &str) -> Option<Seat> {
        let mut current = self.lock_current();
        if let Some(c) = current.as_ref() {
            let silent = self
                .now_ms()
                .saturating_sub(c.last_input_ms.load(Ordering::Relaxed));
            if c.user != user || silent < REPLACE_AFTER.as_millis() as u64 {
                return None;
            }
            tracing::info!(
                user,
                silent_ms = silent,
                "the same DJ reconnected: replacing the silent session"
            );
            c.stop.cancel();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let last = Arc::new(AtomicU64::new(self.now_ms()));
        let stop = self.shutdown.child_token();
        let early_title = EarlyTitle::default();
        *current = Some(Current {
            id,
            user: user.to_owned(),
            last_input_ms: Arc::clone(&last),
            stop: stop.clone(),
            early_title: Arc::clone(&early_title),
        });
        Some(Seat {
            id,
            last_input_ms: last,
            stop,
            early_title,
        })
    }

    /// Session `id` is over: the desk is free (unless another session took it meanwhile).
    fn leave(&self, id: u64) {
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|c| c.id == id) {
            *current = None;
            self.metrics.live_connected.set(0);
        }
        self.feed.end(id);
    }

    /// Reads the body into the decoder thread until the source stops.
    async fn stream_in(
        &self,
        mut stream: TcpStream,
        request: &SourceRequest,
        first: Bytes,
        info: Arc<SessionInfo>,
        seat: &Seat,
        mut recording: Option<Tap>,
    ) -> End {
        let (last_input_ms, stop) = (&seat.last_input_ms, &seat.stop);
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let peer = info.peer;
        let probed = Arc::new(AtomicBool::new(false));
        let decoder = Decoder {
            feed: Arc::clone(&self.feed),
            info,
            format: request.format,
            audio: self.audio,
            metrics: self.metrics.clone(),
            probed: Arc::clone(&probed),
            early_title: Arc::clone(&seat.early_title),
        };
        if let Err(e) = std::thread::Builder::new()
            .name("onair-live-decode".into())
            .spawn(move || decoder.run(rx))
        {
            tracing::error!(error = %e, "cannot start a live decoder thread");
            return End::ReadError;
        }
        let mut body = BodyReader::new(request.body);
        let probe_timeout = match request.format {
            Format::Ogg => OGG_PROBE_TIMEOUT,
            Format::Mp3 | Format::Aac => PROBE_TIMEOUT,
        };
        let probe_deadline = tokio::time::sleep(probe_timeout);
        tokio::pin!(probe_deadline);
        let mut data = body.feed(first);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if let Some(chunk) = data.take().filter(|c| !c.is_empty()) {
                if let Some(tap) = recording.as_mut() {
                    tap.record(&chunk, probed.load(Ordering::Relaxed));
                }
                if tx.send(chunk).await.is_err() {
                    // The decoder gave up: the stream is not audio it can read.
                    return End::NotAudio;
                }
            }
            if body.done() {
                return End::Closed;
            }
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                _ = stop.cancelled() => {
                    return if self.shutdown.is_cancelled() { End::Shutdown } else { End::Replaced };
                }
                _ = &mut probe_deadline, if !probed.load(Ordering::Relaxed) => {
                    // The guard was read when this wait began: a source that sent its start
                    // in one burst and then waited may have probed meanwhile.
                    if probed.load(Ordering::Relaxed) {
                        continue;
                    }
                    // Closing the channel ends the decoder's probe, which counts it.
                    tracing::warn!(source = %peer, timeout = ?probe_timeout, "live source sent no decodable audio in time; closing");
                    return End::NotAudio;
                }
                r = tokio::time::timeout(self.settings.source_timeout, stream.read_buf(&mut buf)) => r,
            };
            match read {
                Ok(Ok(0)) => return End::Closed,
                Ok(Ok(n)) => {
                    last_input_ms.store(self.now_ms(), Ordering::Relaxed);
                    self.metrics.live_input_bytes.inc_by(n as u64);
                    data = body.feed(buf.split().freeze());
                }
                Ok(Err(_)) => return End::ReadError,
                Err(_elapsed) => {
                    self.metrics
                        .live_fallbacks
                        .with_label_values(&["timeout"])
                        .inc();
                    return End::Timeout;
                }
            }
        }
    }
}

async fn write_and_close(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The request body as the source frames it: until close, a length, or chunks.
struct BodyReader {
    framing: Framing,
}

enum Framing {
    UntilClose,
    Length(u64),
    Chunked(Dechunker),
}

impl BodyReader {
    fn new(body: Body) -> BodyReader {
        BodyReader {
            framing: match body {
                Body::UntilClose => Framing::UntilClose,
                Body::Length(n) => Framing::Length(n),
                Body::Chunked => Framing::Chunked(Dechunker::default()),
            },
        }
    }

    /// The audio bytes in `bytes` as received.
    fn feed(&mut self, bytes: Bytes) -> Option<Bytes> {
        match &mut self.framing {
            Framing::UntilClose => Some(bytes),
            Framing::Length(left) => {
                let n = bytes
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                Some(bytes.slice(..n))
            }
            Framing::Chunked(d) => Some(d.feed(&bytes)),
        }
    }

    /// The body is complete: nothing more is audio.
    fn done(&self) -> bool {
        match &self.framing {
            Framing::UntilClose => false,
            Framing::Length(left) => *left == 0,
            Framing::Chunked(d) => d.finished(),
        }
    }
}

impl Method {
    /// How the log and the status pages name the protocol.
    pub fn label(self) -> &'static str {
        match self {
            Method::Put => "put",
            Method::Source => "source",
            Method::Icy => "icy",
        }
    }
}
