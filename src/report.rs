//! How a probe result reads: the contract's JSON line, and a table plus verdict for people.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use crate::probe::{FamilyOutcome, Phase, ProbeResult};
use crate::reason::Reason;
use crate::target::{AbsentTarget, Target};

/// The `check --json` object for one probe.
pub fn json(target: &Target, result: &ProbeResult) -> Value {
    let mut phases = Map::new();
    for (phase, d) in &result.trace.phases {
        phases.insert(phase.as_str().to_string(), json!(d.as_secs_f64()));
    }
    // As the contract says: only once a handshake completed (the certificate of a failed one
    // is in the error and the verdict).
    let tls = result.trace.tls.as_ref().filter(|t| !t.version.is_empty()).map(|t| {
        json!({
            "version": t.version,
            "cipher": t.cipher,
            "peer_cert_not_after": t.peer_cert_not_after.map(rfc3339),
            "peer_cert_subject": t.peer_cert_subject,
        })
    });
    let dns = result.trace.dns.map(|lookup| {
        let families: Map<String, Value> = lookup
            .families
            .iter()
            .map(|f| {
                let v = json!({"outcome": f.outcome.as_str(), "seconds": f.took.as_secs_f64()});
                (f.family.as_str().to_string(), v)
            })
            .collect();
        Value::Object(families)
    });
    json!({
        "target": target.name,
        "instance": target.instance,
        "expected": true,
        "kind": result.kind.as_str(),
        "success": result.success(),
        "reason": result.reason.as_str(),
        "duration_seconds": result.total.as_secs_f64(),
        "phases": phases,
        "address": result.trace.address.map(|a| a.to_string()),
        "http_status": result.trace.http_status,
        "tls": tls,
        "samples": result.trace.samples,
        "resolved": result.trace.resolved.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        "dns": dns,
        "addresses": result.addresses.iter().map(|a| json!({
            "address": a.address.to_string(),
            "success": a.success(),
            "reason": a.reason.as_str(),
            "duration_seconds": a.total.as_secs_f64(),
            "error": a.error,
        })).collect::<Vec<_>>(),
        "error": result.error,
    })
}

/// The `check --json` object for a documented-absent target: listed, never probed.
pub fn absent_json(a: &AbsentTarget) -> Value {
    json!({
        "target": a.name,
        "instance": a.instance,
        "kind": a.kind.map(|k| k.as_str()),
        "expected": false,
        "why": a.why,
        "success": null,
        "reason": null,
    })
}

/// The people's line for a documented-absent target.
pub fn absent_line(a: &AbsentTarget) -> String {
    format!("--   {} (documented absent, not probed): {}", a.name, a.why)
}

/// RFC 3339 in UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A duration the way people read one: `412µs`, `3.1ms`, `1.20s`.
pub fn short(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Whose words a hint uses: the inventory's fields (the agent's log and page, the demo), or
/// `check`'s flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hints {
    /// The inventory's field names (`tls.ca_file`, `tls.server_name`).
    Inventory,
    /// `check`'s flags (`--ca-file`, `--server-name`).
    Flags,
}

/// What a failure usually means and what to do about it, for this target: the reason's
/// meaning, made specific where the target says more (a CA file already given, no credentials
/// sent, plain text where TLS was asked for), in the inventory's or the flags' words.
pub fn advice(target: &Target, result: &ProbeResult, hints: Hints) -> String {
    advice_for(target, result.reason, result.error.as_deref().unwrap_or(""), hints)
}

/// [`advice`] from a result's reason and error text (`detail`, empty for none): what the status
/// page keeps of a result.
pub fn advice_for(target: &Target, reason: Reason, detail: &str, hints: Hints) -> String {
    let say = |inventory: &str, flags: &str| {
        if hints == Hints::Flags {
            flags.to_string()
        } else {
            inventory.to_string()
        }
    };
    match reason {
        Reason::TlsUntrusted if target.tls().is_some_and(|t| t.ca_file) => format!(
            "the certificate does not verify against {} — the server presents another CA's certificate (or another self-signed one), or the file holds the wrong CA",
            say("the CA in tls.ca_file", "the CA given with --ca-file")
        ),
        Reason::TlsUntrusted => format!(
            "the chain does not verify against the system's trusted roots — self-signed or an unknown CA ({})",
            say(
                "set tls.ca_file to its CA, or to the certificate itself",
                "pass --ca-file with its CA or the certificate itself, or --insecure"
            )
        ),
        Reason::TlsHostname => format!(
            "fix the URL, or set {} to a name the certificate holds",
            say("tls.server_name", "--server-name")
        ),
        Reason::TlsHandshake if detail.contains("not TLS:") => {
            let https = target.http().is_some_and(|h| h.url.scheme() == "https");
            if https {
                "it speaks plain text there, not TLS — use http://, or the port that serves TLS".to_string()
            } else {
                "it speaks another protocol on that port, not TLS — check the port, or use kind tcp".to_string()
            }
        }
        Reason::HttpAuth if target.http().is_some_and(|h| h.auth.is_none()) => format!(
            "the target wants credentials and none were sent — {}",
            say(
                "set basic_auth (username, password_file) or bearer_token_file",
                "pass --basic-auth-user with --basic-auth-password-file, or --bearer-token-file"
            )
        ),
        Reason::HttpAuth => {
            let file = match target.http().and_then(|h| h.auth.as_ref()) {
                Some(crate::target::Auth::Bearer { .. }) => say("the token in bearer_token_file", "the token in --bearer-token-file"),
                _ => say("the password in basic_auth.password_file", "the password in --basic-auth-password-file"),
            };
            format!("the target refused the credentials sent — check {file} and the user's permissions")
        }
        Reason::BodyTooLarge if hints == Hints::Flags => {
            "the body is over the cap; if the target is right to be this large, raise body_limit in the inventory".to_string()
        }
        other => other.meaning().to_string(),
    }
}

/// One line that says what happened and what it usually means.
pub fn verdict(target: &Target, result: &ProbeResult, hints: Hints) -> String {
    let host = &target.instance;
    let addr = addr_or(result, host);
    let t = humantime::format_duration(target.timeout);
    let status = result.trace.http_status.unwrap_or(0);
    let detail = result.error.as_deref().unwrap_or("");
    let headline = match result.reason {
        Reason::None if target.blocked => return format!("blocked as expected: no connection to {host}"),
        Reason::None => return success_line(result),
        Reason::UnexpectedlyReachable => format!("connected to {addr}, which must be blocked"),
        Reason::DnsNxdomain | Reason::DnsError => format!("lookup of {host} failed"),
        Reason::DnsTimeout => format!("lookup of {host} timed out after {t}"),
        Reason::ConnectRefused => format!("connection to {addr} refused"),
        Reason::ConnectTimeout => format!("connection to {addr} timed out after {t}"),
        Reason::Unreachable => format!("{addr} unreachable"),
        Reason::TlsHandshake if detail.contains("not TLS:") => format!("{addr} did not answer in TLS"),
        Reason::TlsHandshake => format!("TLS handshake with {addr} failed"),
        Reason::TlsUntrusted => format!("certificate of {addr} not trusted"),
        Reason::TlsExpired => match cert_not_after(result) {
            Some(when) if when < SystemTime::now() => format!("certificate of {addr} expired on {}", rfc3339(when)),
            _ => format!("certificate of {addr} not yet valid"),
        },
        Reason::TlsHostname => {
            let asked = target
                .tls()
                .map(|t| t.server_name.to_str().into_owned())
                .unwrap_or_else(|| host.clone());
            let names = result
                .trace
                .tls
                .as_ref()
                .map(|t| t.peer_cert_names.clone())
                .unwrap_or_default();
            if names.is_empty() {
                format!("certificate of {addr} does not cover {asked}, the name asked for")
            } else {
                format!(
                    "certificate of {addr} is for {}, not {asked}, the name asked for",
                    names.join(", ")
                )
            }
        }
        Reason::TlsTimeout => format!("TLS handshake with {addr} did not finish within {t}"),
        Reason::ConnectionReset => format!("connection to {addr} reset or closed mid-exchange"),
        Reason::HttpTimeout => format!("no complete response from {addr} within {t}"),
        Reason::HttpProtocol => format!("the answer from {addr} is not HTTP"),
        Reason::HttpAuth if target.http().is_some_and(|h| h.auth.is_none()) => {
            format!("HTTP {status} with no credentials sent")
        }
        Reason::HttpAuth | Reason::HttpServerError => format!("HTTP {status}"),
        Reason::HttpStatus | Reason::BodyMismatch | Reason::BodyTooLarge | Reason::ScrapeInvalid => detail.to_string(),
    };
    format!("{headline}: {}", advice(target, result, hints))
}

/// `1 sample`, `2 samples`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn cert_not_after(result: &ProbeResult) -> Option<SystemTime> {
    result.trace.tls.as_ref().and_then(|t| t.peer_cert_not_after)
}

fn addr_or(result: &ProbeResult, fallback: &str) -> String {
    result
        .trace
        .address
        .map(|a| a.to_string())
        .unwrap_or_else(|| fallback.to_string())
}

fn success_line(result: &ProbeResult) -> String {
    let mut out = format!("OK in {}", short(result.total));
    if let Some(status) = result.trace.http_status {
        let _ = write!(out, ", HTTP {status}");
    }
    if let Some(samples) = result.trace.samples {
        let _ = write!(out, ", {}", plural(samples, "sample", "samples"));
    }
    if let Some(not_after) = result.trace.tls.as_ref().and_then(|t| t.peer_cert_not_after) {
        match not_after.duration_since(SystemTime::now()) {
            Ok(left) => {
                let _ = write!(
                    out,
                    ", certificate valid {} more",
                    plural(left.as_secs() / 86_400, "day", "days")
                );
            }
            Err(_) => out.push_str(", certificate EXPIRED (verification skipped)"),
        }
    }
    if !result.trace.resolved.is_empty() {
        let ips: Vec<_> = result.trace.resolved.iter().map(|ip| ip.to_string()).collect();
        let _ = write!(out, ", resolved to {}", ips.join(" "));
    }
    // A family that stayed silent or failed while the other answered: half of DNS is broken here.
    for f in result.trace.dns.iter().flat_map(|d| d.families) {
        if matches!(f.outcome, FamilyOutcome::Silent | FamilyOutcome::Error) {
            let _ = write!(out, " ({} question {})", f.family.record(), f.outcome.as_str());
        }
    }
    out
}

/// The people's table: one row per probe, then one verdict line per probe.
pub fn table(rows: &[(&Target, &ProbeResult)], hints: Hints) -> String {
    const PHASES: [Phase; 6] = Phase::ALL;
    let mut header = vec!["TARGET".to_string(), "KIND".into(), "ADDRESS".into()];
    header.extend(PHASES.iter().map(|p| p.as_str().to_uppercase()));
    header.extend(["STATUS".to_string(), "REASON".into()]);
    let mut cells: Vec<Vec<String>> = vec![header];
    for (target, result) in rows {
        let mut row = vec![
            target.name.clone(),
            result.kind.as_str().to_string(),
            result
                .trace
                .address
                .map(|a| a.to_string())
                .unwrap_or_else(|| target.instance.clone()),
        ];
        for phase in PHASES {
            let d = if phase == Phase::Total {
                Some(result.total)
            } else {
                result.trace.phase(phase)
            };
            row.push(d.map(short).unwrap_or_else(|| "-".into()));
        }
        row.push(
            result
                .trace
                .http_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
        );
        row.push(result.reason.as_str().to_string());
        cells.push(row);
    }
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    for (target, result) in rows {
        let mark = if result.success() { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {} ({}): {}",
            target.name,
            target.instance,
            verdict(target, result, hints)
        );
    }
    out
}
