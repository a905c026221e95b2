//! The agent's and the demo's own HTTP endpoint: a small hyper server over a routing trait.
//!
//! Every client is a possible attacker (the port is reachable from the pod network): request
//! heads are bounded in bytes and header count, a client must send its head within
//! [`Limits::header_timeout`] (slowloris), a client that stops reading its response is cut after
//! [`Limits::stall_timeout`], and at most [`Limits::max_connections`] are served at once, so the
//! endpoint's file descriptors and memory stay bounded whatever connects.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

/// A response body: whole, or produced as it is sent (`/metrics`).
pub type Body = BoxBody<Bytes, Infallible>;

/// Answers a GET by path.
pub trait Routes: Send + Sync + 'static {
    /// Answers a GET for `path`; `headers` let a route negotiate (`Accept`).
    fn respond(&self, path: &str, headers: &http::HeaderMap) -> http::Response<Body>;

    /// Answers a GET that may carry a query (`/mesh?bytes=N`); by default the query is ignored.
    fn respond_query(&self, path: &str, _query: Option<&str>, headers: &http::HeaderMap) -> http::Response<Body> {
        self.respond(path, headers)
    }
}

/// What one client may cost the endpoint.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to send a whole request head, and the longest a kept-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Longest a response may wait for the client to read it.
    pub stall_timeout: Duration,
    /// Request line plus headers, in bytes (hyper's floor is 8 KiB); over it: 431.
    pub max_head_bytes: usize,
    /// Request headers; over it: 431.
    pub max_headers: usize,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for Limits {
    /// Generous for Prometheus and kubelet (a few headers, a scrape every few seconds, reads at
    /// once), tight for anything else.
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_connections: 256,
        }
    }
}

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum ListenError {
    /// Another process holds the address.
    #[error("cannot listen on {addr}: address already in use; stop the other process or choose another address with --listen")]
    InUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the kernel refused.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the listening socket, with an error that says what to do.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => ListenError::InUse { addr },
        _ => ListenError::Other { addr, source },
    })
}

/// Serves with the default [`Limits`] until `shutdown` completes.
pub async fn serve(listener: TcpListener, routes: Arc<dyn Routes>, shutdown: impl Future<Output = ()>) {
    serve_with(listener, routes, Limits::default(), shutdown).await
}

/// Serves under `limits` until `shutdown` completes.
pub async fn serve_with(
    listener: TcpListener,
    routes: Arc<dyn Routes>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A free slot first: over the cap, clients wait in the accept queue, not in our memory.
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let routes = routes.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            connection(stream, routes, &limits).await;
            drop(slot);
        });
    }
}

/// Serves one connection to its end under `limits` (any byte stream: the fuzz target drives it
/// with an in-memory pipe).
pub async fn connection<S>(stream: S, routes: Arc<dyn Routes>, limits: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let routes = routes.clone();
        async move {
            // The body is never read: dropping it makes hyper close the connection after the
            // response instead of draining whatever the client keeps sending.
            if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
                return Ok::<_, Infallible>(text(405, "only GET and HEAD\n"));
            }
            // Building a response can be CPU work (the status page's HTML for thousands of
            // targets): off the runtime's workers, so probes keep their schedule meanwhile.
            // `/metrics` comes back as a stream whose chunks are rendered as hyper writes them.
            let (parts, _body) = req.into_parts();
            let resp = tokio::task::spawn_blocking(move || {
                routes.respond_query(parts.uri.path(), parts.uri.query(), &parts.headers)
            })
            .await
            .unwrap_or_else(|_| text(500, "rendering the response failed\n"));
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_header_size(limits.max_head_bytes)
        .max_headers(limits.max_headers)
        .serve_connection(TokioIo::new(Stall::new(stream, limits.stall_timeout)), service)
        .await;
}

/// A stream whose writes fail once they have made no progress for `limit`: a client that
/// requests `/metrics` and never reads would otherwise hold the connection forever.
struct Stall<S> {
    inner: S,
    limit: Duration,
    since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Stall<S> {
    fn new(inner: S, limit: Duration) -> Stall<S> {
        Stall {
            inner,
            limit,
            since: None,
        }
    }

    /// Pending: arm (or check) the stall timer; anything else: disarm it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, out: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if out.is_ready() {
            self.since = None;
            return out;
        }
        let limit = self.limit;
        let timer = self.since.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading its response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, out)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, out)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let out = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, out)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let out = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, out)
    }
}

/// A plain-text response.
pub fn text(status: u16, body: impl Into<Bytes>) -> http::Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body)
}

/// A response with a content type.
pub fn with_type(status: u16, content_type: &str, body: impl Into<Bytes>) -> http::Response<Body> {
    streamed(status, content_type, Full::new(body.into()))
}

/// A response whose body is produced as it is sent (chunked).
pub fn streamed(
    status: u16,
    content_type: &str,
    body: impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.boxed())
        .expect("static parts are valid")
}
