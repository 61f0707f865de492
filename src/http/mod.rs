//! The HTTP side: the accept loop, one hyper HTTP/1 connection per client, and the response body type
//! shared by every route. Listener streams end by themselves when their ring closes; other
//! connections are asked to finish their current request on shutdown.

pub mod access_log;
mod admin;
mod api;
pub mod icy;
mod listener;
mod routes;
mod stall;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::station::Station;
use listener::ListenerStream;

/// Kernel send buffer per connection. Small, because a listener's backlog should sit in the
/// shared ring (where lag is measured) rather than in per-socket kernel memory: 32 KiB is 2 s of
/// 128 kbps audio (Linux doubles it for bookkeeping).
const SEND_BUFFER: usize = 32 * 1024;

/// What the routes know about the connection a request came on.
#[derive(Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// Set by the socket guard when the client stopped reading, so a listener dropped for that is
    /// counted as lagged rather than as leaving.
    pub stalled: Arc<AtomicBool>,
}

/// A response body: a complete buffer, or a listener's endless stream.
pub enum Body {
    Full(Option<Bytes>),
    Stream(Box<ListenerStream>),
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
            Body::Stream(s) => s.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
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
            Body::Stream(_) | Body::Events(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// Accepts connections until `cancel` fires. Each connection is a task on `tasks`.
pub async fn serve(
    listener: TcpListener,
    station: Arc<Station>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    // A client whose socket accepts nothing for this long is gone; the lag check in the ring only
    // runs when hyper asks for more data, which a stalled socket never lets it do.
    let stall_limit = station
        .mounts
        .iter()
        .map(|m| {
            Duration::from_secs_f64(
                m.config.queue.bytes(m.config.bytes_per_sec()) as f64
                    / m.config.bytes_per_sec() as f64,
            )
        })
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(5));
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
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let conn_info = Conn {
                peer,
                stalled: Arc::new(AtomicBool::new(false)),
            };
            let io = TokioIo::new(stall::StallGuard::new(
                stream,
                stall_limit,
                Arc::clone(&conn_info.stalled),
            ));
            let service = service_fn(move |req| {
                let station = Arc::clone(&station);
                let conn_info = conn_info.clone();
                async move { Ok::<_, Infallible>(routes::handle(req, &station, &conn_info)) }
            });
            let conn = http1::Builder::new()
                .title_case_headers(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = cancel.cancelled() => {
                    // Lets a request in flight finish; a listener stream finishes when its ring closes.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result
                && !e.is_incomplete_message()
            {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
}
