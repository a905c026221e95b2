use std::time::{Duration, SystemTime};

use pathprobe::adhoc::AdhocOptions;
use pathprobe::probe::Phase;
use pathprobe::reason::Reason;
use pathprobe::testbed::{self, Reply, TestCa};

use crate::common::{check, file, opts};

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

#[tokio::test]
async fn tcp_probe_to_a_closed_port_is_connect_refused() {
    let addr = testbed::refused_port().await;
    let r = check(&format!("tcp://{addr}"), &opts()).await;
    assert_eq!(r.reason, Reason::ConnectRefused);
    assert!(r.error.as_deref().unwrap_or("").contains("refused"), "{:?}", r.error);
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

#[tokio::test]
async fn tls_probe_of_a_self_signed_certificate_is_untrusted_but_records_it() {
    let server = testbed::https(&testbed::self_signed(&["127.0.0.1"]), ok).await;
    let r = check(&format!("tls://{}", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::TlsUntrusted, "{:?}", r.error);
    let tls = r.trace.tls.expect("the certificate is recorded even though it failed");
    assert!(tls.peer_cert_not_after.is_some());
}

#[tokio::test]
async fn tls_probe_of_an_expired_certificate_is_tls_expired() {
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
    assert_eq!(r.reason, Reason::TlsExpired, "{:?}", r.error);
    let not_after = r.trace.tls.unwrap().peer_cert_not_after.unwrap();
    assert!(not_after < SystemTime::now());
}

#[tokio::test]
async fn tls_probe_of_a_not_yet_valid_certificate_is_tls_expired() {
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let cert = ca.issue(
        &["127.0.0.1"],
        now + time::Duration::days(10),
        now + time::Duration::days(100),
    );
    let server = testbed::https(&cert, ok).await;
    let (_dir, trust) = trusting(&ca);
    let r = check(&format!("tls://{}", server.addr), &trust).await;
    assert_eq!(r.reason, Reason::TlsExpired, "{:?}", r.error);
}

#[tokio::test]
async fn tls_probe_of_a_certificate_for_another_name_is_tls_hostname() {
    let ca = TestCa::new();
    let server = testbed::https(&ca.issue_valid(&["grafana.example.internal"]), ok).await;
    let (_dir, trust) = trusting(&ca);
    let r = check(&format!("tls://{}", server.addr), &trust).await;
    assert_eq!(r.reason, Reason::TlsHostname, "{:?}", r.error);
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

#[tokio::test]
async fn tls_probe_of_a_plain_http_port_is_tls_handshake() {
    let server = testbed::speaking(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    let r = check(&format!("tls://{}", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::TlsHandshake, "{:?}", r.error);
}

#[tokio::test]
async fn tls_probe_of_a_server_that_never_answers_the_hello_is_tls_timeout() {
    let server = testbed::hanging().await;
    let o = AdhocOptions {
        timeout: Duration::from_millis(400),
        ..opts()
    };
    let started = std::time::Instant::now();
    let r = check(&format!("tls://{}", server.addr), &o).await;
    assert_eq!(r.reason, Reason::TlsTimeout, "{:?}", r.error);
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout");
}

/// A TLS server that requires a client certificate signed by `ca`; reports how many
/// certificates each accepted client presented (None: the handshake failed).
async fn mtls_server(
    ca: &TestCa,
    server_cert: &testbed::Issued,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<usize>>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(pathprobe::probe::tls::parse_pem_certs(ca.cert_pem.as_bytes()).unwrap());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        pathprobe::probe::tls::provider(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(pathprobe::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_cert.chain.clone(), server_cert.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let presented = match acceptor.accept(s).await {
                Ok(tls) => tls.get_ref().1.peer_certificates().map(|c| c.len()),
                Err(_) => None,
            };
            let _ = seen_tx.send(presented);
        }
    });
    (addr, seen_rx)
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

#[tokio::test]
async fn a_client_certificate_refused_by_a_tls13_server_is_tls_handshake() {
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
    for target in crate::common::inventory(&yaml, dir.path()) {
        let r = crate::common::run(&target).await;
        assert_eq!(r.reason, Reason::TlsHandshake, "{}: {:?}", target.name, r.error);
    }
}

#[tokio::test]
async fn a_peer_closing_during_the_tls_handshake_is_connection_reset() {
    let server = testbed::speaking(b"").await;
    let r = check(&format!("tls://{}", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::ConnectionReset, "{:?}", r.error);
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

#[tokio::test]
async fn a_must_be_blocked_target_that_accepts_the_connection_is_unexpectedly_reachable() {
    let server = testbed::http(ok).await;
    for (kind, at) in [
        ("tcp", server.addr.to_string()),
        ("tls", server.addr.to_string()),
        ("http", format!("http://{}/", server.addr)),
    ] {
        let r = crate::common::run(&must_be_blocked(kind, &at)).await;
        assert_eq!(r.reason, Reason::UnexpectedlyReachable, "{kind}: {:?}", r.error);
        assert!(
            r.trace.tls.is_none() && r.trace.http_status.is_none(),
            "{kind}: only connected"
        );
    }
}

#[tokio::test]
async fn a_must_be_blocked_target_that_refuses_succeeds() {
    let closed = testbed::refused_port().await;
    let r = crate::common::run(&must_be_blocked("tcp", &closed.to_string())).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
}
