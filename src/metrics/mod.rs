//! The exporter: probe results in, Prometheus series out. Knows nothing of sockets.
//!
//! Source labels (`source_node`, `source_cluster`, `network`) are the registry's constant labels;
//! per-target series carry the target's identity. The exporter remembers each target's last
//! reason so `pathprobe_failure_reason` keeps exactly one series per target, and can forget a
//! target whole when it leaves the inventory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub mod blocked;
mod discovery;
mod openmetrics;

use crate::probe::{Family, FamilyOutcome, Phase, ProbeResult};
use crate::reason::Reason;
use crate::target::{AbsentTarget, Target};

/// The content type of [`Exporter::render`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Per-target label names, in the order [`TargetLabels::values`] gives them.
pub(crate) const TARGET_LABELS: [&str; 5] = ["target", "target_job", "target_instance", "target_cluster", "kind"];

/// A target's identity as label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetLabels([String; 5]);

impl TargetLabels {
    pub fn of(target: &Target) -> TargetLabels {
        TargetLabels([
            target.name.clone(),
            target.job.clone(),
            target.instance.clone(),
            target.cluster.clone(),
            target.kind.as_str().to_string(),
        ])
    }

    pub fn of_absent(target: &AbsentTarget) -> TargetLabels {
        TargetLabels([
            target.name.clone(),
            target.job.clone(),
            target.instance.clone(),
            target.cluster.clone(),
            target.kind.map(|k| k.as_str()).unwrap_or("").to_string(),
        ])
    }

    fn values(&self) -> [&str; 5] {
        [&self.0[0], &self.0[1], &self.0[2], &self.0[3], &self.0[4]]
    }

    pub(crate) fn with<'a>(&'a self, extra: &'a str) -> [&'a str; 6] {
        let v = self.values();
        [v[0], v[1], v[2], v[3], v[4], extra]
    }

    fn with2<'a>(&'a self, a: &'a str, b: &'a str) -> [&'a str; 7] {
        let v = self.values();
        [v[0], v[1], v[2], v[3], v[4], a, b]
    }
}

/// Who is probing: the registry's constant labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub node: String,
    pub cluster: String,
    pub network: String,
}

/// Every metric of the contract.
pub struct Exporter {
    registry: Registry,
    success: IntGaugeVec,
    duration: GaugeVec,
    probe_duration: HistogramVec,
    probes: IntCounterVec,
    failures: IntCounterVec,
    failure_reason: IntGaugeVec,
    http_status: IntGaugeVec,
    cert_not_after: GaugeVec,
    last_probe: GaugeVec,
    expected: IntGaugeVec,
    skipped: IntCounterVec,
    dns_lookups: IntCounterVec,
    address_success: IntGaugeVec,
    address_failure_reason: IntGaugeVec,
    /// All-address mode: each target's addresses of the latest probe and their reasons, so the
    /// series of an address that is gone, or of an old reason, can be removed.
    last_addresses: Mutex<HashMap<TargetLabels, HashMap<String, Reason>>>,
    /// Reload outcomes.
    pub config_reloads: IntCounterVec,
    pub config_last_reload_successful: Gauge,
    pub scheduler_lag: prometheus::Histogram,
    pub in_flight: Gauge,
    last_reason: Mutex<HashMap<TargetLabels, Reason>>,
    /// Discovery's metrics and the absent targets' why.
    pub extra: discovery::Extra,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Exporter {
    /// Builds and registers every metric.
    pub fn new(source: &Source) -> Exporter {
        let labels = HashMap::from([
            ("source_node".to_string(), source.node.clone()),
            ("source_cluster".to_string(), source.cluster.clone()),
            ("network".to_string(), source.network.clone()),
        ]);
        let registry = Registry::new_custom(None, Some(labels)).expect("constant labels are valid");
        let with = |extra: &'static str| {
            let mut v: Vec<&str> = TARGET_LABELS.to_vec();
            v.push(extra);
            v
        };
        let t = &TARGET_LABELS[..];
        let success = IntGaugeVec::new(
            opts(
                "pathprobe_success",
                "1 if the latest probe of the target succeeded, else 0.",
            ),
            t,
        )
        .unwrap();
        let duration = GaugeVec::new(
            opts(
                "pathprobe_duration_seconds",
                "Duration of each phase of the latest probe (0 for a phase that did not run).",
            ),
            &with("phase"),
        )
        .unwrap();
        let probe_duration = HistogramVec::new(
            HistogramOpts::new("pathprobe_probe_duration_seconds", "Total duration of every probe.").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            t,
        )
        .unwrap();
        let probes = IntCounterVec::new(
            opts("pathprobe_probes_total", "Probes run, by result."),
            &with("result"),
        )
        .unwrap();
        let failures = IntCounterVec::new(
            opts(
                "pathprobe_failures_total",
                "Failed probes, by the first phase that broke.",
            ),
            &with("reason"),
        )
        .unwrap();
        let failure_reason = IntGaugeVec::new(
            opts(
                "pathprobe_failure_reason",
                "Always 1; the reason label is the latest probe's reason (none on success).",
            ),
            &with("reason"),
        )
        .unwrap();
        let http_status = IntGaugeVec::new(
            opts(
                "pathprobe_http_status_code",
                "HTTP status of the latest probe, 0 if none.",
            ),
            t,
        )
        .unwrap();
        let cert_not_after = GaugeVec::new(
            opts(
                "pathprobe_tls_cert_not_after_timestamp_seconds",
                "Expiry of the peer's leaf certificate, Unix seconds.",
            ),
            t,
        )
        .unwrap();
        let last_probe = GaugeVec::new(
            opts(
                "pathprobe_last_probe_timestamp_seconds",
                "When the latest probe finished, Unix seconds.",
            ),
            t,
        )
        .unwrap();
        let expected = IntGaugeVec::new(
            opts(
                "pathprobe_target_expected",
                "1 if the inventory expects the target to exist, 0 for documented-absent targets.",
            ),
            t,
        )
        .unwrap();
        let skipped = IntCounterVec::new(
            opts(
                "pathprobe_probes_skipped_total",
                "Probes not started because the previous probe of the target was still running.",
            ),
            t,
        )
        .unwrap();
        let dns_lookups = IntCounterVec::new(
            opts(
                "pathprobe_dns_lookups_total",
                "Name lookups of probed targets, by address family (ipv4: A, ipv6: AAAA) and what that family's question got.",
            ),
            &["family", "outcome"],
        )
        .unwrap();
        let address_success = IntGaugeVec::new(
            opts(
                "pathprobe_address_success",
                "All-address mode: 1 if the latest probe of this address of the target succeeded, else 0.",
            ),
            &with("address"),
        )
        .unwrap();
        let address_failure_reason = IntGaugeVec::new(
            opts(
                "pathprobe_address_failure_reason",
                "All-address mode: always 1; the reason label is the latest probe's reason for this address (none on success).",
            ),
            &{
                let mut v = with("address");
                v.push("reason");
                v
            },
        )
        .unwrap();
        let config_reloads = IntCounterVec::new(
            opts("pathprobe_config_reloads_total", "Inventory reloads, by result."),
            &["result"],
        )
        .unwrap();
        let config_last_reload_successful = Gauge::with_opts(opts(
            "pathprobe_config_last_reload_successful",
            "1 if the latest inventory (re)load succeeded.",
        ))
        .unwrap();
        let scheduler_lag = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "pathprobe_scheduler_lag_seconds",
                "How late probes start against their schedule.",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .unwrap();
        let in_flight = Gauge::with_opts(opts("pathprobe_probes_in_flight", "Probes running now.")).unwrap();
        let build_info = IntGaugeVec::new(
            opts("pathprobe_build_info", "Always 1; the build's version and revision."),
            &["version", "revision"],
        )
        .unwrap();
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("PATHPROBE_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        let collectors: [Box<dyn prometheus::core::Collector>; 18] = [
            Box::new(dns_lookups.clone()),
            Box::new(address_success.clone()),
            Box::new(address_failure_reason.clone()),
            Box::new(success.clone()),
            Box::new(duration.clone()),
            Box::new(probe_duration.clone()),
            Box::new(probes.clone()),
            Box::new(failures.clone()),
            Box::new(failure_reason.clone()),
            Box::new(http_status.clone()),
            Box::new(cert_not_after.clone()),
            Box::new(last_probe.clone()),
            Box::new(expected.clone()),
            Box::new(skipped.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_reload_successful.clone()),
            Box::new(scheduler_lag.clone()),
            Box::new(in_flight.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("unique metric names");
        }
        registry.register(Box::new(build_info)).expect("unique metric names");
        let extra = discovery::Extra::new(&registry);
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        for family in Family::ALL {
            for outcome in FamilyOutcome::ALL {
                dns_lookups.with_label_values(&[family.as_str(), outcome.as_str()]);
            }
        }
        Exporter {
            registry,
            success,
            duration,
            probe_duration,
            probes,
            failures,
            failure_reason,
            http_status,
            cert_not_after,
            last_probe,
            expected,
            skipped,
            dns_lookups,
            address_success,
            address_failure_reason,
            last_addresses: Mutex::new(HashMap::new()),
            config_reloads,
            config_last_reload_successful,
            scheduler_lag,
            in_flight,
            last_reason: Mutex::new(HashMap::new()),
            extra,
        }
    }

    /// Declares a probed target: `expected 1`, and its counters at 0 so rates work from the start.
    pub fn add_target(&self, target: &Target) {
        let l = TargetLabels::of(target);
        self.expected.with_label_values(&l.values()).set(1);
        for result in ["success", "failure"] {
            self.probes.with_label_values(&l.with(result));
        }
        self.skipped.with_label_values(&l.values());
    }

    /// Declares a documented-absent target: only `pathprobe_target_expected 0`.
    pub fn add_absent(&self, target: &AbsentTarget) {
        self.expected
            .with_label_values(&TargetLabels::of_absent(target).values())
            .set(0);
        self.extra.absent(&TargetLabels::of_absent(target), &target.why);
    }

    /// Records one probe's outcome.
    pub fn observe(&self, target: &Target, result: &ProbeResult) {
        let l = TargetLabels::of(target);
        let v = l.values();
        self.success.with_label_values(&v).set(i64::from(result.success()));
        for phase in Phase::ALL {
            let d = match phase {
                Phase::Total => Some(result.total),
                p => result.trace.phase(p),
            };
            self.duration
                .with_label_values(&l.with(phase.as_str()))
                .set(d.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        }
        self.probe_duration
            .with_label_values(&v)
            .observe(result.total.as_secs_f64());
        let outcome = if result.success() { "success" } else { "failure" };
        self.probes.with_label_values(&l.with(outcome)).inc();
        if !result.success() {
            self.failures.with_label_values(&l.with(result.reason.as_str())).inc();
        }
        self.set_reason(&l, result.reason);
        if target.all_addresses.is_some() {
            self.set_addresses(&l, result);
        }
        if let Some(dns) = &result.trace.dns {
            for f in &dns.families {
                self.dns_lookups
                    .with_label_values(&[f.family.as_str(), f.outcome.as_str()])
                    .inc();
            }
        }
        self.http_status
            .with_label_values(&v)
            .set(i64::from(result.trace.http_status.unwrap_or(0)));
        if let Some(not_after) = result.trace.tls.as_ref().and_then(|t| t.peer_cert_not_after) {
            let secs = not_after
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.cert_not_after.with_label_values(&v).set(secs);
        }
        let finished = result
            .finished_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_probe.with_label_values(&v).set(finished);
    }

    fn set_reason(&self, l: &TargetLabels, reason: Reason) {
        let mut last = self.last_reason.lock().expect("not poisoned");
        if let Some(old) = last.insert(l.clone(), reason) {
            if old != reason {
                let _ = self.failure_reason.remove_label_values(&l.with(old.as_str()));
            }
        }
        self.failure_reason.with_label_values(&l.with(reason.as_str())).set(1);
    }

    /// All-address mode: one success and one reason series per address of the latest probe.
    /// Addresses no longer resolved lose their series (all of them while the lookup fails: a
    /// stale "up" for an address nobody can find would mislead).
    fn set_addresses(&self, l: &TargetLabels, result: &ProbeResult) {
        let now: HashMap<String, Reason> = result
            .addresses
            .iter()
            .map(|a| (a.address.ip().to_string(), a.reason))
            .collect();
        let mut last = self.last_addresses.lock().expect("not poisoned");
        let before = last.insert(l.clone(), now.clone()).unwrap_or_default();
        for (address, old) in &before {
            match now.get(address) {
                Some(reason) if reason == old => {}
                Some(_) => {
                    let _ = self
                        .address_failure_reason
                        .remove_label_values(&l.with2(address, old.as_str()));
                }
                None => {
                    let _ = self.address_success.remove_label_values(&l.with(address));
                    let _ = self
                        .address_failure_reason
                        .remove_label_values(&l.with2(address, old.as_str()));
                }
            }
        }
        for (address, reason) in &now {
            self.address_success
                .with_label_values(&l.with(address))
                .set(i64::from(*reason == Reason::None));
            self.address_failure_reason
                .with_label_values(&l.with2(address, reason.as_str()))
                .set(1);
        }
    }

    /// Counts a probe not started because the previous one still ran.
    pub fn skipped(&self, target: &Target) {
        self.skipped.with_label_values(&TargetLabels::of(target).values()).inc();
    }

    /// Removes every series of a target that left the inventory.
    pub fn forget(&self, labels: &TargetLabels) {
        let v = labels.values();
        for g in [&self.success, &self.http_status, &self.expected] {
            let _ = g.remove_label_values(&v);
        }
        for g in [&self.cert_not_after, &self.last_probe] {
            let _ = g.remove_label_values(&v);
        }
        let _ = self.probe_duration.remove_label_values(&v);
        let _ = self.skipped.remove_label_values(&v);
        for phase in Phase::ALL {
            let _ = self.duration.remove_label_values(&labels.with(phase.as_str()));
        }
        for result in ["success", "failure"] {
            let _ = self.probes.remove_label_values(&labels.with(result));
        }
        for reason in Reason::ALL {
            let _ = self.failures.remove_label_values(&labels.with(reason.as_str()));
            let _ = self.failure_reason.remove_label_values(&labels.with(reason.as_str()));
        }
        self.last_reason.lock().expect("not poisoned").remove(labels);
        let addresses = self.last_addresses.lock().expect("not poisoned").remove(labels);
        for (address, reason) in addresses.unwrap_or_default() {
            let _ = self.address_success.remove_label_values(&labels.with(&address));
            let _ = self
                .address_failure_reason
                .remove_label_values(&labels.with2(&address, reason.as_str()));
        }
        self.extra.forget(labels);
    }

    /// Exports discovery's metrics (an agent with `discovery:`), or stops exporting them.
    pub fn set_discovery(&self, on: bool) {
        if on {
            self.extra.enable(&self.registry);
        } else {
            self.extra.disable(&self.registry);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut buf)
            .expect("encoding to memory cannot fail");
        buf
    }

    /// The exposition in the format the scraper's `Accept` header asks for, with its content type.
    pub fn render_for(&self, accept: Option<&str>) -> (&'static str, String) {
        if openmetrics::wanted(accept) {
            (openmetrics::CONTENT_TYPE, openmetrics::encode(&self.registry.gather()))
        } else {
            (TEXT_CONTENT_TYPE, self.render())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{parse, Format};

    fn exporter_with_results() -> (Exporter, Vec<Target>) {
        let exporter = Exporter::new(&Source {
            node: "n1".into(),
            cluster: "prod".into(),
            network: "host".into(),
        });
        let targets: Vec<Target> = ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]
            .iter()
            .map(|a| crate::adhoc::parse(a, &Default::default()).unwrap().remove(0))
            .collect();
        for t in &targets {
            exporter.add_target(t);
        }
        (exporter, targets)
    }

    fn result(reason: Reason) -> ProbeResult {
        ProbeResult {
            kind: crate::target::Kind::Tcp,
            reason,
            trace: Default::default(),
            total: std::time::Duration::from_millis(3),
            error: None,
            finished_at: std::time::SystemTime::now(),
            addresses: Vec::new(),
        }
    }

    fn series(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    #[test]
    fn failure_reason_keeps_exactly_one_series_per_target() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::ConnectRefused));
        e.observe(&t[0], &result(Reason::ConnectTimeout));
        e.observe(&t[0], &result(Reason::None));
        let text = e.render();
        let reasons = series(&text, "pathprobe_failure_reason{");
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("reason=\"none\"") && reasons[0].ends_with(" 1"));
        let failures = series(&text, "pathprobe_failures_total{");
        assert_eq!(failures.len(), 2, "one counter per reason seen: {failures:?}");
    }

    #[test]
    fn each_family_of_a_name_lookup_is_counted_by_outcome_without_target_labels() {
        use crate::probe::{DnsLookup, FamilyLookup};
        let (e, t) = exporter_with_results();
        let mut r = result(Reason::None);
        let family = |family, outcome| FamilyLookup {
            family,
            outcome,
            took: std::time::Duration::from_millis(1),
        };
        r.trace.dns = Some(DnsLookup {
            families: [
                family(Family::V4, FamilyOutcome::Answered),
                family(Family::V6, FamilyOutcome::Silent),
            ],
        });
        e.observe(&t[0], &r);
        e.observe(&t[1], &r);
        let text = e.render();
        let lookups = series(&text, "pathprobe_dns_lookups_total{");
        assert_eq!(
            lookups.len(),
            10,
            "every family and outcome from the start: {lookups:?}"
        );
        let value = |family: &str, outcome: &str| {
            let line = lookups
                .iter()
                .find(|l| l.contains(&format!("family=\"{family}\"")) && l.contains(&format!("outcome=\"{outcome}\"")))
                .unwrap();
            assert!(!line.contains("target="), "{line}");
            line.rsplit(' ').next().unwrap().to_string()
        };
        assert_eq!(value("ipv4", "answered"), "2");
        assert_eq!(value("ipv6", "silent"), "2");
        assert_eq!(value("ipv6", "answered"), "0");
    }

    #[test]
    fn all_address_series_follow_the_addresses_of_the_latest_probe() {
        use crate::probe::AddressResult;
        let (e, mut t) = exporter_with_results();
        t[0].all_addresses = Some(8);
        let at = |ip: &str, reason| AddressResult {
            address: format!("{ip}:1").parse().unwrap(),
            reason,
            total: std::time::Duration::from_millis(1),
            error: None,
        };
        let mut r = result(Reason::ConnectRefused);
        r.addresses = vec![at("10.0.0.1", Reason::None), at("10.0.0.2", Reason::ConnectRefused)];
        e.observe(&t[0], &r);
        r.addresses = vec![at("10.0.0.1", Reason::ConnectTimeout)];
        e.observe(&t[0], &r);
        let text = e.render();
        assert!(!text.contains("10.0.0.2"), "a gone address loses its series: {text}");
        let reasons = series(&text, "pathprobe_address_failure_reason{");
        assert_eq!(reasons.len(), 1, "one reason per address: {reasons:?}");
        assert!(reasons[0].contains("reason=\"connect_timeout\""));
        e.forget(&TargetLabels::of(&t[0]));
        assert!(!e.render().contains("address=\""), "forgotten whole");
    }

    #[test]
    fn a_forgotten_target_leaves_no_series_behind() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::ConnectRefused));
        e.observe(&t[1], &result(Reason::None));
        e.forget(&TargetLabels::of(&t[0]));
        let text = e.render();
        assert!(!text.contains("127.0.0.1:1\""), "{text}");
        assert!(text.contains("127.0.0.1:2\""));
    }

    #[test]
    fn source_labels_are_on_every_series() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::None));
        let text = e.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.contains("source_node=\"n1\"") && line.contains("network=\"host\""),
                "{line}"
            );
        }
    }

    #[test]
    fn openmetrics_is_served_when_asked_and_parses_strictly() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::ConnectRefused));
        let (ct, om) = e.render_for(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
        assert!(ct.starts_with("application/openmetrics-text"));
        let om_summary = parse(&om, Format::OpenMetrics).unwrap();
        let (ct, text) = e.render_for(Some("text/plain"));
        assert!(ct.starts_with("text/plain"));
        let text_summary = parse(&text, Format::PrometheusText).unwrap();
        assert_eq!(
            om_summary.samples, text_summary.samples,
            "the same samples in both formats"
        );
        assert!(om.contains("# TYPE pathprobe_probes counter\n") && om.contains("pathprobe_probes_total{"));
    }

    #[test]
    fn discovery_metrics_appear_only_once_enabled_and_absent_targets_carry_their_why() {
        let (e, _) = exporter_with_results();
        assert!(!e.render().contains("pathprobe_discovery_"));
        e.set_discovery(true);
        e.extra.refreshes.with_label_values(&["success"]).inc();
        e.extra.discovered.set(3.0);
        let text = e.render();
        let refreshed = series(&text, "pathprobe_discovery_refreshes_total{result=\"success\"");
        assert!(refreshed.len() == 1 && refreshed[0].ends_with(" 1"), "{text}");
        assert!(text.contains("pathprobe_discovered_targets{"), "{text}");
        e.set_discovery(false);
        assert!(!e.render().contains("pathprobe_discovery_"));
        let absent = AbsentTarget {
            name: "sched".into(),
            job: "kube-scheduler".into(),
            cluster: "prod".into(),
            instance: String::new(),
            kind: None,
            why: "bound to 127.0.0.1 on Talos".into(),
        };
        e.add_absent(&absent);
        assert!(e.render().contains("why=\"bound to 127.0.0.1 on Talos\""));
        e.forget(&TargetLabels::of_absent(&absent));
        assert!(!e.render().contains("pathprobe_target_absent_info{"));
    }
}
