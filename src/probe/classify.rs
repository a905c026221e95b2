//! The one place a probe error becomes a [`Reason`], next to the errors it reads.
//!
//! Classification walks the error from the outside in: the phase the probe was in says which
//! family a failure belongs to (a timeout while connecting is `connect_timeout`, while reading the
//! response `http_timeout`), and the cause (an OS error code, a rustls error, a hyper error) picks
//! the member. A cause the table does not know falls to its family's generic member and is
//! marked as such ([`Classified::placed`] false), so the agent can log and count it: a kind of
//! failure nobody has placed yet should show, not hide under a plausible reason. Pure: no logging
//! here, the caller decides.

use std::io;

use super::{HttpError, ProbeError, ResolveError};
use crate::reason::{Phase, Reason};

/// A probe error's place in the reason table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// The reason the error is reported as.
    pub reason: Reason,
    /// The phase the error happened in.
    pub phase: Phase,
    /// False when the cause is not one the table knows and `reason` is its family's fallback.
    pub placed: bool,
}

/// A reason, and whether it was placed precisely.
type Verdict = (Reason, bool);

/// The cause is one the table knows.
fn placed(reason: Reason) -> Verdict {
    (reason, true)
}

/// The cause is not one the table knows: the family's generic member.
fn fallback(reason: Reason) -> Verdict {
    (reason, false)
}

/// Maps a probe error to its reason. The only place that does.
pub fn classify(err: &ProbeError) -> Classified {
    let phase = phase_of(err);
    let (reason, placed) = verdict(err);
    Classified { reason, phase, placed }
}

/// The phase an error happened in.
fn phase_of(err: &ProbeError) -> Phase {
    match err {
        ProbeError::Timeout { phase, .. } | ProbeError::Http { phase, .. } => *phase,
        ProbeError::Resolve { .. } | ProbeError::DnsUnexpected { .. } => Phase::Resolve,
        ProbeError::Connect { .. } | ProbeError::UnexpectedlyReachable { .. } => Phase::Connect,
        ProbeError::Tls { .. } | ProbeError::NotTls { .. } => Phase::Tls,
        ProbeError::Status { .. } | ProbeError::Redirect(_) | ProbeError::Request(_) => Phase::Request,
        ProbeError::BodyMismatch { .. }
        | ProbeError::BodyTooLarge { .. }
        | ProbeError::ScrapeInvalid(_)
        | ProbeError::NotAnAgent(_) => Phase::Transfer,
    }
}

fn verdict(err: &ProbeError) -> Verdict {
    match err {
        ProbeError::Timeout { phase, .. } => match phase {
            Phase::Resolve => placed(Reason::DnsTimeout),
            Phase::Connect => placed(Reason::ConnectTimeout),
            Phase::Tls => placed(Reason::TlsTimeout),
            Phase::Request | Phase::Transfer => placed(Reason::HttpTimeout),
            // The backstop around the whole probe fired: some step ran outside a timed phase.
            Phase::Total => fallback(Reason::HttpTimeout),
        },
        ProbeError::Resolve { source, .. } => match source {
            ResolveError::NxDomain => placed(Reason::DnsNxdomain),
            ResolveError::Timeout => placed(Reason::DnsTimeout),
            // The contract's `dns_error` is every other resolution failure.
            ResolveError::NoRecords(_) | ResolveError::Other(_) => placed(Reason::DnsError),
        },
        ProbeError::DnsUnexpected { .. } => placed(Reason::DnsError),
        ProbeError::Connect { source, .. } => connect_reason(source),
        ProbeError::Tls { source } => tls_reason(source),
        ProbeError::NotTls { .. } => placed(Reason::TlsHandshake),
        ProbeError::Http { source, .. } => http_reason(source),
        ProbeError::Status { status, .. } => match status {
            401 | 403 | 407 => placed(Reason::HttpAuth),
            500..=599 => placed(Reason::HttpServerError),
            _ => placed(Reason::HttpStatus),
        },
        ProbeError::Redirect(_) => placed(Reason::HttpProtocol),
        // Unreachable from a validated target (see the variant); no reason names a request that
        // was never sent, so it falls to the HTTP family's generic member.
        ProbeError::Request(_) => fallback(Reason::HttpProtocol),
        ProbeError::BodyMismatch { .. } | ProbeError::NotAnAgent(_) => placed(Reason::BodyMismatch),
        ProbeError::BodyTooLarge { .. } => placed(Reason::BodyTooLarge),
        ProbeError::ScrapeInvalid { .. } => placed(Reason::ScrapeInvalid),
        ProbeError::UnexpectedlyReachable { .. } => placed(Reason::UnexpectedlyReachable),
    }
}

fn connect_reason(err: &io::Error) -> Verdict {
    use io::ErrorKind as K;
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => return placed(Reason::ConnectRefused),
        Some(libc::ETIMEDOUT) => return placed(Reason::ConnectTimeout),
        Some(
            libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::EACCES
            | libc::EPERM
            | libc::EADDRNOTAVAIL,
        ) => return placed(Reason::Unreachable),
        _ => {}
    }
    match err.kind() {
        K::ConnectionRefused => placed(Reason::ConnectRefused),
        K::TimedOut => placed(Reason::ConnectTimeout),
        K::ConnectionReset | K::ConnectionAborted => placed(Reason::ConnectionReset),
        // e.g. EINVAL (a link-local address without an interface), EMFILE (out of descriptors).
        _ => fallback(Reason::Unreachable),
    }
}

fn tls_reason(err: &io::Error) -> Verdict {
    use rustls::CertificateError as C;
    use rustls::Error as E;
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        // No TLS verdict: the peer reset or closed the established TCP connection mid-handshake.
        return match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => {
                placed(Reason::ConnectionReset)
            }
            _ => fallback(Reason::TlsHandshake),
        };
    };
    match tls {
        E::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                placed(Reason::TlsExpired)
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => placed(Reason::TlsHostname),
            // Every other verdict on the certificate is that the chain does not verify.
            _ => placed(Reason::TlsUntrusted),
        },
        // The peer's protocol: an alert, nothing in common, a message out of place or malformed.
        E::AlertReceived(_)
        | E::PeerIncompatible(_)
        | E::PeerMisbehaved(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::InvalidMessage(_)
        | E::NoCertificatesPresented
        | E::UnsupportedNameType
        | E::DecryptError
        | E::PeerSentOversizedRecord
        | E::NoApplicationProtocol
        | E::HandshakeNotComplete => placed(Reason::TlsHandshake),
        // Local failures (time, randomness, our own keys), `General`, `Other`, and whatever a
        // later rustls adds.
        _ => fallback(Reason::TlsHandshake),
    }
}

fn http_reason(err: &HttpError) -> Verdict {
    match err {
        HttpError::Hyper(e) => {
            if let Some(io) = find_io(e) {
                return io_after_connect(io);
            }
            if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
                placed(Reason::HttpProtocol)
            } else if e.is_timeout() {
                placed(Reason::HttpTimeout)
            } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() || e.is_body_write_aborted() {
                // The connection ended before a whole response: closed, or the request never sent.
                placed(Reason::ConnectionReset)
            } else {
                fallback(Reason::ConnectionReset)
            }
        }
        HttpError::Io(io) => io_after_connect(io),
        HttpError::Decode(_) => placed(Reason::HttpProtocol),
    }
}

fn io_after_connect(err: &io::Error) -> Verdict {
    use io::ErrorKind as K;
    if err.get_ref().is_some_and(|e| e.is::<rustls::Error>()) {
        return tls_reason(err);
    }
    match err.kind() {
        K::TimedOut => placed(Reason::HttpTimeout),
        K::InvalidData => placed(Reason::HttpProtocol),
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe | K::NotConnected => {
            placed(Reason::ConnectionReset)
        }
        _ => fallback(Reason::ConnectionReset),
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
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    fn connect(err: io::Error) -> Classified {
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        classify(&ProbeError::Connect { addr, source: err })
    }

    #[test]
    fn refused_and_unreachable_os_errors_are_told_apart() {
        assert_eq!(
            connect(io::Error::from_raw_os_error(libc::ECONNREFUSED)).reason,
            Reason::ConnectRefused
        );
        assert_eq!(
            connect(io::Error::from_raw_os_error(libc::EHOSTUNREACH)).reason,
            Reason::Unreachable
        );
        assert_eq!(
            connect(io::Error::from_raw_os_error(libc::ENETUNREACH)).reason,
            Reason::Unreachable
        );
    }

    #[test]
    fn a_known_cause_is_placed_and_an_unknown_one_is_marked_as_a_fallback() {
        let refused = connect(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(
            refused,
            Classified {
                reason: Reason::ConnectRefused,
                phase: Phase::Connect,
                placed: true
            }
        );
        let out_of_fds = connect(io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(
            out_of_fds,
            Classified {
                reason: Reason::Unreachable,
                phase: Phase::Connect,
                placed: false
            }
        );
        let unbuildable = classify(&ProbeError::Request("uri too long".into()));
        assert_eq!(
            (unbuildable.reason, unbuildable.phase, unbuildable.placed),
            (Reason::HttpProtocol, Phase::Request, false)
        );
    }

    #[test]
    fn a_timeout_is_placed_by_its_phase_except_the_whole_probes_backstop() {
        let after = Duration::from_secs(1);
        for (phase, reason, is_placed) in [
            (Phase::Resolve, Reason::DnsTimeout, true),
            (Phase::Connect, Reason::ConnectTimeout, true),
            (Phase::Tls, Reason::TlsTimeout, true),
            (Phase::Request, Reason::HttpTimeout, true),
            (Phase::Transfer, Reason::HttpTimeout, true),
            (Phase::Total, Reason::HttpTimeout, false),
        ] {
            let c = classify(&ProbeError::Timeout { phase, after });
            assert_eq!((c.reason, c.phase, c.placed), (reason, phase, is_placed), "{phase}");
        }
    }

    #[test]
    fn a_tls_error_without_a_rustls_verdict_is_a_fallback_unless_the_peer_closed() {
        let tls = |e: io::Error| classify(&ProbeError::Tls { source: e });
        let closed = tls(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!((closed.reason, closed.placed), (Reason::ConnectionReset, true));
        let odd = tls(io::Error::from(io::ErrorKind::Unsupported));
        assert_eq!(
            (odd.reason, odd.phase, odd.placed),
            (Reason::TlsHandshake, Phase::Tls, false)
        );
        let alert = tls(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        ));
        assert_eq!((alert.reason, alert.placed), (Reason::TlsHandshake, true));
        let general = tls(io::Error::other(rustls::Error::General("odd".into())));
        assert_eq!((general.reason, general.placed), (Reason::TlsHandshake, false));
    }
}
