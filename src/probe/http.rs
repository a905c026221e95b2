//! The `http` probe: tcp (+ tls for https), then one HTTP/1.1 exchange read under a body cap.
//!
//! hyper's connection task is spawned per exchange and aborted when the probe ends, so a peer
//! that hangs or drips bytes costs at most the probe's deadline.

use std::io::Read;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper::rt::{Read as HyperRead, Write as HyperWrite};
use hyper_util::rt::TokioIo;

use super::{tcp, tls, Deadline, HttpError, Phase, ProbeContext, ProbeError, Trace};
use crate::target::{Auth, Endpoint, Host, HttpSpec, Target, TlsSettings};

/// The parts of a response the probe kinds judge.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, decompressed, at most the target's `body_limit`.
    pub body: Bytes,
}

/// Probes a target with one request, then judges status and body.
pub async fn probe(
    target: &Target,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<Response, ProbeError> {
    let spec = target
        .http
        .as_ref()
        .expect("validation gives every http target its spec");
    let user_agent = HeaderValue::from_static(concat!("pathprobe/", env!("CARGO_PKG_VERSION")));
    let mut extra = HeaderMap::new();
    extra.insert(header::USER_AGENT, user_agent);
    let response = fetch(target, ctx, trace, deadline, &extra).await?;
    judge(spec, &response)?;
    Ok(response)
}

/// Checks status and body regex against the spec.
pub fn judge(spec: &HttpSpec, response: &Response) -> Result<(), ProbeError> {
    if !spec.expect_status.allows(response.status) {
        return Err(ProbeError::Status {
            status: response.status,
            expected: spec.expect_status.to_string(),
        });
    }
    if let Some(re) = &spec.body_regex {
        if !re.is_match(&String::from_utf8_lossy(&response.body)) {
            return Err(ProbeError::BodyMismatch {
                regex: re.as_str().to_string(),
            });
        }
    }
    Ok(())
}

/// Makes the request (following redirects if the spec allows) and reads the body under the cap.
/// `extra` headers are set after the spec's own, so a probe kind can impose its own.
pub async fn fetch(
    target: &Target,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
    extra: &HeaderMap,
) -> Result<Response, ProbeError> {
    let spec = target
        .http
        .as_ref()
        .expect("validation gives every http target its spec");
    let mut url = spec.url.clone();
    let mut endpoint = target.endpoint.clone();
    let mut tls_settings = target.tls.clone();
    let mut hops = 0;
    loop {
        // Credentials follow a redirect on the same host, as Prometheus's client sends them on
        // every hop, but never to another host and never from https down to plain http.
        let same_host = endpoint.host == target.endpoint.host;
        let downgrade = spec.url.scheme() == "https" && url.scheme() != "https";
        let auth = if same_host && !downgrade {
            spec.auth.as_ref()
        } else {
            None
        };
        // A target's own URL and credentials are checked when the config loads, so a request that
        // cannot be formed comes from a redirect's Location.
        let request = build_request(spec, &url, auth, extra).map_err(|e| match hops {
            0 => ProbeError::Request(e),
            _ => ProbeError::Redirect(format!("the Location cannot be requested: {e}")),
        })?;
        let response = exchange(
            ctx,
            &endpoint,
            tls_settings.as_ref(),
            request,
            spec.body_limit,
            trace,
            deadline,
        )
        .await?;
        trace.http_status = Some(response.status);
        let location = response.headers.get(header::LOCATION);
        if !(300..400).contains(&response.status) || hops >= spec.max_redirects || location.is_none() {
            return Ok(response);
        }
        hops += 1;
        let location = location.and_then(|l| l.to_str().ok()).unwrap_or_default();
        url = url
            .join(location)
            .map_err(|e| ProbeError::Redirect(format!("Location is not a URL: {e}")))?;
        let _ = url.set_username("");
        let _ = url.set_password(None);
        (endpoint, tls_settings) = next_hop(&url, tls_settings.as_ref(), target)?;
    }
}

/// Where a redirect goes, and its TLS settings (the target's verifier, the new name).
fn next_hop(
    url: &url::Url,
    current: Option<&TlsSettings>,
    target: &Target,
) -> Result<(Endpoint, Option<TlsSettings>), ProbeError> {
    let host = url
        .host_str()
        .ok_or_else(|| ProbeError::Redirect("Location has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| ProbeError::Redirect(format!("unsupported scheme {}", url.scheme())))?;
    let endpoint = Endpoint {
        host: Host::parse(host),
        port,
    };
    let tls = match url.scheme() {
        "http" => None,
        "https" => {
            let base = current.or(target.tls.as_ref());
            let mut s = match base {
                Some(s) => s.clone(),
                None => tls::settings(host, None, false, None)
                    .map_err(|e| ProbeError::Redirect(format!("TLS for {host}: {e}")))?,
            };
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
            s.server_name = rustls::pki_types::ServerName::try_from(bare)
                .map_err(|_| ProbeError::Redirect(format!("{host} is not a valid TLS name")))?;
            Some(s)
        }
        other => return Err(ProbeError::Redirect(format!("unsupported scheme {other}"))),
    };
    Ok((endpoint, tls))
}

/// The request target (path and query) of `url`, as the request line carries it. The config
/// checks a target's URL with this, so what would fail here is refused when it loads.
pub fn request_target(url: &url::Url) -> Result<http::uri::PathAndQuery, http::uri::InvalidUri> {
    let target = match url.query() {
        Some(q) => format!("{}?{}", url.path(), q),
        None => url.path().to_string(),
    };
    http::uri::PathAndQuery::try_from(target)
}

/// The request for `url`; the error says what could not go into it.
fn build_request(
    spec: &HttpSpec,
    url: &url::Url,
    auth: Option<&Auth>,
    extra: &HeaderMap,
) -> Result<http::Request<Empty<Bytes>>, String> {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err("the URL has no host".into()),
    };
    let target = request_target(url).map_err(|e| format!("the path and query: {e}"))?;
    let mut req = http::Request::builder()
        .method(spec.method.clone())
        .uri(target)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let headers = req.headers_mut();
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&host).map_err(|e| format!("the Host header: {e}"))?,
    );
    for (name, value) in &spec.headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in extra {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(auth) = auth {
        let value = match auth {
            Auth::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
            }
            Auth::Bearer { token } => format!("Bearer {}", token.expose()),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| "the credentials hold bytes not allowed in a header".to_string())?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    Ok(req)
}

/// One connection, one request, one response.
async fn exchange(
    ctx: &ProbeContext,
    endpoint: &Endpoint,
    tls_settings: Option<&TlsSettings>,
    request: http::Request<Empty<Bytes>>,
    limit: usize,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<Response, ProbeError> {
    let tcp = tcp::connect(ctx, endpoint, trace, deadline).await?;
    match tls_settings {
        Some(settings) => {
            let stream = tls::handshake_alpn(tcp, settings, trace, deadline, &[b"http/1.1"]).await?;
            send(TokioIo::new(stream), request, limit, trace, deadline).await
        }
        None => send(TokioIo::new(tcp), request, limit, trace, deadline).await,
    }
}

/// Aborts hyper's connection task when the exchange is over, however it ended.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send<I>(
    io: I,
    request: http::Request<Empty<Bytes>>,
    limit: usize,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<Response, ProbeError>
where
    I: HyperRead + HyperWrite + Unpin + Send + 'static,
{
    let http_err = |phase| {
        move |e: hyper::Error| ProbeError::Http {
            phase,
            source: HttpError::Hyper(e),
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http_err(Phase::Request))?;
    let mut conn_task = tokio::spawn(conn);
    let _conn = AbortOnDrop(conn_task.abort_handle());
    let no_body = request.method() == http::Method::HEAD;
    let response = trace
        .timed(Phase::Request, deadline, async {
            match sender.send_request(request).await {
                Ok(r) => Ok(r),
                // The request only sees "canceled" when the connection died; the connection's
                // own error says why (e.g. a TLS 1.3 server's alert rejecting our client
                // certificate, which arrives after our side of the handshake finished).
                Err(e) if e.is_canceled() || e.is_closed() => {
                    let wait = deadline.remaining().min(std::time::Duration::from_millis(200));
                    match tokio::time::timeout(wait, &mut conn_task).await {
                        Ok(Ok(Err(conn_err))) => Err(http_err(Phase::Request)(conn_err)),
                        _ => Err(http_err(Phase::Request)(e)),
                    }
                }
                Err(e) => Err(http_err(Phase::Request)(e)),
            }
        })
        .await?;
    let (parts, mut body) = response.into_parts();
    trace.http_status = Some(parts.status.as_u16());
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let has_body = !no_body && !matches!(parts.status.as_u16(), 204 | 304);
    if has_body && declared.is_some_and(|n| n > limit as u64) {
        return Err(ProbeError::BodyTooLarge { limit });
    }
    let capacity = declared.unwrap_or(0).min(limit as u64) as usize;
    let raw = trace
        .timed(Phase::Transfer, deadline, async {
            let mut buf = BytesMut::with_capacity(capacity);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(http_err(Phase::Transfer))?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(ProbeError::BodyTooLarge { limit });
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok::<_, ProbeError>(buf.freeze())
        })
        .await?;
    trace.body_bytes = Some(raw.len() as u64);
    let gzip = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip { gunzip(&raw, limit)? } else { raw };
    Ok(Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Decompresses under the same cap, so a gzip bomb is `body_too_large`, not an OOM.
fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, ProbeError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ProbeError::Http {
            phase: Phase::Transfer,
            source: HttpError::Decode(e.to_string()),
        })?;
    if out.len() > limit {
        return Err(ProbeError::BodyTooLarge { limit });
    }
    Ok(out.into())
}
