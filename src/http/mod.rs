//! The HTTP side: the accept loop, which reads each request head and answers listeners itself
//! (`listener.rs`, then the fan-out thread) and hands every other request to a hyper HTTP/1
//! connection; and the response body type shared by the hyper routes. On shutdown the accept loop
//! stops and hyper connections finish their current request.

pub mod access_log;
mod admin;
pub mod admin_auth;
mod api;
mod escape;
pub mod head;
pub mod icy;
mod listener;
mod replay;
pub mod request;
mod routes;
mod stall;
mod status;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fanout::FanoutHandle;
use crate::station::Station;
use request::Dispatch;

/// Kernel send buffer per connection. Small, because a listener's backlog should sit in the
/// shared ring (where lag is measured) rather than in per-socket kernel memory: 32 KiB is 2 s of
/// 128 kbps audio (Linux doubles it for bookkeeping).
const SEND_BUFFER: usize = 32 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A hyper connection whose client accepts nothing for this long is dropped (an event stream
/// whose page was suspended, a dead NAT path).
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// A response body: a complete buffer, or a stream of events.
pub enum Body {
    Full(Option<Bytes>),
    /// Server-sent events, fed by a task.
    Events(tokio::sync::mpsc::Receiver<Bytes>),
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
            Body::Events(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Events(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// Accepts connections until `cancel` fires. Each connection is a task on `tasks` until its
/// request is answered; a listener's socket then belongs to the fan-out thread.
pub async fn serve(
    listener: TcpListener,
    station: Arc<Station>,
    fanout: FanoutHandle,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: keep serving those we have, retry shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let station = Arc::clone(&station);
        let fanout = fanout.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            connection(stream, peer, station, &fanout, cancel).await;
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    station: Arc<Station>,
    fanout: &FanoutHandle,
    cancel: CancellationToken,
) {
    let received = Instant::now();
    let mut head = BytesMut::with_capacity(1024);
    let read = tokio::select! {
        r = tokio::time::timeout(HEAD_TIMEOUT, request::read_head(&mut stream, &mut head)) => r,
        _ = cancel.cancelled() => return,
    };
    if !matches!(read, Ok(Ok(()))) || head.is_empty() {
        return;
    }
    match request::dispatch(&head, &station, received) {
        Dispatch::Listener {
            mount_index,
            request,
        } => match stream.into_std() {
            Ok(socket) => listener::answer(socket, peer, &station, fanout, mount_index, request),
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "could not take over a listener socket")
            }
        },
        Dispatch::Peek {
            mount,
            icy,
            range,
            with_body,
        } => listener::peek(stream, peer, &mount, icy, range, with_body).await,
        Dispatch::Hyper => serve_hyper(stream, head.freeze(), peer, station, cancel).await,
    }
}

async fn serve_hyper(
    stream: TcpStream,
    head: Bytes,
    peer: std::net::SocketAddr,
    station: Arc<Station>,
    cancel: CancellationToken,
) {
    let io = TokioIo::new(replay::Replay::new(
        head,
        stall::StallGuard::new(stream, STALL_LIMIT),
    ));
    let service = service_fn(move |req| {
        let station = Arc::clone(&station);
        async move { Ok::<_, Infallible>(routes::handle(req, &station, peer).await) }
    });
    // One request per connection: a listener must come on a fresh connection, whose head the
    // accept path reads (a browser reuses a kept-alive page connection for its audio element).
    let conn = http1::Builder::new()
        .title_case_headers(true)
        .keep_alive(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
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
