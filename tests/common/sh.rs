//! Running commands from tests that build network namespaces.
#![allow(dead_code)]

use std::process::Command;

/// Runs a command; panics with its stderr if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command inside a network namespace.
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// Fails (never skips) when not root: network namespaces, veth pairs and nftables need it.
pub fn require_root() {
    let uid = run(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "these tests create network namespaces, veth pairs and nftables rules, which needs root; \
         run them as root (CI does): sudo -E scripts/test"
    );
}
