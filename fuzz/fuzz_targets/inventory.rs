//! The inventory loader and validator on any text: an error list naming fields, never a panic.
//! Seeds: tests/fixtures/config and config/ (see scripts/fuzz).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Files the inventory names are looked up in a directory that holds none.
    let dir = std::path::Path::new("/nonexistent-pathprobe-fuzz");
    match pathprobe::config::parse(text, dir) {
        Ok(inv) => {
            for t in &inv.targets {
                assert!(!t.timeout.is_zero(), "a checked target has a positive timeout");
            }
        }
        Err(errors) => assert!(!errors.to_string().trim().is_empty(), "an error says what is wrong"),
    }
});
