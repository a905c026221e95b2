//! The agent's and the demo's own HTTP endpoint: a small hyper server over a routing trait.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpListener;

/// A response body: whole, or produced as it is sent (`/metrics`).
pub type Body = BoxBody<Bytes, Infallible>;

/// Answers a GET by path.
pub trait Routes: Send + Sync + 'static {
    fn respond(&self, path: &str, headers: &http::HeaderMap) -> http::Response<Body>;

    /// Answers a GET that may carry a query (`/mesh?bytes=N`); by default the query is ignored.
    fn respond_query(&self, path: &str, _query: Option<&str>, headers: &http::HeaderMap) -> http::Response<Body> {
        self.respond(path, headers)
    }
}

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum ListenError {
    /// Another process holds the address.
    #[error("cannot listen on {addr}: address already in use; stop the other process or choose another address with --listen")]
    InUse { addr: SocketAddr },
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}")]
    Other {
        addr: SocketAddr,
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

/// Serves until `shutdown` completes.
pub async fn serve(listener: TcpListener, routes: Arc<dyn Routes>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let routes = routes.clone();
                async move {
                    let resp = if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
                        routes.respond_query(req.uri().path(), req.uri().query(), req.headers())
                    } else {
                        text(405, "only GET and HEAD\n")
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
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
