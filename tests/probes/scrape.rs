use std::io::Write;
use std::sync::{Arc, Mutex};

use pathprobe::fault_servers::{self as testbed, Reply};
use pathprobe::probe::ProbeResult;
use pathprobe::reason::Reason;

use crate::common::{check, opts};
use crate::faults::faults;

faults! {
    scrape_of_an_invalid_body_is_scrape_invalid => ScrapeInvalid,
    scrape_of_openmetrics_without_eof_is_scrape_invalid => ScrapeInvalid,
    scrape_of_a_503_is_http_server_error_not_scrape_invalid => HttpServerError,
}

const NODE_EXPORTER: &str = "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.42\n# HELP node_cpu_seconds_total Seconds.\n# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1.5\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 2.5\n";

#[tokio::test]
async fn scrape_asks_as_prometheus_does_and_counts_samples() {
    let seen = Arc::new(Mutex::new(None::<http::HeaderMap>));
    let s = seen.clone();
    let server = testbed::http(move |req: &testbed::Seen<'_>| {
        *s.lock().unwrap() = Some(req.headers.clone());
        Reply::new(200, NODE_EXPORTER).header("content-type", "text/plain; version=0.0.4")
    })
    .await;
    let r = check(&format!("scrape+http://{}/metrics", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.samples, Some(3));
    let headers = seen.lock().unwrap().clone().unwrap();
    assert!(headers["accept"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text;version=1.0.0"));
    assert!(headers["user-agent"].to_str().unwrap().starts_with("Prometheus/"));
    assert_eq!(headers["x-prometheus-scrape-timeout-seconds"], "1.5");
}

async fn scrape_of_an_invalid_body_is_scrape_invalid() -> ProbeResult {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "<html>login</html>\n")).await;
    let r = check(&format!("scrape+http://{}/metrics", server.addr), &opts()).await;
    assert!(r.error.as_deref().unwrap_or("").contains("line 1"), "{:?}", r.error);
    r
}

async fn scrape_of_openmetrics_without_eof_is_scrape_invalid() -> ProbeResult {
    let server = testbed::http(|_: &testbed::Seen<'_>| {
        Reply::new(200, "# TYPE up gauge\nup 1\n").header("content-type", "application/openmetrics-text; version=1.0.0")
    })
    .await;
    check(&format!("scrape+http://{}/metrics", server.addr), &opts()).await
}

#[tokio::test]
async fn scrape_of_a_gzipped_body_is_decoded() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(NODE_EXPORTER.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let server =
        testbed::http(move |_: &testbed::Seen<'_>| Reply::new(200, gz.clone()).header("content-encoding", "gzip"))
            .await;
    let r = check(&format!("scrape+http://{}/metrics", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.samples, Some(3));
}

async fn scrape_of_a_503_is_http_server_error_not_scrape_invalid() -> ProbeResult {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(503, "Service Unavailable")).await;
    check(&format!("scrape+http://{}/metrics", server.addr), &opts()).await
}

#[tokio::test]
async fn scrape_follows_redirects_as_prometheus_does() {
    let target = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, NODE_EXPORTER)).await;
    let location = format!("http://{}/metrics", target.addr);
    let redirect =
        testbed::http(move |_: &testbed::Seen<'_>| Reply::new(301, "").header("location", location.clone())).await;
    let r = check(&format!("scrape+http://{}/old-metrics", redirect.addr), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!((r.trace.samples, r.trace.address), (Some(3), Some(target.addr)));
}
