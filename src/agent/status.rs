//! This node's view of every target: the latest result, when it last succeeded, and since when
//! it has been in its state. Logs a target's failure when its state changes, not on every probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::metrics::{TargetKey, TargetLabels};
use crate::probe::ProbeResult;
use crate::reason::Reason;
use crate::target::{AbsentTarget, Target};

/// One target's row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Shared with the scheduler: one copy of each target.
    pub target: Arc<Target>,
    /// Boxed: most of the time only the map's entry is touched, and entries stay small.
    pub last: Option<Box<ProbeResult>>,
    pub last_success: Option<SystemTime>,
    /// When the current reason was first seen.
    pub since: Option<SystemTime>,
}

/// Every target's row, plus the documented-absent ones.
#[derive(Default)]
pub struct Status {
    rows: Mutex<HashMap<TargetLabels, Row>>,
    absent: Mutex<Vec<AbsentTarget>>,
}

impl Status {
    /// Makes the rows match the inventory, keeping the state of targets that stay.
    pub fn set_inventory(&self, targets: &[Arc<Target>], absent: &[AbsentTarget]) {
        let mut rows = self.rows.lock().expect("not poisoned");
        let keys: std::collections::HashSet<TargetLabels> = targets.iter().map(|t| TargetLabels::of(t)).collect();
        rows.retain(|k, _| keys.contains(k));
        for t in targets {
            rows.entry(TargetLabels::of(t))
                .and_modify(|row| row.target = t.clone())
                .or_insert_with(|| Row {
                    target: t.clone(),
                    last: None,
                    last_success: None,
                    since: None,
                });
        }
        *self.absent.lock().expect("not poisoned") = absent.to_vec();
    }

    /// Records a result, logging when the target's state changes.
    pub fn record(&self, target: &Target, result: ProbeResult) {
        let mut rows = self.rows.lock().expect("not poisoned");
        let Some(row) = rows.get_mut(TargetKey(target).as_key()) else {
            return;
        };
        let before = row.last.as_ref().map(|r| r.reason);
        if before != Some(result.reason) {
            log_change(target, before, &result);
            row.since = Some(result.finished_at);
        }
        if result.success() {
            row.last_success = Some(result.finished_at);
        }
        match &mut row.last {
            Some(last) => **last = result,
            None => row.last = Some(Box::new(result)),
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
    let (name, instance, kind) = (&target.name, &target.instance, target.kind.as_str());
    let reason = result.reason.as_str();
    match (before, result.success()) {
        (None, true) => tracing::info!(target = %name, instance = %instance, kind, "target up"),
        (_, true) => tracing::info!(
            target = %name, instance = %instance, kind,
            was = before.map(|r| r.as_str()).unwrap_or(""),
            "target recovered"
        ),
        (_, false) => tracing::warn!(
            target = %name, instance = %instance, kind, reason,
            error = result.error.as_deref().unwrap_or(""),
            meaning = %crate::report::advice(target, result, crate::report::Hints::Inventory),
            "target failing"
        ),
    }
}
