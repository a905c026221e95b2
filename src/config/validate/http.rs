//! What http and scrape targets ask and expect: method, headers, credentials (only ever from
//! files), `expect.status`, `expect.body_regex`, the body cap and redirects; refused on the kinds
//! that make no request.

use std::sync::OnceLock;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;

use super::agent::parse_body_limit;
use super::{is_http, scalar_or, Ctx, Diags, PathStyle};
use crate::config::raw::{OneOrMany, RawTarget, Scalar};
use crate::target::{Auth, HttpSpec, Kind, Secret, StatusRanges, TlsSettings};

/// The fields only http and scrape targets use, refused on the other kinds.
pub(super) fn refuse_where_unused(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) {
    if is_http(kind) {
        return;
    }
    let http_only: [(&str, bool); 6] = [
        ("basic_auth", rt.basic_auth.is_some()),
        ("bearer_token_file", rt.bearer_token_file.is_some()),
        ("headers", rt.headers.is_some()),
        ("method", rt.method.is_some()),
        ("body_limit", rt.body_limit.is_some()),
        ("max_redirects", rt.max_redirects.is_some()),
    ];
    for (field, given) in http_only {
        if given {
            d.error(
                ps.at(field),
                format!("only http and scrape targets use it, this one is {kind}; remove it, or change the kind"),
            );
        }
    }
    if let Some(e) = &rt.expect {
        for (field, given) in [
            ("expect.status", e.status.is_some()),
            ("expect.body_regex", e.body_regex.is_some()),
        ] {
            if given {
                d.error(
                    ps.at(field),
                    format!("only http and scrape targets use it, this one is {kind}; remove it"),
                );
            }
        }
    }
}

/// A scrape asks as Prometheus does: GET only.
pub(super) fn refuse_scrape_method(rt: &RawTarget, kind: Kind, ps: &PathStyle, d: &mut Diags) {
    if kind != Kind::Scrape {
        return;
    }
    if let Some(m) = rt.method.as_deref() {
        if !m.trim().eq_ignore_ascii_case("GET") {
            d.error(
                ps.at("method"),
                "scrape probes ask as Prometheus does, with GET; remove it, or use kind http",
            );
        }
    }
}

/// The HTTP side of a target, checked once for all its addresses.
pub(super) struct HttpParts {
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Option<Auth>,
    expect_status: StatusRanges,
    body_regex: Option<Regex>,
    body_limit: usize,
    max_redirects: u8,
}

impl HttpParts {
    /// The spec for one address's URL, with its TLS settings (https).
    pub fn spec(&self, url: url::Url, tls: Option<TlsSettings>) -> HttpSpec {
        HttpSpec {
            url,
            method: self.method.clone(),
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            expect_status: self.expect_status.clone(),
            body_regex: self.body_regex.clone(),
            body_limit: self.body_limit,
            max_redirects: self.max_redirects,
            tls,
        }
    }
}

/// The HTTP side of a target; `None` when any of it has an error (recorded).
pub(super) fn parts(rt: &RawTarget, kind: Kind, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Option<HttpParts> {
    let before = d.errors.len();
    let method = method(rt, ps, d);
    let headers = headers(rt, ps, d);
    let auth = auth(rt, ps, ctx, d);
    let expect = rt.expect.clone().unwrap_or_default();
    let expect_status = expect_status(expect.status.as_ref(), ps, d);
    let body_regex = body_regex(expect.body_regex.as_deref(), ps, d);
    let body_limit = scalar_or(
        d,
        &ps.at("body_limit"),
        rt.body_limit.as_ref(),
        ctx.body_limit,
        parse_body_limit,
    );
    // A scrape follows redirects as Prometheus does (Go's client: up to 10); a plain http probe
    // judges the 3xx itself unless asked to follow.
    let default_redirects = if kind == Kind::Scrape { 10u8 } else { 0u8 };
    let max_redirects = scalar_or(
        d,
        &ps.at("max_redirects"),
        rt.max_redirects.as_ref(),
        default_redirects,
        |s| {
            s.trim().parse::<u8>().map_err(|_| {
                format!("`{s}` is not a number of redirects; use a whole number from 0 (not followed) to 255")
            })
        },
    );

    if d.errors.len() > before {
        return None;
    }
    Some(HttpParts {
        method,
        headers,
        auth,
        expect_status,
        body_regex,
        body_limit,
        max_redirects,
    })
}

/// `method` (default GET).
fn method(rt: &RawTarget, ps: &PathStyle, d: &mut Diags) -> Method {
    match rt.method.as_deref().map(str::trim) {
        None => Method::GET,
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) if !m.as_str().is_empty() => m,
            _ => {
                d.error(
                    ps.at("method"),
                    format!("`{m}` is not an HTTP method; use GET, HEAD, POST, …"),
                );
                Method::GET
            }
        },
    }
}

/// `headers`, in the order written; credentials are refused (they come from files), values
/// that look like credentials are marked sensitive.
fn headers(rt: &RawTarget, ps: &PathStyle, d: &mut Diags) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    if let Some(hs) = &rt.headers {
        for (k, v) in &hs.0 {
            let rel = format!("headers.{k}");
            let name = match HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    d.error(
                        ps.at(&rel),
                        format!(
                            "`{k}` is not a valid header name; use letters, digits and hyphens, e.g. X-Scope-OrgID"
                        ),
                    );
                    continue;
                }
            };
            if name == http::header::AUTHORIZATION
                || name == http::header::PROXY_AUTHORIZATION
                || name == http::header::COOKIE
            {
                d.error(
                    ps.at(&rel),
                    "credentials are never written in the config; use basic_auth.password_file or bearer_token_file (files from a mounted Secret)",
                );
                continue;
            }
            match HeaderValue::from_str(v.as_str()) {
                Ok(mut value) => {
                    let lower = name.as_str();
                    if ["auth", "token", "key", "secret", "password", "cookie", "session"]
                        .iter()
                        .any(|w| lower.contains(w))
                    {
                        value.set_sensitive(true);
                    }
                    headers.push((name, value));
                }
                // The value is not echoed: it may be a credential.
                Err(_) => d.error(
                    ps.at(&rel),
                    "the value is not a valid header value (control characters, newlines or non-ASCII); fix it",
                ),
            }
        }
    }
    headers
}

/// `basic_auth` or `bearer_token_file` (not both), the secrets read from their files.
fn auth(rt: &RawTarget, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Option<Auth> {
    match (&rt.basic_auth, rt.bearer_token_file.as_deref()) {
        (Some(_), Some(_)) => {
            d.error(
                ps.at("bearer_token_file"),
                "given together with basic_auth; a request carries one Authorization header, keep one of them",
            );
            None
        }
        (Some(b), None) => {
            let username = match b.username.as_deref() {
                None => {
                    d.error(ps.at("basic_auth.username"), "missing; basic_auth needs a username");
                    None
                }
                Some(u) if u.contains(':') => {
                    d.error(
                        ps.at("basic_auth.username"),
                        "contains `:`, which basic auth cannot carry in a username; fix it",
                    );
                    None
                }
                Some(u) => Some(u.to_string()),
            };
            let password = match b.password_file.as_deref() {
                None => {
                    d.error(
                    ps.at("basic_auth.password_file"),
                    "missing; name the file that holds the password (a mounted Secret), passwords are never written in the config",
                );
                    None
                }
                Some(p) => read_secret(ctx, p, "basic_auth.password_file", "password", ps, d),
            };
            match (username, password) {
                (Some(username), Some(password)) => Some(Auth::Basic { username, password }),
                _ => None,
            }
        }
        (None, Some(p)) => {
            let token = read_secret(ctx, p, "bearer_token_file", "token", ps, d);
            if let Some(t) = &token {
                if HeaderValue::from_str(&format!("Bearer {}", t.expose())).is_err() {
                    d.error(
                        ps.at("bearer_token_file"),
                        format!(
                            "{} holds characters that cannot go in an HTTP header; the file must hold only the token",
                            ctx.resolve(p).display()
                        ),
                    );
                }
            }
            token.map(|token| Auth::Bearer { token })
        }
        (None, None) => None,
    }
}

/// `expect.status` (default any 2xx).
fn expect_status(status: Option<&OneOrMany>, ps: &PathStyle, d: &mut Diags) -> StatusRanges {
    match status {
        None => StatusRanges::default_2xx(),
        Some(items) => {
            let texts: Vec<&str> = items.0.iter().map(Scalar::as_str).collect();
            match parse_status_ranges(&texts) {
                Ok(r) => r,
                Err(msg) => {
                    d.error(ps.at("expect.status"), msg);
                    StatusRanges::default_2xx()
                }
            }
        }
    }
}

/// `expect.body_regex`.
fn body_regex(re: Option<&str>, ps: &PathStyle, d: &mut Diags) -> Option<Regex> {
    match re {
        None => None,
        Some(re) => match Regex::new(re) {
            Ok(r) => Some(r),
            Err(e) => {
                d.error(
                    ps.at("expect.body_regex"),
                    format!(
                        "`{re}` is not a valid regular expression ({}); fix the pattern (Rust regex syntax)",
                        regex_reason(&e)
                    ),
                );
                None
            }
        },
    }
}

/// The one-line reason of a regex error (its last `error: …` line).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or_default())
        .trim()
        .to_string()
}

/// Reads a secret file: surrounding whitespace trimmed, as Prometheus does (a Secret written with
/// `echo` ends in a newline; an editor may add more); an empty one is an error. Never echoes it.
fn read_secret(ctx: &Ctx, p: &str, rel: &str, what: &str, ps: &PathStyle, d: &mut Diags) -> Option<Secret> {
    let path = ctx.resolve(p);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim();
            if s.is_empty() {
                d.error(ps.at(rel), format!("{} is empty; put the {what} in it", path.display()));
                None
            } else {
                Some(Secret::new(s))
            }
        }
        Err(e) => {
            d.error(
                ps.at(rel),
                format!(
                    "cannot read {}: {e}; create the file or mount the Secret there",
                    path.display()
                ),
            );
            None
        }
    }
}

/// Parses `expect.status` items: `200`, `300-399`, `2xx`, each possibly a comma-separated list.
/// The error is a message (without field path).
pub fn parse_status_ranges(items: &[&str]) -> Result<StatusRanges, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^(?:([0-9]{3})(?:-([0-9]{3}))?|([1-5])[xX][xX])$").expect("status regex"));
    let mut out = Vec::new();
    for item in items.iter().flat_map(|i| i.split(',')).map(str::trim) {
        let bad = || {
            format!(
                "`{item}` is not a status code or range; write codes from 100 to 599 like 200, \"300-399\" or \"2xx\""
            )
        };
        let caps = re.captures(item).ok_or_else(bad)?;
        let (lo, hi) = if let Some(class) = caps.get(3) {
            let c: u16 = class.as_str().parse().map_err(|_| bad())?;
            (c * 100, c * 100 + 99)
        } else {
            let lo: u16 = caps[1].parse().map_err(|_| bad())?;
            let hi: u16 = match caps.get(2) {
                Some(h) => h.as_str().parse().map_err(|_| bad())?,
                None => lo,
            };
            (lo, hi)
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
            return Err(bad());
        }
        if hi < lo {
            return Err(format!(
                "`{item}` runs backwards; write the lower code first: {hi}-{lo}"
            ));
        }
        out.push((lo, hi));
    }
    if out.is_empty() {
        return Err("empty; list the statuses that count as success, e.g. [200, \"300-399\"]".to_string());
    }
    Ok(StatusRanges(out))
}
