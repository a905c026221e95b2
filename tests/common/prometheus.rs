//! A real Prometheus (Debian's `prometheus` package) on loopback for the tests, and its query API.
//! Included next to `common/agent.rs` (it reads through `agent::get`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::agent;

/// A Prometheus server on loopback; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one with this `global:` body (e.g. `scrape_interval: 1s`) and these
    /// `scrape_configs:` entries.
    pub fn start(global: &str, scrape_configs: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global: {{ {global} }}\nscrape_configs:\n{scrape_configs}"),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is needed (Debian package prometheus; scripts/test-deps installs it)");
        Prometheus { child, addr, _dir: dir }
    }

    /// Runs an instant query; `None` until the server answers.
    pub fn query(&self, promql: &str) -> Option<Vec<serde_json::Value>> {
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
        std::net::TcpStream::connect(self.addr).ok()?;
        let (status, body) = agent::get(self.addr, &format!("/api/v1/query?query={q}"), None);
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array().cloned()
    }

    /// Polls a query until `cond` holds on its result.
    #[allow(dead_code)]
    pub fn wait(
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
