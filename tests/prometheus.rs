//! A real Prometheus (Debian's `prometheus` package) scrapes a real agent on loopback; the
//! agent's results are read back through Prometheus's HTTP API.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::time::Duration;

use agent::Agent;
use pathprobe::fault_servers::{self as testbed, Reply};
use prometheus::Prometheus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_agent_and_sees_each_target_by_source_node() {
    let healthy = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let refused = testbed::refused_port().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(
        &config,
        format!(
            "agent: {{ source_cluster: lab }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n  - {{ name: web, kind: http, url: \"http://{}/\" }}\n  - {{ name: db, kind: tcp, address: \"{refused}\" }}\n",
            healthy.addr
        ),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "node-a", &[]);
        let prometheus = Prometheus::start(
            "scrape_interval: 1s, evaluation_interval: 1s",
            &format!(
                "  - job_name: pathprobe\n    static_configs: [ {{ targets: ['{}'] }} ]\n",
                agent.addr
            ),
        );
        let up = prometheus.wait("up{job=\"pathprobe\"}", Duration::from_secs(30), |r| {
            r.first().is_some_and(|s| s["value"][1] == "1")
        });
        assert_eq!(up.len(), 1);
        let results = prometheus.wait("pathprobe_success", Duration::from_secs(30), |r| r.len() == 2);
        for series in &results {
            let m = &series["metric"];
            assert_eq!(m["source_node"], "node-a");
            assert_eq!(m["source_cluster"], "lab");
            let expected = if m["target"] == "web" { "1" } else { "0" };
            assert_eq!(series["value"][1], expected, "{series}");
        }
        let reason = prometheus.wait(
            "pathprobe_failure_reason{target=\"db\"}",
            Duration::from_secs(10),
            |r| !r.is_empty(),
        );
        assert_eq!(reason[0]["metric"]["reason"], "connect_refused");
    })
    .await
    .unwrap();
}

/// The homelab case: a service serving a self-signed certificate with `CA:TRUE` (what
/// `openssl req -x509` makes), trusted by pinning that very certificate as the CA file. A real
/// Prometheus with `tls_config.ca_file` and the agent with `tls.ca_file` scrape the same servers,
/// and must agree on each: the pinned one is up; a different pinned certificate, a name the
/// certificate does not hold, and an expired pinned certificate are down for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_the_agent_agree_on_a_pinned_self_signed_ca_certificate() {
    let now = time::OffsetDateTime::now_utc();
    let valid = (now - time::Duration::days(1), now + time::Duration::days(365));
    let exposition = |_: &testbed::Seen<'_>| {
        Reply::new(200, "# TYPE homelab_up gauge\nhomelab_up 1\n").header("content-type", "text/plain; version=0.0.4")
    };
    let pinned_cert = testbed::self_signed_ca(&["127.0.0.1"], valid.0, valid.1);
    let other_cert = testbed::self_signed_ca(&["127.0.0.1"], valid.0, valid.1);
    let nas_cert = testbed::self_signed_ca(&["nas.home.arpa"], valid.0, valid.1);
    let expired_cert = testbed::self_signed_ca(
        &["127.0.0.1"],
        now - time::Duration::days(400),
        now - time::Duration::days(2),
    );
    let pinned = testbed::https(&pinned_cert, exposition).await;
    let other = testbed::https(&other_cert, exposition).await;
    let wrong_name = testbed::https(&nas_cert, exposition).await;
    let expired = testbed::https(&expired_cert, exposition).await;

    let dir = tempfile::tempdir().unwrap();
    let pem = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    // (case, server, the certificate both are told to trust, pathprobe's expected reason)
    let cases = [
        ("pinned", pinned.addr, pem("pinned.pem", &pinned_cert.cert_pem), "none"),
        // `other` serves its own certificate but both trust the pinned one.
        (
            "other",
            other.addr,
            pem("pinned-again.pem", &pinned_cert.cert_pem),
            "tls_untrusted",
        ),
        (
            "wrong-name",
            wrong_name.addr,
            pem("nas.pem", &nas_cert.cert_pem),
            "tls_hostname",
        ),
        (
            "expired",
            expired.addr,
            pem("expired.pem", &expired_cert.cert_pem),
            "tls_expired",
        ),
    ];
    let mut inventory =
        String::from("agent: { source_cluster: lab }\ndefaults: { interval: 1s, timeout: 900ms }\ntargets:\n");
    let mut jobs = String::new();
    for (case, addr, ca_file, _) in &cases {
        inventory.push_str(&format!(
            "  - {{ name: {case}, kind: scrape, url: \"https://{addr}/metrics\", tls: {{ ca_file: \"{ca_file}\" }} }}\n"
        ));
        jobs.push_str(&format!(
            "  - job_name: {case}\n    scheme: https\n    tls_config: {{ ca_file: '{ca_file}' }}\n    static_configs: [ {{ targets: ['{addr}'] }} ]\n"
        ));
    }
    let config = dir.path().join("inventory.yaml");
    std::fs::write(&config, inventory).unwrap();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "node-a", &[]);
        jobs.push_str(&format!(
            "  - job_name: pathprobe\n    static_configs: [ {{ targets: ['{}'] }} ]\n",
            agent.addr
        ));
        let prometheus = Prometheus::start("scrape_interval: 1s, evaluation_interval: 1s", &jobs);
        let up = prometheus.wait("up", Duration::from_secs(30), |r| r.len() == cases.len() + 1);
        let reasons = prometheus.wait("pathprobe_failure_reason == 1", Duration::from_secs(30), |r| {
            r.len() == cases.len()
        });
        for (case, _, _, expected_reason) in &cases {
            let prometheus_up = up
                .iter()
                .find(|s| s["metric"]["job"] == *case)
                .map(|s| s["value"][1].as_str().unwrap().to_string())
                .unwrap();
            let reason = reasons
                .iter()
                .find(|s| s["metric"]["target"] == *case)
                .map(|s| s["metric"]["reason"].as_str().unwrap().to_string())
                .unwrap();
            assert_eq!(reason, *expected_reason, "pathprobe on {case}");
            let pathprobe_up = if reason == "none" { "1" } else { "0" };
            assert_eq!(
                prometheus_up, pathprobe_up,
                "Prometheus and pathprobe disagree on {case}"
            );
        }
        let pinned_up = up.iter().find(|s| s["metric"]["job"] == "pinned").unwrap();
        assert_eq!(pinned_up["value"][1], "1", "Prometheus scrapes the pinned certificate");
    })
    .await
    .unwrap();
}
