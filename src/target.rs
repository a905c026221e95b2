//! The checked inventory: what every probe, the scheduler and the exporter take.
//!
//! Built only by `config::validate` (from YAML) or `adhoc::parse` (from the `check` command line),
//! so everything downstream can trust it: durations are positive, files were readable, secrets
//! are loaded and never printed.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The probe kinds of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Resolve and connect.
    Tcp,
    /// Connect, then a TLS handshake.
    Tls,
    /// One HTTP request, its status and body judged.
    Http,
    /// A request made as Prometheus scrapes, its body parsed as Prometheus would.
    Scrape,
    /// Resolve a name.
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
    /// The name or address dialled.
    pub host: Host,
    /// The port dialled (53 for a dns target, which dials none).
    pub port: u16,
}

/// A host as written in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address: no lookup.
    Ip(IpAddr),
    /// A name, lower-cased, resolved at every probe.
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
    /// Wraps a value read from a secret file.
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
    /// `basic_auth`: the password from `password_file`.
    Basic {
        /// Sent as written (no `:` in it).
        username: String,
        /// From the file `basic_auth.password_file` names.
        password: Secret,
    },
    /// `bearer_token_file`: `Authorization: Bearer <token>`.
    Bearer {
        /// From the file, surrounding whitespace trimmed.
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
    /// Whether a response with `status` counts as success.
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
    /// The client certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The certificate's private key (checked to match it when the config loads).
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
    /// `method` (GET by default; a scrape's is always GET).
    pub method: http::Method,
    /// `headers`, in the order written; values that look like credentials are marked sensitive.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `basic_auth` or `bearer_token_file`, sent on the target's host only.
    pub auth: Option<Auth>,
    /// `expect.status`: the statuses that count as success (any 2xx by default).
    pub expect_status: StatusRanges,
    /// `expect.body_regex`: the body must match it, else `body_mismatch`.
    pub body_regex: Option<Regex>,
    /// Bytes of body read at most; more is `body_too_large`.
    pub body_limit: usize,
    /// Redirects followed at most (0: not followed; a 3xx is then judged by `expect_status`).
    pub max_redirects: u8,
    /// TLS for an `https` URL (and the verifier redirects to https keep); `None` for `http`.
    pub tls: Option<TlsSettings>,
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
    /// Where the probe dials (a dns target: the name it resolves).
    pub endpoint: Endpoint,
    /// Time between two probes.
    pub interval: Duration,
    /// Time one probe may take, every phase included.
    pub timeout: Duration,
    /// What the probe checks, with the settings only its kind has; the `kind` label follows
    /// from it.
    pub check: Check,
    /// `expect: { blocked: true }`: success is the connection failing; connecting is
    /// `unexpectedly_reachable`.
    pub blocked: bool,
    /// All-address mode: probe every address the name resolves to, at most this many, each with
    /// its own result. `None`: the first address that works.
    pub all_addresses: Option<usize>,
}

impl Target {
    /// The probe kind, as the `kind` label shows it (a mesh probe is `http`).
    pub fn kind(&self) -> Kind {
        self.check.kind()
    }

    /// The TLS settings, for a tls target and an https one; `None` for the others.
    pub fn tls(&self) -> Option<&TlsSettings> {
        match &self.check {
            Check::Tls(tls) => Some(tls),
            _ => self.http().and_then(|spec| spec.tls.as_ref()),
        }
    }

    /// The HTTP request and its expected answer, for http, scrape and mesh targets.
    pub fn http(&self) -> Option<&HttpSpec> {
        match &self.check {
            Check::Http(spec) | Check::Scrape(spec) => Some(spec),
            Check::Mesh(mesh) => Some(&mesh.http),
            Check::Tcp | Check::Tls(_) | Check::Dns(_) => None,
        }
    }

    /// The peer agent a mesh probe asks; `None` for inventory targets.
    pub fn peer(&self) -> Option<&PeerSpec> {
        match &self.check {
            Check::Mesh(mesh) => Some(&mesh.peer),
            _ => None,
        }
    }
}

/// What a probe checks, per kind: each variant holds exactly the settings its kind needs, so the
/// engine finds them by matching, never by trusting that validation filled an optional field.
/// The settings are boxed: a target is one of 10k on every node, and most of its bytes would
/// otherwise be a largest variant most targets do not have.
#[derive(Debug, Clone)]
pub enum Check {
    /// `kind: tcp`: the connection is the check.
    Tcp,
    /// `kind: tls`: a handshake under these settings.
    Tls(Box<TlsSettings>),
    /// `kind: http`: one request, its answer judged.
    Http(Box<HttpSpec>),
    /// `kind: scrape`: a request made as Prometheus makes it, its body parsed as Prometheus would.
    Scrape(Box<HttpSpec>),
    /// `kind: dns`: the name resolves (to one of the expected addresses, if any).
    Dns(Box<DnsExpect>),
    /// A mesh probe of another agent's `/mesh`: an http request judged as the mesh judges it.
    Mesh(Box<MeshSpec>),
}

impl Check {
    /// The `kind` label of a target that checks this.
    pub fn kind(&self) -> Kind {
        match self {
            Check::Tcp => Kind::Tcp,
            Check::Tls(_) => Kind::Tls,
            Check::Http(_) | Check::Mesh(_) => Kind::Http,
            Check::Scrape(_) => Kind::Scrape,
            Check::Dns(_) => Kind::Dns,
        }
    }
}

/// A mesh probe's request, and the peer and payload it asks for.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    /// The request to the peer's `/mesh` (plain http, 200 expected).
    pub http: HttpSpec,
    /// Who is asked, and for what.
    pub peer: PeerSpec,
}

/// Which of the two mesh probes: the identity (small), or the MTU check's transfer (large).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Payload {
    /// `GET /mesh`: the peer's identity.
    Small,
    /// `GET /mesh?bytes=N`: N bytes, enough to cross a too-small MTU.
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
    /// Which of the two probes this is.
    pub payload: Payload,
    /// Bytes asked for (`large` only; 0 for `small`).
    pub bytes: usize,
}

/// A target the inventory lists as known-absent: exported as `pathprobe_target_expected 0`, never probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsentTarget {
    /// `target` label.
    pub name: String,
    /// `target_job` label.
    pub job: String,
    /// `target_cluster` label.
    pub cluster: String,
    /// `target_instance` label: where it would be, empty when the inventory does not say.
    pub instance: String,
    /// `kind` label, when the inventory gives one.
    pub kind: Option<Kind>,
    /// `why`: why it is absent, shown with the target and its alert.
    pub why: String,
}

/// Which network namespace the agent probes from (`network` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The node's network namespace (a hostNetwork DaemonSet).
    Host,
    /// The pod's own network namespace.
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
    /// `source_cluster` label: the cluster this agent runs in.
    pub source_cluster: String,
    /// `network` label: where the agent probes from.
    pub network: Network,
    /// How the agent resolves names.
    pub resolver: ResolverSettings,
}

/// A validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// `agent:`: who probes.
    pub agent: AgentSettings,
    /// The targets to probe, one per address (ranges expanded).
    pub targets: Vec<Target>,
    /// Documented-absent targets (`expected: false`): exported, never probed.
    pub absent: Vec<AbsentTarget>,
    /// Files the inventory read (secrets, CAs, client identities): a change to any of them is
    /// a change to the inventory, so the agent reloads.
    pub files: Vec<std::path::PathBuf>,
    /// `discovery.prometheus`: more targets from Prometheus's active targets.
    pub discovery: Option<std::sync::Arc<crate::discovery::config::Discovery>>,
    /// `mesh:`: probe the other agents.
    pub mesh: Option<std::sync::Arc<crate::mesh::config::MeshSettings>>,
}

/// A target's identity as label values: `target`, `target_job`, `target_instance`,
/// `target_cluster`, `kind`. One shared allocation holding the five values back to back: the
/// scheduler, the status rows and the exporter each key a map by it, at every target, and a
/// clone shares the text rather than copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLabels {
    text: Arc<str>,
    ends: [u32; 5],
}

impl TargetLabels {
    fn from_parts(parts: [&str; 5]) -> TargetLabels {
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 5];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.push_str(part);
            *end = text.len() as u32;
        }
        TargetLabels {
            text: text.into(),
            ends,
        }
    }

    /// A probed target's identity.
    pub fn of(target: &Target) -> TargetLabels {
        TargetLabels::from_parts(TargetKey(target).parts())
    }

    /// A documented-absent target's identity (kind empty when the inventory gives none).
    pub fn of_absent(target: &AbsentTarget) -> TargetLabels {
        TargetLabels::from_parts([
            &target.name,
            &target.job,
            &target.instance,
            &target.cluster,
            target.kind.map(|k| k.as_str()).unwrap_or(""),
        ])
    }
}

/// A target identity, owned ([`TargetLabels`]) or borrowed ([`TargetKey`]): maps keyed by
/// `TargetLabels` are looked up with a borrowed `&Target`, so recording a probe builds no strings.
pub trait Identity {
    /// `target`, `target_job`, `target_instance`, `target_cluster`, `kind`, in that order.
    fn parts(&self) -> [&str; 5];
}

impl Identity for TargetLabels {
    fn parts(&self) -> [&str; 5] {
        let e = self.ends.map(|e| e as usize);
        let t = &self.text;
        [
            &t[..e[0]],
            &t[e[0]..e[1]],
            &t[e[1]..e[2]],
            &t[e[2]..e[3]],
            &t[e[3]..e[4]],
        ]
    }
}

/// A borrowed view of a target's identity.
pub struct TargetKey<'a>(pub &'a Target);

impl Identity for TargetKey<'_> {
    fn parts(&self) -> [&str; 5] {
        let t = self.0;
        [&t.name, &t.job, &t.instance, &t.cluster, t.kind().as_str()]
    }
}

impl TargetKey<'_> {
    /// As a map key: `map.get(TargetKey(t).as_key())` on a `HashMap<TargetLabels, _>`.
    pub fn as_key(&self) -> &(dyn Identity + '_) {
        self
    }
}

impl Hash for dyn Identity + '_ {
    /// As `[String; 5]`'s derived hash (length, then each part): the scheduler's phases, a hash
    /// of the identity, stay where they were before this type had its own hash.
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl PartialEq for dyn Identity + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Identity + '_ {}

impl Hash for TargetLabels {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self as &dyn Identity).hash(h)
    }
}

impl<'a> Borrow<dyn Identity + 'a> for TargetLabels {
    fn borrow(&self) -> &(dyn Identity + 'a) {
        self
    }
}
