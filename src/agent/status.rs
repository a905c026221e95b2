//! This node's view of every target: the latest result, when it last succeeded, and since when
//! it has been in its state. Logs a target's failure when its state changes, not on every probe,
//! and at most [`LOG_BUDGET`] such lines per [`LOG_WINDOW`]: when a network cut fails every
//! target at once, the rest are counted by reason and summed up in one line per window.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::probe::{Family, FamilyOutcome, Phase, ProbeResult};
use crate::reason::Reason;
use crate::target::{AbsentTarget, Target, TargetKey, TargetLabels};

/// One target's row: the target and, once it was probed, its latest result.
#[derive(Debug, Clone)]
pub struct Row {
    /// Shared with the scheduler: one copy of each target.
    pub target: Arc<Target>,
    /// Boxed: a waiting target's row is two pointers, and the map's entries stay small.
    pub last: Option<Box<Latest>>,
}

/// What the status page and the log show of a target's latest result, as plain numbers: not the
/// whole [`ProbeResult`] (its trace's vectors and strings), which at 10,000 targets was about
/// 600 bytes each; this is 72.
#[derive(Debug, Clone)]
pub struct Latest {
    /// The latest result's reason; `none` for success.
    pub reason: Reason,
    /// Microseconds per phase, in [`Phase::ALL`]'s order (the last, `total`, the whole probe);
    /// [`NOT_RUN`] for a phase that did not run.
    phases: [u32; Phase::ALL.len()],
    /// The name lookup, family by family (A first), with microseconds each; `None` for a
    /// literal address.
    dns: Option<[(Family, FamilyOutcome, u32); 2]>,
    /// When the current reason was first seen, Unix seconds.
    since: u64,
    /// When the target last succeeded, Unix seconds; 0 for never.
    last_success: u64,
    /// What only some results have.
    rare: Option<Box<Rare>>,
}

/// A [`Latest`]'s fields that most results do not have.
#[derive(Debug, Clone, Default)]
struct Rare {
    /// The peer certificate's expiry, when the probe saw one.
    cert_not_after: Option<SystemTime>,
    /// All-address mode: each address's reason, in the resolver's order (empty otherwise).
    addresses: Box<[(IpAddr, Reason)]>,
    /// The error chain as text, kept only while failing (the hint reads it).
    error: Option<Box<str>>,
}

/// A phase that did not run, in [`Latest`]'s microseconds.
const NOT_RUN: u32 = u32::MAX;

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(NOT_RUN - 1)) as u32
}

/// Unix seconds (at least 1, so 0 can mean never).
fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).max(1)
}

impl Latest {
    fn of(result: &ProbeResult, since: u64, last_success: u64) -> Latest {
        let mut phases = [NOT_RUN; Phase::ALL.len()];
        for (slot, phase) in phases.iter_mut().zip(Phase::ALL) {
            let d = match phase {
                Phase::Total => Some(result.total),
                p => result.trace.phase(p),
            };
            if let Some(d) = d {
                *slot = micros(d);
            }
        }
        let rare = Rare {
            cert_not_after: result.trace.tls.as_ref().and_then(|t| t.peer_cert_not_after),
            addresses: result.addresses.iter().map(|a| (a.address.ip(), a.reason)).collect(),
            error: match result.success() {
                true => None,
                false => result.error.as_deref().map(Box::from),
            },
        };
        let has_rare = rare.cert_not_after.is_some() || !rare.addresses.is_empty() || rare.error.is_some();
        Latest {
            reason: result.reason,
            phases,
            dns: result
                .trace
                .dns
                .map(|d| d.families.map(|f| (f.family, f.outcome, micros(f.took)))),
            since,
            last_success,
            rare: has_rare.then(|| Box::new(rare)),
        }
    }

    /// True when nothing failed.
    pub fn success(&self) -> bool {
        self.reason == Reason::None
    }

    /// The time recorded for `phase` (`total`: the whole probe), if it ran.
    pub fn phase(&self, phase: Phase) -> Option<Duration> {
        let us = self.phases[phase as usize];
        (us != NOT_RUN).then(|| Duration::from_micros(u64::from(us)))
    }

    /// How the name lookup went, family by family (A first), and how long each took; empty
    /// for a literal address.
    pub fn dns(&self) -> impl Iterator<Item = (Family, FamilyOutcome, Duration)> + '_ {
        self.dns
            .iter()
            .flatten()
            .map(|&(f, o, us)| (f, o, Duration::from_micros(u64::from(us))))
    }

    /// When the current reason was first seen (to the second).
    pub fn since(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.since)
    }

    /// When the target last succeeded (to the second), if it ever did.
    pub fn last_success(&self) -> Option<SystemTime> {
        (self.last_success != 0).then(|| UNIX_EPOCH + Duration::from_secs(self.last_success))
    }

    /// The peer certificate's expiry, when the probe saw one.
    pub fn cert_not_after(&self) -> Option<SystemTime> {
        self.rare.as_ref().and_then(|r| r.cert_not_after)
    }

    /// All-address mode: each address's reason, in the resolver's order (empty otherwise).
    pub fn addresses(&self) -> &[(IpAddr, Reason)] {
        self.rare.as_ref().map_or(&[], |r| &r.addresses)
    }

    /// The error chain as text, while failing.
    pub fn error(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.error.as_deref())
    }
}

/// State-change lines logged per window; the rest are counted.
pub const LOG_BUDGET: u32 = 20;
/// The window [`LOG_BUDGET`] applies to.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Every target's row, plus the documented-absent ones.
#[derive(Default)]
pub struct Status {
    rows: Mutex<HashMap<TargetLabels, Row>>,
    absent: Mutex<Vec<AbsentTarget>>,
    budget: Mutex<LogBudget>,
}

/// How many state-change lines the current window has left, and what it did not log.
#[derive(Debug, Default)]
pub struct LogBudget {
    window_start: Option<Instant>,
    logged: u32,
    /// Suppressed changes by what they changed to (a reason, or `recovered`).
    suppressed: BTreeMap<&'static str, u64>,
}

/// What a window did not log.
#[derive(Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub total: u64,
    /// `reason=count` pairs, most first.
    pub by_reason: String,
}

impl LogBudget {
    /// Whether a change to `what` may be logged now; if not, it is counted. A window that has
    /// ended hands back its summary first.
    pub fn admit(&mut self, now: Instant, what: &'static str) -> (bool, Option<Suppressed>) {
        let summary = self.roll(now);
        if self.logged < LOG_BUDGET {
            self.logged += 1;
            (true, summary)
        } else {
            *self.suppressed.entry(what).or_default() += 1;
            (false, summary)
        }
    }

    /// Ends the window if it is over, with what it did not log (if anything).
    pub fn roll(&mut self, now: Instant) -> Option<Suppressed> {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) < LOG_WINDOW {
            return None;
        }
        self.window_start = Some(now);
        self.logged = 0;
        let counts = std::mem::take(&mut self.suppressed);
        if counts.is_empty() {
            return None;
        }
        let mut pairs: Vec<_> = counts.into_iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Some(Suppressed {
            total: pairs.iter().map(|(_, n)| n).sum(),
            by_reason: pairs
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }
}

fn log_suppressed(s: Suppressed) {
    tracing::warn!(
        suppressed = s.total,
        by_reason = %s.by_reason,
        window = ?LOG_WINDOW,
        "target state changes not logged (more than {LOG_BUDGET} in the window); the status page and pathprobe_failure_reason show every target"
    );
}

impl Status {
    /// Makes the rows match the inventory, keeping the state of targets that stay. Each target
    /// comes with its identity, which a new row keeps (shared with the scheduler and exporter).
    pub fn set_inventory(&self, targets: &[(TargetLabels, Arc<Target>)], absent: &[AbsentTarget]) {
        let mut rows = self.rows.lock().expect("not poisoned");
        let keys: std::collections::HashSet<&TargetLabels> = targets.iter().map(|(k, _)| k).collect();
        rows.retain(|k, _| keys.contains(k));
        let more = targets.len().saturating_sub(rows.len());
        rows.reserve(more);
        for (key, t) in targets {
            rows.entry(key.clone())
                .and_modify(|row| row.target = t.clone())
                .or_insert_with(|| Row {
                    target: t.clone(),
                    last: None,
                });
        }
        rows.shrink_to_fit();
        *self.absent.lock().expect("not poisoned") = absent.to_vec();
    }

    /// Records a result, logging when the target's state changes.
    pub fn record(&self, target: &Target, result: ProbeResult) {
        let mut rows = self.rows.lock().expect("not poisoned");
        let Some(row) = rows.get_mut(TargetKey(target).as_key()) else {
            return;
        };
        let before = row.last.as_ref().map(|r| r.reason);
        let mut since = row.last.as_ref().map(|r| r.since);
        let finished = unix(result.finished_at);
        if before != Some(result.reason) {
            let what = match (before, result.success()) {
                (_, false) => result.reason.as_str(),
                (None, true) => "up",
                (Some(_), true) => "recovered",
            };
            let (admitted, summary) = self.budget.lock().expect("not poisoned").admit(Instant::now(), what);
            if let Some(s) = summary {
                log_suppressed(s);
            }
            if admitted {
                log_change(target, before, &result);
            }
            since = Some(finished);
        }
        let last_success = match result.success() {
            true => finished,
            false => row.last.as_ref().map_or(0, |r| r.last_success),
        };
        let latest = Latest::of(&result, since.unwrap_or(finished), last_success);
        match &mut row.last {
            Some(last) => **last = latest,
            None => row.last = Some(Box::new(latest)),
        }
    }

    /// Logs what the last window did not, once it is over (the control loop calls this every
    /// poll, so a storm's summary appears even when nothing changes after it).
    pub fn flush_log(&self) {
        if let Some(s) = self.budget.lock().expect("not poisoned").roll(Instant::now()) {
            log_suppressed(s);
        }
    }

    /// The rows, failing first, then by name and instance.
    pub fn snapshot(&self) -> (Vec<Row>, Vec<AbsentTarget>) {
        let mut rows: Vec<Row> = self.rows.lock().expect("not poisoned").values().cloned().collect();
        rows.sort_by(|a, b| {
            let failing = |r: &Row| r.last.as_ref().is_some_and(|l| !l.success());
            failing(b)
                .cmp(&failing(a))
                .then_with(|| a.target.name.cmp(&b.target.name))
                .then_with(|| a.target.instance.cmp(&b.target.instance))
        });
        (rows, self.absent.lock().expect("not poisoned").clone())
    }
}

fn log_change(target: &Target, before: Option<Reason>, result: &ProbeResult) {
    let (name, instance, kind) = (&target.name, &target.instance, target.kind().as_str());
    let reason = result.reason.as_str();
    match (before, result.success()) {
        (None, true) => tracing::info!(target = %name, instance = %instance, kind, "target up"),
        (_, true) => tracing::info!(
            target = %name, instance = %instance, kind,
            was = before.map(|r| r.as_str()).unwrap_or(""),
            "target recovered"
        ),
        // A cause the reason table does not know: the reason is a fallback, so the chain is what
        // tells what happened (and where the table needs a new row).
        (_, false) if result.unplaced.is_some() => tracing::warn!(
            target = %name, instance = %instance, kind, reason,
            phase = result.unplaced.map(|p| p.as_str()).unwrap_or_default(),
            error = result.error.as_deref().unwrap_or(""),
            "target failing with an error the reason table cannot place; its reason is the fallback of its family (counted in pathprobe_unclassified_errors_total)"
        ),
        (_, false) => tracing::warn!(
            target = %name, instance = %instance, kind, reason,
            error = result.error.as_deref().unwrap_or(""),
            meaning = %crate::report::advice(target, result, crate::report::Hints::Inventory),
            "target failing"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_storm_logs_the_budget_then_one_summary_per_window_with_counts_by_reason() {
        let mut b = LogBudget::default();
        let mut logged = 0;
        for i in 0..1000 {
            let what = if i % 4 == 0 {
                "connect_refused"
            } else {
                "connect_timeout"
            };
            let (ok, summary) = b.admit(Instant::now(), what);
            assert!(summary.is_none(), "the window is not over yet");
            logged += ok as u32;
        }
        assert_eq!(logged, LOG_BUDGET);
        assert_eq!(
            b.roll(Instant::now()),
            None,
            "nothing is summed up before the window ends"
        );
        tokio::time::advance(LOG_WINDOW).await;
        let s = b.roll(Instant::now()).expect("the window's summary");
        assert_eq!(s.total, 1000 - LOG_BUDGET as u64);
        assert_eq!(s.by_reason, "connect_timeout=735 connect_refused=245");
        assert_eq!(b.roll(Instant::now()), None, "summed up once");
        let (ok, summary) = b.admit(Instant::now(), "recovered");
        assert!(ok && summary.is_none(), "a new window logs again");
    }

    /// 10,000 targets' latest results fit in well under a megabyte (the rare parts boxed).
    #[test]
    fn a_latest_result_is_small() {
        assert!(std::mem::size_of::<Latest>() <= 72, "{}", std::mem::size_of::<Latest>());
        assert!(std::mem::size_of::<Row>() <= 16);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_window_has_no_summary() {
        let mut b = LogBudget::default();
        for _ in 0..LOG_BUDGET {
            assert!(b.admit(Instant::now(), "connect_refused").0);
        }
        tokio::time::advance(LOG_WINDOW * 3).await;
        assert_eq!(b.roll(Instant::now()), None);
    }
}
