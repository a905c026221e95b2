//! The node mesh on loopback: agents found through a headless Service's DNS records (the test
//! DNS server), `/mesh` as peers see it, peers that are away or are not agents, and reloads.
//! Faults between nodes (drops, MTU) are in `tests/mesh_e2e.rs`, in network namespaces.

#[path = "common/agent.rs"]
mod agent;

use std::net::SocketAddr;
use std::time::Duration;

use agent::{promtool_check_metrics, series, value, write_atomic, Agent};
use pathprobe::fault_servers::{self as testbed, DnsAnswer, Reply};

/// A port free on 127.0.0.11-13 (each agent binds its own address with it).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.11:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every pair (peer_node, payload) with `pathprobe_peer_success` 1 in `text`.
fn green(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = series(text, "pathprobe_peer_success", &[])
        .into_iter()
        .filter(|l| l.ends_with(" 1"))
        .map(|l| (label(l, "peer_node"), label(l, "payload")))
        .collect();
    out.sort();
    out
}

fn label(line: &str, name: &str) -> String {
    let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    line[start..].split('"').next().unwrap().to_string()
}

/// A stand-in peer that answers like an agent: `node`'s identity, padded to 8 KiB (so it also
/// serves the `large` probe), with `status` and `state`.
async fn fake_agent(node: &'static str, status: u16, state: &'static str) -> testbed::Server {
    testbed::http(move |_| {
        let mut body =
            format!(r#"{{"node":"{node}","source_cluster":"lab","network":"host","state":"{state}","peers":{{}}}}"#)
                .into_bytes();
        body.resize(8192, b' ');
        Reply::new(status, body).header("content-type", "application/json")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_found_through_dns_probe_each_other_by_node_name_and_never_themselves() {
    let port = free_port();
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let dns = testbed::dns(vec![(
        "pathprobe-host.pathprobe.svc.cluster.local",
        DnsAnswer::Addresses(ips.iter().map(|i| i.parse().unwrap()).collect()),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(
        &config,
        format!(
            "agent: {{ source_cluster: lab, network: host, resolver: {{ nameservers: [\"{}\"] }} }}\nmesh:\n  peers: {{ dns: pathprobe-host.pathprobe.svc.cluster.local }}\n  refresh: 1s\n  interval: 300ms\n  timeout: 250ms\n",
            dns.addr
        ),
    )
    .unwrap();
    let agents: Vec<Agent> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| Agent::start_on(&config, &format!("node-{}", i + 1), &format!("{ip}:{port}"), &[]))
        .collect();

    for (i, a) in agents.iter().enumerate() {
        let me = format!("node-{}", i + 1);
        let others: Vec<String> = (1..=3).map(|n| format!("node-{n}")).filter(|n| *n != me).collect();
        let mut want: Vec<(String, String)> = others
            .iter()
            .flat_map(|n| [(n.clone(), "large".to_string()), (n.clone(), "small".to_string())])
            .collect();
        want.sort();
        let text = a.wait_metrics("every peer green by name", Duration::from_secs(20), |t| {
            green(t) == want
        });
        assert_eq!(value(&text, "pathprobe_peers", &[]), Some(2.0), "itself left out");
        assert_eq!(value(&text, "pathprobe_peers_probed", &[]), Some(2.0));
        let own = format!("{}", a.addr);
        assert!(
            series(&text, "pathprobe_peer_success", &[("peer_address", &own)]).is_empty(),
            "never probes itself"
        );
        assert_eq!(
            series(&text, "pathprobe_peer_failure_reason", &[("reason", "none")]).len(),
            4,
            "one reason series per peer and payload"
        );
        let (ok, report) = promtool_check_metrics(&text);
        assert!(ok && report.trim().is_empty(), "promtool: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_endpoint_answers_its_identity_and_bounded_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(&config, "agent: { source_cluster: lab, network: pod }\ntargets: []\n").unwrap();
    let a = Agent::start(&config, "node-7", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.get("/readyz", None).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the agent became ready");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, body) = a.get("/mesh", None);
    assert_eq!(status, 200);
    let id: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&id["node"], &id["source_cluster"], &id["network"], &id["state"]),
        (&"node-7".into(), &"lab".into(), &"pod".into(), &"ready".into())
    );

    let (status, body) = a.get("/mesh?bytes=8192", None);
    assert_eq!((status, body.len()), (200, 8192));
    let (status, body) = a.get("/mesh?bytes=65536", None);
    assert_eq!((status, body.len()), (200, 65536));
    let (status, body) = a.get("/mesh?bytes=65537", None);
    assert_eq!(status, 400);
    assert_eq!(body, "bytes=65537 is over the cap; ask for at most 65536 bytes\n");
    let (status, body) = a.get("/mesh?bytes=lots", None);
    assert_eq!(status, 400);
    assert_eq!(body, "bytes must be a whole number of bytes, e.g. /mesh?bytes=8192\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_peer_is_away_a_stranger_is_a_body_mismatch_and_a_closed_port_is_refused() {
    let draining = fake_agent("node-d", 503, "draining").await;
    let healthy = fake_agent("node-h", 200, "ready").await;
    let stranger = testbed::http(|_| Reply::new(200, "ok\n")).await;
    let closed = testbed::refused_port().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let inventory = |peers: &[SocketAddr]| {
        let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "agent: {{ source_cluster: lab, network: host }}\nmesh:\n  peers: {{ static: [{}] }}\n  refresh: 1s\n  interval: 300ms\n  timeout: 250ms\n",
            list.join(", ")
        )
    };
    std::fs::write(
        &config,
        inventory(&[draining.addr, healthy.addr, stranger.addr, closed]),
    )
    .unwrap();
    let a = Agent::start(&config, "node-1", &[]);

    let reason = |text: &str, peer: SocketAddr, payload: &str| {
        series(
            text,
            "pathprobe_peer_failure_reason",
            &[("peer_address", &peer.to_string()), ("payload", payload)],
        )
        .iter()
        .map(|l| label(l, "reason"))
        .collect::<Vec<_>>()
    };
    let text = a.wait_metrics("every peer judged", Duration::from_secs(20), |t| {
        reason(t, closed, "large") == ["connect_refused"]
            && reason(t, closed, "small") == ["connect_refused"]
            && reason(t, stranger.addr, "small") == ["body_mismatch"]
            && reason(t, healthy.addr, "large") == ["none"]
            && reason(t, healthy.addr, "small") == ["none"]
    });
    assert_eq!(
        value(
            &text,
            "pathprobe_peer_success",
            &[("peer_address", &healthy.addr.to_string())]
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&text, "pathprobe_peer_success", &[("peer_node", "node-h")]).len(),
        2,
        "named by its answer"
    );
    assert_eq!(
        series(&text, "pathprobe_peer_success", &[("peer_node", &closed.to_string())]).len(),
        2,
        "a peer nobody reached is named by its address"
    );
    assert!(
        series(
            &text,
            "pathprobe_peer_success",
            &[("peer_address", &draining.addr.to_string())]
        )
        .is_empty(),
        "a draining peer is away, not failing: {text}"
    );
    assert_eq!(value(&text, "pathprobe_peers", &[]), Some(4.0));

    // A reload that drops two peers removes their series at once and keeps the others' state.
    write_atomic(&config, &inventory(&[healthy.addr, closed]));
    let text = a.wait_metrics("the stranger gone", Duration::from_secs(10), |t| {
        reason(t, stranger.addr, "small").is_empty()
    });
    assert_eq!(reason(&text, healthy.addr, "small"), ["none"], "kept across the reload");
    assert_eq!(reason(&text, closed, "small"), ["connect_refused"]);
    assert_eq!(value(&text, "pathprobe_peers", &[]), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_is_logged_and_counted_and_the_agent_keeps_running() {
    let dns = testbed::dns(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(
        &config,
        format!(
            "agent: {{ source_cluster: lab, network: host, resolver: {{ nameservers: [\"{}\"] }} }}\nmesh:\n  peers: {{ dns: nowhere.pathprobe.svc.cluster.local }}\n  refresh: 300ms\n",
            dns.addr
        ),
    )
    .unwrap();
    let a = Agent::start(&config, "node-1", &[]);
    let text = a.wait_metrics("a failed refresh counted", Duration::from_secs(10), |t| {
        value(t, "pathprobe_mesh_refreshes_total", &[("result", "failure")]).is_some_and(|v| v >= 2.0)
    });
    assert_eq!(value(&text, "pathprobe_peers", &[]), Some(0.0));
    assert!(a.logged("reading the mesh peers failed; the last peer list keeps being probed"));
    assert_eq!(a.get("/healthz", None).0, 200);
}

/// (inventory, the exact `ConfigErrors` display): every bad `mesh:` and `expect.blocked`.
const BAD: &[(&str, &str)] = &[
    (
        "mesh: { interval: 5s }",
        "mesh.peers: missing; set dns: <a headless Service, e.g. pathprobe-host.pathprobe.svc.cluster.local> or static: [ip:port, …]",
    ),
    (
        "mesh: { peers: { static: [] } }",
        "mesh.peers.static: empty; list the agents as ip:port (this agent may be among them; it never probes itself), or use dns",
    ),
    (
        "mesh: { peers: { static: [\"192.0.2.1:9807\", \"node-2:9807\"] } }",
        "mesh.peers.static[1]: `node-2:9807` is not an IP address or ip:port; write e.g. 192.0.2.11:9807 or [2001:db8::11]:9807",
    ),
    (
        "mesh: { peers: { dns: a.b, static: [\"192.0.2.1\"] } }",
        "mesh.peers.static: given together with dns; the peers come from one place, keep dns (Kubernetes) or static (tests, hosts outside Kubernetes)",
    ),
    (
        "mesh: { peers: { dns: \"not a name\" } }",
        "mesh.peers.dns: `not a name` is not a DNS name; give the headless Service's name, e.g. pathprobe-host.pathprobe.svc.cluster.local",
    ),
    (
        "mesh: { peers: { dns: a.b }, peers_per_node: 100000 }",
        "mesh.peers_per_node: 100000 is more than 1000, no longer a bounded fan-out; use a small k such as 5 (each node is then probed by about k others), or 0 for every peer",
    ),
    (
        "mesh: { peers: { dns: a.b }, peers_per_node: -1 }",
        "mesh.peers_per_node: `-1` is not a whole number; give k >= 0 (0 or absent: every peer; k: k peers chosen by rendezvous hashing)",
    ),
    (
        "mesh: { peers: { dns: a.b }, large_payload: 1MiB }",
        "mesh.large_payload: 1048576 bytes is over the 64KiB that agents answer; use e.g. 8KiB (anything above the path MTU shows a black hole), or 0 to turn the check off",
    ),
    (
        "mesh: { peers: { dns: a.b }, port: 70000, refresh: 0s }",
        "mesh.port: `70000` is not a port; give a number from 1 to 65535 (the agents' --listen port), or remove it to use this agent's own\nmesh.refresh: `0s` is zero; give a positive duration, e.g. 30s",
    ),
    (
        "targets:\n  - { name: d, kind: dns, address: a.b, expect: { blocked: true } }",
        "targets[0].expect.blocked: dns targets resolve a name, there is no connection to be blocked; use kind tcp with the address that must be blocked",
    ),
    (
        "targets:\n  - { name: h, kind: http, url: \"http://192.0.2.1/\", expect: { blocked: true, status: 403 } }",
        "targets[0].expect.status: a must-be-blocked target is never asked anything (a connection is already the failure); remove it, or remove expect.blocked",
    ),
];

#[test]
fn every_bad_mesh_and_blocked_setting_is_refused_with_its_field_and_fix() {
    for (body, want) in BAD {
        let text = format!("agent: {{ source_cluster: lab }}\n{body}\n");
        match pathprobe::config::parse(&text, std::path::Path::new(".")) {
            Ok(_) => panic!("accepted:\n{body}"),
            Err(e) => assert_eq!(e.to_string(), *want, "for:\n{body}"),
        }
    }
}

#[test]
fn a_valid_mesh_takes_the_contract_defaults_and_blocked_targets_load() {
    let inv = pathprobe::config::parse(
        "agent: { source_cluster: lab }\nmesh: { peers: { dns: pathprobe-host.pathprobe.svc.cluster.local } }\ntargets:\n  - { name: argocd-metrics-from-nodes, kind: tcp, address: \"10.10.0.40:30082\", expect: { blocked: true } }\n",
        std::path::Path::new("."),
    )
    .unwrap();
    let m = inv.mesh.unwrap();
    assert_eq!(
        (
            m.refresh,
            m.interval,
            m.timeout,
            m.peers_per_node,
            m.large_payload,
            m.port
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(2),
            0,
            8192,
            None
        )
    );
    assert!(inv.targets[0].blocked);
    let off = pathprobe::config::parse_with_warnings(
        "agent: { source_cluster: lab }\nmesh: { peers: { static: [\"192.0.2.1\"] }, port: 9807, large_payload: 0, peers_per_node: 5 }\n",
        std::path::Path::new("."),
    )
    .unwrap();
    let m = off.inventory.mesh.unwrap();
    assert_eq!((m.large_payload, m.peers_per_node, m.port), (0, 5, Some(9807)));
    assert!(off.warnings.is_empty(), "{:?}", off.warnings);
}
