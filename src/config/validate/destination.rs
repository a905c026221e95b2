//! Where a target goes: its `url` (http, scrape) or `address` (tcp, tls, dns), with last-octet
//! ranges expanded into one destination per address, and all-address mode (`all_addresses`,
//! `max_addresses`).

use std::net::IpAddr;

use super::{scalar_or, Diags, PathStyle};
use crate::config::range::{expand_host, parse_port, redact_userinfo, split_host_port, split_url};
use crate::config::raw::RawTarget;
use crate::target::{Endpoint, Host, Kind};

/// Where a target goes, per expanded address.
pub(super) enum Dest {
    Url(url::Url),
    Addr { endpoint: Endpoint, host_text: String },
    Dns(String),
}

impl Dest {
    /// Its `target_instance` label: `host:port`, or the name a dns target resolves.
    pub fn instance(&self) -> String {
        match self {
            Dest::Url(u) => url_endpoint(u).to_string(),
            Dest::Addr { endpoint, .. } => endpoint.to_string(),
            Dest::Dns(name) => name.clone(),
        }
    }
}

/// The destinations of a probed target: the field its kind takes (`url` for http and scrape,
/// `address` for the others), refusing the other one.
pub(super) fn dests(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    match kind {
        Kind::Tcp | Kind::Tls => {
            if let Some(u) = rt.url.as_deref() {
                d.error(
                    ps.at("url"),
                    format!(
                        "{kind} targets dial an address, not a URL ({}); write address: host:port, or use kind http or scrape",
                        redact_userinfo(u)
                    ),
                );
                None
            } else if let Some(a) = rt.address.as_deref() {
                from_address(a, ps, d)
            } else {
                d.error(
                    ps.at("address"),
                    format!("missing; {kind} targets need address: host:port"),
                );
                None
            }
        }
        Kind::Http | Kind::Scrape => {
            if rt.address.is_some() {
                if rt.url.is_none() {
                    d.error(
                        ps.at("address"),
                        format!("{kind} targets take a url, not an address; write url: http://host:port/path (https:// for TLS)"),
                    );
                }
                None
            } else if let Some(u) = rt.url.as_deref() {
                from_url(u, ps, d)
            } else {
                d.error(
                    ps.at("url"),
                    format!("missing; {kind} targets need a url, e.g. http://host:port/metrics"),
                );
                None
            }
        }
        Kind::Dns => {
            if rt.url.is_some() {
                d.error(
                    ps.at("url"),
                    "dns targets resolve a name, not a URL; write address: <name>",
                );
                None
            } else if let Some(a) = rt.address.as_deref() {
                from_name(a, ps, d)
            } else {
                d.error(
                    ps.at("address"),
                    "missing; dns targets need address: <the name to resolve>",
                );
                None
            }
        }
    }
}

/// The bound on addresses in all-address mode when `max_addresses` is not given.
pub const DEFAULT_MAX_ADDRESSES: usize = 8;

/// The most `max_addresses` may be: each address has its own series.
pub const MAX_ADDRESSES_LIMIT: usize = 64;

/// `all_addresses` and `max_addresses`: `None` for the default mode (the first address that
/// works), else the most addresses to probe.
pub(super) fn all_addresses(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) -> Option<usize> {
    let on = rt.all_addresses.unwrap_or(false);
    if on && kind == Kind::Dns {
        d.error(
            ps.at("all_addresses"),
            "dns targets already report every address they resolve to (resolved); remove it",
        );
        return None;
    }
    if !on && rt.max_addresses.is_some() {
        d.error(
            ps.at("max_addresses"),
            "only used with all_addresses: true; set that, or remove max_addresses",
        );
        return None;
    }
    if !on {
        return None;
    }
    let max = scalar_or(
        d,
        &ps.at("max_addresses"),
        rt.max_addresses.as_ref(),
        DEFAULT_MAX_ADDRESSES,
        |s| {
            match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_ADDRESSES_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{s}` is not a number of addresses; use a whole number from 1 to {MAX_ADDRESSES_LIMIT} (each address has its own series)"
            )),
        }
        },
    );
    Some(max)
}

/// `host:port` of a parsed http(s) URL (the scheme's port when none is written).
pub(super) fn url_endpoint(u: &url::Url) -> Endpoint {
    let host = match u.host() {
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => Host::Name(d.to_ascii_lowercase()),
        None => Host::Name(String::new()),
    };
    Endpoint {
        host,
        port: u.port_or_known_default().unwrap_or(0),
    }
}

/// Parses `url` (ranges expanded): http or https, a host, no credentials.
pub(super) fn from_url(raw: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    let shown = redact_userinfo(raw.trim());
    let text = raw.trim();
    let Some(parts) = split_url(text) else {
        d.error(
            ps.at("url"),
            format!("`{shown}` is not a URL; write it in full, e.g. http://10.0.0.1:9100/metrics"),
        );
        return None;
    };
    if parts.has_userinfo {
        d.error(
            ps.at("url"),
            format!(
                "{} carries credentials in the URL; remove them and use basic_auth.username with basic_auth.password_file",
                parts.with_host(parts.host)
            ),
        );
        return None;
    }
    let scheme = parts.scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        let fix = if scheme.starts_with("scrape+") {
            "write the url with http:// or https:// and set kind: scrape"
        } else {
            "use http:// or https://, or for other protocols kind tcp or tls with an address"
        };
        d.error(
            ps.at("url"),
            format!("scheme `{}` is not supported; {fix}", parts.scheme),
        );
        return None;
    }
    if parts.host.is_empty() {
        d.error(
            ps.at("url"),
            format!("`{shown}` has no host; write e.g. http://10.0.0.1:9100/metrics"),
        );
        return None;
    }
    let hosts = match expand_host(parts.host) {
        Ok(h) => h,
        Err(msg) => {
            d.error(ps.at("url"), msg);
            return None;
        }
    };
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        let one = parts.with_host(&h);
        match url::Url::parse(&one) {
            Ok(u) if u.host().is_some() => {
                if u.port() == Some(0) {
                    d.error(
                        ps.at("url"),
                        format!("`{shown}` has port 0; use a port from 1 to 65535"),
                    );
                    return None;
                }
                if let Err(e) = crate::probe::http::request_target(&u) {
                    d.error(
                        ps.at("url"),
                        format!("its path and query cannot go into an HTTP request ({e}); shorten it"),
                    );
                    return None;
                }
                out.push(Dest::Url(u));
            }
            Ok(_) => {
                d.error(
                    ps.at("url"),
                    format!("`{shown}` has no host; write e.g. http://10.0.0.1:9100/metrics"),
                );
                return None;
            }
            Err(e) => {
                d.error(ps.at("url"), format!("`{shown}` is not a valid URL ({e}); fix it"));
                return None;
            }
        }
    }
    Some(out)
}

/// An `@` in an address means credentials were pasted into it: refused, showing only what
/// follows the last `@`.
fn refuse_userinfo(text: &str, ps: &PathStyle, d: &mut Diags) -> bool {
    let Some(at) = text.rfind('@') else { return false };
    d.error(
        ps.at("address"),
        format!(
            "`…@{}` holds userinfo; an address is host:port without credentials; put them in basic_auth.password_file or bearer_token_file",
            &text[at + 1..]
        ),
    );
    true
}

/// Parses a `host:port` address (ranges expanded).
pub(super) fn from_address(raw: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    let text = raw.trim();
    if refuse_userinfo(text, ps, d) {
        return None;
    }
    if text.contains("://") {
        d.error(
            ps.at("address"),
            format!(
                "`{}` is a URL; an address is host:port, e.g. 10.0.0.1:443",
                redact_userinfo(text)
            ),
        );
        return None;
    }
    let (host, port) = match split_host_port(text) {
        Ok(hp) => hp,
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
    };
    let port = match parse_port(port) {
        Ok(p) => p,
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
    };
    if host.is_empty() || host == "[]" {
        d.error(
            ps.at("address"),
            format!("`{text}` has no host; write host:port, e.g. 10.0.0.1:{port}"),
        );
        return None;
    }
    if host.starts_with('[') && host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_err() {
        if let Err(msg) = expand_host(host) {
            d.error(ps.at("address"), msg);
        } else {
            d.error(
                ps.at("address"),
                format!("`{host}` is not an IPv6 address; only IPv6 literals go in brackets"),
            );
        }
        return None;
    }
    let hosts = match expand_host(host) {
        Ok(h) => h,
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
    };
    if let Some(bad) = hosts.iter().find(|h| !valid_host_name(h)) {
        d.error(
            ps.at("address"),
            format!("`{bad}` is not a host name or IP address; fix it"),
        );
        return None;
    }
    Some(
        hosts
            .into_iter()
            .map(|h| Dest::Addr {
                endpoint: Endpoint {
                    host: Host::parse(&h),
                    port,
                },
                host_text: h,
            })
            .collect(),
    )
}

/// A host as written is a bracketed IPv6, an IPv4, or a plausible DNS name.
fn valid_host_name(h: &str) -> bool {
    if h.starts_with('[') || h.parse::<IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !h.starts_with('.')
}

/// The name of a `dns` target.
pub(super) fn from_name(raw: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<Dest>> {
    let name = raw.trim();
    if refuse_userinfo(name, ps, d) {
        return None;
    }
    let example = "kubernetes.default.svc.cluster.local";
    if name.contains("://") || name.contains(':') || name.contains('/') {
        d.error(
            ps.at("address"),
            format!(
                "`{}` is not a DNS name; a dns target takes a bare name without scheme or port, e.g. {example}",
                redact_userinfo(name)
            ),
        );
        return None;
    }
    match expand_host(name) {
        Err(msg) => {
            d.error(ps.at("address"), msg);
            return None;
        }
        Ok(v) if v.len() > 1 => {
            d.error(
                ps.at("address"),
                format!("`{name}` is a range of addresses; a dns target resolves one name, e.g. {example}"),
            );
            return None;
        }
        Ok(_) => {}
    }
    if name.parse::<IpAddr>().is_ok() {
        d.error(
            ps.at("address"),
            format!("`{name}` is an IP address; a dns target resolves a name, e.g. {example}"),
        );
        return None;
    }
    if !valid_host_name(name) {
        d.error(
            ps.at("address"),
            format!("`{name}` is not a DNS name; use letters, digits, hyphens and dots, e.g. {example}"),
        );
        return None;
    }
    Some(vec![Dest::Dns(name.to_ascii_lowercase())])
}
