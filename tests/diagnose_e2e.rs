//! "Why is TargetDown firing?" end to end: a real Prometheus scraping real targets, two agents
//! (each in its own namespace, as if on its own node) that discover those targets from
//! Prometheus, and the seed's scenarios side by side — a target stopped, one node's path cut,
//! Prometheus's password wrong while the agents' is right, every credential wrong, a 503 through
//! the API-server-proxy-like path while the direct port answers, a documented-absent job, a
//! healthy control. `pathprobe diagnose` must give each its verdict and name the right nodes.
//! Then discovery follows Prometheus's config, and keeps probing while Prometheus is stopped.
//! Needs root.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/sh.rs"]
mod sh;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{drop_packets, wait_at, Cluster};
use serde_json::Value;
use sh::in_ns;

const SRV: &str = "10.77.0.2";
const N1: &str = "10.77.0.11";
const N2: &str = "10.77.0.12";
const MON: &str = "10.77.0.100";
const PROM: &str = "10.77.0.100:9090";

/// The target host: one port per behaviour.
const SERVERS: &str = r##"
import base64,http.server,sys,threading
BODY=b"# TYPE demo_up gauge\ndemo_up 1\n"
GOOD="Basic "+base64.b64encode(b"scraper:right-password").decode()
def handler(mode):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if mode=="auth" and self.headers.get("Authorization")!=GOOD:
                self.send_response(401); self.send_header("WWW-Authenticate","Basic"); self.send_header("Content-Length","0"); self.end_headers(); return
            if mode=="503":
                b=b"Error trying to reach service: dial tcp 10.244.1.7:8086: i/o timeout"
                self.send_response(503); self.send_header("Content-Length",str(len(b))); self.end_headers(); self.wfile.write(b); return
            self.send_response(200); self.send_header("Content-Type","text/plain; version=0.0.4"); self.send_header("Content-Length",str(len(BODY))); self.end_headers(); self.wfile.write(BODY)
        def log_message(self,*a): pass
    return H
for port,mode in [(8080,"ok"),(8082,"ok"),(8083,"auth"),(8084,"auth"),(8085,"503"),(8086,"ok"),(8087,"ok")]:
    s=http.server.ThreadingHTTPServer((sys.argv[1],port),handler(mode))
    threading.Thread(target=s.serve_forever,daemon=True).start()
threading.Event().wait()
"##;

fn prometheus_config(c: &Cluster, with_added: bool) -> String {
    let wrong = c.path("wrong-pw");
    let mut jobs = vec![
        format!("  - job_name: pathprobe\n    static_configs: [ {{ targets: ['{N1}:9807', '{N2}:9807'] }} ]\n"),
        format!("  - job_name: healthy\n    static_configs: [ {{ targets: ['{SRV}:8080'] }} ]\n"),
        format!("  - job_name: app-stopped\n    static_configs: [ {{ targets: ['{SRV}:8081'] }} ]\n"),
        format!("  - job_name: app-cut\n    static_configs: [ {{ targets: ['{SRV}:8082'] }} ]\n"),
        format!("  - job_name: app-auth-prom\n    basic_auth: {{ username: scraper, password_file: '{wrong}' }}\n    static_configs: [ {{ targets: ['{SRV}:8083'] }} ]\n"),
        format!("  - job_name: app-auth-all\n    basic_auth: {{ username: scraper, password_file: '{wrong}' }}\n    static_configs: [ {{ targets: ['{SRV}:8084'] }} ]\n"),
        format!("  - job_name: proxied\n    metrics_path: /api/v1/namespaces/demo/services/direct:8086/proxy/metrics\n    static_configs: [ {{ targets: ['{SRV}:8085'] }} ]\n"),
        format!("  - job_name: direct\n    static_configs: [ {{ targets: ['{SRV}:8086'] }} ]\n"),
        format!("  - job_name: kube-scheduler\n    static_configs: [ {{ targets: ['{SRV}:10259'] }} ]\n"),
    ];
    if with_added {
        jobs.push(format!(
            "  - job_name: added\n    static_configs: [ {{ targets: ['{SRV}:8087'] }} ]\n"
        ));
    }
    format!(
        "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\nscrape_configs:\n{}",
        jobs.concat()
    )
}

/// Runs `pathprobe diagnose` inside the Prometheus host's namespace: (exit code, stdout, stderr).
fn diagnose(mon: &str, args: &[&str]) -> (i32, String, String) {
    let url = format!("http://{PROM}");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            mon,
            env!("CARGO_BIN_EXE_pathprobe"),
            "diagnose",
            "--prometheus",
            &url,
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `diagnose --json`'s lines by job.
fn verdicts(stdout: &str) -> BTreeMap<String, Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| (v["job"].as_str().unwrap().to_string(), v))
        .collect()
}

/// A GET from inside a namespace.
fn get_in(ns: &str, url: &str) -> String {
    let script = format!("import urllib.request\nprint(urllib.request.urlopen('{url}',timeout=5).read().decode())");
    in_ns(ns, &["python3", "-c", &script])
}

/// Polls an agent's /metrics until `cond`; returns the text and how long it took.
fn wait_metrics(ns: &str, addr: &str, what: &str, within: Duration, cond: impl Fn(&str) -> bool) -> (String, Duration) {
    let start = Instant::now();
    loop {
        let text = get_in(ns, &format!("http://{addr}:9807/metrics"));
        if cond(&text) {
            return (text, start.elapsed());
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[test]
fn diagnose_names_each_seed_scenario_and_discovery_follows_prometheus() {
    let mut c = Cluster::new();
    let srv = c.host("srv", SRV);
    let n1 = c.host("n1", N1);
    let n2 = c.host("n2", N2);
    let mon = c.host("mon", MON);
    c.write("right-pw", "right-password\n");
    c.write("wrong-pw", "wrong-password\n");
    c.spawn(&srv, &["python3", "-c", SERVERS, SRV], &[]);

    let prometheus = c.prometheus(&mon, PROM, &prometheus_config(&c, false));
    let long = Duration::from_secs(60);
    wait_at(&mon, PROM, "count(up)", long, |r| {
        r.first().is_some_and(|s| s["value"][1] == "10")
    });

    // Before any agent reports: said plainly, and every target is no_evidence.
    let (code, out, err) = diagnose(&mon, &["--json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no pathprobe agent reports to Prometheus"), "{err}");
    let v = verdicts(&out);
    assert_eq!(v["app-stopped"]["verdict"], "no_evidence", "{out}");

    // Two agents that take their targets from Prometheus; credentials from job_settings.
    let inventory = c.write(
        "inventory.yaml",
        &format!(
            "agent: {{ source_cluster: lab }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n  - {{ name: kube-scheduler, job: kube-scheduler, expected: false, why: bound to 127.0.0.1 on Talos }}\ndiscovery:\n  prometheus:\n    url: http://{PROM}\n    jobs: [healthy, \"app-.*\", proxied, direct, added, kube-scheduler]\n    refresh: 1s\n    job_settings:\n      - job: app-auth-prom\n        basic_auth: {{ username: scraper, password_file: right-pw }}\n      - job: app-auth-all\n        basic_auth: {{ username: scraper, password_file: wrong-pw }}\n"
        ),
    );
    for (ns, node, ip) in [(&n1, "node-1", N1), (&n2, "node-2", N2)] {
        c.agent(ns, node, &inventory, &format!("{ip}:9807"), &["--network", "host"]);
    }
    // node-2's path to app-cut is cut: its packets to port 8082 are dropped.
    drop_packets(&n2, "output", &["ip", "daddr", SRV, "tcp", "dport", "8082"]);

    #[rustfmt::skip]
    let expected: [(&str, &str, &[&str]); 6] = [
        ("app-stopped", "target_down", &["node-1", "node-2"]),
        ("app-cut", "node_path_broken", &["node-2"]),
        ("app-auth-prom", "scrape_config", &[]),
        ("app-auth-all", "auth_failing", &["node-1", "node-2"]),
        ("proxied", "target_down", &["node-1", "node-2"]),
        ("kube-scheduler", "expected_absent", &[]),
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    let (out, v) = loop {
        let (code, out, err) = diagnose(&mon, &["--json"]);
        let v = verdicts(&out);
        let settled = expected.iter().all(|(job, verdict, failing)| {
            v.get(*job)
                .is_some_and(|x| x["verdict"] == *verdict && x["nodes"]["failing"] == serde_json::json!(failing))
        });
        if settled && code == 1 && v.len() == expected.len() {
            break (out, v);
        }
        assert!(
            Instant::now() < deadline,
            "verdicts did not settle (exit {code}):\n{out}{err}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let instance = |port: u16| format!("{SRV}:{port}");
    assert_eq!(
        v["app-stopped"]["nodes"]["reasons"],
        serde_json::json!({"connect_refused": 2}),
        "{out}"
    );
    assert_eq!(v["app-stopped"]["up"], 0.0);
    assert_eq!(v["app-cut"]["instance"], instance(8082));
    assert_eq!(v["app-cut"]["up"], 1.0);
    assert_eq!(v["app-cut"]["nodes"]["total"], 2);
    assert_eq!(
        v["app-cut"]["nodes"]["reasons"],
        serde_json::json!({"connect_timeout": 1})
    );
    assert!(
        v["app-cut"]["next"].as_str().unwrap().contains("spec.nodeName=node-2"),
        "{out}"
    );
    assert!(
        v["app-auth-prom"]["prometheus_error"].as_str().unwrap().contains("401"),
        "{out}"
    );
    assert!(
        v["app-auth-prom"]["summary"]
            .as_str()
            .unwrap()
            .contains("Prometheus's credentials are refused"),
        "{out}"
    );
    assert_eq!(
        v["app-auth-all"]["nodes"]["reasons"],
        serde_json::json!({"http_auth": 2})
    );
    assert_eq!(
        v["proxied"]["nodes"]["reasons"],
        serde_json::json!({"http_server_error": 2}),
        "{out}"
    );
    assert!(
        v["proxied"]["prometheus_error"].as_str().unwrap().contains("503"),
        "{out}"
    );
    assert_eq!(v["kube-scheduler"]["why"], "bound to 127.0.0.1 on Talos");
    assert!(v["kube-scheduler"]["summary"]
        .as_str()
        .unwrap()
        .contains("\"bound to 127.0.0.1 on Talos\""));

    // The healthy control and the proxied target's direct port, asked by name: exit 0.
    let direct = format!("direct/{}", instance(8086));
    let (code, out, err) = diagnose(&mon, &["--json", "healthy", &direct]);
    assert_eq!(code, 0, "{out}{err}");
    let v = verdicts(&out);
    for job in ["healthy", "direct"] {
        assert_eq!(v[job]["verdict"], "healthy", "{out}");
        assert_eq!(v[job]["nodes"]["total"], 2, "{out}");
        assert_eq!(v[job]["up"], 1.0, "{out}");
    }

    // The human output says the same, one block per target.
    let (code, human, _) = diagnose(&mon, &[]);
    assert_eq!(code, 1);
    for (job, words, port) in [
        ("app-stopped", "TARGET DOWN", 8081),
        ("app-cut", "NODE PATH BROKEN", 8082),
        ("app-auth-prom", "SCRAPE CONFIG", 8083),
        ("app-auth-all", "CREDENTIALS REFUSED", 8084),
        ("proxied", "TARGET DOWN", 8085),
        ("kube-scheduler", "DOCUMENTED ABSENT", 10259),
    ] {
        let heading = format!("{job} {} — {words}\n", instance(port));
        assert!(human.contains(&heading), "{heading:?} in\n{human}");
    }
    assert!(human.contains("node-2 fails with connect_timeout"), "{human}");

    // An unknown job: a clear message, exit 2.
    let (code, _, err) = diagnose(&mon, &["no-such-job"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown: no-such-job") && err.contains("app-cut"), "{err}");

    // node-2's status page shows the fleet's verdict for its failing target; node-1's does not.
    let page = |ns: &str, ip: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let html = get_in(ns, &format!("http://{ip}:9807/"));
            if html.contains(want) || Instant::now() > deadline {
                return html;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let page2 = page(&n2, N2, "data-verdict=node_path_broken");
    assert!(page2.contains("data-verdict=node_path_broken"), "{page2}");
    let page1 = page(&n1, N1, "data-verdict=target_down");
    assert!(
        page1.contains("data-verdict=target_down"),
        "app-stopped fails on node-1 too: {page1}"
    );
    assert!(
        !page1.contains("data-verdict=node_path_broken"),
        "node-1 reaches app-cut: {page1}"
    );

    // Discovery follows Prometheus: a job added, then removed (Prometheus reloaded on SIGHUP).
    let has_added = |t: &str| value(t, "pathprobe_target_expected", &[("target_job", "added")]).is_some();
    c.write("prometheus.yml", &prometheus_config(&c, true));
    sh::run(&["kill", "-HUP", &c.pid(prometheus).to_string()]);
    wait_at(&mon, PROM, "up{job=\"added\"}", long, |r| !r.is_empty());
    let (_, lag) = wait_metrics(&n1, N1, "the added job discovered", Duration::from_secs(20), has_added);
    eprintln!("added job discovered {lag:?} after Prometheus scraped it (refresh 1s)");
    let (text, _) = wait_metrics(&n1, N1, "the added job probed", Duration::from_secs(20), |t| {
        value(t, "pathprobe_success", &[("target_job", "added")]) == Some(1.0)
    });
    assert_eq!(
        value(&text, "pathprobe_success", &[("target_job", "added")]),
        Some(1.0),
        "probed at Prometheus's URL"
    );
    c.write("prometheus.yml", &prometheus_config(&c, false));
    sh::run(&["kill", "-HUP", &c.pid(prometheus).to_string()]);
    let (_, lag) = wait_metrics(&n1, N1, "the removed job forgotten", Duration::from_secs(20), |t| {
        !has_added(t)
    });
    eprintln!("removed job forgotten {lag:?} after Prometheus's reload (refresh 1s)");

    // Prometheus stopped: the last discovered targets keep probing.
    let (text, _) = wait_metrics(&n1, N1, "a successful refresh", Duration::from_secs(10), |t| {
        value(t, "pathprobe_discovery_last_refresh_successful", &[]) == Some(1.0)
    });
    let discovered = value(&text, "pathprobe_discovered_targets", &[]).unwrap();
    assert_eq!(
        discovered, 8.0,
        "every selected job's target (kube-scheduler's too, before static wins)"
    );
    c.kill(prometheus);
    let (text, _) = wait_metrics(&n1, N1, "a failed refresh", Duration::from_secs(20), |t| {
        value(t, "pathprobe_discovery_last_refresh_successful", &[]) == Some(0.0)
    });
    let last = |t: &str| {
        value(
            t,
            "pathprobe_last_probe_timestamp_seconds",
            &[("target_job", "healthy")],
        )
        .unwrap()
    };
    let before = last(&text);
    let (text, _) = wait_metrics(&n1, N1, "probing on without Prometheus", Duration::from_secs(10), |t| {
        last(t) > before + 1.0
    });
    assert_eq!(value(&text, "pathprobe_discovered_targets", &[]), Some(discovered));
    assert_eq!(
        value(&text, "pathprobe_success", &[("target_job", "healthy")]),
        Some(1.0)
    );
    assert!(value(&text, "pathprobe_discovery_refreshes_total", &[("result", "failure")]).unwrap() >= 1.0);

    // And diagnose says it cannot ask, with exit 2.
    let (code, _, err) = diagnose(&mon, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot reach Prometheus") && err.contains("connect_refused"),
        "{err}"
    );
}
