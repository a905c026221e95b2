//! `mesh:` as written and as checked, with the same `path: what; fix` errors as the rest of the
//! inventory. Kept apart from `config/raw.rs` so the mesh's fields live with the mesh.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::config::raw::Scalar;
use crate::config::{format_duration, parse_bytes, parse_duration, Diags};
use crate::probe::mesh::MAX_PAYLOAD;

/// The contract's defaults.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
/// `mesh.interval`'s default: how often each peer is probed.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// `mesh.timeout`'s default: each mesh probe's budget.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// `mesh.large_payload`'s default: the MTU check's transfer in bytes.
pub const DEFAULT_LARGE_PAYLOAD: usize = 8 * 1024;
/// More than this many peers per node is no longer a bounded fan-out.
pub const MAX_PEERS_PER_NODE: usize = 1000;

/// `mesh:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMesh {
    /// Where the list of agents comes from; required.
    pub peers: Option<RawPeers>,
    /// The peers' port when the list gives bare addresses (default: this agent's listen port).
    pub port: Option<Scalar>,
    /// How often the peer list is re-read (default `30s`).
    pub refresh: Option<Scalar>,
    /// How often each peer is probed (default `10s`).
    pub interval: Option<Scalar>,
    /// Each mesh probe's time budget (default `2s`).
    pub timeout: Option<Scalar>,
    /// k > 0: each node is probed by the k agents rendezvous hashing picks (default 0: every peer).
    pub peers_per_node: Option<Scalar>,
    /// The MTU check's transfer size, at most 64KiB; `0` turns it off (default `8KiB`).
    pub large_payload: Option<Scalar>,
}

/// `mesh.peers:` one of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeers {
    /// A headless Service's name: each A/AAAA record is one agent.
    pub dns: Option<String>,
    /// `ip:port` (or `ip`, with `mesh.port`) of each agent.
    #[serde(rename = "static")]
    pub static_list: Option<Vec<String>>,
}

/// Where the peer list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// Re-resolved every `refresh`; bare addresses take `port`.
    Dns(String),
    /// Fixed; entries without a port take `port`.
    Static(Vec<(IpAddr, Option<u16>)>),
}

/// Checked `mesh:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// Where the list of agents comes from.
    pub peers: PeerSource,
    /// The peers' port; `None`: this agent's own listen port.
    pub port: Option<u16>,
    /// How often the peer list is re-read.
    pub refresh: Duration,
    /// How often each peer is probed.
    pub interval: Duration,
    /// Each mesh probe's time budget.
    pub timeout: Duration,
    /// 0: every peer.
    pub peers_per_node: usize,
    /// 0: no `large` probes.
    pub large_payload: usize,
}

/// Checks `mesh:`; `None` when absent or invalid (errors recorded).
pub(crate) fn check(raw: Option<&RawMesh>, d: &mut Diags) -> Option<std::sync::Arc<MeshSettings>> {
    let raw = raw?;
    let before = d.errors.len();
    let port = raw.port.as_ref().and_then(|p| match p.as_str().trim().parse::<u16>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            d.error(
                "mesh.port",
                format!("`{p}` is not a port; give a number from 1 to 65535 (the agents' --listen port), or remove it to use this agent's own"),
            );
            None
        }
    });
    let peers = peers(raw.peers.as_ref(), d);
    let duration = |d: &mut Diags, field: &str, value: Option<&Scalar>, default: Duration| match value {
        None => default,
        Some(s) => parse_duration(s.as_str()).unwrap_or_else(|msg| {
            d.error(format!("mesh.{field}"), msg);
            default
        }),
    };
    let refresh = duration(d, "refresh", raw.refresh.as_ref(), DEFAULT_REFRESH);
    let interval = duration(d, "interval", raw.interval.as_ref(), DEFAULT_INTERVAL);
    let timeout = duration(d, "timeout", raw.timeout.as_ref(), DEFAULT_TIMEOUT);
    if timeout >= interval {
        d.warn(
            if raw.timeout.is_some() { "mesh.timeout" } else { "mesh.interval" },
            format!(
                "the timeout {} is not below the interval {}; a probe still running when the next is due makes that one skipped, shorten the timeout or lengthen the interval",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
    }
    let peers_per_node = match &raw.peers_per_node {
        None => 0,
        Some(s) => match s.as_str().trim().parse::<usize>() {
            Ok(k) if k <= MAX_PEERS_PER_NODE => k,
            Ok(k) => {
                d.error(
                    "mesh.peers_per_node",
                    format!("{k} is more than {MAX_PEERS_PER_NODE}, no longer a bounded fan-out; use a small k such as 5 (each node is then probed by about k others), or 0 for every peer"),
                );
                0
            }
            Err(_) => {
                d.error(
                    "mesh.peers_per_node",
                    format!("`{s}` is not a whole number; give k >= 0 (0 or absent: every peer; k: k peers chosen by rendezvous hashing)"),
                );
                0
            }
        },
    };
    let large_payload = match &raw.large_payload {
        None => DEFAULT_LARGE_PAYLOAD,
        Some(s) if s.as_str().trim() == "0" => 0,
        Some(s) => {
            match parse_bytes(s.as_str()) {
                Ok(n) if n > MAX_PAYLOAD => {
                    d.error(
                    "mesh.large_payload",
                    format!("{n} bytes is over the 64KiB that agents answer; use e.g. 8KiB (anything above the path MTU shows a black hole), or 0 to turn the check off"),
                );
                    0
                }
                Ok(n) => {
                    if n <= 1500 {
                        d.warn(
                        "mesh.large_payload",
                        format!("{n} bytes fits in one 1500-byte packet, so an MTU black hole cannot show; use e.g. 8KiB"),
                    );
                    }
                    n
                }
                Err(msg) => {
                    d.error("mesh.large_payload", msg);
                    0
                }
            }
        }
    };
    if d.errors.len() > before {
        return None;
    }
    Some(std::sync::Arc::new(MeshSettings {
        peers: peers?,
        port,
        refresh,
        interval,
        timeout,
        peers_per_node,
        large_payload,
    }))
}

/// A DNS name as the resolver takes it (lower case, no trailing dot), or `None`.
pub fn dns_name(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.');
    let valid = !name.is_empty()
        && name.parse::<IpAddr>().is_err()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    valid.then(|| name.to_ascii_lowercase())
}

fn peers(raw: Option<&RawPeers>, d: &mut Diags) -> Option<PeerSource> {
    const HOW: &str =
        "set dns: <a headless Service, e.g. pathprobe-host.pathprobe.svc.cluster.local> or static: [ip:port, …]";
    let Some(raw) = raw else {
        d.error("mesh.peers", format!("missing; {HOW}"));
        return None;
    };
    match (&raw.dns, &raw.static_list) {
        (None, None) => {
            d.error("mesh.peers", format!("neither dns nor static is given; {HOW}"));
            None
        }
        (Some(_), Some(_)) => {
            d.error(
                "mesh.peers.static",
                "given together with dns; the peers come from one place, keep dns (Kubernetes) or static (tests, hosts outside Kubernetes)",
            );
            None
        }
        (Some(name), None) => match dns_name(name) {
            Some(n) => Some(PeerSource::Dns(n)),
            None => {
                d.error(
                    "mesh.peers.dns",
                    format!("`{}` is not a DNS name; give the headless Service's name, e.g. pathprobe-host.pathprobe.svc.cluster.local", name.trim()),
                );
                None
            }
        },
        (None, Some(list)) => {
            if list.is_empty() {
                d.error(
                    "mesh.peers.static",
                    "empty; list the agents as ip:port (this agent may be among them; it never probes itself), or use dns",
                );
                return None;
            }
            let mut out = Vec::with_capacity(list.len());
            let mut ok = true;
            for (i, entry) in list.iter().enumerate() {
                let e = entry.trim();
                if let Ok(sa) = e.parse::<SocketAddr>() {
                    if sa.port() == 0 {
                        d.error(
                            format!("mesh.peers.static[{i}]"),
                            format!("`{e}` has port 0; use the agents' --listen port"),
                        );
                        ok = false;
                    }
                    out.push((sa.ip(), Some(sa.port())));
                } else if let Ok(ip) = e.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                    out.push((ip, None));
                } else {
                    d.error(
                        format!("mesh.peers.static[{i}]"),
                        format!(
                            "`{e}` is not an IP address or ip:port; write e.g. 192.0.2.11:9807 or [2001:db8::11]:9807"
                        ),
                    );
                    ok = false;
                }
            }
            ok.then_some(PeerSource::Static(out))
        }
    }
}
