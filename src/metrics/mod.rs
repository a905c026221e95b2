//! The exporter: probe results in, Prometheus series out. Knows nothing of sockets.
//!
//! Each target's state is plain numbers in one compact [`Series`] with its label set rendered
//! once, when the target is declared; `/metrics` is written straight from that state
//! ([`write`]), a bounded chunk at a time, so a 10k-target exposition never sits whole in memory
//! and no per-series objects exist. A target must be declared ([`Exporter::add_target`]) before
//! its results count: a result for a target the exporter does not know (it left the inventory
//! meanwhile) is dropped, so no series can outlive its target.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

mod openmetrics;
mod peers;
mod write;

pub use peers::PeerSeries;
pub use write::{Exposition, Format};

use crate::probe::{Family, FamilyOutcome, Phase, ProbeResult};
use crate::reason::Reason;
use crate::target::{AbsentTarget, Identity, Target, TargetKey, TargetLabels};

/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Who is probing: the source labels on every series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `source_node`: the node this agent runs on.
    pub node: String,
    /// `source_cluster`: the cluster this agent runs in.
    pub cluster: String,
    /// `network`: `host` or `pod`.
    pub network: String,
}

/// `pathprobe_probe_duration_seconds`'s bucket bounds.
const PROBE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `pathprobe_scheduler_lag_seconds`'s bucket bounds.
const LAG_BUCKETS: [f64; 9] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// One target's series, as numbers. `labels` is the target's whole label set, sorted by name as
/// Prometheus writes it, escaped; a series with one more label (`phase`, `reason`, `result`) has
/// it inserted at `split` (right after `network`), a histogram bucket's `le` goes last.
#[derive(Debug)]
struct Series {
    labels: Box<str>,
    split: u32,
    /// Probed (has counters), as opposed to only documented-absent.
    probed: bool,
    expected: bool,
    /// A must-be-blocked target (`pathprobe_target_expect_blocked 1`).
    blocked: bool,
    /// What few targets have (a documented-absent target's `why`, all-address mode's
    /// addresses): one pointer for the others.
    rare: Option<Box<Rare>>,
    probes_success: u64,
    probes_failure: u64,
    skipped: u64,
    /// Failures by reason, in the order first seen; only reasons seen have a series.
    failures: Vec<(Reason, u64)>,
    /// The latest probe, once there was one.
    last: Option<Latest>,
    /// The latest peer certificate's expiry: kept once seen, like a gauge left at its value;
    /// NaN until then.
    cert_not_after: f64,
    /// Per-bucket (not cumulative) counts of `pathprobe_probe_duration_seconds`, then the
    /// overflow bucket.
    buckets: [u32; PROBE_BUCKETS.len() + 1],
    duration_sum: f64,
}

/// A [`Series`]' fields that only some targets use.
#[derive(Debug, Default)]
struct Rare {
    /// A documented-absent target's `why="…"`, rendered (`pathprobe_target_absent_info`).
    why: Option<Box<str>>,
    /// All-address mode: each address of the latest probe, as its rendered `address="…"`, and
    /// its reason. Replaced at every probe, so an address no longer resolved loses its series.
    addresses: Vec<(Box<str>, Reason)>,
}

/// The latest probe's gauges.
#[derive(Debug, Clone, Copy)]
struct Latest {
    success: bool,
    reason: Reason,
    /// Seconds per phase, in [`Phase::ALL`]'s order.
    phases: [f64; Phase::ALL.len()],
    http_status: u16,
    finished: f64,
}

impl Series {
    fn new(source: &Source, id: &dyn Identity) -> Series {
        let [target, job, instance, cluster, kind] = id.parts();
        let mut head = String::with_capacity(160);
        label(&mut head, "kind", kind);
        head.push(',');
        label(&mut head, "network", &source.network);
        let split = head.len() as u32;
        for (name, value) in [
            ("source_cluster", source.cluster.as_str()),
            ("source_node", source.node.as_str()),
            ("target", target),
            ("target_cluster", cluster),
            ("target_instance", instance),
            ("target_job", job),
        ] {
            head.push(',');
            label(&mut head, name, value);
        }
        Series {
            labels: head.into_boxed_str(),
            split,
            probed: false,
            expected: true,
            blocked: false,
            rare: None,
            probes_success: 0,
            probes_failure: 0,
            skipped: 0,
            failures: Vec::new(),
            last: None,
            cert_not_after: f64::NAN,
            buckets: [0; PROBE_BUCKETS.len() + 1],
            duration_sum: 0.0,
        }
    }
}

impl Series {
    /// A documented-absent target's rendered `why`.
    fn why(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.why.as_deref())
    }

    /// All-address mode's addresses of the latest probe.
    fn addresses(&self) -> &[(Box<str>, Reason)] {
        self.rare.as_ref().map_or(&[], |r| &r.addresses)
    }

    /// The certificate expiry, once a probe saw one.
    fn cert_not_after(&self) -> Option<f64> {
        (!self.cert_not_after.is_nan()).then_some(self.cert_not_after)
    }

    fn set_why(&mut self, why: Option<Box<str>>) {
        if why.is_some() || self.rare.is_some() {
            self.rare.get_or_insert_with(Box::default).why = why;
            self.drop_empty_rare();
        }
    }

    fn set_addresses(&mut self, addresses: Vec<(Box<str>, Reason)>) {
        if !addresses.is_empty() || self.rare.is_some() {
            self.rare.get_or_insert_with(Box::default).addresses = addresses;
            self.drop_empty_rare();
        }
    }

    fn drop_empty_rare(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.why.is_none() && r.addresses.is_empty())
        {
            self.rare = None;
        }
    }
}

/// Writes `name="value"` with the value escaped as both formats want.
fn label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Every target's series: a slab (stable positions, so a chunked render can resume where it
/// stopped) and an index by identity.
#[derive(Default)]
struct Table {
    index: HashMap<TargetLabels, u32>,
    slots: Vec<Option<Series>>,
    free: Vec<u32>,
}

impl Table {
    fn get_mut(&mut self, id: &dyn Identity) -> Option<&mut Series> {
        let &i = self.index.get(id)?;
        self.slots[i as usize].as_mut()
    }

    fn entry(&mut self, source: &Source, key: TargetLabels) -> &mut Series {
        let i = match self.index.get(&key as &dyn Identity) {
            Some(&i) => i,
            None => {
                let series = Series::new(source, &key);
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = Some(series);
                        i
                    }
                    None => {
                        self.slots.push(Some(series));
                        (self.slots.len() - 1) as u32
                    }
                };
                self.index.insert(key, i);
                i
            }
        };
        self.slots[i as usize].as_mut().expect("indexed slots are occupied")
    }

    fn remove(&mut self, id: &dyn Identity) {
        if let Some(i) = self.index.remove(id) {
            self.slots[i as usize] = None;
            self.free.push(i);
        }
    }
}

/// The scheduler's lag histogram.
#[derive(Default)]
struct Lag {
    buckets: [u64; LAG_BUCKETS.len() + 1],
    sum: f64,
}

/// Every metric of the contract.
pub struct Exporter {
    source: Source,
    /// `network="…",source_cluster="…",source_node="…"`: the process-level series' labels.
    source_labels: String,
    table: Mutex<Table>,
    in_flight: AtomicI64,
    lag: Mutex<Lag>,
    reloads: [AtomicU64; 2],
    last_reload_ok: AtomicBool,
    /// `pathprobe_dns_lookups_total`, by [`Family`] then [`FamilyOutcome`] (their `ALL` order).
    dns_lookups: [[AtomicU64; FamilyOutcome::ALL.len()]; Family::ALL.len()],
    /// `pathprobe_unclassified_errors_total`, by [`Phase`] (`Phase::ALL`'s order).
    unplaced: [AtomicU64; Phase::ALL.len()],
    discovery: Discovery,
    /// The node mesh's series: the mesh keeps them, this exporter writes them.
    peers: Arc<PeerSeries>,
}

/// Discovery's own series, exported only while the inventory has `discovery:`.
#[derive(Default)]
struct Discovery {
    on: AtomicBool,
    /// `pathprobe_discovery_refreshes_total`, by [`ReloadResult`] (success, failure).
    refreshes: [AtomicU64; 2],
    last_ok: AtomicBool,
    /// `pathprobe_discovered_targets`: the last good list's length.
    discovered: AtomicU64,
}

/// A reload's outcome, the `result` label of `pathprobe_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new inventory was applied.
    Success,
    /// The new inventory was refused; the old one keeps running.
    Failure,
}

impl ReloadResult {
    /// Both outcomes, so each counter is exported from zero.
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Success, ReloadResult::Failure];

    fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Failure => "failure",
        }
    }
}

impl Exporter {
    /// An exporter with no targets yet, for this agent's source labels.
    pub fn new(source: &Source) -> Exporter {
        let mut source_labels = String::new();
        label(&mut source_labels, "network", &source.network);
        source_labels.push(',');
        label(&mut source_labels, "source_cluster", &source.cluster);
        source_labels.push(',');
        label(&mut source_labels, "source_node", &source.node);
        Exporter {
            source: source.clone(),
            source_labels,
            table: Mutex::new(Table::default()),
            in_flight: AtomicI64::new(0),
            lag: Mutex::new(Lag::default()),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            last_reload_ok: AtomicBool::new(false),
            dns_lookups: Default::default(),
            unplaced: Default::default(),
            discovery: Discovery::default(),
            peers: Arc::default(),
        }
    }

    /// Room for `n` targets, so a fleet's table is not up to twice its size from doubling.
    pub fn reserve(&self, n: usize) {
        let mut t = self.table();
        t.slots.reserve_exact(n);
        t.index.reserve(n);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("not poisoned")
    }

    /// Declares a probed target: `expected 1`, and its counters at 0 so rates work from the start.
    pub fn add_target(&self, target: &Target) {
        self.declare(None, target)
    }

    /// [`Exporter::add_target`] with the target's identity already made: the exporter keeps a
    /// clone of `key` (sharing its text with the scheduler's and the status rows') rather than
    /// its own copy.
    pub fn add_target_as(&self, key: &TargetLabels, target: &Target) {
        self.declare(Some(key), target)
    }

    fn declare(&self, key: Option<&TargetLabels>, target: &Target) {
        let mut table = self.table();
        let s = match table.get_mut(TargetKey(target).as_key()) {
            Some(s) => s,
            None => {
                let key = key.cloned().unwrap_or_else(|| TargetLabels::of(target));
                table.entry(&self.source, key)
            }
        };
        s.probed = true;
        s.expected = true;
        s.blocked = target.blocked;
        s.set_why(None);
    }

    /// Declares a documented-absent target: `pathprobe_target_expected 0` and its `why`.
    pub fn add_absent(&self, target: &AbsentTarget) {
        let mut why = String::new();
        label(&mut why, "why", &target.why);
        let mut table = self.table();
        let s = table.entry(&self.source, TargetLabels::of_absent(target));
        s.expected = false;
        s.set_why(Some(why.into_boxed_str()));
    }

    /// Records one probe's outcome; dropped if the target is not (or no longer) declared.
    pub fn observe(&self, target: &Target, result: &ProbeResult) {
        let total = result.total.as_secs_f64();
        let mut phases = [0.0; Phase::ALL.len()];
        for (slot, phase) in phases.iter_mut().zip(Phase::ALL) {
            *slot = match phase {
                Phase::Total => total,
                p => result.trace.phase(p).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            };
        }
        let cert = result
            .trace
            .tls
            .as_ref()
            .and_then(|t| t.peer_cert_not_after)
            .map(|t| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0));
        let finished = result
            .finished_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let bucket = PROBE_BUCKETS
            .iter()
            .position(|&b| total <= b)
            .unwrap_or(PROBE_BUCKETS.len());
        if let Some(dns) = &result.trace.dns {
            for f in &dns.families {
                let fi = Family::ALL.iter().position(|&x| x == f.family).unwrap_or(0);
                let oi = FamilyOutcome::ALL.iter().position(|&x| x == f.outcome).unwrap_or(0);
                self.dns_lookups[fi][oi].fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(phase) = result.unplaced {
            self.unplaced(phase);
        }
        // All-address mode: one entry per address (the last result wins for a repeated one),
        // rendered before the table is locked.
        let mut addresses: Vec<(Box<str>, Reason)> = Vec::new();
        if target.all_addresses.is_some() {
            for a in &result.addresses {
                let mut l = String::new();
                label(&mut l, "address", &a.address.ip().to_string());
                match addresses.iter_mut().find(|(x, _)| **x == *l) {
                    Some(slot) => slot.1 = a.reason,
                    None => addresses.push((l.into_boxed_str(), a.reason)),
                }
            }
        }

        let mut table = self.table();
        let Some(s) = table.get_mut(TargetKey(target).as_key()) else {
            return;
        };
        let success = result.success();
        if success {
            s.probes_success += 1;
        } else {
            s.probes_failure += 1;
            match s.failures.iter_mut().find(|(r, _)| *r == result.reason) {
                Some((_, n)) => *n += 1,
                None => s.failures.push((result.reason, 1)),
            }
        }
        s.buckets[bucket] = s.buckets[bucket].saturating_add(1);
        s.duration_sum += total;
        if let Some(cert) = cert {
            s.cert_not_after = cert;
        }
        if target.all_addresses.is_some() {
            s.set_addresses(addresses);
        }
        s.last = Some(Latest {
            success,
            reason: result.reason,
            phases,
            http_status: result.trace.http_status.unwrap_or(0),
            finished,
        });
    }

    /// Counts a probe error the reason table could not place precisely, by the phase it
    /// happened in (`pathprobe_unclassified_errors_total`). [`Exporter::observe`] does this for
    /// targets; the agent calls it for the mesh's probes, whose series the mesh writes.
    pub fn unplaced(&self, phase: Phase) {
        self.unplaced[phase as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Unplaced errors counted so far in a phase.
    pub fn unplaced_count(&self, phase: Phase) -> u64 {
        self.unplaced[phase as usize].load(Ordering::Relaxed)
    }

    /// Counts a probe not started because the previous one still ran.
    pub fn skipped(&self, target: &Target) {
        if let Some(s) = self.table().get_mut(TargetKey(target).as_key()) {
            s.skipped += 1;
        }
    }

    /// Removes every series of a target that left the inventory.
    pub fn forget(&self, labels: &TargetLabels) {
        self.table().remove(labels);
    }

    /// A probe started (`pathprobe_probes_in_flight` up).
    pub fn probe_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A probe ended (`pathprobe_probes_in_flight` down).
    pub fn probe_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// How late a probe started against its schedule.
    pub fn observe_lag(&self, lag: Duration) {
        let secs = lag.as_secs_f64();
        let bucket = LAG_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(LAG_BUCKETS.len());
        let mut l = self.lag.lock().expect("not poisoned");
        l.buckets[bucket] += 1;
        l.sum += secs;
    }

    /// Counts a reload and sets `pathprobe_config_last_reload_successful`.
    pub fn reloaded(&self, result: ReloadResult) {
        self.reloads[result as usize].fetch_add(1, Ordering::Relaxed);
        self.set_last_reload_successful(result == ReloadResult::Success);
    }

    /// `pathprobe_config_last_reload_successful`, without counting a reload (the first load).
    pub fn set_last_reload_successful(&self, ok: bool) {
        self.last_reload_ok.store(ok, Ordering::Relaxed);
    }

    /// Reloads counted so far, by result.
    pub fn reloads(&self, result: ReloadResult) -> u64 {
        self.reloads[result as usize].load(Ordering::Relaxed)
    }

    /// Carries the reload, discovery and unclassified-error counts of the exporter this one replaces, and shares
    /// its mesh series (those are the agent's, not the source labels').
    pub fn carry_reloads(&mut self, from: &Exporter) {
        self.peers = from.peers.clone();
        for r in ReloadResult::ALL {
            self.reloads[r as usize].store(from.reloads(r), Ordering::Relaxed);
            let n = from.discovery.refreshes[r as usize].load(Ordering::Relaxed);
            self.discovery.refreshes[r as usize].store(n, Ordering::Relaxed);
        }
        for (mine, theirs) in self.unplaced.iter().zip(&from.unplaced) {
            mine.store(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let (d, f) = (&self.discovery, &from.discovery);
        d.last_ok.store(f.last_ok.load(Ordering::Relaxed), Ordering::Relaxed);
        d.discovered
            .store(f.discovered.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The mesh's series, for the mesh to keep up to date ([`crate::mesh::Mesh::new`]).
    pub fn peer_series(&self) -> Arc<PeerSeries> {
        self.peers.clone()
    }

    /// Exports discovery's series (an agent with `discovery:`), or stops exporting them.
    pub fn set_discovery(&self, on: bool) {
        self.discovery.on.store(on, Ordering::Relaxed);
    }

    /// Counts an ask of Prometheus's active targets: `Some(targets found)`, or `None` when it
    /// failed (the last good list keeps probing, so `pathprobe_discovered_targets` stays).
    pub fn discovery_refreshed(&self, found: Option<usize>) {
        let d = &self.discovery;
        let result = if found.is_some() {
            ReloadResult::Success
        } else {
            ReloadResult::Failure
        };
        d.refreshes[result as usize].fetch_add(1, Ordering::Relaxed);
        d.last_ok.store(found.is_some(), Ordering::Relaxed);
        if let Some(n) = found {
            d.discovered.store(n as u64, Ordering::Relaxed);
        }
    }

    /// The exposition, to be written a chunk at a time.
    pub fn exposition(self: &Arc<Self>, format: Format) -> Exposition {
        Exposition::new(self.clone(), format)
    }

    /// The exposition in the format the scraper's `Accept` header asks for.
    pub fn exposition_for(self: &Arc<Self>, accept: Option<&str>) -> Exposition {
        self.exposition(if openmetrics::wanted(accept) {
            Format::OpenMetrics
        } else {
            Format::Text
        })
    }

    /// The whole exposition as one string (tests, `check`-sized uses; the agent streams).
    pub fn render(self: &Arc<Self>, format: Format) -> String {
        let mut e = self.exposition(format);
        let mut out = Vec::new();
        while let Some(chunk) = e.next_chunk() {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).expect("the exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{parse, Format as ParseFormat};

    fn exporter_with_results() -> (Arc<Exporter>, Vec<Target>) {
        let exporter = Arc::new(Exporter::new(&Source {
            node: "n1".into(),
            cluster: "prod".into(),
            network: "host".into(),
        }));
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
            unplaced: None,
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
        let text = e.render(Format::Text);
        let reasons = series(&text, "pathprobe_failure_reason{");
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("reason=\"none\"") && reasons[0].ends_with(" 1"));
        let failures = series(&text, "pathprobe_failures_total{");
        assert_eq!(failures.len(), 2, "one counter per reason seen: {failures:?}");
    }

    #[test]
    fn target_labels_keep_their_parts_and_their_hash() {
        use std::hash::BuildHasher;
        let (_, t) = exporter_with_results();
        let owned = TargetLabels::of(&t[0]);
        assert_eq!(owned.parts(), ["tcp://127.0.0.1:1", "adhoc", "127.0.0.1:1", "", "tcp"]);
        // The same hash as the `[String; 5]` it replaces (the scheduler's phases hash it), and
        // as the borrowed view used for lookups.
        let h = std::collections::hash_map::RandomState::new();
        let old: [String; 5] = owned.parts().map(String::from);
        assert_eq!(h.hash_one(&owned), h.hash_one(&old));
        assert_eq!(h.hash_one(&owned), h.hash_one(TargetKey(&t[0]).as_key()));
    }

    #[test]
    fn a_forgotten_target_leaves_no_series_behind() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::ConnectRefused));
        e.observe(&t[1], &result(Reason::None));
        e.forget(&TargetLabels::of(&t[0]));
        let text = e.render(Format::Text);
        assert!(!text.contains("127.0.0.1:1\""), "{text}");
        assert!(text.contains("127.0.0.1:2\""));
    }

    #[test]
    fn a_result_for_an_undeclared_or_forgotten_target_adds_no_series() {
        // A probe that finishes after its target left (or before a swapped-in exporter knows it)
        // must not create series nobody will remove.
        let (e, t) = exporter_with_results();
        e.forget(&TargetLabels::of(&t[0]));
        e.observe(&t[0], &result(Reason::ConnectRefused));
        e.skipped(&t[0]);
        let stranger = crate::adhoc::parse("tcp://127.0.0.1:3", &Default::default())
            .unwrap()
            .remove(0);
        e.observe(&stranger, &result(Reason::None));
        let text = e.render(Format::Text);
        assert!(
            !text.contains("127.0.0.1:1\"") && !text.contains("127.0.0.1:3\""),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:2\""));
    }

    #[test]
    fn source_labels_are_on_every_series() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::None));
        let text = e.render(Format::Text);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.contains("source_node=\"n1\"") && line.contains("network=\"host\""),
                "{line}"
            );
        }
    }

    #[test]
    fn series_have_the_prometheus_crate_form() {
        // The form the agent has always served: labels sorted by name, the extra label in its
        // sorted place, `le` last, sum before count.
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::ConnectRefused));
        let text = e.render(Format::Text);
        let l = "source_cluster=\"prod\",source_node=\"n1\",target=\"tcp://127.0.0.1:1\",\
                 target_cluster=\"\",target_instance=\"127.0.0.1:1\",target_job=\"adhoc\"";
        for line in [
            "# HELP pathprobe_success 1 if the latest probe of the target succeeded, else 0.".to_string(),
            "# TYPE pathprobe_success gauge".to_string(),
            format!("pathprobe_success{{kind=\"tcp\",network=\"host\",{l}}} 0"),
            format!("pathprobe_duration_seconds{{kind=\"tcp\",network=\"host\",phase=\"total\",{l}}} 0.003"),
            format!("pathprobe_probes_total{{kind=\"tcp\",network=\"host\",result=\"failure\",{l}}} 1"),
            format!("pathprobe_failures_total{{kind=\"tcp\",network=\"host\",reason=\"connect_refused\",{l}}} 1"),
            format!("pathprobe_probe_duration_seconds_bucket{{kind=\"tcp\",network=\"host\",{l},le=\"0.0025\"}} 0"),
            format!("pathprobe_probe_duration_seconds_bucket{{kind=\"tcp\",network=\"host\",{l},le=\"0.005\"}} 1"),
            format!("pathprobe_probe_duration_seconds_bucket{{kind=\"tcp\",network=\"host\",{l},le=\"+Inf\"}} 1"),
            format!("pathprobe_probe_duration_seconds_sum{{kind=\"tcp\",network=\"host\",{l}}} 0.003"),
            format!("pathprobe_probe_duration_seconds_count{{kind=\"tcp\",network=\"host\",{l}}} 1"),
            "pathprobe_config_reloads_total{network=\"host\",result=\"success\",source_cluster=\"prod\",source_node=\"n1\"} 0".to_string(),
        ] {
            assert!(text.lines().any(|x| x == line), "missing {line}\n{text}");
        }
        let sum = text.find("pathprobe_probe_duration_seconds_sum{").unwrap();
        let count = text.find("pathprobe_probe_duration_seconds_count{").unwrap();
        assert!(sum < count);
    }

    #[test]
    fn label_values_are_escaped() {
        let e = Arc::new(Exporter::new(&Source {
            node: "n\"1\\\n".into(),
            cluster: "prod".into(),
            network: "host".into(),
        }));
        let (_, t) = exporter_with_results();
        e.add_target(&t[0]);
        let text = e.render(Format::Text);
        assert!(text.contains("source_node=\"n\\\"1\\\\\\n\""), "{text}");
        parse(&text, ParseFormat::PrometheusText).unwrap();
    }

    #[test]
    fn openmetrics_is_served_when_asked_and_parses_strictly() {
        let (e, t) = exporter_with_results();
        e.observe(&t[0], &result(Reason::ConnectRefused));
        let asked = e.exposition_for(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
        assert_eq!(asked.content_type(), openmetrics::CONTENT_TYPE);
        let om = e.render(Format::OpenMetrics);
        let om_summary = parse(&om, ParseFormat::OpenMetrics).unwrap();
        assert_eq!(e.exposition_for(Some("text/plain")).content_type(), TEXT_CONTENT_TYPE);
        let text = e.render(Format::Text);
        let text_summary = parse(&text, ParseFormat::PrometheusText).unwrap();
        assert_eq!(
            om_summary.samples, text_summary.samples,
            "the same samples in both formats"
        );
        assert!(om.contains("# TYPE pathprobe_probes counter\n") && om.contains("pathprobe_probes_total{"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn a_render_in_small_chunks_equals_the_whole() {
        let (e, t) = exporter_with_results();
        for i in 0..300 {
            let tgt = crate::adhoc::parse(&format!("tcp://127.0.1.{}:{}", i % 250, 1000 + i), &Default::default())
                .unwrap()
                .remove(0);
            e.add_target(&tgt);
            e.observe(&tgt, &result(Reason::None));
        }
        e.observe(&t[0], &result(Reason::None));
        for format in [Format::Text, Format::OpenMetrics] {
            let whole = e.render(format);
            let mut x = e.exposition(format).with_chunk_size(100);
            let mut parts = Vec::new();
            let mut chunks = 0;
            while let Some(c) = x.next_chunk() {
                assert!(c.len() < 100 + 8192, "a chunk stays near its size: {}", c.len());
                parts.extend_from_slice(&c);
                chunks += 1;
            }
            assert!(chunks > 100);
            assert_eq!(String::from_utf8(parts).unwrap(), whole);
        }
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
        let text = e.render(Format::Text);
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
        assert!(text.contains(
            "pathprobe_dns_lookups_total{family=\"ipv4\",network=\"host\",outcome=\"answered\",source_cluster=\"prod\",source_node=\"n1\"} 2\n"
        ));
        parse(&text, ParseFormat::PrometheusText).unwrap();
        parse(&e.render(Format::OpenMetrics), ParseFormat::OpenMetrics).unwrap();
    }

    #[test]
    fn errors_the_reason_table_could_not_place_are_counted_by_phase_without_target_labels() {
        let (e, t) = exporter_with_results();
        let mut unplaced = result(Reason::Unreachable);
        unplaced.unplaced = Some(Phase::Connect);
        e.observe(&t[0], &unplaced);
        e.observe(&t[1], &unplaced);
        e.observe(&t[0], &result(Reason::ConnectRefused));
        e.unplaced(Phase::Tls);
        let text = e.render(Format::Text);
        let counted = series(&text, "pathprobe_unclassified_errors_total{");
        assert_eq!(
            counted.len(),
            Phase::ALL.len(),
            "every phase from the start: {counted:?}"
        );
        for (phase, n) in [("connect", 2), ("tls", 1), ("resolve", 0), ("total", 0)] {
            let line = format!(
                "pathprobe_unclassified_errors_total{{network=\"host\",phase=\"{phase}\",source_cluster=\"prod\",source_node=\"n1\"}} {n}"
            );
            assert!(counted.contains(&line), "missing {line}: {counted:?}");
        }
        assert!(text.contains("# TYPE pathprobe_unclassified_errors_total counter\n"));
        parse(&text, ParseFormat::PrometheusText).unwrap();
        parse(&e.render(Format::OpenMetrics), ParseFormat::OpenMetrics).unwrap();
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
        let text = e.render(Format::Text);
        assert!(
            text.contains("pathprobe_address_success{address=\"10.0.0.1\",kind=\"tcp\",network=\"host\","),
            "{text}"
        );
        assert_eq!(series(&text, "pathprobe_address_success{").len(), 2);
        parse(&text, ParseFormat::PrometheusText).unwrap();
        r.addresses = vec![at("10.0.0.1", Reason::ConnectTimeout)];
        e.observe(&t[0], &r);
        let text = e.render(Format::Text);
        assert!(!text.contains("10.0.0.2"), "a gone address loses its series: {text}");
        let reasons = series(&text, "pathprobe_address_failure_reason{");
        assert_eq!(reasons.len(), 1, "one reason per address: {reasons:?}");
        assert!(reasons[0].contains("reason=\"connect_timeout\""));
        let success = series(&text, "pathprobe_address_success{");
        assert!(success.len() == 1 && success[0].ends_with(" 0"), "{success:?}");
        e.forget(&TargetLabels::of(&t[0]));
        let text = e.render(Format::Text);
        assert!(!text.contains("address=\""), "forgotten whole");
        assert_eq!(
            text.matches("# TYPE pathprobe_address_success ").count(),
            0,
            "a family without series is left out, header included"
        );
    }

    #[test]
    fn discovery_metrics_appear_only_once_enabled_and_absent_targets_carry_their_why() {
        let (e, _) = exporter_with_results();
        assert!(!e.render(Format::Text).contains("pathprobe_discover"));
        e.set_discovery(true);
        e.discovery_refreshed(Some(3));
        e.discovery_refreshed(None);
        let text = e.render(Format::Text);
        let value = |prefix: &str| {
            let s = series(&text, prefix);
            assert_eq!(s.len(), 1, "{prefix}: {text}");
            s[0].rsplit(' ').next().unwrap().to_string()
        };
        assert_eq!(
            value("pathprobe_discovery_refreshes_total{network=\"host\",result=\"success\""),
            "1"
        );
        assert_eq!(
            value("pathprobe_discovery_refreshes_total{network=\"host\",result=\"failure\""),
            "1"
        );
        assert_eq!(value("pathprobe_discovery_last_refresh_successful{"), "0");
        assert_eq!(
            value("pathprobe_discovered_targets{"),
            "3",
            "a failed ask keeps the last good count"
        );
        let om = e.render(Format::OpenMetrics);
        assert!(om.contains("# TYPE pathprobe_discovery_refreshes counter\n"), "{om}");
        parse(&om, ParseFormat::OpenMetrics).unwrap();
        let mut fresh = Exporter::new(&e.source);
        fresh.carry_reloads(&e);
        let fresh = Arc::new(fresh);
        fresh.set_discovery(true);
        assert!(fresh
            .render(Format::Text)
            .contains("pathprobe_discovered_targets{network=\"host\",source_cluster=\"prod\",source_node=\"n1\"} 3\n"));
        e.set_discovery(false);
        assert!(!e.render(Format::Text).contains("pathprobe_discover"));
        let absent = AbsentTarget {
            name: "sched".into(),
            job: "kube-scheduler".into(),
            cluster: "prod".into(),
            instance: String::new(),
            kind: None,
            why: "bound to \"127.0.0.1\" on Talos".into(),
        };
        e.add_absent(&absent);
        let text = e.render(Format::Text);
        assert!(
            text.contains("target_job=\"kube-scheduler\",why=\"bound to \\\"127.0.0.1\\\" on Talos\"} 1\n"),
            "{text}"
        );
        parse(&text, ParseFormat::PrometheusText).unwrap();
        e.forget(&TargetLabels::of_absent(&absent));
        assert!(!e.render(Format::Text).contains("pathprobe_target_absent_info"));
    }

    #[test]
    fn must_be_blocked_targets_are_marked() {
        let e = Arc::new(Exporter::new(&Source {
            node: "n1".into(),
            cluster: "prod".into(),
            network: "host".into(),
        }));
        let mut t = crate::adhoc::parse("tcp://127.0.0.1:9", &Default::default())
            .unwrap()
            .remove(0);
        e.add_target(&t);
        assert!(!e.render(Format::Text).contains("pathprobe_target_expect_blocked"));
        t.blocked = true;
        e.add_target(&t);
        let text = e.render(Format::Text);
        let blocked = series(&text, "pathprobe_target_expect_blocked{");
        assert!(blocked.len() == 1 && blocked[0].ends_with(" 1"), "{text}");
        assert_eq!(
            text.matches("# TYPE pathprobe_target_expect_blocked gauge\n").count(),
            1
        );
    }
}
