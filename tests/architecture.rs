//! ARCHITECTURE.md is the map a newcomer reads first; these tests keep it true to the tree.
//!
//! The rule: every `.rs` file under `src/` and `tests/` is on the map (named itself, or a
//! directory holding it is named, e.g. `src/config/`), and every repository path the map names
//! exists. A path counts as named when it is in backticks, e.g. `src/probe/tls.rs`; braces list
//! several (`src/probe/{tcp,tls}.rs`) and `<…>` stands for any one directory
//! (`deploy/overlays/<cluster>/`). What is checked as a path: the first column of every table,
//! and any backticked text outside the diagram that starts with a top-level directory (`src/…`,
//! `deploy/…`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const MAP: &str = "ARCHITECTURE.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level directories a named path can start with (the repository's own, not `target/`).
fn top_dirs() -> BTreeSet<String> {
    fs::read_dir(root())
        .expect("reading the repository root")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "target")
        .collect()
}

/// Backticked spans of `text`, fenced blocks (the diagram) left out, each with whether it sits in
/// the first column of a table row.
fn spans(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let first_cell = line.strip_prefix('|').map(|rest| rest.split('|').next().unwrap_or(""));
        let first_cell_end = first_cell.map(|c| c.len() + 1).unwrap_or(0);
        let mut offset = 0;
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 {
                out.push((part.to_string(), offset < first_cell_end));
            }
            offset += part.len() + 1;
        }
    }
    out
}

/// `a/{b,c}.rs` → `a/b.rs`, `a/c.rs` (one pair of braces).
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(open), Some(close)) if open < close => path[open + 1..close]
            .split(',')
            .map(|alt| format!("{}{}{}", &path[..open], alt, &path[close + 1..]))
            .collect(),
        _ => vec![path.to_string()],
    }
}

/// Whether `path` exists, `<…>` matching any directory.
fn exists(base: &Path, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let Some((first, rest)) = path.split_once('/') else {
        return if path.starts_with('<') {
            dirs(base).next().is_some()
        } else {
            base.join(path).exists()
        };
    };
    if first.starts_with('<') {
        dirs(base).any(|d| exists(&d, rest))
    } else {
        exists(&base.join(first), rest)
    }
}

fn dirs(base: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(base)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
}

/// The repository paths the map names, as written (braces expanded).
fn named_paths() -> Vec<String> {
    let text = fs::read_to_string(root().join(MAP)).expect("reading ARCHITECTURE.md");
    let tops = top_dirs();
    let mut named = Vec::new();
    for (span, first_column) in spans(&text) {
        if span.contains(char::is_whitespace) || span.starts_with('/') || span.starts_with('.') {
            continue;
        }
        let top = span.split('/').next().unwrap_or("");
        let rooted = span.contains('/') && tops.contains(top);
        if first_column || rooted {
            named.extend(expand(span.split('#').next().unwrap_or("")));
        }
    }
    named
}

fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("reading a source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root()).expect("under the repository");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn every_path_the_map_names_exists() {
    let missing: Vec<String> = named_paths()
        .into_iter()
        .filter(|p| !exists(&root(), p))
        .map(|p| format!("{MAP} names `{p}`, which does not exist: correct the path (did the file move?) or remove it"))
        .collect();
    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

#[test]
fn every_source_and_test_file_is_on_the_map() {
    let named: BTreeSet<String> = named_paths().into_iter().collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    assert!(
        files.iter().any(|f| f == "src/lib.rs"),
        "found no source files: {files:?}"
    );
    let off_map: Vec<String> = files
        .into_iter()
        .filter(|file| {
            // The file itself, or a directory holding it below `src/` or `tests/` (naming all
            // of `src/` would put everything on the map and say nothing).
            let mut dir = file.as_str();
            if named.contains(dir) {
                return false;
            }
            while let Some((parent, _)) = dir.rsplit_once('/') {
                if parent.contains('/') && named.contains(&format!("{parent}/")) {
                    return false;
                }
                dir = parent;
            }
            true
        })
        .map(|f| {
            format!("`{f}` is not on the map: add a row for it to {MAP}'s table (or a row for its directory, `dir/`)")
        })
        .collect();
    assert!(off_map.is_empty(), "\n{}\n", off_map.join("\n"));
}

#[test]
fn the_rule_reads_the_map_as_written() {
    let text = "| `src/probe/{tcp,tls}.rs` + `tests/common/x.rs` | uses `raw.rs`, `kind` and `/metrics` |\n\
                ```\nsrc/in/diagram.rs\n```\nsee `deploy/rules/` and `target/tmp/`";
    let spans = spans(text);
    let first: Vec<&str> = spans.iter().filter(|(_, f)| *f).map(|(s, _)| s.as_str()).collect();
    assert_eq!(first, ["src/probe/{tcp,tls}.rs", "tests/common/x.rs"]);
    assert!(!spans.iter().any(|(s, _)| s.contains("diagram")));
    assert_eq!(
        expand("src/probe/{tcp,tls}.rs"),
        ["src/probe/tcp.rs", "src/probe/tls.rs"]
    );
    assert!(exists(&root(), "deploy/overlays/<cluster>/"));
    assert!(!exists(&root(), "src/no_such_module.rs"));
}
