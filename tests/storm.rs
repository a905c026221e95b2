//! The storm: the agent against thousands of hostile loopback targets for a minute (12 kinds, see
//! `tests/common/hostile.rs`), its file descriptors and RSS sampled from /proc all along.
//!
//! Properties, not timings: every target ends with its kind's reason (timeouts within the
//! timeout and a margin for a loaded machine), no tick is skipped and no probe starts more
//! than 5 s late (half the interval), `/metrics` answers every scrape, descriptors and memory do not grow
//! over the run, and once the storm's targets are removed the descriptors go back to where an
//! idle agent started.
//!
//! `STORM_TARGETS` (default 2400), `STORM_SECONDS` (default 60) and `STORM_RESULTS` (a file the
//! figures are appended to) make the same run longer by hand: `benches/storm`.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/hostile.rs"]
mod hostile;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::{series, value, write_atomic, Agent};
use hostile::{Hostile, HostileServer};

const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);
/// Servers per hostile kind; the kind's targets are spread over them.
const SERVERS_PER_KIND: usize = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One sample of the agent process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    fds: usize,
    rss_kib: u64,
}

fn sample(pid: u32, at: Duration) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Sample { at, fds, rss_kib }
}

/// A scrape that reports failure instead of panicking: (status, body).
fn scrape(addr: SocketAddr) -> Result<(u16, usize), String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(head)?;
    Ok((status, raw.len()))
}

fn mean(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> u64 {
    samples.iter().map(&f).sum::<u64>() / samples.len().max(1) as u64
}

fn inventory(targets: &[(String, String)]) -> String {
    let mut text = format!(
        "agent: {{ source_cluster: lab, network: pod }}\ndefaults: {{ interval: {}s, timeout: {}s }}\ntargets:",
        INTERVAL.as_secs(),
        TIMEOUT.as_secs()
    );
    if targets.is_empty() {
        text.push_str(" []\n");
    }
    for (name, fields) in targets {
        text.push_str(&format!("\n  - {{ name: {name}, {fields} }}"));
    }
    text.push('\n');
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_targets_each_end_by_their_reason_and_the_agent_stays_flat() {
    let total = env_or("STORM_TARGETS", 2400) as usize;
    let seconds = env_or("STORM_SECONDS", 60);
    let mut servers: Vec<(Hostile, HostileServer)> = Vec::new();
    for kind in Hostile::ALL {
        for _ in 0..SERVERS_PER_KIND {
            servers.push((kind, kind.serve().await));
        }
    }
    let mut targets = Vec::new();
    let mut expected = std::collections::HashMap::new();
    for i in 0..total {
        let (kind, server) = &servers[i % servers.len()];
        let name = format!("{}-{i}", kind.name());
        targets.push((name.clone(), kind.target_fields(server.addr)));
        expected.insert(name, *kind);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(&config, inventory(&[])).unwrap();
    let storm = inventory(&targets);

    let report =
        tokio::task::spawn_blocking(move || run_storm(&config, &storm, &expected, total, Duration::from_secs(seconds)))
            .await
            .unwrap();
    drop(servers);
    println!("{report}");
    if let Ok(path) = std::env::var("STORM_RESULTS") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{report}").unwrap();
    }
}

fn run_storm(
    config: &Path,
    storm: &str,
    expected: &std::collections::HashMap<String, Hostile>,
    total: usize,
    length: Duration,
) -> String {
    let agent = Agent::start(config, "node-a", &["--max-in-flight", "1024"]);
    let pid = agent.pid();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let idle = sample(pid, started.elapsed());
    write_atomic(config, storm);

    // Sampling and scraping, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let scrapes = Arc::new(Mutex::new((0u32, Vec::<String>::new())));
    let sampler = {
        let (stop, samples) = (stop.clone(), samples.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                samples.lock().unwrap().push(sample(pid, started.elapsed()));
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let scraper = {
        let (stop, scrapes, addr) = (stop.clone(), scrapes.clone(), agent.addr);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = scrape(addr);
                let mut s = scrapes.lock().unwrap();
                s.0 += 1;
                match r {
                    Ok((200, _)) => {}
                    Ok((status, _)) => s.1.push(format!("status {status}")),
                    Err(e) => s.1.push(e),
                }
                drop(s);
                std::thread::sleep(Duration::from_secs(3));
            }
        })
    };

    // The first full round: every target has a result.
    let failing = |t: &str| {
        series(t, "pathprobe_failure_reason", &[])
            .iter()
            .filter(|l| l.ends_with(" 1") && !l.contains("reason=\"none\""))
            .count()
    };
    agent.wait_metrics("every storm target probed once", INTERVAL * 3, |t| failing(t) == total);
    let warm = started.elapsed();
    let end = started + length.max(warm + INTERVAL * 2);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = agent.metrics();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    scraper.join().unwrap();

    // Every target's reason is its kind's, and no probe outlived its timeout.
    let mut wrong = Vec::new();
    let mut slow = Vec::new();
    for line in series(&text, "pathprobe_failure_reason", &[])
        .into_iter()
        .filter(|l| l.ends_with(" 1"))
    {
        let name = label(line, "target");
        let reason = label(line, "reason");
        let kind = expected[name];
        if reason != kind.reason() {
            wrong.push(format!("{name}: {reason}, expected {}", kind.reason()));
        }
    }
    let margin = Duration::from_secs(1);
    // One pass over the text: a lookup per target would scan megabytes thousands of times.
    let totals: std::collections::HashMap<&str, f64> =
        series(&text, "pathprobe_duration_seconds", &[("phase", "total")])
            .into_iter()
            .map(|l| (label(l, "target"), l.rsplit(' ').next().unwrap().parse().unwrap()))
            .collect();
    for name in expected.keys() {
        match totals.get(name.as_str()).copied() {
            Some(s) if s <= (TIMEOUT + margin).as_secs_f64() => {}
            other => slow.push(format!("{name}: {other:?}")),
        }
    }
    wrong.sort();
    slow.sort();
    assert!(
        wrong.is_empty(),
        "{} targets with the wrong reason, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert!(
        slow.is_empty(),
        "{} probes past their timeout, e.g. {:?}",
        slow.len(),
        &slow[..slow.len().min(20)]
    );

    // Schedules kept: nothing skipped, nothing started more than a second late.
    let skipped: f64 = series(&text, "pathprobe_probes_skipped_total", &[])
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let lag_count = plain_value(&text, "pathprobe_scheduler_lag_seconds_count");
    let lag_within_5s = value(&text, "pathprobe_scheduler_lag_seconds_bucket", &[("le", "5")]).unwrap();
    let lag_within_1s = value(&text, "pathprobe_scheduler_lag_seconds_bucket", &[("le", "1")]).unwrap();
    let lag_within_100ms = value(&text, "pathprobe_scheduler_lag_seconds_bucket", &[("le", "0.1")]).unwrap();
    assert_eq!(skipped, 0.0, "ticks skipped: a probe ran past its interval");
    // Bounded well inside the interval; how much within 100 ms and 1 s is reported, not asserted
    // (it depends on what else the machine runs).
    assert_eq!(lag_within_5s, lag_count, "probes started more than 5 s late");
    let probes: f64 = series(&text, "pathprobe_probes_total", &[])
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();

    // /metrics answered every scrape.
    let (scraped, scrape_errors) = scrapes.lock().unwrap().clone();
    assert!(
        scraped >= 3 && scrape_errors.is_empty(),
        "{scraped} scrapes, failed: {scrape_errors:?}"
    );

    // Flat: the last quarter of the run holds no more than the first (after the first round).
    let samples = samples.lock().unwrap().clone();
    let after: Vec<Sample> = samples.iter().copied().filter(|s| s.at >= warm).collect();
    let quarter = (after.len() / 4).max(1);
    let (first, last) = (&after[..quarter], &after[after.len() - quarter..]);
    let (fds_start, fds_end) = (mean(first, |s| s.fds as u64), mean(last, |s| s.fds as u64));
    let (rss_start, rss_end) = (mean(first, |s| s.rss_kib), mean(last, |s| s.rss_kib));
    let fds_max = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    assert!(
        fds_end <= fds_start + fds_start / 4 + 64,
        "descriptors grew: {fds_start} → {fds_end}"
    );
    assert!(
        rss_end <= rss_start + rss_start / 2 + 32 * 1024,
        "RSS grew: {rss_start} KiB → {rss_end} KiB"
    );

    let storm_secs = (started.elapsed() - warm).as_secs_f64();
    let run_minutes = started.elapsed().as_secs_f64() / 60.0;

    // The storm's targets removed: every descriptor they held is released.
    write_atomic(config, &inventory(&[]));
    agent.wait_metrics("the storm's targets removed", Duration::from_secs(20), |t| {
        failing(t) == 0
    });
    let deadline = Instant::now() + TIMEOUT * 3 + hostile::HOLD;
    let mut calm = sample(pid, started.elapsed());
    while calm.fds > idle.fds + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        calm = sample(pid, started.elapsed());
    }
    assert!(
        calm.fds <= idle.fds + 2,
        "descriptors not released: {} idle, {} after the storm",
        idle.fds,
        calm.fds
    );

    format!(
        "storm: {total} targets, {kinds} hostile kinds ({names}), {secs:.0} s checked after the first round, {minutes:.1} min in all, interval {interval:?}, timeout {timeout:?}\n\
         probes {probes:.0}; lag: of {lc:.0} probes, {l100:.0} started within 100 ms, {l1:.0} within 1 s, all within 5 s; ticks skipped {skipped:.0}; /metrics scraped {scraped} times, all 200\n\
         fds: idle {idle_fds}, storm start {fds_start}, storm end {fds_end}, max {fds_max}, after removal {calm_fds}\n\
         RSS: idle {idle_rss} KiB, storm start {rss_start} KiB, storm end {rss_end} KiB, max {rss_max} KiB, after removal {calm_rss} KiB\n\
         every target ended with its kind's reason, within its {timeout:?} timeout + 1 s",
        kinds = Hostile::ALL.len(),
        names = Hostile::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        secs = storm_secs,
        minutes = run_minutes,
        interval = INTERVAL,
        timeout = TIMEOUT,
        l100 = lag_within_100ms,
        l1 = lag_within_1s,
        lc = lag_count,
        idle_fds = idle.fds,
        calm_fds = calm.fds,
        idle_rss = idle.rss_kib,
        calm_rss = calm.rss_kib,
    )
}

/// The value of `name="…"` in a series line.
fn label<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    let start = line.find(&key).unwrap_or_else(|| panic!("no {name} in {line}")) + key.len();
    let end = line[start..].find('"').unwrap() + start;
    &line[start..end]
}

/// The value of a series without labels (other than the registry's constant ones).
fn plain_value(text: &str, metric: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric}"))
}
