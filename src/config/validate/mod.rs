//! Every rule of the inventory, checked all at once: raw structs in, [`Inventory`] or every error
//! out. Also used by `adhoc` (through [`check_target`]) so that `pathprobe check URL` and the
//! inventory share one set of rules and messages.
//!
//! One file per concern: [`agent`] (the `agent:` and `defaults:` sections), [`identity`] (a
//! target's labels, and documented-absent targets), [`destination`] (url/address, ranges,
//! all-address mode), [`tls`], [`http`] and [`expect`] (`expect.addresses`, `expect.blocked`).
//! This file holds what they share and the order they run in: errors come out in the order a
//! target's fields are checked, which the messages' tests pin.

mod agent;
mod destination;
mod expect;
mod http;
mod identity;
mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::{format_duration, parse_duration};
use super::raw::{RawConfig, RawTarget, Scalar};
use super::{ConfigError, ConfigWarning, Loaded};
use crate::target::{AbsentTarget, Check, DnsExpect, Endpoint, Host, Inventory, Kind, Target};
use destination::Dest;

pub use agent::{DEFAULT_BODY_LIMIT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
pub use http::parse_status_ranges;

/// The most targets (ranges expanded, documented-absent ones included) one agent takes: each
/// has its schedule, its status row and a few dozen series on every node.
pub const MAX_TARGETS: usize = 10_000;

/// Validates a parsed inventory; relative file paths resolve against `base_dir`.
pub fn validate(raw: &RawConfig, base_dir: &Path) -> Result<Inventory, Vec<ConfigError>> {
    validate_with_warnings(raw, base_dir).map(|l| l.inventory)
}

/// [`validate`], keeping the warnings.
pub fn validate_with_warnings(raw: &RawConfig, base_dir: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let mut d = Diags::default();
    let agent = agent::check(raw, &mut d);
    let defaults = agent::defaults(raw, &mut d);
    let ctx = Ctx {
        base_dir,
        files: Default::default(),
        interval: defaults.interval,
        timeout: defaults.timeout,
        body_limit: defaults.body_limit,
        cluster: &agent.source_cluster,
    };
    let mut inventory = Inventory {
        agent: agent.clone(),
        targets: Vec::new(),
        absent: Vec::new(),
        files: Vec::new(),
        discovery: None,
        mesh: None,
    };
    let raw_targets = raw.targets.as_deref().unwrap_or_default();
    if raw_targets.is_empty() && raw.discovery.is_none() && raw.mesh.is_none() {
        d.warn("targets", "none listed; the agent will probe nothing");
    }
    targets(raw_targets, &ctx, &mut inventory, &mut d);
    inventory.discovery = crate::discovery::config::check(raw.discovery.as_ref(), &ctx, &mut d);
    inventory.mesh = crate::mesh::config::check(raw.mesh.as_ref(), &mut d);

    if d.errors.is_empty() {
        inventory.files = ctx.files.take().into_iter().collect();
        Ok(Loaded {
            inventory,
            warnings: d.warnings,
        })
    } else {
        Err(d.errors)
    }
}

/// Checks every entry of `targets:` into the inventory: each entry, then whether it repeats an
/// earlier one, then whether the list has grown past [`MAX_TARGETS`].
fn targets(raw_targets: &[RawTarget], ctx: &Ctx, inventory: &mut Inventory, d: &mut Diags) {
    // (name, instance) → index of the target that first had it.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, rt) in raw_targets.iter().enumerate() {
        let ps = PathStyle::Target(i);
        let checked = check_target(rt, &ps, ctx, d);
        identity::refuse_duplicates(&checked, i, &mut seen, &ps, d);
        match checked {
            Checked::Probe(ts) => inventory.targets.extend(ts),
            Checked::Absent(ts) => inventory.absent.extend(ts),
            Checked::Failed => {}
        }
        // Checked as the list grows, so a million entries (or ranges) stop here, not in memory.
        let count = inventory.targets.len() + inventory.absent.len();
        if count > MAX_TARGETS {
            d.error(
                ps.at(""),
                format!(
                    "the inventory reaches {count} targets here (ranges expanded), over the {MAX_TARGETS} one agent probes; split it between agents (e.g. per cluster), or list fewer targets"
                ),
            );
            break;
        }
    }
}

/// Errors and warnings as they are found.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

impl Diags {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let w = ConfigWarning {
            path: path.into(),
            message: message.into(),
        };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }
}

/// How a target's field paths are named in messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathStyle {
    /// `targets[3].tls.ca_file`
    Target(usize),
    /// The `check` command line: `--ca-file`, or `target` for the argument itself.
    Adhoc,
    /// `discovery.prometheus.job_settings[2].tls.ca_file`; `None`: a discovered target without
    /// settings, named by `discovery.prometheus`.
    Discovery(Option<usize>),
}

impl PathStyle {
    /// The full path of `rel` (a field path inside the target; empty for the target itself).
    pub fn at(&self, rel: &str) -> String {
        match self {
            PathStyle::Target(i) if rel.is_empty() => format!("targets[{i}]"),
            PathStyle::Target(i) => format!("targets[{i}].{rel}"),
            PathStyle::Adhoc => adhoc_flag(rel).to_string(),
            PathStyle::Discovery(Some(i)) if rel.is_empty() => format!("discovery.prometheus.job_settings[{i}]"),
            PathStyle::Discovery(Some(i)) => format!("discovery.prometheus.job_settings[{i}].{rel}"),
            PathStyle::Discovery(None) => "discovery.prometheus".to_string(),
        }
    }
}

/// The `check` flag that sets a field, or `target` for what the argument itself says. Every flag
/// here is one of `check`'s own (`CheckArgs` in src/main.rs); a field no flag sets is `target`.
fn adhoc_flag(rel: &str) -> &'static str {
    match rel {
        "tls" | "tls.insecure_skip_verify" => "--insecure",
        "tls.ca_file" => "--ca-file",
        "tls.server_name" => "--server-name",
        "basic_auth" | "basic_auth.username" => "--basic-auth-user",
        "basic_auth.password_file" => "--basic-auth-password-file",
        "bearer_token_file" => "--bearer-token-file",
        "timeout" | "interval" => "--timeout",
        r if r.starts_with("expect.status") => "--expect-status",
        _ => "target",
    }
}

/// What a target inherits from the file (or, for `check`, from the command line).
pub(crate) struct Ctx<'a> {
    pub base_dir: &'a Path,
    /// Every file the inventory names (secrets, CA, client identity), for the reload watcher.
    pub files: std::cell::RefCell<std::collections::BTreeSet<PathBuf>>,
    pub interval: Duration,
    pub timeout: Duration,
    pub body_limit: usize,
    pub cluster: &'a str,
}

impl Ctx<'_> {
    /// `p` against the config's directory, remembered as a file the inventory reads.
    fn resolve(&self, p: &str) -> PathBuf {
        let path = self.base_dir.join(p);
        self.files.borrow_mut().insert(path.clone());
        path
    }
}

/// What one raw target became.
pub(crate) enum Checked {
    /// One per address (more than one for a range).
    Probe(Vec<Target>),
    Absent(Vec<AbsentTarget>),
    /// It had errors (already recorded).
    Failed,
}

/// Checks one target, recording errors and warnings with paths from `ps`.
///
/// The steps run in the order of the messages: labels, where it goes, what its kind does not
/// use, TLS, timing, HTTP, what is expected of it; then, with no error, one target per address.
pub(crate) fn check_target(rt: &RawTarget, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Checked {
    let errors_before = d.errors.len();
    let labels = identity::check(rt, ps, ctx, d);
    if !labels.expected {
        return identity::absent(rt, labels, ps, d, errors_before);
    }
    if rt.why.is_some() {
        d.warn(
            ps.at("why"),
            "only used with expected: false; remove it, or set expected: false",
        );
    }
    let Some(kind) = labels.kind else {
        return Checked::Failed;
    };

    let dests = destination::dests(rt, kind, ps, d);
    http::refuse_where_unused(rt, kind, ps, d);
    expect::refuse_addresses_where_unused(rt, kind, ps, d);
    let all_addresses = destination::all_addresses(rt, kind, ps, d);
    http::refuse_scrape_method(rt, kind, ps, d);
    let tls_inputs = tls::inputs(rt, kind, dests.as_deref(), ps, ctx, d);
    let (interval, timeout) = timing(rt, ps, ctx, d);
    let http_parts = if is_http(kind) {
        http::parts(rt, kind, ps, ctx, d)
    } else {
        None
    };
    let dns = expect::dns(rt, kind, ps, d);
    let blocked = expect::blocked(rt, kind, ps, d);

    if d.errors.len() > errors_before {
        return Checked::Failed;
    }
    let Some(dests) = dests else {
        return Checked::Failed;
    };

    let mut targets = Vec::with_capacity(dests.len());
    for dest in dests {
        let instance = dest.instance();
        let Some((endpoint, check)) = build(kind, dest, tls_inputs.as_ref(), http_parts.as_ref(), &dns, ps, d) else {
            return Checked::Failed;
        };
        targets.push(Target {
            name: labels.name.clone(),
            job: labels.job.clone(),
            cluster: labels.cluster.clone(),
            instance,
            endpoint,
            interval,
            timeout,
            check,
            blocked,
            all_addresses,
        });
    }
    Checked::Probe(targets)
}

/// Where one address of a checked target dials, and what its probe checks there. `None` when
/// its TLS settings cannot be built for that address (the error is recorded).
fn build(
    kind: Kind,
    dest: Dest,
    tls_inputs: Option<&tls::TlsInputs>,
    http_parts: Option<&http::HttpParts>,
    dns: &DnsExpect,
    ps: &PathStyle,
    d: &mut Diags,
) -> Option<(Endpoint, Check)> {
    match dest {
        Dest::Url(u) => {
            let tls = match tls_inputs {
                Some(inputs) => Some(tls::build(inputs, u.host_str().unwrap_or_default(), "url", ps, d)?),
                None => None,
            };
            let endpoint = destination::url_endpoint(&u);
            // Only http and scrape targets take a url, and they have their parts when error-free.
            let spec = Box::new(http_parts?.spec(u, tls));
            let check = if kind == Kind::Scrape {
                Check::Scrape(spec)
            } else {
                Check::Http(spec)
            };
            Some((endpoint, check))
        }
        Dest::Addr { endpoint, host_text } => {
            let check = match tls_inputs {
                Some(inputs) => Check::Tls(Box::new(tls::build(inputs, &host_text, "address", ps, d)?)),
                None => Check::Tcp,
            };
            Some((endpoint, check))
        }
        Dest::Dns(name) => Some((
            Endpoint {
                host: Host::Name(name),
                port: 53,
            },
            Check::Dns(Box::new(dns.clone())),
        )),
    }
}

/// Whether the kind makes an HTTP request.
fn is_http(kind: Kind) -> bool {
    matches!(kind, Kind::Http | Kind::Scrape)
}

/// `interval` and `timeout` (or the defaults), warning when the timeout does not fit in the
/// interval.
fn timing(rt: &RawTarget, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> (Duration, Duration) {
    let interval = scalar_or(
        d,
        &ps.at("interval"),
        rt.interval.as_ref(),
        ctx.interval,
        agent::parse_interval,
    );
    let timeout = scalar_or(d, &ps.at("timeout"), rt.timeout.as_ref(), ctx.timeout, parse_duration);
    if timeout >= interval {
        let path = if rt.timeout.is_some() {
            ps.at("timeout")
        } else if rt.interval.is_some() {
            ps.at("interval")
        } else {
            "defaults.timeout".to_string()
        };
        d.warn(
            path,
            format!(
                "the timeout {} is not below the interval {}; a probe still running when the next is due makes that one skipped, shorten the timeout or lengthen the interval",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
    }
    (interval, timeout)
}

/// A scalar field parsed by `parse`, or `default` when absent; records the error and returns
/// the default when it does not parse.
fn scalar_or<T>(
    d: &mut Diags,
    path: &str,
    value: Option<&Scalar>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> T {
    match value {
        None => default,
        Some(s) => match parse(s.as_str()) {
            Ok(v) => v,
            Err(msg) => {
                d.error(path, msg);
                default
            }
        },
    }
}
