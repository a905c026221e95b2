//! `agent:` (who probes, from which network, through which resolver) and `defaults:` (what every
//! target inherits).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{scalar_or, Diags};
use crate::config::duration::{parse_bytes, parse_duration};
use crate::config::raw::RawConfig;
use crate::target::{AgentSettings, Network, ResolverSettings};

/// The contract's default interval between two probes of a target.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The contract's default time a probe may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The contract's default cap on the bytes of a body read.
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;
/// The shortest interval: every node probes every target, so more often than once a second loads
/// the targets (and the agent) without telling more.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The largest body cap: a body is held in memory, up to `--max-in-flight` of them at once.
pub const MAX_BODY_LIMIT: usize = 256 << 20;

/// What `defaults:` gives every target that does not say otherwise.
pub(super) struct Defaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub body_limit: usize,
}

/// `agent:`: the source cluster (required), the network, the resolver's nameservers.
pub(super) fn check(raw: &RawConfig, d: &mut Diags) -> AgentSettings {
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
    AgentSettings {
        source_cluster,
        network,
        resolver,
    }
}

/// `defaults:`, each field checked as a target's own would be.
pub(super) fn defaults(raw: &RawConfig, d: &mut Diags) -> Defaults {
    let defaults = raw.defaults.clone().unwrap_or_default();
    Defaults {
        interval: scalar_or(
            d,
            "defaults.interval",
            defaults.interval.as_ref(),
            DEFAULT_INTERVAL,
            parse_interval,
        ),
        timeout: scalar_or(
            d,
            "defaults.timeout",
            defaults.timeout.as_ref(),
            DEFAULT_TIMEOUT,
            parse_duration,
        ),
        body_limit: scalar_or(
            d,
            "defaults.body_limit",
            defaults.body_limit.as_ref(),
            DEFAULT_BODY_LIMIT,
            parse_body_limit,
        ),
    }
}

/// A duration that is a sane interval.
pub(super) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_INTERVAL {
        return Err(format!(
            "`{s}` is below the 1s minimum; every node probes every target, so more often than once a second loads the target without telling more: use 1s or more"
        ));
    }
    Ok(d)
}

/// A size that is a sane body cap.
pub(super) fn parse_body_limit(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    if n > MAX_BODY_LIMIT {
        return Err(format!(
            "`{s}` is over the 256MiB maximum; a body is held in memory, --max-in-flight probes at once: use 256MiB or less"
        ));
    }
    Ok(n)
}
