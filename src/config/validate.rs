//! Every rule of the inventory, checked all at once: raw structs in, [`Inventory`] or every error
//! out. Also used by `adhoc` (through [`check_target`]) so that `pathprobe check URL` and the
//! inventory share one set of rules and messages.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;

use super::duration::{format_duration, parse_bytes, parse_duration};
use super::range::{expand_host, parse_port, redact_userinfo, split_host_port, split_url};
use super::raw::{RawConfig, RawTarget, RawTls, Scalar};
use super::{ConfigError, ConfigWarning, Loaded};
use crate::probe::tls::{parse_identity, settings, TlsConfigError};
use crate::target::{
    AbsentTarget, AgentSettings, Auth, ClientIdentity, DnsExpect, Endpoint, Host, HttpSpec, Inventory, Kind, Network,
    ResolverSettings, Secret, StatusRanges, Target, TlsSettings,
};

/// The contract's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// `defaults.timeout` when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// `defaults.body_limit` when none is given: 4 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;
/// The shortest interval: every node probes every target, so more often than once a second loads
/// the targets (and the agent) without telling more.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The largest body cap: a body is held in memory, up to `--max-in-flight` of them at once.
pub const MAX_BODY_LIMIT: usize = 256 << 20;
/// The most targets (ranges expanded, documented-absent ones included) one agent takes: each
/// has its schedule, its status row and a few dozen series on every node.
pub const MAX_TARGETS: usize = 10_000;

/// A duration that is a sane interval.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_INTERVAL {
        return Err(format!(
            "`{s}` is below the 1s minimum; every node probes every target, so more often than once a second loads the target without telling more: use 1s or more"
        ));
    }
    Ok(d)
}

/// A size that is a sane body cap.
fn parse_body_limit(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    if n > MAX_BODY_LIMIT {
        return Err(format!(
            "`{s}` is over the 256MiB maximum; a body is held in memory, --max-in-flight probes at once: use 256MiB or less"
        ));
    }
    Ok(n)
}
const KINDS: &str = "tcp, tls, http, scrape, dns";

/// Validates a parsed inventory; relative file paths resolve against `base_dir`.
pub fn validate(raw: &RawConfig, base_dir: &Path) -> Result<Inventory, Vec<ConfigError>> {
    validate_with_warnings(raw, base_dir).map(|l| l.inventory)
}

/// [`validate`], keeping the warnings.
pub fn validate_with_warnings(raw: &RawConfig, base_dir: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let mut d = Diags::default();

    // agent
    let agent = raw.agent.clone().unwrap_or_default();
    let source_cluster = match agent.source_cluster.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        Some(_) => {
            d.error(
                "agent.source_cluster",
                "empty; set it to the cluster this agent runs in (the source_cluster label)",
            );
            String::new()
        }
        None => {
            d.error(
                "agent.source_cluster",
                "missing; set it to the cluster this agent runs in (the source_cluster label), or run the agent with --source-cluster or PATHPROBE_SOURCE_CLUSTER",
            );
            String::new()
        }
    };
    let network = match agent.network.as_deref() {
        None | Some("host") => Network::Host,
        Some("pod") => Network::Pod,
        Some(other) => {
            d.error(
                "agent.network",
                format!("`{other}` is not host or pod; set host (probing from the node's network namespace) or pod"),
            );
            Network::Host
        }
    };
    let mut resolver = ResolverSettings::default();
    if let Some(ns) = agent.resolver.as_ref().and_then(|r| r.nameservers.as_ref()) {
        for (i, s) in ns.iter().enumerate() {
            let s = s.trim();
            let parsed = s
                .parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Ok(a) => resolver.nameservers.push(a),
                Err(_) => d.error(
                    format!("agent.resolver.nameservers[{i}]"),
                    format!("`{s}` is not an IP address or ip:port; write e.g. 10.96.0.10:53 or [fd00::a]:53"),
                ),
            }
        }
    }

    // defaults
    let defaults = raw.defaults.clone().unwrap_or_default();
    let interval = scalar_or(
        &mut d,
        "defaults.interval",
        defaults.interval.as_ref(),
        DEFAULT_INTERVAL,
        parse_interval,
    );
    let timeout = scalar_or(
        &mut d,
        "defaults.timeout",
        defaults.timeout.as_ref(),
        DEFAULT_TIMEOUT,
        parse_duration,
    );
    let body_limit = scalar_or(
        &mut d,
        "defaults.body_limit",
        defaults.body_limit.as_ref(),
        DEFAULT_BODY_LIMIT,
        parse_body_limit,
    );

    let ctx = Ctx {
        base_dir,
        files: Default::default(),
        interval,
        timeout,
        body_limit,
        cluster: &source_cluster,
    };

    // targets
    let mut inventory = Inventory {
        agent: AgentSettings {
            source_cluster: source_cluster.clone(),
            network,
            resolver,
        },
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
    // (name, instance) → index of the target that first had it.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, rt) in raw_targets.iter().enumerate() {
        let ps = PathStyle::Target(i);
        let checked = check_target(rt, &ps, &ctx, &mut d);
        let keys: Vec<(String, String)> = match &checked {
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

/// The `check` flag that sets a field, or `target` for what the argument itself says.
fn adhoc_flag(rel: &str) -> &'static str {
    match rel {
        "tls" | "tls.insecure_skip_verify" => "--insecure",
        "tls.ca_file" => "--ca-file",
        "tls.server_name" => "--server-name",
        "basic_auth" | "basic_auth.username" => "--basic-auth-user",
        "basic_auth.password_file" => "--basic-auth-password-file",
        "bearer_token_file" => "--bearer-token-file",
        "expect.body_regex" => "--body-regex",
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

/// What one raw target became.
pub(crate) enum Checked {
    /// One per address (more than one for a range).
    Probe(Vec<Target>),
    Absent(Vec<AbsentTarget>),
    /// It had errors (already recorded).
    Failed,
}

/// Where a target goes, per expanded address.
enum Dest {
    Url(url::Url),
    Addr { endpoint: Endpoint, host_text: String },
    Dns(String),
}

impl Dest {
    fn instance(&self) -> String {
        match self {
            Dest::Url(u) => url_endpoint(u).to_string(),
            Dest::Addr { endpoint, .. } => endpoint.to_string(),
            Dest::Dns(name) => name.clone(),
        }
    }
}

/// Checks one target, recording errors and warnings with paths from `ps`.
pub(crate) fn check_target(rt: &RawTarget, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Checked {
    let errors_before = d.errors.len();
    let err = |d: &mut Diags, rel: &str, msg: String| d.error(ps.at(rel), msg);

    // identity
    let name = match rt.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        Some(_) => {
            err(
                d,
                "name",
                "empty; every target needs a name (its `target` label)".into(),
            );
            String::new()
        }
        None => {
            err(
                d,
                "name",
                "missing; every target needs a name (its `target` label)".into(),
            );
            String::new()
        }
    };
    let job = match rt.job.as_deref().map(str::trim) {
        None => name.clone(),
        Some("") => {
            err(d, "job", "empty; set a job, or remove it to default to the name".into());
            String::new()
        }
        Some(j) => j.to_string(),
    };
    let cluster = match rt.cluster.as_deref().map(str::trim) {
        None => ctx.cluster.to_string(),
        Some("") => {
            err(
                d,
                "cluster",
                "empty; set a cluster, or remove it to default to agent.source_cluster".into(),
            );
            String::new()
        }
        Some(c) => c.to_string(),
    };
    let expected = rt.expected.unwrap_or(true);
    let kind = match rt.kind.as_deref() {
        None => {
            if expected {
                err(
                    d,
                    "kind",
                    format!("missing; set it to one of {KINDS} (or expected: false for a documented-absent target)"),
                );
            }
            None
        }
        Some(k) => match Kind::parse(k.trim()) {
            Some(k) => Some(k),
            None => {
                err(d, "kind", format!("`{k}` is not a probe kind; use one of {KINDS}"));
                None
            }
        },
    };
    if rt.url.is_some() && rt.address.is_some() {
        err(
            d,
            "address",
            "given together with url; a target goes to one place, keep url (http, scrape) or address (tcp, tls, dns)"
                .into(),
        );
    }

    if !expected {
        match rt.why.as_deref().map(str::trim) {
            Some(w) if !w.is_empty() => {}
            _ => err(
                d,
                "why",
                "missing; a target with expected: false must say why it is absent (it is shown with the target and its alert)".into(),
            ),
        }
        // Where it would be, for its target_instance; probe settings are documentation here.
        let dests = if let Some(u) = rt.url.as_deref() {
            dests_from_url(u, ps, d)
        } else if let Some(a) = rt.address.as_deref() {
            if kind == Some(Kind::Dns) {
                dests_from_name(a, ps, d)
            } else {
                dests_from_address(a, ps, d)
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
        return Checked::Absent(
            instances
                .into_iter()
                .map(|instance| AbsentTarget {
                    name: name.clone(),
                    job: job.clone(),
                    cluster: cluster.clone(),
                    instance,
                    kind,
                    why: why.clone(),
                })
                .collect(),
        );
    }

    if rt.why.is_some() {
        d.warn(
            ps.at("why"),
            "only used with expected: false; remove it, or set expected: false",
        );
    }
    let Some(kind) = kind else {
        return Checked::Failed;
    };
    let is_http = matches!(kind, Kind::Http | Kind::Scrape);

    // where it goes
    let dests: Option<Vec<Dest>> = match kind {
        Kind::Tcp | Kind::Tls => {
            if let Some(u) = rt.url.as_deref() {
                err(
                    d,
                    "url",
                    format!(
                        "{kind} targets dial an address, not a URL ({}); write address: host:port, or use kind http or scrape",
                        redact_userinfo(u)
                    ),
                );
                None
            } else if let Some(a) = rt.address.as_deref() {
                dests_from_address(a, ps, d)
            } else {
                err(d, "address", format!("missing; {kind} targets need address: host:port"));
                None
            }
        }
        Kind::Http | Kind::Scrape => {
            if rt.address.is_some() {
                if rt.url.is_none() {
                    err(
                        d,
                        "address",
                        format!("{kind} targets take a url, not an address; write url: http://host:port/path (https:// for TLS)"),
                    );
                }
                None
            } else if let Some(u) = rt.url.as_deref() {
                dests_from_url(u, ps, d)
            } else {
                err(
                    d,
                    "url",
                    format!("missing; {kind} targets need a url, e.g. http://host:port/metrics"),
                );
                None
            }
        }
        Kind::Dns => {
            if rt.url.is_some() {
                err(
                    d,
                    "url",
                    "dns targets resolve a name, not a URL; write address: <name>".into(),
                );
                None
            } else if let Some(a) = rt.address.as_deref() {
                dests_from_name(a, ps, d)
            } else {
                err(
                    d,
                    "address",
                    "missing; dns targets need address: <the name to resolve>".into(),
                );
                None
            }
        }
    };

    // what only some kinds use
    if !is_http {
        let http_only: [(&str, bool); 6] = [
            ("basic_auth", rt.basic_auth.is_some()),
            ("bearer_token_file", rt.bearer_token_file.is_some()),
            ("headers", rt.headers.is_some()),
            ("method", rt.method.is_some()),
            ("body_limit", rt.body_limit.is_some()),
            ("max_redirects", rt.max_redirects.is_some()),
        ];
        for (field, given) in http_only {
            if given {
                err(
                    d,
                    field,
                    format!("only http and scrape targets use it, this one is {kind}; remove it, or change the kind"),
                );
            }
        }
        if let Some(e) = &rt.expect {
            if e.status.is_some() {
                err(
                    d,
                    "expect.status",
                    format!("only http and scrape targets use it, this one is {kind}; remove it"),
                );
            }
            if e.body_regex.is_some() {
                err(
                    d,
                    "expect.body_regex",
                    format!("only http and scrape targets use it, this one is {kind}; remove it"),
                );
            }
        }
    }
    if kind != Kind::Dns && rt.expect.as_ref().is_some_and(|e| e.addresses.is_some()) {
        err(
            d,
            "expect.addresses",
            format!("only dns targets use it, this one is {kind}; remove it"),
        );
    }
    let all_addresses = all_addresses(rt, kind, ps, d);
    if kind == Kind::Scrape {
        if let Some(m) = rt.method.as_deref() {
            if !m.trim().eq_ignore_ascii_case("GET") {
                err(
                    d,
                    "method",
                    "scrape probes ask as Prometheus does, with GET; remove it, or use kind http".into(),
                );
            }
        }
    }

    // TLS: needed for kind tls and for https URLs; refused where there is no TLS.
    let https = match dests.as_deref() {
        Some([Dest::Url(u), ..]) => u.scheme() == "https",
        _ => false,
    };
    let wants_tls = kind == Kind::Tls || https;
    if rt.tls.is_some() && !wants_tls {
        let why = match kind {
            Kind::Http | Kind::Scrape => {
                "the url is plain http://, there is no TLS to configure; use https://, or remove tls".to_string()
            }
            _ => format!("{kind} targets do not do TLS; remove it, or use kind tls"),
        };
        if dests.is_some() || !is_http {
            err(d, "tls", why);
        }
    }
    let tls_inputs = if wants_tls {
        tls_inputs(rt.tls.as_ref(), ps, ctx, d)
    } else {
        None
    };

    // timing
    let interval = scalar_or(
        d,
        &ps.at("interval"),
        rt.interval.as_ref(),
        ctx.interval,
        parse_interval,
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

    // HTTP
    let http_parts = if is_http {
        http_parts(rt, kind, ps, ctx, d)
    } else {
        None
    };

    // DNS
    let mut dns = DnsExpect::default();
    if kind == Kind::Dns {
        if let Some(addrs) = rt.expect.as_ref().and_then(|e| e.addresses.as_ref()) {
            for (i, a) in addrs.iter().enumerate() {
                match a.trim().parse::<IpAddr>() {
                    Ok(ip) => dns.addresses.push(ip),
                    Err(_) => err(
                        d,
                        &format!("expect.addresses[{i}]"),
                        format!(
                            "`{a}` is not an IP address; list the addresses the name must resolve to, e.g. 10.96.0.1"
                        ),
                    ),
                }
            }
        }
    }

    let blocked = check_blocked(rt, kind, ps, d);

    if d.errors.len() > errors_before {
        return Checked::Failed;
    }
    let Some(dests) = dests else {
        return Checked::Failed;
    };

    // build, one target per address
    let mut targets = Vec::with_capacity(dests.len());
    for dest in dests {
        let instance = dest.instance();
        let tls = match (&tls_inputs, &dest) {
            (Some(inputs), Dest::Url(u)) => {
                let host = u.host_str().unwrap_or_default().to_string();
                match build_tls(inputs, &host, "url", ps, d) {
                    Some(t) => Some(t),
                    None => return Checked::Failed,
                }
            }
            (Some(inputs), Dest::Addr { host_text, .. }) => match build_tls(inputs, host_text, "address", ps, d) {
                Some(t) => Some(t),
                None => return Checked::Failed,
            },
            _ => None,
        };
        let (endpoint, http) = match dest {
            Dest::Url(u) => {
                let endpoint = url_endpoint(&u);
                let spec = http_parts.as_ref().map(|p| p.spec(u));
                (endpoint, spec)
            }
            Dest::Addr { endpoint, .. } => (endpoint, None),
            Dest::Dns(name) => (
                Endpoint {
                    host: Host::Name(name),
                    port: 53,
                },
                None,
            ),
        };
        targets.push(Target {
            name: name.clone(),
            job: job.clone(),
            cluster: cluster.clone(),
            instance,
            kind,
            endpoint,
            interval,
            timeout,
            tls,
            http,
            dns: dns.clone(),
            blocked,
            peer: None,
            all_addresses,
        });
    }
    Checked::Probe(targets)
}

/// `expect.blocked`: allowed where there is a connection to refuse; nothing about an answer can
/// be expected of a target that must not answer.
fn check_blocked(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) -> bool {
    let Some(expect) = &rt.expect else { return false };
    if expect.blocked != Some(true) {
        return false;
    }
    if kind == Kind::Dns {
        d.error(
            ps.at("expect.blocked"),
            "dns targets resolve a name, there is no connection to be blocked; use kind tcp with the address that must be blocked",
        );
        return false;
    }
    if rt.all_addresses == Some(true) {
        d.error(
            ps.at("all_addresses"),
            "a must-be-blocked target succeeds when no address connects; every address is already tried, remove all_addresses",
        );
    }
    for (field, given) in [
        ("status", expect.status.is_some()),
        ("body_regex", expect.body_regex.is_some()),
    ] {
        if given {
            d.error(
                ps.at(&format!("expect.{field}")),
                "a must-be-blocked target is never asked anything (a connection is already the failure); remove it, or remove expect.blocked",
            );
        }
    }
    true
}

/// The bound on addresses in all-address mode when `max_addresses` is not given.
pub const DEFAULT_MAX_ADDRESSES: usize = 8;

/// The most `max_addresses` may be: each address has its own series.
pub const MAX_ADDRESSES_LIMIT: usize = 64;

/// `all_addresses` and `max_addresses`: `None` for the default mode (the first address that
/// works), else the most addresses to probe.
fn all_addresses(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) -> Option<usize> {
    let on = rt.all_addresses.unwrap_or(false);
    if on && kind == Kind::Dns {
        d.error(
            ps.at("all_addresses"),
            "dns targets already report every address they resolve to (resolved); remove it",
        );
        return None;
    }
    if !on && rt.max_addresses.is_some() {
        d.error(
            ps.at("max_addresses"),
            "only used with all_addresses: true; set that, or remove max_addresses",
        );
        return None;
    }
    if !on {
        return None;
    }
    let max = scalar_or(
        d,
        &ps.at("max_addresses"),
        rt.max_addresses.as_ref(),
        DEFAULT_MAX_ADDRESSES,
        |s| {
            match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_ADDRESSES_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{s}` is not a number of addresses; use a whole number from 1 to {MAX_ADDRESSES_LIMIT} (each address has its own series)"
            )),
        }
        },
    );
    Some(max)
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

/// `host:port` of a parsed http(s) URL (the scheme's port when none is written).
fn url_endpoint(u: &url::Url) -> Endpoint {
    let host = match u.host() {
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => Host::Name(d.to_ascii_lowercase()),
        None => Host::Name(String::new()),
    };
    Endpoint {
        host,
        port: u.port_or_known_default().unwrap_or(0),
    }
}

/// Parses `url` (ranges expanded): http or https, a host, no credentials.
fn dests_from_url(raw: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    let shown = redact_userinfo(raw.trim());
    let text = raw.trim();
    let Some(parts) = split_url(text) else {
        d.error(
            ps.at("url"),
            format!("`{shown}` is not a URL; write it in full, e.g. http://10.0.0.1:9100/metrics"),
        );
        return None;
    };
    if parts.has_userinfo {
        d.error(
            ps.at("url"),
            format!(
                "{} carries credentials in the URL; remove them and use basic_auth.username with basic_auth.password_file",
                parts.with_host(parts.host)
            ),
        );
        return None;
    }
    let scheme = parts.scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        let fix = if scheme.starts_with("scrape+") {
            "write the url with http:// or https:// and set kind: scrape"
        } else {
            "use http:// or https://, or for other protocols kind tcp or tls with an address"
        };
        d.error(
            ps.at("url"),
            format!("scheme `{}` is not supported; {fix}", parts.scheme),
        );
        return None;
    }
    if parts.host.is_empty() {
        d.error(
            ps.at("url"),
            format!("`{shown}` has no host; write e.g. http://10.0.0.1:9100/metrics"),
        );
        return None;
    }
    let hosts = match expand_host(parts.host) {
        Ok(h) => h,
        Err(msg) => {
            d.error(ps.at("url"), msg);
            return None;
        }
    };
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        let one = parts.with_host(&h);
        match url::Url::parse(&one) {
            Ok(u) if u.host().is_some() => {
                if u.port() == Some(0) {
                    d.error(
                        ps.at("url"),
                        format!("`{shown}` has port 0; use a port from 1 to 65535"),
                    );
                    return None;
                }
                if let Err(e) = crate::probe::http::request_target(&u) {
                    d.error(
                        ps.at("url"),
                        format!("its path and query cannot go into an HTTP request ({e}); shorten it"),
                    );
                    return None;
                }
                out.push(Dest::Url(u));
            }
            Ok(_) => {
                d.error(
                    ps.at("url"),
                    format!("`{shown}` has no host; write e.g. http://10.0.0.1:9100/metrics"),
                );
                return None;
            }
            Err(e) => {
                d.error(ps.at("url"), format!("`{shown}` is not a valid URL ({e}); fix it"));
                return None;
            }
        }
    }
    Some(out)
}

/// An `@` in an address means credentials were pasted into it: refused, showing only what
/// follows the last `@`.
fn refuse_userinfo(text: &str, ps: &PathStyle, d: &mut Diags) -> bool {
    let Some(at) = text.rfind('@') else { return false };
    d.error(
        ps.at("address"),
        format!(
            "`…@{}` holds userinfo; an address is host:port without credentials; put them in basic_auth.password_file or bearer_token_file",
            &text[at + 1..]
        ),
    );
    true
}

/// Parses a `host:port` address (ranges expanded).
fn dests_from_address(raw: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    let text = raw.trim();
    if refuse_userinfo(text, ps, d) {
        return None;
    }
    if text.contains("://") {
        d.error(
            ps.at("address"),
            format!(
                "`{}` is a URL; an address is host:port, e.g. 10.0.0.1:443",
                redact_userinfo(text)
            ),
        );
        return None;
    }
    let (host, port) = match split_host_port(text) {
        Ok(hp) => hp,
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
    };
    let port = match parse_port(port) {
        Ok(p) => p,
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
    };
    if host.is_empty() || host == "[]" {
        d.error(
            ps.at("address"),
            format!("`{text}` has no host; write host:port, e.g. 10.0.0.1:{port}"),
        );
        return None;
    }
    if host.starts_with('[') && host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_err() {
        if let Err(msg) = expand_host(host) {
            d.error(ps.at("address"), msg);
        } else {
            d.error(
                ps.at("address"),
                format!("`{host}` is not an IPv6 address; only IPv6 literals go in brackets"),
            );
        }
        return None;
    }
    let hosts = match expand_host(host) {
        Ok(h) => h,
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
    };
    if let Some(bad) = hosts.iter().find(|h| !valid_host_name(h)) {
        d.error(
            ps.at("address"),
            format!("`{bad}` is not a host name or IP address; fix it"),
        );
        return None;
    }
    Some(
        hosts
            .into_iter()
            .map(|h| Dest::Addr {
                endpoint: Endpoint {
                    host: Host::parse(&h),
                    port,
                },
                host_text: h,
            })
            .collect(),
    )
}

/// A host as written is a bracketed IPv6, an IPv4, or a plausible DNS name.
fn valid_host_name(h: &str) -> bool {
    if h.starts_with('[') || h.parse::<IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !h.starts_with('.')
}

/// The name of a `dns` target.
fn dests_from_name(raw: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    let name = raw.trim();
    if refuse_userinfo(name, ps, d) {
        return None;
    }
    let example = "kubernetes.default.svc.cluster.local";
    if name.contains("://") || name.contains(':') || name.contains('/') {
        d.error(
            ps.at("address"),
            format!(
                "`{}` is not a DNS name; a dns target takes a bare name without scheme or port, e.g. {example}",
                redact_userinfo(name)
            ),
        );
        return None;
    }
    match expand_host(name) {
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
        Ok(v) if v.len() > 1 => {
            d.error(
                ps.at("address"),
                format!("`{name}` is a range of addresses; a dns target resolves one name, e.g. {example}"),
            );
            return None;
        }
        Ok(_) => {}
    }
    if name.parse::<IpAddr>().is_ok() {
        d.error(
            ps.at("address"),
            format!("`{name}` is an IP address; a dns target resolves a name, e.g. {example}"),
        );
        return None;
    }
    if !valid_host_name(name) {
        d.error(
            ps.at("address"),
            format!("`{name}` is not a DNS name; use letters, digits, hyphens and dots, e.g. {example}"),
        );
        return None;
    }
    Some(vec![Dest::Dns(name.to_ascii_lowercase())])
}

/// The files of a `tls:` block, read and checked once for all the addresses of a target.
struct TlsInputs {
    insecure: bool,
    server_name: Option<String>,
    ca_pem: Option<Vec<u8>>,
    identity: Option<ClientIdentity>,
}

fn resolve(ctx: &Ctx, p: &str) -> PathBuf {
    let path = ctx.base_dir.join(p);
    ctx.files.borrow_mut().insert(path.clone());
    path
}

fn read_file(ctx: &Ctx, p: &str, rel: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<u8>> {
    let path = resolve(ctx, p);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            d.error(
                ps.at(rel),
                format!(
                    "cannot read {}: {e}; check the path, or mount the file there",
                    path.display()
                ),
            );
            None
        }
    }
}

fn tls_inputs(tls: Option<&RawTls>, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Option<TlsInputs> {
    let before = d.errors.len();
    let t = tls.cloned().unwrap_or_default();
    let insecure = t.insecure_skip_verify.unwrap_or(false);
    let server_name = match t.server_name.as_deref().map(str::trim) {
        Some("") => {
            d.error(
                ps.at("tls.server_name"),
                "empty; set the name the certificate is for, or remove it to use the host",
            );
            None
        }
        other => other.map(str::to_string),
    };
    let mut ca_pem = None;
    if let Some(ca) = t.ca_file.as_deref() {
        if insecure {
            d.error(
                ps.at("tls.ca_file"),
                "given with insecure_skip_verify: true, which skips verification, so the CA would never be used; remove one of them",
            );
        } else {
            ca_pem = read_file(ctx, ca, "tls.ca_file", ps, d);
        }
    }
    let identity = match (t.cert_file.as_deref(), t.key_file.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            d.error(
                ps.at("tls.key_file"),
                "missing; cert_file needs the matching key_file for mTLS",
            );
            None
        }
        (None, Some(_)) => {
            d.error(
                ps.at("tls.cert_file"),
                "missing; key_file needs the matching cert_file for mTLS",
            );
            None
        }
        (Some(c), Some(k)) => {
            let cert = read_file(ctx, c, "tls.cert_file", ps, d);
            let key = read_file(ctx, k, "tls.key_file", ps, d);
            match (cert, key) {
                (Some(cert), Some(key)) => match parse_identity(&cert, &key) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        let msg = e.to_string();
                        let (rel, file, what) = if let Some(rest) = msg.strip_prefix("key_file: ") {
                            ("tls.key_file", k, rest.to_string())
                        } else {
                            (
                                "tls.cert_file",
                                c,
                                msg.strip_prefix("cert_file: ").unwrap_or(&msg).to_string(),
                            )
                        };
                        let fix = if rel == "tls.key_file" {
                            "give the PEM private key that matches cert_file"
                        } else {
                            "give the PEM client certificate (chain)"
                        };
                        d.error(ps.at(rel), format!("{}: {what}; {fix}", resolve(ctx, file).display()));
                        None
                    }
                },
                _ => None,
            }
        }
    };
    if d.errors.len() > before {
        return None;
    }
    Some(TlsInputs {
        insecure,
        server_name,
        ca_pem,
        identity,
    })
}

/// Builds the TLS settings for one address. `host` is the URL or address host (the default
/// server name); `host_rel` names the field it came from.
fn build_tls(inputs: &TlsInputs, host: &str, host_rel: &str, ps: &PathStyle, d: &mut Diags) -> Option<TlsSettings> {
    let (server_name, name_rel) = match &inputs.server_name {
        Some(s) => (s.as_str(), "tls.server_name"),
        None => (host, host_rel),
    };
    let identity = inputs.identity.as_ref().map(|id| ClientIdentity {
        chain: id.chain.clone(),
        key: id.key.clone_key(),
    });
    match settings(server_name, inputs.ca_pem.as_deref(), inputs.insecure, identity) {
        Ok(s) => Some(s),
        Err(e) => {
            let (rel, fix) = match &e {
                TlsConfigError::BadServerName(_) => {
                    (name_rel, "set tls.server_name to the name the certificate is for")
                }
                TlsConfigError::BadCa(_) => ("tls.ca_file", "give a PEM file holding the CA certificate(s)"),
                TlsConfigError::BadIdentity(_) => ("tls.cert_file", "give the PEM client certificate and its key"),
                TlsConfigError::Verifier(_) if inputs.ca_pem.is_some() => {
                    ("tls.ca_file", "give a PEM file holding the CA certificate(s)")
                }
                TlsConfigError::Verifier(_) => ("tls", "give a ca_file, or check the system trust store"),
            };
            d.error(ps.at(rel), format!("{e}; {fix}"));
            None
        }
    }
}

/// The HTTP side of a target, checked once for all its addresses.
struct HttpParts {
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Option<Auth>,
    expect_status: StatusRanges,
    body_regex: Option<Regex>,
    body_limit: usize,
    max_redirects: u8,
}

impl HttpParts {
    fn spec(&self, url: url::Url) -> HttpSpec {
        HttpSpec {
            url,
            method: self.method.clone(),
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            expect_status: self.expect_status.clone(),
            body_regex: self.body_regex.clone(),
            body_limit: self.body_limit,
            max_redirects: self.max_redirects,
        }
    }
}

fn http_parts(rt: &RawTarget, kind: Kind, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Option<HttpParts> {
    let before = d.errors.len();

    let method = match rt.method.as_deref().map(str::trim) {
        None => Method::GET,
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) if !m.as_str().is_empty() => m,
            _ => {
                d.error(
                    ps.at("method"),
                    format!("`{m}` is not an HTTP method; use GET, HEAD, POST, …"),
                );
                Method::GET
            }
        },
    };

    let mut headers = Vec::new();
    if let Some(hs) = &rt.headers {
        for (k, v) in &hs.0 {
            let rel = format!("headers.{k}");
            let name = match HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    d.error(
                        ps.at(&rel),
                        format!(
                            "`{k}` is not a valid header name; use letters, digits and hyphens, e.g. X-Scope-OrgID"
                        ),
                    );
                    continue;
                }
            };
            if name == http::header::AUTHORIZATION
                || name == http::header::PROXY_AUTHORIZATION
                || name == http::header::COOKIE
            {
                d.error(
                    ps.at(&rel),
                    "credentials are never written in the config; use basic_auth.password_file or bearer_token_file (files from a mounted Secret)",
                );
                continue;
            }
            match HeaderValue::from_str(v.as_str()) {
                Ok(mut value) => {
                    let lower = name.as_str();
                    if ["auth", "token", "key", "secret", "password", "cookie", "session"]
                        .iter()
                        .any(|w| lower.contains(w))
                    {
                        value.set_sensitive(true);
                    }
                    headers.push((name, value));
                }
                // The value is not echoed: it may be a credential.
                Err(_) => d.error(
                    ps.at(&rel),
                    "the value is not a valid header value (control characters, newlines or non-ASCII); fix it",
                ),
            }
        }
    }

    let auth = match (&rt.basic_auth, rt.bearer_token_file.as_deref()) {
        (Some(_), Some(_)) => {
            d.error(
                ps.at("bearer_token_file"),
                "given together with basic_auth; a request carries one Authorization header, keep one of them",
            );
            None
        }
        (Some(b), None) => {
            let username = match b.username.as_deref() {
                None => {
                    d.error(ps.at("basic_auth.username"), "missing; basic_auth needs a username");
                    None
                }
                Some(u) if u.contains(':') => {
                    d.error(
                        ps.at("basic_auth.username"),
                        "contains `:`, which basic auth cannot carry in a username; fix it",
                    );
                    None
                }
                Some(u) => Some(u.to_string()),
            };
            let password = match b.password_file.as_deref() {
                None => {
                    d.error(
                        ps.at("basic_auth.password_file"),
                        "missing; name the file that holds the password (a mounted Secret), passwords are never written in the config",
                    );
                    None
                }
                Some(p) => read_secret(ctx, p, "basic_auth.password_file", "password", ps, d),
            };
            match (username, password) {
                (Some(username), Some(password)) => Some(Auth::Basic { username, password }),
                _ => None,
            }
        }
        (None, Some(p)) => {
            let token = read_secret(ctx, p, "bearer_token_file", "token", ps, d);
            if let Some(t) = &token {
                if HeaderValue::from_str(&format!("Bearer {}", t.expose())).is_err() {
                    d.error(
                        ps.at("bearer_token_file"),
                        format!(
                            "{} holds characters that cannot go in an HTTP header; the file must hold only the token",
                            resolve(ctx, p).display()
                        ),
                    );
                }
            }
            token.map(|token| Auth::Bearer { token })
        }
        (None, None) => None,
    };

    let expect = rt.expect.clone().unwrap_or_default();
    let expect_status = match &expect.status {
        None => StatusRanges::default_2xx(),
        Some(items) => {
            let texts: Vec<&str> = items.0.iter().map(Scalar::as_str).collect();
            match parse_status_ranges(&texts) {
                Ok(r) => r,
                Err(msg) => {
                    d.error(ps.at("expect.status"), msg);
                    StatusRanges::default_2xx()
                }
            }
        }
    };
    let body_regex = match expect.body_regex.as_deref() {
        None => None,
        Some(re) => match Regex::new(re) {
            Ok(r) => Some(r),
            Err(e) => {
                d.error(
                    ps.at("expect.body_regex"),
                    format!(
                        "`{re}` is not a valid regular expression ({}); fix the pattern (Rust regex syntax)",
                        regex_reason(&e)
                    ),
                );
                None
            }
        },
    };
    let body_limit = scalar_or(
        d,
        &ps.at("body_limit"),
        rt.body_limit.as_ref(),
        ctx.body_limit,
        parse_body_limit,
    );
    // A scrape follows redirects as Prometheus does (Go's client: up to 10); a plain http probe
    // judges the 3xx itself unless asked to follow.
    let default_redirects = if kind == Kind::Scrape { 10u8 } else { 0u8 };
    let max_redirects = scalar_or(
        d,
        &ps.at("max_redirects"),
        rt.max_redirects.as_ref(),
        default_redirects,
        |s| {
            s.trim().parse::<u8>().map_err(|_| {
                format!("`{s}` is not a number of redirects; use a whole number from 0 (not followed) to 255")
            })
        },
    );

    if d.errors.len() > before {
        return None;
    }
    Some(HttpParts {
        method,
        headers,
        auth,
        expect_status,
        body_regex,
        body_limit,
        max_redirects,
    })
}

/// The one-line reason of a regex error (its last `error: …` line).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or_default())
        .trim()
        .to_string()
}

/// Reads a secret file: surrounding whitespace trimmed, as Prometheus does (a Secret written with
/// `echo` ends in a newline; an editor may add more); an empty one is an error. Never echoes it.
fn read_secret(ctx: &Ctx, p: &str, rel: &str, what: &str, ps: &PathStyle, d: &mut Diags) -> Option<Secret> {
    let path = resolve(ctx, p);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim();
            if s.is_empty() {
                d.error(ps.at(rel), format!("{} is empty; put the {what} in it", path.display()));
                None
            } else {
                Some(Secret::new(s))
            }
        }
        Err(e) => {
            d.error(
                ps.at(rel),
                format!(
                    "cannot read {}: {e}; create the file or mount the Secret there",
                    path.display()
                ),
            );
            None
        }
    }
}

/// Parses `expect.status` items: `200`, `300-399`, `2xx`, each possibly a comma-separated list.
/// The error is a message (without field path).
pub fn parse_status_ranges(items: &[&str]) -> Result<StatusRanges, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^(?:([0-9]{3})(?:-([0-9]{3}))?|([1-5])[xX][xX])$").expect("status regex"));
    let mut out = Vec::new();
    for item in items.iter().flat_map(|i| i.split(',')).map(str::trim) {
        let bad = || {
            format!(
                "`{item}` is not a status code or range; write codes from 100 to 599 like 200, \"300-399\" or \"2xx\""
            )
        };
        let caps = re.captures(item).ok_or_else(bad)?;
        let (lo, hi) = if let Some(class) = caps.get(3) {
            let c: u16 = class.as_str().parse().map_err(|_| bad())?;
            (c * 100, c * 100 + 99)
        } else {
            let lo: u16 = caps[1].parse().map_err(|_| bad())?;
            let hi: u16 = match caps.get(2) {
                Some(h) => h.as_str().parse().map_err(|_| bad())?,
                None => lo,
            };
            (lo, hi)
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
            return Err(bad());
        }
        if hi < lo {
            return Err(format!(
                "`{item}` runs backwards; write the lower code first: {hi}-{lo}"
            ));
        }
        out.push((lo, hi));
    }
    if out.is_empty() {
        return Err("empty; list the statuses that count as success, e.g. [200, \"300-399\"]".to_string());
    }
    Ok(StatusRanges(out))
}
