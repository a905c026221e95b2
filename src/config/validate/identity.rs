//! A target's identity: the labels it is exported under (`name`, `job`, `cluster`, `kind`), the
//! documented-absent targets (`expected: false`), and no two targets under the same labels.

use std::collections::HashMap;

use super::destination::{self, Dest};
use super::{Checked, Ctx, Diags, PathStyle};
use crate::config::raw::RawTarget;
use crate::target::{AbsentTarget, Kind};

/// The kinds, as messages list them.
const KINDS: &str = "tcp, tls, http, scrape, dns";

/// A target's labels as checked; an empty string (or no kind) where the field was refused.
pub(super) struct Labels {
    pub name: String,
    pub job: String,
    pub cluster: String,
    pub kind: Option<Kind>,
    /// `expected: false` makes it a documented-absent target.
    pub expected: bool,
}

/// `name`, `job` (default: the name), `cluster` (default: the agent's), `kind`, and that a target
/// goes to one place (`url` or `address`, not both).
pub(super) fn check(rt: &RawTarget, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Labels {
    let name = match rt.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        Some(_) => {
            d.error(ps.at("name"), "empty; every target needs a name (its `target` label)");
            String::new()
        }
        None => {
            d.error(ps.at("name"), "missing; every target needs a name (its `target` label)");
            String::new()
        }
    };
    let job = match rt.job.as_deref().map(str::trim) {
        None => name.clone(),
        Some("") => {
            d.error(ps.at("job"), "empty; set a job, or remove it to default to the name");
            String::new()
        }
        Some(j) => j.to_string(),
    };
    let cluster = match rt.cluster.as_deref().map(str::trim) {
        None => ctx.cluster.to_string(),
        Some("") => {
            d.error(
                ps.at("cluster"),
                "empty; set a cluster, or remove it to default to agent.source_cluster",
            );
            String::new()
        }
        Some(c) => c.to_string(),
    };
    let expected = rt.expected.unwrap_or(true);
    let kind = kind(rt, expected, ps, d);
    if rt.url.is_some() && rt.address.is_some() {
        d.error(
            ps.at("address"),
            "given together with url; a target goes to one place, keep url (http, scrape) or address (tcp, tls, dns)",
        );
    }
    Labels {
        name,
        job,
        cluster,
        kind,
        expected,
    }
}

/// `kind`: required, except on a documented-absent target.
fn kind(rt: &RawTarget, expected: bool, ps: &PathStyle, d: &mut Diags) -> Option<Kind> {
    match rt.kind.as_deref() {
        None => {
            if expected {
                d.error(
                    ps.at("kind"),
                    format!("missing; set it to one of {KINDS} (or expected: false for a documented-absent target)"),
                );
            }
            None
        }
        Some(k) => match Kind::parse(k.trim()) {
            Some(k) => Some(k),
            None => {
                d.error(ps.at("kind"), format!("`{k}` is not a probe kind; use one of {KINDS}"));
                None
            }
        },
    }
}

/// A documented-absent target (`expected: false`): it must say why; its url or address only
/// gives its `target_instance` (one per address of a range), its probe settings are
/// documentation.
pub(super) fn absent(rt: &RawTarget, labels: Labels, ps: &PathStyle, d: &mut Diags, errors_before: usize) -> Checked {
    match rt.why.as_deref().map(str::trim) {
        Some(w) if !w.is_empty() => {}
        _ => d.error(
            ps.at("why"),
            "missing; a target with expected: false must say why it is absent (it is shown with the target and its alert)",
        ),
    }
    let dests = if let Some(u) = rt.url.as_deref() {
        destination::from_url(u, ps, d)
    } else if let Some(a) = rt.address.as_deref() {
        if labels.kind == Some(Kind::Dns) {
            destination::from_name(a, ps, d)
        } else {
            destination::from_address(a, ps, d)
        }
    } else {
        Some(Vec::new())
    };
    if d.errors.len() > errors_before {
        return Checked::Failed;
    }
    let instances: Vec<String> = match dests {
        Some(ds) if !ds.is_empty() => ds.iter().map(Dest::instance).collect(),
        _ => vec![String::new()],
    };
    let why = rt.why.as_deref().unwrap_or_default().trim().to_string();
    Checked::Absent(
        instances
            .into_iter()
            .map(|instance| AbsentTarget {
                name: labels.name.clone(),
                job: labels.job.clone(),
                cluster: labels.cluster.clone(),
                instance,
                kind: labels.kind,
                why: why.clone(),
            })
            .collect(),
    )
}

/// Refuses the `i`th entry if one of its (name, instance) pairs was an earlier entry's: the two
/// would be one series. `seen` maps each pair to the entry that first had it.
pub(super) fn refuse_duplicates(
    checked: &Checked,
    i: usize,
    seen: &mut HashMap<(String, String), usize>,
    ps: &PathStyle,
    d: &mut Diags,
) {
    let keys: Vec<(String, String)> = match checked {
        Checked::Probe(ts) => ts.iter().map(|t| (t.name.clone(), t.instance.clone())).collect(),
        Checked::Absent(ts) => ts.iter().map(|t| (t.name.clone(), t.instance.clone())).collect(),
        Checked::Failed => Vec::new(),
    };
    let mut duplicate = false;
    for key in keys {
        if let Some(&first) = seen.get(&key) {
            if first != i && !duplicate {
                let instance = if key.1.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("`{}`", key.1)
                };
                d.error(
                    ps.at(""),
                    format!(
                        "duplicates targets[{first}] (name `{}`, instance {instance}); give one of them another name, or remove one",
                        key.0
                    ),
                );
                duplicate = true;
            }
        } else {
            seen.insert(key, i);
        }
    }
}
