//! The node mesh on a small cluster on one machine: four nodes (network namespaces on a bridge),
//! one agent each meshing over static peers, a host with must-be-blocked targets, and a real
//! Prometheus with the shipped rules. Faults are real: an nftables drop of one ordered pair from
//! the start, then a lowered MTU on one node's bridge port. Alerts are read from `ALERTS`
//! (pending counts: the rules' `for:` is a wait, not part of what is checked). Needs root.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/sh.rs"]
mod sh;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::{drop_packets, query_at, wait_at, Cluster};
use sh::in_ns;

const SRV: &str = "10.78.0.2";
const MON: &str = "10.78.0.100";
const PROM: &str = "10.78.0.100:9090";
const NODES: [(&str, &str); 4] = [
    ("n1", "10.78.0.11"),
    ("n2", "10.78.0.12"),
    ("n3", "10.78.0.13"),
    ("n4", "10.78.0.14"),
];

fn query(mon: &str, promql: &str) -> Vec<serde_json::Value> {
    query_at(mon, PROM, promql).unwrap_or_default()
}

/// (source_node, peer_node) of every result.
fn pairs(r: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    r.iter()
        .map(|s| {
            let m = &s["metric"];
            (
                m["source_node"].as_str().unwrap_or("?").to_string(),
                m["peer_node"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// Every (alertname, what it is about) pending or firing.
fn alerts(mon: &str) -> BTreeSet<(String, String)> {
    query(mon, "ALERTS")
        .iter()
        .map(|a| {
            let m = &a["metric"];
            let about = match (m["target"].as_str(), m["source_node"].as_str(), m["peer_node"].as_str()) {
                (Some(t), _, _) => t.to_string(),
                (None, Some(s), Some(p)) => format!("{s}->{p}"),
                _ => m.to_string(),
            };
            (m["alertname"].as_str().unwrap().to_string(), about)
        })
        .collect()
}

#[test]
fn the_mesh_names_the_broken_pair_the_mtu_black_hole_and_the_reachable_must_be_blocked_target() {
    let mut c = Cluster::new();
    let srv = c.host("srv", SRV);
    let ns: Vec<String> = NODES.iter().map(|(role, ip)| c.host(role, ip)).collect();
    let mon = c.host("mon", MON);
    // As after a real NIC's segmentation: one TCP segment per packet on the wire. (veth forwards
    // GSO super-packets whole, past any MTU check, so without this no frame is ever too large.)
    for (i, (role, _)) in NODES.iter().enumerate() {
        let dev = format!("{}{role}i", c.prefix);
        in_ns(&ns[i], &["ip", "link", "set", &dev, "gso_max_segs", "1"]);
    }
    // Prometheus scrapes each agent over a management link of its own, as a real cluster's
    // monitoring does not ride the overlay under test: node 2's MTU fault must not hide node 2.
    for (i, node_ns) in ns.iter().enumerate() {
        let (a, b) = (format!("{}m{i}a", c.prefix), format!("{}m{i}b", c.prefix));
        sh::run(&[
            "ip", "link", "add", &a, "netns", node_ns, "type", "veth", "peer", "name", &b, "netns", &mon,
        ]);
        in_ns(node_ns, &["ip", "addr", "add", &format!("10.79.{i}.1/30"), "dev", &a]);
        in_ns(node_ns, &["ip", "link", "set", &a, "up"]);
        in_ns(&mon, &["ip", "addr", "add", &format!("10.79.{i}.2/30"), "dev", &b]);
        in_ns(&mon, &["ip", "link", "set", &b, "up"]);
    }

    // Must-be-blocked targets: an open port, and one whose packets the host drops.
    c.http_server(&srv, SRV, 8080, "www");
    drop_packets(&srv, "input", &["tcp", "dport", "8081"]);

    // node 3 cannot reach node 4's agent from the start: it still names node 4, from the others.
    drop_packets(&ns[2], "output", &["ip", "daddr", NODES[3].1, "tcp", "dport", "9807"]);

    let peers: Vec<String> = NODES.iter().map(|(_, ip)| format!("\"{ip}:9807\"")).collect();
    let inventory = c.write(
        "inventory.yaml",
        &format!(
            "agent: {{ source_cluster: lab, network: host }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n  - {{ name: blocked-dropped, job: argocd, kind: tcp, address: \"{SRV}:8081\", expect: {{ blocked: true }} }}\n  - {{ name: blocked-open, job: argocd, kind: tcp, address: \"{SRV}:8080\", expect: {{ blocked: true }} }}\nmesh:\n  peers: {{ static: [{}] }}\n  refresh: 1s\n  interval: 1s\n  timeout: 500ms\n",
            peers.join(", ")
        ),
    );
    for (i, (role, _)) in NODES.iter().enumerate() {
        c.agent(&ns[i], &format!("node-{}", &role[1..]), &inventory, "0.0.0.0:9807", &[]);
    }
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rules/pathprobe.rules.yaml");
    let targets: Vec<String> = (0..NODES.len()).map(|i| format!("'10.79.{i}.1:9807'")).collect();
    c.prometheus(
        &mon,
        PROM,
        &format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: ['{rules}']\nscrape_configs:\n  - job_name: pathprobe\n    static_configs: [ {{ targets: [{}] }} ]\n",
            targets.join(", ")
        ),
    );

    let long = Duration::from_secs(60);
    // 4 nodes x 3 peers x 2 payloads, every peer named by its node.
    wait_at(&mon, PROM, "pathprobe_peer_success", long, |r| {
        r.len() == 24
            && r.iter()
                .all(|s| s["metric"]["peer_node"].as_str().unwrap().starts_with("node-"))
    });
    let failing = wait_at(&mon, PROM, "pathprobe_peer_success == 0", long, |r| r.len() == 2);
    assert_eq!(
        pairs(&failing),
        BTreeSet::from([pair("node-3", "node-4")]),
        "{failing:?}"
    );
    let reasons = query(
        &mon,
        "pathprobe_peer_failure_reason{source_node=\"node-3\",peer_node=\"node-4\"} == 1",
    );
    assert!(
        reasons.len() == 2 && reasons.iter().all(|r| r["metric"]["reason"] == "connect_timeout"),
        "{reasons:?}"
    );
    // Every other pair green (a wait: on a loaded machine one 500ms probe may time out once).
    wait_at(&mon, PROM, "sum(pathprobe_peer_success)", long, |r| {
        r.first().is_some_and(|s| s["value"][1] == "22")
    });

    // Must-be-blocked: the dropped one succeeds everywhere, the open one is reached everywhere.
    wait_at(
        &mon,
        PROM,
        "pathprobe_success{target=\"blocked-dropped\"} == 1",
        long,
        |r| r.len() == 4,
    );
    wait_at(
        &mon,
        PROM,
        "pathprobe_failure_reason{target=\"blocked-open\",reason=\"unexpectedly_reachable\"} == 1",
        long,
        |r| r.len() == 4,
    );

    let want = BTreeSet::from([
        ("PathprobePeerPathBroken".to_string(), "node-3->node-4".to_string()),
        ("PathprobeUnexpectedlyReachable".to_string(), "blocked-open".to_string()),
    ]);
    let deadline = std::time::Instant::now() + long;
    while alerts(&mon) != want {
        assert!(std::time::Instant::now() < deadline, "alerts: {:?}", alerts(&mon));
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(alerts(&mon), want, "nothing else pages, and it stays so");

    // Heal the pair; lower the MTU of node 2's bridge port: small frames pass, large ones vanish.
    in_ns(&ns[2], &["nft", "delete", "table", "inet", "fault"]);
    let port = format!("{}n2o", c.prefix);
    in_ns(
        &format!("{}lan", c.prefix),
        &["ip", "link", "set", &port, "mtu", "1280"],
    );

    let through_n2: BTreeSet<(String, String)> = ["node-1", "node-3", "node-4"]
        .iter()
        .flat_map(|n| [pair("node-2", n), pair(n, "node-2")])
        .collect();
    let large = wait_at(
        &mon,
        PROM,
        "pathprobe_peer_success{payload=\"large\"} == 0",
        long,
        |r| pairs(r) == through_n2,
    );
    assert!(
        large.iter().all(|s| {
            let m = &s["metric"];
            query(&mon, &format!(
                "pathprobe_peer_failure_reason{{source_node=\"{}\",peer_node=\"{}\",payload=\"large\",reason=\"http_timeout\"}} == 1",
                m["source_node"].as_str().unwrap(),
                m["peer_node"].as_str().unwrap()
            ))
            .len()
                == 1
        }),
        "large probes through node 2 time out in transfer"
    );
    wait_at(
        &mon,
        PROM,
        "pathprobe_peer_success{payload=\"small\"} == 1",
        long,
        |r| r.len() == 12,
    );

    let mtu_alerts = wait_at(
        &mon,
        PROM,
        "ALERTS{alertname=\"PathprobePathMTUBlackhole\"}",
        long,
        |r| pairs(r) == through_n2,
    );
    assert_eq!(mtu_alerts.len(), 6, "one alert per pair through node 2: {mtu_alerts:?}");
    let deadline = std::time::Instant::now() + long;
    while !query(&mon, "ALERTS{alertname=\"PathprobePeerPathBroken\"}").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the healed pair stops alerting");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    let now = alerts(&mon);
    let mtu: BTreeSet<String> = now
        .iter()
        .filter(|(a, _)| a == "PathprobePathMTUBlackhole")
        .map(|(_, about)| about.clone())
        .collect();
    let want_mtu: BTreeSet<String> = through_n2.iter().map(|(s, p)| format!("{s}->{p}")).collect();
    assert_eq!(mtu, want_mtu, "names those pairs and no others");
    let others: Vec<_> = now
        .iter()
        .filter(|(a, _)| a != "PathprobePathMTUBlackhole" && a != "PathprobeUnexpectedlyReachable")
        .collect();
    assert!(others.is_empty(), "no other alert: {others:?}");
}
