//! `tls:` — needed by kind tls and by https URLs, refused where there is no TLS; its files (CA,
//! client certificate and key) read and checked once per target, then the settings built per
//! address (each address may be its own server name).

use super::destination::Dest;
use super::{is_http, Ctx, Diags, PathStyle};
use crate::config::raw::{RawTarget, RawTls};
use crate::probe::tls::{parse_identity, settings, TlsField};
use crate::target::{ClientIdentity, Kind, TlsSettings};

/// The TLS inputs of a target that does TLS (kind tls, or an https URL); refuses a `tls:` block
/// where there is no TLS.
pub(super) fn inputs(
    rt: &RawTarget,
    kind: Kind,
    dests: Option<&[Dest]>,
    ps: &PathStyle,
    ctx: &Ctx,
    d: &mut Diags,
) -> Option<TlsInputs> {
    let https = match dests {
        Some([Dest::Url(u), ..]) => u.scheme() == "https",
        _ => false,
    };
    let wants_tls = kind == Kind::Tls || https;
    if rt.tls.is_some() && !wants_tls {
        let why = match kind {
            Kind::Http | Kind::Scrape => {
                "the url is plain http://, there is no TLS to configure; use https://, or remove tls".to_string()
            }
            _ => format!("{kind} targets do not do TLS; remove it, or use kind tls"),
        };
        // An http target without a usable url already has its error there.
        if dests.is_some() || !is_http(kind) {
            d.error(ps.at("tls"), why);
        }
    }
    if !wants_tls {
        return None;
    }
    read_inputs(rt.tls.as_ref().cloned().unwrap_or_default(), ps, ctx, d)
}

/// The files of a `tls:` block, read and checked once for all the addresses of a target.
pub(super) struct TlsInputs {
    insecure: bool,
    server_name: Option<String>,
    ca_pem: Option<Vec<u8>>,
    identity: Option<ClientIdentity>,
}

/// A file's bytes, or an error naming the field and the path tried.
fn read_file(ctx: &Ctx, p: &str, rel: &str, ps: &PathStyle, d: &mut Diags) -> Option<Vec<u8>> {
    let path = ctx.resolve(p);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            d.error(
                ps.at(rel),
                format!(
                    "cannot read {}: {e}; check the path, or mount the file there",
                    path.display()
                ),
            );
            None
        }
    }
}

/// Reads and checks a `tls:` block's files and names.
fn read_inputs(t: RawTls, ps: &PathStyle, ctx: &Ctx, d: &mut Diags) -> Option<TlsInputs> {
    let before = d.errors.len();
    let insecure = t.insecure_skip_verify.unwrap_or(false);
    let server_name = match t.server_name.as_deref().map(str::trim) {
        Some("") => {
            d.error(
                ps.at("tls.server_name"),
                "empty; set the name the certificate is for, or remove it to use the host",
            );
            None
        }
        other => other.map(str::to_string),
    };
    let mut ca_pem = None;
    if let Some(ca) = t.ca_file.as_deref() {
        if insecure {
            d.error(
                ps.at("tls.ca_file"),
                "given with insecure_skip_verify: true, which skips verification, so the CA would never be used; remove one of them",
            );
        } else {
            ca_pem = read_file(ctx, ca, "tls.ca_file", ps, d);
        }
    }
    let identity = match (t.cert_file.as_deref(), t.key_file.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            d.error(
                ps.at("tls.key_file"),
                "missing; cert_file needs the matching key_file for mTLS",
            );
            None
        }
        (None, Some(_)) => {
            d.error(
                ps.at("tls.cert_file"),
                "missing; key_file needs the matching cert_file for mTLS",
            );
            None
        }
        (Some(c), Some(k)) => {
            let cert = read_file(ctx, c, "tls.cert_file", ps, d);
            let key = read_file(ctx, k, "tls.key_file", ps, d);
            match (cert, key) {
                (Some(cert), Some(key)) => match parse_identity(&cert, &key) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        let (rel, fix) = blame(e.field(), "tls.server_name");
                        let file = if e.field() == TlsField::KeyFile { k } else { c };
                        d.error(
                            ps.at(rel),
                            format!("{}: {}; {fix}", ctx.resolve(file).display(), e.reason()),
                        );
                        None
                    }
                },
                _ => None,
            }
        }
    };
    if d.errors.len() > before {
        return None;
    }
    Some(TlsInputs {
        insecure,
        server_name,
        ca_pem,
        identity,
    })
}

/// Builds the TLS settings for one address. `host` is the URL or address host (the default
/// server name); `host_rel` names the field it came from.
pub(super) fn build(
    inputs: &TlsInputs,
    host: &str,
    host_rel: &str,
    ps: &PathStyle,
    d: &mut Diags,
) -> Option<TlsSettings> {
    let (server_name, name_rel) = match &inputs.server_name {
        Some(s) => (s.as_str(), "tls.server_name"),
        None => (host, host_rel),
    };
    let identity = inputs.identity.as_ref().map(|id| ClientIdentity {
        chain: id.chain.clone(),
        key: id.key.clone_key(),
    });
    match settings(server_name, inputs.ca_pem.as_deref(), inputs.insecure, identity) {
        Ok(s) => Some(s),
        Err(e) => {
            let (rel, fix) = blame(e.field(), name_rel);
            d.error(ps.at(rel), format!("{e}; {fix}"));
            None
        }
    }
}

/// The field a TLS setting's error is reported at, and the fix. `server_name_rel` is where the
/// server name came from: `tls.server_name`, or the url or address whose host it defaults to.
fn blame(field: TlsField, server_name_rel: &str) -> (&str, &'static str) {
    match field {
        TlsField::ServerName => (
            server_name_rel,
            "set tls.server_name to the name the certificate is for",
        ),
        TlsField::CaFile => ("tls.ca_file", "give a PEM file holding the CA certificate(s)"),
        TlsField::CertFile => ("tls.cert_file", "give the PEM client certificate (chain)"),
        TlsField::KeyFile => ("tls.key_file", "give the PEM private key that matches cert_file"),
        TlsField::Roots => ("tls", "give a ca_file, or check the system trust store"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The first error of a one-target inventory whose `tls:` block is `tls`, files in `dir`.
    fn first_error(tls: &str, dir: &Path) -> String {
        let text = format!(
            "agent: {{source_cluster: c}}\ntargets:\n- {{name: a, kind: tls, address: '10.0.0.1:443', tls: {tls}}}\n"
        );
        crate::config::parse(&text, dir).unwrap_err().0[0].to_string()
    }

    #[test]
    fn a_tls_error_is_blamed_on_the_field_its_type_names() {
        let dir = std::env::temp_dir().join(format!("pathprobe-tls-blame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
        let garbage = dir.join("garbage.pem");
        let e = first_error("{cert_file: garbage.pem, key_file: garbage.pem}", &dir);
        assert_eq!(
            e,
            format!(
                "targets[0].tls.cert_file: {}: no BEGIN CERTIFICATE block found; give the PEM client certificate (chain)",
                garbage.display()
            )
        );
        let e = first_error("{server_name: 'not a name'}", &dir);
        assert_eq!(
            e,
            "targets[0].tls.server_name: \"not a name\" is not a valid DNS name or IP address; set tls.server_name to the name the certificate is for"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
