//! The `dns` probe: resolve a name and check it answers (optionally with an expected address).

use super::{resolve, Deadline, ProbeContext, ProbeError, Trace};
use crate::target::{DnsExpect, Host, Target};

/// Probes a target by resolving its name.
pub async fn probe(
    target: &Target,
    expect: &DnsExpect,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    resolve::endpoint_addrs(ctx, &target.endpoint, trace, deadline).await?;
    let expected = &expect.addresses;
    if expected.is_empty() || trace.resolved.iter().any(|ip| expected.contains(ip)) {
        return Ok(());
    }
    let list = |ips: &mut dyn Iterator<Item = String>| ips.collect::<Vec<_>>().join(", ");
    Err(ProbeError::DnsUnexpected {
        host: match &target.endpoint.host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
        },
        got: list(&mut trace.resolved.iter().map(|ip| ip.to_string())),
        expected: list(&mut expected.iter().map(|ip| ip.to_string())),
    })
}
