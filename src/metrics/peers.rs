//! The node mesh's series, kept where every series is kept: in the exporter's state, written by
//! the same writer ([`super::write`]). The mesh ([`crate::mesh::Mesh`]) updates a row on each
//! result and removes a peer's rows when the peer leaves; the rows carry no source labels, so
//! an exporter that replaces another on reload shares them ([`super::Exporter::carry_reloads`]).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use crate::reason::Reason;
use crate::target::Payload;

/// The mesh's rows and counts, shared by the mesh and the exporter(s) that write them.
#[derive(Default)]
pub struct PeerSeries(Mutex<Peers>);

/// What the `pathprobe_peer*` and `pathprobe_mesh_*` families are written from.
#[derive(Default)]
pub(super) struct Peers {
    /// The mesh is on: its count families are written (with no peer as well).
    pub(super) on: bool,
    /// The latest result of each probed peer and payload, in address order.
    pub(super) rows: BTreeMap<(SocketAddr, Payload), Row>,
    /// `pathprobe_peers`: peers discovered, this agent left out.
    pub(super) discovered: u64,
    /// `pathprobe_peers_probed`.
    pub(super) probed: u64,
    /// `pathprobe_mesh_refreshes_total`, success then failure.
    pub(super) refreshes: [u64; 2],
}

/// One peer and payload's latest result.
pub(super) struct Row {
    /// `payload="…",peer_address="…",peer_node="…"`, rendered: the labels between `network`
    /// and `reason`/`source_cluster` in sorted order.
    pub(super) labels: Box<str>,
    /// The `peer_node` value, unescaped, to see when a peer's name changed.
    node: Box<str>,
    pub(super) reason: Reason,
    pub(super) seconds: f64,
}

impl Row {
    fn new(address: SocketAddr, payload: Payload, node: &str, reason: Reason, seconds: f64) -> Row {
        let mut labels = String::with_capacity(80);
        super::label(&mut labels, "payload", payload.as_str());
        labels.push(',');
        super::label(&mut labels, "peer_address", &address.to_string());
        labels.push(',');
        super::label(&mut labels, "peer_node", node);
        Row {
            labels: labels.into_boxed_str(),
            node: node.into(),
            reason,
            seconds,
        }
    }
}

impl PeerSeries {
    pub(super) fn lock(&self) -> MutexGuard<'_, Peers> {
        self.0.lock().expect("not poisoned")
    }

    /// Turns the mesh's families on, or off with every row and count dropped (a mesh turned
    /// off leaves no series behind; its counters restart if it comes back).
    pub fn set_on(&self, on: bool) {
        let mut p = self.lock();
        if !on {
            *p = Peers::default();
        }
        p.on = on;
    }

    /// Records a peer's latest result under its current name; returns the reason it replaces.
    pub fn record(
        &self,
        address: SocketAddr,
        payload: Payload,
        node: &str,
        reason: Reason,
        seconds: f64,
    ) -> Option<Reason> {
        let mut p = self.lock();
        match p.rows.entry((address, payload)) {
            Entry::Occupied(mut o) => {
                let row = o.get_mut();
                let before = row.reason;
                if *row.node != *node {
                    *row = Row::new(address, payload, node, reason, seconds);
                }
                (row.reason, row.seconds) = (reason, seconds);
                Some(before)
            }
            Entry::Vacant(v) => {
                v.insert(Row::new(address, payload, node, reason, seconds));
                None
            }
        }
    }

    /// A peer's name changed (learned from its answer or another agent's): its rows say so.
    pub fn rename(&self, address: SocketAddr, node: &str) {
        let mut p = self.lock();
        for ((a, payload), row) in p.rows.range_mut((address, Payload::Small)..=(address, Payload::Large)) {
            if *row.node != *node {
                *row = Row::new(*a, *payload, node, row.reason, row.seconds);
            }
        }
    }

    /// Keeps only the rows `keep` accepts: a peer that left, or a payload no longer probed,
    /// loses its series at once.
    pub fn retain(&self, mut keep: impl FnMut(SocketAddr, Payload) -> bool) {
        self.lock().rows.retain(|&(a, p), _| keep(a, p));
    }

    /// Sets `pathprobe_peers` and `pathprobe_peers_probed`.
    pub fn set_counts(&self, discovered: usize, probed: usize) {
        let mut p = self.lock();
        p.discovered = discovered as u64;
        p.probed = probed as u64;
    }

    /// Counts a peer-list refresh, successful or not.
    pub fn refreshed(&self, ok: bool) {
        self.lock().refreshes[usize::from(!ok)] += 1;
    }

    /// (address, payload, reason) of every row, in address order.
    pub fn reasons(&self) -> Vec<(SocketAddr, Payload, Reason)> {
        self.lock().rows.iter().map(|(&(a, p), r)| (a, p, r.reason)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Exporter, Format, Source};
    use super::*;
    use crate::exposition::{parse, Format as ParseFormat};

    fn exporter() -> Exporter {
        Exporter::new(&Source {
            node: "n1".into(),
            cluster: "prod".into(),
            network: "host".into(),
        })
    }

    fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn the_mesh_series_are_written_with_the_exporters_and_leave_with_their_peer() {
        let e = Arc::new(exporter());
        assert!(!e.render(Format::Text).contains("peer"), "no mesh, no mesh families");
        let series = e.peer_series();
        series.set_on(true);
        let text = e.render(Format::Text);
        assert!(text.contains("\npathprobe_peers{network=\"host\",source_cluster=\"prod\",source_node=\"n1\"} 0\n"));
        assert!(
            !text.contains("pathprobe_peer_success"),
            "a family without series is left out: {text}"
        );

        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.2:9807".parse().unwrap(), "10.0.0.3:9807".parse().unwrap());
        series.refreshed(true);
        series.refreshed(false);
        series.refreshed(true);
        series.set_counts(3, 2);
        assert_eq!(
            series.record(a, Payload::Small, "10.0.0.2:9807", Reason::None, 0.002),
            None
        );
        series.record(a, Payload::Large, "10.0.0.2:9807", Reason::HttpTimeout, 0.5);
        series.record(b, Payload::Small, "node-\"3\"", Reason::ConnectRefused, 0.001);
        series.rename(a, "node-2");
        assert_eq!(
            series.record(a, Payload::Small, "node-2", Reason::ConnectTimeout, 0.25),
            Some(Reason::None)
        );

        let text = e.render(Format::Text);
        let src = "source_cluster=\"prod\",source_node=\"n1\"";
        assert_eq!(
            lines(&text, "pathprobe_peer_success{"),
            [
                format!("pathprobe_peer_success{{network=\"host\",payload=\"small\",peer_address=\"10.0.0.2:9807\",peer_node=\"node-2\",{src}}} 0"),
                format!("pathprobe_peer_success{{network=\"host\",payload=\"large\",peer_address=\"10.0.0.2:9807\",peer_node=\"node-2\",{src}}} 0"),
                format!("pathprobe_peer_success{{network=\"host\",payload=\"small\",peer_address=\"10.0.0.3:9807\",peer_node=\"node-\\\"3\\\"\",{src}}} 0"),
            ]
        );
        assert!(text.contains(&format!(
            "pathprobe_peer_failure_reason{{network=\"host\",payload=\"large\",peer_address=\"10.0.0.2:9807\",peer_node=\"node-2\",reason=\"http_timeout\",{src}}} 1\n"
        )));
        assert!(text.contains(&format!(
            "pathprobe_peer_duration_seconds{{network=\"host\",payload=\"small\",peer_address=\"10.0.0.2:9807\",peer_node=\"node-2\",{src}}} 0.25\n"
        )));
        assert!(text.contains(&format!(
            "# TYPE pathprobe_mesh_refreshes_total counter\npathprobe_mesh_refreshes_total{{network=\"host\",result=\"success\",{src}}} 2\npathprobe_mesh_refreshes_total{{network=\"host\",result=\"failure\",{src}}} 1\n"
        )));
        assert!(
            text.contains("\npathprobe_peers_probed{network=\"host\",source_cluster=\"prod\",source_node=\"n1\"} 2\n")
        );
        parse(&text, ParseFormat::PrometheusText).unwrap();
        let om = e.render(Format::OpenMetrics);
        assert!(om.contains("# TYPE pathprobe_mesh_refreshes counter\n") && om.ends_with("# EOF\n"));
        assert_eq!(
            parse(&om, ParseFormat::OpenMetrics).unwrap().samples,
            parse(&text, ParseFormat::PrometheusText).unwrap().samples
        );

        // A reload with new source labels: the new exporter writes the same rows.
        let mut fresh = Exporter::new(&Source {
            node: "n1".into(),
            cluster: "lab".into(),
            network: "pod".into(),
        });
        fresh.carry_reloads(&e);
        let fresh = Arc::new(fresh);
        let moved = fresh.render(Format::Text);
        assert_eq!(lines(&moved, "pathprobe_peer_success{").len(), 3, "{moved}");
        assert!(
            moved.contains("pathprobe_peer_success{network=\"pod\",payload=\"small\",peer_address=\"10.0.0.3:9807\"")
        );

        // A peer that left loses its rows; a mesh turned off leaves nothing.
        series.retain(|addr, _| addr != a);
        let text = fresh.render(Format::Text);
        assert_eq!(lines(&text, "pathprobe_peer_duration_seconds{").len(), 1, "{text}");
        assert!(!text.contains("10.0.0.2"));
        series.set_on(false);
        let text = fresh.render(Format::Text);
        assert!(!text.contains("peer") && !text.contains("mesh"), "{text}");
    }
}
