//! A real Prometheus (Debian's `prometheus` package) scrapes a real agent on loopback; the
//! agent's results are read back through Prometheus's HTTP API.

#[path = "common/agent.rs"]
mod agent;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::Agent;
use pathprobe::testbed::{self, Reply};

/// A Prometheus server on loopback; killed on drop.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape_target: std::net::SocketAddr) -> Prometheus {
        Prometheus::with_jobs(&format!(
            "  - job_name: pathprobe\n    static_configs: [ {{ targets: ['{scrape_target}'] }} ]\n"
        ))
    }

    /// A Prometheus scraping every second with these `scrape_configs` entries.
    fn with_jobs(jobs: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n{jobs}"),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is needed (Debian package prometheus; .ci/run installs it)");
        Prometheus { child, addr, _dir: dir }
    }

    /// Runs an instant query; `None` until the server answers.
    fn query(&self, promql: &str) -> Option<Vec<serde_json::Value>> {
        let q: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let path = format!("/api/v1/query?query={q}");
        let s = std::net::TcpStream::connect(self.addr).ok()?;
        drop(s);
        let (status, body) = agent::get(self.addr, &path, None);
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array().cloned()
    }

    /// Polls a query until `cond` holds on its result.
    fn wait(
        &self,
        promql: &str,
        within: Duration,
        cond: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.query(promql) {
                if cond(&r) {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {promql}: {:?}",
                self.query(promql)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        let prometheus = Prometheus::start(agent.addr);
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
        let prometheus = Prometheus::with_jobs(&jobs);
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
