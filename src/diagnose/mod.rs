//! `pathprobe diagnose`: "why is TargetDown firing?" in one command. Asks Prometheus for `up`,
//! each scrape's last error (targets API) and every agent's pathprobe series, joins them by
//! `job` + `instance` = `target_job` + `target_instance`, and judges each target
//! ([`verdict::judge`]).
//!
//! Collect the evidence first ([`gather`]), judge second, print last ([`render`]): each stage
//! is usable alone (the agent's status page uses the first two).

pub mod render;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::promapi::{ApiError, Prometheus};
pub use verdict::{judge, Evidence, Kind, Path, Verdict};

/// How far back "since when" looks.
pub const LOOK_BACK: &str = "1h";

/// A target asked for on the command line: `JOB` or `JOB/INSTANCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The Prometheus `job` (an agent's `target_job`).
    pub job: String,
    /// The `instance`; `None`: every instance of the job.
    pub instance: Option<String>,
}

impl Selector {
    /// Parses `JOB` or `JOB/INSTANCE`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let (job, instance) = match s.split_once('/') {
            Some((j, i)) => (j.trim(), Some(i.trim().to_string())),
            None => (s.trim(), None),
        };
        if job.is_empty() || instance.as_deref() == Some("") {
            return Err(format!(
                "`{s}` is not JOB or JOB/INSTANCE, e.g. node-exporter/10.0.0.40:9100"
            ));
        }
        Ok(Selector {
            job: job.to_string(),
            instance,
        })
    }

    fn matches(&self, e: &Evidence) -> bool {
        e.job == self.job && self.instance.as_deref().is_none_or(|i| same_instance(i, &e.instance))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instance {
            Some(i) => write!(f, "{}/{i}", self.job),
            None => f.write_str(&self.job),
        }
    }
}

/// Why `diagnose` could not answer (exit 2).
#[derive(Debug, Error)]
pub enum DiagnoseError {
    /// Prometheus could not be asked.
    #[error(transparent)]
    Prometheus(#[from] ApiError),
    /// A selector names nothing Prometheus or any agent knows.
    #[error("{}", unknown_text(.unknown, .known_jobs))]
    Unknown {
        /// The selectors that matched nothing, as typed.
        unknown: Vec<String>,
        /// The jobs that are known, to suggest the right spelling.
        known_jobs: Vec<String>,
        /// The verdicts of the selectors that were found.
        found: Vec<Verdict>,
    },
}

fn unknown_text(unknown: &[String], known: &[String]) -> String {
    let mut shown: Vec<&str> = known.iter().map(String::as_str).take(20).collect();
    if known.len() > 20 {
        shown.push("…");
    }
    format!(
        "unknown: {}; Prometheus scrapes no such target and no agent probes one (jobs known: {})",
        unknown.join(", "),
        if shown.is_empty() {
            "none".to_string()
        } else {
            shown.join(", ")
        }
    )
}

/// The answer: one verdict per target, and what is worth saying about the evidence as a whole.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per target asked about; with no selector, every target that is down, failing somewhere or documented absent.
    pub verdicts: Vec<Verdict>,
    /// e.g. that no agent reports at all.
    pub warnings: Vec<String>,
}

/// Everything Prometheus knows, joined per target.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// One per target Prometheus scrapes or an agent probes.
    pub targets: Vec<Evidence>,
    /// How many agents (node × network) report any pathprobe series.
    pub agents: usize,
}

/// Asks Prometheus and judges the selected targets (none selected: every target that is down,
/// failing on some node, or documented absent).
pub async fn diagnose(prom: &Prometheus, selectors: &[Selector]) -> Result<Report, DiagnoseError> {
    let gathered = gather(prom).await?;
    let mut warnings = Vec::new();
    if gathered.agents == 0 {
        warnings.push(format!(
            "no pathprobe agent reports to Prometheus at {} (no pathprobe_failure_reason series): every target is no_evidence; check that Prometheus scrapes the agents (the PodMonitor in deploy/base)",
            prom.url()
        ));
    }
    let mut verdicts = Vec::new();
    let mut unknown = Vec::new();
    if selectors.is_empty() {
        verdicts.extend(gathered.targets.iter().filter(|e| of_interest(e)).map(judge));
    } else {
        let mut taken = BTreeSet::new();
        for s in selectors {
            let mut any = false;
            for (i, e) in gathered.targets.iter().enumerate() {
                if s.matches(e) {
                    any = true;
                    if taken.insert(i) {
                        verdicts.push(judge(e));
                    }
                }
            }
            if !any {
                unknown.push(s.to_string());
            }
        }
    }
    verdicts.sort_by(|a, b| (&a.job, &a.instance).cmp(&(&b.job, &b.instance)));
    // The mesh's word on the failing nodes: a node that also fails its peers is the node to look
    // at. Agents without a mesh have no such series; that changes nothing.
    if verdicts.iter().any(|v| !v.nodes.failing.is_empty()) {
        let peers = prom
            .query("pathprobe_peer_failure_reason{payload=\"small\", reason!=\"none\"} == 1")
            .await
            .unwrap_or_default();
        for v in &mut verdicts {
            add_peer_evidence(v, &peers);
        }
    }
    if !unknown.is_empty() {
        let known: BTreeSet<String> = gathered.targets.iter().map(|e| e.job.clone()).collect();
        return Err(DiagnoseError::Unknown {
            unknown,
            known_jobs: known.into_iter().collect(),
            found: verdicts,
        });
    }
    Ok(Report { verdicts, warnings })
}

/// Appends to a verdict's summary which of its failing nodes also fail mesh probes to peers.
pub fn add_peer_evidence(v: &mut Verdict, peer_failures: &[crate::promapi::Sample]) {
    let mut said = Vec::new();
    for node in &v.nodes.failing {
        let mut peers: Vec<String> = peer_failures
            .iter()
            .filter(|s| s.label("source_node") == node)
            .map(|s| {
                format!(
                    "{} ({}, {})",
                    s.label("peer_node"),
                    s.label("network"),
                    s.label("reason")
                )
            })
            .collect();
        peers.sort();
        peers.dedup();
        if !peers.is_empty() {
            said.push(format!("{node} also fails its mesh probes to {}", peers.join(", ")));
        }
    }
    if !said.is_empty() {
        v.summary = format!(
            "{}; {}: a node that fails targets and peers is the node to look at",
            v.summary.trim_end_matches('.'),
            said.join("; ")
        );
    }
}

/// Down in Prometheus, failing on some node, or documented absent.
fn of_interest(e: &Evidence) -> bool {
    e.up == Some(0.0) || e.absent.is_some() || e.paths.iter().any(|p| p.reason != "none")
}

/// Asks Prometheus for everything at once and joins it per target.
pub async fn gather(prom: &Prometheus) -> Result<Gathered, DiagnoseError> {
    let up_since = format!("max by (job, instance) (max_over_time(timestamp(up == 1)[{LOOK_BACK}:]))");
    let path_since = format!(
        "max by (target, target_job, target_instance, kind, source_node, network) (max_over_time(timestamp(pathprobe_success == 1)[{LOOK_BACK}:]))"
    );
    let (up, targets, reasons, absent, why, up_ok, path_ok) = tokio::join!(
        prom.query("up"),
        prom.active_targets(),
        prom.query("pathprobe_failure_reason == 1"),
        prom.query("pathprobe_target_expected == 0"),
        prom.query("pathprobe_target_absent_info"),
        prom.query(&up_since),
        prom.query(&path_since),
    );
    let (up, targets, reasons, absent) = (up?, targets?, reasons?, absent?);
    // Older agents lack the why, and "since" is a nicety: neither may fail the whole answer.
    let why = why.unwrap_or_default();
    let (up_ok, path_ok) = (up_ok.unwrap_or_default(), path_ok.unwrap_or_default());

    let mut by_key: BTreeMap<(String, String), Evidence> = BTreeMap::new();
    let entry = |m: &mut BTreeMap<(String, String), Evidence>, job: &str, instance: &str| -> (String, String) {
        let key = (job.to_string(), norm(instance));
        m.entry(key.clone()).or_insert_with(|| Evidence {
            job: job.to_string(),
            instance: instance.to_string(),
            ..Evidence::default()
        });
        key
    };
    // Prometheus's side.
    for t in &targets {
        let key = entry(&mut by_key, t.job(), t.instance());
        let e = by_key.get_mut(&key).expect("just inserted");
        e.scrape_url = Some(t.scrape_url.clone()).filter(|u| !u.is_empty());
        e.prometheus_error = Some(t.last_error.clone()).filter(|u| !u.is_empty());
        e.up = match t.health.as_str() {
            "up" => Some(1.0),
            "down" => Some(0.0),
            _ => None,
        };
    }
    for s in &up {
        let key = entry(&mut by_key, s.label("job"), s.label("instance"));
        by_key.get_mut(&key).expect("just inserted").up = Some(s.value);
    }
    for s in &up_ok {
        if let Some(e) = by_key.get_mut(&(s.label("job").to_string(), norm(s.label("instance")))) {
            e.up_last_success = Some(at(s.value));
        }
    }
    let prom_keys: BTreeSet<(String, String)> = by_key.keys().cloned().collect();

    // The agents' side, keyed by their own job and instance first.
    let last_ok: BTreeMap<(String, String, String, String, String), SystemTime> = path_ok
        .iter()
        .map(|s| {
            (
                (
                    s.label("target_job").to_string(),
                    norm(s.label("target_instance")),
                    s.label("kind").to_string(),
                    s.label("source_node").to_string(),
                    s.label("network").to_string(),
                ),
                at(s.value),
            )
        })
        .collect();
    let mut agents = BTreeSet::new();
    let mut paths: BTreeMap<(String, String), (String, String, Vec<Path>)> = BTreeMap::new();
    for s in &reasons {
        let node = s.label("source_node").to_string();
        let network = s.label("network").to_string();
        agents.insert((node.clone(), network.clone()));
        let (job, instance) = (s.label("target_job"), s.label("target_instance"));
        let key = (job.to_string(), norm(instance));
        let last_success = last_ok
            .get(&(
                key.0.clone(),
                key.1.clone(),
                s.label("kind").to_string(),
                node.clone(),
                network.clone(),
            ))
            .copied();
        paths
            .entry(key)
            .or_insert_with(|| (instance.to_string(), s.label("target").to_string(), Vec::new()))
            .2
            .push(Path {
                node,
                network,
                kind: s.label("kind").to_string(),
                reason: s.label("reason").to_string(),
                last_success,
            });
    }
    // Join: exact job + instance; else, for a Prometheus target nobody probes under its job,
    // the one agent target at the same address (a static inventory that names the job otherwise).
    let mut by_instance: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for key in paths.keys() {
        if !prom_keys.contains(key) {
            by_instance.entry(key.1.clone()).or_default().push(key.clone());
        }
    }
    for key in &prom_keys {
        if paths.contains_key(key) {
            continue;
        }
        if let Some([only]) = by_instance.get(&key.1).map(Vec::as_slice) {
            if let Some(p) = paths.remove(only) {
                paths.insert(key.clone(), p);
            }
        }
    }
    for (key, (instance, target, ps)) in paths {
        let k = entry(&mut by_key, &key.0, &instance);
        let e = by_key.get_mut(&k).expect("just inserted");
        e.target = Some(target);
        e.paths = ps;
    }

    // Documented absences: an instance names one target; none, every target of the job.
    let whys: BTreeMap<(String, String), String> = why
        .iter()
        .map(|s| {
            (
                (s.label("target_job").to_string(), norm(s.label("target_instance"))),
                s.label("why").to_string(),
            )
        })
        .collect();
    for s in &absent {
        let (job, instance) = (s.label("target_job"), s.label("target_instance"));
        let why = whys
            .get(&(job.to_string(), norm(instance)))
            .cloned()
            .unwrap_or_else(|| "(the agents do not export the why; see the inventory)".into());
        if instance.is_empty() {
            let mut any = false;
            for e in by_key.values_mut().filter(|e| e.job == job) {
                e.absent = Some(why.clone());
                any = true;
            }
            if any {
                continue;
            }
        }
        let k = entry(&mut by_key, job, instance);
        let e = by_key.get_mut(&k).expect("just inserted");
        e.absent = Some(why);
        e.target.get_or_insert_with(|| s.label("target").to_string());
    }
    Ok(Gathered {
        targets: by_key.into_values().collect(),
        agents: agents.len(),
    })
}

/// `instance` for matching: Prometheus 3 leaves the scheme's default port out.
pub fn instance_key(instance: &str) -> String {
    norm(instance)
}

fn norm(instance: &str) -> String {
    instance
        .strip_suffix(":80")
        .or_else(|| instance.strip_suffix(":443"))
        .unwrap_or(instance)
        .to_string()
}

/// The same target address, with or without the default port.
pub fn same_instance(a: &str, b: &str) -> bool {
    norm(a) == norm(b)
}

fn at(unix: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_node_that_also_fails_its_peers_is_named_in_the_summary() {
        use crate::promapi::Sample;
        let sample = |src: &str, peer: &str, reason: &str| Sample {
            labels: [
                ("source_node", src),
                ("peer_node", peer),
                ("network", "host"),
                ("reason", reason),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            value: 1.0,
        };
        let mut v = crate::diagnose::verdict::judge(&Evidence::default());
        v.summary = "reachable from 1 of 2 nodes; n2 fails with connect_timeout".into();
        v.nodes.failing = vec!["n2".into()];
        let peers = [
            sample("n2", "n3", "connect_timeout"),
            sample("n1", "n3", "connect_refused"),
        ];
        add_peer_evidence(&mut v, &peers);
        assert_eq!(
            v.summary,
            "reachable from 1 of 2 nodes; n2 fails with connect_timeout; n2 also fails its mesh probes to n3 (host, connect_timeout): a node that fails targets and peers is the node to look at"
        );
        let before = v.summary.clone();
        add_peer_evidence(&mut v, &[sample("n1", "n3", "connect_refused")]);
        assert_eq!(v.summary, before, "only failing nodes' peers are named");
    }

    #[test]
    fn selectors_are_job_or_job_slash_instance() {
        assert_eq!(
            Selector::parse("node/10.0.0.1:9100").unwrap(),
            Selector {
                job: "node".into(),
                instance: Some("10.0.0.1:9100".into())
            }
        );
        assert_eq!(Selector::parse("node").unwrap().instance, None);
        assert!(Selector::parse("/x").is_err());
        assert!(Selector::parse("job/").is_err());
    }

    #[test]
    fn instances_match_with_or_without_the_default_port() {
        assert!(same_instance("h:80", "h"));
        assert!(same_instance("h:443", "h"));
        assert!(!same_instance("h:8080", "h"));
    }
}
