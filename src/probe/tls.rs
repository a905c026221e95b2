//! The `tls` probe: tcp, then a rustls handshake that records the peer certificate whatever the
//! verdict on it (an expired or self-signed certificate is the evidence the operator needs).

use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{tcp, Deadline, Phase, ProbeContext, ProbeError, TlsFacts, Trace};
use crate::target::{ClientIdentity, Target, TlsSettings};

/// Why TLS settings could not be built from the config. [`TlsConfigError::field`] says which
/// setting is at fault, so the config names that field without reading the message.
#[derive(Debug, Error)]
pub enum TlsConfigError {
    /// `server_name` (or the host it defaults to) is not a DNS name or IP address.
    #[error("{0:?} is not a valid DNS name or IP address")]
    BadServerName(String),
    /// The CA file holds no usable certificate.
    #[error("no PEM certificate could be used from it ({0})")]
    BadCa(String),
    /// The client certificate chain is unusable.
    #[error("cert_file: {0}")]
    BadCert(String),
    /// The client key is unusable, or does not belong to the certificate.
    #[error("key_file: {0}")]
    BadKey(String),
    /// No verifier could be built from the trust roots (the CA file's, or the system's).
    #[error("building the verifier: {why}")]
    Verifier {
        /// Whether the roots were a CA file's (else the system's).
        ca_file: bool,
        /// What the verifier's builder said.
        why: String,
    },
}

/// A TLS setting, as the config names it: what a [`TlsConfigError`] blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsField {
    /// `server_name`: the name sent as SNI and checked (by default the URL's or address's host).
    ServerName,
    /// `ca_file`: the roots trusted instead of the system's.
    CaFile,
    /// `cert_file`: the client certificate chain for mTLS.
    CertFile,
    /// `key_file`: the client certificate's key.
    KeyFile,
    /// The trust roots as a whole: the system's, when no `ca_file` is given.
    Roots,
}

impl TlsConfigError {
    /// The setting at fault.
    pub fn field(&self) -> TlsField {
        match self {
            TlsConfigError::BadServerName(_) => TlsField::ServerName,
            TlsConfigError::BadCa(_) => TlsField::CaFile,
            TlsConfigError::BadCert(_) => TlsField::CertFile,
            TlsConfigError::BadKey(_) => TlsField::KeyFile,
            TlsConfigError::Verifier { ca_file: true, .. } => TlsField::CaFile,
            TlsConfigError::Verifier { ca_file: false, .. } => TlsField::Roots,
        }
    }

    /// What is wrong, without the field's name (the config puts its own path in front).
    pub fn reason(&self) -> String {
        match self {
            TlsConfigError::BadCert(why) | TlsConfigError::BadKey(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trust roots, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for err in &loaded.errors {
                tracing::warn!(error = %err, "loading a system trust root");
            }
            let (added, ignored) = store.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system trust roots loaded");
            Arc::new(store)
        })
        .clone()
}

/// Parses PEM certificates.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut &pem[..]).collect();
    let certs = certs.map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no BEGIN CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// Parses a client identity from PEM certificate chain and key.
pub fn parse_identity(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientIdentity, TlsConfigError> {
    let chain = parse_pem_certs(cert_pem).map_err(TlsConfigError::BadCert)?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsConfigError::BadKey(e.to_string()))?
        .ok_or_else(|| TlsConfigError::BadKey("no PRIVATE KEY block found".into()))?;
    // rustls checks the pair only when a handshake uses it; check now, so a mismatch is a config
    // error rather than every probe failing as if the target were at fault.
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())
        .map_err(|e| TlsConfigError::BadKey(format!("does not belong to cert_file ({e})")))?;
    Ok(ClientIdentity { chain, key })
}

/// Builds checked TLS settings: the verifier over `ca_pem` (or the system roots), or none at all
/// when `insecure_skip_verify`.
pub fn settings(
    server_name: &str,
    ca_pem: Option<&[u8]>,
    insecure_skip_verify: bool,
    identity: Option<ClientIdentity>,
) -> Result<TlsSettings, TlsConfigError> {
    let bare = server_name.trim_start_matches('[').trim_end_matches(']');
    let server_name =
        ServerName::try_from(bare.to_string()).map_err(|_| TlsConfigError::BadServerName(server_name.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure_skip_verify {
        Arc::new(AcceptAnyCert)
    } else {
        let (roots, pinned) = match ca_pem {
            Some(pem) => {
                let mut store = RootCertStore::empty();
                let certs = parse_pem_certs(pem).map_err(TlsConfigError::BadCa)?;
                let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    return Err(TlsConfigError::BadCa("none of its certificates is a usable CA".into()));
                }
                (Arc::new(store), certs)
            }
            None => (system_roots(), Vec::new()),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsConfigError::Verifier {
                ca_file: ca_pem.is_some(),
                why: e.to_string(),
            })?;
        if pinned.is_empty() {
            webpki
        } else {
            Arc::new(ChainOrPinned { webpki, pinned })
        }
    };
    Ok(TlsSettings {
        server_name,
        verifier,
        insecure_skip_verify,
        ca_file: ca_pem.is_some(),
        client_identity: identity.map(Arc::new),
    })
}

/// Probes a target with tcp + a TLS handshake.
pub async fn probe(
    target: &Target,
    settings: &TlsSettings,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    let tcp = tcp::connect(ctx, &target.endpoint, trace, deadline).await?;
    let mut stream = handshake(tcp, settings, trace, deadline).await?;
    if settings.client_identity.is_some()
        && stream.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    {
        await_client_certificate_verdict(&mut stream, trace, deadline).await?;
    }
    Ok(())
}

/// The longest a TLS 1.3 probe with a client certificate waits for the server's verdict on it
/// when the server shows nothing either way (no ticket, no data, no close).
pub const CLIENT_CERTIFICATE_VERDICT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// In TLS 1.3 the client's side of the handshake ends before the server has checked the client
/// certificate; a rejection arrives as an alert right after. So that a refused certificate is
/// `tls_handshake`, not success, wait for the server's verdict: an alert refuses; a session ticket
/// (sent only once the server has the client's Finished, so after the certificate passed), data
/// or a close accepts. Sending close_notify first makes a server that waits for a request (most
/// do) close at once. The `tls` phase stays the handshake as the client completed it, like
/// without a client certificate; only a refusal adds the time until its alert.
async fn await_client_certificate_verdict(
    stream: &mut TlsStream<TcpStream>,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    use std::task::Poll;
    use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
    let wait = deadline.remaining().min(CLIENT_CERTIFICATE_VERDICT_WAIT);
    let start = tokio::time::Instant::now();
    let verdict = tokio::time::timeout(wait, async {
        // A failed close_notify (the server already gone) leaves its cause for the read to report.
        let _ = stream.shutdown().await;
        std::future::poll_fn(|cx| {
            let mut byte = [0u8; 1];
            match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut ReadBuf::new(&mut byte)) {
                Poll::Pending if stream.get_ref().1.tls13_tickets_received() > 0 => Poll::Ready(Ok(())),
                other => other,
            }
        })
        .await
    })
    .await;
    match verdict {
        Ok(Err(source)) if source.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            trace.add(Phase::Tls, start.elapsed());
            Err(ProbeError::Tls { source })
        }
        _ => Ok(()),
    }
}

/// Runs the handshake on a connected stream, recording the `tls` phase and the TLS facts.
pub async fn handshake(
    tcp: TcpStream,
    settings: &TlsSettings,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<TlsStream<TcpStream>, ProbeError> {
    handshake_alpn(tcp, settings, trace, deadline, &[]).await
}

/// As [`handshake`], offering ALPN protocols (HTTP asks for `http/1.1`).
pub async fn handshake_alpn(
    tcp: TcpStream,
    settings: &TlsSettings,
    trace: &mut Trace,
    deadline: Deadline,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, ProbeError> {
    let seen = Arc::new(Mutex::new(None));
    let verifier = Arc::new(Recording {
        inner: settings.verifier.clone(),
        seen: seen.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &settings.client_identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| ProbeError::Tls {
                source: std::io::Error::other(e),
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = TlsConnector::from(Arc::new(config));
    let result = trace
        .timed(Phase::Tls, deadline, async {
            connector
                .connect(settings.server_name.clone(), tcp)
                .await
                .map_err(|source| {
                    if is_not_tls(&source) {
                        ProbeError::NotTls { source }
                    } else {
                        ProbeError::Tls { source }
                    }
                })
        })
        .await;
    let mut facts = TlsFacts::default();
    if let Some(der) = seen.lock().expect("not poisoned").take() {
        describe_certificate(&der, &mut facts);
    }
    if let Ok(stream) = &result {
        let (_, conn) = stream.get_ref();
        facts.version = conn.protocol_version().map(version_name).unwrap_or_default();
        facts.cipher = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
    }
    // After redirects, the facts stay the target's own (the first hop's).
    if facts != TlsFacts::default() && trace.tls.is_none() {
        trace.tls = Some(facts);
    }
    result
}

/// rustls's verdict on a first record whose content type is not TLS's: the peer sent something
/// else (`HTTP/1.1 400 …`, an SSH banner).
fn is_not_tls(err: &std::io::Error) -> bool {
    matches!(
        err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Fills expiry and subject from the leaf certificate.
fn describe_certificate(der: &[u8], facts: &mut TlsFacts) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let ts = cert.validity().not_after.timestamp();
            facts.peer_cert_not_after = u64::try_from(ts)
                .ok()
                .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
            facts.peer_cert_subject = Some(cert.subject().to_string());
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(n) => facts.peer_cert_names.push(n.to_string()),
                        x509_parser::extensions::GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                                16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                                _ => None,
                            };
                            facts.peer_cert_names.extend(ip.map(|ip| ip.to_string()));
                        }
                        _ => {}
                    }
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "peer certificate could not be parsed"),
    }
}

/// Delegates every decision to the configured verifier, but keeps the leaf certificate first.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("not poisoned") = Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The configured CA file's verifier: webpki's chain check, plus one case webpki refuses and
/// Go's verifier (so Prometheus) and curl accept: the server presents one of the CA file's own
/// certificates. `openssl req -x509` makes a self-signed certificate with `CA:TRUE`, which
/// webpki will not take as an end entity (`CaUsedAsEndEntity`) even when it is the very trust
/// anchor. Such a pinned certificate is still checked for its validity period, its extended key
/// usage and the name asked for; the handshake signature is verified as for any certificate.
#[derive(Debug)]
struct ChainOrPinned {
    webpki: Arc<WebPkiServerVerifier>,
    /// The CA file's certificates, as written.
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ChainOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(e) if is_ca_used_as_end_entity(&e) && self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                verify_pinned(end_entity, server_name, now)
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
        }
        _ => false,
    }
}

/// What is left to check of a server certificate that is itself a configured trust anchor:
/// the time, the purpose, the name (as Go's `Verify` does for a leaf found in its roots).
fn verify_pinned(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    use rustls::CertificateError as C;
    let bad_encoding = || rustls::Error::InvalidCertificate(C::BadEncoding);
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| bad_encoding())?;
    let secs = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp()).map(|s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s)))
    };
    let not_before = secs(cert.validity().not_before).unwrap_or(UnixTime::since_unix_epoch(Default::default()));
    let not_after = secs(cert.validity().not_after).map_err(|_| rustls::Error::InvalidCertificate(C::Expired))?;
    if now.as_secs() < not_before.as_secs() {
        return Err(rustls::Error::InvalidCertificate(C::NotValidYetContext {
            time: now,
            not_before,
        }));
    }
    if now.as_secs() > not_after.as_secs() {
        return Err(rustls::Error::InvalidCertificate(C::ExpiredContext {
            time: now,
            not_after,
        }));
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if !eku.value.any && !eku.value.server_auth {
            return Err(rustls::Error::InvalidCertificate(C::InvalidPurpose));
        }
    }
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    Ok(ServerCertVerified::assertion())
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are still
/// checked so the session is at least with the holder of the certificate's key.
#[derive(Debug)]
struct AcceptAnyCert;

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
