//! The accept loop: HTTP/1.1 connections with a bounded count and timeouts, so that idle or
//! half-sent connections cannot pile up until memory or file descriptors run out.
//!
//! - At most `max_connections` are served at once. Past it the server stops accepting and new
//!   connections wait in the kernel's listen backlog; they are not refused, because every held
//!   slot is given back within `header_read_timeout` (a client that sends nothing) or
//!   `keep_alive_timeout` (a client that sent a request and then sits idle), so a waiting
//!   `/healthz` is answered within about the longer of the two, never starved for good.
//! - A request head must arrive within `header_read_timeout` of the connection's start or of the
//!   previous response (hyper's own timer: slow-loris clients are cut).
//! - A request body must keep arriving: a gap longer than `header_read_timeout` between two of
//!   its chunks fails the request (a client that sends a head and then trickles or stops its body
//!   cannot hold a slot).
//! - After a response, a connection with no new byte for `keep_alive_timeout` is closed; the same
//!   timer closes a connection whose client stops reading its response.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets running requests finish
/// (up to 10 s). Each request carries the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: wait for a connection to close rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            router.call(request.map(|body| {
                axum::body::Body::new(StallTimeout::new(body, limits.header_read_timeout))
            }))
        });
        let io = TokioIo::new(KeepAliveTimeout::new(stream, limits.keep_alive_timeout));
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy at shutdown");
    }
}

/// A request body that fails once no chunk has arrived for `gap`, counted from when the handler
/// first asks for it (a handler may do other work before reading the body).
struct StallTimeout {
    inner: Incoming,
    gap: Duration,
    deadline: Pin<Box<Sleep>>,
    started: bool,
}

impl StallTimeout {
    fn new(inner: Incoming, gap: Duration) -> Self {
        StallTimeout {
            inner,
            gap,
            deadline: Box::pin(tokio::time::sleep(gap)),
            started: false,
        }
    }
}

impl http_body::Body for StallTimeout {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            let at = Instant::now() + this.gap;
            this.deadline.as_mut().reset(at);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let at = Instant::now() + this.gap;
                this.deadline.as_mut().reset(at);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Some(Err(
                io::Error::new(io::ErrorKind::TimedOut, "the request body stalled").into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream that fails with `TimedOut` once `timeout` has passed since the server last wrote
/// without the client sending anything since. The timer is armed by a write (a response) and
/// disarmed by a read, so a request whose handler takes long is never cut by it.
struct KeepAliveTimeout {
    inner: TcpStream,
    timeout: Duration,
    armed: bool,
    deadline: Pin<Box<Sleep>>,
}

impl KeepAliveTimeout {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        KeepAliveTimeout {
            inner,
            timeout,
            armed: false,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn arm(&mut self) {
        self.armed = true;
        let at = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(at);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.armed && self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "keep-alive timeout")
}

impl AsyncRead for KeepAliveTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for KeepAliveTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.arm();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => {
                if !self.armed {
                    self.arm();
                }
                Poll::Pending
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                self.arm();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => {
                if !self.armed {
                    self.arm();
                }
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
