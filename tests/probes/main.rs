//! Every reason of the contract, produced by a real fault on loopback (network-namespace faults
//! are in `tests/netns.rs`).

#[path = "../common/mod.rs"]
mod common;

mod dns;
mod http;
mod scrape;
mod tcp_tls;
