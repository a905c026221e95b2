//! The status page at `/`: this node's view, one row per target. Self-contained HTML (no
//! external assets), refreshes itself, and folds into cards on a phone.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use super::status::Row;
use crate::diagnose::{instance_key, Verdict};
use crate::probe::{FamilyOutcome, Phase};
use crate::report::short;
use crate::target::AbsentTarget;

/// Who is looking: the header of the page.
pub struct Header<'a> {
    pub node: &'a str,
    pub cluster: &'a str,
    pub network: &'a str,
    pub ready: bool,
    /// The latest reload, when it was rejected: when, and its errors (one per line).
    pub rejected: Option<(SystemTime, &'a str)>,
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:12px 16px;background:#1d2330;color:#fff}
header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#c9cfdb}
main{padding:12px 16px}
.summary{margin:0 0 12px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:6px 8px;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#5b6475}
.rejected{margin:0 0 12px;padding:8px 10px;background:#fdecea;border:1px solid #f4c7c3;border-radius:6px;overflow-wrap:anywhere}
.ok{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}.wait{color:#5b6475}
.reason{font-family:ui-monospace,Menlo,monospace}
.meaning,.sub{color:#5b6475;font-size:12px}
.verdict{margin-top:4px;font-size:12px;color:#1d2330}.verdict b{color:#b3261e}
.num{font-variant-numeric:tabular-nums;white-space:nowrap}
@media (max-width:700px){
 table,thead,tbody,tr,td{display:block}thead{display:none}
 tr{margin:0 0 10px;border:1px solid #e3e6eb;border-radius:6px;background:#fff}
 td{border:0;padding:4px 10px}
 td::before{content:attr(data-label);display:block;font-size:11px;text-transform:uppercase;color:#5b6475}
 .num{white-space:normal}
}";

/// Verdicts by (job, instance key): the fleet's view of each target, from Prometheus.
pub type Verdicts = HashMap<(String, String), Verdict>;

/// Renders the page.
pub fn render(
    header: &Header<'_>,
    rows: &[Row],
    absent: &[AbsentTarget],
    verdicts: &Verdicts,
    now: SystemTime,
) -> String {
    let failing = rows
        .iter()
        .filter(|r| r.last.as_ref().is_some_and(|l| !l.success()))
        .count();
    let mut out = String::with_capacity(4096 + rows.len() * 600);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=refresh content=10><title>pathprobe · {node}</title><style>{STYLE}</style></head><body>\
         <header><h1>pathprobe on {node}</h1><p>cluster {cluster} · network {network} · {state}</p></header><main>\
         <p class=summary id=summary>{total}, <span class={cls}>{failing} failing</span>, {absent_n} documented absent</p>\
         <table id=targets><thead><tr><th>State</th><th>Target</th><th>Reason</th><th>Phases</th><th>Last success</th><th>Certificate</th></tr></thead><tbody>",
        node = esc(header.node),
        cluster = esc(header.cluster),
        network = esc(header.network),
        state = if header.ready { "ready" } else { "not ready" },
        total = crate::report::plural(rows.len() as u64, "target", "targets"),
        cls = if failing > 0 { "fail" } else { "ok" },
        absent_n = absent.len(),
    );
    if let Some((at, errors)) = header.rejected {
        let mut lines = errors.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next().unwrap_or("");
        let more = lines.count();
        let more = if more > 0 {
            format!(" (and {more} more; every error is in the log)")
        } else {
            String::new()
        };
        // Placed before the table; the table's rows follow it in the same <main>.
        let marker = "<table id=targets>";
        let note = format!(
            "<p class=rejected id=reload-rejected><b>The inventory was changed and rejected {}</b>: {}{}. The previous inventory keeps probing.</p>",
            esc(&ago(now, at)),
            esc(first),
            esc(&more)
        );
        if let Some(i) = out.find(marker) {
            out.insert_str(i, &note);
        }
    }
    for row in rows {
        let verdict = verdicts.get(&(row.target.job.clone(), instance_key(&row.target.instance)));
        row_html(&mut out, row, verdict, now);
    }
    out.push_str("</tbody></table>");
    if !absent.is_empty() {
        out.push_str("<h2>Documented absent (never probed)</h2><ul id=absent>");
        for a in absent {
            let _ = write!(out, "<li><b>{}</b> — {}</li>", esc(&a.name), esc(&a.why));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<p class=sub>refreshes every 10s · <a href=\"/metrics\">/metrics</a></p></main></body></html>"
    );
    out
}

fn row_html(out: &mut String, row: &Row, verdict: Option<&Verdict>, now: SystemTime) {
    let t = &row.target;
    let (state, cls) = match &row.last {
        None => ("waiting", "wait"),
        Some(r) if r.success() => ("up", "ok"),
        Some(_) => ("FAIL", "fail"),
    };
    let _ = write!(
        out,
        "<tr class=\"row {cls}-row\"><td data-label=State class={cls}>{state}</td>\
         <td data-label=Target><b>{name}</b><div class=sub>{kind} · {instance} · job {job}</div></td>",
        name = esc(&t.name),
        kind = t.kind().as_str(),
        instance = esc(&t.instance),
        job = esc(&t.job),
    );
    match &row.last {
        None => out.push_str("<td data-label=Reason>—</td><td data-label=Phases>—</td>"),
        Some(r) => {
            let since = format!(" for {}", age(now, r.since()));
            // All-address mode: each address's reason under the target's.
            let each: Vec<String> = r
                .addresses()
                .iter()
                .map(|(ip, reason)| format!("{ip} {}", reason.as_str()))
                .collect();
            let each = if each.is_empty() {
                String::new()
            } else {
                format!("<div class=sub>{}</div>", esc(&each.join(" · ")))
            };
            // A failing target gets the fleet's verdict (diagnose's words) when Prometheus gave one.
            let fleet = match verdict {
                // A `healthy` verdict beside a failing row is older than this node's failure.
                Some(v) if !r.success() && v.verdict != crate::diagnose::Kind::Healthy => format!(
                    "<div class=verdict data-verdict={}><b>{}</b> — {}</div>",
                    v.verdict.as_str(),
                    esc(v.verdict.words()),
                    esc(&v.summary)
                ),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "<td data-label=Reason><span class=reason>{}</span>{}<div class=meaning>{}</div>{each}{fleet}</td>",
                r.reason.as_str(),
                esc(&since),
                esc(&crate::report::advice_for(
                    t,
                    r.reason,
                    r.error().unwrap_or(""),
                    crate::report::Hints::Inventory
                ))
            );
            let mut phases: Vec<String> = Phase::ALL
                .iter()
                .filter(|p| **p != Phase::Total)
                .filter_map(|p| r.phase(*p).map(|d| format!("{} {}", p.as_str(), short(d))))
                .collect();
            phases.push(format!("total {}", short(r.phase(Phase::Total).unwrap_or_default())));
            let families: Vec<String> = r
                .dns()
                .map(|(family, outcome, took)| match outcome {
                    FamilyOutcome::Answered => format!("{} {}", family.record(), short(took)),
                    o => format!("{} {} {}", family.record(), o.as_str(), short(took)),
                })
                .collect();
            if !families.is_empty() {
                phases.push(format!("dns {}", families.join(", ")));
            }
            let _ = write!(out, "<td data-label=Phases class=num>{}</td>", esc(&phases.join(" · ")));
        }
    }
    let last_ok = row
        .last
        .as_ref()
        .and_then(|r| r.last_success())
        .map(|s| ago(now, s))
        .unwrap_or_else(|| "never".into());
    let _ = write!(out, "<td data-label=\"Last success\" class=num>{}</td>", esc(&last_ok));
    let cert = row
        .last
        .as_ref()
        .and_then(|r| r.cert_not_after())
        .map(|na| match na.duration_since(now) {
            Ok(left) => format!("{} days left", left.as_secs() / 86_400),
            Err(e) => format!("EXPIRED {} days ago", e.duration().as_secs() / 86_400),
        })
        .unwrap_or_else(|| "—".into());
    let _ = write!(out, "<td data-label=Certificate class=num>{}</td></tr>", esc(&cert));
}

fn ago(now: SystemTime, then: SystemTime) -> String {
    format!("{} ago", age(now, then))
}

/// How long since `then`, in the largest unit that reads well: `45s`, `12m`, `5h`, `3d`.
fn age(now: SystemTime, then: SystemTime) -> String {
    let d = now.duration_since(then).unwrap_or(Duration::ZERO);
    let s = d.as_secs();
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 172_800 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
