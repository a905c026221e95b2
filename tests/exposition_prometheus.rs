//! The exposition parser's promise, checked against Prometheus itself: every body that
//! `src/exposition.rs`'s tests accept or refuse is scraped by a real Prometheus (Debian's
//! `prometheus`), served once as Prometheus text and once as OpenMetrics, and Prometheus's `up`
//! for each must agree with `parse` for that body and format.
//!
//! One Prometheus run scrapes them all: one job per body (metrics path `/N`), each with two
//! targets, a loopback server that answers with the text content type and one that answers with
//! the OpenMetrics one.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pathprobe::exposition::{parse, Format};
use pathprobe::fault_servers::{self as testbed, Reply};
use prometheus::Prometheus;

include!("fixtures/exposition/cases.rs");

/// The content types the two servers answer with, as exporters send them.
const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus's version (major, minor), from `prometheus --version`.
fn prometheus_version() -> (u32, u32) {
    let out = Command::new("prometheus")
        .arg("--version")
        .output()
        .expect("prometheus is needed (Debian package prometheus; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    let mut parts = version.split(['.', '+', '-']).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A loopback server answering `/N` with body N and `content_type`.
async fn serve(bodies: Arc<Vec<(String, String)>>, content_type: &'static str) -> testbed::Server {
    testbed::http(move |seen: &testbed::Seen<'_>| {
        let n: Option<usize> = seen.path.trim_start_matches('/').parse().ok();
        match n.and_then(|n| bodies.get(n)) {
            Some((body, _)) => Reply::new(200, body.clone()).header("content-type", content_type),
            None => Reply::new(404, "no such body\n"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_exactly_the_bodies_the_parser_accepts() {
    // Each body, with why it is there (empty for a refused one).
    let mut bodies: Vec<(String, String)> = accepted().into_iter().map(|(why, _, body, _, _)| (body, why)).collect();
    bodies.extend(refused().into_iter().map(|(_, body, _)| (body, String::new())));
    let bodies = Arc::new(bodies);
    let text = serve(bodies.clone(), TEXT_TYPE).await;
    let openmetrics = serve(bodies.clone(), OPENMETRICS_TYPE).await;
    let version = prometheus_version();
    // Prometheus 3 picks the parser only from content types its scrape_protocols list; say so.
    let protocols = if version.0 >= 3 {
        "    scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]\n"
    } else {
        ""
    };
    let jobs: String = (0..bodies.len())
        .map(|n| {
            format!(
                "  - job_name: b{n}\n    metrics_path: /{n}\n{protocols}    static_configs: [ {{ targets: ['{}', '{}'] }} ]\n",
                text.addr, openmetrics.addr
            )
        })
        .collect();
    let formats = HashMap::from([
        (text.addr.to_string(), Format::PrometheusText),
        (openmetrics.addr.to_string(), Format::OpenMetrics),
    ]);
    tokio::task::spawn_blocking(move || {
        let prometheus = Prometheus::start(
            "scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s",
            &jobs,
        );
        let want = 2 * bodies.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        let up = loop {
            match prometheus.query("up") {
                Some(up) if up.len() == want => break up,
                got => assert!(
                    Instant::now() < deadline,
                    "Prometheus scraped {} of {want} targets",
                    got.map_or(0, |u| u.len())
                ),
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let mut disagreements = Vec::new();
        for series in &up {
            let job = series["metric"]["job"].as_str().unwrap();
            let n: usize = job.trim_start_matches('b').parse().unwrap();
            let format = formats[series["metric"]["instance"].as_str().unwrap()];
            let (body, why) = &bodies[n];
            let ours = parse(body, format);
            let scraped = series["value"][1] == "1";
            // An older Prometheus fails what only a newer one takes.
            let since = SINCE
                .iter()
                .find(|(w, f, _)| w == why && *f == format)
                .map_or((0, 0), |(.., v)| *v);
            if scraped == (ours.is_ok() && version >= since) {
                continue;
            }
            let shown: String = body.chars().take(120).collect();
            disagreements.push(format!(
                "{format:?} {shown:?}: Prometheus {}.{} up={}, parse: {}",
                version.0,
                version.1,
                u8::from(scraped),
                match ours {
                    Ok(_) => "accepted".to_string(),
                    Err(e) => e.to_string(),
                }
            ));
        }
        assert!(
            disagreements.is_empty(),
            "{} of {want} scrapes disagree with parse:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
    })
    .await
    .unwrap();
}
