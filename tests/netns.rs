//! Network faults made for real: two network namespaces joined by a veth pair (a "client" node
//! and a "server" host), with nftables rules, routes and neighbour entries as the faults.
//! The probe runs as the real binary inside the client namespace. Needs root; without it every
//! test fails saying so.

#[path = "common/sh.rs"]
mod sh;

use std::process::{Child, Command, Stdio};

use sh::{require_root, run};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SERVER_IP: &str = "10.254.0.2";

/// A client and a server namespace joined by a veth pair; removed on drop.
struct Lab {
    client: String,
    server: String,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::SeqCst));
        let lab = Lab {
            client: format!("ppc{id}"),
            server: format!("pps{id}"),
            children: Vec::new(),
        };
        run(&["ip", "netns", "add", &lab.client]);
        run(&["ip", "netns", "add", &lab.server]);
        let (vc, vs) = (format!("vc{id}"), format!("vs{id}"));
        run(&[
            "ip",
            "link",
            "add",
            &vc,
            "netns",
            &lab.client,
            "type",
            "veth",
            "peer",
            "name",
            &vs,
            "netns",
            &lab.server,
        ]);
        lab.ns(&lab.client, &["ip", "addr", "add", "10.254.0.1/24", "dev", &vc]);
        lab.ns(&lab.server, &["ip", "addr", "add", "10.254.0.2/24", "dev", &vs]);
        for (ns, dev) in [(&lab.client, &vc), (&lab.server, &vs)] {
            lab.ns(ns, &["ip", "link", "set", dev, "up"]);
            lab.ns(ns, &["ip", "link", "set", "lo", "up"]);
        }
        lab
    }

    fn ns(&self, ns: &str, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    fn client_dev(&self) -> String {
        format!("vc{}", &self.client[3..])
    }

    /// Starts an HTTP server on the server host and waits until the client can reach it.
    fn serve_http(&mut self, port: u16) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                SERVER_IP,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.check(&format!("tcp://{SERVER_IP}:{port}"), "300ms").0 == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the HTTP server in the server namespace did not start");
    }

    /// Installs an nftables input rule on the server host.
    fn server_nft(&self, rule: &str) {
        self.ns(&self.server, &["nft", "add", "table", "inet", "fault"]);
        self.ns(
            &self.server,
            &[
                "nft",
                "add",
                "chain",
                "inet",
                "fault",
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            ],
        );
        let mut args = vec!["nft", "add", "rule", "inet", "fault", "input"];
        args.extend(rule.split(' '));
        self.ns(&self.server, &args);
    }

    fn server_nft_flush(&self) {
        self.ns(&self.server, &["nft", "flush", "ruleset"]);
    }

    /// Runs `pathprobe check --json` in the client namespace: (exit code, the JSON object).
    fn check(&self, target: &str, timeout: &str) -> (i32, serde_json::Value) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                env!("CARGO_BIN_EXE_pathprobe"),
                "check",
                "--json",
                "--timeout",
                timeout,
                target,
            ])
            .output()
            .expect("running pathprobe");
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), json)
    }

    fn reason(&self, target: &str, timeout: &str) -> String {
        let (code, json) = self.check(target, timeout);
        let reason = json["reason"].as_str().unwrap_or("<no json>").to_string();
        assert_eq!(
            code == 0,
            reason == "none",
            "exit code {code} agrees with reason {reason}: {json}"
        );
        reason
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn a_host_with_nothing_listening_is_connect_refused() {
    let lab = Lab::new();
    assert_eq!(lab.reason(&format!("tcp://{SERVER_IP}:9"), "1s"), "connect_refused");
}

#[test]
fn an_nftables_reject_with_tcp_reset_is_connect_refused_although_the_server_runs() {
    let mut lab = Lab::new();
    lab.serve_http(8080);
    let url = format!("http://{SERVER_IP}:8080/");
    assert_eq!(lab.reason(&url, "2s"), "none", "baseline: the server answers");
    lab.server_nft("tcp dport 8080 reject with tcp reset");
    assert_eq!(lab.reason(&url, "2s"), "connect_refused");
}

#[test]
fn an_nftables_drop_is_connect_timeout() {
    let mut lab = Lab::new();
    lab.serve_http(8080);
    lab.server_nft("tcp dport 8080 drop");
    let started = Instant::now();
    let (code, json) = lab.check(&format!("http://{SERVER_IP}:8080/metrics"), "700ms");
    assert_eq!((code, json["reason"].as_str()), (1, Some("connect_timeout")), "{json}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the timeout");
    lab.server_nft_flush();
    assert_eq!(
        lab.reason(&format!("http://{SERVER_IP}:8080/"), "2s"),
        "none",
        "fault removed, path back"
    );
}

#[test]
fn a_static_neighbour_to_a_mac_nobody_has_is_connect_timeout() {
    let lab = Lab::new();
    let dev = lab.client_dev();
    lab.ns(
        &lab.client,
        &[
            "ip",
            "neigh",
            "replace",
            "10.254.0.3",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            &dev,
            "nud",
            "permanent",
        ],
    );
    assert_eq!(lab.reason("tcp://10.254.0.3:9100", "700ms"), "connect_timeout");
}

#[test]
fn an_unreachable_route_is_unreachable() {
    let lab = Lab::new();
    lab.ns(&lab.client, &["ip", "route", "add", "unreachable", "10.99.0.0/16"]);
    assert_eq!(lab.reason("tcp://10.99.0.1:9100", "2s"), "unreachable");
}

#[test]
fn no_route_at_all_is_unreachable() {
    let lab = Lab::new();
    assert_eq!(lab.reason("http://10.98.0.1:9100/metrics", "2s"), "unreachable");
}

#[test]
fn an_icmp_host_unreachable_from_a_firewall_is_unreachable() {
    let mut lab = Lab::new();
    lab.serve_http(8080);
    lab.server_nft("tcp dport 8080 reject with icmp type host-unreachable");
    assert_eq!(lab.reason(&format!("http://{SERVER_IP}:8080/"), "2s"), "unreachable");
}
