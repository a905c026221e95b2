//! HTTP and HTTPS servers that answer every request with a canned [`Reply`], chosen by a handler
//! that may look at the request: the 401, 503, redirect and wrong-body faults, and the healthy
//! targets next to them.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use super::{bind, spawn_accept, Issued, Server};

/// A canned HTTP answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body, sent whole with its length.
    pub body: Bytes,
}

impl Reply {
    /// An answer with `status` and `body` and no headers.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// What a request looked like, for handlers that answer by it.
pub struct Seen<'a> {
    /// The request's path, without the query.
    pub path: &'a str,
    /// The request's headers.
    pub headers: &'a http::HeaderMap,
}

type Handler = Arc<dyn Fn(&Seen<'_>) -> Reply + Send + Sync>;

fn to_response(reply: Reply) -> http::Response<Full<Bytes>> {
    let mut builder = http::Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(reply.body)).expect("valid canned reply")
}

async fn serve_http<S>(io: S, handler: Handler)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let seen = Seen {
                path: req.uri().path(),
                headers: req.headers(),
            };
            Ok::<_, Infallible>(to_response(handler(&seen)))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// An HTTP server answering every request through `handler`, on `bind_addr` (e.g. `127.0.0.1:0`).
pub async fn http_on(bind_addr: &str, handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Server {
    let handler: Handler = Arc::new(handler);
    spawn_accept(bind(bind_addr).await, move |stream| serve_http(stream, handler.clone()))
}

/// An HTTP server on `127.0.0.1:0`.
pub async fn http(handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Server {
    http_on("127.0.0.1:0", handler).await
}

/// An HTTPS server presenting `cert`, on `127.0.0.1:0`.
pub async fn https(cert: &Issued, handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Server {
    https_on("127.0.0.1:0", cert, handler).await
}

/// An HTTPS server presenting `cert`, on `bind_addr` (the image test serves a network namespace).
pub async fn https_on(
    bind_addr: &str,
    cert: &Issued,
    handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static,
) -> Server {
    let handler: Handler = Arc::new(handler);
    let acceptor = tls_acceptor(cert);
    spawn_accept(bind(bind_addr).await, move |stream| {
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                serve_http(tls, handler).await;
            }
        }
    })
}

/// A TLS acceptor presenting `cert`, for a test's own TLS server (e.g. one that asks for a
/// client certificate).
pub fn tls_acceptor(cert: &Issued) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(crate::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key())
        .expect("a matching certificate and key");
    TlsAcceptor::from(Arc::new(config))
}
