//! Certificates for the TLS fault servers: a throwaway CA and the leaves it issues (valid,
//! expired, for the wrong name), and self-signed ones, all made at run time (rcgen).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate and its key, as PEM (for files an inventory names) and as rustls types (for a
/// server or client config).
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate chain a server presents: the leaf alone.
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Issued {
    /// The private key, for a rustls config.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A throwaway CA that issues the certificates of one demo or test run; trust it through its
/// PEM (`ca_file`).
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate, PEM: what a target's `ca_file` holds to trust its leaves.
    pub cert_pem: String,
}

impl TestCa {
    /// A new CA with a fresh key.
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
        let (key, mut params) = leaf_params(names, "leaf");
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
    let (key, params) = leaf_params(names, "self-signed");
    let cert = params.self_signed(&key).expect("self-signing");
    issued(cert, key)
}

/// A self-signed certificate that is also a CA (`basicConstraints CA:TRUE`), as
/// `openssl req -x509` makes by default and many homelab services serve; trusted by pinning it.
pub fn self_signed_ca(names: &[&str], not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> Issued {
    let (key, mut params) = leaf_params(names, "self-signed");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).expect("self-signing");
    issued(cert, key)
}

/// A fresh key and the parameters of a leaf for `names`: each one a subjectAltName, the first
/// (or `fallback_cn` when there is none) the common name.
fn leaf_params(names: &[&str], fallback_cn: &str) -> (KeyPair, CertificateParams) {
    let key = KeyPair::generate().expect("key generation");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or(fallback_cn));
    (key, params)
}

fn issued(cert: rcgen::Certificate, key: KeyPair) -> Issued {
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}
