//! The probe engine: one module per kind behind one signature, `probe(target, ctx) -> ProbeResult`.
//!
//! Each kind fills a [`Trace`] phase by phase and returns `Result<(), ProbeError>`; this module
//! turns the two into a [`ProbeResult`], classifying the error through `reason::classify`.
//! Every phase runs under the probe's one [`Deadline`], so a probe never outlives its timeout.

pub mod all_addresses;
pub mod dns;
pub mod http;
pub mod mesh;
pub mod resolve;
pub mod scrape;
pub mod tcp;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::time::Instant;

use crate::reason::{classify, Reason};
use crate::target::{Kind, Target};

pub use resolve::{DnsLookup, Family, FamilyLookup, FamilyOutcome, Resolver};

/// A phase of a probe, as the `phase` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Looking up the target's name.
    Resolve,
    /// The TCP connect (SYN to established).
    Connect,
    /// The TLS handshake.
    Tls,
    /// From sending the request to the response headers (first byte).
    Request,
    /// Reading the body.
    Transfer,
    /// The whole probe, start to verdict.
    Total,
}

impl Phase {
    /// Every phase, in order, `total` last.
    pub const ALL: [Phase; 6] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Request,
        Phase::Transfer,
        Phase::Total,
    ];

    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Request => "request",
            Phase::Transfer => "transfer",
            Phase::Total => "total",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finished TLS handshake (or one that got as far as the certificate) told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// e.g. `TLSv1.3`; empty when the handshake failed before agreeing on one.
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`; empty when not agreed.
    pub cipher: String,
    /// When the server's certificate expires, even when it failed verification.
    pub peer_cert_not_after: Option<SystemTime>,
    /// The certificate's subject, to tell which certificate was served.
    pub peer_cert_subject: Option<String>,
    /// The names the certificate holds (subjectAltName DNS names and IP addresses), to say
    /// which names it is for when it is not for the one asked for.
    pub peer_cert_names: Vec<String>,
}

/// Per-phase timings and facts, filled step by step as a probe runs.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Time spent in each phase that ran (summed over redirects), in order of first run.
    pub phases: Vec<(Phase, Duration)>,
    /// The address actually connected to (the first of the resolved ones that worked).
    pub address: Option<SocketAddr>,
    /// Every address the target's name resolved to (empty for a literal address).
    pub resolved: Vec<IpAddr>,
    /// How the target's name lookup went, family by family (`None` for a literal address).
    pub dns: Option<DnsLookup>,
    /// The final response's status (after redirects).
    pub http_status: Option<u16>,
    /// What the handshake showed, for kinds that speak TLS.
    pub tls: Option<TlsFacts>,
    /// Samples in a scrape body.
    pub samples: Option<u64>,
    /// Bytes of body read.
    pub body_bytes: Option<u64>,
    /// A mesh peer's identity, from its answer.
    pub peer: Option<mesh::Identity>,
}

impl Trace {
    /// Adds time to a phase.
    pub fn add(&mut self, phase: Phase, d: Duration) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, t)) => *t += d,
            None => self.phases.push((phase, d)),
        }
    }

    /// The time recorded for `phase`, if it ran.
    pub fn phase(&self, phase: Phase) -> Option<Duration> {
        self.phases.iter().find(|(p, _)| *p == phase).map(|(_, d)| *d)
    }

    /// Runs one phase under the deadline and records its time, even when it fails.
    pub async fn timed<T, E, F>(&mut self, phase: Phase, deadline: Deadline, fut: F) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<ProbeError>,
    {
        let start = Instant::now();
        let out = tokio::time::timeout_at(deadline.at, fut).await;
        self.add(phase, start.elapsed());
        match out {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(ProbeError::Timeout {
                phase,
                after: deadline.budget,
            }),
        }
    }
}

/// The instant a probe must be done by, and the budget it was given (for messages).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When the probe's time is up.
    pub at: Instant,
    /// The whole probe's timeout, quoted in timeout messages.
    pub budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }
    /// Time left.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Why resolving a name failed.
#[derive(Debug, Error)]
pub enum ResolveError {
    /// The name does not exist (NXDOMAIN).
    #[error("the name does not exist (NXDOMAIN)")]
    NxDomain,
    /// No answer from the resolver in time.
    #[error("no answer from the resolver in time")]
    Timeout,
    /// The name exists but has no address records of a usable family.
    #[error("no address records ({0})")]
    NoRecords(String),
    /// Any other failure (SERVFAIL, REFUSED, I/O with the resolver).
    #[error("{0}")]
    Other(String),
}

/// Failures while speaking HTTP on an established connection.
#[derive(Debug, Error)]
pub enum HttpError {
    /// hyper failed to write the request or read/parse the response.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// The connection failed under hyper's feet.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The body could not be decoded (bad gzip).
    #[error("decoding the body: {0}")]
    Decode(String),
}

/// Everything that can make a probe fail, each carrying its phase and cause.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// A phase ran out of the probe's time budget.
    #[error("{phase} did not finish within the {after:?} timeout")]
    Timeout {
        /// The phase that was running when the time ran out.
        phase: Phase,
        /// The probe's whole timeout.
        after: Duration,
    },
    /// Resolving the host failed.
    #[error("resolving {host}: {source}")]
    Resolve {
        /// The name being resolved.
        host: String,
        /// The resolver's verdict.
        #[source]
        source: ResolveError,
    },
    /// A `dns` probe got answers, but not the expected address.
    #[error("{host} resolved to {got}, expected one of {expected}")]
    DnsUnexpected {
        /// The name asked for.
        host: String,
        /// The addresses answered, comma-separated.
        got: String,
        /// The addresses `expect.addresses` wanted, comma-separated.
        expected: String,
    },
    /// The TCP connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The socket error (refused, timed out, unreachable, …).
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (the rustls error, if any, is inside).
    #[error("TLS handshake: {source}")]
    Tls {
        /// The I/O error; a rustls error, if any, is inside it.
        #[source]
        source: std::io::Error,
    },
    /// The peer's first bytes are not a TLS record: it speaks another protocol on that port
    /// (plain HTTP, most often, when `https://` was asked for).
    #[error("not TLS: the server's answer is not a TLS record ({source}); it speaks another protocol on that port, plain HTTP most often")]
    NotTls {
        /// What the TLS layer made of the bytes it got.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP {phase}: {source}")]
    Http {
        /// `request` (sending, waiting for headers) or `transfer` (reading the body).
        phase: Phase,
        /// hyper's, the socket's, or the decoder's error.
        #[source]
        source: HttpError,
    },
    /// The response status is not allowed by `expect.status`.
    #[error("status {status} is not in the expected {expected}")]
    Status {
        /// The status received.
        status: u16,
        /// The allowed statuses, as `expect.status` reads (`200-299`).
        expected: String,
    },
    /// A redirect could not be followed.
    #[error("redirect: {0}")]
    Redirect(String),
    /// The request could not be formed from the target's settings. Config validation refuses
    /// URLs and credentials that cannot go into a request, so this marks a gap in it.
    #[error("building the request: {0}")]
    Request(String),
    /// `expect.body_regex` did not match.
    #[error("body does not match /{regex}/")]
    BodyMismatch {
        /// The regex as configured.
        regex: String,
    },
    /// The body is over the cap.
    #[error("body is over the {limit}-byte cap")]
    BodyTooLarge {
        /// The target's `body_limit` in bytes.
        limit: usize,
    },
    /// The scrape body is not valid exposition.
    #[error("invalid exposition: {0}")]
    ScrapeInvalid(String),
    /// A mesh peer answered, but not as a pathprobe agent does.
    #[error("not a pathprobe agent: {0}")]
    NotAnAgent(String),
    /// A must-be-blocked target accepted the connection.
    #[error("connected to {addr}, which must be blocked")]
    UnexpectedlyReachable {
        /// The address that accepted.
        addr: SocketAddr,
    },
}

/// What every probe needs besides its target: the resolver.
#[derive(Clone)]
pub struct ProbeContext {
    /// Shared by every probe: configuration read once, a fresh client per lookup.
    pub resolver: Arc<Resolver>,
    /// All-address mode: this host name "resolves" to just this address, so each address of a
    /// name is probed through the same code as the default mode.
    pub pin: Option<(String, IpAddr)>,
}

impl ProbeContext {
    /// A context resolving through `resolver`.
    pub fn new(resolver: Resolver) -> ProbeContext {
        ProbeContext {
            resolver: Arc::new(resolver),
            pin: None,
        }
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// What kind of probe ran.
    pub kind: Kind,
    /// The first phase that broke, as a contract reason; `none` for success.
    pub reason: Reason,
    /// Per-phase timings and what the probe learned on the way.
    pub trace: Trace,
    /// The whole probe, start to verdict.
    pub total: Duration,
    /// The error chain as text, for people; never carries secrets.
    pub error: Option<String>,
    /// When the probe finished.
    pub finished_at: SystemTime,
    /// All-address mode: each address's own outcome, in the resolver's order (empty otherwise).
    pub addresses: Vec<AddressResult>,
}

impl ProbeResult {
    /// True when nothing failed.
    pub fn success(&self) -> bool {
        self.reason == Reason::None
    }
}

/// One address's outcome in all-address mode.
#[derive(Debug, Clone)]
pub struct AddressResult {
    /// The address probed.
    pub address: SocketAddr,
    /// This address's reason; `none` for success.
    pub reason: Reason,
    /// From the probe's start (the shared lookup included) to this address's end.
    pub total: Duration,
    /// This address's error chain as text, for people; never carries secrets.
    pub error: Option<String>,
}

impl AddressResult {
    /// True when this address passed.
    pub fn success(&self) -> bool {
        self.reason == Reason::None
    }
}

/// Probes a target once.
pub async fn probe(target: &Target, ctx: &ProbeContext) -> ProbeResult {
    if let Some(max) = target.all_addresses {
        return all_addresses::probe(target, ctx, max).await;
    }
    let start = Instant::now();
    let deadline = Deadline::after(target.timeout);
    let mut trace = Trace::default();
    let outcome = run(target, ctx, &mut trace, deadline).await;
    finish(target, trace, start, outcome)
}

/// Runs the target's kind under the deadline.
async fn run(target: &Target, ctx: &ProbeContext, trace: &mut Trace, deadline: Deadline) -> Result<(), ProbeError> {
    let run = async {
        if target.blocked {
            return blocked(target, ctx, trace, deadline).await;
        }
        if let Some(peer) = &target.peer {
            return mesh::probe(target, peer, ctx, trace, deadline).await;
        }
        match target.kind {
            Kind::Tcp => tcp::probe(target, ctx, trace, deadline).await,
            Kind::Tls => tls::probe(target, ctx, trace, deadline).await,
            Kind::Http => http::probe(target, ctx, trace, deadline).await.map(|_| ()),
            Kind::Scrape => scrape::probe(target, ctx, trace, deadline).await,
            Kind::Dns => dns::probe(target, ctx, trace, deadline).await,
        }
    };
    // Each phase already runs under the deadline; this outer bound is the backstop.
    match tokio::time::timeout_at(deadline.at + Duration::from_millis(50), run).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout {
            phase: Phase::Total,
            after: target.timeout,
        }),
    }
}

/// The result of a run: its reason (through `classify`) and error text.
fn finish(target: &Target, trace: Trace, start: Instant, outcome: Result<(), ProbeError>) -> ProbeResult {
    let (reason, error) = judge(&outcome);
    ProbeResult {
        kind: target.kind,
        reason,
        trace,
        total: start.elapsed(),
        error,
        finished_at: SystemTime::now(),
        addresses: Vec::new(),
    }
}

fn judge(outcome: &Result<(), ProbeError>) -> (Reason, Option<String>) {
    match outcome {
        Ok(()) => (Reason::None, None),
        Err(e) => (classify(e), Some(error_chain(e))),
    }
}

/// A must-be-blocked target: resolve and connect only, whatever its kind. Refused, timed out or
/// unreachable is the expected outcome; a connection is `unexpectedly_reachable`. A name that
/// does not resolve stays a DNS failure: whether the path is blocked was not learned.
async fn blocked(target: &Target, ctx: &ProbeContext, trace: &mut Trace, deadline: Deadline) -> Result<(), ProbeError> {
    match tcp::connect(ctx, &target.endpoint, trace, deadline).await {
        Ok(stream) => {
            let addr = stream.peer_addr().ok().or(trace.address);
            drop(stream);
            Err(ProbeError::UnexpectedlyReachable {
                addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], target.endpoint.port))),
            })
        }
        Err(e) => match classify(&e) {
            Reason::ConnectRefused | Reason::ConnectTimeout | Reason::Unreachable => Ok(()),
            _ => Err(e),
        },
    }
}

/// `outer: inner: innermost`, skipping causes whose text the outer message already holds.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
