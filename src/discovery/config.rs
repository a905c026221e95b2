//! `discovery.prometheus:` checked once at load, with the same `path: what; fix` errors as the
//! rest of the inventory. `job_settings` entries are target fields; each is checked by running
//! it through the target validator on a stand-in URL, so its files (passwords, CAs) are read and
//! watched now, not first at a refresh.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use crate::config::raw::{RawDiscovery, RawTarget};
use crate::config::{check_target, parse_duration, Checked, Ctx, Diags, PathStyle};

/// The default `refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// Checked `discovery.prometheus`, with what building a discovered target needs.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Prometheus's base URL (no userinfo).
    pub url: String,
    /// Anchored job regexes; empty: every job.
    pub jobs: Vec<Regex>,
    /// How often Prometheus is asked again.
    pub refresh: Duration,
    /// Per-job fields for what Prometheus's API does not reveal; the first match applies.
    pub job_settings: Vec<JobSettings>,
    /// The inventory's directory (relative files in `job_settings`).
    pub base_dir: PathBuf,
    /// `defaults.interval`, for discovered targets without their own.
    pub interval: Duration,
    /// `defaults.timeout`, for discovered targets without their own.
    pub timeout: Duration,
    /// `defaults.body_limit`, for discovered targets without their own.
    pub body_limit: usize,
    /// `agent.source_cluster`, the default `target_cluster`.
    pub cluster: String,
}

/// One `job_settings` entry: the jobs it applies to and the target fields it adds.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// The anchored regex on Prometheus's `job`.
    pub job: Regex,
    /// The target fields it adds (`tls`, `basic_auth`, `headers`, …), checked like a target's.
    pub fields: RawTarget,
    /// Its index, for messages.
    pub index: usize,
}

impl Discovery {
    /// True when the job is selected.
    pub fn wants(&self, job: &str) -> bool {
        self.jobs.is_empty() || self.jobs.iter().any(|re| re.is_match(job))
    }

    /// The first `job_settings` entry for the job.
    pub fn settings_for(&self, job: &str) -> Option<&JobSettings> {
        self.job_settings.iter().find(|s| s.job.is_match(job))
    }
}

/// An anchored regex, or the message for its field.
fn anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| {
        let first = e.to_string().lines().last().unwrap_or_default().trim().to_string();
        format!("`{re}` is not a regular expression ({first}); fix it, e.g. node-exporter or argocd-.*")
    })
}

/// Checks `discovery:`; `None` when absent or invalid (errors recorded).
pub(crate) fn check(raw: Option<&RawDiscovery>, ctx: &Ctx, d: &mut Diags) -> Option<std::sync::Arc<Discovery>> {
    let raw = raw?;
    let Some(p) = &raw.prometheus else {
        d.error(
            "discovery.prometheus",
            "missing; discovery asks a Prometheus for its active targets: set prometheus.url, or remove discovery",
        );
        return None;
    };
    let before = d.errors.len();
    let url = match p.url.as_deref().map(str::trim) {
        None | Some("") => {
            d.error(
                "discovery.prometheus.url",
                "missing; set Prometheus's URL, e.g. http://prometheus-operated.monitoring.svc:9090",
            );
            String::new()
        }
        Some(u) => {
            let shown = crate::config::range::redact_userinfo(u);
            match url::Url::parse(u) {
                Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
                    d.error(
                        "discovery.prometheus.url",
                        format!("{shown} carries credentials in the URL; remove them (discovery asks Prometheus without credentials)"),
                    );
                    String::new()
                }
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => u.to_string(),
                _ => {
                    d.error(
                        "discovery.prometheus.url",
                        format!("`{shown}` is not an http(s) URL; write e.g. http://prometheus-operated.monitoring.svc:9090"),
                    );
                    String::new()
                }
            }
        }
    };
    let mut jobs = Vec::new();
    for (i, j) in p.jobs.iter().flatten().enumerate() {
        match anchored(j.trim()) {
            Ok(re) => jobs.push(re),
            Err(msg) => d.error(format!("discovery.prometheus.jobs[{i}]"), msg),
        }
    }
    let refresh = match &p.refresh {
        None => DEFAULT_REFRESH,
        Some(s) => match parse_duration(s.as_str()) {
            Ok(r) => r,
            Err(msg) => {
                d.error("discovery.prometheus.refresh", msg);
                DEFAULT_REFRESH
            }
        },
    };
    let mut job_settings = Vec::new();
    for (i, fields) in p.job_settings.iter().flatten().enumerate() {
        if let Some(s) = check_settings(i, fields, ctx, d) {
            job_settings.push(s);
        }
    }
    if d.errors.len() > before {
        return None;
    }
    Some(std::sync::Arc::new(Discovery {
        url,
        jobs,
        refresh,
        job_settings,
        base_dir: ctx.base_dir.to_path_buf(),
        interval: ctx.interval,
        timeout: ctx.timeout,
        body_limit: ctx.body_limit,
        cluster: ctx.cluster.to_string(),
    }))
}

fn check_settings(i: usize, fields: &RawTarget, ctx: &Ctx, d: &mut Diags) -> Option<JobSettings> {
    let ps = PathStyle::Discovery(Some(i));
    let before = d.errors.len();
    let job = match fields.job.as_deref().map(str::trim) {
        None | Some("") => {
            d.error(
                ps.at("job"),
                "missing; name the jobs these settings are for (an anchored regex, e.g. proxmox-.*)",
            );
            None
        }
        Some(j) => match anchored(j) {
            Ok(re) => Some(re),
            Err(msg) => {
                d.error(ps.at("job"), msg);
                None
            }
        },
    };
    let from_prometheus: [(&str, bool, &str); 6] = [
        ("name", fields.name.is_some(), "a discovered target is named by its job"),
        ("kind", fields.kind.is_some(), "discovered targets are scrape probes"),
        ("url", fields.url.is_some(), "the URL is Prometheus's scrapeUrl"),
        ("address", fields.address.is_some(), "the URL is Prometheus's scrapeUrl"),
        (
            "expected",
            fields.expected.is_some(),
            "document absent targets under targets:",
        ),
        ("why", fields.why.is_some(), "document absent targets under targets:"),
    ];
    for (field, given, why) in from_prometheus {
        if given {
            d.error(ps.at(field), format!("not a job setting ({why}); remove it"));
        }
    }
    if d.errors.len() > before {
        return None;
    }
    // The target fields, checked on a stand-in URL (https when TLS is configured).
    let scheme = if fields.tls.is_some() { "https" } else { "http" };
    let probe = stand_in(
        fields,
        "job-settings",
        &format!("{scheme}://job-settings.invalid/metrics"),
    );
    let mut local = Diags::default();
    let ok = matches!(check_target(&probe, &ps, ctx, &mut local), Checked::Probe(_));
    d.errors.extend(local.errors);
    for w in local.warnings {
        d.warn(w.path, w.message);
    }
    (ok && d.errors.len() == before).then(|| JobSettings {
        job: job.expect("checked above"),
        fields: fields.clone(),
        index: i,
    })
}

/// The raw target for one discovered scrape: the settings' fields, Prometheus's job and URL.
pub(crate) fn stand_in(fields: &RawTarget, job: &str, url: &str) -> RawTarget {
    let mut raw = fields.clone();
    raw.name = Some(job.to_string());
    raw.job = Some(job.to_string());
    raw.kind = Some("scrape".into());
    raw.url = Some(url.to_string());
    raw.address = None;
    raw.expected = None;
    raw.why = None;
    if !url.to_ascii_lowercase().starts_with("https://") {
        // Prometheus ignores tls_config for an http:// target; so do we.
        raw.tls = None;
    }
    raw
}

/// The checking context for building discovered targets at a refresh.
pub(crate) fn ctx(disc: &Discovery) -> Ctx<'_> {
    Ctx {
        base_dir: &disc.base_dir,
        files: Default::default(),
        interval: disc.interval,
        timeout: disc.timeout,
        body_limit: disc.body_limit,
        cluster: &disc.cluster,
    }
}
