//! URL splitting, userinfo redaction, host:port and last-octet ranges, and `check`'s ad-hoc
//! targets on any text. A redacted text never keeps a URL's password; a range never expands
//! past one /24.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pathprobe::adhoc::{self, AdhocOptions};
use pathprobe::config::range;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(parts) = range::split_url(s) {
        let _ = parts.with_host("h");
        if let Ok(hosts) = range::expand_host(parts.host) {
            assert!(!hosts.is_empty() && hosts.len() <= 256, "{} hosts", hosts.len());
        }
    }
    let redacted = range::redact_userinfo(s);
    if let Some(parts) = range::split_url(&redacted) {
        assert!(!parts.has_userinfo, "userinfo left in {redacted:?}");
    }
    if let Ok((host, port)) = range::split_host_port(s) {
        let _ = range::parse_port(port);
        let _ = range::expand_host(host);
    }
    if let Ok(targets) = adhoc::parse(s, &AdhocOptions::default()) {
        assert!(!targets.is_empty() && targets.len() <= 256);
        for t in &targets {
            if let Some(http) = t.http() {
                assert!(http.url.password().is_none(), "a password reached a target's URL");
            }
        }
    }
});
