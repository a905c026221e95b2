//! The scheduler: runs every target's probe on its interval. It knows nothing of protocols: a
//! target is an identity and an interval to it, and [`Hooks`] say how to probe one and what to
//! do with the outcome.
//!
//! Each target has a tick loop with a fixed phase in its interval: a stable hash of its identity
//! spreads targets over the interval (no thundering herd at start or after a reload), plus an
//! optional random jitter. A tick whose previous probe still runs is skipped and counted. A
//! global semaphore caps probes in flight; waiting for it shows as scheduler lag. A reload keeps
//! the tick loop of every target whose identity is unchanged and swaps in its new settings.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::TargetLabels;
use crate::target::Target;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the scheduler calls; the agent implements it with the probe engine and the exporter.
pub trait Hooks: Send + Sync + 'static {
    /// What a probe hands back for `finished` to record.
    type Outcome: Send + 'static;
    /// Probes the target once.
    fn run(&self, target: Arc<Target>) -> BoxFuture<Self::Outcome>;
    /// A probe starts, `lag` after its scheduled time.
    fn started(&self, target: &Target, lag: Duration);
    /// A probe ended; `outcome` is `None` when the target left the inventory meanwhile.
    fn finished(&self, target: &Target, outcome: Option<Self::Outcome>);
    /// A tick passed while the previous probe of the target still ran.
    fn skipped(&self, target: &Target);
}

/// How probes are spread and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Probes in flight at most, over all targets.
    pub max_in_flight: usize,
    /// Random extra start offset, as a fraction of the interval (0 in tests: fully deterministic).
    pub jitter: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_in_flight: 128,
            jitter: 0.05,
        }
    }
}

/// One target's live state, shared by its tick loop and its running probe.
struct Slot {
    /// The current settings; swapped on reload. Held while recording an outcome, so removal and
    /// recording cannot interleave.
    target: Mutex<Arc<Target>>,
    running: AtomicBool,
    /// Cancelled when the target leaves the inventory: its running probe is then not recorded.
    removed: CancellationToken,
    /// Cancelled when the agent stops scheduling (a child of the scheduler's token): running
    /// probes still finish and are recorded.
    stop: CancellationToken,
    /// Woken when a reload changes the interval, so a shorter one applies now, not after the
    /// tick already planned with the old one.
    interval_changed: tokio::sync::Notify,
}

/// The running schedule of an inventory.
pub struct Scheduler<H: Hooks> {
    hooks: Arc<H>,
    settings: Settings,
    permits: Arc<Semaphore>,
    slots: HashMap<TargetLabels, Arc<Slot>>,
    stop: CancellationToken,
    probes: TaskTracker,
}

/// What a reload changed, by target identity.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Identities that were not scheduled before: they start.
    pub added: Vec<TargetLabels>,
    /// Identities that stay: they keep their phase and take the new settings.
    pub updated: Vec<TargetLabels>,
    /// Identities no longer in the inventory: stopped, their running probe not recorded.
    pub removed: Vec<TargetLabels>,
}

impl<H: Hooks> Scheduler<H> {
    /// A scheduler with no targets; nothing runs until `apply`.
    pub fn new(hooks: Arc<H>, settings: Settings) -> Scheduler<H> {
        Scheduler {
            hooks,
            settings,
            permits: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            slots: HashMap::new(),
            stop: CancellationToken::new(),
            probes: TaskTracker::new(),
        }
    }

    /// Makes the schedule match `targets`: new identities start, unchanged ones keep their
    /// phase and take the new settings, missing ones stop (their running probe is not recorded).
    /// Takes targets or `Arc`s of them: the agent shares one copy of each target with its
    /// status rows.
    pub fn apply<T: Into<Arc<Target>>>(&mut self, targets: impl IntoIterator<Item = T>) -> Applied {
        let mut applied = Applied::default();
        let mut wanted: HashMap<TargetLabels, Arc<Target>> = HashMap::new();
        for t in targets {
            let t = t.into();
            wanted.insert(TargetLabels::of(&t), t);
        }
        self.slots.retain(|key, slot| {
            if wanted.contains_key(key) {
                return true;
            }
            let _held = slot.target.lock().expect("not poisoned");
            slot.removed.cancel();
            applied.removed.push(key.clone());
            false
        });
        let now = Instant::now();
        for (key, target) in wanted {
            if let Some(slot) = self.slots.get(&key) {
                let mut current = slot.target.lock().expect("not poisoned");
                let changed = current.interval != target.interval;
                *current = target;
                drop(current);
                if changed {
                    slot.interval_changed.notify_one();
                }
                applied.updated.push(key);
                continue;
            }
            let first = now + self.offset(&key, target.interval);
            let slot = Arc::new(Slot {
                target: Mutex::new(target),
                running: AtomicBool::new(false),
                removed: CancellationToken::new(),
                stop: self.stop.child_token(),
                interval_changed: tokio::sync::Notify::new(),
            });
            tokio::spawn(tick_loop(
                slot.clone(),
                self.hooks.clone(),
                self.permits.clone(),
                self.probes.clone(),
                first,
            ));
            self.slots.insert(key.clone(), slot);
            applied.added.push(key);
        }
        applied
    }

    /// Where in its interval a target's probes start: a stable hash of its identity, plus jitter.
    fn offset(&self, key: &TargetLabels, interval: Duration) -> Duration {
        spread(key, interval) + interval.mul_f64(self.settings.jitter.clamp(0.0, 1.0) * random_fraction())
    }

    /// Targets scheduled now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no target is scheduled.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Stops starting probes, then waits up to `grace` for the running ones. True if all ended.
    pub async fn drain(&mut self, grace: Duration) -> bool {
        self.stop.cancel();
        self.probes.close();
        tokio::time::timeout(grace, self.probes.wait()).await.is_ok()
    }
}

/// A stable fraction of `interval` for `key`, in whole milliseconds (tokio's timer resolution):
/// the same target lands at the same phase after a restart or reload, and targets spread evenly.
pub fn spread(key: &TargetLabels, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_millis((interval.as_millis() as f64 * fraction) as u64)
}

fn random_fraction() -> f64 {
    let r = RandomState::new().hash_one(std::time::SystemTime::now());
    (r >> 11) as f64 / (1u64 << 53) as f64
}

async fn tick_loop<H: Hooks>(
    slot: Arc<Slot>,
    hooks: Arc<H>,
    permits: Arc<Semaphore>,
    probes: TaskTracker,
    first: Instant,
) {
    let mut next = first;
    loop {
        tokio::select! {
            _ = slot.removed.cancelled() => return,
            _ = slot.stop.cancelled() => return,
            _ = slot.interval_changed.notified() => {
                let interval = slot.target.lock().expect("not poisoned").interval;
                next = next.min(Instant::now() + interval);
                continue;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let target = slot.target.lock().expect("not poisoned").clone();
        if slot.running.swap(true, Ordering::AcqRel) {
            hooks.skipped(&target);
        } else {
            probes.spawn(probe_once(
                slot.clone(),
                hooks.clone(),
                permits.clone(),
                target.clone(),
                next,
            ));
        }
        next += target.interval;
        // After a stall (a suspended VM, a stopped process), resume on the next future tick
        // rather than firing every missed one at once.
        let now = Instant::now();
        if next < now {
            let behind = now - next;
            let missed = (behind.as_nanos() / target.interval.as_nanos().max(1)) as u32 + 1;
            next += target.interval * missed;
        }
    }
}

async fn probe_once<H: Hooks>(
    slot: Arc<Slot>,
    hooks: Arc<H>,
    permits: Arc<Semaphore>,
    target: Arc<Target>,
    scheduled: Instant,
) {
    // A probe still waiting for a permit when its target goes, or the agent stops, never starts.
    let permit = tokio::select! {
        _ = slot.removed.cancelled() => None,
        _ = slot.stop.cancelled() => None,
        p = permits.acquire_owned() => Some(p.expect("the semaphore is never closed")),
    };
    let Some(permit) = permit else {
        slot.running.store(false, Ordering::Release);
        return;
    };
    hooks.started(&target, Instant::now().saturating_duration_since(scheduled));
    let outcome = hooks.run(target.clone()).await;
    drop(permit);
    {
        let _held = slot.target.lock().expect("not poisoned");
        let live = !slot.removed.is_cancelled();
        hooks.finished(&target, live.then_some(outcome));
    }
    slot.running.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adhoc::{self, AdhocOptions};

    /// Records what the scheduler did, on tokio's (paused) clock.
    #[derive(Default)]
    struct Recorder {
        epoch: Mutex<Option<Instant>>,
        run_for: Duration,
        starts: Mutex<Vec<(String, Duration)>>,
        lags: Mutex<Vec<Duration>>,
        skips: Mutex<Vec<String>>,
        finished: Mutex<Vec<(String, bool)>>,
        in_flight: Mutex<(usize, usize)>,
    }

    impl Recorder {
        fn new(run_for: Duration) -> Arc<Recorder> {
            Arc::new(Recorder {
                epoch: Mutex::new(Some(Instant::now())),
                run_for,
                ..Default::default()
            })
        }
        fn since_epoch(&self) -> Duration {
            Instant::now() - self.epoch.lock().unwrap().unwrap()
        }
        fn starts_of(&self, name: &str) -> Vec<Duration> {
            self.starts
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .collect()
        }
    }

    impl Hooks for Recorder {
        type Outcome = ();
        fn run(&self, _: Arc<Target>) -> BoxFuture<()> {
            let d = self.run_for;
            Box::pin(async move { tokio::time::sleep(d).await })
        }
        fn started(&self, target: &Target, lag: Duration) {
            self.starts
                .lock()
                .unwrap()
                .push((target.instance.clone(), self.since_epoch()));
            self.lags.lock().unwrap().push(lag);
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        fn finished(&self, target: &Target, outcome: Option<()>) {
            self.in_flight.lock().unwrap().0 -= 1;
            self.finished
                .lock()
                .unwrap()
                .push((target.instance.clone(), outcome.is_some()));
        }
        fn skipped(&self, target: &Target) {
            self.skips.lock().unwrap().push(target.instance.clone());
        }
    }

    fn targets(n: u16, interval: Duration) -> Vec<Target> {
        (0..n)
            .map(|i| {
                let mut t = adhoc::parse(&format!("tcp://127.0.0.1:{}", 1000 + i), &AdhocOptions::default())
                    .unwrap()
                    .remove(0);
                t.interval = interval;
                t
            })
            .collect()
    }

    const NO_JITTER: Settings = Settings {
        max_in_flight: 1000,
        jitter: 0.0,
    };

    #[tokio::test(start_paused = true)]
    async fn first_probes_spread_over_the_interval() {
        let rec = Recorder::new(Duration::from_millis(1));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        s.apply(targets(100, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        let mut firsts: Vec<Duration> = rec.starts.lock().unwrap().iter().map(|(_, t)| *t).collect();
        assert_eq!(firsts.len(), 100, "every target starts within its first interval");
        firsts.sort();
        let buckets: std::collections::BTreeSet<u64> = firsts.iter().map(|t| t.as_secs()).collect();
        assert_eq!(buckets.len(), 10, "every second of the interval has some first probes");
        firsts.dedup();
        assert!(firsts.len() > 90, "start times are spread, not bunched");
    }

    #[tokio::test(start_paused = true)]
    async fn each_target_keeps_its_phase_every_interval() {
        let rec = Recorder::new(Duration::from_millis(1));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        let ts = targets(1, Duration::from_secs(10));
        let phase = spread(&TargetLabels::of(&ts[0]), Duration::from_secs(10));
        s.apply(ts);
        tokio::time::sleep(Duration::from_secs(45)).await;
        let starts = rec.starts_of("127.0.0.1:1000");
        let expected: Vec<Duration> = (0..4).map(|k| phase + Duration::from_secs(10 * k)).collect();
        assert_eq!(starts, expected);
        assert!(
            rec.lags.lock().unwrap().iter().all(|l| l.is_zero()),
            "no lag when nothing waits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_moves_the_start_within_its_bound_and_zero_jitter_is_deterministic() {
        let interval = Duration::from_secs(10);
        let ts = targets(20, interval);
        let jittery = Scheduler::new(
            Recorder::new(Duration::ZERO),
            Settings {
                max_in_flight: 10,
                jitter: 0.3,
            },
        );
        let plain = Scheduler::new(Recorder::new(Duration::ZERO), NO_JITTER);
        for t in &ts {
            let key = TargetLabels::of(t);
            assert_eq!(plain.offset(&key, interval), spread(&key, interval));
            let o = jittery.offset(&key, interval);
            let base = spread(&key, interval);
            assert!(
                o >= base && o <= base + interval.mul_f64(0.3),
                "{o:?} within jitter of {base:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_still_running_is_never_overlapped_and_the_skip_is_counted() {
        let rec = Recorder::new(Duration::from_secs(25));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        let ts = targets(1, Duration::from_secs(10));
        let phase = spread(&TargetLabels::of(&ts[0]), Duration::from_secs(10));
        s.apply(ts);
        tokio::time::sleep(phase + Duration::from_secs(65)).await;
        // Ticks at +0..+60: starts at +0, +30, +60; the ticks between are skipped.
        let starts = rec.starts_of("127.0.0.1:1000");
        assert_eq!(starts, [0, 30, 60].map(|k| phase + Duration::from_secs(k)));
        assert_eq!(rec.skips.lock().unwrap().len(), 4);
        assert_eq!(
            rec.in_flight.lock().unwrap().1,
            1,
            "never two probes of one target at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_cap_bounds_probes_in_flight_and_waiting_shows_as_lag() {
        let rec = Recorder::new(Duration::from_secs(2));
        let mut s = Scheduler::new(
            rec.clone(),
            Settings {
                max_in_flight: 3,
                jitter: 0.0,
            },
        );
        s.apply(targets(30, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(rec.in_flight.lock().unwrap().1, 3);
        let lags = rec.lags.lock().unwrap();
        assert!(
            lags.iter().any(|l| *l >= Duration::from_secs(1)),
            "some probes waited for a permit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_unchanged_schedules_stops_removed_and_starts_new_targets() {
        let rec = Recorder::new(Duration::from_millis(1));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        let interval = Duration::from_secs(10);
        let before = targets(3, interval);
        s.apply(before.clone());
        tokio::time::sleep(Duration::from_secs(25)).await;
        let kept_phase = rec.starts_of("127.0.0.1:1000")[0];
        // Keep 1000 (with a new timeout), drop 1001 and 1002, add 1003.
        let mut after = targets(4, interval);
        after[0].timeout = Duration::from_secs(3);
        after.remove(1);
        after.remove(1);
        let applied = s.apply(after);
        assert_eq!(applied.updated.len(), 1);
        assert_eq!(applied.removed.len(), 2);
        assert_eq!(applied.added.len(), 1);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let kept = rec.starts_of("127.0.0.1:1000");
        let expected: Vec<Duration> = (0..6)
            .map(|k| kept_phase + interval * k)
            .filter(|t| *t < Duration::from_secs(55))
            .collect();
        assert_eq!(kept, expected, "the kept target did not restart its schedule");
        assert!(rec
            .starts_of("127.0.0.1:1001")
            .iter()
            .all(|t| *t < Duration::from_secs(25)));
        assert!(!rec.starts_of("127.0.0.1:1003").is_empty());
        assert_eq!(s.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_interval_on_reload_applies_at_once() {
        let rec = Recorder::new(Duration::from_millis(1));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        let mut ts = targets(1, Duration::from_secs(600));
        s.apply(ts.clone());
        tokio::time::sleep(Duration::from_secs(601)).await;
        assert_eq!(rec.starts_of("127.0.0.1:1000").len(), 1);
        ts[0].interval = Duration::from_secs(10);
        s.apply(ts);
        let reloaded = rec.since_epoch();
        tokio::time::sleep(Duration::from_secs(25)).await;
        let after: Vec<Duration> = rec
            .starts_of("127.0.0.1:1000")
            .into_iter()
            .filter(|t| *t > reloaded)
            .collect();
        assert!(
            after.len() >= 2,
            "probed within 10s of the reload, then every 10s: {after:?}"
        );
        assert!(after[0] - reloaded <= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_of_a_removed_target_is_not_recorded() {
        let rec = Recorder::new(Duration::from_secs(5));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        s.apply(targets(1, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Its one probe is running (5s long, started within the first 10s) or done; remove now.
        let running = rec.in_flight.lock().unwrap().0;
        s.apply(Vec::<Target>::new());
        tokio::time::sleep(Duration::from_secs(20)).await;
        let finished = rec.finished.lock().unwrap();
        assert_eq!(finished.iter().filter(|(_, recorded)| !recorded).count(), running);
        assert_eq!(rec.starts.lock().unwrap().len(), 1, "no probe after removal");
    }

    #[tokio::test(start_paused = true)]
    async fn drain_lets_running_probes_finish_and_starts_no_new_ones() {
        let rec = Recorder::new(Duration::from_secs(4));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        s.apply(targets(20, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(6)).await;
        let started = rec.starts.lock().unwrap().len();
        assert!(rec.in_flight.lock().unwrap().0 > 0);
        assert!(
            s.drain(Duration::from_secs(10)).await,
            "all running probes ended within the grace"
        );
        assert_eq!(rec.in_flight.lock().unwrap().0, 0);
        let all_recorded = rec.finished.lock().unwrap().iter().all(|(_, recorded)| *recorded);
        assert!(all_recorded, "drained probes are recorded");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(rec.starts.lock().unwrap().len(), started, "nothing starts after drain");
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_its_grace() {
        let rec = Recorder::new(Duration::from_secs(60));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        s.apply(targets(2, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!s.drain(Duration::from_secs(3)).await);
    }
}
