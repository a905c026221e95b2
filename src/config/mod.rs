//! The inventory file: YAML in, a checked [`Inventory`] out, or every error at once.
//!
//! Two stages. [`parse_raw`] turns the text into the plain serde structs of [`raw`]
//! (`deny_unknown_fields`, so a typo is an error naming its path and line). [`validate`] then
//! checks every rule, collecting all errors rather than stopping at the first, reads the secret,
//! CA and client-certificate files (relative paths against the config file's directory), expands
//! last-octet ranges, and builds the [`Inventory`] that everything downstream trusts.
//!
//! Every error reads `field.path: what is wrong; the fix`. No error message ever holds a secret:
//! URLs are shown without userinfo, secret files are named but never echoed.
//!
//! Some things are allowed but probably not meant (a timeout longer than the interval): those are
//! warnings, returned beside the inventory by [`load_with_warnings`] / [`parse_with_warnings`].

pub mod duration;
pub mod range;
pub mod raw;
mod validate;

use std::fmt;
use std::path::Path;

use thiserror::Error;

use crate::target::Inventory;

pub use duration::{format_duration, parse_bytes, parse_duration};
pub use raw::RawConfig;
pub(crate) use validate::{check_target, Checked, Ctx, Diags, PathStyle};
pub use validate::{
    parse_status_ranges, validate, validate_with_warnings, DEFAULT_BODY_LIMIT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT,
};

/// One thing wrong with the inventory: where (`targets[3].tls.ca_file`, empty for the file as a
/// whole) and what, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field's path, `targets[3].tls.ca_file`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, and the fix.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` (empty: the whole file).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in an inventory, in file order. Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn lines(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl ConfigErrors {
    /// The errors, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
    /// How many errors were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(v: Vec<ConfigError>) -> ConfigErrors {
        ConfigErrors(v)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

/// Something allowed but probably not meant. Same shape and display as [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The field's path; empty for the file as a whole.
    pub path: String,
    /// What looks off, and what to do if it was not meant.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A valid inventory and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The checked inventory, ready to run.
    pub inventory: Inventory,
    /// Allowed but probably not meant; printed, never fatal.
    pub warnings: Vec<ConfigWarning>,
}

/// Reads, parses and validates the inventory file at `path`.
pub fn load(path: &Path) -> Result<Inventory, ConfigErrors> {
    load_with_warnings(path).map(|l| l.inventory)
}

/// [`load`], keeping the warnings.
pub fn load_with_warnings(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_as(path, None)
}

/// [`load_with_warnings`] for an agent whose command line names its cluster
/// (`--source-cluster`, `PATHPROBE_SOURCE_CLUSTER`): then `agent.source_cluster` may be left out
/// of the inventory (either is enough), and stands in for it as the targets' default `cluster`.
pub fn load_as(path: &Path, source_cluster: Option<&str>) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path.display().to_string(),
            format!("cannot read the inventory: {e}; check the path"),
        )
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parse_as(&text, base_dir, source_cluster)
}

/// Parses and validates inventory text; relative file paths resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Inventory, ConfigErrors> {
    parse_with_warnings(text, base_dir).map(|l| l.inventory)
}

/// [`parse`], keeping the warnings.
///
/// Every error comes at once: the document's shape errors (unknown fields, wrong types) are
/// collected and the fields at fault set aside, then the rest is validated, so four typos and a
/// bad value take one run to see, not five.
pub fn parse_with_warnings(text: &str, base_dir: &Path) -> Result<Loaded, ConfigErrors> {
    parse_as(text, base_dir, None)
}

/// [`parse_with_warnings`], with the command line's cluster standing in for a missing
/// `agent.source_cluster`.
fn parse_as(text: &str, base_dir: &Path, source_cluster: Option<&str>) -> Result<Loaded, ConfigErrors> {
    let (raw, structural) = parse_raw_collecting(text);
    let Some(mut raw) = raw else {
        return Err(ConfigErrors(structural));
    };
    if let Some(cluster) = source_cluster {
        let agent = raw.agent.get_or_insert_with(Default::default);
        if agent.source_cluster.as_deref().is_none_or(|s| s.trim().is_empty()) {
            agent.source_cluster = Some(cluster.to_string());
        }
    }
    if structural.is_empty() {
        return validate_with_warnings(&raw, base_dir).map_err(ConfigErrors);
    }
    Err(ConfigErrors(with_validation(&raw, structural, base_dir)))
}

/// The shape errors and then every validation error of what is left, in file order. A field
/// refused for its shape was set aside; what validation then says about the same field
/// (`missing`) is not news.
fn with_validation(raw: &RawConfig, mut errors: Vec<ConfigError>, base_dir: &Path) -> Vec<ConfigError> {
    let set_aside: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    if let Err(more) = validate_with_warnings(raw, base_dir) {
        errors.extend(
            more.into_iter()
                .filter(|e| !set_aside.iter().any(|p| e.path == *p || within(&e.path, p))),
        );
    }
    errors.sort_by_key(|e| file_order(&e.path));
    errors
}

/// What `check --config FILE NAME…` loads: the named targets, whatever is wrong elsewhere.
#[derive(Debug)]
pub struct ForCheck {
    /// The agent settings and the named targets (probed and documented-absent).
    pub loaded: Loaded,
    /// What is wrong with the targets not asked for: worth a warning, not a refusal.
    pub elsewhere: Vec<ConfigError>,
    /// Every target name in the file, for "did you mean".
    pub names: Vec<String>,
}

/// Loads the inventory for `check`: only the targets named in `names` (after `adjust`, which
/// applies `check`'s flags to each) must be valid, with `agent` and `defaults` (where a missing
/// `source_cluster` is `source_cluster`, or `-`: one probe from here labels nothing); an error in a
/// target not asked for (a Secret key missing for another target) must not disable the runbook
/// tool for every target, so it comes back in [`ForCheck::elsewhere`].
pub fn load_for_check(
    path: &Path,
    source_cluster: Option<&str>,
    names: &[String],
    mut adjust: impl FnMut(&mut raw::RawTarget),
) -> Result<ForCheck, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path.display().to_string(),
            format!("cannot read the inventory: {e}; check the path"),
        )
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (raw, structural) = parse_raw_collecting(&text);
    let Some(mut raw) = raw else {
        return Err(ConfigErrors(structural));
    };
    // One probe from here labels nothing: an inventory shared by clusters, whose agents take
    // their cluster from the command line, is as good for `check` as one that names it.
    let agent = raw.agent.get_or_insert_with(Default::default);
    if agent.source_cluster.as_deref().is_none_or(|s| s.trim().is_empty()) {
        agent.source_cluster = Some(source_cluster.unwrap_or("-").to_string());
    }
    let all = raw.targets.clone().unwrap_or_default();
    let picked: Vec<usize> = (0..all.len())
        .filter(|&i| {
            all[i]
                .name
                .as_deref()
                .is_some_and(|n| names.iter().any(|a| a == n.trim()))
        })
        .collect();
    let concerns_picked = |p: &str| match file_order(p) {
        n @ 3.. if n != usize::MAX => picked.contains(&(n - 3)),
        _ => true,
    };
    let everything = with_validation(&raw, structural.clone(), base_dir);
    let elsewhere: Vec<ConfigError> = everything.into_iter().filter(|e| !concerns_picked(&e.path)).collect();
    let mut fatal: Vec<ConfigError> = structural.into_iter().filter(|e| concerns_picked(&e.path)).collect();

    let mut sub = raw.clone();
    sub.targets = Some(
        picked
            .iter()
            .map(|&i| {
                let mut t = all[i].clone();
                adjust(&mut t);
                t
            })
            .collect(),
    );
    let renumber = |e: ConfigError| -> ConfigError {
        let n = file_order(&e.path);
        if n >= 3 && n != usize::MAX {
            let local = format!("targets[{}]", n - 3);
            let path = e.path.replacen(&local, &format!("targets[{}]", picked[n - 3]), 1);
            ConfigError { path, ..e }
        } else {
            e
        }
    };
    let set_aside: Vec<String> = fatal.iter().map(|e| e.path.clone()).collect();
    match validate_with_warnings(&sub, base_dir) {
        Ok(mut loaded) if fatal.is_empty() => {
            // An empty selection is not "none listed"; and one probe has no interval to fit in.
            loaded
                .warnings
                .retain(|w| w.path != "targets" && !w.message.contains("is not below the interval"));
            let names = all
                .iter()
                .filter_map(|t| t.name.as_deref().map(str::trim).map(String::from))
                .collect();
            Ok(ForCheck {
                loaded,
                elsewhere,
                names,
            })
        }
        Ok(_) => Err(ConfigErrors(fatal)),
        Err(errors) => {
            fatal.extend(
                errors
                    .into_iter()
                    .map(renumber)
                    .filter(|e| !set_aside.iter().any(|p| e.path == *p || within(&e.path, p))),
            );
            fatal.sort_by_key(|e| file_order(&e.path));
            Err(ConfigErrors(fatal))
        }
    }
}

/// The candidate closest to `typo` when it is close enough to be what was meant (a slip of a
/// letter or two), for "did you mean" hints.
pub fn did_you_mean<'a>(typo: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typo_lower = typo.to_lowercase();
    let allowed = (typo.chars().count() / 3).clamp(1, 3);
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let near = candidates
        .iter()
        .map(|c| (edit_distance(&typo_lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // Or a name begun and not finished (`prox` for `proxmox-ruapehu`).
    near.or_else(|| {
        candidates
            .iter()
            .filter(|c| typo.chars().count() >= 3 && c.to_lowercase().starts_with(&typo_lower))
            .min_by_key(|c| c.len())
            .copied()
    })
}

/// Levenshtein distance, with a swap of neighbours counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Whether `path` lies inside the field at `outer` (`targets[1].tls.ca_file` in `targets[1].tls`).
fn within(path: &str, outer: &str) -> bool {
    path.strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Where a path's section comes in the file: the file as a whole, `agent`, `defaults`, then each
/// target by index.
fn file_order(path: &str) -> usize {
    if path.is_empty() {
        0
    } else if path.starts_with("agent") {
        1
    } else if path.starts_with("defaults") {
        2
    } else if let Some(rest) = path.strip_prefix("targets[") {
        3 + rest
            .split(']')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0)
    } else {
        usize::MAX
    }
}

/// The structural stage alone: YAML syntax and the shape of the document (unknown fields,
/// wrong types), each error naming its path and line. Any such error is an error here; see
/// [`parse_with_warnings`] for the stage that also validates what is left.
pub fn parse_raw(text: &str) -> Result<RawConfig, ConfigErrors> {
    match parse_raw_collecting(text) {
        (Some(raw), errors) if errors.is_empty() => Ok(raw),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// The document as far as its shape allows, and every shape error. `None` when nothing can be
/// read (a YAML syntax error, or a document that is not a mapping).
fn parse_raw_collecting(text: &str) -> (Option<RawConfig>, Vec<ConfigError>) {
    // The usual case first: a document that reads straight into the raw structs, with no tag
    // (`!`) and no key a YAML value could hold twice, is one the YAML value below accepts
    // too; then that value (a tree of every node, 10 MB at 10,000 targets, on top of the
    // parser's own events) is never built.
    if !text.contains('!') {
        if let Some(raw) = parse_chunked(text) {
            return (Some(raw), Vec::new());
        }
        let (read, sure) = raw::with_sure_keys(|| {
            serde_path_to_error::deserialize::<_, Option<RawConfig>>(serde_yaml_ng::Deserializer::from_str(text))
        });
        if let (Ok(raw), true) = (read, sure) {
            let mut raw = raw.unwrap_or_default();
            if let Some(targets) = raw.targets.as_mut() {
                targets.shrink_to_fit();
            }
            return (Some(raw), Vec::new());
        }
    }
    // Syntax first, so that a YAML syntax error is not blamed on whatever field serde was in.
    let mut doc = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(v) => v,
        Err(e) => {
            let (msg, at) = strip_location(&e.to_string(), e.location());
            let at = at.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default();
            return (
                None,
                vec![ConfigError::new(
                    "",
                    format!("not valid YAML{at}: {msg}; fix the syntax there (indentation, quotes, brackets)"),
                )],
            );
        }
    };
    // The first shape error from the text itself, with serde's exact line and column.
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let first: Result<Option<RawConfig>, _> = serde_path_to_error::deserialize(de);
    let mut errors = Vec::new();
    let mut located = Locator::new(text);
    let mut err = match first {
        // An empty document: validation reports what is missing.
        Ok(raw) => return (Some(raw.unwrap_or_default()), errors),
        Err(e) => e,
    };
    // Then each further one: set the field at fault aside and read the document again. Each
    // round removes one field, so this ends; the bound is a backstop.
    for _ in 0..10_000 {
        let segments: Vec<serde_path_to_error::Segment> = err.path().iter().cloned().collect();
        let path = err.path().to_string();
        let inner = err.into_inner();
        let mut error = structural_error(&path, &inner);
        if inner.location().is_none() {
            if let Some((line, column)) = segments.last().and_then(|s| match s {
                serde_path_to_error::Segment::Map { key } => located.next(key),
                _ => None,
            }) {
                error.message = error
                    .message
                    .replacen("; ", &format!(" (line {line}, column {column}); "), 1);
            }
        } else if let Some(loc) = inner.location() {
            located.after = (loc.line(), loc.column());
        }
        let unknown = error.message.starts_with("unknown field");
        errors.push(error);
        if segments.is_empty() || !set_aside(&mut doc, &segments, unknown) {
            return (None, errors);
        }
        let next: Result<Option<RawConfig>, _> = serde_path_to_error::deserialize(doc.clone());
        match next {
            Ok(raw) => return (Some(raw.unwrap_or_default()), errors),
            Err(e) => err = e,
        }
    }
    (None, errors)
}

/// Targets read per YAML document by [`parse_chunked`].
const CHUNK: usize = 256;
/// From how many targets [`parse_chunked`] reads the list a chunk at a time.
const CHUNKED_FROM: usize = 1024;

/// A large block-style `targets:` list read a chunk of items at a time, so the parser's events
/// (about 1.2 KB per target) exist for one chunk, not for the whole list, and the list is
/// allocated once at its length: at 10,000 targets this halves the load's peak. `None` when the
/// text is not of that shape or any part does not read cleanly: the caller then reads the whole
/// document, which also gives the errors their exact paths and lines.
///
/// Equivalent to reading the whole document: the list is cut only where an item begins (a line
/// with `-` at the list's own indentation), the only place a block sequence's item can begin, so
/// a cut inside a multi-line value would leave an unterminated chunk, which fails; the rest of
/// the document is read with `targets:` left empty, so a second `targets` still fails as a
/// duplicate; an anchor used across a cut fails as undefined.
fn parse_chunked(text: &str) -> Option<RawConfig> {
    if text.contains('\t') {
        return None;
    }
    // Each line's start and text (without its line break).
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        lines.push((at, l.trim_end_matches(['\n', '\r'])));
        at += l.len();
    }
    let mut heads = lines
        .iter()
        .enumerate()
        .filter(|(_, (_, l))| l.trim_end() == "targets:");
    let (head, None) = (heads.next()?.0, heads.next()) else {
        return None;
    };
    let content = |l: &str| {
        let t = l.trim_start_matches(' ');
        (!t.is_empty() && !t.starts_with('#')).then_some(l.len() - t.len())
    };
    let first = (head + 1..lines.len()).find(|&i| content(lines[i].1).is_some())?;
    let indent = content(lines[first].1)?;
    // Only spaces come before `indent` in a line whose content starts there.
    let is_item = |l: &str| content(l) == Some(indent) && (&l[indent..] == "-" || l[indent..].starts_with("- "));
    let mut items = Vec::new();
    let mut end = lines.len();
    for (i, (_, l)) in lines.iter().enumerate().skip(first) {
        if is_item(l) {
            items.push(i);
        } else if content(l).is_some_and(|c| c <= indent) {
            end = i;
            break;
        }
    }
    if items.len() < CHUNKED_FROM || items[0] != first {
        return None;
    }
    let (cut_from, cut_to) = (lines[first].0, lines.get(end).map_or(text.len(), |l| l.0));
    let starts: Vec<usize> = items.iter().map(|&i| lines[i].0).collect();
    drop(lines);

    let mut rest = String::with_capacity(text.len() - (cut_to - cut_from));
    rest.push_str(&text[..cut_from]);
    rest.push_str(&text[cut_to..]);
    let (read, sure) = raw::with_sure_keys(|| serde_yaml_ng::from_str::<Option<RawConfig>>(&rest));
    let mut raw = match (read, sure) {
        (Ok(raw), true) => raw.unwrap_or_default(),
        _ => return None,
    };
    drop(rest);
    if raw.targets.is_some() {
        return None;
    }
    let mut targets = Vec::with_capacity(starts.len());
    for (n, chunk) in starts.chunks(CHUNK).enumerate() {
        let to = starts.get((n + 1) * CHUNK).copied().unwrap_or(cut_to);
        let (read, sure) = raw::with_sure_keys(|| serde_yaml_ng::from_str::<Vec<raw::RawTarget>>(&text[chunk[0]..to]));
        match (read, sure) {
            (Ok(read), true) if read.len() == chunk.len() => targets.extend(read),
            _ => return None,
        }
    }
    raw.targets = Some(targets);
    Some(raw)
}

/// Takes the field at `path` out of the document: removed when unknown, emptied (null, so an
/// optional field reads as absent; an empty mapping for a list item) when of the wrong shape.
fn set_aside(doc: &mut serde_yaml_ng::Value, path: &[serde_path_to_error::Segment], unknown: bool) -> bool {
    use serde_path_to_error::Segment;
    use serde_yaml_ng::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = doc;
    for seg in parents {
        let next = match (seg, cur) {
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str()),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) if unknown => m.shift_remove(key.as_str()).is_some(),
        (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
            Some(v) if !v.is_null() => {
                *v = Value::Null;
                true
            }
            _ => false,
        },
        (Segment::Seq { index }, Value::Sequence(items)) => match items.get_mut(*index) {
            Some(v) if v.as_mapping().is_none_or(|m| !m.is_empty()) => {
                *v = Value::Mapping(Default::default());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Finds where keys are written, for the errors found after the first (a `Value` has no
/// locations). Errors come in file order (everything before one was read without fault), so an
/// error's key is the first place that key is written after the previous error.
struct Locator<'a> {
    text: &'a str,
    /// Where the previous error was, (line, column), 1-based.
    after: (usize, usize),
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Locator<'a> {
        Locator { text, after: (0, 0) }
    }

    /// The (line, column) of the first place `key:` is written after the previous error.
    fn next(&mut self, key: &str) -> Option<(usize, usize)> {
        let found = key_places(self.text, key).into_iter().find(|p| *p > self.after)?;
        self.after = found;
        Some(found)
    }
}

/// Every place `key` is written as a mapping key (block or flow style), outside comments.
fn key_places(text: &str, key: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = match line.find(" #") {
            Some(c) => &line[..c],
            None if line.trim_start().starts_with('#') => continue,
            None => line,
        };
        let mut from = 0;
        while let Some(pos) = code[from..].find(key) {
            let at = from + pos;
            let before = code[..at].chars().next_back();
            let after = code[at + key.len()..].trim_start_matches([' ', '"', '\'']);
            let starts = matches!(before, None | Some(' ' | '{' | ',' | '-' | '"' | '\''));
            if starts && after.starts_with(':') {
                out.push((i + 1, code[..at].chars().count() + 1));
            }
            from = at + key.len();
        }
    }
    out
}

/// Turns a serde error into `path: what (line, column); fix`.
fn structural_error(path: &str, err: &serde_yaml_ng::Error) -> ConfigError {
    let (mut msg, at) = strip_location(&err.to_string(), err.location());
    let at = at.map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default();
    // serde_yaml_ng prefixes its own idea of the path; ours (from serde_path_to_error) is better.
    let mut prefix = path.to_string();
    loop {
        if let Some(rest) = msg.strip_prefix(&format!("{prefix}: ")) {
            msg = rest.to_string();
            break;
        }
        match prefix.rfind(['.', '[']) {
            Some(i) => prefix.truncate(i),
            None => break,
        }
    }
    // A misplaced value may be a credential (`basic_auth: user:password`): never echo strings.
    let msg = quoted_strings().replace_all(&msg, "${1}a string");
    let msg = range::redact_userinfo(&msg);
    let msg = rust_type_names().replace_all(&msg, "a mapping").into_owned();
    let fix: String = if msg.starts_with("unknown field `password`") {
        "passwords are never written in the config: put it in a file (a mounted Secret) and name it in basic_auth.password_file".into()
    } else if msg.starts_with("unknown field `bearer_token`") {
        "tokens are never written in the config: put it in a file (a mounted Secret) and name it in bearer_token_file"
            .into()
    } else if msg.starts_with("unknown field") {
        let fields: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
        match fields
            .split_first()
            .and_then(|(typo, known)| did_you_mean(typo, known.iter().copied()))
        {
            Some(near) => format!("did you mean `{near}`? fix its spelling or remove it"),
            None => "fix its spelling or remove it".into(),
        }
    } else if msg.starts_with("duplicate field") {
        "keep only one of them".into()
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        "give it a value of the expected type".into()
    } else {
        "fix the document there".into()
    };
    let path = if path == "." { "" } else { path };
    ConfigError::new(path, format!("{msg}{at}; {fix}"))
}

fn quoted_strings() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r#"(invalid (?:type|value): )string "(?:[^"\\]|\\.)*""#).expect("string regex"))
}

fn rust_type_names() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"(?:struct|enum) Raw[A-Za-z]*").expect("type-name regex"))
}

/// Takes serde_yaml_ng's ` at line L column C` out of the message: returns the message without
/// it, and (L, C).
fn strip_location(msg: &str, loc: Option<serde_yaml_ng::Location>) -> (String, Option<(usize, usize)>) {
    match loc {
        Some(l) => {
            let needle = format!(" at line {} column {}", l.line(), l.column());
            (msg.replacen(&needle, "", 1), Some((l.line(), l.column())))
        }
        None => (msg.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inventory of `n` targets in every style a list item can take.
    fn many(n: usize) -> String {
        let mut text = String::from("# fleet\nagent: { source_cluster: c }\ndefaults:\n  interval: 30s\ntargets:\n");
        for i in 0..n {
            match i % 5 {
                0 => text += &format!("  - {{ name: t{i}, kind: tcp, address: \"10.0.0.1:{}\" }}\n", 1000 + i),
                1 => text += &format!(
                    "  - name: t{i}\n    kind: http\n    url: https://x{i}.example/\n    tls:\n      server_name: x\n    headers:\n      X-Team: a\n"
                ),
                2 => text += &format!("\n# group {i}\n  - name: t{i}\n    expected: false\n    why: |\n      gone\n      - not an item\n"),
                3 => text += &format!("  -   {{ name: 't{i}', kind: dns,\n        address: \"n{i}.example\" }}\n"),
                _ => text += &format!("  - name: \"t{i} # not a comment\"\n    kind: tcp\n    address: a:1 # a comment\n"),
            }
        }
        text + "mesh:\n  peers: { static: [\"10.0.0.9:9\"] }\n"
    }

    #[test]
    fn a_large_list_read_in_chunks_is_the_document_read_whole() {
        for n in [CHUNKED_FROM, 2 * CHUNK * 5 + 7] {
            let text = many(n);
            let whole: Option<RawConfig> = serde_yaml_ng::from_str(&text).expect("valid");
            let chunked = parse_chunked(&text).expect("read in chunks");
            assert_eq!(chunked.targets.as_ref().map(Vec::len), Some(n));
            assert_eq!(format!("{chunked:?}"), format!("{:?}", whole.expect("a document")));
        }
    }

    #[test]
    fn what_reading_in_chunks_cannot_vouch_for_is_read_whole() {
        let text = many(CHUNKED_FROM);
        assert!(
            parse_chunked(&many(CHUNKED_FROM - 1)).is_none(),
            "small lists are read whole"
        );
        // An anchor used across a cut, a second `targets`, a duplicate header: read whole, where
        // they get their exact errors (or meaning).
        let anchored = text.replacen("  - { name: t0,", "  - { name: &first t0,", 1) + "  - { name: *first }\n";
        assert!(parse_chunked(&anchored).is_none());
        let twice = text.replace("mesh:", "agent:");
        assert!(parse_chunked(&twice).is_none());
        let dup = text.replacen("      X-Team: a\n", "      X-Team: a\n      X-Team: b\n", 1);
        assert!(parse_chunked(&dup).is_none());
        let numeric = text.replacen("      X-Team: a\n", "      1: a\n", 1);
        assert!(parse_chunked(&numeric).is_none());
        // A list cut where an item seems to begin inside a quoted value fails, not misreads.
        let quoted = text.replacen("    why: |\n", "    why: \"\n  - x\"\n    job: |\n", 1);
        assert!(
            parse_chunked(&quoted).is_none() || {
                let whole: RawConfig = serde_yaml_ng::from_str(&quoted).expect("valid");
                format!("{:?}", parse_chunked(&quoted)) == format!("{:?}", Some(whole))
            }
        );
        // Text that is not ASCII where the items' indentation ends reads as well.
        let wide = text.replacen("    tls:\n", " 日本: x\n    tls:\n", 1);
        assert!(parse_chunked(&wide).is_none());
        // Errors keep their paths and lines: the document is read whole.
        let bad = text.replacen("kind: tcp, address", "kind: tcp, adress", 1);
        let errors = parse(&bad, Path::new(".")).expect_err("a typo");
        let first = errors.to_string();
        assert!(
            first.starts_with("targets[0].adress: unknown field `adress`") && first.contains("(line 6, column 28)"),
            "{errors}"
        );
    }
}
