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
    pub path: String,
    pub message: String,
}

impl ConfigError {
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
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
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
    pub path: String,
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
    pub inventory: Inventory,
    pub warnings: Vec<ConfigWarning>,
}

/// Reads, parses and validates the inventory file at `path`.
pub fn load(path: &Path) -> Result<Inventory, ConfigErrors> {
    load_with_warnings(path).map(|l| l.inventory)
}

/// [`load`], keeping the warnings.
pub fn load_with_warnings(path: &Path) -> Result<Loaded, ConfigErrors> {
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
    parse_with_warnings(&text, base_dir)
}

/// Parses and validates inventory text; relative file paths resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Inventory, ConfigErrors> {
    parse_with_warnings(text, base_dir).map(|l| l.inventory)
}

/// [`parse`], keeping the warnings.
pub fn parse_with_warnings(text: &str, base_dir: &Path) -> Result<Loaded, ConfigErrors> {
    let raw = parse_raw(text)?;
    validate_with_warnings(&raw, base_dir).map_err(ConfigErrors)
}

/// The structural stage alone: YAML syntax and the shape of the document (unknown fields,
/// wrong types). Stops at the first such error, as serde does, naming its path and line.
pub fn parse_raw(text: &str) -> Result<RawConfig, ConfigErrors> {
    // Syntax first, so that a YAML syntax error is not blamed on whatever field serde was in.
    if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        let (msg, at) = strip_location(&e.to_string(), e.location());
        let at = at.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default();
        return Err(ConfigError::new(
            "",
            format!("not valid YAML{at}: {msg}; fix the syntax there (indentation, quotes, brackets)"),
        )
        .into());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let result: Result<Option<RawConfig>, _> = serde_path_to_error::deserialize(de);
    match result {
        // An empty document: validation reports what is missing.
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Err(structural_error(&path, &inner).into())
        }
    }
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
    let fix = if msg.starts_with("unknown field `password`") {
        "passwords are never written in the config: put it in a file (a mounted Secret) and name it in basic_auth.password_file"
    } else if msg.starts_with("unknown field `bearer_token`") {
        "tokens are never written in the config: put it in a file (a mounted Secret) and name it in bearer_token_file"
    } else if msg.starts_with("unknown field") {
        "fix its spelling or remove it"
    } else if msg.starts_with("duplicate field") {
        "keep only one of them"
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        "give it a value of the expected type"
    } else {
        "fix the document there"
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
