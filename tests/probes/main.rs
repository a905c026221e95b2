//! Every reason of the contract, produced by a real fault on loopback (network-namespace faults
//! are in `tests/netns.rs`). Each file's `faults!` table lists its fault tests and their reasons.

#[path = "../common/agent.rs"]
mod agent;
#[path = "../common/mod.rs"]
mod common;
mod faults;

mod dns;
mod http;
mod scrape;
mod tcp_tls;

use std::collections::BTreeSet;

use pathprobe::reason::Reason;

/// Reasons that no fault test produces, each with why. Only success belongs here.
const NOT_FROM_A_FAULT: &[(Reason, &str)] = &[(Reason::None, "success, not a fault: every passing probe produces it")];

/// Every row of every file's table.
fn rows() -> Vec<faults::Fault> {
    [tcp_tls::FAULTS, http::FAULTS, scrape::FAULTS, dns::FAULTS].concat()
}

/// The contract says every reason is produced by a real fault in some test. The tables say
/// which, and each row is a test asserting it, so this holds when a reason is added or a fault
/// test removed.
#[test]
fn every_reason_of_the_contract_is_produced_by_a_fault_test() {
    let rows = rows();
    let produced: BTreeSet<Reason> = rows.iter().map(|f| f.reason).collect();
    let excused: BTreeSet<Reason> = NOT_FROM_A_FAULT.iter().map(|(r, _)| *r).collect();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| !produced.contains(r) && !excused.contains(r))
        .map(|r| r.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "no fault test produces {missing:?}: add a real fault to a faults! table in tests/probes"
    );
    let stale: Vec<Reason> = produced.intersection(&excused).copied().collect();
    assert!(
        stale.is_empty(),
        "{stale:?} have fault tests: take them out of NOT_FROM_A_FAULT"
    );
    let names: BTreeSet<&str> = rows.iter().map(|f| f.test).collect();
    assert_eq!(names.len(), rows.len(), "each fault test has one row");
}
