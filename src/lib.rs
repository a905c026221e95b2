//! pathprobe: a per-node synthetic-probe agent that says why a target is unreachable.
//!
//! See ARCHITECTURE.md for the map.

// Bad input gets an error that names the field and the fix, never a panic. Unit tests may unwrap
// (clippy.toml: allow-unwrap-in-tests).
#![warn(clippy::unwrap_used)]

pub mod adhoc;
pub mod agent;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod discovery;
pub mod exposition;
pub mod mesh;
pub mod metrics;
pub mod probe;
pub mod promapi;
pub mod reason;
pub mod report;
pub mod schedule;
pub mod serve;
pub mod target;
pub mod testbed;
