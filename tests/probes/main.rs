//! Every reason of the contract, produced by a real fault on loopback (network-namespace faults
//! are in `tests/netns.rs`).

#[path = "../common/mod.rs"]
mod common;

mod dns;
mod http;
mod scrape;
mod tcp_tls;

/// The contract says every reason is produced by a real fault in some test: this keeps it so
/// when a reason is added.
#[test]
fn every_reason_of_the_contract_is_asserted_by_a_fault_test() {
    use pathprobe::reason::Reason;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let sources: String = [
        "probes/tcp_tls.rs",
        "probes/http.rs",
        "probes/scrape.rs",
        "probes/dns.rs",
        "netns.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect();
    for reason in Reason::ALL.into_iter().filter(|r| *r != Reason::None) {
        let variant = format!("Reason::{reason:?}");
        let label = format!("\"{}\"", reason.as_str());
        assert!(
            sources.contains(&format!("{variant})"))
                || sources.contains(&format!("{variant},"))
                || sources.contains(&label),
            "no fault test asserts {reason}"
        );
    }
}
