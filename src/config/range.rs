//! Last-octet ranges (`10.10.0.40-43`), and taking URLs and `host:port` apart as written, before
//! the `url` crate sees them (it would reject a range, and its errors could echo credentials).

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use regex::Regex;

/// A URL as written, cut around its host: `prefix` is `scheme://`, `host` is as written
/// (brackets kept for IPv6), `rest` is everything after the host (`:port/path?query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// The scheme, without `://`.
    pub scheme: &'a str,
    /// True when the URL holds `user[:password]@`, which validation refuses (never echoed).
    pub has_userinfo: bool,
    /// The host as written: brackets kept for IPv6, a range left unexpanded.
    pub host: &'a str,
    /// Everything after the host: `:port/path?query`.
    pub rest: &'a str,
}

impl UrlParts<'_> {
    /// The URL with `host` in place of the original host and without userinfo.
    pub fn with_host(&self, host: &str) -> String {
        format!("{}://{}{}", self.scheme, host, self.rest)
    }
}

/// Cuts `scheme://[userinfo@]host[:port][/path…]`. None when there is no `://`.
pub fn split_url(s: &str) -> Option<UrlParts<'_>> {
    let (scheme, after) = s.split_once("://")?;
    // The userinfo ends at the last `@` before any query: a password may hold `/` or `#`, and
    // must be found (and never echoed) even then. A legitimate `@` in a path is taken for
    // userinfo too; refusing such a URL is the safe mistake.
    let query = after.find('?').unwrap_or(after.len());
    let (has_userinfo, hostport_start) = match after[..query].rfind('@') {
        Some(at) => (true, at + 1),
        None => (false, 0),
    };
    let hostport = &after[hostport_start..];
    let end = hostport.find(['/', '?', '#']).unwrap_or(hostport.len());
    let host_len = host_len(&hostport[..end]);
    Some(UrlParts {
        scheme,
        has_userinfo,
        host: &hostport[..host_len],
        rest: &hostport[host_len..],
    })
}

/// Length of the host at the start of `hostport` (`[v6]` with its brackets, else up to `:`).
fn host_len(hostport: &str) -> usize {
    if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(i) => i + 1,
            None => hostport.len(),
        }
    } else {
        hostport.find(':').unwrap_or(hostport.len())
    }
}

/// The text with the userinfo of every URL in it removed (`https://u:p@h/` → `https://h/`).
/// Used on anything that may echo a configured value back into an error message.
///
/// It cuts what [`split_url`] takes for userinfo, whatever the scheme and whitespace: after each
/// `://`, up to the last `@` before a `?`. A password with a space or a tab in it is still a
/// password (found by fuzzing); cutting too much of a message is the safe mistake.
pub fn redact_userinfo(s: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"(://)[^?]*@").expect("userinfo regex"));
    re.replace_all(s, "$1").into_owned()
}

/// Splits `host:port` as written (brackets required around an IPv6 literal).
/// Returns (host as written, port text). The error is a message.
pub fn split_host_port(s: &str) -> Result<(&str, &str), String> {
    if s.starts_with('[') {
        let close = s
            .find(']')
            .ok_or_else(|| format!("`{s}` has no closing `]`; write an IPv6 address as [fd00::1]:443"))?;
        let host = &s[..=close];
        return match s[close + 1..].strip_prefix(':') {
            Some(port) => Ok((host, port)),
            None => Err(format!("`{s}` has no port; write host:port, e.g. {host}:443")),
        };
    }
    match s.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(format!(
            "`{s}` is ambiguous; put an IPv6 address in brackets, e.g. [fd00::1]:443"
        )),
        Some((host, port)) => Ok((host, port)),
        None => Err(format!("`{s}` has no port; write host:port, e.g. {s}:443")),
    }
}

/// Parses a port: 1 to 65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{s}` is not a port; use a number from 1 to 65535")),
        Ok(p) => Ok(p),
    }
}

/// Expands a host as written into the hosts it stands for: one for a plain host, one per address
/// for a last-octet range `10.10.0.40-43`. The error is a message saying why the range is
/// impossible.
pub fn expand_host(host: &str) -> Result<Vec<String>, String> {
    static RANGE: OnceLock<Regex> = OnceLock::new();
    static LAST_LABEL: OnceLock<Regex> = OnceLock::new();
    let range = RANGE.get_or_init(|| {
        Regex::new(r"^([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.([0-9]{1,3})-([0-9]+)$").expect("range regex")
    });
    let last_label = LAST_LABEL.get_or_init(|| Regex::new(r"(^|\.)[0-9]+-[0-9]+$").expect("label regex"));
    let example = "10.10.0.40-43";

    if !host.contains('-') {
        return Ok(vec![host.to_string()]);
    }
    if host.starts_with('[') {
        return Err(format!(
            "`{host}` is a range on an IPv6 address; ranges expand only the last octet of an IPv4 \
             address (e.g. {example}), list IPv6 targets one by one"
        ));
    }
    let numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    if !numeric {
        if last_label.is_match(host) {
            return Err(format!(
                "`{host}` is a range on a DNS name; ranges expand only the last octet of an IPv4 \
                 address (e.g. {example}), list names one by one"
            ));
        }
        // An ordinary DNS name with a hyphen in it.
        return Ok(vec![host.to_string()]);
    }
    let caps = range.captures(host).ok_or_else(|| {
        format!(
            "`{host}` is not a last-octet range; write an IPv4 address whose last octet is a \
             range, e.g. {example}"
        )
    })?;
    let prefix = &caps[1];
    let first: u16 = caps[2].parse().unwrap_or(u16::MAX);
    let start = format!("{prefix}.{}", &caps[2]);
    if start.parse::<Ipv4Addr>().is_err() {
        return Err(format!(
            "`{host}`: {start} is not an IPv4 address; every octet is 0 to 255"
        ));
    }
    let last: u16 = caps[3].parse().unwrap_or(u16::MAX);
    if last > 255 {
        return Err(format!(
            "`{host}` ends at {}, which is not an octet; end the range at 255 at most",
            &caps[3]
        ));
    }
    if last < first {
        return Err(format!(
            "`{host}` runs backwards; write the lower octet first: {prefix}.{last}-{first}"
        ));
    }
    Ok((first..=last).map(|o| format!("{prefix}.{o}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let p = split_url("https://u:p@10.0.0.1:8006/api?x=1").unwrap();
        assert_eq!(p.scheme, "https");
        assert!(p.has_userinfo);
        assert_eq!(p.host, "10.0.0.1");
        assert_eq!(p.rest, ":8006/api?x=1");
        assert_eq!(p.with_host("h"), "https://h:8006/api?x=1");
        let p = split_url("http://[::1]:9100/metrics").unwrap();
        assert_eq!(p.host, "[::1]");
        assert_eq!(p.rest, ":9100/metrics");
        let p = split_url("http://host?q=a@b").unwrap();
        assert!(!p.has_userinfo);
        assert_eq!(p.host, "host");
        assert_eq!(p.rest, "?q=a@b");
    }

    #[test]
    fn redacts() {
        assert_eq!(redact_userinfo("https://user:pw@host/x"), "https://host/x");
        assert_eq!(
            redact_userinfo("see \"http://a@b:1\" and ftp://c"),
            "see \"http://b:1\" and ftp://c"
        );
    }

    #[test]
    fn expands() {
        assert_eq!(
            expand_host("10.10.0.40-43").unwrap(),
            vec!["10.10.0.40", "10.10.0.41", "10.10.0.42", "10.10.0.43"]
        );
        assert_eq!(expand_host("node-1.example.com").unwrap(), vec!["node-1.example.com"]);
        assert_eq!(expand_host("[::1]").unwrap(), vec!["[::1]"]);
        for bad in [
            "10.10.0.43-40",
            "10.10.0.40-300",
            "10.10.40-43",
            "10.10.0-1.40",
            "10.10.0.300-301",
            "[fd00::40-43]",
            "db.example.10-12",
        ] {
            assert!(expand_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("a:1"), Ok(("a", "1")));
        assert_eq!(split_host_port("[::1]:1"), Ok(("[::1]", "1")));
        assert!(split_host_port("::1:1").is_err());
        assert!(split_host_port("a").is_err());
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
    }
}

#[cfg(test)]
mod userinfo_tests {
    use super::*;

    #[test]
    fn userinfo_with_slash_or_hash_in_the_password_is_found_and_redacted() {
        for url in [
            "https://admin:pa/ss#w0rd@10.0.0.1:8006/x",
            "https://u:p@ss@h:1/",
            "http://u:p%2F@h/m?x=1",
        ] {
            let parts = split_url(url).unwrap();
            assert!(parts.has_userinfo, "{url}");
            let shown = redact_userinfo(&format!("bad: {url} here"));
            for secret in ["pa/ss", "w0rd", "p@ss", "p%2F", "admin"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        let plain = split_url("http://10.0.0.1:9100/metrics?x=a@b").unwrap();
        assert_eq!(
            redact_userinfo("http://10.0.0.1:9100/metrics?x=a@b"),
            "http://10.0.0.1:9100/metrics?x=a@b"
        );
        assert!(!plain.has_userinfo, "an @ in the query is not userinfo");
        assert_eq!(plain.host, "10.0.0.1");
    }

    /// Found by `fuzz/fuzz_targets/url_range.rs`: whitespace in the userinfo, or a scheme that is
    /// not a scheme, kept the password in the "redacted" text.
    #[test]
    fn whitespace_or_an_odd_scheme_does_not_hide_userinfo_from_redaction() {
        for text in [
            "https://admin:pa ss@10.0.0.1/",
            "https://admin:pa\tss@10.0.0.1/",
            "bad: http://u:line\nbreak@h/ here",
            "1+://u:pass@h/",
            "tct?\u{6}\0\0\0\0\0\0\0b-cp:/a-tc:/p://10.a/p/:\t\0\u{10}\0\0\0\0\0\0\0\0\0b-:@//:1",
        ] {
            assert!(split_url(text).unwrap().has_userinfo, "{text:?}");
            let shown = redact_userinfo(text);
            assert!(!split_url(&shown).unwrap().has_userinfo, "{shown:?}");
            for secret in ["pa ss", "pa\tss", "break", "pass", "b-:"] {
                assert!(!shown.contains(secret), "{shown:?}");
            }
        }
    }
}
