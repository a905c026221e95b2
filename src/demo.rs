//! `pathprobe demo`: the zero-setup tour. Starts loopback targets, one per failure class, writes
//! an inventory for them, and probes them through the same config loader, engine and exporter
//! the agent uses.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::probe::{self, ProbeContext, ProbeResult, Resolver};
use crate::target::{Inventory, Target};
use crate::testbed::{self, DnsAnswer, Reply, Server, TestCa};
use crate::{agent, config, report, serve};

/// A node-exporter-like body for the healthy scrape target.
const EXPOSITION: &str = "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.42\n# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.6\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 321.5\n";

/// The running loopback targets (kept alive while the demo runs).
pub struct Fleet {
    _servers: Vec<Server>,
    _dir: tempfile::TempDir,
    /// The demo's inventory, checked.
    pub inventory: Inventory,
    /// The inventory file the agent loads.
    pub inventory_path: std::path::PathBuf,
}

/// Starts the loopback targets and loads the inventory that names them.
pub async fn start() -> anyhow::Result<Fleet> {
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let ok = |body: &'static str| move |_: &testbed::Seen<'_>| Reply::new(200, body);
    let healthy = testbed::http(ok("ok\n")).await;
    let exporter = testbed::http(|_: &testbed::Seen<'_>| {
        Reply::new(200, EXPOSITION).header("content-type", "text/plain; version=0.0.4")
    })
    .await;
    let broken_exporter = testbed::http(ok("node_load1 {oops\n")).await;
    let auth = testbed::http(|s: &testbed::Seen<'_>| {
        let good = "Basic cm9vdEBwYW06Y29ycmVjdC1ob3JzZQ=="; // root@pam:correct-horse
        match s.headers.get("authorization") {
            Some(v) if v == good => Reply::new(200, "ok\n"),
            _ => Reply::new(401, "authentication failure\n").header("www-authenticate", "Basic realm=\"pve\""),
        }
    })
    .await;
    let proxy_503 = testbed::http(|_: &testbed::Seen<'_>| {
        Reply::new(
            503,
            "Error trying to reach service: 'dial tcp 10.244.2.17:8082: i/o timeout'\n",
        )
    })
    .await;
    let self_signed = testbed::https(&testbed::self_signed(&["127.0.0.1"]), ok("ok\n")).await;
    let expired_cert = ca.issue(
        &["127.0.0.1"],
        now - time::Duration::days(400),
        now - time::Duration::days(35),
    );
    let expired = testbed::https(&expired_cert, ok("ok\n")).await;
    let wrong_name = testbed::https(&ca.issue_valid(&["grafana.example.internal"]), ok("ok\n")).await;
    let hanging = testbed::hanging().await;
    let resetting = testbed::resetting().await;
    let not_http = testbed::speaking(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let refused = testbed::refused_port().await;
    let dns = testbed::dns(vec![(
        "prometheus.monitoring.svc.cluster.local",
        DnsAnswer::Addresses(vec!["127.0.0.1".parse().expect("literal")]),
    )])
    .await;

    // The agent reloads its inventory from a file, so the demo needs somewhere to write one.
    let dir = tempfile::tempdir().with_context(|| {
        format!(
            "creating a temporary directory for the demo inventory in {} (set TMPDIR to a writable \
             directory; in a container with a read-only root filesystem, mount an emptyDir or a \
             tmpfs at /tmp)",
            std::env::temp_dir().display()
        )
    })?;
    std::fs::write(dir.path().join("demo-ca.pem"), &ca.cert_pem)?;
    std::fs::write(dir.path().join("proxmox-password"), "wrong-password\n")?;
    let yaml = inventory_yaml(&Addrs {
        healthy: healthy.addr,
        exporter: exporter.addr,
        broken_exporter: broken_exporter.addr,
        auth: auth.addr,
        proxy_503: proxy_503.addr,
        self_signed: self_signed.addr,
        expired: expired.addr,
        wrong_name: wrong_name.addr,
        hanging: hanging.addr,
        resetting: resetting.addr,
        not_http: not_http.addr,
        refused,
        dns: dns.addr,
    });
    std::fs::write(dir.path().join("inventory.yaml"), &yaml)?;
    let inventory =
        config::parse(&yaml, dir.path()).map_err(|e| anyhow::anyhow!("the demo inventory is invalid:\n{e}"))?;
    let servers = vec![
        healthy,
        exporter,
        broken_exporter,
        auth,
        proxy_503,
        self_signed,
        expired,
        wrong_name,
        hanging,
        resetting,
        not_http,
        dns,
    ];
    let inventory_path = dir.path().join("inventory.yaml");
    Ok(Fleet {
        _servers: servers,
        _dir: dir,
        inventory,
        inventory_path,
    })
}

struct Addrs {
    healthy: SocketAddr,
    exporter: SocketAddr,
    broken_exporter: SocketAddr,
    auth: SocketAddr,
    proxy_503: SocketAddr,
    self_signed: SocketAddr,
    expired: SocketAddr,
    wrong_name: SocketAddr,
    hanging: SocketAddr,
    resetting: SocketAddr,
    not_http: SocketAddr,
    refused: SocketAddr,
    dns: SocketAddr,
}

fn inventory_yaml(a: &Addrs) -> String {
    format!(
        r#"# The demo's inventory, written for loopback targets started by `pathprobe demo`.
agent:
  source_cluster: demo
  network: host
  resolver: {{ nameservers: ["{dns}"] }}
defaults:
  interval: 5s
  timeout: 2s
targets:
  - {{ name: healthy-http, job: demo, kind: http, url: "http://{healthy}/healthz" }}
  - {{ name: node-exporter, job: demo, kind: scrape, url: "http://{exporter}/metrics" }}
  - {{ name: prometheus-svc-dns, job: demo, kind: dns, address: prometheus.monitoring.svc.cluster.local }}
  - {{ name: deleted-svc-dns, job: demo, kind: dns, address: grafana.monitoring.svc.cluster.local }}
  - {{ name: nothing-listening, job: demo, kind: tcp, address: "{refused}" }}
  - name: proxmox-wrong-password
    job: demo
    kind: http
    url: "http://{auth}/api2/prometheus?format=prometheus"
    basic_auth: {{ username: root@pam, password_file: proxmox-password }}
  - {{ name: apiserver-proxy-503, job: demo, kind: scrape, url: "http://{proxy_503}/api/v1/namespaces/argocd/services/argocd-metrics:8082/proxy/metrics" }}
  - {{ name: self-signed-tls, job: demo, kind: http, url: "https://{self_signed}/" }}
  - {{ name: expired-cert, job: demo, kind: http, url: "https://{expired}/", tls: {{ ca_file: demo-ca.pem }} }}
  - {{ name: wrong-name-cert, job: demo, kind: tls, address: "{wrong_name}", tls: {{ ca_file: demo-ca.pem }} }}
  - {{ name: hanging-server, job: demo, kind: http, url: "http://{hanging}/metrics" }}
  - {{ name: resetting-server, job: demo, kind: http, url: "http://{resetting}/" }}
  - {{ name: ssh-not-http, job: demo, kind: http, url: "http://{not_http}/" }}
  - {{ name: broken-exporter, job: demo, kind: scrape, url: "http://{broken_exporter}/metrics" }}
  - name: kube-scheduler
    job: kube-scheduler
    expected: false
    why: Talos binds kube-scheduler to 127.0.0.1; there is nothing to scrape
"#,
        dns = a.dns,
        healthy = a.healthy,
        exporter = a.exporter,
        refused = a.refused,
        auth = a.auth,
        proxy_503 = a.proxy_503,
        self_signed = a.self_signed,
        expired = a.expired,
        wrong_name = a.wrong_name,
        hanging = a.hanging,
        resetting = a.resetting,
        not_http = a.not_http,
        broken_exporter = a.broken_exporter,
    )
}

/// Probes every target of the inventory at once.
pub async fn probe_all(inventory: &Inventory, ctx: &ProbeContext) -> Vec<ProbeResult> {
    let probes = inventory.targets.iter().map(|t| probe::probe(t, ctx));
    futures_util::future::join_all(probes).await
}

/// The demo's table, with what it shows said first and the documented-absent targets listed
/// under it.
pub fn render(inventory: &Inventory, results: &[ProbeResult]) -> String {
    let rows: Vec<(&Target, &ProbeResult)> = inventory.targets.iter().zip(results).collect();
    let healthy = results.iter().filter(|r| r.success()).count() as u64;
    let failing = results.len() as u64 - healthy;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pathprobe demo: {} on loopback, started for this tour. {} healthy; {} on purpose, one per \
         failure class, to show how each failure reads. Nothing is wrong with this machine.",
        report::plural(results.len() as u64, "target", "targets"),
        if healthy == 1 {
            "1 is".to_string()
        } else {
            format!("{healthy} are")
        },
        if failing == 1 {
            "the other fails".to_string()
        } else {
            format!("the other {failing} fail")
        },
    );
    let _ = writeln!(
        out,
        "Columns: the time of each phase — RESOLVE (name lookup), CONNECT (TCP), TLS (handshake), \
         REQUEST (from sending the request to the first byte of the answer), TRANSFER (reading the \
         body), TOTAL; STATUS is the HTTP status; REASON the first phase that broke (none: success). \
         \"-\": the phase did not run.\n"
    );
    out.push_str(&report::table(&rows, report::Hints::Inventory));
    for absent in &inventory.absent {
        let _ = writeln!(out, "{}", report::absent_line(absent));
    }
    out
}

/// Runs the demo: one round probed and printed; then, unless `once`, the real agent
/// (`pathprobe run`) on the demo's inventory, serving `/metrics` and the status page on `listen`
/// until Ctrl-C.
pub async fn run(once: bool, listen: SocketAddr, node: String) -> anyhow::Result<()> {
    let fleet = start().await?;
    let inventory = &fleet.inventory;
    let resolver =
        Resolver::new(&inventory.agent.resolver).map_err(|e| anyhow::anyhow!("building the resolver: {e}"))?;
    let ctx = ProbeContext {
        resolver: Arc::new(resolver),
        pin: None,
    };
    let results = probe_all(inventory, &ctx).await;
    print!("{}", render(inventory, &results));
    if once {
        return Ok(());
    }
    let listener = serve::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("\nserving http://{addr}/metrics and the status page http://{addr}/ — the agent probes every 5s; Ctrl-C to stop");
    let opts = agent::Options {
        config: fleet.inventory_path.clone(),
        listen: addr,
        node,
        schedule: crate::schedule::Settings::default(),
        reload_poll: Duration::from_secs(1),
        drain_grace: Duration::from_secs(3),
        source_cluster: None,
        network: None,
        mesh_dns: None,
    };
    agent::run_on(listener, opts).await?;
    Ok(())
}
