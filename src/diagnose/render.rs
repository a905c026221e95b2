//! `diagnose`'s output: one JSON object per line for tools, or a short block per target that a
//! person reads at a glance.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::verdict::Verdict;
use crate::report::rfc3339;

/// The contract's JSON object for one verdict.
pub fn json(v: &Verdict) -> Value {
    json!({
        "job": v.job,
        "instance": v.instance,
        "verdict": v.verdict.as_str(),
        "up": v.up,
        "nodes": {
            "total": v.nodes.total,
            "failing": v.nodes.failing,
            "reasons": v.nodes.reasons,
        },
        "prometheus_error": v.prometheus_error,
        "summary": v.summary,
        "why": v.why,
        "since": v.since.map(rfc3339),
        "next": v.next,
        "runbook": v.verdict.runbook(),
    })
}

/// The block for one verdict:
///
/// ```text
/// app-b 192.0.2.20:9101 — NODE PATH BROKEN
///   reachable from 1 of 2 nodes; n2 fails with connect_timeout: a node-local path …
///   since  2025-01-02T10:00:00Z (4m ago)
///   next   kubectl -n pathprobe exec … -- pathprobe check …
///   runbook docs/runbooks/PathprobeNodePathBroken.md
/// ```
pub fn human(v: &Verdict, now: SystemTime) -> String {
    let mut out = String::new();
    let instance = if v.instance.is_empty() {
        "(no instance)"
    } else {
        &v.instance
    };
    let _ = writeln!(out, "{} {instance} — {}", v.job, v.verdict.words().to_uppercase());
    let _ = writeln!(out, "  {}", v.summary);
    if let Some(since) = v.since {
        let ago = now.duration_since(since).map(|d| d.as_secs()).unwrap_or(0);
        let _ = writeln!(out, "  since   {} ({} ago, its last success)", rfc3339(since), age(ago));
    }
    if let Some(next) = &v.next {
        let _ = writeln!(out, "  next    {next}");
    }
    if let Some(rb) = v.verdict.runbook() {
        let _ = writeln!(out, "  runbook docs/runbooks/{rb}.md");
    }
    out
}

fn age(s: u64) -> String {
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::verdict::{judge, Evidence, Path};

    #[test]
    fn json_has_the_contract_s_fields_and_human_says_the_same() {
        let v = judge(&Evidence {
            job: "app-b".into(),
            instance: "192.0.2.20:9101".into(),
            up: Some(1.0),
            paths: vec![
                Path {
                    node: "n1".into(),
                    network: "host".into(),
                    kind: "scrape".into(),
                    reason: "none".into(),
                    last_success: None,
                },
                Path {
                    node: "n2".into(),
                    network: "host".into(),
                    kind: "scrape".into(),
                    reason: "connect_timeout".into(),
                    last_success: None,
                },
            ],
            ..Evidence::default()
        });
        let j = json(&v);
        assert_eq!(j["verdict"], "node_path_broken");
        assert_eq!(j["up"], 1.0);
        assert_eq!(j["nodes"]["total"], 2);
        assert_eq!(j["nodes"]["failing"], json!(["n2"]));
        assert_eq!(j["nodes"]["reasons"], json!({"connect_timeout": 1}));
        assert_eq!(j["prometheus_error"], Value::Null);
        let h = human(&v, SystemTime::now());
        assert!(h.starts_with("app-b 192.0.2.20:9101 — NODE PATH BROKEN\n"), "{h}");
        assert!(h.contains(j["summary"].as_str().unwrap()), "{h}");
    }
}
