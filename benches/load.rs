//! The side-by-side load run: on the same loopback targets, in one run, `pathprobe run`, Debian's
//! `prometheus-blackbox-exporter` driven through `/probe` on the same schedule, and the floor (a
//! bare connect loop, a bare rustls handshake loop, a bare HTTP GET loop), for TCP, HTTP and
//! HTTPS targets at N = 100, 1,000, 10,000. Each contender is a separate process measured from
//! /proc: CPU per 1,000 probes, peak (VmHWM) and steady RSS, the peaks of its anonymous and
//! file-backed parts (RssAnon, RssFile, sampled from its start), scheduler lag, `/metrics`
//! scrape time and size, and where pathprobe's memory is at the end (/proc/PID/smaps). Writes
//! `benches/RESULTS.md` (ratios first) and `benches/results/load.json`.
//!
//! The rate is every target once per interval; below `PATHPROBE_LOAD_RATE` targets the interval
//! would be under the agent's 1 s floor, so the rate is N probes/s there (interval 1 s).
//!
//! pathprobe is the binary the container image ships: `scripts/image-rootfs --binary-only`
//! builds it (static glibc, fat LTO, stripped; a few minutes the first time) and the run
//! measures that, since its code pages are most of the agent's RSS and a DaemonSet runs it.
//!
//! Run: `cargo bench --bench load`. Knobs (environment):
//! `PATHPROBE_LOAD_SIZES` (100,1000,10000), `PATHPROBE_LOAD_KINDS` (tcp,http,https),
//! `PATHPROBE_LOAD_RATE` (probes/s, 500), `PATHPROBE_LOAD_SECS` (measured seconds, 20),
//! `PATHPROBE_LOAD_BIN` (`image`, the default: the image's static build; `dev`: this build's
//! dynamic binary, the bench profile's, without LTO; or a path),
//! `PATHPROBE_LOAD_LABEL` (`current`: the results file is `load-<label>.json` unless `current`),
//! `PATHPROBE_LOAD_BLACKBOX` (`prometheus-blackbox-exporter`; `none` to skip).
//! Benchmarks, not tests: nothing here asserts a time.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use pathprobe::fault_servers::{self as testbed, Reply, TestCa};

/// Loopback servers per kind; targets are spread over them.
const SERVERS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tcp,
    Http,
    Https,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https => "https",
        }
    }
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "tcp" => Kind::Tcp,
            "http" => Kind::Http,
            "https" => Kind::Https,
            _ => return None,
        })
    }
}

/// One contender's figures over the measured window.
#[derive(Debug, Default, Clone)]
struct Figures {
    contender: String,
    kind: String,
    targets: usize,
    probes: u64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    steady_rss_kib: u64,
    /// Anonymous memory (heap, stacks) of the steady RSS: what grows with targets.
    steady_anon_kib: u64,
    /// The highest anonymous (RssAnon) and file-backed (RssFile: code, read-only data) RSS seen,
    /// each its own maximum over samples from the process's start.
    peak_anon_kib: u64,
    peak_file_kib: u64,
    /// pathprobe's RSS by mapping at the end of the window, largest first (KiB).
    smaps: Vec<(String, u64)>,
    lag_p50_ms: Option<f64>,
    lag_p99_ms: Option<f64>,
    scrape_ms: Option<f64>,
    scrape_bytes: Option<usize>,
}

impl Figures {
    fn cpu_us_per_probe(&self) -> f64 {
        if self.probes == 0 {
            return f64::NAN;
        }
        self.cpu_seconds / self.probes as f64 * 1e6
    }

    fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "null".into());
        format!(
            "{{\"contender\":\"{}\",\"kind\":\"{}\",\"targets\":{},\"probes\":{},\"cpu_seconds\":{:.3},\
             \"cpu_seconds_per_1000_probes\":{:.4},\"cpu_us_per_probe\":{:.1},\"peak_rss_kib\":{},\
             \"steady_rss_kib\":{},\"steady_anon_kib\":{},\"peak_anon_kib\":{},\"peak_file_kib\":{},\"smaps_kib\":{{{}}},\"lag_p50_ms\":{},\"lag_p99_ms\":{},\"scrape_ms\":{},\"scrape_bytes\":{}}}",
            self.contender,
            self.kind,
            self.targets,
            self.probes,
            self.cpu_seconds,
            self.cpu_us_per_probe() / 1000.0,
            self.cpu_us_per_probe(),
            self.peak_rss_kib,
            self.steady_rss_kib,
            self.steady_anon_kib,
            self.peak_anon_kib,
            self.peak_file_kib,
            self.smaps
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(","),
            opt(self.lag_p50_ms),
            opt(self.lag_p99_ms),
            opt(self.scrape_ms),
            self.scrape_bytes.map(|b| b.to_string()).unwrap_or_else(|| "null".into()),
        )
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Linux's USER_HZ, the unit of /proc's CPU times: 100 on every architecture built for.
fn clock_ticks() -> f64 {
    100.0
}

/// utime + stime of a process, in seconds (includes threads that have exited).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// (VmRSS, VmHWM, RssAnon, RssFile) in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((
        field("VmRSS:")?,
        field("VmHWM:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
    ))
}

/// RSS by mapping from /proc/PID/smaps, in KiB, largest first: the executable's and each
/// library's mappings by file name and permissions (`pathprobe r-xp` is its code), `[heap]`,
/// `[stack]`, and `[anon]` for the rest (thread stacks, large allocations).
fn smaps(pid: u32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("[anon]");
            let name = path.rsplit('/').next().unwrap_or(path);
            current = format!("{name} {perms}");
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match by.iter_mut().find(|(k, _)| *k == current) {
                Some(e) => e.1 += kib,
                None => by.push((current.clone(), kib)),
            }
        }
    }
    by.retain(|(_, kib)| *kib > 0);
    by.sort_by_key(|e| std::cmp::Reverse(e.1));
    by
}

/// The size of an ELF executable's code (its executable PT_LOAD segments), in bytes.
fn code_bytes(path: &Path) -> Option<u64> {
    let elf = std::fs::read(path).ok()?;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None; // not a 64-bit ELF
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36)? as usize, u16_at(0x38)?);
    let mut code = 0;
    for i in 0..phnum as usize {
        let ph = phoff + i * phentsize;
        // PT_LOAD with PF_X
        if u32_at(ph)? == 1 && u32_at(ph + 4)? & 1 == 1 {
            code += u64_at(ph + 0x20)?;
        }
    }
    Some(code)
}

/// Samples a process's RssAnon and RssFile every 20 ms from its start until it exits or is
/// dropped, keeping the highest of each: VmHWM says how high the RSS went, not what it was.
struct Peaks {
    highest: Arc<(AtomicU64, AtomicU64)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Peaks {
    fn track(pid: u32) -> Peaks {
        let highest = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s) = (highest.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some((_, _, anon, file)) = rss_kib(pid) else { return };
                h.0.fetch_max(anon, Ordering::Relaxed);
                h.1.fetch_max(file, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Peaks { highest, stop }
    }
    /// (peak anonymous, peak file-backed) in KiB.
    fn get(&self) -> (u64, u64) {
        (
            self.highest.0.load(Ordering::Relaxed),
            self.highest.1.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Peaks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A blocking HTTP/1.1 GET with `Connection: close`; (status, body, seconds).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String, f64)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let secs = started.elapsed().as_secs_f64();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body, secs))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of a metric's samples in a text exposition, optionally only lines containing `with`.
fn sum_metric(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The cumulative buckets of a histogram: (le, count).
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// A quantile from the difference of two cumulative histograms, interpolated in the bucket.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let d: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            (
                *le,
                n - before.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0),
            )
        })
        .collect();
    let total = d.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, n) in d {
        if n >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let frac = if n > prev.1 {
                (rank - prev.1) / (n - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, n);
    }
    None
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Starts a contender listening on a free loopback port (`start` gets the address) and waits
/// until `path` answers 200. The port is free when picked but may be taken before the contender
/// binds it (this machine's other processes open loopback connections all the time): a
/// contender that exits meanwhile is started again on another port.
fn start_ready(path: &str, mut start: impl FnMut(SocketAddr) -> Option<Child>) -> Option<(Killed, SocketAddr, Peaks)> {
    for _ in 0..5 {
        let addr = free_port();
        let mut child = Killed(start(addr)?);
        let peaks = Peaks::track(child.0.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some((200, _, _)) = get(addr, path) {
                return Some((child, addr, peaks));
            }
            if child.0.try_wait().ok().flatten().is_some() {
                break; // exited: most likely the port was taken
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if Instant::now() >= deadline {
            panic!("{addr}{path} never became ready");
        }
    }
    panic!("{path}: the contender exited at start five times");
}

struct Killed(Child);

impl Drop for Killed {
    /// SIGTERM first, as Kubernetes stops a pod (and so a profiler running the agent, as
    /// scripts/code-order does, writes its profile); SIGKILL after 20 s.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) only sends a signal to our own child, which has not been reaped
            // (so the pid is still its own).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The loopback targets all contenders probe.
struct Targets {
    tcp: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    ca_file: PathBuf,
    _servers: Vec<testbed::Server>,
}

impl Targets {
    fn addrs(&self, kind: Kind) -> &[SocketAddr] {
        match kind {
            Kind::Tcp => &self.tcp,
            Kind::Http => &self.http,
            Kind::Https => &self.https,
        }
    }

    /// The `i`th target: the address blackbox gets and the line of pathprobe's inventory.
    fn target(&self, kind: Kind, i: usize) -> (String, String) {
        let a = self.addrs(kind)[i % SERVERS];
        match kind {
            Kind::Tcp => (
                a.to_string(),
                format!("  - {{ name: t{i}, job: load, kind: tcp, address: \"{a}\" }}\n"),
            ),
            Kind::Http => (
                format!("http://{a}/"),
                format!("  - {{ name: t{i}, job: load, kind: http, url: \"http://{a}/\" }}\n"),
            ),
            Kind::Https => (
                format!("https://{a}/"),
                format!(
                    "  - {{ name: t{i}, job: load, kind: http, url: \"https://{a}/\", tls: {{ ca_file: \"{}\" }} }}\n",
                    self.ca_file.display()
                ),
            ),
        }
    }
}

async fn start_targets(dir: &Path) -> Targets {
    let mut servers = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..SERVERS {
        // Accepts and closes: all a TCP probe needs.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tcp.push(l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
    }
    let mut http = Vec::new();
    for _ in 0..SERVERS {
        let s = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
        http.push(s.addr);
        servers.push(s);
    }
    let ca = TestCa::new();
    let leaf = ca.issue_valid(&["127.0.0.1"]);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let mut https = Vec::new();
    for _ in 0..SERVERS {
        let s = testbed::https(&leaf, |_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
        https.push(s.addr);
        servers.push(s);
    }
    Targets {
        tcp,
        http,
        https,
        ca_file,
        _servers: servers,
    }
}

/// Samples a process during the measured window.
struct Sampler {
    pid: u32,
    cpu0: f64,
    rss: Vec<(u64, u64)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        Sampler {
            pid,
            cpu0: cpu_seconds(pid).unwrap_or(0.0),
            rss: Vec::new(),
        }
    }
    fn sample(&mut self) {
        if let Some((rss, _, anon, _)) = rss_kib(self.pid) {
            self.rss.push((rss, anon));
        }
    }
    /// (cpu seconds, peak, median RSS and its anonymous part).
    fn finish(mut self) -> (f64, u64, (u64, u64)) {
        self.sample();
        let cpu = cpu_seconds(self.pid).unwrap_or(0.0) - self.cpu0;
        let peak = rss_kib(self.pid).map(|r| r.1).unwrap_or(0);
        self.rss.sort();
        let steady = self.rss.get(self.rss.len() / 2).copied().unwrap_or((0, 0));
        (cpu, peak, steady)
    }
}

/// Samples a contender's /proc figures every 100 ms for `secs`, scraping its `/metrics` every
/// 5 s as Prometheus would (part of the measured cost): the sampler and each scrape's (seconds,
/// bytes), fastest first.
fn watch(pid: u32, listen: SocketAddr, secs: u64) -> (Sampler, Vec<(f64, usize)>) {
    let mut sampler = Sampler::start(pid);
    let started = Instant::now();
    let mut scrapes = Vec::new();
    let mut next_scrape = Instant::now() + Duration::from_secs(5);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100));
        sampler.sample();
        if Instant::now() >= next_scrape {
            if let Some((_, body, secs)) = get(listen, "/metrics") {
                scrapes.push((secs, body.len()));
            }
            next_scrape += Duration::from_secs(5);
        }
    }
    scrapes.sort_by(|a, b| a.0.total_cmp(&b.0));
    (sampler, scrapes)
}

struct Plan {
    rate: f64,
    secs: u64,
}

impl Plan {
    /// Every target once per interval: the interval that gives `rate` probes/s, but at least
    /// the agent's floor of 1 s (so N probes/s when N < rate: it refuses shorter intervals).
    fn interval(&self, n: usize) -> Duration {
        Duration::from_secs_f64(n as f64 / self.rate).max(Duration::from_secs(1))
    }
    /// Start-up: one interval (every target has started), at least 3 s, at most 25 s.
    fn warmup(&self, n: usize) -> Duration {
        self.interval(n).clamp(Duration::from_secs(3), Duration::from_secs(25))
    }
}

fn run_pathprobe(bin: &Path, dir: &Path, targets: &Targets, kind: Kind, n: usize, plan: &Plan) -> Figures {
    let interval = plan.interval(n);
    let mut inv = format!(
        "agent: {{ source_cluster: load, network: host }}\ndefaults: {{ interval: {}ms, timeout: 2s }}\ntargets:\n",
        interval.as_millis()
    );
    for i in 0..n {
        inv += &targets.target(kind, i).1;
    }
    let config = dir.join(format!("inventory-{}-{n}.yaml", kind.as_str()));
    std::fs::write(&config, inv).unwrap();
    let (child, listen, peaks) = start_ready("/readyz", |listen| {
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--listen", &listen.to_string(), "--max-in-flight", "128"])
            .env("NODE_NAME", "load-node")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pathprobe");
        Some(child)
    })
    .expect("pathprobe starts");
    let pid = child.0.id();
    std::thread::sleep(plan.warmup(n));
    let before = get(listen, "/metrics").expect("scraping pathprobe").1;
    let (sampler, scrapes) = watch(pid, listen, plan.secs);
    let after = get(listen, "/metrics").expect("scraping pathprobe").1;
    let (cpu, peak, steady) = sampler.finish();
    let (peak_anon, peak_file) = peaks.get();
    let smaps = smaps(pid);
    let probes = sum_metric(&after, "pathprobe_probes_total", "") - sum_metric(&before, "pathprobe_probes_total", "");
    let lag_b = buckets(&before, "pathprobe_scheduler_lag_seconds");
    let lag_a = buckets(&after, "pathprobe_scheduler_lag_seconds");
    let failures = sum_metric(&after, "pathprobe_probes_total", "result=\"failure\"");
    if failures > 0.0 {
        eprintln!("  note: {failures} failed probes");
    }
    let median = scrapes.get(scrapes.len() / 2).copied();
    Figures {
        contender: "pathprobe".into(),
        kind: kind.as_str().into(),
        targets: n,
        probes: probes as u64,
        cpu_seconds: cpu,
        peak_rss_kib: peak,
        steady_rss_kib: steady.0,
        steady_anon_kib: steady.1,
        peak_anon_kib: peak_anon,
        peak_file_kib: peak_file,
        smaps,
        lag_p50_ms: quantile(&lag_b, &lag_a, 0.5).map(|s| s * 1e3),
        lag_p99_ms: quantile(&lag_b, &lag_a, 0.99).map(|s| s * 1e3),
        scrape_ms: median.map(|m| m.0 * 1e3),
        scrape_bytes: median.map(|m| m.1),
    }
}

/// A keep-alive client pool for `/probe` requests, as Prometheus keeps connections to blackbox.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>>,
}

impl Pool {
    async fn get(&self, path: &str) -> bool {
        let idle = self.idle.lock().unwrap().pop();
        let mut sender = match idle {
            Some(s) if !s.is_closed() => s,
            _ => {
                let Ok(stream) = tokio::net::TcpStream::connect(self.addr).await else {
                    return false;
                };
                let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                    return false;
                };
                tokio::spawn(conn);
                sender
            }
        };
        if sender.ready().await.is_err() {
            return false;
        }
        let req = http::Request::get(path)
            .header(http::header::HOST, self.addr.to_string())
            .body(Empty::new())
            .unwrap();
        let Ok(resp) = sender.send_request(req).await else {
            return false;
        };
        let ok = resp.status() == 200;
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.idle.lock().unwrap().push(sender);
        ok && body.windows(15).any(|w| w == b"probe_success 1")
    }
}

fn blackbox_config(dir: &Path, ca_file: &Path) -> PathBuf {
    let path = dir.join("blackbox.yml");
    std::fs::write(
        &path,
        format!(
            "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      tls_config:\n        ca_file: \"{}\"\n",
            ca_file.display()
        ),
    )
    .unwrap();
    path
}

fn run_blackbox(
    rt: &tokio::runtime::Runtime,
    bin: &str,
    config: &Path,
    targets: &Targets,
    kind: Kind,
    n: usize,
    plan: &Plan,
) -> Option<Figures> {
    let (child, listen, peaks) = start_ready("/-/healthy", |listen| {
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    })?;
    let pid = child.0.id();
    let module = if kind == Kind::Tcp { "tcp_connect" } else { "http_2xx" };
    let pool = Arc::new(Pool {
        addr: listen,
        idle: Mutex::new(Vec::new()),
    });
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let interval = plan.interval(n);
    // The same schedule as the agent's: every target once per interval, spread evenly.
    for i in 0..n {
        let (target, _) = targets.target(kind, i);
        let path = format!("/probe?module={module}&target={target}");
        let (pool, done, failed, stop) = (pool.clone(), done.clone(), failed.clone(), stop.clone());
        let offset = interval.mul_f64(i as f64 / n as f64);
        rt.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let (pool, done, failed, path) = (pool.clone(), done.clone(), failed.clone(), path.clone());
                tokio::spawn(async move {
                    if pool.get(&path).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    std::thread::sleep(plan.warmup(n));
    let d0 = done.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let (sampler, scrapes) = watch(pid, listen, plan.secs);
    let probes = done.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) - d0;
    let (cpu, peak, steady) = sampler.finish();
    let (peak_anon, peak_file) = peaks.get();
    stop.cancel();
    if failed.load(Ordering::Relaxed) > 0 {
        eprintln!("  note: {} failed blackbox probes", failed.load(Ordering::Relaxed));
    }
    let median = scrapes.get(scrapes.len() / 2).copied();
    Some(Figures {
        contender: "blackbox_exporter".into(),
        kind: kind.as_str().into(),
        targets: n,
        probes,
        cpu_seconds: cpu,
        peak_rss_kib: peak,
        steady_rss_kib: steady.0,
        steady_anon_kib: steady.1,
        peak_anon_kib: peak_anon,
        peak_file_kib: peak_file,
        smaps: Vec::new(),
        lag_p50_ms: None,
        lag_p99_ms: None,
        scrape_ms: median.map(|m| m.0 * 1e3),
        scrape_bytes: median.map(|m| m.1),
    })
}

/// The floor: this binary again, as a bare loop of one kind at the same rate.
fn run_floor(targets: &Targets, kind: Kind, plan: &Plan) -> Figures {
    let exe = std::env::current_exe().unwrap();
    let addrs: Vec<String> = targets.addrs(kind).iter().map(|a| a.to_string()).collect();
    let mut child = Killed(
        Command::new(exe)
            .args(["--floor", kind.as_str(), &plan.rate.to_string(), &plan.secs.to_string()])
            .arg(&targets.ca_file)
            .args(&addrs)
            .stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .spawn()
            .expect("starting the floor loop"),
    );
    let pid = child.0.id();
    let peaks = Peaks::track(pid);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut sampler = Sampler::start(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.next().and_then(|l| l.ok()));
    });
    let count = loop {
        sampler.sample();
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            break line.and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
        }
    };
    let (cpu, peak, steady) = sampler.finish();
    let (peak_anon, peak_file) = peaks.get();
    drop(child);
    Figures {
        contender: format!(
            "floor ({})",
            match kind {
                Kind::Tcp => "connect+close",
                Kind::Http => "connect+GET",
                Kind::Https => "connect+rustls handshake+GET",
            }
        ),
        kind: kind.as_str().into(),
        targets: SERVERS,
        probes: count,
        cpu_seconds: cpu,
        peak_rss_kib: peak,
        steady_rss_kib: steady.0,
        steady_anon_kib: steady.1,
        peak_anon_kib: peak_anon,
        peak_file_kib: peak_file,
        ..Default::default()
    }
}

/// The floor loop itself (child process): blocking, no runtime, no allocation to speak of.
fn floor_main(args: &[String]) {
    let kind = Kind::parse(&args[0]).unwrap();
    let rate: f64 = args[1].parse().unwrap();
    let secs: u64 = args[2].parse().unwrap();
    let ca_file = &args[3];
    let addrs: Vec<SocketAddr> = args[4..].iter().map(|a| a.parse().unwrap()).collect();
    let tls = (kind == Kind::Https).then(|| {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca_file).unwrap();
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(c.unwrap()).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(pathprobe::probe::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    println!("ready");
    std::io::stdout().flush().unwrap();
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut count = 0u64;
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(secs) {
        let addr = addrs[count as usize % addrs.len()];
        let mut s = TcpStream::connect(addr).unwrap();
        match kind {
            Kind::Tcp => {}
            Kind::Http => {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                while s.read(&mut buf).unwrap_or(0) > 0 {}
            }
            Kind::Https => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let conn = rustls::ClientConnection::new(tls.clone().unwrap(), name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                while tls.read(&mut buf).unwrap_or(0) > 0 {}
            }
        }
        count += 1;
        let next = start + every.mul_f64(count as f64);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!("{count}");
    std::io::stdout().flush().unwrap();
    // Wait to be measured and stopped.
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

fn report(all: &[Figures], plan: &Plan, label: &str, bin: &Path, bin_kind: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Load results\n\nOne run of `cargo bench --bench load` ({label}): every contender on the same loopback targets, \
         {} probes/s (N probes/s below {} targets: the agent's shortest interval is 1 s), {} s measured after start-up \
         (one interval, 3-25 s). Figures from /proc (utime+stime, VmHWM, VmRSS, RssAnon, RssFile).\n",
        plan.rate, plan.rate, plan.secs
    );
    let find = |c: &str, k: &str, n: usize| {
        all.iter()
            .find(|f| f.contender.starts_with(c) && f.kind == k && f.targets == n)
    };
    let _ = writeln!(md, "## Ratios\n");
    let _ = writeln!(
        md,
        "| kind | targets | pathprobe CPU / blackbox CPU | pathprobe CPU / floor CPU | pathprobe peak RSS / blackbox peak RSS |\n|---|---|---|---|---|"
    );
    let mut sizes: Vec<usize> = all
        .iter()
        .filter(|f| f.contender == "pathprobe")
        .map(|f| f.targets)
        .collect();
    sizes.sort();
    sizes.dedup();
    for k in ["tcp", "http", "https"] {
        for &n in &sizes {
            let Some(p) = find("pathprobe", k, n) else { continue };
            let floor = all.iter().find(|f| f.contender.starts_with("floor") && f.kind == k);
            let bb = find("blackbox", k, n);
            let _ = writeln!(
                md,
                "| {k} | {n} | {} | {} | {} |",
                bb.map(|b| ratio(p.cpu_us_per_probe(), b.cpu_us_per_probe()))
                    .unwrap_or_else(|| "n/a".into()),
                floor
                    .map(|f| ratio(p.cpu_us_per_probe(), f.cpu_us_per_probe()))
                    .unwrap_or_else(|| "n/a".into()),
                bb.map(|b| ratio(p.peak_rss_kib as f64, b.peak_rss_kib as f64))
                    .unwrap_or_else(|| "n/a".into()),
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Absolutes\n\nMachine: {}. pathprobe: `{}`, {bin_kind}, {} of code.\n",
        machine(),
        bin.display(),
        code_bytes(bin)
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "unknown size".into()),
    );
    let _ = writeln!(
        md,
        "| contender | kind | targets | probes | CPU µs/probe | CPU s/1000 probes | peak RSS MiB | peak anon / file-backed MiB | steady RSS MiB (anon) | lag p50 ms | lag p99 ms | /metrics ms | /metrics bytes |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
    for f in all {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.3} | {:.1} | {:.1} / {:.1} | {:.1} ({:.1}) | {} | {} | {} | {} |",
            f.contender,
            f.kind,
            f.targets,
            f.probes,
            f.cpu_us_per_probe(),
            f.cpu_us_per_probe() / 1000.0,
            f.peak_rss_kib as f64 / 1024.0,
            f.peak_anon_kib as f64 / 1024.0,
            f.peak_file_kib as f64 / 1024.0,
            f.steady_rss_kib as f64 / 1024.0,
            f.steady_anon_kib as f64 / 1024.0,
            opt(f.lag_p50_ms),
            opt(f.lag_p99_ms),
            opt(f.scrape_ms),
            f.scrape_bytes.map(|b| b.to_string()).unwrap_or_else(|| "–".into()),
        );
    }
    let _ = writeln!(
        md,
        "\nNotes: blackbox_exporter is driven through `/probe` over keep-alive connections on the same schedule (its CPU includes \
         serving each `/probe`, as under Prometheus); its `/metrics` is its own, not per target. The floors are one blocking \
         loop each, spread over the same {SERVERS} servers; the HTTPS floor makes a new rustls handshake per request, as \
         pathprobe and blackbox do. The target servers and the blackbox driver run in the bench process and share the 2 cores \
         with the contender. The peaks of anonymous and file-backed RSS are each their own maximum (sampled every 20 ms \
         from the start), not necessarily at the same moment. Figures before and after each change of the performance \
         work: `benches/results/before-after.md`."
    );
    let _ = writeln!(
        md,
        "\n## Where pathprobe's memory is\n\nRSS by mapping at the end of the measured window (`/proc/PID/smaps`; \
         `r-xp` of the binary is its code, `r--p` its read-only data, `[heap]` and `[anon]` the allocator's and the \
         threads' memory), MiB:\n"
    );
    for f in all.iter().filter(|f| !f.smaps.is_empty()) {
        let parts: Vec<String> = f
            .smaps
            .iter()
            .filter(|(_, kib)| *kib >= 64)
            .map(|(k, kib)| format!("{k} {:.2}", *kib as f64 / 1024.0))
            .collect();
        let _ = writeln!(md, "- {} {}: {}", f.kind, f.targets, parts.join(", "));
    }
    md
}

/// The pathprobe binary to measure and what it is: `PATHPROBE_LOAD_BIN`.
fn pathprobe_binary() -> (PathBuf, String) {
    match env_or("PATHPROBE_LOAD_BIN", "image").as_str() {
        "image" => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            eprintln!("building the image's binary (scripts/image-rootfs --binary-only)");
            let mut build = Command::new(root.join("scripts/image-rootfs"));
            // Not the environment cargo gives a bench (CARGO_PKG_*, OUT_DIR, …): build scripts
            // that watch those (ring's) would rerun, and the image's build start over.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                let cargo_own = name.starts_with("CARGO") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR";
                if cargo_own || name == "OUT_DIR" || name.starts_with("PATHPROBE_REVISION") {
                    build.env_remove(&*name);
                }
            }
            let out = build
                .arg("--binary-only")
                .current_dir(root)
                .stderr(Stdio::inherit())
                .output()
                .expect("running scripts/image-rootfs");
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(
                out.status.success() && !path.is_empty(),
                "scripts/image-rootfs --binary-only failed: build the image's prerequisites (README), \
                 or measure this build's dynamic binary with PATHPROBE_LOAD_BIN=dev"
            );
            (
                root.join(path),
                "the image's binary (scripts/image-rootfs: static glibc, release profile, stripped)".into(),
            )
        }
        "dev" => (
            PathBuf::from(env!("CARGO_BIN_EXE_pathprobe")),
            "this build's dynamic binary (the bench profile: no LTO)".into(),
        ),
        path => (PathBuf::from(path), "given by PATHPROBE_LOAD_BIN".into()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor") {
        return floor_main(&args[1..]);
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks; this is a load run, not a test.
    }
    let sizes: Vec<usize> = env_or("PATHPROBE_LOAD_SIZES", "100,1000,10000")
        .split(',')
        .map(|s| s.trim().parse().expect("PATHPROBE_LOAD_SIZES: numbers like 100,1000"))
        .collect();
    let kinds: Vec<Kind> = env_or("PATHPROBE_LOAD_KINDS", "tcp,http,https")
        .split(',')
        .map(|s| Kind::parse(s.trim()).expect("PATHPROBE_LOAD_KINDS: tcp, http, https"))
        .collect();
    let plan = Plan {
        rate: env_or("PATHPROBE_LOAD_RATE", "500")
            .parse()
            .expect("PATHPROBE_LOAD_RATE: probes/s"),
        secs: env_or("PATHPROBE_LOAD_SECS", "20")
            .parse()
            .expect("PATHPROBE_LOAD_SECS: seconds"),
    };
    let (bin, bin_kind) = pathprobe_binary();
    let label = env_or("PATHPROBE_LOAD_LABEL", "current");
    let blackbox = env_or("PATHPROBE_LOAD_BLACKBOX", "prometheus-blackbox-exporter");
    let blackbox = (blackbox != "none").then_some(blackbox);

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let targets = rt.block_on(start_targets(dir.path()));
    let bb_config = blackbox_config(dir.path(), &targets.ca_file);
    let mut all = Vec::new();
    for &kind in &kinds {
        eprintln!("floor {}", kind.as_str());
        all.push(run_floor(&targets, kind, &plan));
        for &n in &sizes {
            eprintln!("pathprobe {} {n}", kind.as_str());
            all.push(run_pathprobe(&bin, dir.path(), &targets, kind, n, &plan));
            eprintln!("  {}", all.last().unwrap().json());
            if let Some(bb) = &blackbox {
                eprintln!("blackbox {} {n}", kind.as_str());
                match run_blackbox(&rt, bb, &bb_config, &targets, kind, n, &plan) {
                    Some(f) => {
                        eprintln!("  {}", f.json());
                        all.push(f)
                    }
                    None => eprintln!("  {bb} could not be started (apt install prometheus-blackbox-exporter)"),
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let json = format!(
        "{{\"label\":\"{label}\",\"rate\":{},\"seconds\":{},\"machine\":\"{}\",\"results\":[\n{}\n]}}\n",
        plan.rate,
        plan.secs,
        machine().replace('"', "'"),
        all.iter().map(Figures::json).collect::<Vec<_>>().join(",\n")
    );
    let json_name = if label == "current" {
        "load.json".to_string()
    } else {
        format!("load-{label}.json")
    };
    std::fs::create_dir_all(root.join("results")).unwrap();
    std::fs::write(root.join("results").join(&json_name), json).unwrap();
    let md = report(&all, &plan, &label, &bin, &bin_kind);
    print!("{md}");
    let md_name = if label == "current" {
        "RESULTS.md".to_string()
    } else {
        format!("results/load-{label}.md")
    };
    std::fs::write(root.join(md_name), md).unwrap();
}
