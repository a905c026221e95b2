//! pathprobe: a per-node synthetic-probe agent that says why a target is unreachable.
//!
//! See ARCHITECTURE.md for the map.

pub mod adhoc;
pub mod config;
pub mod exposition;
pub mod probe;
pub mod reason;
pub mod target;
pub mod metrics;
pub mod report;
pub mod testbed;
pub mod demo;
pub mod serve;
