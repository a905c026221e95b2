//! The verdict: one target's evidence (Prometheus's `up` and last error, every node's latest
//! probe reason, the inventory's documented absence) in, one word and a sentence out. Pure, so
//! every case of the runbook's decision tree is a row of a table test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

use crate::reason::Reason;

/// The contract's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Prometheus scrapes it and every node reaches it.
    Healthy,
    /// Every node fails; the reasons say how.
    TargetDown,
    /// Some nodes fail, others reach it: the network between them, not the target.
    NodePathBroken,
    /// Prometheus fails while every node reaches and scrapes it: look at the scrape config.
    ScrapeConfig,
    /// The target refuses the credentials (401/403/407) from every node.
    AuthFailing,
    /// Documented absent in the inventory.
    ExpectedAbsent,
    /// A must-be-blocked target was reached.
    UnexpectedlyReachable,
    /// No agent probes it.
    NoEvidence,
}

impl Kind {
    /// The `verdict` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::TargetDown => "target_down",
            Kind::NodePathBroken => "node_path_broken",
            Kind::ScrapeConfig => "scrape_config",
            Kind::AuthFailing => "auth_failing",
            Kind::ExpectedAbsent => "expected_absent",
            Kind::UnexpectedlyReachable => "unexpectedly_reachable",
            Kind::NoEvidence => "no_evidence",
        }
    }

    /// The verdict as people read it in a heading.
    pub fn words(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::TargetDown => "target down",
            Kind::NodePathBroken => "node path broken",
            Kind::ScrapeConfig => "scrape config",
            Kind::AuthFailing => "credentials refused",
            Kind::ExpectedAbsent => "documented absent",
            Kind::UnexpectedlyReachable => "unexpectedly reachable",
            Kind::NoEvidence => "no evidence",
        }
    }

    /// The runbook that goes on from this verdict.
    pub fn runbook(self) -> Option<&'static str> {
        Some(match self {
            Kind::TargetDown => "PathprobeTargetUnreachable",
            Kind::NodePathBroken => "PathprobeNodePathBroken",
            Kind::ScrapeConfig => "PathprobeScrapeFailingTargetReachable",
            Kind::AuthFailing => "PathprobeTargetAuthFailing",
            Kind::ExpectedAbsent => "PathprobeTargetExpectedAbsent",
            Kind::UnexpectedlyReachable => "PathprobeUnexpectedlyReachable",
            Kind::Healthy | Kind::NoEvidence => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One agent's latest probe of the target: a series of `pathprobe_failure_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The `source_node` that probed.
    pub node: String,
    /// `host` or `pod`.
    pub network: String,
    /// The probe kind (`scrape`, `tcp`, …).
    pub kind: String,
    /// The reason label; `none` on success.
    pub reason: String,
    /// When this path last succeeded (within the look-back), if it did.
    pub last_success: Option<SystemTime>,
}

impl Path {
    fn failing(&self) -> bool {
        self.reason != "none"
    }
}

/// Everything known of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Prometheus's `job` (the agents' `target_job`).
    pub job: String,
    /// Prometheus's `instance` (the agents' `target_instance`).
    pub instance: String,
    /// Prometheus's `up`; `None` when Prometheus does not scrape it.
    pub up: Option<f64>,
    /// The scrape's last error (targets API), when there is one.
    pub prometheus_error: Option<String>,
    /// Where Prometheus scrapes it.
    pub scrape_url: Option<String>,
    /// When Prometheus last scraped it successfully (within the look-back).
    pub up_last_success: Option<SystemTime>,
    /// `Some(why)` when the inventory documents it as absent.
    pub absent: Option<String>,
    /// The pathprobe `target` name, for the next command.
    pub target: Option<String>,
    /// Every agent's latest probe of it.
    pub paths: Vec<Path>,
}

/// How many nodes probe it and which fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodes {
    /// Nodes with at least one path to it.
    pub total: usize,
    /// Nodes with at least one failing path, sorted.
    pub failing: Vec<String>,
    /// Failing paths by reason.
    pub reasons: BTreeMap<String, usize>,
}

/// The answer for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The target's `job`.
    pub job: String,
    /// The target's `instance`.
    pub instance: String,
    /// The one word.
    pub verdict: Kind,
    /// Prometheus's `up`; `None` when Prometheus does not scrape it.
    pub up: Option<f64>,
    /// How many nodes probe it and which fail.
    pub nodes: Nodes,
    /// The scrape's last error, quoted for `scrape_config`.
    pub prometheus_error: Option<String>,
    /// What is wrong, from which nodes, in one or two sentences.
    pub summary: String,
    /// `why` of a documented-absent target.
    pub why: Option<String>,
    /// The last time it worked, before the failure it is in now (within the look-back).
    pub since: Option<SystemTime>,
    /// The next command to run, if any.
    pub next: Option<String>,
}

/// Judges one target.
pub fn judge(e: &Evidence) -> Verdict {
    let nodes = nodes_of(&e.paths);
    let (kind, summary) = decide(e, &nodes);
    let since = match kind {
        Kind::Healthy | Kind::ExpectedAbsent | Kind::NoEvidence => None,
        Kind::ScrapeConfig => e.up_last_success,
        _ => e
            .paths
            .iter()
            .filter(|p| p.failing())
            .filter_map(|p| p.last_success)
            .min(),
    };
    Verdict {
        job: e.job.clone(),
        instance: e.instance.clone(),
        verdict: kind,
        up: e.up,
        prometheus_error: e.prometheus_error.clone(),
        why: e.absent.clone(),
        next: next_command(kind, e, &nodes),
        nodes,
        summary,
        since,
    }
}

fn nodes_of(paths: &[Path]) -> Nodes {
    let all: BTreeSet<&str> = paths.iter().map(|p| p.node.as_str()).collect();
    let failing: BTreeSet<&str> = paths.iter().filter(|p| p.failing()).map(|p| p.node.as_str()).collect();
    let mut reasons = BTreeMap::new();
    for p in paths.iter().filter(|p| p.failing()) {
        *reasons.entry(p.reason.clone()).or_insert(0) += 1;
    }
    Nodes {
        total: all.len(),
        failing: failing.into_iter().map(String::from).collect(),
        reasons,
    }
}

/// A path is a (node, network): it fails when any of its probes of the target fails.
fn paths_failing(paths: &[Path]) -> (usize, usize) {
    let mut by_path: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for p in paths {
        *by_path.entry((&p.node, &p.network)).or_insert(false) |= p.failing();
    }
    (by_path.values().filter(|f| **f).count(), by_path.len())
}

fn decide(e: &Evidence, nodes: &Nodes) -> (Kind, String) {
    if let Some(why) = &e.absent {
        return (
            Kind::ExpectedAbsent,
            format!(
                "documented absent in the inventory: \"{why}\"; nothing is down, TargetDown for it should be inhibited"
            ),
        );
    }
    let prom = prometheus_part(e);
    let reached: BTreeSet<&str> = e
        .paths
        .iter()
        .filter(|p| p.reason == "unexpectedly_reachable")
        .map(|p| p.node.as_str())
        .collect();
    if !reached.is_empty() {
        return (
            Kind::UnexpectedlyReachable,
            format!(
                "must be blocked, but {} reached it: the policy that should block it is missing or not applied there",
                list(&reached.into_iter().collect::<Vec<_>>())
            ),
        );
    }
    if e.paths.is_empty() {
        return (
            Kind::NoEvidence,
            format!("no pathprobe agent probes it{prom}; add its job to discovery.prometheus.jobs or the inventory"),
        );
    }
    let (failing, total) = paths_failing(&e.paths);
    let reasons = reasons_text(&nodes.reasons);
    if failing == 0 {
        if e.up == Some(0.0) {
            let scraped = e.paths.iter().any(|p| p.kind == "scrape");
            let reach = if scraped {
                format!("every node ({}) reaches it and scrapes it", nodes.total)
            } else {
                let kinds: BTreeSet<&str> = e.paths.iter().map(|p| p.kind.as_str()).collect();
                format!(
                    "every node ({}) reaches it (by {} probes, which do not prove the HTTP scrape)",
                    nodes.total,
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            let what = if e.prometheus_error.as_deref().is_some_and(is_auth_error) {
                "Prometheus's credentials are refused where the agents' are accepted: fix the scrape job's credentials (its Secret)"
            } else {
                "the difference is Prometheus's scrape config (scheme, path, TLS, credentials, timeout) or its own network path"
            };
            return (
                Kind::ScrapeConfig,
                format!("Prometheus fails{prom} while {reach}; {what}"),
            );
        }
        let scraped = match e.up {
            Some(_) => "Prometheus scrapes it and ",
            None => "",
        };
        return (
            Kind::Healthy,
            format!("{scraped}every node ({}) reaches it", nodes.total),
        );
    }
    if failing == total {
        if nodes.reasons.keys().all(|r| r == "http_auth") {
            let prom_too = match e.up {
                Some(0.0) => "; Prometheus is refused too",
                Some(_) => "; Prometheus's own credentials still work",
                None => "",
            };
            return (
                Kind::AuthFailing,
                format!(
                    "every node ({}) is refused with http_auth (401/403/407): the target is up and rejects the agents' credentials{prom_too}",
                    nodes.total
                ),
            );
        }
        return (
            Kind::TargetDown,
            format!(
                "unreachable from every node ({}): {reasons}{}{prom}",
                nodes.total,
                meaning_of(&nodes.reasons)
            ),
        );
    }
    let reached = nodes.total - nodes.failing.len();
    let networks: BTreeSet<&str> = e
        .paths
        .iter()
        .filter(|p| p.failing())
        .map(|p| p.network.as_str())
        .collect();
    let on = if reached == 0 {
        format!(
            " on the {} network only",
            networks.into_iter().collect::<Vec<_>>().join(" and ")
        )
    } else {
        String::new()
    };
    (
        Kind::NodePathBroken,
        format!(
            "reachable from {reached} of {} nodes; {} {} with {reasons}{on}: a node-local path (CNI routing, node firewall, NetworkPolicy for that source){prom}",
            nodes.total,
            list(&nodes.failing.iter().map(String::as_str).collect::<Vec<_>>()),
            if nodes.failing.len() == 1 { "fails" } else { "fail" },
        ),
    )
}

/// `; Prometheus: up 0 ("…")` or nothing.
fn prometheus_part(e: &Evidence) -> String {
    match (e.up, &e.prometheus_error) {
        (Some(up), Some(err)) => format!(" (Prometheus: up {up}, \"{err}\")"),
        (Some(0.0), None) => " (Prometheus: up 0)".into(),
        _ => String::new(),
    }
}

/// Prometheus's error for a status the server refused the credentials with.
fn is_auth_error(err: &str) -> bool {
    ["401", "403", "407", "Unauthorized", "Forbidden"]
        .iter()
        .any(|w| err.contains(w))
}

fn reasons_text(reasons: &BTreeMap<String, usize>) -> String {
    reasons
        .iter()
        .map(|(r, n)| if *n == 1 { r.clone() } else { format!("{r} ×{n}") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The meaning of the reason when there is one, to say how it fails.
fn meaning_of(reasons: &BTreeMap<String, usize>) -> String {
    if reasons.len() != 1 {
        return String::new();
    }
    let r = reasons.keys().next().expect("one");
    match Reason::ALL.iter().find(|x| x.as_str() == r) {
        Some(reason) => format!(" — {}", reason.meaning()),
        None => String::new(),
    }
}

fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What to probe by hand: Prometheus's scrape URL as a scrape, or the instance's TCP port.
fn probe_arg(e: &Evidence) -> String {
    match &e.scrape_url {
        Some(u) if !u.is_empty() => format!("'scrape+{u}'"),
        _ => match &e.target {
            Some(t) => format!("--config /etc/pathprobe/inventory.yaml {t}"),
            None => format!("tcp://{}", e.instance),
        },
    }
}

fn next_command(kind: Kind, e: &Evidence, nodes: &Nodes) -> Option<String> {
    let arg = probe_arg(e);
    let on_node = |node: &str| {
        format!(
            "kubectl -n pathprobe exec $(kubectl -n pathprobe get pods -o name --field-selector spec.nodeName={node} | head -1) -- pathprobe check {arg}"
        )
    };
    Some(match kind {
        Kind::Healthy => return None,
        Kind::ExpectedAbsent => "nothing to fix; if TargetDown paged, add the inhibit rule from deploy/alertmanager/".into(),
        Kind::NoEvidence => format!("kubectl -n pathprobe exec ds/pathprobe-host -- pathprobe check {arg}"),
        Kind::NodePathBroken => on_node(nodes.failing.first().map(String::as_str).unwrap_or("<node>")),
        Kind::TargetDown if nodes.reasons.contains_key("http_server_error") => format!(
            "{}; a 5xx means something answers: for a scrape through the API-server proxy, `kubectl get --raw <its path>` names the hop it cannot make",
            on_node(nodes.failing.first().map(String::as_str).unwrap_or("<node>"))
        ),
        Kind::TargetDown => on_node(nodes.failing.first().map(String::as_str).unwrap_or("<node>")),
        Kind::AuthFailing => format!(
            "check the credentials the inventory names (basic_auth.password_file / bearer_token_file), then: pathprobe check --basic-auth-user <user> --basic-auth-password-file <file> {arg}"
        ),
        Kind::ScrapeConfig => format!(
            "compare the scrape config of job {} (kubectl get servicemonitors,podmonitors,scrapeconfigs -A | grep {}) with the agents' settings for it",
            e.job, e.job
        ),
        Kind::UnexpectedlyReachable => "kubectl get networkpolicies,ciliumnetworkpolicies -A".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(node: &str, network: &str, reason: &str) -> Path {
        Path {
            node: node.into(),
            network: network.into(),
            kind: "scrape".into(),
            reason: reason.into(),
            last_success: None,
        }
    }

    fn ev(up: Option<f64>, err: Option<&str>, paths: Vec<Path>) -> Evidence {
        Evidence {
            job: "app".into(),
            instance: "192.0.2.20:9101".into(),
            up,
            prometheus_error: err.map(String::from),
            scrape_url: Some("http://192.0.2.20:9101/metrics".into()),
            paths,
            ..Evidence::default()
        }
    }

    #[test]
    fn every_case_of_the_decision_tree_gets_its_verdict_and_nodes() {
        let absent = Evidence {
            absent: Some("bound to 127.0.0.1 on Talos".into()),
            ..ev(Some(0.0), Some("connection refused"), vec![])
        };
        let tcp_only = {
            let mut p = path("n1", "host", "none");
            p.kind = "tcp".into();
            ev(Some(0.0), Some("context deadline exceeded"), vec![p])
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Evidence, Kind, &[&str])> = vec![
            ("every node and Prometheus succeed", ev(Some(1.0), None, vec![path("n1", "host", "none"), path("n2", "host", "none")]), Kind::Healthy, &[]),
            ("probed but not scraped, every node reaches it", ev(None, None, vec![path("n1", "host", "none")]), Kind::Healthy, &[]),
            ("stopped: refused everywhere", ev(Some(0.0), Some("connection refused"), vec![path("n1", "host", "connect_refused"), path("n2", "host", "connect_refused")]), Kind::TargetDown, &["n1", "n2"]),
            ("503 through the proxy from every node", ev(Some(0.0), Some("server returned HTTP status 503 Service Unavailable"), vec![path("n1", "host", "http_server_error"), path("n2", "host", "http_server_error")]), Kind::TargetDown, &["n1", "n2"]),
            ("one node's path cut", ev(Some(1.0), None, vec![path("n1", "host", "none"), path("n2", "host", "connect_timeout")]), Kind::NodePathBroken, &["n2"]),
            ("pod network broken on every node, host fine", ev(Some(0.0), None, vec![path("n1", "host", "none"), path("n1", "pod", "connect_timeout"), path("n2", "host", "none"), path("n2", "pod", "connect_timeout")]), Kind::NodePathBroken, &["n1", "n2"]),
            ("Prometheus has the wrong password, agents the right one", ev(Some(0.0), Some("server returned HTTP status 401 Unauthorized"), vec![path("n1", "host", "none"), path("n2", "host", "none")]), Kind::ScrapeConfig, &[]),
            ("Prometheus fails, only tcp evidence", tcp_only, Kind::ScrapeConfig, &[]),
            ("every credential wrong", ev(Some(0.0), Some("server returned HTTP status 401 Unauthorized"), vec![path("n1", "host", "http_auth"), path("n2", "host", "http_auth")]), Kind::AuthFailing, &["n1", "n2"]),
            ("auth on one node only is that node's problem", ev(Some(1.0), None, vec![path("n1", "host", "none"), path("n2", "host", "http_auth")]), Kind::NodePathBroken, &["n2"]),
            ("mixed reasons on every node are down, not auth", ev(Some(0.0), None, vec![path("n1", "host", "http_auth"), path("n2", "host", "connect_timeout")]), Kind::TargetDown, &["n1", "n2"]),
            ("documented absent wins over up 0", absent, Kind::ExpectedAbsent, &[]),
            ("a must-be-blocked target reached", ev(None, None, vec![path("n1", "host", "none"), path("n2", "host", "unexpectedly_reachable")]), Kind::UnexpectedlyReachable, &["n2"]),
            ("Prometheus fails and no agent probes it", ev(Some(0.0), Some("connection refused"), vec![]), Kind::NoEvidence, &[]),
        ];
        for (name, e, want, failing) in cases {
            let v = judge(&e);
            assert_eq!(v.verdict, want, "{name}: {}", v.summary);
            assert_eq!(v.nodes.failing, failing.to_vec(), "{name}");
            assert!(!v.summary.is_empty(), "{name}");
            assert_eq!(v.next.is_none(), want == Kind::Healthy, "{name}: {:?}", v.next);
        }
    }

    #[test]
    fn the_summary_names_the_failing_node_and_its_reason() {
        let v = judge(&ev(
            Some(1.0),
            None,
            vec![path("n1", "host", "none"), path("n2", "host", "connect_timeout")],
        ));
        assert!(
            v.summary
                .starts_with("reachable from 1 of 2 nodes; n2 fails with connect_timeout: a node-local path"),
            "{}",
            v.summary
        );
        assert_eq!(v.nodes.reasons, BTreeMap::from([("connect_timeout".to_string(), 1)]));
        assert!(v.next.unwrap().contains("spec.nodeName=n2"));
    }

    #[test]
    fn a_wrong_scrape_password_is_called_prometheus_s_credentials() {
        let v = judge(&ev(
            Some(0.0),
            Some("server returned HTTP status 401 Unauthorized"),
            vec![path("n1", "host", "none")],
        ));
        assert!(
            v.summary.contains("Prometheus's credentials are refused"),
            "{}",
            v.summary
        );
        assert!(
            v.summary.contains("\"server returned HTTP status 401 Unauthorized\""),
            "{}",
            v.summary
        );
    }

    #[test]
    fn since_is_the_last_success_of_the_failing_paths() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let t1 = t0 + std::time::Duration::from_secs(60);
        let mut a = path("n1", "host", "connect_refused");
        a.last_success = Some(t1);
        let mut b = path("n2", "host", "connect_refused");
        b.last_success = Some(t0);
        assert_eq!(judge(&ev(Some(0.0), None, vec![a, b])).since, Some(t0));
    }

    #[test]
    fn the_absent_target_quotes_its_why() {
        let v = judge(&Evidence {
            absent: Some("Talos does not expose it".into()),
            ..ev(None, None, vec![])
        });
        assert_eq!(v.why.as_deref(), Some("Talos does not expose it"));
        assert!(v.summary.contains("\"Talos does not expose it\""));
    }
}
