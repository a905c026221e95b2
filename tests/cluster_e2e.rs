//! The package end to end, as on a small cluster: two agents, each in its own network namespace
//! as if on separate nodes, a target host, and a real Prometheus with the shipped rules, all on a
//! bridge inside namespaces this test creates. Every dashboard panel's query must return data,
//! and a fault on one node's path must make `PathprobeNodePathBroken` true for that node and
//! target only. Needs root.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/sh.rs"]
mod sh;

use std::time::Duration;

use cluster::{drop_packets, query_at, wait_at, Cluster};

const SRV: &str = "10.77.0.2";
const MON: &str = "10.77.0.100";
const PROM: &str = "10.77.0.100:9090";

fn query(mon: &str, promql: &str) -> Option<Vec<serde_json::Value>> {
    query_at(mon, PROM, promql)
}

fn wait(
    mon: &str,
    promql: &str,
    within: Duration,
    cond: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    wait_at(mon, PROM, promql, within, cond)
}

/// Every `expr` of every panel of every shipped dashboard, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut panels: Vec<serde_json::Value> = d["panels"].as_array().cloned().unwrap_or_default();
        while let Some(p) = panels.pop() {
            panels.extend(p["panels"].as_array().cloned().unwrap_or_default());
            for t in p["targets"].as_array().cloned().unwrap_or_default() {
                if let Some(expr) = t["expr"].as_str() {
                    let mut e = expr.to_string();
                    for var in ["$cluster", "$job", "$node", "$target", "$instance", "$network"] {
                        e = e.replace(var, ".*");
                    }
                    e = e
                        .replace("$__rate_interval", "1m")
                        .replace("$__range", "5m")
                        .replace("$__interval", "15s");
                    let name = format!(
                        "{} / {}",
                        path.file_name().unwrap().to_string_lossy(),
                        p["title"].as_str().unwrap_or("?")
                    );
                    out.push((name, e));
                }
            }
        }
    }
    out
}

#[test]
fn the_shipped_rules_and_dashboards_work_against_agents_on_separate_nodes() {
    let mut c = Cluster::new();
    let srv = c.host("srv", SRV);
    let n1 = c.host("n1", "10.77.0.11");
    let n2 = c.host("n2", "10.77.0.12");
    let mon = c.host("mon", MON);

    // The target host: an exporter (scraped by agents and by Prometheus) and a TLS service.
    let ca = pathprobe::fault_servers::TestCa::new();
    let cert = ca.issue_valid(&[SRV]);
    c.http_server(&srv, SRV, 8080, "www");
    c.write("www/metrics", "# TYPE demo_up gauge\ndemo_up 1\n");
    c.write("ca.pem", &ca.cert_pem);
    c.write("srv.pem", &cert.cert_pem);
    c.write("srv.key", &cert.key_pem);
    let tls = format!(
        "import http.server,ssl\ns=http.server.HTTPServer(('{SRV}',8443),http.server.SimpleHTTPRequestHandler)\nx=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nx.load_cert_chain('{}','{}')\ns.socket=x.wrap_socket(s.socket,server_side=True)\ns.serve_forever()",
        c.path("srv.pem"),
        c.path("srv.key")
    );
    c.spawn(&srv, &["python3", "-c", &tls], &[]);

    // The same inventory on both nodes, as one ConfigMap would give it.
    let inventory = c.write(
        "inventory.yaml",
        &format!(
            "agent: {{ source_cluster: inventory-default, network: pod }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n  - {{ name: exporter, job: exporter, kind: scrape, url: \"http://{SRV}:8080/metrics\" }}\n  - {{ name: web-tls, job: web, kind: tls, address: \"{SRV}:8443\", tls: {{ ca_file: ca.pem }} }}\n  - {{ name: legacy, job: legacy, kind: tcp, address: \"{SRV}:9\" }}\n  - {{ name: kube-scheduler, job: kube-scheduler, expected: false, why: bound to 127.0.0.1 on Talos }}\nmesh: {{ peers: {{ static: [\"10.77.0.11:9807\", \"10.77.0.12:9807\"] }}, interval: 1s, timeout: 500ms }}\n"
        ),
    );
    for (ns, node, ip) in [(&n1, "node-1", "10.77.0.11"), (&n2, "node-2", "10.77.0.12")] {
        let extra = ["--source-cluster", "lab", "--network", "host"];
        c.agent(ns, node, &inventory, &format!("{ip}:9807"), &extra);
    }

    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rules/pathprobe.rules.yaml");
    c.prometheus(
        &mon,
        PROM,
        &format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: ['{rules}']\nscrape_configs:\n  - job_name: pathprobe\n    static_configs: [ {{ targets: ['10.77.0.11:9807', '10.77.0.12:9807'] }} ]\n  - job_name: exporter\n    static_configs: [ {{ targets: ['{SRV}:8080'] }} ]\n"
        ),
    );

    let long = Duration::from_secs(60);
    wait(&mon, "count(up == 1)", long, |r| {
        r.first().is_some_and(|s| s["value"][1] == "3")
    });
    wait(
        &mon,
        "pathprobe:target_reachable_paths:ratio{target=\"exporter\"}",
        long,
        |r| r.first().is_some_and(|s| s["value"][1] == "1"),
    );
    let succ = query(&mon, "pathprobe_success").unwrap();
    assert_eq!(succ.len(), 6, "3 targets x 2 nodes: {succ:?}");

    // Break node-2's path to the exporter: its packets to port 8080 are dropped.
    drop_packets(&n2, "output", &["ip", "daddr", SRV, "tcp", "dport", "8080"]);

    let broken = wait(&mon, "ALERTS{alertname=\"PathprobeNodePathBroken\"}", long, |r| {
        !r.is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let broken_now = query(&mon, "ALERTS{alertname=\"PathprobeNodePathBroken\"}").unwrap();
    for alerts in [&broken, &broken_now] {
        assert_eq!(alerts.len(), 1, "one node, one target: {alerts:?}");
        let m = &alerts[0]["metric"];
        assert_eq!(
            (m["source_node"].as_str(), m["target"].as_str()),
            (Some("node-2"), Some("exporter")),
            "{m}"
        );
        assert_eq!(m["severity"], "warning");
    }
    let reason = query(
        &mon,
        "pathprobe_failure_reason{source_node=\"node-2\",target=\"exporter\"} == 1",
    )
    .unwrap();
    assert_eq!(reason[0]["metric"]["reason"], "connect_timeout");
    let unreachable = query(&mon, "ALERTS{alertname=\"PathprobeTargetUnreachable\"}").unwrap();
    assert!(
        unreachable.iter().all(|a| a["metric"]["target"] == "legacy"),
        "only the refused target is down for everyone: {unreachable:?}"
    );
    assert!(
        !unreachable.is_empty(),
        "the refused target is unreachable from every node"
    );
    let absent = query(&mon, "ALERTS{alertname=\"PathprobeTargetExpectedAbsent\"}").unwrap();
    assert_eq!(absent.len(), 1);
    assert_eq!(absent[0]["metric"]["job"], "kube-scheduler");

    // Every dashboard panel's query returns data.
    std::thread::sleep(Duration::from_secs(5));
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "the dashboards have panels: {}", queries.len());
    let empty: Vec<&(String, String)> = queries
        .iter()
        .filter(|(_, q)| query(&mon, q).is_none_or(|r| r.is_empty()))
        .collect();
    assert!(empty.is_empty(), "dashboard queries without data: {empty:#?}");
}
