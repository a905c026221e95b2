//! The inventory file as written: plain serde structs, every field optional so that validation
//! (not serde) says what is missing, in the same `path: what; fix` form as every other error.
//!
//! Nothing here holds a secret: credentials are only ever named by file.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The whole inventory file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `agent:` who this agent is and how it resolves names.
    pub agent: Option<RawAgent>,
    /// `defaults:` what every target inherits.
    pub defaults: Option<RawDefaults>,
    /// `targets:` what to probe.
    pub targets: Option<Vec<RawTarget>>,
    /// `discovery:` more targets from a Prometheus.
    pub discovery: Option<RawDiscovery>,
    /// `mesh:` the agents probe each other.
    pub mesh: Option<crate::mesh::config::RawMesh>,
}

/// `discovery:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// The Prometheus whose active targets are probed; absent: no discovery.
    pub prometheus: Option<RawPrometheusDiscovery>,
}

/// `discovery.prometheus:` the active targets of a Prometheus, probed as `scrape` targets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheusDiscovery {
    /// The Prometheus to ask (its HTTP API); required.
    pub url: Option<String>,
    /// Anchored regexes on `job`; absent: every job.
    pub jobs: Option<Vec<String>>,
    /// How often Prometheus is asked again (default `1m`).
    pub refresh: Option<Scalar>,
    /// What Prometheus's API does not reveal (credentials, TLS), per job regex: a target's fields.
    pub job_settings: Option<Vec<RawTarget>>,
}

/// `agent:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// The `source_cluster` label; `--source-cluster` / `PATHPROBE_SOURCE_CLUSTER` can give it instead.
    pub source_cluster: Option<String>,
    /// `host` | `pod`; default `host`.
    pub network: Option<String>,
    /// Nameservers to ask instead of the system's.
    pub resolver: Option<RawResolver>,
}

/// `agent.resolver:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    /// `ip:port` or `ip` (port 53). Empty or absent: the system's resolv.conf.
    pub nameservers: Option<Vec<String>>,
}

/// `defaults:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// How often each target is probed (default `30s`).
    pub interval: Option<Scalar>,
    /// How long one probe may take, all phases together (default `5s`).
    pub timeout: Option<Scalar>,
    /// The most body an `http` or `scrape` probe reads, after decompression (default `4MiB`).
    pub body_limit: Option<Scalar>,
}

/// One entry of `targets:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// The `target` label; required.
    pub name: Option<String>,
    /// The `target_job` label (default: the name); set it to Prometheus's `job` so alerts join.
    pub job: Option<String>,
    /// The `target_cluster` label (default: `agent.source_cluster`).
    pub cluster: Option<String>,
    /// `tcp`, `tls`, `http`, `scrape` or `dns`; required unless `expected: false`.
    pub kind: Option<String>,
    /// Where an `http` or `scrape` probe goes; the host may be a last-octet range.
    pub url: Option<String>,
    /// `host:port` for `tcp` and `tls` (the host may be a range), the name to resolve for `dns`.
    pub address: Option<String>,
    /// Overrides `defaults.interval`.
    pub interval: Option<Scalar>,
    /// Overrides `defaults.timeout`.
    pub timeout: Option<Scalar>,
    /// For `kind: tls` and `https://` URLs.
    pub tls: Option<RawTls>,
    /// HTTP basic auth, `http` and `scrape` only.
    pub basic_auth: Option<RawBasicAuth>,
    /// A file holding a bearer token (a mounted Secret), `http` and `scrape` only.
    pub bearer_token_file: Option<String>,
    /// Extra request headers; credentials and cookies are refused here (use the files).
    pub headers: Option<Headers>,
    /// The request method, `http` only (default `GET`).
    pub method: Option<String>,
    /// What counts as success beyond reaching the target.
    pub expect: Option<RawExpect>,
    /// Overrides `defaults.body_limit`.
    pub body_limit: Option<Scalar>,
    /// Redirects followed at most (default 0 for `http`, 10 for `scrape`).
    pub max_redirects: Option<Scalar>,
    /// Probe every address the name resolves to, each with its own series (default: the first
    /// address that works).
    pub all_addresses: Option<bool>,
    /// The most addresses probed in all-address mode (default 8).
    pub max_addresses: Option<Scalar>,
    /// `false`: a documented-absent target, listed and never probed.
    pub expected: Option<bool>,
    /// Why the target is absent; required with `expected: false`.
    pub why: Option<String>,
}

/// `tls:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Skip certificate verification (expiry and subject are still recorded); not with `ca_file`.
    pub insecure_skip_verify: Option<bool>,
    /// PEM certificate(s) to trust instead of the system's roots; may pin the server's own certificate.
    pub ca_file: Option<String>,
    /// The name sent as SNI and checked against the certificate (default: the URL's or address's host).
    pub server_name: Option<String>,
    /// The client certificate (chain) for mTLS, PEM; needs `key_file`.
    pub cert_file: Option<String>,
    /// The private key of `cert_file`, PEM; one that does not match is refused at load.
    pub key_file: Option<String>,
}

/// `basic_auth:` (the password only ever by file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    /// The user name (no `:`); required.
    pub username: Option<String>,
    /// The file holding the password; required.
    pub password_file: Option<String>,
}

/// `expect:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// Codes and ranges: `200`, `"300-399"`, `"2xx"`; one or a list.
    pub status: Option<OneOrMany>,
    /// The body must match this regex (Rust syntax), else `body_mismatch`.
    pub body_regex: Option<String>,
    /// `dns` only: at least one of these must be answered.
    pub addresses: Option<Vec<String>>,
    /// A must-be-blocked target: success is the connection failing.
    pub blocked: Option<bool>,
}

/// A YAML scalar kept as text, whatever YAML typed it as (`30`, `30s`, `true`), so that
/// validation can say what is wrong with it in its own words.
#[derive(Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl Scalar {
    /// The text as written, for validation to parse.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Scalar {
        Scalar(s.to_string())
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value (a string or a number)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// One scalar or a list of them (`status: 200` or `status: [200, "300-399"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<Scalar>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OneOrMany, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![Scalar(v.to_string())]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![Scalar(v.to_string())]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![Scalar(v.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Scalar>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `headers:` in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Scalar)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of header names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out: Vec<(String, Scalar)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Scalar>()? {
                    if !plain_key(&k) || out.iter().any(|(seen, _)| *seen == k) {
                        KEYS_UNSURE.with(|u| u.set(true));
                    }
                    out.push((k, v));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

thread_local! {
    /// Set while reading [`Headers`] when a key repeats, or could be read by YAML as something
    /// other than that text (`1`, `0x1`, `null`, `~`): the typed read then cannot vouch that
    /// the document has no duplicate keys, so the parse checks the whole document as YAML.
    static KEYS_UNSURE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `read`, and says whether every [`Headers`] key it read was plain text and unique within
/// its mapping (so the document's mappings hold no duplicate key a YAML value would refuse).
pub(crate) fn with_sure_keys<T>(read: impl FnOnce() -> T) -> (T, bool) {
    KEYS_UNSURE.with(|u| u.set(false));
    let out = read();
    (out, !KEYS_UNSURE.with(|u| u.replace(false)))
}

/// A key YAML can only read as the string it is: a letter, then letters, digits, `-` and `_`,
/// and none of YAML's words for null or booleans.
fn plain_key(k: &str) -> bool {
    const WORDS: [&str; 10] = ["null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan"];
    k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !WORDS.iter().any(|w| k.eq_ignore_ascii_case(w))
}
