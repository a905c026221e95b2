//! A tiny authoritative DNS server over UDP and TCP on one port, for the resolve-phase faults:
//! NXDOMAIN, SERVFAIL, NODATA, silence, one address family dropped, a truncated UDP answer; it
//! logs every question so a test can see what the resolver asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::Server;

/// How the test DNS server answers a name.
#[derive(Debug, Clone)]
pub enum DnsAnswer {
    /// These addresses (A for IPv4, AAAA for IPv6; an empty answer for the other family).
    Addresses(Vec<std::net::IpAddr>),
    /// The name exists but has no address records: NOERROR with an empty answer (NODATA).
    NoData,
    /// Answers AAAA questions with these addresses' IPv6 part and drops A questions.
    DropA(Vec<std::net::IpAddr>),
    /// Answers A questions with these addresses' IPv4 part and drops AAAA questions (some
    /// home-router forwarders; the Kubernetes conntrack race on parallel UDP questions).
    DropAaaa(Vec<std::net::IpAddr>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// No answer at all.
    Silent,
}

/// One question the test DNS server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    /// The name asked, lower case, without the final dot.
    pub name: String,
    /// `A`, `AAAA`, or the type number.
    pub qtype: String,
    /// Asked over TCP (after a truncated UDP answer).
    pub tcp: bool,
}

/// Every question a test DNS server received, in order.
pub type DnsLog = Arc<std::sync::Mutex<Vec<DnsQuery>>>;

/// A tiny authoritative DNS server on loopback for tests and the demo; unknown names are NXDOMAIN.
pub async fn dns(zone: Vec<(&'static str, DnsAnswer)>) -> Server {
    dns_on("127.0.0.1:0".parse().expect("literal"), zone).await.0
}

/// The test DNS server on `bind` (port 0: any), over UDP and TCP on the same port, with the log
/// of the questions it got. A UDP answer over 512 bytes is truncated (TC set, no records), as a
/// server without EDNS does, so the client must ask again over TCP.
pub async fn dns_on(bind: SocketAddr, zone: Vec<(&'static str, DnsAnswer)>) -> (Server, DnsLog) {
    let (udp, tcp) = dns_sockets(bind).await;
    let addr = udp.local_addr().expect("bound");
    let log = DnsLog::default();
    let zone = Arc::new(zone);
    let server_log = log.clone();
    let server = Server::spawn(addr, move |stop| async move {
        let mut tcp_conns = JoinSet::new();
        let mut buf = [0u8; 1500];
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                received = udp.recv_from(&mut buf) => {
                    let Ok((n, peer)) = received else { continue };
                    if let Some(mut reply) = dns_reply(&buf[..n], &zone, false, &server_log) {
                        if reply.len() > 512 {
                            reply = truncated(&reply);
                        }
                        let _ = udp.send_to(&reply, peer).await;
                    }
                }
                accepted = tcp.accept() => match accepted {
                    Ok((stream, _)) => {
                        tcp_conns.spawn(dns_tcp_conn(stream, zone.clone(), server_log.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = tcp_conns.join_next() => {}
            }
        }
        drop((udp, tcp));
        tcp_conns.shutdown().await;
    });
    (server, log)
}

/// A UDP socket and a TCP listener on the same port.
async fn dns_sockets(bind: SocketAddr) -> (tokio::net::UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind(bind).await.expect("binding a UDP port");
        let addr = udp.local_addr().expect("bound");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on {bind}");
}

/// Serves length-prefixed questions on one TCP connection.
async fn dns_tcp_conn(mut stream: TcpStream, zone: Arc<Vec<(&'static str, DnsAnswer)>>, log: DnsLog) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        if let Some(reply) = dns_reply(&query, &zone, true, &log) {
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
    }
}

/// The header and question of `reply` with TC set and no records.
fn truncated(reply: &[u8]) -> Vec<u8> {
    let mut pos = 12;
    while pos < reply.len() && reply[pos] != 0 {
        pos += 1 + reply[pos] as usize;
    }
    let question_end = (pos + 5).min(reply.len());
    let mut out = reply[..question_end].to_vec();
    out[2] |= 0x02; // TC
    out[6..12].fill(0); // no answer, authority or additional records
    out
}

/// Builds the reply to one query, or `None` to stay silent.
fn dns_reply(query: &[u8], zone: &[(&'static str, DnsAnswer)], tcp: bool, log: &DnsLog) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // Question: labels up to the root, then QTYPE and QCLASS.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let question = query.get(12..question_end)?;
    let name = labels.join(".");
    log.lock().expect("not poisoned").push(DnsQuery {
        name: name.clone(),
        qtype: match qtype {
            1 => "A".to_string(),
            28 => "AAAA".to_string(),
            n => n.to_string(),
        },
        tcp,
    });
    let answer = zone
        .iter()
        .find(|(n, _)| n.trim_end_matches('.').eq_ignore_ascii_case(&name))
        .map(|(_, a)| a.clone())
        .unwrap_or(DnsAnswer::NxDomain);
    let (rcode, records): (u8, Vec<Vec<u8>>) = match answer {
        DnsAnswer::Silent => return None,
        DnsAnswer::DropA(_) if qtype == 1 => return None,
        DnsAnswer::DropAaaa(_) if qtype == 28 => return None,
        DnsAnswer::NxDomain => (3, vec![]),
        DnsAnswer::ServFail => (2, vec![]),
        DnsAnswer::NoData => (0, vec![]),
        DnsAnswer::Addresses(ips) | DnsAnswer::DropA(ips) | DnsAnswer::DropAaaa(ips) => (
            0,
            ips.iter()
                .filter_map(|ip| match (ip, qtype) {
                    (std::net::IpAddr::V4(v4), 1) => Some((1u16, v4.octets().to_vec())),
                    (std::net::IpAddr::V6(v6), 28) => Some((28u16, v6.octets().to_vec())),
                    _ => None,
                })
                .map(|(rtype, rdata)| {
                    let mut rr = vec![0xC0, 0x0C];
                    rr.extend_from_slice(&rtype.to_be_bytes());
                    rr.extend_from_slice(&1u16.to_be_bytes());
                    rr.extend_from_slice(&60u32.to_be_bytes());
                    rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    rr.extend_from_slice(&rdata);
                    rr
                })
                .collect(),
        ),
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[0..2]);
    let rd = query[2] & 0x01;
    out.push(0x84 | rd); // QR, AA, RD as asked
    out.push(0x80 | rcode); // RA, rcode
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(question);
    for rr in records {
        out.extend_from_slice(&rr);
    }
    Some(out)
}
