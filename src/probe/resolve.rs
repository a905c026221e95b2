//! Name resolution for every probe kind, through hickory so a failure says NXDOMAIN, timeout or
//! other (the system's getaddrinfo flattens those into one "failed").

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::TokioResolver;

use super::{Deadline, Phase, ProbeError, ResolveError, Trace};
use crate::target::{Endpoint, Host, ResolverSettings};

/// A resolver without a cache: each probe asks again, as a fresh client would.
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// Builds from the inventory's settings: its nameservers, or the system's resolv.conf.
    pub fn new(settings: &ResolverSettings) -> Result<Resolver, ResolveError> {
        let (config, mut opts) = if settings.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolveError::Other(format!("reading the system resolver configuration: {e}")))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for ns in &settings.nameservers {
                group.merge(NameServerConfigGroup::from_ips_clear(&[ns.ip()], ns.port(), true));
            }
            (ResolverConfig::from_parts(None, vec![], group), ResolverOpts::default())
        };
        opts.cache_size = 0;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // The probe's deadline bounds the whole lookup; the resolver's own timeout only paces retries.
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = opts;
        Ok(Resolver { inner: builder.build() })
    }

    /// All addresses of a name, in the resolver's order.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self.inner.lookup_ip(name).await {
            Ok(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    Err(ResolveError::NoRecords("no A or AAAA records".into()))
                } else {
                    Ok(ips)
                }
            }
            Err(e) => Err(map_error(&e)),
        }
    }
}

fn map_error(e: &hickory_resolver::ResolveError) -> ResolveError {
    if e.is_nx_domain() {
        return ResolveError::NxDomain;
    }
    if let Some(proto) = e.proto() {
        match proto.kind() {
            ProtoErrorKind::Timeout => return ResolveError::Timeout,
            ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                return ResolveError::NoRecords(format!("response {response_code}"));
            }
            _ => {}
        }
    }
    ResolveError::Other(e.to_string())
}

/// Resolves an endpoint into the socket addresses to try, recording the `resolve` phase.
/// A literal address needs no lookup; its `resolve` phase is recorded as zero, as the contract's
/// `check --json` example shows.
pub async fn endpoint_addrs(
    resolver: &Resolver,
    endpoint: &Endpoint,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<Vec<SocketAddr>, ProbeError> {
    match &endpoint.host {
        Host::Ip(ip) => {
            trace.add(Phase::Resolve, std::time::Duration::ZERO);
            Ok(vec![SocketAddr::new(*ip, endpoint.port)])
        }
        Host::Name(name) => {
            let lookup = async {
                resolver.lookup(name).await.map_err(|source| ProbeError::Resolve {
                    host: name.clone(),
                    source,
                })
            };
            let ips = trace.timed(Phase::Resolve, deadline, lookup).await?;
            Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, endpoint.port)).collect())
        }
    }
}
