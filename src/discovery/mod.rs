//! Discovery from Prometheus: one `scrape` probe per active target of the selected jobs, at
//! Prometheus's own `scrapeUrl`, labelled with its `job` and `instance` so the series join with
//! `up` exactly. Credentials and TLS never come from Prometheus: `job_settings` supplies them.
//!
//! The [`Runner`] asks on every `refresh` and reports to the agent's control loop, which merges
//! the discovered targets under the static ones ([`merge`]: static wins) and keeps the last good
//! list whenever Prometheus cannot be asked.

pub mod config;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{check_target, Checked, Diags, PathStyle};
use crate::diagnose::{self, Verdict};
use crate::probe::ProbeContext;
use crate::promapi::{ActiveTarget, Prometheus};
use crate::target::{Inventory, Target};
pub use config::Discovery;

/// How long one question to Prometheus may take at most.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The targets for Prometheus's active targets, and a message per one that could not be built.
pub fn build(disc: &Discovery, active: &[ActiveTarget]) -> (Vec<Target>, Vec<String>) {
    let ctx = config::ctx(disc);
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for a in active {
        let (job, instance) = (a.job(), a.instance());
        if job.is_empty() || a.scrape_url.is_empty() || !disc.wants(job) {
            continue;
        }
        if !seen.insert((job.to_string(), instance.to_string())) {
            continue;
        }
        let settings = disc.settings_for(job);
        let raw = config::stand_in(
            settings.map(|s| &s.fields).unwrap_or(&Default::default()),
            job,
            &a.scrape_url,
        );
        let ps = PathStyle::Discovery(settings.map(|s| s.index));
        let mut d = Diags::default();
        match check_target(&raw, &ps, &ctx, &mut d) {
            Checked::Probe(mut ts) if d.errors.is_empty() && ts.len() == 1 => {
                let mut t = ts.remove(0);
                t.instance = instance.to_string();
                targets.push(t);
            }
            _ => problems.push(format!(
                "discovered target {job}/{instance} not probed: {}",
                d.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )),
        }
    }
    (targets, problems)
}

/// The inventory to run: the static one plus the discovered targets that no static target or
/// documented absence already covers (same job and instance; an absence without an instance
/// covers its whole job). Each duplicate is logged once per `reported` set.
pub fn merge(static_inv: &Inventory, discovered: &[Target], reported: &mut HashSet<(String, String)>) -> Inventory {
    let mut out = static_inv.clone();
    if discovered.is_empty() {
        return out;
    }
    let covered = |t: &Target| {
        static_inv
            .targets
            .iter()
            .any(|s| s.job == t.job && diagnose::same_instance(&s.instance, &t.instance))
            || static_inv
                .absent
                .iter()
                .any(|a| a.job == t.job && (a.instance.is_empty() || diagnose::same_instance(&a.instance, &t.instance)))
    };
    for t in discovered {
        if covered(t) {
            if reported.insert((t.job.clone(), t.instance.clone())) {
                tracing::info!(
                    job = %t.job, instance = %t.instance,
                    "discovered target is also in the static inventory; the static entry is used"
                );
            }
            continue;
        }
        out.targets.push(t.clone());
    }
    out
}

/// What one refresh brought.
#[derive(Debug)]
pub enum Refresh {
    /// The discovered targets (possibly none).
    Targets(Vec<Target>),
    /// Prometheus could not be asked: keep the last good list.
    Failed(String),
    /// The fleet's verdicts on targets (for the status page), when Prometheus answered.
    Verdicts(Vec<Verdict>),
}

/// The refresh loop; stops when dropped.
pub struct Runner {
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl Runner {
    /// Starts asking Prometheus now and on every `refresh`.
    pub fn spawn(disc: Arc<Discovery>, ctx: ProbeContext, tx: mpsc::Sender<Refresh>) -> Result<Runner, String> {
        let timeout = disc.refresh.min(ASK_TIMEOUT);
        let prom = Prometheus::new(&disc.url, timeout, ctx).map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            let mut logged: HashSet<String> = HashSet::new();
            let mut tick = tokio::time::interval(disc.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let refresh = match prom.active_targets().await {
                    Ok(active) => {
                        let (targets, problems) = build(&disc, &active);
                        for p in problems {
                            if logged.insert(p.clone()) {
                                tracing::warn!("{p}");
                            }
                        }
                        Refresh::Targets(targets)
                    }
                    Err(e) => Refresh::Failed(e.to_string()),
                };
                let answered = matches!(refresh, Refresh::Targets(_));
                if tx.send(refresh).await.is_err() {
                    return;
                }
                if answered {
                    // The fleet's view, for the status page's verdict words.
                    if let Ok(g) = diagnose::gather(&prom).await {
                        let verdicts = g.targets.iter().map(diagnose::judge).collect();
                        if tx.send(Refresh::Verdicts(verdicts)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Runner {
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn inventory(yaml: &str, dir: &std::path::Path) -> Inventory {
        crate::config::parse(yaml, dir).unwrap_or_else(|e| panic!("{e}"))
    }

    fn active(job: &str, instance: &str, url: &str) -> ActiveTarget {
        ActiveTarget {
            labels: BTreeMap::from([("job".into(), job.into()), ("instance".into(), instance.into())]),
            scrape_pool: job.into(),
            scrape_url: url.into(),
            health: "up".into(),
            last_error: String::new(),
        }
    }

    const BASE: &str = "agent: { source_cluster: lab }\n";

    #[test]
    fn discovered_targets_carry_prometheus_s_job_and_instance_and_the_job_s_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let inv = inventory(
            &format!(
                "{BASE}discovery:\n  prometheus:\n    url: http://prom:9090\n    jobs: [\"app-.*\"]\n    job_settings:\n      - job: app-secure\n        basic_auth: {{ username: u, password_file: pw }}\n        tls: {{ insecure_skip_verify: true }}\n"
            ),
            dir.path(),
        );
        let disc = inv.discovery.as_ref().unwrap();
        assert!(
            inv.files.iter().any(|f| f.ends_with("pw")),
            "the password file is watched"
        );
        let (targets, problems) = build(
            disc,
            &[
                active("app-secure", "10.0.0.1:8443", "https://10.0.0.1:8443/metrics"),
                active("app-plain", "app:80", "http://app/metrics"),
                active("other", "10.0.0.3:9100", "http://10.0.0.3:9100/metrics"),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(targets.len(), 2, "only the selected jobs");
        let s = &targets[0];
        assert_eq!(
            (s.name.as_str(), s.job.as_str(), s.instance.as_str()),
            ("app-secure", "app-secure", "10.0.0.1:8443")
        );
        assert_eq!(s.kind(), crate::target::Kind::Scrape);
        assert!(s.tls().unwrap().insecure_skip_verify);
        assert!(matches!(
            s.http().unwrap().auth,
            Some(crate::target::Auth::Basic { .. })
        ));
        let p = &targets[1];
        assert_eq!(p.instance, "app:80", "Prometheus's instance, as it shows it");
        assert!(p.http().unwrap().auth.is_none());
    }

    #[test]
    fn a_static_target_or_absence_wins_over_a_discovered_one() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(
            &format!(
                "{BASE}targets:\n  - {{ name: node, job: node, kind: scrape, url: \"http://10.0.0.1:9100/metrics\" }}\n  - {{ name: sched, job: kube-scheduler, expected: false, why: Talos }}\ndiscovery: {{ prometheus: {{ url: \"http://prom:9090\" }} }}\n"
            ),
            dir.path(),
        );
        let (found, _) = build(
            inv.discovery.as_ref().unwrap(),
            &[
                active("node", "10.0.0.1:9100", "http://10.0.0.1:9100/metrics"),
                active("node", "10.0.0.2:9100", "http://10.0.0.2:9100/metrics"),
                active("kube-scheduler", "10.0.0.1:10259", "https://10.0.0.1:10259/metrics"),
            ],
        );
        let mut reported = HashSet::new();
        let merged = merge(&inv, &found, &mut reported);
        let ids: Vec<(&str, &str)> = merged
            .targets
            .iter()
            .map(|t| (t.name.as_str(), t.instance.as_str()))
            .collect();
        assert_eq!(ids, vec![("node", "10.0.0.1:9100"), ("node", "10.0.0.2:9100")]);
        assert_eq!(
            reported.len(),
            2,
            "the duplicate and the absent job's target, once each"
        );
        merge(&inv, &found, &mut reported);
        assert_eq!(reported.len(), 2);
    }

    #[test]
    fn job_settings_errors_name_their_field_path() {
        let dir = tempfile::tempdir().unwrap();
        let errors = crate::config::parse(
            &format!(
                "{BASE}discovery:\n  prometheus:\n    url: ftp://prom\n    jobs: [\"(\"]\n    refresh: soon\n    job_settings:\n      - job: a\n        url: http://x/\n      - job: b\n        basic_auth: {{ username: u, password_file: missing }}\n"
            ),
            dir.path(),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "discovery.prometheus.url",
                "discovery.prometheus.jobs[0]",
                "discovery.prometheus.refresh",
                "discovery.prometheus.job_settings[0].url",
                "discovery.prometheus.job_settings[1].basic_auth.password_file",
            ],
            "{errors}"
        );
    }
}
