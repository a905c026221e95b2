//! Network faults made for real: two network namespaces joined by a veth pair (a "client" node
//! and a "server" host), with nftables rules, routes and neighbour entries as the faults.
//! The probe runs as the real binary inside the client namespace. Needs root; without it every
//! test fails saying so.
//!
//! DNS faults: the test DNS server (`pathprobe::fault_servers::dns_on`) runs in this process on a
//! thread that entered the server namespace, so it answers at 10.254.0.2:53 (UDP and TCP) as a
//! cluster resolver would; the client namespace gets its own resolv.conf (`ip netns exec`
//! mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf).

#[path = "common/sh.rs"]
mod sh;

use std::process::{Child, Command, Stdio};

use pathprobe::fault_servers::{self as testbed, DnsAnswer, DnsLog};
use sh::{require_root, run};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SERVER_IP: &str = "10.254.0.2";
const SERVER_IP6: &str = "fd00:254::2";

/// A client and a server namespace joined by a veth pair; removed on drop.
struct Lab {
    client: String,
    server: String,
    children: Vec<Child>,
    /// Stops the DNS server's thread (dropping it is enough).
    dns_stop: Option<tokio::sync::oneshot::Sender<()>>,
    dns_thread: Option<std::thread::JoinHandle<()>>,
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
            dns_stop: None,
            dns_thread: None,
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
        // IPv6 too (nodad: usable at once), so an AAAA answer can be reached.
        lab.ns(
            &lab.client,
            &["ip", "-6", "addr", "add", "fd00:254::1/64", "dev", &vc, "nodad"],
        );
        lab.ns(
            &lab.server,
            &["ip", "-6", "addr", "add", "fd00:254::2/64", "dev", &vs, "nodad"],
        );
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

    /// Starts the test DNS server on the server host, at 10.254.0.2:53 over UDP and TCP.
    fn serve_dns(&mut self, zone: Vec<(&'static str, DnsAnswer)>) -> DnsLog {
        use std::os::fd::AsRawFd;
        let netns = format!("/run/netns/{}", self.server);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&netns).expect("opening the server namespace");
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let (_server, log) = testbed::dns_on(format!("{SERVER_IP}:53").parse().unwrap(), zone).await;
                ready_tx.send(log).expect("the lab waits");
                let _ = stop_rx.await;
            });
        });
        let log = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the DNS server started");
        self.dns_stop = Some(stop_tx);
        self.dns_thread = Some(thread);
        log
    }

    /// Gives the client namespace its own resolv.conf.
    fn client_resolv_conf(&self, text: &str) {
        let dir = format!("/etc/netns/{}", self.client);
        std::fs::create_dir_all(&dir).expect("creating /etc/netns/<client>");
        std::fs::write(format!("{dir}/resolv.conf"), text).expect("writing the client's resolv.conf");
    }

    /// Starts an HTTP server on the server host and waits until the client can reach it.
    fn serve_http(&mut self, port: u16) {
        self.serve_http_on(SERVER_IP, port);
    }

    /// Starts an HTTP server on `ip` of the server host and waits until the client can reach it.
    fn serve_http_on(&mut self, ip: &str, port: u16) {
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
                ip,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            if self.check(&format!("tcp://{host}:{port}"), "300ms").0 == 0 {
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
        self.check_args(&["--timeout", timeout, target])
    }

    /// `pathprobe check --json ARGS...` in the client namespace.
    fn check_args(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                env!("CARGO_BIN_EXE_pathprobe"),
                "check",
                "--json",
            ])
            .args(args)
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
        self.dns_stop.take();
        if let Some(t) = self.dns_thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.client));
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

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// The families of a `check --json` object, as (ipv4 outcome, ipv6 outcome).
fn families(json: &serde_json::Value) -> (String, String) {
    let outcome = |f: &str| json["dns"][f]["outcome"].as_str().unwrap_or("<none>").to_string();
    (outcome("ipv4"), outcome("ipv6"))
}

const RESOLVER: &str = "10.254.0.2:53";

#[test]
fn a_resolver_that_drops_aaaa_questions_is_success_via_ipv4_with_the_silent_family_recorded() {
    let mut lab = Lab::new();
    lab.serve_http(8080);
    lab.serve_dns(vec![(
        "api.lab.test",
        DnsAnswer::DropAaaa(vec![ip(SERVER_IP), ip(SERVER_IP6)]),
    )]);
    let (code, json) = lab.check_args(&["--timeout", "3s", "--resolver", RESOLVER, "http://api.lab.test:8080/"]);
    assert_eq!((code, json["reason"].as_str()), (0, Some("none")), "{json}");
    assert_eq!(json["address"], format!("{SERVER_IP}:8080"));
    assert_eq!(families(&json), ("answered".into(), "silent".into()), "{json}");
    let resolve = json["phases"]["resolve"].as_f64().unwrap();
    assert!(
        resolve < 1.0,
        "the resolution delay, not the 3s timeout: resolve took {resolve}s"
    );
    assert_eq!(json["resolved"], serde_json::json!([SERVER_IP]));
}

#[test]
fn a_resolver_that_drops_a_questions_is_success_via_ipv6_where_there_is_an_ipv6_route() {
    let mut lab = Lab::new();
    lab.serve_http_on(SERVER_IP6, 8080);
    lab.serve_dns(vec![(
        "api.lab.test",
        DnsAnswer::DropA(vec![ip(SERVER_IP), ip(SERVER_IP6)]),
    )]);
    let (code, json) = lab.check_args(&["--timeout", "3s", "--resolver", RESOLVER, "http://api.lab.test:8080/"]);
    assert_eq!((code, json["reason"].as_str()), (0, Some("none")), "{json}");
    assert_eq!(json["address"], format!("[{SERVER_IP6}]:8080"));
    assert_eq!(families(&json), ("silent".into(), "answered".into()), "{json}");
}

#[test]
fn a_resolver_that_drops_both_families_is_dns_timeout() {
    let mut lab = Lab::new();
    lab.serve_dns(vec![("api.lab.test", DnsAnswer::Silent)]);
    let (code, json) = lab.check_args(&["--timeout", "1s", "--resolver", RESOLVER, "tcp://api.lab.test:8080"]);
    assert_eq!((code, json["reason"].as_str()), (1, Some("dns_timeout")), "{json}");
    assert_eq!(families(&json), ("silent".into(), "silent".into()), "{json}");
}

#[test]
fn a_name_with_no_address_records_is_dns_error() {
    let mut lab = Lab::new();
    lab.serve_dns(vec![("api.lab.test", DnsAnswer::NoData)]);
    let (code, json) = lab.check_args(&["--timeout", "2s", "--resolver", RESOLVER, "tcp://api.lab.test:8080"]);
    assert_eq!((code, json["reason"].as_str()), (1, Some("dns_error")), "{json}");
    assert_eq!(families(&json), ("empty".into(), "empty".into()), "{json}");
}

#[test]
fn a_truncated_answer_is_retried_over_tcp() {
    let mut lab = Lab::new();
    let many: Vec<std::net::IpAddr> = (1..=60).map(|i| std::net::IpAddr::from([10, 254, 1, i])).collect();
    let log = lab.serve_dns(vec![("many.lab.test", DnsAnswer::Addresses(many.clone()))]);
    let (code, json) = lab.check_args(&["--timeout", "2s", "--resolver", RESOLVER, "dns://many.lab.test"]);
    assert_eq!((code, json["reason"].as_str()), (0, Some("none")), "{json}");
    assert_eq!(json["resolved"].as_array().map(Vec::len), Some(60), "{json}");
    let asked = log.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| q.qtype == "A" && q.tcp),
        "asked again over TCP: {asked:?}"
    );
}

#[test]
fn a_short_service_name_resolves_through_the_pods_search_domains_and_ndots() {
    let mut lab = Lab::new();
    lab.serve_http(8080);
    let log = lab.serve_dns(vec![(
        "prometheus.monitoring.svc.cluster.local",
        DnsAnswer::Addresses(vec![ip(SERVER_IP)]),
    )]);
    lab.client_resolv_conf(&format!(
        "nameserver {SERVER_IP}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    ));
    // `prometheus.monitoring` has fewer dots than ndots: the search list comes first, as in a pod.
    let (code, json) = lab.check("http://prometheus.monitoring:8080/", "3s");
    assert_eq!((code, json["reason"].as_str()), (0, Some("none")), "{json}");
    assert_eq!(json["resolved"], serde_json::json!([SERVER_IP]));
    let asked: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.qtype == "A")
        .map(|q| q.name.clone())
        .collect();
    assert_eq!(
        asked,
        [
            "prometheus.monitoring.default.svc.cluster.local",
            "prometheus.monitoring.svc.cluster.local"
        ],
        "the first search domain answers NXDOMAIN, the second is the Service"
    );
}

#[test]
fn all_address_mode_reports_one_refusing_address_beside_one_that_works() {
    let mut lab = Lab::new();
    lab.ns(
        &lab.server,
        &[
            "ip",
            "addr",
            "add",
            "10.254.0.3/24",
            "dev",
            &format!("vs{}", &lab.server[3..]),
        ],
    );
    lab.serve_http(8080); // on 10.254.0.2 only: 10.254.0.3:8080 refuses
    lab.serve_dns(vec![(
        "two.lab.test",
        DnsAnswer::Addresses(vec![ip(SERVER_IP), ip("10.254.0.3")]),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(
        &config,
        format!(
            "agent: {{source_cluster: lab, resolver: {{nameservers: ['{RESOLVER}']}}}}\n\
             targets:\n\
             - {{name: two, kind: http, url: 'http://two.lab.test:8080/', timeout: 2s, all_addresses: true}}\n"
        ),
    )
    .unwrap();
    let (code, json) = lab.check_args(&["--config", config.to_str().unwrap(), "two"]);
    assert_eq!((code, json["reason"].as_str()), (1, Some("connect_refused")), "{json}");
    let each: Vec<(String, String)> = json["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_string(),
                a["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        each,
        [
            ("10.254.0.2:8080".to_string(), "none".to_string()),
            ("10.254.0.3:8080".to_string(), "connect_refused".to_string())
        ]
    );
}
