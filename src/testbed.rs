//! Loopback targets that fail in one specific way each: the demo's tour and the tests' fixtures.
//!
//! Every server binds `127.0.0.1:0` (or `[::1]:0`) and runs until its [`Server`] is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A running loopback server; stops when dropped.
pub struct Server {
    /// Where it listens (on loopback).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A canned HTTP answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Response headers, as sent.
    pub headers: Vec<(&'static str, String)>,
    /// The response body.
    pub body: Bytes,
}

impl Reply {
    /// A reply with this status and body and no extra headers.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// What a request looked like, for handlers that answer by it.
pub struct Seen<'a> {
    /// The request path (without the query).
    pub path: &'a str,
    /// The request's headers.
    pub headers: &'a http::HeaderMap,
}

type Handler = Arc<dyn Fn(&Seen<'_>) -> Reply + Send + Sync>;

/// A certificate and its key, as PEM and as rustls types.
pub struct Issued {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The leaf certificate, as a rustls chain.
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Issued {
    /// The private key as rustls takes it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A throwaway CA that issues the certificates of one demo or test run.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate, PEM: what a target's `ca_file` trusts.
    pub cert_pem: String,
}

impl TestCa {
    /// A fresh CA with its own key.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("key generation");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SANs are valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "pathprobe test CA");
        let cert = params.self_signed(&key).expect("self-signing");
        TestCa {
            cert_pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A leaf for `names` (DNS names or IPs), valid from `not_before` to `not_after`.
    pub fn issue(&self, names: &[&str], not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> Issued {
        let key = KeyPair::generate().expect("key generation");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("signing");
        issued(cert, key)
    }

    /// A leaf valid now for a year.
    pub fn issue_valid(&self, names: &[&str]) -> Issued {
        let now = time::OffsetDateTime::now_utc();
        self.issue(names, now - time::Duration::days(1), now + time::Duration::days(365))
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A self-signed leaf, trusted by nobody.
pub fn self_signed(names: &[&str]) -> Issued {
    let key = KeyPair::generate().expect("key generation");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("self-signed"));
    let cert = params.self_signed(&key).expect("self-signing");
    issued(cert, key)
}

/// A self-signed certificate that is also a CA (`basicConstraints CA:TRUE`), as
/// `openssl req -x509` makes by default and many homelab services serve; trusted by pinning it.
pub fn self_signed_ca(names: &[&str], not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> Issued {
    let key = KeyPair::generate().expect("key generation");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("self-signed"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).expect("self-signing");
    issued(cert, key)
}

fn issued(cert: rcgen::Certificate, key: KeyPair) -> Issued {
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

async fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.expect("binding a loopback port")
}

fn spawn_accept<F, Fut>(listener: TcpListener, on_conn: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(on_conn(stream));
        }
    });
    Server { addr, task }
}

fn to_response(reply: Reply) -> http::Response<Full<Bytes>> {
    let mut builder = http::Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(reply.body)).expect("valid canned reply")
}

async fn serve_http<S>(io: S, handler: Handler)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let seen = Seen {
                path: req.uri().path(),
                headers: req.headers(),
            };
            Ok::<_, Infallible>(to_response(handler(&seen)))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// An HTTP server answering every request through `handler`, on `bind_addr` (e.g. `127.0.0.1:0`).
pub async fn http_on(bind_addr: &str, handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Server {
    let handler: Handler = Arc::new(handler);
    spawn_accept(bind(bind_addr).await, move |stream| serve_http(stream, handler.clone()))
}

/// An HTTP server on `127.0.0.1:0`.
pub async fn http(handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Server {
    http_on("127.0.0.1:0", handler).await
}

/// An HTTPS server presenting `cert`, on `127.0.0.1:0`.
pub async fn https(cert: &Issued, handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static) -> Server {
    https_on("127.0.0.1:0", cert, handler).await
}

/// An HTTPS server presenting `cert`, on `bind_addr` (the image test serves a network namespace).
pub async fn https_on(
    bind_addr: &str,
    cert: &Issued,
    handler: impl Fn(&Seen<'_>) -> Reply + Send + Sync + 'static,
) -> Server {
    let handler: Handler = Arc::new(handler);
    let acceptor = tls_acceptor(cert);
    spawn_accept(bind(bind_addr).await, move |stream| {
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                serve_http(tls, handler).await;
            }
        }
    })
}

/// A TLS acceptor presenting `cert`.
pub fn tls_acceptor(cert: &Issued) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(crate::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key())
        .expect("a matching certificate and key");
    TlsAcceptor::from(Arc::new(config))
}

/// Accepts and then never answers: reads until the client gives up, then lets the connection go
/// (holding it after the client's FIN left one socket in CLOSE-WAIT per probe, forever).
pub async fn hanging() -> Server {
    spawn_accept(bind("127.0.0.1:0").await, |mut stream| async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
}

/// Accepts, reads the request, then resets the connection (RST, via SO_LINGER 0).
pub async fn resetting() -> Server {
    spawn_accept(bind("127.0.0.1:0").await, |mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.set_zero_linger();
        drop(stream);
    })
}

/// Answers whatever is sent with `bytes` and closes: a non-HTTP service on the port.
pub async fn speaking(bytes: &'static [u8]) -> Server {
    spawn_accept(bind("127.0.0.1:0").await, move |mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
    })
}

/// Sends a valid response head, then drips the body one byte per `every`, forever.
pub async fn dripping(every: std::time::Duration) -> Server {
    spawn_accept(bind("127.0.0.1:0").await, move |mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head).await.is_err() {
            return;
        }
        loop {
            if stream.write_all(b"1\r\nx\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A port on which nothing listens, and nothing can: a socket bound to it that never listens
/// (without `SO_REUSEADDR`, so no other socket can bind it), kept for the rest of the process.
/// The kernel answers a SYN to it with a reset. Binding a port and releasing it instead let
/// another process take it before the probe ran.
pub async fn refused_port() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("binding a loopback port");
    let addr = socket.local_addr().expect("bound");
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    addr
}

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
    let (udp_log, tcp_log, tcp_zone) = (log.clone(), log.clone(), zone.clone());
    let task = tokio::spawn(async move {
        // Owned here, so aborting this task stops the TCP side too.
        let mut tcp_side = tokio::task::JoinSet::new();
        tcp_side.spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                tokio::spawn(dns_tcp_conn(stream, tcp_zone.clone(), tcp_log.clone()));
            }
        });
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            if let Some(mut reply) = dns_reply(&buf[..n], &zone, false, &udp_log) {
                if reply.len() > 512 {
                    reply = truncated(&reply);
                }
                let _ = udp.send_to(&reply, peer).await;
            }
        }
    });
    (Server { addr, task }, log)
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
