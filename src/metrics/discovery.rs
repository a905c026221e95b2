//! Discovery's own metrics, and the `why` of documented-absent targets (which `diagnose` quotes).
//! Kept apart from the per-probe series so they move onto another exporter unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{TargetLabels, TARGET_LABELS};

/// `pathprobe_discovery_*` and `pathprobe_target_absent_info`.
pub struct Extra {
    /// `pathprobe_discovery_refreshes_total{result}`: asks of Prometheus, `success` or `failure`.
    pub refreshes: IntCounterVec,
    /// `pathprobe_discovery_last_refresh_successful`: 1/0.
    pub last_refresh_successful: Gauge,
    /// `pathprobe_discovered_targets`: targets discovered (the last good list), before static
    /// entries win.
    pub discovered: Gauge,
    absent_info: IntGaugeVec,
    whys: Mutex<HashMap<TargetLabels, String>>,
    enabled: AtomicBool,
}

impl Extra {
    /// Builds them and registers the absent info; discovery's metrics wait for [`Extra::enable`].
    pub fn new(registry: &Registry) -> Extra {
        let refreshes = IntCounterVec::new(
            Opts::new(
                "pathprobe_discovery_refreshes_total",
                "Asks of Prometheus's active targets, by result.",
            ),
            &["result"],
        )
        .unwrap();
        for result in ["success", "failure"] {
            refreshes.with_label_values(&[result]);
        }
        let last_refresh_successful = Gauge::with_opts(Opts::new(
            "pathprobe_discovery_last_refresh_successful",
            "1 if the latest ask of Prometheus's active targets succeeded (else the last good list keeps probing).",
        ))
        .unwrap();
        let discovered = Gauge::with_opts(Opts::new(
            "pathprobe_discovered_targets",
            "Targets discovered from Prometheus in the last good list.",
        ))
        .unwrap();
        let mut labels: Vec<&str> = TARGET_LABELS.to_vec();
        labels.push("why");
        let absent_info = IntGaugeVec::new(
            Opts::new(
                "pathprobe_target_absent_info",
                "Always 1, per documented-absent target; the why label is the inventory's why.",
            ),
            &labels,
        )
        .unwrap();
        registry
            .register(Box::new(absent_info.clone()))
            .expect("unique metric names");
        Extra {
            refreshes,
            last_refresh_successful,
            discovered,
            absent_info,
            whys: Mutex::new(HashMap::new()),
            enabled: AtomicBool::new(false),
        }
    }

    /// Registers discovery's metrics (once): only an agent that discovers exports them.
    pub fn enable(&self, registry: &Registry) {
        if self.enabled.swap(true, Ordering::AcqRel) {
            return;
        }
        for c in [
            Box::new(self.refreshes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.last_refresh_successful.clone()),
            Box::new(self.discovered.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
    }

    /// Unregisters them when discovery is turned off.
    pub fn disable(&self, registry: &Registry) {
        if !self.enabled.swap(false, Ordering::AcqRel) {
            return;
        }
        let _ = registry.unregister(Box::new(self.refreshes.clone()));
        let _ = registry.unregister(Box::new(self.last_refresh_successful.clone()));
        let _ = registry.unregister(Box::new(self.discovered.clone()));
    }

    /// Declares a documented-absent target's why.
    pub fn absent(&self, labels: &TargetLabels, why: &str) {
        let mut whys = self.whys.lock().expect("not poisoned");
        if let Some(old) = whys.insert(labels.clone(), why.to_string()) {
            if old != why {
                let _ = self.absent_info.remove_label_values(&labels.with(&old));
            }
        }
        self.absent_info.with_label_values(&labels.with(why)).set(1);
    }

    /// Drops a target's why.
    pub fn forget(&self, labels: &TargetLabels) {
        if let Some(old) = self.whys.lock().expect("not poisoned").remove(labels) {
            let _ = self.absent_info.remove_label_values(&labels.with(&old));
        }
    }
}
