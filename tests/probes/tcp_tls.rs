use std::time::{Duration, SystemTime};

use pathprobe::adhoc::AdhocOptions;
use pathprobe::fault_servers::{self as testbed, Reply, TestCa};
use pathprobe::probe::{Phase, ProbeResult};
use pathprobe::reason::Reason;

use crate::common::{check, file, opts};
use crate::faults::faults;

faults! {
    tcp_probe_to_a_closed_port_is_connect_refused => ConnectRefused,
    a_server_whose_accept_queue_is_full_is_connect_timeout => ConnectTimeout,
    a_connect_the_kernel_refuses_for_want_of_a_route_is_unreachable => Unreachable,
    tls_probe_of_a_self_signed_certificate_is_untrusted_but_records_it => TlsUntrusted,
    tls_probe_of_an_expired_certificate_is_tls_expired => TlsExpired,
    tls_probe_of_a_not_yet_valid_certificate_is_tls_expired => TlsExpired,
    tls_probe_of_a_certificate_for_another_name_is_tls_hostname => TlsHostname,
    tls_probe_of_a_plain_http_port_is_tls_handshake => TlsHandshake,
    tls_probe_of_a_server_that_never_answers_the_hello_is_tls_timeout => TlsTimeout,
    a_client_certificate_refused_by_a_tls13_server_is_tls_handshake => TlsHandshake,
    a_peer_closing_during_the_tls_handshake_is_connection_reset => ConnectionReset,
    an_expired_pinned_ca_certificate_is_tls_expired => TlsExpired,
    a_not_yet_valid_pinned_ca_certificate_is_tls_expired => TlsExpired,
    a_pinned_ca_certificate_for_another_name_is_tls_hostname => TlsHostname,
    a_different_pinned_self_signed_certificate_is_tls_untrusted => TlsUntrusted,
    a_pinned_ca_certificate_only_for_client_auth_is_tls_untrusted => TlsUntrusted,
    a_client_certificate_refused_by_a_server_that_keeps_the_connection_open_is_tls_handshake => TlsHandshake,
    a_must_be_blocked_target_that_accepts_the_connection_is_unexpectedly_reachable => UnexpectedlyReachable,
}

/// Options trusting `ca` (the temporary directory holds its PEM file).
fn trusting(ca: &TestCa) -> (tempfile::TempDir, AdhocOptions) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = file(dir.path(), "ca.pem", &ca.cert_pem);
    (
        dir,
        AdhocOptions {
            ca_file: Some(ca_file),
            ..opts()
        },
    )
}

fn ok(_: &testbed::Seen<'_>) -> Reply {
    Reply::new(200, "ok\n")
}

#[tokio::test]
async fn tcp_probe_to_a_listening_port_succeeds_and_records_the_address() {
    let server = testbed::http(ok).await;
    let r = check(&format!("tcp://{}", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.address, Some(server.addr));
    assert!(r.trace.phase(Phase::Connect).is_some());
    assert_eq!(
        r.trace.phase(Phase::Resolve),
        Some(Duration::ZERO),
        "a literal address needs no lookup"
    );
}

async fn tcp_probe_to_a_closed_port_is_connect_refused() -> ProbeResult {
    let addr = testbed::refused_port().await;
    let r = check(&format!("tcp://{addr}"), &opts()).await;
    assert!(r.error.as_deref().unwrap_or("").contains("refused"), "{:?}", r.error);
    r
}

/// A listener that never accepts, its accept queue full: the kernel drops further SYNs, as it
/// does for a hung server under load.
async fn a_server_whose_accept_queue_is_full_is_connect_timeout() -> ProbeResult {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue: connect until a connection is not answered.
    let mut held = Vec::new();
    while let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        held.push(c);
        assert!(held.len() < 64, "the accept queue never filled");
    }
    let o = AdhocOptions {
        timeout: Duration::from_millis(500),
        ..opts()
    };
    let r = check(&format!("tcp://{addr}"), &o).await;
    assert!(r.trace.phase(Phase::Connect).is_some());
    drop((held, listener));
    r
}

/// TCP cannot connect to the limited broadcast address: the kernel answers `ENETUNREACH` from
/// its routing decision, before any packet is sent (no traffic leaves loopback).
async fn a_connect_the_kernel_refuses_for_want_of_a_route_is_unreachable() -> ProbeResult {
    let r = check("tcp://255.255.255.255:9", &opts()).await;
    assert_eq!(r.unplaced, None, "a placed reason, not a fallback: {:?}", r.error);
    r
}

/// A cause the reason table does not know (`EINVAL`: a link-local address without an
/// interface, refused by the kernel before any packet) is reported under its family's fallback,
/// marked as such, and counted in `pathprobe_unclassified_errors_total`.
#[tokio::test]
async fn an_error_the_reason_table_cannot_place_falls_back_marked_and_is_counted() {
    let target = crate::common::adhoc("tcp://[fe80::1]:9", &opts());
    let r = crate::common::run(&target).await;
    assert_eq!(
        (r.reason, r.unplaced),
        (Reason::Unreachable, Some(Phase::Connect)),
        "{:?}",
        r.error
    );
    assert!(
        r.error.as_deref().unwrap().contains("Invalid argument (os error 22)"),
        "{:?}",
        r.error
    );

    let exporter = std::sync::Arc::new(pathprobe::metrics::Exporter::new(&pathprobe::metrics::Source {
        node: "n1".into(),
        cluster: "lab".into(),
        network: "host".into(),
    }));
    exporter.add_target(&target);
    exporter.observe(&target, &r);
    exporter.observe(&target, &check("tcp://255.255.255.255:9", &opts()).await);
    let text = exporter.render(pathprobe::metrics::Format::Text);
    let counted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pathprobe_unclassified_errors_total{"))
        .collect();
    assert_eq!(
        counted.len(),
        Phase::ALL.len(),
        "every phase from the start: {counted:?}"
    );
    for line in counted {
        let n = if line.contains("phase=\"connect\"") { " 1" } else { " 0" };
        assert!(line.ends_with(n), "only the unplaced error counts: {line}");
    }
}

/// The agent logs a target failing with an unplaced error at warn level, with the whole error
/// chain, and serves the count (promtool accepts it).
#[test]
fn the_agent_logs_an_unplaced_error_with_its_chain_and_serves_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = file(
        dir.path(),
        "inventory.yaml",
        "agent: { source_cluster: lab }\ndefaults: { interval: 1s, timeout: 500ms }\ntargets:\n  - { name: link-local, kind: tcp, address: \"[fe80::1]:9\" }\n",
    );
    let agent = crate::agent::Agent::start(&config, "node-a", &[]);
    let text = agent.wait_metrics("the unplaced error counted", Duration::from_secs(10), |t| {
        crate::agent::value(t, "pathprobe_unclassified_errors_total", &[("phase", "connect")]).is_some_and(|n| n >= 1.0)
    });
    let (ok, report) = crate::agent::promtool_check_metrics(&text);
    assert!(ok && report.trim().is_empty(), "promtool check metrics: {report}");
    let logs = agent.logs.lock().unwrap().clone();
    let line = logs
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("the reason table cannot place"))
        })
        .unwrap_or_else(|| panic!("no warning about the unplaced error: {logs:?}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(
        (&line["reason"], &line["phase"]),
        (&"unreachable".into(), &"connect".into()),
        "{line}"
    );
    assert_eq!(
        line["error"], "connecting to [fe80::1]:9: Invalid argument (os error 22)",
        "the whole chain: {line}"
    );
}

#[tokio::test]
async fn tcp_probe_over_ipv6_loopback_succeeds() {
    let server = testbed::http_on("[::1]:0", ok).await;
    let r = check(&format!("tcp://[::1]:{}", server.addr.port()), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert!(r.trace.address.unwrap().is_ipv6());
}

#[tokio::test]
async fn tls_probe_trusting_the_issuing_ca_succeeds_and_reports_the_session() {
    let ca = TestCa::new();
    let server = testbed::https(&ca.issue_valid(&["127.0.0.1"]), ok).await;
    let (_dir, trust) = trusting(&ca);
    let r = check(&format!("tls://{}", server.addr), &trust).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    let tls = r.trace.tls.clone().expect("tls facts");
    assert_eq!(tls.version, "TLSv1.3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    let left = tls
        .peer_cert_not_after
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(360 * 86_400));
    assert!(tls.peer_cert_subject.unwrap().contains("CN=127.0.0.1"));
    assert!(r.trace.phase(Phase::Tls).is_some());
}

async fn tls_probe_of_a_self_signed_certificate_is_untrusted_but_records_it() -> ProbeResult {
    let server = testbed::https(&testbed::self_signed(&["127.0.0.1"]), ok).await;
    let r = check(&format!("tls://{}", server.addr), &opts()).await;
    let tls = r
        .trace
        .tls
        .as_ref()
        .expect("the certificate is recorded even though it failed");
    assert!(tls.peer_cert_not_after.is_some());
    r
}

async fn tls_probe_of_an_expired_certificate_is_tls_expired() -> ProbeResult {
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let cert = ca.issue(
        &["127.0.0.1"],
        now - time::Duration::days(100),
        now - time::Duration::days(10),
    );
    let server = testbed::https(&cert, ok).await;
    let (_dir, trust) = trusting(&ca);
    let r = check(&format!("tls://{}", server.addr), &trust).await;
    let not_after = r.trace.tls.as_ref().unwrap().peer_cert_not_after.unwrap();
    assert!(not_after < SystemTime::now());
    r
}

async fn tls_probe_of_a_not_yet_valid_certificate_is_tls_expired() -> ProbeResult {
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let cert = ca.issue(
        &["127.0.0.1"],
        now + time::Duration::days(10),
        now + time::Duration::days(100),
    );
    let server = testbed::https(&cert, ok).await;
    let (_dir, trust) = trusting(&ca);
    check(&format!("tls://{}", server.addr), &trust).await
}

async fn tls_probe_of_a_certificate_for_another_name_is_tls_hostname() -> ProbeResult {
    let ca = TestCa::new();
    let server = testbed::https(&ca.issue_valid(&["grafana.example.internal"]), ok).await;
    let (_dir, trust) = trusting(&ca);
    check(&format!("tls://{}", server.addr), &trust).await
}

#[tokio::test]
async fn tls_probe_with_server_name_matching_the_certificate_succeeds() {
    let ca = TestCa::new();
    let server = testbed::https(&ca.issue_valid(&["grafana.example.internal"]), ok).await;
    let (_dir, trust) = trusting(&ca);
    let o = AdhocOptions {
        server_name: Some("grafana.example.internal".into()),
        ..trust
    };
    let r = check(&format!("tls://{}", server.addr), &o).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
}

#[tokio::test]
async fn insecure_tls_probe_of_an_expired_certificate_succeeds_and_still_reports_expiry() {
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let cert = ca.issue(
        &["127.0.0.1"],
        now - time::Duration::days(100),
        now - time::Duration::days(10),
    );
    let server = testbed::https(&cert, ok).await;
    let r = check(
        &format!("tls://{}", server.addr),
        &AdhocOptions {
            insecure: true,
            ..opts()
        },
    )
    .await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert!(r.trace.tls.unwrap().peer_cert_not_after.unwrap() < SystemTime::now());
}

async fn tls_probe_of_a_plain_http_port_is_tls_handshake() -> ProbeResult {
    let server = testbed::speaking(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    check(&format!("tls://{}", server.addr), &opts()).await
}

async fn tls_probe_of_a_server_that_never_answers_the_hello_is_tls_timeout() -> ProbeResult {
    let server = testbed::hanging().await;
    let o = AdhocOptions {
        timeout: Duration::from_millis(400),
        ..opts()
    };
    let started = std::time::Instant::now();
    let r = check(&format!("tls://{}", server.addr), &o).await;
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout");
    r
}

/// A TLS server that requires a client certificate signed by `ca` and closes each connection as
/// soon as the handshake is over; reports how many certificates each accepted client presented
/// (None: the handshake failed).
async fn mtls_server(
    ca: &TestCa,
    server_cert: &testbed::Issued,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<usize>>,
) {
    mtls_server_with(ca, server_cert, 2, AfterHandshake::Close).await
}

/// What the test mTLS server does with a connection once its handshake is over (accepted or not).
#[derive(Clone, Copy)]
enum AfterHandshake {
    /// Closes it at once.
    Close,
    /// Keeps it open for ten seconds without reading or writing: no sign either way.
    Hold,
    /// Reads until the client closes, as a server waiting for a request does.
    ReadToEnd,
}

/// As [`mtls_server`], sending `tickets` TLS 1.3 session tickets after an accepted handshake
/// and then doing `after` with the connection, failed handshakes included.
async fn mtls_server_with(
    ca: &TestCa,
    server_cert: &testbed::Issued,
    tickets: usize,
    after: AfterHandshake,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<usize>>,
) {
    use tokio::io::AsyncReadExt;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(pathprobe::probe::tls::parse_pem_certs(ca.cert_pem.as_bytes()).unwrap());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        pathprobe::probe::tls::provider(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(pathprobe::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_cert.chain.clone(), server_cert.key())
        .unwrap();
    config.send_tls13_tickets = tickets;
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                match acceptor.accept(s).into_fallible().await {
                    Ok(mut tls) => {
                        let _ = seen_tx.send(tls.get_ref().1.peer_certificates().map(|c| c.len()));
                        match after {
                            AfterHandshake::Close => {}
                            AfterHandshake::Hold => tokio::time::sleep(Duration::from_secs(10)).await,
                            AfterHandshake::ReadToEnd => drop(tls.read_to_end(&mut sink).await),
                        }
                    }
                    Err((_, mut tcp)) => {
                        let _ = seen_tx.send(None);
                        match after {
                            AfterHandshake::Close => {}
                            AfterHandshake::Hold => tokio::time::sleep(Duration::from_secs(10)).await,
                            AfterHandshake::ReadToEnd => drop(tcp.read_to_end(&mut sink).await),
                        }
                    }
                }
            });
        }
    });
    (addr, seen_rx)
}

/// An inventory of one `tls` target at `addr` presenting `client` (the server trusts `ca`).
fn mtls_target(addr: std::net::SocketAddr, ca: &TestCa, client: &testbed::Issued) -> pathprobe::target::Target {
    let dir = tempfile::tempdir().unwrap();
    file(dir.path(), "ca.pem", &ca.cert_pem);
    file(dir.path(), "client.pem", &client.cert_pem);
    file(dir.path(), "client.key", &client.key_pem);
    let yaml = format!(
        "agent: {{ source_cluster: test }}\ntargets:\n  - {{ name: mtls, kind: tls, address: \"{addr}\", timeout: 2s, tls: {{ ca_file: ca.pem, cert_file: client.pem, key_file: client.key }} }}\n"
    );
    crate::common::inventory(&yaml, dir.path()).remove(0)
}

#[tokio::test]
async fn mtls_probe_presents_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server_cert = ca.issue_valid(&["127.0.0.1"]);
    let client_cert = ca.issue_valid(&["pathprobe-client"]);
    let (addr, mut seen_rx) = mtls_server(&ca, &server_cert).await;
    file(dir.path(), "ca.pem", &ca.cert_pem);
    file(dir.path(), "client.pem", &client_cert.cert_pem);
    file(dir.path(), "client.key", &client_cert.key_pem);
    let with_identity = format!(
        "agent: {{ source_cluster: test }}\ntargets:\n  - {{ name: mtls, kind: tls, address: \"{addr}\", timeout: 2s, tls: {{ ca_file: ca.pem, cert_file: client.pem, key_file: client.key }} }}\n"
    );
    let targets = crate::common::inventory(&with_identity, dir.path());
    let r = crate::common::run(&targets[0]).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(
        seen_rx.recv().await,
        Some(Some(1)),
        "the server verified one client certificate"
    );
}

async fn a_client_certificate_refused_by_a_tls13_server_is_tls_handshake() -> Vec<(String, ProbeResult)> {
    let ca = TestCa::new();
    let server_cert = ca.issue_valid(&["127.0.0.1"]);
    let (addr, _seen) = mtls_server(&ca, &server_cert).await;
    let other_ca = TestCa::new();
    let wrong = other_ca.issue_valid(&["pathprobe-client"]);
    let dir = tempfile::tempdir().unwrap();
    file(dir.path(), "ca.pem", &ca.cert_pem);
    file(dir.path(), "client.pem", &wrong.cert_pem);
    file(dir.path(), "client.key", &wrong.key_pem);
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: tls, kind: tls, address: \"{addr}\", timeout: 2s, tls: {{ ca_file: ca.pem, cert_file: client.pem, key_file: client.key }} }}\n  - {{ name: web, kind: http, url: \"https://{addr}/\", timeout: 2s, tls: {{ ca_file: ca.pem, cert_file: client.pem, key_file: client.key }} }}\n"
    );
    let mut produced = Vec::new();
    for target in crate::common::inventory(&yaml, dir.path()) {
        produced.push((target.name.clone(), crate::common::run(&target).await));
    }
    produced
}

async fn a_peer_closing_during_the_tls_handshake_is_connection_reset() -> ProbeResult {
    let server = testbed::speaking(b"").await;
    check(&format!("tls://{}", server.addr), &opts()).await
}

/// Options trusting exactly the certificate in `pem` (`--ca-file` pointing at it).
fn pinning(pem: &str) -> (tempfile::TempDir, AdhocOptions) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = file(dir.path(), "pinned.pem", pem);
    (
        dir,
        AdhocOptions {
            ca_file: Some(ca_file),
            ..opts()
        },
    )
}

fn valid_for_a_year() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::days(1), now + time::Duration::days(365))
}

#[tokio::test]
async fn a_pinned_self_signed_ca_certificate_is_trusted_when_it_is_the_ca_file() {
    let (from, to) = valid_for_a_year();
    let cert = testbed::self_signed_ca(&["127.0.0.1"], from, to);
    let server = testbed::https(&cert, ok).await;
    let (_dir, pinned) = pinning(&cert.cert_pem);
    for arg in [format!("tls://{}", server.addr), format!("https://{}/", server.addr)] {
        let r = check(&arg, &pinned).await;
        assert_eq!(r.reason, Reason::None, "{arg}: {:?}", r.error);
        assert_eq!(r.trace.tls.as_ref().unwrap().version, "TLSv1.3");
    }
    // Without the pin it is what it always was: untrusted.
    let r = check(&format!("tls://{}", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::TlsUntrusted, "{:?}", r.error);
}

#[tokio::test]
async fn a_pinned_ca_certificate_is_found_among_other_certificates_of_the_ca_file() {
    let (from, to) = valid_for_a_year();
    let cert = testbed::self_signed_ca(&["127.0.0.1"], from, to);
    let server = testbed::https(&cert, ok).await;
    let other = TestCa::new();
    let (_dir, pinned) = pinning(&format!("{}{}", other.cert_pem, cert.cert_pem));
    let r = check(&format!("tls://{}", server.addr), &pinned).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
}

async fn an_expired_pinned_ca_certificate_is_tls_expired() -> ProbeResult {
    let now = time::OffsetDateTime::now_utc();
    let cert = testbed::self_signed_ca(
        &["127.0.0.1"],
        now - time::Duration::days(400),
        now - time::Duration::days(3),
    );
    let server = testbed::https(&cert, ok).await;
    let (_dir, pinned) = pinning(&cert.cert_pem);
    check(&format!("tls://{}", server.addr), &pinned).await
}

async fn a_not_yet_valid_pinned_ca_certificate_is_tls_expired() -> ProbeResult {
    let now = time::OffsetDateTime::now_utc();
    let cert = testbed::self_signed_ca(
        &["127.0.0.1"],
        now + time::Duration::days(3),
        now + time::Duration::days(400),
    );
    let server = testbed::https(&cert, ok).await;
    let (_dir, pinned) = pinning(&cert.cert_pem);
    check(&format!("tls://{}", server.addr), &pinned).await
}

async fn a_pinned_ca_certificate_for_another_name_is_tls_hostname() -> ProbeResult {
    let (from, to) = valid_for_a_year();
    let cert = testbed::self_signed_ca(&["nas.home.arpa"], from, to);
    let server = testbed::https(&cert, ok).await;
    let (_dir, pinned) = pinning(&cert.cert_pem);
    let r = check(&format!("tls://{}", server.addr), &pinned).await;
    let named = AdhocOptions {
        server_name: Some("nas.home.arpa".into()),
        ..pinned
    };
    let with_its_name = check(&format!("tls://{}", server.addr), &named).await;
    assert_eq!(with_its_name.reason, Reason::None, "{:?}", with_its_name.error);
    r
}

async fn a_different_pinned_self_signed_certificate_is_tls_untrusted() -> ProbeResult {
    let (from, to) = valid_for_a_year();
    let served = testbed::self_signed_ca(&["127.0.0.1"], from, to);
    let other = testbed::self_signed_ca(&["127.0.0.1"], from, to);
    let server = testbed::https(&served, ok).await;
    let (_dir, pinned) = pinning(&other.cert_pem);
    check(&format!("tls://{}", server.addr), &pinned).await
}

async fn a_pinned_ca_certificate_only_for_client_auth_is_tls_untrusted() -> ProbeResult {
    let (from, to) = valid_for_a_year();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = from;
    params.not_after = to;
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    file(dir.path(), "cert.pem", &cert.pem());
    file(dir.path(), "key.pem", &key.serialize_pem());
    let identity =
        pathprobe::probe::tls::parse_identity(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(pathprobe::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = acceptor.accept(s).await;
        }
    });
    let (_pin_dir, pinned) = pinning(&cert.pem());
    check(&format!("tls://{addr}"), &pinned).await
}

/// The agent's page and log speak the inventory's words, and do not tell the operator to set
/// `tls.ca_file` when it is set.
#[tokio::test]
async fn untrusted_advice_in_inventory_words_fits_whether_ca_file_is_set() {
    use pathprobe::report::{advice, Hints};
    let (from, to) = valid_for_a_year();
    let served = testbed::self_signed_ca(&["127.0.0.1"], from, to);
    let other = testbed::self_signed_ca(&["127.0.0.1"], from, to);
    let server = testbed::https(&served, ok).await;
    let dir = tempfile::tempdir().unwrap();
    file(dir.path(), "other.pem", &other.cert_pem);
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: pinned-wrong, kind: tls, address: \"{a}\", tls: {{ ca_file: other.pem }} }}\n  - {{ name: system-roots, kind: tls, address: \"{a}\" }}\n",
        a = server.addr
    );
    let targets = crate::common::inventory(&yaml, dir.path());
    let with_ca = crate::common::run(&targets[0]).await;
    assert_eq!(with_ca.reason, Reason::TlsUntrusted);
    let words = advice(&targets[0], &with_ca, Hints::Inventory);
    assert!(
        words.contains("the CA in tls.ca_file") && !words.contains("set tls.ca_file"),
        "{words}"
    );
    let without = crate::common::run(&targets[1]).await;
    assert_eq!(without.reason, Reason::TlsUntrusted);
    let words = advice(&targets[1], &without, Hints::Inventory);
    assert!(words.contains("set tls.ca_file"), "{words}");
}

#[tokio::test]
async fn the_wait_for_a_silent_servers_verdict_on_the_client_certificate_is_not_timed_as_tls() {
    let ca = TestCa::new();
    let (addr, mut seen) = mtls_server_with(&ca, &ca.issue_valid(&["127.0.0.1"]), 0, AfterHandshake::Hold).await;
    let r = crate::common::run(&mtls_target(addr, &ca, &ca.issue_valid(&["pathprobe-client"]))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(seen.recv().await, Some(Some(1)), "the server accepted the certificate");
    let tls = r.trace.phase(Phase::Tls).expect("tls phase");
    // No ticket, no data, no close: the probe waited the whole verdict wait, outside the tls phase.
    assert!(
        tls + pathprobe::probe::tls::CLIENT_CERTIFICATE_VERDICT_WAIT <= r.total,
        "tls {tls:?} holds the verdict wait (total {:?})",
        r.total
    );
}

#[tokio::test]
async fn a_session_ticket_after_the_handshake_ends_the_wait_for_the_client_certificate_verdict() {
    let ca = TestCa::new();
    let (addr, mut seen) = mtls_server_with(&ca, &ca.issue_valid(&["127.0.0.1"]), 2, AfterHandshake::Hold).await;
    let r = crate::common::run(&mtls_target(addr, &ca, &ca.issue_valid(&["pathprobe-client"]))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(seen.recv().await, Some(Some(1)), "the server accepted the certificate");
    assert!(
        r.total < pathprobe::probe::tls::CLIENT_CERTIFICATE_VERDICT_WAIT,
        "the server's ticket proved acceptance, yet the probe took {:?}",
        r.total
    );
}

#[tokio::test]
async fn a_server_without_tickets_that_closes_on_close_notify_ends_the_wait_for_the_verdict() {
    let ca = TestCa::new();
    let (addr, mut seen) = mtls_server_with(&ca, &ca.issue_valid(&["127.0.0.1"]), 0, AfterHandshake::ReadToEnd).await;
    let r = crate::common::run(&mtls_target(addr, &ca, &ca.issue_valid(&["pathprobe-client"]))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(seen.recv().await, Some(Some(1)), "the server accepted the certificate");
    assert!(
        r.total < pathprobe::probe::tls::CLIENT_CERTIFICATE_VERDICT_WAIT,
        "the server closed after our close_notify, yet the probe took {:?}",
        r.total
    );
}

async fn a_client_certificate_refused_by_a_server_that_keeps_the_connection_open_is_tls_handshake(
) -> Vec<(String, ProbeResult)> {
    let ca = TestCa::new();
    let mut produced = Vec::new();
    for (tickets, after) in [(2, AfterHandshake::Hold), (0, AfterHandshake::ReadToEnd)] {
        let (addr, mut seen) = mtls_server_with(&ca, &ca.issue_valid(&["127.0.0.1"]), tickets, after).await;
        let wrong = TestCa::new().issue_valid(&["pathprobe-client"]);
        let r = crate::common::run(&mtls_target(addr, &ca, &wrong)).await;
        assert_eq!(seen.recv().await, Some(None), "the server refused the certificate");
        assert!(r.trace.phase(Phase::Tls).is_some());
        produced.push((format!("{tickets} tickets"), r));
    }
    produced
}

/// A must-be-blocked target built the way users write one.
fn must_be_blocked(kind: &str, where_: &str) -> pathprobe::target::Target {
    let dir = tempfile::tempdir().unwrap();
    let field = if kind == "http" { "url" } else { "address" };
    let yaml = format!(
        "agent: {{ source_cluster: lab }}\ndefaults: {{ timeout: 1s }}\ntargets:\n  - {{ name: blocked, kind: {kind}, {field}: \"{where_}\", expect: {{ blocked: true }} }}\n"
    );
    crate::common::inventory(&yaml, dir.path()).remove(0)
}

async fn a_must_be_blocked_target_that_accepts_the_connection_is_unexpectedly_reachable() -> Vec<(String, ProbeResult)>
{
    let server = testbed::http(ok).await;
    let mut produced = Vec::new();
    for (kind, at) in [
        ("tcp", server.addr.to_string()),
        ("tls", server.addr.to_string()),
        ("http", format!("http://{}/", server.addr)),
    ] {
        let r = crate::common::run(&must_be_blocked(kind, &at)).await;
        assert!(
            r.trace.tls.is_none() && r.trace.http_status.is_none(),
            "{kind}: only connected"
        );
        produced.push((kind.to_string(), r));
    }
    produced
}

#[tokio::test]
async fn a_must_be_blocked_target_that_refuses_succeeds() {
    let closed = testbed::refused_port().await;
    let r = crate::common::run(&must_be_blocked("tcp", &closed.to_string())).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
}
