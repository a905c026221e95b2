//! Finding the other agents: the A/AAAA records of a headless Service through the engine's own
//! hickory resolver (no Kubernetes API, so no watch load on large clusters), or a static list.
//! Re-read every `refresh` by a task that reports to the control loop, which keeps the last good
//! list when DNS fails.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::config::{MeshSettings, PeerSource};
use crate::probe::Resolver;

/// One refresh's outcome.
#[derive(Debug)]
pub enum Refresh {
    /// The agents' addresses this refresh found.
    Peers(Vec<SocketAddr>),
    /// The list could not be read (the message says why); the last list keeps being probed.
    Failed(String),
}

/// Whether `addr` is this agent: its port is the listen port, and its IP is one of this network
/// namespace's own (the kernel lets a socket bind only to a local address). With a specific
/// listen IP, that IP must match.
pub fn is_self(addr: SocketAddr, local: SocketAddr) -> bool {
    if addr.port() != local.port() {
        return false;
    }
    if !local.ip().is_unspecified() {
        return addr.ip() == local.ip();
    }
    UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
}

/// The peer addresses, once.
pub async fn discover(settings: &MeshSettings, port: u16, resolver: &Resolver) -> Result<Vec<SocketAddr>, String> {
    match &settings.peers {
        PeerSource::Static(list) => Ok(list
            .iter()
            .map(|(ip, p)| SocketAddr::new(*ip, p.unwrap_or(port)))
            .collect()),
        PeerSource::Dns(name) => {
            let budget = settings.refresh.min(std::time::Duration::from_secs(10));
            let ask = resolver.lookup(name, crate::probe::Deadline::after(budget));
            match tokio::time::timeout(budget, ask).await.map(|(_, r)| r) {
                Ok(Ok(ips)) => {
                    let mut out: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect();
                    out.sort();
                    out.dedup();
                    Ok(out)
                }
                Ok(Err(e)) => Err(format!("resolving the peers' name {name}: {e}")),
                Err(_) => Err(format!("resolving the peers' name {name}: no answer in time")),
            }
        }
    }
}

/// The refresh task; stops when dropped.
pub struct Runner {
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl Runner {
    /// Reads the peer list now and on every `refresh`.
    pub fn spawn(settings: Arc<MeshSettings>, port: u16, resolver: Arc<Resolver>, tx: mpsc::Sender<Refresh>) -> Runner {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let refresh = match discover(&settings, port, &resolver).await {
                    Ok(peers) => Refresh::Peers(peers),
                    Err(e) => Refresh::Failed(e),
                };
                if tx.send(refresh).await.is_err() {
                    return;
                }
            }
        });
        Runner {
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_agent_is_its_own_listen_port_on_a_local_address_only() {
        let local: SocketAddr = "0.0.0.0:9807".parse().unwrap();
        assert!(is_self("127.0.0.1:9807".parse().unwrap(), local));
        assert!(!is_self("127.0.0.1:9808".parse().unwrap(), local));
        // TEST-NET-1 is nobody's address here.
        assert!(!is_self("192.0.2.11:9807".parse().unwrap(), local));
        let specific: SocketAddr = "127.0.0.1:9807".parse().unwrap();
        assert!(!is_self("127.0.0.2:9807".parse().unwrap(), specific));
    }
}
