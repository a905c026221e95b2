//! Ad-hoc targets for `pathprobe check`: `tcp://host:port`, `tls://host:port`, `http(s)://…`,
//! `scrape+http(s)://…` and `dns://name`, with the command's flags.
//!
//! An argument becomes the same raw target an inventory entry would be and goes through the same
//! validator, so the rules and messages are the inventory's; only the field paths read as the
//! flag that set them (`--ca-file`) or `target` for the argument itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::range::redact_userinfo;
use crate::config::raw::{OneOrMany, RawBasicAuth, RawExpect, RawTarget, RawTls, Scalar};
use crate::config::{check_target, Checked, ConfigError, ConfigErrors, Ctx, Diags, PathStyle};
use crate::target::Target;

/// The `check` command's flags that shape an ad-hoc target.
#[derive(Debug, Clone)]
pub struct AdhocOptions {
    /// The probe's timeout (`--timeout`; default 5s).
    pub timeout: Duration,
    /// Skip TLS verification (`--insecure`).
    pub insecure: bool,
    /// The CA to trust instead of the system roots (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// The TLS name to send and check instead of the URL's host (`--server-name`).
    pub server_name: Option<String>,
    /// Basic auth user name (`--basic-auth-user`).
    pub basic_auth_user: Option<String>,
    /// The file holding the basic auth password (`--basic-auth-password-file`).
    pub basic_auth_password_file: Option<PathBuf>,
    /// The file holding a bearer token (`--bearer-token-file`).
    pub bearer_token_file: Option<PathBuf>,
    /// As in the inventory: `200`, `200,301`, `300-399`, `2xx`.
    pub expect_status: Option<String>,
    /// A regex the body must match, as `expect.body_regex`; `check` has no flag for it.
    pub body_regex: Option<String>,
}

impl Default for AdhocOptions {
    fn default() -> AdhocOptions {
        AdhocOptions {
            timeout: Duration::from_secs(5),
            insecure: false,
            ca_file: None,
            server_name: None,
            basic_auth_user: None,
            basic_auth_password_file: None,
            bearer_token_file: None,
            expect_status: None,
            body_regex: None,
        }
    }
}

/// Turns one `check` argument into its targets (more than one for a last-octet range).
///
/// Flags that do not apply to the argument's kind are ignored (one `check` may mix kinds):
/// TLS flags for `tcp://`, `http://` and `dns://`, HTTP flags for anything not HTTP.
pub fn parse(arg: &str, opts: &AdhocOptions) -> Result<Vec<Target>, ConfigErrors> {
    let text = arg.trim();
    let name = redact_userinfo(text);
    if opts.timeout.is_zero() {
        return Err(ConfigError::new("--timeout", "zero; give a positive duration, e.g. 5s").into());
    }

    let lower = text.to_ascii_lowercase();
    let strip = |prefix: &str| -> Option<String> {
        lower
            .starts_with(prefix)
            .then(|| text[prefix.len()..].trim_end_matches('/').to_string())
    };
    let mut raw = RawTarget {
        name: Some(name.clone()),
        job: Some("adhoc".to_string()),
        ..RawTarget::default()
    };
    let (kind, tls) = if let Some(addr) = strip("tcp://") {
        raw.address = Some(no_userinfo(addr)?);
        ("tcp", false)
    } else if let Some(addr) = strip("tls://") {
        raw.address = Some(no_userinfo(addr)?);
        ("tls", true)
    } else if let Some(addr) = strip("dns://") {
        raw.address = Some(no_userinfo(addr)?);
        ("dns", false)
    } else if lower.starts_with("scrape+http://") || lower.starts_with("scrape+https://") {
        let url = &text["scrape+".len()..];
        raw.url = Some(url.to_string());
        ("scrape", url.to_ascii_lowercase().starts_with("https://"))
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        raw.url = Some(text.to_string());
        ("http", lower.starts_with("https://"))
    } else {
        return Err(ConfigError::new(
            "target",
            format!(
                "`{name}` is neither a target of the config nor an ad-hoc target; write tcp://host:port, \
                 tls://host:port, http(s)://host:port/path, scrape+http(s)://host:port/metrics or dns://name"
            ),
        )
        .into());
    };
    raw.kind = Some(kind.to_string());

    let path_text = |p: &Path| p.to_string_lossy().into_owned();
    if tls {
        raw.tls = Some(RawTls {
            insecure_skip_verify: Some(opts.insecure),
            ca_file: opts.ca_file.as_deref().map(path_text),
            server_name: opts.server_name.clone(),
            cert_file: None,
            key_file: None,
        });
    }
    if kind == "http" || kind == "scrape" {
        if opts.basic_auth_user.is_some() || opts.basic_auth_password_file.is_some() {
            raw.basic_auth = Some(RawBasicAuth {
                username: opts.basic_auth_user.clone(),
                password_file: opts.basic_auth_password_file.as_deref().map(path_text),
            });
        }
        raw.bearer_token_file = opts.bearer_token_file.as_deref().map(path_text);
        if opts.expect_status.is_some() || opts.body_regex.is_some() {
            raw.expect = Some(RawExpect {
                status: opts.expect_status.as_deref().map(|s| OneOrMany(vec![Scalar::from(s)])),
                body_regex: opts.body_regex.clone(),
                addresses: None,
                blocked: None,
            });
        }
    }

    let ctx = Ctx {
        files: Default::default(),
        base_dir: Path::new(""),
        // One probe, now: the interval only has to be no shorter than the timeout.
        interval: opts.timeout,
        timeout: opts.timeout,
        body_limit: crate::config::DEFAULT_BODY_LIMIT,
        cluster: "",
    };
    let mut diags = Diags::default();
    match check_target(&raw, &PathStyle::Adhoc, &ctx, &mut diags) {
        Checked::Probe(targets) if diags.errors.is_empty() => Ok(targets),
        _ => Err(ConfigErrors(diags.errors)),
    }
}

/// Refuses `user:pw@` in a `tcp://`, `tls://` or `dns://` argument, without echoing it.
fn no_userinfo(addr: String) -> Result<String, ConfigErrors> {
    if addr.contains('@') {
        return Err(ConfigError::new(
            "target",
            "credentials do not go in a tcp://, tls:// or dns:// target; remove the part up to `@`",
        )
        .into());
    }
    Ok(addr)
}

/// `check`'s flags on a target named from `--config`: each flag given overrides the inventory's
/// setting, as it would set an ad-hoc target's (`--timeout` only when `timeout_given`). Returns
/// the flags applied, and the flags given that do not apply to the target's kind (TLS flags on a
/// target without TLS, HTTP flags on one that is not HTTP).
pub fn override_raw(
    raw: &mut RawTarget,
    opts: &AdhocOptions,
    timeout_given: bool,
) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut applied, mut ignored) = (Vec::new(), Vec::new());
    let kind = raw.kind.as_deref().map(str::trim).unwrap_or_default();
    let https = raw
        .url
        .as_deref()
        .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"));
    let tls = kind == "tls" || ((kind == "http" || kind == "scrape") && https);
    let http = kind == "http" || kind == "scrape";
    // Flag paths are relative to where `check` runs, not to the inventory's directory.
    let absolute = |p: &Path| -> String {
        let p = if p.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        } else {
            p.to_path_buf()
        };
        p.to_string_lossy().into_owned()
    };
    if timeout_given {
        raw.timeout = Some(Scalar(crate::config::format_duration(opts.timeout)));
        applied.push("--timeout");
    }
    let mut on = |given: bool, flag: &'static str, applies: bool| -> bool {
        if given && applies {
            applied.push(flag);
        } else if given {
            ignored.push(flag);
        }
        given && applies
    };
    if on(opts.insecure, "--insecure", tls) {
        let t = raw.tls.get_or_insert_with(Default::default);
        t.insecure_skip_verify = Some(true);
        t.ca_file = None;
    }
    if on(opts.ca_file.is_some(), "--ca-file", tls) {
        let t = raw.tls.get_or_insert_with(Default::default);
        t.ca_file = opts.ca_file.as_deref().map(absolute);
        t.insecure_skip_verify = Some(false);
    }
    if on(opts.server_name.is_some(), "--server-name", tls) {
        raw.tls.get_or_insert_with(Default::default).server_name = opts.server_name.clone();
    }
    let basic = opts.basic_auth_user.is_some() || opts.basic_auth_password_file.is_some();
    if on(basic, "--basic-auth-user", http) {
        raw.basic_auth = Some(RawBasicAuth {
            username: opts.basic_auth_user.clone(),
            password_file: opts.basic_auth_password_file.as_deref().map(absolute),
        });
        raw.bearer_token_file = None;
    }
    if on(opts.bearer_token_file.is_some(), "--bearer-token-file", http) {
        raw.bearer_token_file = opts.bearer_token_file.as_deref().map(absolute);
        raw.basic_auth = None;
    }
    if on(opts.expect_status.is_some(), "--expect-status", http) {
        raw.expect.get_or_insert_with(Default::default).status =
            opts.expect_status.as_deref().map(|s| OneOrMany(vec![Scalar::from(s)]));
    }
    (applied, ignored)
}
