//! A small client for Prometheus's HTTP API: instant queries and the active targets. Used by
//! discovery (which targets Prometheus scrapes) and by `diagnose` (what Prometheus sees).
//!
//! It runs on the probe engine's own HTTP stack (hyper, rustls, the one deadline), so a
//! Prometheus that cannot be asked is described with the same reasons as any target
//! (`connect_refused`, `http_timeout`, …).

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use thiserror::Error;

use crate::adhoc::{self, AdhocOptions};
use crate::config::range::redact_userinfo;
use crate::probe::{self, Deadline, ProbeContext, Trace};
use crate::reason::{classify, Reason};
use crate::target::Target;

/// Bytes of an API answer read at most: the targets list of a big Prometheus is tens of MB.
const BODY_LIMIT: usize = 256 << 20;

/// Why Prometheus could not be asked, or did not answer as its API does.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The URL given for Prometheus is not usable.
    #[error("`{url}` is not a Prometheus URL: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// No HTTP answer (the reason as for a probe).
    #[error("cannot reach Prometheus at {url}: {reason} ({error})")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why, in the probe's reason table.
        reason: Reason,
        /// The error chain, for people.
        error: String,
    },
    /// An HTTP answer that is not a success.
    #[error("Prometheus at {url} answered HTTP {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's `error` field, or the start of the body.
        message: String,
    },
    /// A 2xx whose body is not the API's JSON.
    #[error("{url} did not answer with Prometheus's API JSON: {message}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What the decoder made of the body.
        message: String,
    },
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels, `__name__` included when the query keeps it.
    pub labels: BTreeMap<String, String>,
    /// The sample's value.
    pub value: f64,
}

impl Sample {
    /// A label's value, empty when absent (as PromQL treats it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// One of Prometheus's active targets, as `/api/v1/targets` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveTarget {
    /// The target's labels after relabelling (`job`, `instance`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The scrape config (job) the target came from.
    #[serde(default)]
    pub scrape_pool: String,
    /// The URL Prometheus scrapes, with its scheme, path and params.
    #[serde(default)]
    pub scrape_url: String,
    /// `up`, `down` or `unknown`.
    #[serde(default)]
    pub health: String,
    /// The last scrape's error, empty when it worked.
    #[serde(default)]
    pub last_error: String,
}

impl ActiveTarget {
    /// The `job` label, empty when absent.
    pub fn job(&self) -> &str {
        self.labels.get("job").map(String::as_str).unwrap_or("")
    }
    /// The `instance` label, empty when absent.
    pub fn instance(&self) -> &str {
        self.labels.get("instance").map(String::as_str).unwrap_or("")
    }
}

/// A Prometheus server's API.
#[derive(Clone)]
pub struct Prometheus {
    /// The base URL as given, without userinfo, for messages.
    shown: String,
    base: url::Url,
    /// A prepared `http` target to the server; each request swaps in its own URL.
    target: Target,
    ctx: ProbeContext,
}

impl Prometheus {
    /// A client for the server at `url` (`http://prometheus:9090`, or with a path prefix).
    pub fn new(url: &str, timeout: Duration, ctx: ProbeContext) -> Result<Prometheus, ApiError> {
        let shown = redact_userinfo(url.trim()).trim_end_matches('/').to_string();
        let bad = |message: String| ApiError::Url {
            url: shown.clone(),
            message,
        };
        let mut base =
            url::Url::parse(url.trim()).map_err(|e| bad(format!("{e}; write e.g. http://prometheus:9090")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("use http:// or https://".into()));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("credentials in the URL are not supported; remove them".into()));
        }
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let opts = AdhocOptions {
            timeout,
            ..AdhocOptions::default()
        };
        let mut targets = adhoc::parse(base.as_str(), &opts).map_err(|e| bad(e.to_string()))?;
        if targets.len() != 1 {
            return Err(bad("names more than one address; give one server".into()));
        }
        let mut target = targets.remove(0);
        target.name = "prometheus".into();
        if let Some(spec) = target.http.as_mut() {
            spec.body_limit = BODY_LIMIT;
        }
        Ok(Prometheus {
            shown,
            base,
            target,
            ctx,
        })
    }

    /// The base URL, for messages.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// An instant query, evaluated now.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, ApiError> {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let data = self.get(&format!("api/v1/query?{q}")).await?;
        let parsed: QueryData = serde_json::from_value(data).map_err(|e| self.decode(e.to_string()))?;
        if parsed.result_type != "vector" {
            return Err(self.decode(format!(
                "`{promql}` gave a {}, not an instant vector",
                parsed.result_type
            )));
        }
        parsed
            .result
            .into_iter()
            .map(|s| {
                let value = s
                    .value
                    .1
                    .parse::<f64>()
                    .map_err(|_| self.decode(format!("sample value `{}`", s.value.1)))?;
                Ok(Sample {
                    labels: s.metric,
                    value,
                })
            })
            .collect()
    }

    /// Every active target, of every job.
    pub async fn active_targets(&self) -> Result<Vec<ActiveTarget>, ApiError> {
        let data = self.get("api/v1/targets?state=active").await?;
        let parsed: TargetsData = serde_json::from_value(data).map_err(|e| self.decode(e.to_string()))?;
        Ok(parsed.active_targets)
    }

    /// GETs an API path; the `data` of a `success` answer.
    async fn get(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let url = self.base.join(path).map_err(|e| self.decode(e.to_string()))?;
        let mut target = self.target.clone();
        if let Some(spec) = target.http.as_mut() {
            spec.url = url;
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("pathprobe/", env!("CARGO_PKG_VERSION"))),
        );
        let deadline = Deadline::after(target.timeout);
        let mut trace = Trace::default();
        let fetched = probe::http::fetch(&target, &self.ctx, &mut trace, deadline, &headers);
        let response = match tokio::time::timeout_at(deadline.at + Duration::from_millis(50), fetched).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(ApiError::Unreachable {
                    url: self.shown.clone(),
                    reason: classify(&e),
                    error: probe::error_chain(&e),
                })
            }
            Err(_) => {
                return Err(ApiError::Unreachable {
                    url: self.shown.clone(),
                    reason: Reason::HttpTimeout,
                    error: format!("no answer within {:?}", target.timeout),
                })
            }
        };
        let body: Option<Envelope> = serde_json::from_slice(&response.body).ok();
        if !(200..300).contains(&response.status) {
            let message = match body {
                Some(Envelope { error: Some(e), .. }) => e,
                _ => String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
                    .trim()
                    .to_string(),
            };
            return Err(ApiError::Status {
                url: self.shown.clone(),
                status: response.status,
                message,
            });
        }
        match body {
            Some(Envelope {
                status,
                data: Some(data),
                ..
            }) if status == "success" => Ok(data),
            Some(Envelope { error: Some(e), .. }) => Err(self.decode(e)),
            _ => Err(self.decode("not a `success` answer with `data`".into())),
        }
    }

    fn decode(&self, message: String) -> ApiError {
        ApiError::Decode {
            url: self.shown.clone(),
            message,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<serde_json::Value>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetsData {
    active_targets: Vec<ActiveTarget>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ProbeContext {
        ProbeContext::new(crate::probe::Resolver::new(&Default::default()).unwrap())
    }

    /// Serves one canned answer per connection on loopback.
    async fn server(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        format!("http://{addr}/prom")
    }

    #[tokio::test]
    async fn an_instant_vector_comes_back_as_samples() {
        let url = server(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a","instance":"h:1"},"value":[1.5,"0"]}]}}"#,
        )
        .await;
        let p = Prometheus::new(&url, Duration::from_secs(2), ctx()).unwrap();
        let s = p.query("up == 0").await.unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].label("job"), s[0].label("instance"), s[0].value),
            ("a", "h:1", 0.0)
        );
    }

    #[tokio::test]
    async fn a_refused_query_quotes_prometheus_s_error() {
        let url = server(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected end"}"#,
        )
        .await;
        let p = Prometheus::new(&url, Duration::from_secs(2), ctx()).unwrap();
        let e = p.query("up{").await.unwrap_err().to_string();
        assert!(e.ends_with("answered HTTP 400: parse error: unexpected end"), "{e}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_probe_reason() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let p = Prometheus::new(&url, Duration::from_secs(2), ctx()).unwrap();
        match p.active_targets().await {
            Err(ApiError::Unreachable { reason, .. }) => assert_eq!(reason, Reason::ConnectRefused),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_being_echoed() {
        let e = Prometheus::new("http://u:hunter2@prom:9090", Duration::from_secs(1), ctx())
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
