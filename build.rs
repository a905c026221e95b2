//! Sets `PATHPROBE_REVISION` (read by `pathprobe_build_info{revision}`) at build time: the
//! environment variable of the same name when given (a container build may have no `.git`),
//! else `git rev-parse HEAD`, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PATHPROBE_REVISION");
    let from_env = std::env::var("PATHPROBE_REVISION")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let (revision, source) = match (from_env, git_head()) {
        (Some(r), _) => (r, "env"),
        (None, Some(r)) => (r, "git"),
        (None, None) => ("unknown".to_string(), "none"),
    };
    println!("cargo:rustc-env=PATHPROBE_REVISION={revision}");
    // Where it came from, for the test that checks it.
    println!("cargo:rustc-env=PATHPROBE_REVISION_SOURCE={source}");
}

/// HEAD's commit, and a rerun of this script when HEAD or the branch it names moves.
fn git_head() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let head = git(&["rev-parse", "HEAD"])?;
    // In a worktree HEAD lives in the worktree's git dir, the branch refs in the common one.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(head)
}
