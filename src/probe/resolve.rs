//! Name resolution for every probe kind, as a modern client does it (RFC 8305 §3): A and AAAA
//! are asked in parallel, and once one family has answered with addresses the other gets a short
//! resolution delay, not the whole timeout. A resolver that drops one family's questions (a
//! home-router forwarder, the Kubernetes conntrack race on parallel UDP questions) then costs
//! 50 ms, not a false `dns_timeout`; which family stayed silent is recorded instead.
//!
//! Lookups go through hickory (so NXDOMAIN, timeout and other failures are told apart, which the
//! system's getaddrinfo flattens), with the system's resolv.conf: its search domains and ndots,
//! so a short Service name resolves as it does in a pod, and the cost of the search-list
//! expansion is part of the `resolve` phase. A truncated UDP answer is asked again over TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Hosts, TokioResolver};
use tokio::time::Instant;

use super::{Deadline, Phase, ProbeContext, ProbeError, ResolveError, Trace};
use crate::target::{Endpoint, Host, ResolverSettings};

/// How long the other family is waited for once one family has answered with addresses
/// (RFC 8305's recommended Resolution Delay).
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// Tries per question (the first and two retransmissions), paced to fit the probe's deadline.
const TRIES: u32 = 3;

/// The shortest retransmission interval: below this a retry only adds load.
const MIN_PACE: Duration = Duration::from_millis(100);

/// An address family, as the question that asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

impl Family {
    /// Both families, A first: the counters are exported from zero for each.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The `family` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// The record type asked for.
    pub fn record(self) -> &'static str {
        match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        }
    }
}

/// What one family's question got. A closed set: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyOutcome {
    /// One or more addresses.
    Answered,
    /// The name exists but has no records of this family (NODATA).
    Empty,
    /// The name does not exist.
    NxDomain,
    /// SERVFAIL, REFUSED, or another failure talking to the resolver.
    Error,
    /// No answer: none before the deadline, or none within the resolution delay after the
    /// other family's addresses arrived.
    Silent,
}

impl FamilyOutcome {
    /// Every outcome, so each `pathprobe_dns_lookups_total` series exists from the start.
    pub const ALL: [FamilyOutcome; 5] = [
        FamilyOutcome::Answered,
        FamilyOutcome::Empty,
        FamilyOutcome::NxDomain,
        FamilyOutcome::Error,
        FamilyOutcome::Silent,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyOutcome::Answered => "answered",
            FamilyOutcome::Empty => "empty",
            FamilyOutcome::NxDomain => "nxdomain",
            FamilyOutcome::Error => "error",
            FamilyOutcome::Silent => "silent",
        }
    }
}

/// One family's part of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyLookup {
    /// A or AAAA.
    pub family: Family,
    /// How the question for this family went.
    pub outcome: FamilyOutcome,
    /// From asking to the answer, or to giving up on it.
    pub took: Duration,
}

/// How a name's lookup went, family by family (A first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsLookup {
    /// A's part, then AAAA's.
    pub families: [FamilyLookup; 2],
}

/// The resolver configuration, read once; each lookup builds a fresh hickory client from it, so
/// each probe asks as a fresh client would (no cache, no state from earlier probes) and its
/// retransmissions are paced to that probe's deadline.
pub struct Resolver {
    config: ResolverConfig,
    opts: ResolverOpts,
    /// The longest a try waits before the next: resolv.conf's `timeout`, or hickory's default.
    max_pace: Duration,
    /// /etc/hosts, read once (a pod's `hostAliases` land there).
    hosts: Arc<Hosts>,
}

impl Resolver {
    /// Builds from the inventory's settings: its nameservers, or the system's resolv.conf
    /// (nameservers, `search`, `ndots`, `timeout`).
    pub fn new(settings: &ResolverSettings) -> Result<Resolver, ResolveError> {
        let (config, opts) = if settings.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolveError::Other(format!("reading the system resolver configuration: {e}")))?
        } else {
            // UDP and TCP to each, so a truncated answer can be asked again over TCP.
            let mut group = NameServerConfigGroup::new();
            for ns in &settings.nameservers {
                group.merge(NameServerConfigGroup::from_ips_clear(&[ns.ip()], ns.port(), true));
            }
            (ResolverConfig::from_parts(None, vec![], group), ResolverOpts::default())
        };
        let max_pace = opts.timeout.max(MIN_PACE);
        let hosts = Arc::new(Hosts::from_system().unwrap_or_default());
        Ok(Resolver {
            config,
            opts,
            max_pace,
            hosts,
        })
    }

    /// A hickory client whose tries are `pace` apart.
    fn client(&self, pace: Duration) -> TokioResolver {
        let mut builder = TokioResolver::builder_with_config(self.config.clone(), TokioConnectionProvider::default());
        let opts = builder.options_mut();
        *opts = self.opts.clone();
        opts.cache_size = 0;
        opts.timeout = pace;
        opts.attempts = (TRIES - 1) as usize;
        opts.use_hosts_file = ResolveHosts::Never;
        let mut client = builder.build();
        client.set_hosts(self.hosts.clone());
        client
    }

    /// Every address of a name (A first, then AAAA) and how each family went. Never outlives
    /// the deadline: a family still unanswered then is `Silent`.
    pub async fn lookup(&self, name: &str, deadline: Deadline) -> (DnsLookup, Result<Vec<IpAddr>, ResolveError>) {
        let start = Instant::now();
        let pace = (deadline.remaining() / TRIES).clamp(MIN_PACE, self.max_pace);
        let client = self.client(pace);
        let v4 = async {
            let r = client.ipv4_lookup(name).await;
            answer(r.map(|l| l.iter().map(|a| IpAddr::V4(a.0)).collect()), start)
        };
        let v6 = async {
            let r = client.ipv6_lookup(name).await;
            answer(r.map(|l| l.iter().map(|a| IpAddr::V6(a.0)).collect()), start)
        };
        tokio::pin!(v4, v6);
        let (mut a, mut aaaa): (Option<Answer>, Option<Answer>) = (None, None);
        let mut give_up = deadline.at;
        while a.is_none() || aaaa.is_none() {
            tokio::select! {
                r = &mut v4, if a.is_none() => {
                    if r.outcome == FamilyOutcome::Answered {
                        give_up = give_up.min(Instant::now() + RESOLUTION_DELAY);
                    }
                    a = Some(r);
                }
                r = &mut v6, if aaaa.is_none() => {
                    if r.outcome == FamilyOutcome::Answered {
                        give_up = give_up.min(Instant::now() + RESOLUTION_DELAY);
                    }
                    aaaa = Some(r);
                }
                _ = tokio::time::sleep_until(give_up) => break,
            }
        }
        let silent = || Answer {
            outcome: FamilyOutcome::Silent,
            took: start.elapsed(),
            ips: Vec::new(),
            detail: "no answer".into(),
        };
        let (a, aaaa) = (a.unwrap_or_else(silent), aaaa.unwrap_or_else(silent));
        let record = DnsLookup {
            families: [
                FamilyLookup {
                    family: Family::V4,
                    outcome: a.outcome,
                    took: a.took,
                },
                FamilyLookup {
                    family: Family::V6,
                    outcome: aaaa.outcome,
                    took: aaaa.took,
                },
            ],
        };
        (record, combine(a, aaaa))
    }
}

/// One family's answer, with the words for an error message.
struct Answer {
    outcome: FamilyOutcome,
    took: Duration,
    ips: Vec<IpAddr>,
    detail: String,
}

fn answer(r: Result<Vec<IpAddr>, hickory_resolver::ResolveError>, start: Instant) -> Answer {
    let took = start.elapsed();
    let (outcome, ips, detail) = match r {
        Ok(ips) if ips.is_empty() => (FamilyOutcome::Empty, ips, "no records".to_string()),
        Ok(ips) => (FamilyOutcome::Answered, ips, String::new()),
        Err(e) => {
            let (outcome, detail) = classify_error(&e);
            (outcome, Vec::new(), detail)
        }
    };
    Answer {
        outcome,
        took,
        ips,
        detail,
    }
}

fn classify_error(e: &hickory_resolver::ResolveError) -> (FamilyOutcome, String) {
    if e.is_nx_domain() {
        return (FamilyOutcome::NxDomain, "NXDOMAIN".into());
    }
    if let Some(proto) = e.proto() {
        match proto.kind() {
            ProtoErrorKind::Timeout => return (FamilyOutcome::Silent, "no answer".into()),
            ProtoErrorKind::NoRecordsFound { response_code, .. } if *response_code == ResponseCode::NoError => {
                return (FamilyOutcome::Empty, "no records".into());
            }
            ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                return (FamilyOutcome::Error, format!("response {response_code}"));
            }
            _ => {}
        }
    }
    (FamilyOutcome::Error, e.to_string())
}

/// The lookup's verdict: every address if either family has some; else NXDOMAIN (which is
/// about the name, whatever the family), then an error answer, then silence, then "no records".
fn combine(a: Answer, aaaa: Answer) -> Result<Vec<IpAddr>, ResolveError> {
    let both = [&a, &aaaa];
    let has = |o: FamilyOutcome| both.iter().any(|f| f.outcome == o);
    if has(FamilyOutcome::Answered) {
        return Ok(a.ips.into_iter().chain(aaaa.ips).collect());
    }
    if has(FamilyOutcome::NxDomain) {
        return Err(ResolveError::NxDomain);
    }
    if has(FamilyOutcome::Error) {
        let detail = format!("A: {}; AAAA: {}", a.detail, aaaa.detail);
        return Err(ResolveError::Other(detail));
    }
    if has(FamilyOutcome::Silent) {
        return Err(ResolveError::Timeout);
    }
    Err(ResolveError::NoRecords("no A or AAAA records".into()))
}

/// Resolves an endpoint into the socket addresses to try, recording the `resolve` phase.
/// A literal address needs no lookup; its `resolve` phase is recorded as zero, as the contract's
/// `check --json` example shows. The first lookup of a probe (the target's own name) is the one
/// whose addresses and families the result reports; a redirect's lookup only adds its time.
/// In all-address mode the context pins the target's name to one address: no lookup then.
pub async fn endpoint_addrs(
    ctx: &ProbeContext,
    endpoint: &Endpoint,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<Vec<SocketAddr>, ProbeError> {
    match &endpoint.host {
        Host::Ip(ip) => {
            trace.add(Phase::Resolve, Duration::ZERO);
            Ok(vec![SocketAddr::new(*ip, endpoint.port)])
        }
        Host::Name(name) => {
            if let Some((pinned, ip)) = &ctx.pin {
                if pinned == name {
                    return Ok(vec![SocketAddr::new(*ip, endpoint.port)]);
                }
            }
            let start = Instant::now();
            let (record, result) = ctx.resolver.lookup(name, deadline).await;
            trace.add(Phase::Resolve, start.elapsed());
            if trace.dns.is_none() {
                trace.dns = Some(record);
                if let Ok(ips) = &result {
                    trace.resolved = ips.clone();
                }
            }
            let ips = result.map_err(|source| ProbeError::Resolve {
                host: name.clone(),
                source,
            })?;
            Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, endpoint.port)).collect())
        }
    }
}
