//! The mesh probe: an `http` probe whose target is another agent's `/mesh`.
//!
//! The exchange is the `http` kind's (same phases, deadline and reasons); only the judging is
//! the mesh's own. `small` must answer 200 with a pathprobe identity, `large` with exactly the
//! bytes asked for. A 503 carrying an identity in state `starting` or `draining` is the peer
//! being away (a rollout, a drain), not a broken path: the probe succeeds and says so in
//! [`Trace::peer`], and the mesh holds that peer's series instead of recording the answer.

use http::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{http as http_probe, Deadline, ProbeContext, ProbeError, Trace};
use crate::target::{Payload, PeerSpec, Target};

/// The largest `?bytes=N` an agent answers.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A pathprobe agent's answer to `GET /mesh`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The peer's `source_node`.
    pub node: String,
    /// The peer's `source_cluster`.
    pub source_cluster: String,
    /// The peer's `network`: `host` or `pod`.
    pub network: String,
    /// `ready`, `starting` or `draining`.
    #[serde(default = "ready")]
    pub state: String,
    /// Peers the answering agent has reached: address → node name.
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, String>,
}

fn ready() -> String {
    "ready".into()
}

impl Identity {
    /// True while the agent starts or drains: its peers count it as away.
    pub fn away(&self) -> bool {
        self.state == "starting" || self.state == "draining"
    }
}

/// Probes one peer with one payload.
pub async fn probe(
    target: &Target,
    peer: &PeerSpec,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    let spec = target
        .http
        .as_ref()
        .expect("mesh probes are built with their http spec");
    let mut extra = HeaderMap::new();
    extra.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("pathprobe/", env!("CARGO_PKG_VERSION"))),
    );
    let response = http_probe::fetch(target, ctx, trace, deadline, &extra).await?;
    let identity = parse(&response.body);
    if response.status == 503 {
        if let Some(id) = identity.as_ref().filter(|id| id.away()) {
            trace.peer = Some(id.clone());
            return Ok(());
        }
    }
    http_probe::judge(spec, &response)?;
    if peer.payload == Payload::Large && response.body.len() != peer.bytes {
        return Err(ProbeError::NotAnAgent(format!(
            "asked for {} bytes, got {}",
            peer.bytes,
            response.body.len()
        )));
    }
    match identity {
        Some(id) => {
            trace.peer = Some(id);
            Ok(())
        }
        // The large answer may be filler only when it is smaller than an identity.
        None if peer.payload == Payload::Large => Ok(()),
        None => Err(ProbeError::NotAnAgent(
            "the answer is not a pathprobe identity (node, source_cluster, network)".into(),
        )),
    }
}

/// A pathprobe identity, if `body` is one (trailing padding allowed).
pub fn parse(body: &[u8]) -> Option<Identity> {
    let id: Identity = serde_json::from_slice(body).ok()?;
    (!id.node.is_empty()).then_some(id)
}

/// The `/mesh` answer: the identity, with as many of `peers` as fit in `size` bytes (padded with
/// spaces to exactly `size` when given). `small` answers use [`SMALL_BUDGET`], so that they stay
/// below any path MTU whatever the number of peers; `start` rotates which peers are included, so
/// every name reaches every asker over a few probes.
pub fn answer(identity: &Identity, peers: &[(String, String)], start: usize, size: Option<usize>) -> Vec<u8> {
    let budget = size.unwrap_or(SMALL_BUDGET);
    let mut id = identity.clone();
    id.peers.clear();
    let mut out = serde_json::to_vec(&id).expect("an identity serializes");
    if !peers.is_empty() {
        // Each entry costs `"addr":"node",` (quotes escaped by serde); keep adding while it fits.
        for i in 0..peers.len() {
            let (addr, node) = &peers[(start + i) % peers.len()];
            id.peers.insert(addr.clone(), node.clone());
            let next = serde_json::to_vec(&id).expect("an identity serializes");
            if next.len() > budget {
                id.peers.remove(addr);
                break;
            }
            out = next;
        }
    }
    match size {
        Some(n) if out.len() <= n => {
            out.resize(n, b' ');
            out
        }
        // Smaller than an identity: filler only.
        Some(n) => vec![b' '; n],
        None => out,
    }
}

/// What a `small` answer may weigh: with HTTP headers, well under the 1280 bytes every IPv6 path
/// carries.
pub const SMALL_BUDGET: usize = 900;

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            node: "n1".into(),
            source_cluster: "prod".into(),
            network: "host".into(),
            state: "ready".into(),
            peers: Default::default(),
        }
    }

    fn many(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("10.0.{}.{}:9807", i / 250, i % 250), format!("node-{i}")))
            .collect()
    }

    #[test]
    fn a_small_answer_stays_under_its_budget_however_many_peers() {
        for n in [0, 1, 10, 1000] {
            let body = answer(&id(), &many(n), 0, None);
            assert!(body.len() <= SMALL_BUDGET, "{n} peers: {} bytes", body.len());
            let back = parse(&body).unwrap();
            assert_eq!(back.node, "n1");
            assert_eq!(back.peers.len().min(n), back.peers.len());
        }
    }

    #[test]
    fn rotating_the_start_passes_every_name_over_successive_answers() {
        let peers = many(100);
        let mut seen = std::collections::BTreeSet::new();
        let mut start = 0;
        for _ in 0..20 {
            let back = parse(&answer(&id(), &peers, start, None)).unwrap();
            start += back.peers.len();
            seen.extend(back.peers.into_keys());
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn a_large_answer_is_exactly_the_size_asked_and_still_an_identity() {
        for n in [8192, 1500, MAX_PAYLOAD] {
            let body = answer(&id(), &many(500), 3, Some(n));
            assert_eq!(body.len(), n);
            assert_eq!(parse(&body).unwrap().node, "n1");
        }
        assert_eq!(answer(&id(), &[], 0, Some(10)), vec![b' '; 10]);
    }

    #[test]
    fn something_that_is_not_an_identity_is_refused() {
        assert!(parse(b"ok").is_none());
        assert!(parse(br#"{"status":"ok"}"#).is_none());
        assert!(parse(br#"{"node":"","source_cluster":"a","network":"host"}"#).is_none());
    }
}
