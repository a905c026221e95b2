//! Prometheus-style durations (`500ms`, `30s`, `1m30s`) and byte sizes (`4MiB`).

use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;

/// The units of a Prometheus duration, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

fn duration_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The same grammar as Prometheus's model.ParseDuration: each unit at most once, largest first.
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$",
        )
        .expect("duration regex")
    })
}

/// Parses a Prometheus-style duration. Zero is refused: no interval or timeout can be zero.
/// The error is the message (without field path).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let not_a_duration = || {
        format!(
            "`{s}` is not a duration; write a number and a unit (ms, s, m, h, d, w, y), \
             Prometheus-style, e.g. 500ms, 30s, 5m or 1m30s"
        )
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(not_a_duration());
    }
    let caps = duration_regex().captures(text).ok_or_else(not_a_duration)?;
    let mut millis: u64 = 0;
    for (i, (_, unit_ms)) in UNITS.iter().enumerate() {
        if let Some(m) = caps.get(i + 1) {
            let n: u64 = m.as_str().parse().map_err(|_| not_a_duration())?;
            millis = n
                .checked_mul(*unit_ms)
                .and_then(|v| millis.checked_add(v))
                .ok_or_else(not_a_duration)?;
        }
    }
    if millis == 0 {
        return Err(format!("`{s}` is zero; give a positive duration, e.g. 30s"));
    }
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way the config writes it: `1m30s`, `500ms`, `2d`.
pub fn format_duration(d: Duration) -> String {
    let mut millis = d.as_millis() as u64;
    if millis == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    // Years and weeks are left out on purpose: `14d` reads better than `2w`.
    for (unit, unit_ms) in UNITS.iter().skip(2) {
        let n = millis / unit_ms;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            millis -= n * unit_ms;
        }
    }
    out
}

/// Parses a byte size: a plain integer (bytes), or with a `B`, `KiB`, `MiB` or `GiB` suffix.
/// Zero is refused. The error is the message (without field path).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^([0-9]+)\s*(B|KiB|MiB|GiB)?$").expect("size regex"));
    let not_a_size =
        || format!("`{s}` is not a size; write a number of bytes or use a KiB, MiB or GiB suffix, e.g. 4MiB");
    let caps = re.captures(s.trim()).ok_or_else(not_a_size)?;
    let n: u64 = caps[1].parse().map_err(|_| not_a_size())?;
    let mult: u64 = match caps.get(2).map(|m| m.as_str()) {
        None | Some("B") => 1,
        Some("KiB") => 1 << 10,
        Some("MiB") => 1 << 20,
        Some("GiB") => 1 << 30,
        Some(_) => return Err(not_a_size()),
    };
    let bytes = n.checked_mul(mult).ok_or_else(not_a_size)?;
    if bytes == 0 {
        return Err(format!(
            "`{s}` is zero; no body could be read, give a positive size, e.g. 4MiB"
        ));
    }
    usize::try_from(bytes).map_err(|_| not_a_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h0m5s100ms"), Ok(Duration::from_millis(3_605_100)));
        for bad in ["30 seconds", "30", "", "s", "1s1m", "1.5s", "-1s", "0s", "0", "0m0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(86400 * 14)), "14d");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("10B"), Ok(10));
        for bad in ["4MB", "0", "lots", "1.5MiB", "-1"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
