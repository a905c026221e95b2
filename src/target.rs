//! The checked inventory: what every probe, the scheduler and the exporter take.
//!
//! Built only by `config::validate` (from YAML) or `adhoc::parse` (from the `check` command line),
//! so everything downstream can trust it: durations are positive, files were readable, secrets
//! are loaded and never printed.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The probe kinds of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A TCP connect, nothing sent.
    Tcp,
    /// A TCP connect and a TLS handshake (certificate, name, expiry).
    Tls,
    /// An HTTP request whose status (and optionally body) is judged.
    Http,
    /// A Prometheus scrape: HTTP with Prometheus's headers, the body through the exposition parser.
    Scrape,
    /// A name lookup only, optionally required to return given addresses.
    Dns,
}

impl Kind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Http => "http",
            Kind::Scrape => "scrape",
            Kind::Dns => "dns",
        }
    }

    /// Parses the config/label spelling.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "tcp" => Kind::Tcp,
            "tls" => Kind::Tls,
            "http" => Kind::Http,
            "scrape" => Kind::Scrape,
            "dns" => Kind::Dns,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a probe dials: a name to resolve or a literal address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The name or literal address to dial.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

/// A host as written in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address: dialled as is, no lookup.
    Ip(IpAddr),
    /// A name, lowercased: resolved on every probe.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Host {
    /// Parses a host as it appears in a URL or `host:port` (brackets allowed around IPv6).
    pub fn parse(s: &str) -> Host {
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(s.to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Endpoint {
    /// `host:port`, the form Prometheus shows as `instance`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A secret read from a file at load time. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value just read from its file.
    pub fn new(value: impl Into<Arc<str>>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// Credentials sent with an HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// `Authorization: Basic`, from `basic_auth`.
    Basic {
        /// Sent as written in the inventory.
        username: String,
        /// Read from `password_file`.
        password: Secret,
    },
    /// `Authorization: Bearer`, from `bearer_token_file`.
    Bearer {
        /// Read from `bearer_token_file`.
        token: Secret,
    },
}

/// Inclusive status ranges a response may have to count as success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    /// The contract's default: any 2xx.
    pub fn default_2xx() -> StatusRanges {
        StatusRanges(vec![(200, 299)])
    }
    /// Whether `status` falls in one of the ranges.
    pub fn allows(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// TLS settings, with the verifier and client identity already loaded.
#[derive(Clone)]
pub struct TlsSettings {
    /// The name sent as SNI and checked against the certificate.
    pub server_name: ServerName<'static>,
    /// Verifies the peer; the TLS probe wraps it to record the certificate whatever it says.
    pub verifier: Arc<dyn ServerCertVerifier>,
    /// True when verification is skipped (`insecure_skip_verify`).
    pub insecure_skip_verify: bool,
    /// True when the roots are the configured `ca_file` (`--ca-file`), not the system's.
    pub ca_file: bool,
    /// Client certificate chain and key for mTLS.
    pub client_identity: Option<Arc<ClientIdentity>>,
}

/// A client certificate chain and its key.
pub struct ClientIdentity {
    /// The client certificate first, then any intermediates, as sent to the server.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the first certificate.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("ca_file", &self.ca_file)
            .field("client_identity", &self.client_identity.is_some())
            .finish()
    }
}

/// The HTTP request to make and what its answer must look like.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The URL without userinfo (validation refuses URLs with credentials).
    pub url: url::Url,
    /// The request method (`GET` unless configured).
    pub method: http::Method,
    /// Extra request headers, in the inventory's order.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Credentials; dropped when a redirect leaves the host.
    pub auth: Option<Auth>,
    /// Statuses that count as success (default any 2xx).
    pub expect_status: StatusRanges,
    /// If set, the body must match or the probe fails with `body_mismatch`.
    pub body_regex: Option<Regex>,
    /// Bytes of body read at most; more is `body_too_large`.
    pub body_limit: usize,
    /// Redirects followed at most (0: not followed; a 3xx is then judged by `expect_status`).
    pub max_redirects: u8,
}

/// What a `dns` probe must find.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsExpect {
    /// If not empty, at least one of these must be among the answers.
    pub addresses: Vec<IpAddr>,
}

/// One target to probe: identity (the labels) plus everything the probe needs.
#[derive(Debug, Clone)]
pub struct Target {
    /// `target` label: the inventory name, or the ad-hoc target as typed.
    pub name: String,
    /// `target_job` label.
    pub job: String,
    /// `target_cluster` label.
    pub cluster: String,
    /// `target_instance` label: `host:port` as Prometheus shows `instance`.
    pub instance: String,
    /// What kind of probe to run.
    pub kind: Kind,
    /// Where to dial.
    pub endpoint: Endpoint,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// Time one probe may take, all phases together.
    pub timeout: Duration,
    /// For `tls`, `https` and `scrape+https`: the handshake's settings.
    pub tls: Option<TlsSettings>,
    /// For `http` and `scrape` (and mesh probes): the request and its expected answer.
    pub http: Option<HttpSpec>,
    /// For `dns`: the addresses the answer must contain.
    pub dns: DnsExpect,
    /// `expect: { blocked: true }`: success is the connection failing; connecting is
    /// `unexpectedly_reachable`.
    pub blocked: bool,
    /// Set on mesh probes only: the peer agent and the payload asked of it.
    pub peer: Option<Arc<PeerSpec>>,
    /// All-address mode: probe every address the name resolves to, at most this many, each with
    /// its own result. `None`: the first address that works.
    pub all_addresses: Option<usize>,
}

/// Which of the two mesh probes: the identity (small), or the MTU check's transfer (large).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Payload {
    /// The identity answer: proves the peer agent answers.
    Small,
    /// A padded answer of `bytes` bytes: finds paths that drop large packets (MTU black holes).
    Large,
}

impl Payload {
    /// The `payload` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Payload::Small => "small",
            Payload::Large => "large",
        }
    }
}

/// A mesh probe's peer: where its agent listens, and what is asked of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    /// The peer agent's listen address.
    pub address: std::net::SocketAddr,
    /// Which of the two mesh probes this is.
    pub payload: Payload,
    /// Bytes asked for (`large` only; 0 for `small`).
    pub bytes: usize,
}

/// A target the inventory lists as known-absent: exported as `pathprobe_target_expected 0`, never probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsentTarget {
    /// `target` label: the inventory name.
    pub name: String,
    /// `target_job` label.
    pub job: String,
    /// `target_cluster` label.
    pub cluster: String,
    /// `target_instance` label.
    pub instance: String,
    /// `kind` label, when the inventory gives one.
    pub kind: Option<Kind>,
    /// Why it is absent, as the operator wrote it; shown on the `why` series and in `diagnose`.
    pub why: String,
}

/// Which network namespace the agent probes from (`network` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The node's own network namespace (`hostNetwork: true`).
    Host,
    /// The pod network, as the workloads see it.
    Pod,
}

impl Network {
    /// The `network` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::Pod => "pod",
        }
    }
}

/// How names are resolved: the system's resolv.conf, or nameservers named in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Empty: use the system configuration.
    pub nameservers: Vec<std::net::SocketAddr>,
}

/// The agent's own identity and settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// `source_cluster` label on every series: the cluster this agent runs in.
    pub source_cluster: String,
    /// `network` label on every series: which namespace the probes leave from.
    pub network: Network,
    /// Where names are resolved.
    pub resolver: ResolverSettings,
}

/// A validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Who this agent is and how it resolves.
    pub agent: AgentSettings,
    /// The targets to probe.
    pub targets: Vec<Target>,
    /// The documented-absent targets, exported but never probed.
    pub absent: Vec<AbsentTarget>,
    /// Files the inventory read (secrets, CAs, client identities): a change to any of them is
    /// a change to the inventory, so the agent reloads.
    pub files: Vec<std::path::PathBuf>,
    /// `discovery.prometheus`: more targets from Prometheus's active targets.
    pub discovery: Option<std::sync::Arc<crate::discovery::config::Discovery>>,
    /// `mesh:`: probe the other agents.
    pub mesh: Option<std::sync::Arc<crate::mesh::config::MeshSettings>>,
}
