//! Runs `pathprobe run` as a process and talks to it over HTTP, as Prometheus and kubelet do.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running agent; killed on drop.
pub struct Agent {
    child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Agent {
    /// Starts the agent on `config` with JSON logs, a fast reload poll and `extra` flags, and
    /// waits until it says where it listens.
    pub fn start(config: &Path, node: &str, extra: &[&str]) -> Agent {
        Agent::start_on(config, node, "127.0.0.1:0", extra)
    }

    /// [`Agent::start`] listening on `listen`.
    pub fn start_on(config: &Path, node: &str, listen: &str, extra: &[&str]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pathprobe"))
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                listen,
                "--log-format",
                "json",
            ])
            .args(if extra.contains(&"--reload-poll") {
                &[][..]
            } else {
                &["--reload-poll", "200ms"][..]
            })
            .args(["--jitter", "0"])
            .args(extra)
            .env("NODE_NAME", node)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting pathprobe run");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("agent: {line}");
                    continue;
                };
                if v["message"] == "pathprobe agent started" {
                    let _ = tx.send(v["listen"].as_str().unwrap().to_string());
                }
                sink.lock().unwrap().push(v);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the agent started and logged its address");
        Agent {
            child,
            addr: addr.parse().unwrap(),
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A GET: (status, body).
    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        get(self.addr, path, accept)
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200);
        body
    }

    /// Polls `/metrics` until `cond` holds, or panics after `within`.
    pub fn wait_metrics(&self, what: &str, within: Duration, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.metrics();
            if cond(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; /metrics:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logged(&self, message: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|v| v["message"] == message)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET over a fresh connection.
pub fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connecting to the agent");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// A chunked body's data (`/metrics` is streamed).
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// The value of the first series of `metric` whose labels include every pair of `labels`.
pub fn value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(text, metric, labels)
        .first()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Every series line of `metric` whose labels include every pair of `labels`.
pub fn series<'a>(text: &'a str, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .collect()
}

/// Runs `promtool check metrics` on an exposition; returns what it reported.
pub fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; .ci/run installs it)");
    p.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Writes `text` to `path` atomically (write + rename), as editors and config management do.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
