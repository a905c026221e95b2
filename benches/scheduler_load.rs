//! A load run of the scheduler on the real clock: N targets on a 10s interval, each probe a
//! 20ms sleep (I/O-bound, like a real probe), for 30s. Reports how late probes start
//! (`pathprobe_scheduler_lag_seconds`'s raw material) and writes the numbers to
//! `benches/results/scheduler_load.txt`.
//!
//! Run: `cargo bench --bench scheduler_load` (targets: `PATHPROBE_LOAD_TARGETS`, default 10000).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pathprobe::adhoc::{self, AdhocOptions};
use pathprobe::schedule::{BoxFuture, Hooks, Scheduler, Settings};
use pathprobe::target::Target;

#[derive(Default)]
struct Lags(Mutex<Vec<Duration>>, Mutex<u64>);

impl Hooks for Lags {
    type Outcome = ();
    fn run(&self, _: Arc<Target>) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(20)))
    }
    fn started(&self, _: &Target, lag: Duration) {
        self.0.lock().unwrap().push(lag);
    }
    fn finished(&self, _: &Target, _: Option<()>) {}
    fn skipped(&self, _: &Target) {
        *self.1.lock().unwrap() += 1;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks; this is a load run, not a test.
    }
    let n: usize = std::env::var("PATHPROBE_LOAD_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let run_for = Duration::from_secs(30);
    let targets: Vec<Target> = (0..n)
        .map(|i| {
            let mut t = adhoc::parse(
                &format!("tcp://10.{}.{}.{}:9100", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                &AdhocOptions::default(),
            )
            .unwrap()
            .remove(0);
            t.interval = Duration::from_secs(10);
            t
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lags = Arc::new(Lags::default());
    let started = Instant::now();
    rt.block_on(async {
        let mut s = Scheduler::new(
            lags.clone(),
            Settings {
                max_in_flight: 128,
                jitter: 0.05,
            },
        );
        s.apply(targets);
        tokio::time::sleep(run_for).await;
        s.drain(Duration::from_secs(1)).await;
    });
    let mut v = lags.0.lock().unwrap().clone();
    v.sort();
    let pct = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let report = format!(
        "scheduler load run: {n} targets, 10s interval, 20ms probes, max_in_flight 128, {:.0}s on {} cores\n\
         probes started: {} (expected ~{})\nskipped: {}\nlag p50 {:?}  p90 {:?}  p99 {:?}  max {:?}\n",
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        v.len(),
        n * 3,
        *lags.1.lock().unwrap(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        v.last().copied().unwrap_or_default(),
    );
    print!("{report}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/results/scheduler_load.txt");
    std::fs::write(path, report).expect("writing the results file");
}
