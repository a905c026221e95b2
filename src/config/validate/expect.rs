//! What a target's `expect:` asks beyond HTTP's status and body: the addresses a dns name must
//! resolve to, and `blocked` (success is the connection failing).

use std::net::IpAddr;

use super::{Diags, PathStyle};
use crate::config::raw::RawTarget;
use crate::target::{DnsExpect, Kind};

/// `expect.addresses` is for dns targets only.
pub(super) fn refuse_addresses_where_unused(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) {
    if kind != Kind::Dns && rt.expect.as_ref().is_some_and(|e| e.addresses.is_some()) {
        d.error(
            ps.at("expect.addresses"),
            format!("only dns targets use it, this one is {kind}; remove it"),
        );
    }
}

/// `expect.addresses` of a dns target: IP addresses, one of which must be answered.
pub(super) fn dns(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) -> DnsExpect {
    let mut dns = DnsExpect::default();
    if kind != Kind::Dns {
        return dns;
    }
    if let Some(addrs) = rt.expect.as_ref().and_then(|e| e.addresses.as_ref()) {
        for (i, a) in addrs.iter().enumerate() {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => dns.addresses.push(ip),
                Err(_) => d.error(
                    ps.at(&format!("expect.addresses[{i}]")),
                    format!("`{a}` is not an IP address; list the addresses the name must resolve to, e.g. 10.96.0.1"),
                ),
            }
        }
    }
    dns
}

/// `expect.blocked`: allowed where there is a connection to refuse; nothing about an answer can
/// be expected of a target that must not answer.
pub(super) fn blocked(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) -> bool {
    let Some(expect) = &rt.expect else { return false };
    if expect.blocked != Some(true) {
        return false;
    }
    if kind == Kind::Dns {
        d.error(
            ps.at("expect.blocked"),
            "dns targets resolve a name, there is no connection to be blocked; use kind tcp with the address that must be blocked",
        );
        return false;
    }
    if rt.all_addresses == Some(true) {
        d.error(
            ps.at("all_addresses"),
            "a must-be-blocked target succeeds when no address connects; every address is already tried, remove all_addresses",
        );
    }
    for (field, given) in [
        ("status", expect.status.is_some()),
        ("body_regex", expect.body_regex.is_some()),
    ] {
        if given {
            d.error(
                ps.at(&format!("expect.{field}")),
                "a must-be-blocked target is never asked anything (a connection is already the failure); remove it, or remove expect.blocked",
            );
        }
    }
    true
}
