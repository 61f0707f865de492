//! The HTTP side: the accept loop, which reads each request head and answers listeners itself
//! (`listener.rs`, then the fan-out thread) and hands every other request to a hyper HTTP/1
//! connection; and the response body type shared by the hyper routes. On shutdown the accept loop
//! stops and hyper connections finish their current request.
//!
//! Every connection but an admitted listener holds a slot of the [`gate`] (`max_connections`)
//! from accept to its end, and an event stream also one of `max_event_subscribers`. With
//! `server.admin_listen`, a second accept loop serves the ops paths there and the public port
//! answers 404 for them.

mod accept;
mod admin;
mod admin_auth;
mod api;
#[doc(hidden)] // pub for the fuzz targets only
pub mod escape;
mod gate;
pub mod head;
mod hls;
mod hls_conn;
mod listener;
mod refuse;
mod replay;
pub mod request;
mod routes;
mod shoutcast;
mod source_meta;
mod stall;
mod status;

pub use accept::bind;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fanout::FanoutHandle;
use crate::fanout::access_log::AccessLog;
use crate::station::Station;
use admin_auth::LoginThrottle;

use crate::live::handshake::{self, Head as LiveHead};
use crate::live::session::LiveDesk;
use head::StreamHead;
use request::{Dispatch, Head};

/// Kernel send buffer per connection. Small, because a listener's backlog should sit in the
/// shared ring (where lag is measured) rather than in per-socket kernel memory: 32 KiB is 2 s of
/// 128 kbps audio (Linux doubles it for bookkeeping).
const SEND_BUFFER: usize = 32 * 1024;
/// A hyper connection whose client accepts nothing for this long is dropped (an event stream
/// whose page was suspended, a dead NAT path).
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// A response body: a complete buffer, or a stream of events.
pub enum Body {
    Full(Option<Bytes>),
    /// Server-sent events, fed by a task.
    Events(tokio::sync::mpsc::Receiver<Bytes>),
    /// An event stream holding its place among `max_event_subscribers` for as long as it lasts.
    Subscribed(tokio::sync::mpsc::Receiver<Bytes>, Subscription),
    /// Shared chunks sent in order from the index given (an HLS part or segment: its tag and
    /// the ring's frames), so no listener's request copies audio.
    Chunks(Arc<[Bytes]>, usize),
}

/// A place among `max_event_subscribers`; dropping it (when the body is dropped) gives it back.
pub struct Subscription {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Full(Some(Bytes::from(s)))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Full(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Full(Some(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Events(rx) | Body::Subscribed(rx, _) => {
                rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
            }
            Body::Chunks(chunks, next) => {
                let chunk = chunks.get(*next).cloned();
                *next += 1;
                Poll::Ready(chunk.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Chunks(chunks, next) => *next >= chunks.len(),
            Body::Events(_) | Body::Subscribed(..) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Chunks(chunks, next) => hyper::body::SizeHint::with_exact(
                chunks.iter().skip(*next).map(|c| c.len() as u64).sum(),
            ),
            Body::Events(_) | Body::Subscribed(..) => hyper::body::SizeHint::default(),
        }
    }
}

/// Which listening socket a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Listeners, status, API and page; and the ops paths unless they are served elsewhere.
    Public { ops_elsewhere: bool },
    /// `server.admin_listen`: only the ops paths.
    Admin,
}

impl Port {
    /// Whether a request for `path` is answered on this port (else 404).
    fn serves(self, path: &str) -> bool {
        let ops = path == "/admin"
            || path.starts_with("/admin/")
            || path == "/metrics"
            || path == "/readyz";
        match self {
            Port::Public { ops_elsewhere } => !(ops && ops_elsewhere),
            Port::Admin => ops,
        }
    }
}

/// What every connection of one radio shares, on every port.
pub struct Server {
    station: Arc<Station>,
    fanout: FanoutHandle,
    /// The response heads of the mounts' listeners, built once (`Mounts` order).
    heads: Vec<StreamHead>,
    /// Where each listener leaves its line when it ends.
    access_log: Arc<AccessLog>,
    /// Failed admin logins per address (the delay and budget of `/admin/*`).
    admin_logins: LoginThrottle,
    /// Where DJs' source clients log in.
    live: Arc<LiveDesk>,
    gate: Arc<gate::Gate>,
    events: Arc<Semaphore>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// Connections stop being accepted when `cancel` fires; each is a task on `tasks` until its
    /// request is answered (a listener's socket then belongs to the fan-out thread).
    pub fn new(
        station: Arc<Station>,
        fanout: FanoutHandle,
        access_log: Arc<AccessLog>,
        recorder: Option<Arc<crate::live::record::Recorder>>,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Server> {
        let limits = &station.config.server;
        let config = &station.config;
        let heads = station
            .mounts
            .iter()
            .map(|m| StreamHead::new(&config.station, config.audio, &m.config, m.content_type))
            .collect();
        Arc::new(Server {
            heads,
            gate: gate::Gate::new(
                limits.max_connections,
                station.metrics.open_connections.clone(),
            ),
            events: Arc::new(Semaphore::new(limits.max_event_subscribers)),
            fanout,
            access_log,
            admin_logins: LoginThrottle::new(admin_auth::ADMIN_BUDGET),
            live: Arc::new(LiveDesk::new(
                config,
                Arc::clone(&station.live),
                station.metrics.clone(),
                recorder,
                cancel.child_token(),
            )),
            station,
            cancel,
            tasks,
        })
    }

    /// The next connection on `listener`, or `None` once cancelled. A failed `accept()` is
    /// counted, and one that means the process is out of something pauses before the next.
    async fn accept(
        &self,
        listener: &TcpListener,
        errors: &mut accept::AcceptErrors,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                accepted = listener.accept() => match accepted {
                    Ok(a) => return Some(a),
                    Err(e) => {
                        if let Some(pause) = errors.failed(&e, &self.station.metrics) {
                            tokio::time::sleep(pause).await;
                        }
                    }
                },
            }
        }
    }

    /// Accepts connections on `listener` until cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, port: Port) {
        let mut errors = accept::AcceptErrors::default();
        while let Some((stream, peer)) = self.accept(&listener, &mut errors).await {
            let _ = stream.set_nodelay(true);
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
            let Some(slot) = self.gate.enter() else {
                // Every slot holds a request being answered or an event stream: refuse at once,
                // on this task, so a flood costs no task and no buffer.
                self.rejected("max_connections");
                refuse::now(stream, &refuse::busy("server busy"));
                continue;
            };
            let server = Arc::clone(&self);
            self.tasks.spawn(async move {
                server.connection(stream, peer, slot, port).await;
            });
        }
    }

    /// Accepts Shoutcast v1 sources on `listener` until cancelled (`[live] icy_port`).
    pub async fn serve_icy(self: Arc<Self>, listener: TcpListener) {
        let mut errors = accept::AcceptErrors::default();
        while let Some((stream, peer)) = self.accept(&listener, &mut errors).await {
            // A login in progress holds a connection slot like any request head.
            let Some(slot) = self.gate.enter() else {
                self.rejected("max_connections");
                continue;
            };
            let live = Arc::clone(&self.live);
            self.tasks.spawn(async move {
                let _slot = slot;
                live.serve_icy(stream, peer).await;
            });
        }
    }

    fn rejected(&self, reason: &str) {
        self.station
            .metrics
            .connections_rejected
            .with_label_values(&[reason])
            .inc();
    }

    async fn connection(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        mut slot: gate::Slot,
        port: Port,
    ) {
        let received = Instant::now();
        let mut head = BytesMut::new();
        let timeout = self.station.config.server.head_timeout;
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, request::read_head(&mut stream, &mut head)) => r,
            _ = slot.evicted.cancelled() => return self.evicted(stream, &head),
            _ = self.cancel.cancelled() => return,
        };
        match read {
            Ok(Ok(Head::Complete)) => {}
            Ok(Ok(Head::TooLarge)) => {
                self.rejected("head_too_large");
                return refuse::lingering(stream, refuse::HEAD_TOO_LARGE).await;
            }
            Ok(Ok(Head::Closed) | Err(_)) => return,
            Err(_elapsed) => {
                self.rejected("head_timeout");
                // A client that sent nothing gets a silent close, as Icecast does: browsers open
                // speculative connections they may never use, and an unsolicited 408 on one has
                // been shown to them as a failed request. A client that began a request is told.
                if !head.is_empty() {
                    refuse::now(stream, refuse::HEAD_TIMEOUT);
                }
                return;
            }
        }
        if !slot.past_head() {
            return self.evicted(stream, &head);
        }
        if matches!(port, Port::Public { .. }) && live_head(&head) {
            match handshake::parse(&head) {
                Ok(LiveHead::Source(source)) => {
                    // A source holds its connection for the show: the one desk bounds it.
                    drop(slot);
                    let body = head.split_off(handshake::head_len(&head).unwrap_or(head.len()));
                    return Arc::clone(&self.live)
                        .serve(stream, peer, *source, body.freeze())
                        .await;
                }
                Ok(LiveHead::Probe(probe)) => {
                    return refuse::lingering(stream, &handshake::probe_response(probe)).await;
                }
                Err(refused) => {
                    self.station
                        .metrics
                        .live_connects
                        .with_label_values(&[refused.label()])
                        .inc();
                    return refuse::lingering(stream, &refused.response()).await;
                }
                Ok(LiveHead::Other) => {}
            }
        }
        let dispatch = match port {
            Port::Public { .. } => request::dispatch(&head, &self.station, received),
            // Listeners are not served there: hyper answers 404 for a mount.
            Port::Admin => Dispatch::Hyper,
        };
        match dispatch {
            Dispatch::Listener {
                mount_index,
                request,
            } => match stream.into_std() {
                Ok(socket) => {
                    // An admitted listener leaves the gate: the mounts' `max_listeners` bound it.
                    drop(slot);
                    listener::answer(socket, peer, &self, mount_index, request)
                }
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "could not take over a listener socket")
                }
            },
            Dispatch::Peek {
                mount_index,
                icy,
                range,
                with_body,
            } => {
                let (Some(mount), Some(head)) = (
                    self.station.mounts.get(mount_index),
                    self.heads.get(mount_index),
                ) else {
                    return;
                };
                listener::peek(stream, peer, mount, head, icy, range, with_body).await
            }
            Dispatch::Hyper if matches!(port, Port::Public { .. }) && hls_conn::wanted(&head) => {
                let conn = hls_conn::HlsConn {
                    hls: &self.station.hls,
                    head_timeout: timeout,
                    stall_limit: STALL_LIMIT,
                    cancel: &self.cancel,
                };
                conn.serve(stream, head, peer).await
            }
            Dispatch::Hyper => self.serve_hyper(stream, head.freeze(), peer, port).await,
        }
    }

    /// A newer connection took this one's slot: a client that sent part of a head is told the
    /// server is busy; one that sent nothing is closed silently (see the head timeout).
    fn evicted(&self, stream: TcpStream, head: &[u8]) {
        self.rejected("evicted");
        if !head.is_empty() {
            refuse::now(stream, &refuse::busy("server busy"));
        }
    }

    async fn serve_hyper(
        self: Arc<Self>,
        stream: TcpStream,
        head: Bytes,
        peer: SocketAddr,
        port: Port,
    ) {
        let io = TokioIo::new(replay::Replay::new(
            head,
            stall::StallGuard::new(stream, STALL_LIMIT),
        ));
        let server = Arc::clone(&self);
        let service = service_fn(move |req| {
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(server.respond(req, port, peer).await) }
        });
        // Kept alive for HLS only (`respond` closes after anything else). hyper gets the same
        // head limits as every request, though the first head it parses is already complete in
        // `Replay`'s prefix.
        let conn = http1::Builder::new()
            .title_case_headers(true)
            .keep_alive(true)
            .max_buf_size(request::MAX_HEAD)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.station.config.server.head_timeout)
            .serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.cancel.cancelled() => {
                // Lets a request in flight finish; an event stream ends when its sender does.
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        if let Err(e) = result
            && !e.is_incomplete_message()
        {
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    }

    /// Answers one hyper request on `port`.
    async fn respond(
        &self,
        req: Request<hyper::body::Incoming>,
        port: Port,
        peer: SocketAddr,
    ) -> Response<Body> {
        let path = req.uri().path();
        if !port.serves(path) {
            return plain(StatusCode::NOT_FOUND, "not found\n", None);
        }
        // HLS clients make a request or more a second: their connections are kept alive (those
        // that reach hyper at all: `hls_conn` serves every plain HLS head). Any other answer
        // closes its connection, so a listener always comes on a fresh one, whose head the
        // accept path reads (a browser reuses a page's connection for its audio).
        if path.starts_with("/hls/") {
            return routes::handle(req, &self.station, &self.admin_logins, &self.live, peer).await;
        }
        let mut resp = self.respond_once(req, peer).await;
        // An Icecast-shaped answer already says `Close`, in its place among the headers.
        resp.headers_mut()
            .entry(header::CONNECTION)
            .or_insert(HeaderValue::from_static("close"));
        resp
    }

    /// Answers a request after which the connection closes.
    async fn respond_once(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let path = req.uri().path();
        if !(req.method() == Method::GET && path == "/api/events") {
            return routes::handle(req, &self.station, &self.admin_logins, &self.live, peer).await;
        }
        let Ok(permit) = Arc::clone(&self.events).try_acquire_owned() else {
            self.rejected("max_event_subscribers");
            let retry = fastrand::u32(2..=6);
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many event streams, retry later\n",
                Some(retry),
            );
        };
        let gauge = self.station.metrics.event_subscribers.clone();
        gauge.inc();
        let subscription = Subscription {
            _permit: permit,
            gauge,
        };
        routes::handle(req, &self.station, &self.admin_logins, &self.live, peer)
            .await
            .map(|body| match body {
                Body::Events(rx) => Body::Subscribed(rx, subscription),
                other => other,
            })
    }
}

/// A short text response from this layer, with the headers every response carries.
fn plain(status: StatusCode, text: &'static str, retry_after: Option<u32>) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    routes::common_headers(h);
    resp
}

/// Whether a head may be a source's (or a source client's probe): the few methods that are,
/// checked on the first bytes so that listeners' heads are not parsed twice.
fn live_head(head: &[u8]) -> bool {
    [
        b"PUT ".as_slice(),
        b"SOURCE ",
        b"OPTIONS ",
        b"GET /admin/!POKE",
    ]
    .iter()
    .any(|m| head.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::Port;

    #[test]
    fn ops_paths_move_to_the_admin_port_when_it_exists() {
        let shared = Port::Public {
            ops_elsewhere: false,
        };
        let public = Port::Public {
            ops_elsewhere: true,
        };
        for path in ["/admin/stats", "/metrics", "/readyz"] {
            assert!(shared.serves(path) && Port::Admin.serves(path) && !public.serves(path));
        }
        for path in [
            "/radio.mp3",
            "/healthz",
            "/status-json.xsl",
            "/api/events",
            "/",
        ] {
            assert!(shared.serves(path) && public.serves(path) && !Port::Admin.serves(path));
        }
    }
}
