//! The scheduler: runs every target's probe on its interval. It knows nothing of protocols: a
//! target is an identity and an interval to it, and [`Hooks`] say how to probe one and what to
//! do with the outcome.
//!
//! Each target has a fixed phase in its interval: a stable hash of its identity spreads targets
//! over the interval (no thundering herd at start or after a reload), plus an optional random
//! jitter. A tick whose previous probe still runs is skipped and counted. A global semaphore
//! caps probes in flight; waiting for it shows as scheduler lag. A reload keeps the phase of
//! every target whose identity is unchanged and swaps in its new settings.
//!
//! One task drives every target from one timetable (a slab of targets and a binary heap of their
//! next ticks), rather than a task and a timer per target: at 10,000 targets a tick loop per
//! target cost about a kilobyte each (the task, its cancellation tokens, its wake-up), the
//! timetable a few dozen bytes. A probe is a task only while it runs.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::target::{Target, TargetLabels};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the scheduler calls; the agent implements it with the probe engine and the exporter.
pub trait Hooks: Send + Sync + 'static {
    /// What one probe yields (the agent's [`crate::probe::ProbeResult`]).
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

/// One target in the timetable.
struct Slot {
    /// The current settings; swapped on reload.
    target: Arc<Target>,
    /// Its next tick.
    next: Instant,
    /// Which heap entry is this slot's current tick: entries left behind by a reschedule or a
    /// removal carry an older number and are dropped when they come up.
    generation: u32,
    /// Which target holds the slot (slots are reused): tells a running probe whether its
    /// target is still scheduled.
    born: u32,
    /// A probe of the target runs (or waits for a permit).
    running: bool,
}

/// A planned tick: the heap orders by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tick {
    at: Instant,
    slot: u32,
    generation: u32,
}

/// Every scheduled target and the heap of their next ticks.
#[derive(Default)]
struct Timetable {
    index: HashMap<TargetLabels, u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ticks: BinaryHeap<Reverse<Tick>>,
    generations: u32,
}

/// What the driver does with a tick that came due, outside the timetable's lock.
struct Due {
    target: Arc<Target>,
    slot: u32,
    born: u32,
    scheduled: Instant,
    /// The previous probe still runs: count a skip instead.
    skip: bool,
}

impl Timetable {
    fn next_generation(&mut self) -> u32 {
        self.generations = self.generations.wrapping_add(1);
        self.generations
    }

    /// The slot if it still holds the target a probe was started for.
    fn live(&mut self, slot: u32, born: u32) -> Option<&mut Slot> {
        self.slots.get_mut(slot as usize)?.as_mut().filter(|s| s.born == born)
    }

    /// Plans `slot`'s next tick at `at`, leaving any earlier plan to be dropped when it comes up.
    fn plan(&mut self, slot: u32, at: Instant) {
        let generation = self.next_generation();
        let s = self.slots[slot as usize].as_mut().expect("planned slots are occupied");
        s.next = at;
        s.generation = generation;
        self.ticks.push(Reverse(Tick { at, slot, generation }));
    }

    /// Takes every tick due at `now`: a probe to start, or a skip when the previous one still
    /// runs. Each target's next tick is planned one interval on, past `now` after a stall.
    fn take_due(&mut self, now: Instant, due: &mut Vec<Due>) {
        while let Some(&Reverse(tick)) = self.ticks.peek() {
            if tick.at > now {
                break;
            }
            self.ticks.pop();
            let Some(s) = self.slots[tick.slot as usize]
                .as_mut()
                .filter(|s| s.generation == tick.generation)
            else {
                continue; // rescheduled or removed since
            };
            let skip = s.running;
            s.running = true;
            due.push(Due {
                target: s.target.clone(),
                slot: tick.slot,
                born: s.born,
                scheduled: tick.at,
                skip,
            });
            let interval = s.target.interval.max(Duration::from_millis(1));
            let mut next = tick.at + interval;
            // After a stall (a suspended VM, a stopped process), resume on the next future tick
            // rather than firing every missed one at once.
            if next < now {
                let missed = ((now - next).as_nanos() / interval.as_nanos()) as u32 + 1;
                next += interval * missed;
            }
            s.next = next;
            self.ticks.push(Reverse(Tick {
                at: next,
                slot: tick.slot,
                generation: tick.generation,
            }));
        }
        // Reschedules leave stale entries behind; rebuild once they outnumber the live ones.
        if self.ticks.len() > 2 * self.index.len() + 64 {
            self.ticks = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let s = s.as_ref()?;
                    Some(Reverse(Tick {
                        at: s.next,
                        slot: i as u32,
                        generation: s.generation,
                    }))
                })
                .collect();
        }
    }

    fn first(&self) -> Option<Instant> {
        self.ticks.peek().map(|Reverse(t)| t.at)
    }
}

/// What the driver and the probe tasks share.
struct Inner<H: Hooks> {
    hooks: Arc<H>,
    table: Mutex<Timetable>,
    permits: Semaphore,
    /// Cancelled when the agent stops scheduling: running probes still finish and are recorded.
    stop: CancellationToken,
    /// Woken when a reload plans a tick earlier than the one the driver sleeps for.
    wake: Notify,
    probes: TaskTracker,
}

impl<H: Hooks> Inner<H> {
    fn table(&self) -> MutexGuard<'_, Timetable> {
        self.table.lock().expect("not poisoned")
    }
}

/// The running schedule of an inventory.
pub struct Scheduler<H: Hooks> {
    inner: Arc<Inner<H>>,
    settings: Settings,
    driving: bool,
}

/// What a reload changed, by target identity.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Targets new to the schedule.
    pub added: Vec<TargetLabels>,
    /// Targets kept (with their phase), with their settings replaced.
    pub updated: Vec<TargetLabels>,
    /// Targets no longer scheduled; a probe of theirs still running is not recorded.
    pub removed: Vec<TargetLabels>,
}

impl<H: Hooks> Scheduler<H> {
    /// An empty schedule; [`Scheduler::apply`] gives it targets.
    pub fn new(hooks: Arc<H>, settings: Settings) -> Scheduler<H> {
        Scheduler {
            inner: Arc::new(Inner {
                hooks,
                table: Mutex::new(Timetable::default()),
                permits: Semaphore::new(settings.max_in_flight.max(1)),
                stop: CancellationToken::new(),
                wake: Notify::new(),
                probes: TaskTracker::new(),
            }),
            settings,
            driving: false,
        }
    }

    /// Makes the schedule match `targets`: new identities start, unchanged ones keep their
    /// phase and take the new settings, missing ones stop (their running probe is not recorded).
    /// Takes targets or `Arc`s of them: the agent shares one copy of each target with its
    /// status rows.
    pub fn apply<T: Into<Arc<Target>>>(&mut self, targets: impl IntoIterator<Item = T>) -> Applied {
        self.apply_keyed(targets.into_iter().map(|t| {
            let t = t.into();
            (TargetLabels::of(&t), t)
        }))
    }

    /// [`Scheduler::apply`] with each target's identity already made: the timetable keeps that
    /// key (its text shared with the exporter's and the status rows') rather than its own copy.
    pub fn apply_keyed(&mut self, targets: impl IntoIterator<Item = (TargetLabels, Arc<Target>)>) -> Applied {
        let mut applied = Applied::default();
        let wanted: HashMap<TargetLabels, Arc<Target>> = targets.into_iter().collect();
        let now = Instant::now();
        let mut table = self.inner.table();
        let before = table.first();
        let Timetable { index, slots, free, .. } = &mut *table;
        index.retain(|key, &mut i| {
            if wanted.contains_key(key) {
                return true;
            }
            // Under the lock a finishing probe takes to record: once this returns, a probe of
            // the removed target is recorded as gone.
            slots[i as usize] = None;
            free.push(i);
            applied.removed.push(key.clone());
            false
        });
        // Exactly the room a fleet needs, not up to twice it from doubling.
        let more = wanted.len().saturating_sub(table.index.len());
        table.index.reserve(more);
        let room = wanted.len().saturating_sub(table.slots.len());
        table.slots.reserve_exact(room);
        let ticks = wanted.len().saturating_sub(table.ticks.len());
        table.ticks.reserve_exact(ticks);
        for (key, target) in wanted {
            if let Some(&i) = table.index.get(&key) {
                let s = table.slots[i as usize].as_mut().expect("indexed slots are occupied");
                let interval = target.interval;
                let changed = s.target.interval != interval;
                s.target = target;
                // A shorter interval applies now, not after the tick planned with the old one.
                let sooner = now + interval;
                if changed && sooner < s.next {
                    table.plan(i, sooner);
                }
                applied.updated.push(key);
                continue;
            }
            let first = now + self.offset(&key, target.interval);
            let slot = Slot {
                target,
                next: first,
                generation: 0,
                born: table.next_generation(),
                running: false,
            };
            let i = match table.free.pop() {
                Some(i) => {
                    table.slots[i as usize] = Some(slot);
                    i
                }
                None => {
                    table.slots.push(Some(slot));
                    (table.slots.len() - 1) as u32
                }
            };
            table.plan(i, first);
            table.index.insert(key.clone(), i);
            applied.added.push(key);
        }
        let after = table.first();
        drop(table);
        if !self.driving {
            self.driving = true;
            tokio::spawn(drive(self.inner.clone()));
        } else if after.is_some() && (before.is_none() || after < before) {
            self.inner.wake.notify_one();
        }
        applied
    }

    /// Where in its interval a target's probes start: a stable hash of its identity, plus jitter.
    fn offset(&self, key: &TargetLabels, interval: Duration) -> Duration {
        spread(key, interval) + interval.mul_f64(self.settings.jitter.clamp(0.0, 1.0) * random_fraction())
    }

    /// Targets scheduled now.
    pub fn len(&self) -> usize {
        self.inner.table().index.len()
    }

    /// No target is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops starting probes, then waits up to `grace` for the running ones. True if all ended.
    pub async fn drain(&mut self, grace: Duration) -> bool {
        self.inner.stop.cancel();
        self.inner.probes.close();
        tokio::time::timeout(grace, self.inner.probes.wait()).await.is_ok()
    }
}

impl<H: Hooks> Drop for Scheduler<H> {
    /// A dropped schedule starts no more probes (the driver ends; running probes finish).
    fn drop(&mut self) {
        self.inner.stop.cancel();
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

/// The one task that starts every probe: sleeps until the first planned tick, takes what is
/// due, and starts (or skips) each outside the timetable's lock.
async fn drive<H: Hooks>(inner: Arc<Inner<H>>) {
    let mut due = Vec::new();
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    loop {
        let first = {
            let mut table = inner.table();
            table.take_due(Instant::now(), &mut due);
            table.first()
        };
        for d in due.drain(..) {
            if d.skip {
                inner.hooks.skipped(&d.target);
            } else {
                inner.probes.spawn(probe_once(inner.clone(), d));
            }
        }
        if due.capacity() > 1024 {
            due = Vec::new(); // a burst after a stall; do not keep its room
        }
        let idle = first.is_none();
        if let Some(at) = first {
            sleep.as_mut().reset(at);
        }
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = inner.wake.notified() => {}
            _ = sleep.as_mut(), if !idle => {}
        }
    }
}

async fn probe_once<H: Hooks>(inner: Arc<Inner<H>>, due: Due) {
    // A probe still waiting for a permit when the agent stops never starts; nor does one whose
    // target went meanwhile (checked once it has the permit).
    let permit = tokio::select! {
        _ = inner.stop.cancelled() => None,
        p = inner.permits.acquire() => Some(p.expect("the semaphore is never closed")),
    };
    let Some(permit) = permit.filter(|_| !inner.stop.is_cancelled()) else {
        if let Some(s) = inner.table().live(due.slot, due.born) {
            s.running = false;
        }
        return;
    };
    {
        let mut table = inner.table();
        if table.live(due.slot, due.born).is_none() {
            return;
        }
    }
    let target = due.target;
    inner
        .hooks
        .started(&target, Instant::now().saturating_duration_since(due.scheduled));
    let outcome = inner.hooks.run(target.clone()).await;
    drop(permit);
    // Recorded under the timetable's lock, so a reload cannot remove the target in between.
    let mut table = inner.table();
    let live = match table.live(due.slot, due.born) {
        Some(s) => {
            s.running = false;
            true
        }
        None => false,
    };
    inner.hooks.finished(&target, live.then_some(outcome));
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
        let ts = targets(1, Duration::from_secs(10));
        let phase = spread(&TargetLabels::of(&ts[0]), Duration::from_secs(10));
        s.apply(ts);
        // One second into its first (5s) probe, wherever the hash placed it: remove the target.
        tokio::time::sleep(phase + Duration::from_secs(1)).await;
        assert_eq!(rec.in_flight.lock().unwrap().0, 1, "the probe runs");
        s.apply(Vec::<Target>::new());
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            *rec.finished.lock().unwrap(),
            [("127.0.0.1:1000".to_string(), false)],
            "it ended, unrecorded"
        );
        assert_eq!(rec.starts.lock().unwrap().len(), 1, "no probe after removal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_waiting_for_a_permit_never_starts_once_its_target_is_removed() {
        let rec = Recorder::new(Duration::from_secs(60));
        let mut s = Scheduler::new(
            rec.clone(),
            Settings {
                max_in_flight: 1,
                jitter: 0.0,
            },
        );
        let ts = targets(2, Duration::from_secs(100));
        s.apply(ts.clone());
        // Both ticks come within the first interval; the later one waits for the only permit.
        tokio::time::sleep(Duration::from_secs(100)).await;
        let starts = rec.starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 1, "one probe holds the permit");
        let waiting = if starts[0].0 == "127.0.0.1:1000" { 1 } else { 0 };
        s.apply(vec![ts[1 - waiting].clone()]);
        tokio::time::sleep(Duration::from_secs(50)).await;
        let starts = rec.starts.lock().unwrap().clone();
        assert!(
            starts.iter().all(|(name, _)| *name != ts[waiting].instance),
            "the removed target's waiting probe never started: {starts:?}"
        );
        assert_eq!(
            *rec.finished.lock().unwrap(),
            [(ts[1 - waiting].instance.clone(), true)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_running_across_an_interval_change_is_recorded_and_the_target_keeps_probing() {
        let rec = Recorder::new(Duration::from_secs(5));
        let mut s = Scheduler::new(rec.clone(), NO_JITTER);
        let mut ts = targets(1, Duration::from_secs(60));
        let phase = spread(&TargetLabels::of(&ts[0]), Duration::from_secs(60));
        s.apply(ts.clone());
        tokio::time::sleep(phase + Duration::from_secs(1)).await;
        assert_eq!(rec.in_flight.lock().unwrap().0, 1, "the probe runs");
        ts[0].interval = Duration::from_secs(10);
        s.apply(ts);
        tokio::time::sleep(Duration::from_secs(40)).await;
        let finished = rec.finished.lock().unwrap();
        assert!(finished.len() >= 4, "probed every 10s after the change: {finished:?}");
        assert!(finished.iter().all(|(_, recorded)| *recorded), "every probe recorded");
        assert!(rec.skips.lock().unwrap().is_empty());
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
