//! The scrape probe's exposition parser on any body, in both formats: a count or a first error,
//! never a panic. Seeds: tests/fixtures/exposition (see scripts/fuzz).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pathprobe::exposition::{parse, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        if let Ok(summary) = parse(body, format) {
            assert!(summary.samples as usize <= body.len(), "no more samples than bytes");
        }
    }
});
