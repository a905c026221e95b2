//! The contract's closed tables: why a probe failed ([`Reason`], the `reason` label) and which
//! part of it took the time ([`Phase`], the `phase` label).
//!
//! Plain data, depending on nothing else in the crate: the probe engine maps its errors onto
//! these (`probe::classify`), the exporter, the report and `diagnose` read them. Each table is
//! written once, in [`label_enum!`], which also derives its `ALL` list and its label strings:
//! whatever loops over every reason or phase (series, the status page, parsing a label back)
//! cannot miss a variant added later.

use std::fmt;

/// Defines a closed label enum from one table of `Variant => "label"` rows: the enum, `ALL` (every
/// variant, in the table's order), `as_str` (the label), `from_label` and `Display`.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the table's order (derived from the table, so none is missing).
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            /// The label value, as the contract spells it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// The value a label names (`None` for a label the contract does not have).
            pub fn from_label(label: &str) -> Option<$name> {
                $name::ALL.into_iter().find(|v| v.as_str() == label)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// Why a probe failed: the first phase that broke. `None` on success.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Reason {
        /// The probe succeeded.
        None => "none",
        /// The name does not exist.
        DnsNxdomain => "dns_nxdomain",
        /// No answer from the resolver in time.
        DnsTimeout => "dns_timeout",
        /// Any other resolution failure (SERVFAIL, REFUSED, no records).
        DnsError => "dns_error",
        /// A TCP reset answered the SYN: nothing listening, or a REJECT rule.
        ConnectRefused => "connect_refused",
        /// No answer to the SYN in time: a black hole, a DROP rule, a NetworkPolicy.
        ConnectTimeout => "connect_timeout",
        /// The kernel or an ICMP message says the host or network cannot be reached.
        Unreachable => "unreachable",
        /// The TLS handshake failed for a protocol reason (not TLS, no common version or
        /// cipher, an alert from the peer).
        TlsHandshake => "tls_handshake",
        /// The certificate chain does not verify against the configured roots.
        TlsUntrusted => "tls_untrusted",
        /// The certificate is expired or not yet valid.
        TlsExpired => "tls_expired",
        /// The certificate does not cover the name asked for.
        TlsHostname => "tls_hostname",
        /// The handshake did not finish in time.
        TlsTimeout => "tls_timeout",
        /// The peer reset or closed the connection after it was established.
        ConnectionReset => "connection_reset",
        /// Connected, but the response did not finish in time.
        HttpTimeout => "http_timeout",
        /// The bytes back are not a valid HTTP response (or a redirect cannot be followed).
        HttpProtocol => "http_protocol",
        /// Status 401, 403 or 407 when not expected.
        HttpAuth => "http_auth",
        /// Status 5xx when not expected.
        HttpServerError => "http_server_error",
        /// Any other status that `expect.status` does not allow.
        HttpStatus => "http_status",
        /// `expect.body_regex` did not match (or a mesh peer's answer is not an agent's).
        BodyMismatch => "body_mismatch",
        /// The body is over the configured cap.
        BodyTooLarge => "body_too_large",
        /// A `scrape` body is not valid exposition format.
        ScrapeInvalid => "scrape_invalid",
        /// A must-be-blocked target (`expect: { blocked: true }`) accepted the connection.
        UnexpectedlyReachable => "unexpectedly_reachable",
    }
}

impl Reason {
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

label_enum! {
    /// A phase of a probe, as the `phase` label names it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Phase {
        /// Looking the name up (zero for a literal address).
        Resolve => "resolve",
        /// The TCP connect.
        Connect => "connect",
        /// The TLS handshake.
        Tls => "tls",
        /// From sending the request to the response headers (first byte).
        Request => "request",
        /// Reading the body.
        Transfer => "transfer",
        /// The whole probe; last, as the series list it.
        Total => "total",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels are what dashboards and rules match on: distinct, snake_case, and each names
    /// its value back.
    #[test]
    fn every_label_is_distinct_snake_case_and_names_its_value_back() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            label: fn(T) -> &'static str,
            back: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for &v in all {
                let l = label(v);
                assert!(seen.insert(l), "duplicate {l}");
                assert!(
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{l}"
                );
                assert_eq!(back(l), Some(v));
            }
        }
        check(&Reason::ALL, Reason::as_str, Reason::from_label);
        check(&Phase::ALL, Phase::as_str, Phase::from_label);
        assert_eq!(Reason::from_label("refused"), None);
    }

    /// The contract lists every failure reason in a table (`docs/contract.md`, "Failure
    /// reasons"): the enum and the document say the same, in the same order.
    #[test]
    fn the_reasons_are_the_contracts_table_in_its_order() {
        let doc = include_str!("../docs/contract.md");
        let table = doc
            .split("## Failure reasons")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("the contract has a failure reasons section");
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        let ours: Vec<&str> = Reason::ALL.iter().skip(1).map(|r| r.as_str()).collect();
        assert_eq!(documented, ours);
        assert_eq!(Reason::ALL[0], Reason::None);
    }

    #[test]
    fn phases_run_in_order_with_total_last() {
        let labels: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(labels, ["resolve", "connect", "tls", "request", "transfer", "total"]);
    }
}
