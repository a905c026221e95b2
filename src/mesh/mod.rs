//! The node mesh: every agent probes (k of) the other agents, so a broken path between two nodes
//! is named by its two ends.
//!
//! - [`peers`] finds the agents (a headless Service's DNS records, or a static list) every
//!   `refresh` and reports to the agent's control loop, which keeps the last good list.
//! - [`hrw`] picks which of them this agent probes (`peers_per_node`).
//! - [`Mesh`] turns the chosen peers into ordinary targets for the scheduler (an `http` probe
//!   with a [`PeerSpec`]), records their results, learns the peers' node names, answers `/mesh`
//!   and writes the `pathprobe_peer_*` series.

pub mod config;
pub mod hrw;
pub mod peers;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::DEFAULT_BODY_LIMIT;
use crate::metrics::Source;
use crate::probe::mesh::{self as mesh_probe, Identity, MAX_PAYLOAD, SMALL_BUDGET};
use crate::probe::ProbeResult;
use crate::reason::Reason;
use crate::target::{DnsExpect, Endpoint, Host, HttpSpec, Kind, Payload, PeerSpec, StatusRanges, Target};
pub use config::MeshSettings;

/// The `job` of mesh probes in the scheduler (never exported as a target).
pub const JOB: &str = "pathprobe-mesh";

/// The latest result of one peer and payload.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latest {
    reason: Reason,
    seconds: f64,
}

/// The agent's mesh: settings, peers, what it learned, and the latest result per peer.
pub struct Mesh {
    /// This agent's own address (its listen address), to recognise itself in the peer list.
    local: SocketAddr,
    state: Mutex<State>,
    /// Where the next `/mesh` answer starts in the list of reached peers.
    rotate: AtomicUsize,
}

#[derive(Default)]
struct State {
    settings: Option<Arc<MeshSettings>>,
    /// Discovered peers, this agent left out.
    peers: Vec<SocketAddr>,
    /// The ones this agent probes.
    probed: BTreeSet<SocketAddr>,
    /// Names from this agent's own answers: what its `/mesh` hands on.
    reached: BTreeMap<SocketAddr, String>,
    /// Names heard from other agents' answers.
    heard: HashMap<SocketAddr, String>,
    /// Addresses that answered with this agent's own identity (a NAT, a second address).
    selves: HashSet<SocketAddr>,
    results: BTreeMap<(SocketAddr, Payload), Latest>,
    refreshes: [u64; 2],
}

impl Mesh {
    /// A mesh for the agent listening at `local` (to recognise itself among the peers), with no peers yet.
    pub fn new(local: SocketAddr) -> Mesh {
        Mesh {
            local,
            state: Mutex::new(State::default()),
            rotate: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// The settings in force, if the mesh is on.
    pub fn settings(&self) -> Option<Arc<MeshSettings>> {
        self.state().settings.clone()
    }

    /// The port peers listen on when discovery gives bare addresses.
    pub fn default_port(&self, settings: &MeshSettings) -> u16 {
        settings.port.unwrap_or(self.local.port())
    }

    /// Switches settings (a reload); `None` turns the mesh off and drops every peer series.
    /// Peers, names and results stay across a reload that keeps the mesh on.
    pub fn set_settings(&self, settings: Option<Arc<MeshSettings>>) {
        let mut s = self.state();
        if settings.is_none() {
            *s = State::default();
            return;
        }
        let large_off = settings.as_ref().is_some_and(|m| m.large_payload == 0);
        if large_off {
            s.results.retain(|(_, p), _| *p == Payload::Small);
        }
        s.settings = settings;
        let peers = std::mem::take(&mut s.peers);
        Self::choose(&mut s, peers, self.local);
    }

    /// Takes a freshly discovered peer list: leaves this agent out, picks the peers to probe,
    /// and drops the series of peers no longer probed at once.
    pub fn set_peers(&self, discovered: Vec<SocketAddr>) {
        let mut s = self.state();
        s.refreshes[0] += 1;
        Self::choose(&mut s, discovered, self.local);
    }

    /// Counts a failed refresh (the last list stays).
    pub fn refresh_failed(&self) {
        self.state().refreshes[1] += 1;
    }

    fn choose(s: &mut State, discovered: Vec<SocketAddr>, local: SocketAddr) {
        let Some(settings) = s.settings.clone() else { return };
        let mut seen = HashSet::new();
        let mut me: Option<SocketAddr> = None;
        let mut peers = Vec::with_capacity(discovered.len());
        for a in discovered {
            if !seen.insert(a) {
                continue;
            }
            if s.selves.contains(&a) || peers::is_self(a, local) {
                me = Some(a);
            } else {
                peers.push(a);
            }
        }
        // Every agent hashes the same names: the addresses as discovery gives them.
        let mut members: Vec<String> = peers.iter().map(SocketAddr::to_string).collect();
        let me_name = me.unwrap_or(local).to_string();
        members.push(me_name.clone());
        let probed: BTreeSet<SocketAddr> = hrw::choose(&me_name, &members, settings.peers_per_node)
            .into_iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        s.results.retain(|(a, _), _| probed.contains(a));
        s.reached.retain(|a, _| peers.contains(a));
        s.heard.retain(|a, _| peers.contains(a));
        s.peers = peers;
        s.probed = probed;
    }

    /// The scheduler's targets for the probed peers: `small`, and `large` unless it is off.
    pub fn targets(&self, source_cluster: &str) -> Vec<Target> {
        let s = self.state();
        let Some(settings) = &s.settings else { return Vec::new() };
        let mut out = Vec::with_capacity(s.probed.len() * 2);
        for &address in &s.probed {
            out.push(target(address, Payload::Small, 0, settings, source_cluster));
            if settings.large_payload > 0 {
                out.push(target(
                    address,
                    Payload::Large,
                    settings.large_payload,
                    settings,
                    source_cluster,
                ));
            }
        }
        out
    }

    /// Records a mesh probe's result: learns names, holds the series of a peer that is away,
    /// never records an answer from this agent itself.
    pub fn record(&self, peer: &PeerSpec, result: &ProbeResult, me: &Identity) {
        let mut s = self.state();
        if !s.probed.contains(&peer.address) {
            return; // left the mesh while the probe ran
        }
        if let Some(id) = &result.trace.peer {
            if id.node == me.node && id.network == me.network && id.source_cluster == me.source_cluster {
                if s.selves.insert(peer.address) {
                    tracing::info!(address = %peer.address, "this agent answered its own mesh probe; never probing that address again");
                }
                s.probed.remove(&peer.address);
                s.results.retain(|(a, _), _| *a != peer.address);
                return;
            }
            for (addr, node) in &id.peers {
                if let Ok(a) = addr.parse::<SocketAddr>() {
                    if s.peers.contains(&a) && !s.reached.contains_key(&a) {
                        s.heard.insert(a, node.clone());
                    }
                }
            }
            if id.away() {
                tracing::debug!(address = %peer.address, node = %id.node, state = %id.state, "peer is away; its series are held");
                return;
            }
            s.reached.insert(peer.address, id.node.clone());
        }
        let before = s.results.get(&(peer.address, peer.payload)).map(|l| l.reason);
        if before != Some(result.reason) && result.reason != Reason::None {
            tracing::warn!(
                peer = %peer.address, payload = peer.payload.as_str(), reason = result.reason.as_str(),
                error = result.error.as_deref().unwrap_or_default(), "mesh path failing"
            );
        } else if before.is_some_and(|b| b != Reason::None) && result.reason == Reason::None {
            tracing::info!(peer = %peer.address, payload = peer.payload.as_str(), "mesh path recovered");
        }
        s.results.insert(
            (peer.address, peer.payload),
            Latest {
                reason: result.reason,
                seconds: result.total.as_secs_f64(),
            },
        );
    }

    /// The body of `GET /mesh` (`bytes`: `?bytes=N`, already capped).
    pub fn answer(&self, me: &Identity, bytes: Option<usize>) -> Vec<u8> {
        let reached: Vec<(String, String)> = {
            let s = self.state();
            s.reached.iter().map(|(a, n)| (a.to_string(), n.clone())).collect()
        };
        let start = self.rotate.fetch_add(1, Ordering::Relaxed);
        // Rotate by what roughly fits, so successive answers carry different names.
        let fits = (SMALL_BUDGET / 40).max(1);
        mesh_probe::answer(me, &reached, start.wrapping_mul(fits), bytes)
    }

    /// The name of a peer: its own answer, another agent's, else its address.
    fn peer_node(s: &State, a: &SocketAddr) -> String {
        s.reached
            .get(a)
            .or_else(|| s.heard.get(a))
            .cloned()
            .unwrap_or_else(|| a.to_string())
    }

    /// Writes the mesh's families (text format; the same lines are valid OpenMetrics).
    /// Nothing when the mesh is off.
    pub fn write_metrics(&self, out: &mut String, source: &Source) {
        let s = self.state();
        if s.settings.is_none() {
            return;
        }
        let src = format!(
            "source_node=\"{}\",source_cluster=\"{}\",network=\"{}\"",
            escape(&source.node),
            escape(&source.cluster),
            escape(&source.network)
        );
        let rows: Vec<(String, String, &str, Latest)> = s
            .results
            .iter()
            .map(|((a, p), l)| (escape(&Self::peer_node(&s, a)), a.to_string(), p.as_str(), *l))
            .collect();
        let family = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        family(
            out,
            "pathprobe_peer_duration_seconds",
            "Total time of the latest mesh probe of a peer.",
        );
        for (node, addr, payload, l) in &rows {
            let _ = writeln!(
                out,
                "pathprobe_peer_duration_seconds{{{src},peer_node=\"{node}\",peer_address=\"{addr}\",payload=\"{payload}\"}} {}",
                l.seconds
            );
        }
        family(
            out,
            "pathprobe_peer_failure_reason",
            "Why the latest mesh probe of a peer failed (none on success): one series per peer and payload, set to 1.",
        );
        for (node, addr, payload, l) in &rows {
            let _ = writeln!(
                out,
                "pathprobe_peer_failure_reason{{{src},peer_node=\"{node}\",peer_address=\"{addr}\",payload=\"{payload}\",reason=\"{}\"}} 1",
                l.reason.as_str()
            );
        }
        family(
            out,
            "pathprobe_peer_success",
            "1 if the latest mesh probe of a peer succeeded, else 0.",
        );
        for (node, addr, payload, l) in &rows {
            let _ = writeln!(
                out,
                "pathprobe_peer_success{{{src},peer_node=\"{node}\",peer_address=\"{addr}\",payload=\"{payload}\"}} {}",
                u8::from(l.reason == Reason::None)
            );
        }
        family(out, "pathprobe_peers", "Mesh peers discovered (this agent left out).");
        let _ = writeln!(out, "pathprobe_peers{{{src}}} {}", s.peers.len());
        family(out, "pathprobe_peers_probed", "Mesh peers this agent probes.");
        let _ = writeln!(out, "pathprobe_peers_probed{{{src}}} {}", s.probed.len());
    }

    /// The peer-list refresh counter, written as a counter (`_total` in both formats).
    pub fn write_refreshes(&self, out: &mut String, source: &Source, openmetrics: bool) {
        let s = self.state();
        if s.settings.is_none() {
            return;
        }
        let name = "pathprobe_mesh_refreshes";
        let help = "Peer-list refreshes (DNS or static) by result; a failed one keeps the last list.";
        if openmetrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        } else {
            let _ = writeln!(out, "# HELP {name}_total {help}\n# TYPE {name}_total counter");
        }
        for (i, result) in ["success", "failure"].iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_total{{source_node=\"{}\",source_cluster=\"{}\",network=\"{}\",result=\"{result}\"}} {}",
                escape(&source.node),
                escape(&source.cluster),
                escape(&source.network),
                s.refreshes[i]
            );
        }
    }

    /// (peer address, payload, reason) of every recorded result, for the status page and tests.
    pub fn snapshot(&self) -> Vec<(SocketAddr, String, Payload, Reason)> {
        let s = self.state();
        s.results
            .iter()
            .map(|((a, p), l)| (*a, Self::peer_node(&s, a), *p, l.reason))
            .collect()
    }
}

/// A mesh probe as a scheduler target.
fn target(address: SocketAddr, payload: Payload, bytes: usize, m: &MeshSettings, cluster: &str) -> Target {
    let path = match payload {
        Payload::Small => "/mesh".to_string(),
        Payload::Large => format!("/mesh?bytes={bytes}"),
    };
    let url = url::Url::parse(&format!("http://{address}{path}")).expect("an address and a path make a URL");
    Target {
        name: format!("mesh:{}", payload.as_str()),
        job: JOB.to_string(),
        cluster: cluster.to_string(),
        instance: address.to_string(),
        kind: Kind::Http,
        endpoint: Endpoint {
            host: Host::Ip(address.ip()),
            port: address.port(),
        },
        interval: m.interval,
        timeout: m.timeout,
        tls: None,
        http: Some(HttpSpec {
            url,
            method: http::Method::GET,
            headers: Vec::new(),
            auth: None,
            expect_status: StatusRanges(vec![(200, 200)]),
            body_regex: None,
            body_limit: (MAX_PAYLOAD + 1).min(DEFAULT_BODY_LIMIT),
            max_redirects: 0,
        }),
        dns: DnsExpect::default(),
        blocked: false,
        peer: Some(Arc::new(PeerSpec {
            address,
            payload,
            bytes,
        })),
        all_addresses: None,
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
