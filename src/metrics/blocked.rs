//! `pathprobe_target_expect_blocked`: 1 for each must-be-blocked target (`expect: { blocked:
//! true }`), with the target's labels, so that rules about unreachable targets can leave those
//! targets out whatever their latest reason (blocked as expected, reached, or a name that did
//! not resolve). Only such targets have the series.

use std::fmt::Write as _;
use std::sync::RwLock;

use super::Source;
use crate::target::Target;

/// The must-be-blocked targets of the running inventory.
#[derive(Default)]
pub struct Blocked(RwLock<Vec<[String; 5]>>);

impl Blocked {
    /// Takes the running inventory's targets.
    pub fn set(&self, targets: &[Target]) {
        let mut v: Vec<[String; 5]> = targets
            .iter()
            .filter(|t| t.blocked)
            .map(|t| {
                [
                    t.name.clone(),
                    t.job.clone(),
                    t.instance.clone(),
                    t.cluster.clone(),
                    t.kind.as_str().to_string(),
                ]
            })
            .collect();
        v.sort();
        v.dedup();
        *self.0.write().expect("not poisoned") = v;
    }

    /// Writes the family (text format; the same lines are valid OpenMetrics); nothing when no
    /// target must be blocked.
    pub fn write(&self, out: &mut String, source: &Source) {
        let v = self.0.read().expect("not poisoned");
        if v.is_empty() {
            return;
        }
        let name = "pathprobe_target_expect_blocked";
        let _ = writeln!(
            out,
            "# HELP {name} 1 for a must-be-blocked target: success is the connection failing.\n# TYPE {name} gauge"
        );
        for [target, job, instance, cluster, kind] in v.iter() {
            let _ = writeln!(
                out,
                "{name}{{target=\"{}\",target_job=\"{}\",target_instance=\"{}\",target_cluster=\"{}\",kind=\"{kind}\",source_node=\"{}\",source_cluster=\"{}\",network=\"{}\"}} 1",
                esc(target),
                esc(job),
                esc(instance),
                esc(cluster),
                esc(&source.node),
                esc(&source.cluster),
                esc(&source.network)
            );
        }
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
