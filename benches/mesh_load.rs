//! A load run of the node mesh: one real agent (`pathprobe run`, the release binary) with N
//! simulated peers on loopback (each a tiny `/mesh` server answering as an agent would), at
//! `peers_per_node: 5`, and at 0 (every peer) for comparison. Reports the peer series the agent
//! exports and the CPU and memory it uses, and writes them to `benches/results/mesh_load.txt`.
//!
//! The interval is 1s (ten times the default's rate) so that the CPU figure is readable; the
//! per-probe cost scales down linearly with the 10s default.
//!
//! Run: `cargo bench --bench mesh_load`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pathprobe::fault_servers::{self as testbed, Reply};

const WARMUP: Duration = Duration::from_secs(6);
const MEASURE: Duration = Duration::from_secs(15);

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks; this is a load run, not a test.
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ticks = ticks_per_second();
    let mut lines = vec![format!(
        "mesh load run: one agent, N simulated peers on loopback (8 KiB large payload), interval 1s, timeout 500ms, refresh 5s; {}s measured after {}s warm-up; {} cores",
        MEASURE.as_secs(),
        WARMUP.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )];
    lines.push(format!(
        "{:>5} {:>3} {:>7} {:>13} {:>13} {:>11} {:>9}",
        "N", "k", "probed", "peer series", "probes/s", "agent CPU %", "RSS MiB"
    ));
    for (n, k) in [(10, 5), (100, 5), (1000, 5), (1000, 0)] {
        let servers: Vec<testbed::Server> = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(peer(i).await);
            }
            v
        });
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let r = run_agent(&addrs, k, ticks);
        lines.push(format!(
            "{n:>5} {k:>3} {:>7} {:>13} {:>13.1} {:>11.2} {:>9.1}",
            r.probed, r.series, r.probes_per_second, r.cpu_percent, r.rss_mib
        ));
        eprintln!("{}", lines.last().unwrap());
        drop(servers);
    }
    lines.push(
        "peer series: every pathprobe_peer_* line of the agent's /metrics (3 families x 2 payloads per probed peer, plus pathprobe_peers and pathprobe_peers_probed); fleet-wide that is about N*k*6 at k > 0 instead of N*(N-1)*6. CPU at the 10s default interval is a tenth of the figure."
            .to_string(),
    );
    let text = lines.join("\n") + "\n";
    print!("{text}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/mesh_load.txt");
    std::fs::write(&out, text).unwrap();
}

/// A stand-in agent: its identity, padded to whatever is asked (the large probe asks 8 KiB).
async fn peer(i: usize) -> testbed::Server {
    let id = format!(r#"{{"node":"sim-{i}","source_cluster":"bench","network":"host","state":"ready","peers":{{}}}}"#);
    testbed::http(move |_| {
        let mut body = id.clone().into_bytes();
        body.resize(8192, b' ');
        Reply::new(200, body)
    })
    .await
}

struct Figures {
    probed: usize,
    series: usize,
    probes_per_second: f64,
    cpu_percent: f64,
    rss_mib: f64,
}

fn run_agent(peers: &[SocketAddr], k: usize, ticks: f64) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "agent: {{ source_cluster: bench, network: host }}\nmesh:\n  peers: {{ static: [{}] }}\n  refresh: 5s\n  interval: 1s\n  timeout: 500ms\n  peers_per_node: {k}\n",
            list.join(", ")
        ),
    )
    .unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listen.local_addr().unwrap();
    drop(listen);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .args(["--max-in-flight", "256", "--log-format", "json"])
        .env("NODE_NAME", "bench-node")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent");
    let pid = child.id();
    std::thread::sleep(WARMUP);
    let (cpu0, t0) = (cpu_ticks(pid), Instant::now());
    let probes0 = probes(&metrics(addr));
    std::thread::sleep(MEASURE);
    let (cpu1, elapsed) = (cpu_ticks(pid), t0.elapsed());
    let text = metrics(addr);
    let probes1 = probes(&text);
    let rss_mib = rss_kib(pid) / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    let series = text.lines().filter(|l| l.starts_with("pathprobe_peer")).count();
    let probed = value(&text, "pathprobe_peers_probed").unwrap_or(0.0) as usize;
    Figures {
        probed,
        series,
        probes_per_second: (probes1 - probes0) / elapsed.as_secs_f64(),
        cpu_percent: 100.0 * (cpu1 - cpu0) / ticks / elapsed.as_secs_f64(),
        rss_mib,
    }
}

/// Probes started so far: every probe (mesh ones included) is observed once by the scheduler lag
/// histogram, and this agent has no other targets.
fn probes(text: &str) -> f64 {
    value(text, "pathprobe_scheduler_lag_seconds_count").unwrap_or(0.0)
}

fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn metrics(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn cpu_ticks(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command.
    f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}
