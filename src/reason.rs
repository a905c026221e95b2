//! The contract's closed table of failure reasons, and the one place that maps a probe error to one.
//!
//! Classification walks the error from the outside in: the phase the probe was in says which
//! family a failure belongs to (a timeout while connecting is `connect_timeout`, while reading the
//! response `http_timeout`), and the cause (an OS error code, a rustls error, a hyper error) picks
//! the member. What cannot be placed falls to the family's generic member and is logged.

use std::io;

use crate::probe::{Phase, ProbeError};

/// Why a probe failed: the first phase that broke. `None` on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Success: nothing failed.
    None,
    /// The name does not exist.
    DnsNxdomain,
    /// No answer from the resolver in time.
    DnsTimeout,
    /// Any other resolution failure (SERVFAIL, no records, …).
    DnsError,
    /// TCP RST to the SYN: nothing listening, or a REJECT rule.
    ConnectRefused,
    /// No answer to the SYN within the timeout: a black hole, a DROP rule, a NetworkPolicy.
    ConnectTimeout,
    /// The kernel or an ICMP message says the host or network cannot be reached.
    Unreachable,
    /// The handshake failed for a protocol reason: not TLS on that port, nothing in common, an alert.
    TlsHandshake,
    /// The certificate chain does not verify against the configured roots (self-signed, unknown CA).
    TlsUntrusted,
    /// The certificate is expired or not yet valid.
    TlsExpired,
    /// The certificate does not cover the name asked for.
    TlsHostname,
    /// The handshake did not finish in time.
    TlsTimeout,
    /// The peer reset or closed the connection after it was established.
    ConnectionReset,
    /// Connected, but the response did not finish in time (hangs, slow bodies).
    HttpTimeout,
    /// The bytes back are not a valid HTTP response.
    HttpProtocol,
    /// 401, 403 or 407 when not expected.
    HttpAuth,
    /// A 5xx when not expected (the API-server proxy's `503 ServiceUnavailable`).
    HttpServerError,
    /// Any other status `expect.status` does not allow.
    HttpStatus,
    /// `expect.body_regex` did not match.
    BodyMismatch,
    /// The body is over the configured cap.
    BodyTooLarge,
    /// A `scrape` body is not valid exposition.
    ScrapeInvalid,
    /// A must-be-blocked target (`expect: { blocked: true }`) accepted the connection.
    UnexpectedlyReachable,
}

impl Reason {
    /// Every reason, in the contract's order.
    pub const ALL: [Reason; 22] = [
        Reason::None,
        Reason::DnsNxdomain,
        Reason::DnsTimeout,
        Reason::DnsError,
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::Unreachable,
        Reason::TlsHandshake,
        Reason::TlsUntrusted,
        Reason::TlsExpired,
        Reason::TlsHostname,
        Reason::TlsTimeout,
        Reason::ConnectionReset,
        Reason::HttpTimeout,
        Reason::HttpProtocol,
        Reason::HttpAuth,
        Reason::HttpServerError,
        Reason::HttpStatus,
        Reason::BodyMismatch,
        Reason::BodyTooLarge,
        Reason::ScrapeInvalid,
        Reason::UnexpectedlyReachable,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::DnsNxdomain => "dns_nxdomain",
            Reason::DnsTimeout => "dns_timeout",
            Reason::DnsError => "dns_error",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::Unreachable => "unreachable",
            Reason::TlsHandshake => "tls_handshake",
            Reason::TlsUntrusted => "tls_untrusted",
            Reason::TlsExpired => "tls_expired",
            Reason::TlsHostname => "tls_hostname",
            Reason::TlsTimeout => "tls_timeout",
            Reason::ConnectionReset => "connection_reset",
            Reason::HttpTimeout => "http_timeout",
            Reason::HttpProtocol => "http_protocol",
            Reason::HttpAuth => "http_auth",
            Reason::HttpServerError => "http_server_error",
            Reason::HttpStatus => "http_status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::BodyTooLarge => "body_too_large",
            Reason::ScrapeInvalid => "scrape_invalid",
            Reason::UnexpectedlyReachable => "unexpectedly_reachable",
        }
    }

    /// What was observed and what usually causes it, in the runbook's words.
    pub fn meaning(self) -> &'static str {
        match self {
            Reason::None => "reachable and answering as expected",
            Reason::DnsNxdomain => "the name does not exist (NXDOMAIN) — a typo, a deleted Service, or the wrong search domain",
            Reason::DnsTimeout => "the resolver did not answer — CoreDNS down, or DNS (udp/53) blocked from this node",
            Reason::DnsError => "the resolver answered without a usable address — SERVFAIL, or no records of that family",
            Reason::ConnectRefused => "the host answered the SYN with a reset — nothing listens on that port, or a REJECT rule",
            Reason::ConnectTimeout => "nothing answered the SYN — a firewall or NetworkPolicy drop, or a routing black hole",
            Reason::Unreachable => "the kernel or a router says there is no route — a down interface, a missing route, or an ICMP unreachable from a firewall",
            Reason::TlsHandshake => "not TLS on that port, no common version or cipher, or the peer sent an alert",
            Reason::TlsUntrusted => "the chain does not verify against the trusted roots — self-signed or an unknown CA",
            Reason::TlsExpired => "renew the certificate, or check this node's clock",
            Reason::TlsHostname => "fix the URL, or set tls.server_name to a name the certificate holds",
            Reason::TlsTimeout => "the port accepts connections but the handshake stalls — a hung server or a middlebox",
            Reason::ConnectionReset => "the server crashed or closed it, or a proxy or conntrack cut it",
            Reason::HttpTimeout => "connected, but the server hangs or sends its body too slowly",
            Reason::HttpProtocol => "another protocol on that port, or it expects TLS (use https://)",
            Reason::HttpAuth => "the target refused the credentials — check the password or token file and the user's permissions",
            Reason::HttpServerError => "the target or a proxy in front of it failed — e.g. the API-server proxy unable to dial the pod",
            Reason::HttpStatus => "the target answers, but not with a status it is expected to",
            Reason::BodyMismatch => "the target answers, but not with the expected content",
            Reason::BodyTooLarge => "raise body_limit if the target is right to be this large",
            Reason::ScrapeInvalid => "Prometheus would fail this scrape too — a broken exporter, or not a metrics endpoint",
            Reason::UnexpectedlyReachable => "a target that must be blocked accepted the connection — a missing or changed firewall rule or NetworkPolicy",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps a probe error to its reason. The only place that does.
pub fn classify(err: &ProbeError) -> Reason {
    match err {
        ProbeError::Timeout { phase, .. } => match phase {
            Phase::Resolve => Reason::DnsTimeout,
            Phase::Connect => Reason::ConnectTimeout,
            Phase::Tls => Reason::TlsTimeout,
            Phase::Request | Phase::Transfer | Phase::Total => Reason::HttpTimeout,
        },
        ProbeError::Resolve { source, .. } => match source {
            crate::probe::ResolveError::NxDomain => Reason::DnsNxdomain,
            crate::probe::ResolveError::Timeout => Reason::DnsTimeout,
            _ => Reason::DnsError,
        },
        ProbeError::DnsUnexpected { .. } => Reason::DnsError,
        ProbeError::Connect { source, .. } => connect_reason(source),
        ProbeError::Tls { source } => tls_reason(source),
        ProbeError::NotTls { .. } => Reason::TlsHandshake,
        ProbeError::Http { source, .. } => http_reason(source),
        ProbeError::Status { status, .. } => match status {
            401 | 403 | 407 => Reason::HttpAuth,
            500..=599 => Reason::HttpServerError,
            _ => Reason::HttpStatus,
        },
        ProbeError::Redirect { .. } => Reason::HttpProtocol,
        // Unreachable from a validated target (see the variant); no reason names a request that
        // was never sent, so it falls to the HTTP family's generic member, and is logged.
        ProbeError::Request(e) => {
            tracing::warn!(error = %e, "a request could not be built from a validated target");
            Reason::HttpProtocol
        }
        ProbeError::BodyMismatch { .. } | ProbeError::NotAnAgent(_) => Reason::BodyMismatch,
        ProbeError::BodyTooLarge { .. } => Reason::BodyTooLarge,
        ProbeError::ScrapeInvalid { .. } => Reason::ScrapeInvalid,
        ProbeError::UnexpectedlyReachable { .. } => Reason::UnexpectedlyReachable,
    }
}

fn connect_reason(err: &io::Error) -> Reason {
    use io::ErrorKind as K;
    match err.raw_os_error() {
        Some(libc_code::ECONNREFUSED) => return Reason::ConnectRefused,
        Some(libc_code::ETIMEDOUT) => return Reason::ConnectTimeout,
        Some(
            libc_code::EHOSTUNREACH
            | libc_code::ENETUNREACH
            | libc_code::ENETDOWN
            | libc_code::EHOSTDOWN
            | libc_code::EACCES
            | libc_code::EPERM
            | libc_code::EADDRNOTAVAIL,
        ) => return Reason::Unreachable,
        _ => {}
    }
    match err.kind() {
        K::ConnectionRefused => Reason::ConnectRefused,
        K::TimedOut => Reason::ConnectTimeout,
        K::ConnectionReset | K::ConnectionAborted => Reason::ConnectionReset,
        other => {
            tracing::debug!(kind = ?other, error = %err, "unplaced connect error counted as unreachable");
            Reason::Unreachable
        }
    }
}

/// Linux errno values; kept here rather than pulling in `libc` for six numbers.
mod libc_code {
    pub const EPERM: i32 = 1;
    pub const EACCES: i32 = 13;
    pub const ENETDOWN: i32 = 100;
    pub const ENETUNREACH: i32 = 101;
    pub const ETIMEDOUT: i32 = 110;
    pub const ECONNREFUSED: i32 = 111;
    pub const EHOSTDOWN: i32 = 112;
    pub const EHOSTUNREACH: i32 = 113;
    pub const EADDRNOTAVAIL: i32 = 99;
}

fn tls_reason(err: &io::Error) -> Reason {
    use rustls::CertificateError as C;
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        // No TLS verdict: the peer reset or closed the established TCP connection mid-handshake.
        return match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => {
                Reason::ConnectionReset
            }
            _ => Reason::TlsHandshake,
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => Reason::TlsExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => Reason::TlsHostname,
            _ => Reason::TlsUntrusted,
        },
        _ => Reason::TlsHandshake,
    }
}

fn http_reason(err: &crate::probe::HttpError) -> Reason {
    use crate::probe::HttpError;
    match err {
        HttpError::Hyper(e) => {
            if let Some(io) = find_io(e) {
                return io_after_connect(io);
            }
            if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
                Reason::HttpProtocol
            } else if e.is_timeout() {
                Reason::HttpTimeout
            } else {
                // Incomplete message, connection closed before the response, cancelled.
                Reason::ConnectionReset
            }
        }
        HttpError::Io(io) => io_after_connect(io),
        HttpError::Decode(_) => Reason::HttpProtocol,
    }
}

fn io_after_connect(err: &io::Error) -> Reason {
    if err.get_ref().is_some_and(|e| e.is::<rustls::Error>()) {
        return tls_reason(err);
    }
    match err.kind() {
        io::ErrorKind::TimedOut => Reason::HttpTimeout,
        io::ErrorKind::InvalidData => Reason::HttpProtocol,
        _ => Reason::ConnectionReset,
    }
}

fn find_io<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_label_is_distinct_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {r}");
            assert!(r.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(seen.len(), 22);
    }

    #[test]
    fn refused_and_unreachable_os_errors_are_told_apart() {
        let refused = io::Error::from_raw_os_error(111);
        let unreach = io::Error::from_raw_os_error(113);
        let netunreach = io::Error::from_raw_os_error(101);
        assert_eq!(connect_reason(&refused), Reason::ConnectRefused);
        assert_eq!(connect_reason(&unreach), Reason::Unreachable);
        assert_eq!(connect_reason(&netunreach), Reason::Unreachable);
    }
}
