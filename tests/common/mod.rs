//! Helpers shared by the integration tests: build targets the way users do, probe them.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pathprobe::adhoc::{self, AdhocOptions};
use pathprobe::probe::{self, ProbeContext, ProbeResult, Resolver};
use pathprobe::target::{ResolverSettings, Target};

/// Options with a short timeout, so failing cases finish fast.
pub fn opts() -> AdhocOptions {
    AdhocOptions {
        timeout: Duration::from_millis(1500),
        ..AdhocOptions::default()
    }
}

/// The one target an ad-hoc argument names.
pub fn adhoc(arg: &str, opts: &AdhocOptions) -> Target {
    let mut targets = adhoc::parse(arg, opts).unwrap_or_else(|e| panic!("{arg}: {e}"));
    assert_eq!(targets.len(), 1, "{arg} expands to one target");
    targets.remove(0)
}

/// A context resolving through `nameserver`, or the system's resolver.
pub fn ctx(nameserver: Option<std::net::SocketAddr>) -> ProbeContext {
    let settings = ResolverSettings {
        nameservers: nameserver.into_iter().collect(),
    };
    ProbeContext {
        resolver: Arc::new(Resolver::new(&settings).expect("resolver")),
        pin: None,
    }
}

/// Probes once with the system resolver.
pub async fn run(target: &Target) -> ProbeResult {
    probe::probe(target, &ctx(None)).await
}

/// Probes an ad-hoc argument once.
pub async fn check(arg: &str, opts: &AdhocOptions) -> ProbeResult {
    run(&adhoc(arg, opts)).await
}

/// The targets of an inventory written in YAML (files relative to `dir`).
pub fn inventory(yaml: &str, dir: &Path) -> Vec<Target> {
    pathprobe::config::parse(yaml, dir)
        .unwrap_or_else(|e| panic!("inventory invalid:\n{e}"))
        .targets
}

/// Writes `content` to `dir/name` and returns the path.
pub fn file(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("writing a test file");
    p
}
