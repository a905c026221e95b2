//! The `scrape` probe: an HTTP request made exactly as Prometheus makes it, then the body parsed
//! as Prometheus would parse it. This is the probe that reproduces a scrape from every node.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{http as http_probe, Deadline, ProbeContext, ProbeError, Trace};
use crate::exposition::{self, Format};
use crate::target::{HttpSpec, Target};

/// Prometheus 3's Accept header for scrapes (content negotiation between the two formats).
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Prometheus's User-Agent form, with our name after it so target logs can tell us apart.
pub const USER_AGENT: &str = concat!("Prometheus/3.0.0 pathprobe/", env!("CARGO_PKG_VERSION"));

/// Probes a target as Prometheus scrapes it.
pub async fn probe(
    target: &Target,
    spec: &HttpSpec,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    let response = http_probe::fetch(&target.endpoint, spec, ctx, trace, deadline, &scrape_headers(target)).await?;
    http_probe::judge(spec, &response)?;
    let content_type = response.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(content_type);
    let text = std::str::from_utf8(&response.body)
        .map_err(|e| ProbeError::ScrapeInvalid(format!("body is not UTF-8 ({e})")))?;
    let summary = exposition::parse(text, format).map_err(|e| ProbeError::ScrapeInvalid(e.to_string()))?;
    trace.samples = Some(summary.samples);
    Ok(())
}

fn scrape_headers(target: &Target) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let timeout = format!("{}", target.timeout.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&timeout) {
        headers.insert(HeaderName::from_static("x-prometheus-scrape-timeout-seconds"), v);
    }
    headers
}
