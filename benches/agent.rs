//! The agent's hot paths at fleet sizes: rendering `/metrics` (text and OpenMetrics), recording
//! a probe result, and applying an inventory to the scheduler, at 1k and 10k targets.

// `criterion_group!` defines a public function that no doc comment can reach.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pathprobe::adhoc::{self, AdhocOptions};
use pathprobe::metrics::{Exporter, Format, Source};
use pathprobe::probe::{Phase, ProbeResult, Trace};
use pathprobe::reason::Reason;
use pathprobe::schedule::{BoxFuture, Hooks, Scheduler, Settings};
use pathprobe::target::{Kind, Target};

fn targets(n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| {
            let url = format!(
                "scrape+http://10.{}.{}.{}:9100/metrics",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            );
            adhoc::parse(&url, &AdhocOptions::default()).unwrap().remove(0)
        })
        .collect()
}

fn result(i: usize) -> ProbeResult {
    let mut trace = Trace::default();
    for (p, ms) in [
        (Phase::Resolve, 0),
        (Phase::Connect, 1),
        (Phase::Request, 3),
        (Phase::Transfer, 2),
    ] {
        trace.add(p, Duration::from_millis(ms));
    }
    trace.http_status = Some(200);
    ProbeResult {
        kind: Kind::Scrape,
        reason: if i % 10 == 0 {
            Reason::ConnectTimeout
        } else {
            Reason::None
        },
        trace,
        total: Duration::from_millis(6),
        error: None,
        finished_at: SystemTime::now(),
        addresses: Vec::new(),
    }
}

fn exporter(ts: &[Target]) -> Arc<Exporter> {
    let e = Arc::new(Exporter::new(&Source {
        node: "talos-w-1".into(),
        cluster: "prod".into(),
        network: "host".into(),
    }));
    for (i, t) in ts.iter().enumerate() {
        e.add_target(t);
        e.observe(t, &result(i));
    }
    e
}

/// What serving one scrape costs: every chunk written (and dropped, as once sent); the size.
fn scrape(e: &Arc<Exporter>, format: Format) -> usize {
    let mut x = e.exposition(format);
    let mut size = 0;
    while let Some(chunk) = x.next_chunk() {
        size += chunk.len();
    }
    size
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_render");
    g.sample_size(10);
    for n in [1_000, 10_000] {
        let ts = targets(n);
        let e = exporter(&ts);
        for (name, format) in [("text", Format::Text), ("openmetrics", Format::OpenMetrics)] {
            g.bench_with_input(BenchmarkId::new(name, n), &e, |b, e| b.iter(|| scrape(e, format)));
        }
    }
    g.finish();
}

fn observe(c: &mut Criterion) {
    let ts = targets(10_000);
    let e = exporter(&ts);
    let r = result(1);
    let mut i = 0;
    c.bench_function("metrics_observe_one_result_at_10k", |b| {
        b.iter(|| {
            i = (i + 1) % ts.len();
            e.observe(&ts[i], &r)
        })
    });
}

struct Noop;

impl Hooks for Noop {
    type Outcome = ();
    fn run(&self, _: Arc<Target>) -> BoxFuture<()> {
        Box::pin(async {})
    }
    fn started(&self, _: &Target, _: Duration) {}
    fn finished(&self, _: &Target, _: Option<()>) {}
    fn skipped(&self, _: &Target) {}
}

fn schedule(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("scheduler_apply");
    g.sample_size(10);
    for n in [1_000, 10_000] {
        let ts = targets(n);
        g.bench_with_input(BenchmarkId::new("fresh", n), &ts, |b, ts| {
            b.iter(|| {
                rt.block_on(async {
                    let mut s = Scheduler::new(Arc::new(Noop), Settings::default());
                    s.apply(ts.clone());
                    s.drain(Duration::ZERO).await;
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("reload_unchanged", n), &ts, |b, ts| {
            rt.block_on(async {
                let mut s = Scheduler::new(Arc::new(Noop), Settings::default());
                s.apply(ts.clone());
                b.iter(|| s.apply(ts.clone()));
                s.drain(Duration::ZERO).await;
            })
        });
    }
    g.finish();
}

criterion_group!(benches, render, observe, schedule);
criterion_main!(benches);
