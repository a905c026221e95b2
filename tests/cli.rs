//! The binary as users run it: exit codes, output formats, and secrets kept out of both.

#[path = "common/agent.rs"]
mod agent;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use pathprobe::fault_servers::{self as testbed, Reply};

fn pathprobe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(args)
        .output()
        .expect("running pathprobe")
}

async fn pathprobe_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pathprobe(&args)
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn check_json_prints_the_contract_object_and_exits_1_on_failure() {
    let addr = testbed::refused_port().await;
    let out = pathprobe_async(vec!["check".into(), "--json".into(), format!("tcp://{addr}")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<_> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["target"], format!("tcp://{addr}"));
    assert_eq!(v["kind"], "tcp");
    assert_eq!(v["success"], false);
    assert_eq!(v["reason"], "connect_refused");
    assert!(v["duration_seconds"].as_f64().unwrap() > 0.0);
    let phases = v["phases"].as_object().unwrap();
    assert_eq!(phases.keys().collect::<Vec<_>>(), ["connect", "resolve"]);
    assert_eq!(phases["resolve"], 0.0);
    assert!(v["http_status"].is_null() && v["tls"].is_null());
    assert!(v["error"].as_str().unwrap().contains("refused"));
}

#[tokio::test]
async fn check_of_a_healthy_target_exits_0_with_a_table_and_verdict() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let out = pathprobe_async(vec!["check".into(), format!("http://{}/healthz", server.addr)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("TARGET"), "{text}");
    assert!(text.contains("REQUEST") && text.contains("none"), "{text}");
    assert!(text.contains("ok   http://") && text.contains("HTTP 200"), "{text}");
}

#[tokio::test]
async fn check_of_several_targets_prints_one_line_each_and_fails_if_any_failed() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let refused = testbed::refused_port().await;
    let out = pathprobe_async(vec![
        "check".into(),
        "--json".into(),
        format!("http://{}/", server.addr),
        format!("tcp://{refused}"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let reasons: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(reasons, ["none", "connect_refused"]);
}

#[test]
fn check_of_an_unknown_name_is_a_usage_error() {
    let out = pathprobe(&["check", "talos-node-exporter"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("neither a target name"), "{}", stderr(&out));
}

#[test]
fn check_and_validate_never_echo_credentials() {
    for url in [
        "https://admin:hunter2@127.0.0.1:1/",
        "https://admin:hun/ter2#x@127.0.0.1:1/",
        "tcp://admin:hunter2@127.0.0.1:1",
    ] {
        let out = pathprobe(&["check", url]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !all.contains("hunter2") && !all.contains("hun/ter2") && !all.contains("admin"),
            "{all}"
        );
        assert!(all.contains("credentials"), "{all}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.yaml");
    std::fs::write(
        &path,
        "agent: { source_cluster: prod }\ntargets:\n  - { name: a, kind: tcp, address: \"admin:Sup3rS3cret@10.0.0.1:22\" }\n  - { name: b, kind: dns, address: \"admin:Sup3rS3cret@db.example\" }\n  - { name: c, kind: http, url: \"https://admin:pa/ss#Sup3rS3cret@10.0.0.1:8006/x\" }\n",
    )
    .unwrap();
    let out = pathprobe(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        !err.contains("Sup3rS3cret") && !err.contains("admin") && !err.contains("pa/ss"),
        "{err}"
    );
    for field in ["targets[0].address", "targets[1].address", "targets[2].url"] {
        assert!(err.contains(field), "{field} named: {err}");
    }
}

#[test]
fn check_with_a_missing_password_file_is_a_usage_error_naming_the_flag() {
    let out = pathprobe(&[
        "check",
        "--basic-auth-user",
        "root@pam",
        "--basic-auth-password-file",
        "/nonexistent/pw",
        "http://127.0.0.1:1/",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/pw"), "{}", stderr(&out));
}

#[test]
fn validate_accepts_the_seed_inventory() {
    let out = pathprobe(&[
        "validate",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/inventory.yaml"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"));
}

#[test]
fn validate_prints_every_error_with_its_field_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "agent: { source_cluster: prod }\ntargets:\n  - { name: a, kind: http, url: \"http://10.0.0.1:9100/\", timeout: 5 minutes }\n  - { name: b, kind: tls, address: \"10.0.0.1:443\", tls: { ca_file: missing-ca.pem } }\n",
    )
    .unwrap();
    let out = pathprobe(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("targets[0].timeout"), "{err}");
    assert!(err.contains("targets[1].tls.ca_file"), "{err}");
}

#[tokio::test]
async fn check_looks_names_up_in_the_config() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "# TYPE up gauge\nup 1\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.yaml");
    std::fs::write(
        &path,
        format!(
            "agent: {{ source_cluster: prod }}\ntargets:\n  - {{ name: exporter, kind: scrape, url: \"http://{}/metrics\" }}\n  - {{ name: kube-proxy, expected: false, why: Cilium replaces kube-proxy }}\n",
            server.addr
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap().to_string();
    let out = pathprobe_async(vec![
        "check".into(),
        "--config".into(),
        p.clone(),
        "--json".into(),
        "exporter".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (v["target"].as_str(), v["kind"].as_str(), v["samples"].as_u64()),
        (Some("exporter"), Some("scrape"), Some(1))
    );
    let out = pathprobe_async(vec!["check".into(), "--config".into(), p.clone(), "kube-proxy".into()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "--   kube-proxy (documented absent, not probed): Cilium replaces kube-proxy"
    );
    let out = pathprobe_async(vec![
        "check".into(),
        "--config".into(),
        p,
        "--json".into(),
        "kube-proxy".into(),
    ])
    .await;
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["target"], "kube-proxy");
    assert_eq!(v["expected"], false);
    assert_eq!(v["why"], "Cilium replaces kube-proxy");
    assert!(v["success"].is_null() && v["reason"].is_null(), "{v}");
}

#[test]
fn demo_once_shows_one_target_per_failure_class() {
    let out = pathprobe(&["demo", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for reason in [
        "none",
        "connect_refused",
        "http_auth",
        "http_server_error",
        "tls_untrusted",
        "tls_expired",
        "tls_hostname",
        "http_timeout",
        "connection_reset",
        "http_protocol",
        "scrape_invalid",
        "dns_nxdomain",
    ] {
        assert!(text.contains(reason), "demo shows {reason}:\n{text}");
    }
    assert!(
        text.contains("kube-scheduler (documented absent, not probed)"),
        "{text}"
    );
    // It explains itself: the failures are on purpose, and what the columns mean.
    assert!(
        text.starts_with("pathprobe demo: 14 targets on loopback, started for this tour. 3 are healthy; the other 11 fail on purpose, one per failure class"),
        "{text}"
    );
    assert!(
        text.contains(
            "REQUEST (from sending the request to the first byte of the answer), TRANSFER (reading the body)"
        ),
        "{text}"
    );
    assert!(text.contains("3 samples"), "{text}");
}

#[test]
fn demo_serves_metrics_that_promtool_accepts() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("serving ")
                .and_then(|r| r.split_whitespace().next())
                .map(String::from)
        })
        .expect("the demo says where it serves");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    // The agent spreads its first probes over the 5s interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (status, exposition) = loop {
        let (status, text) = agent::get(addr.parse().unwrap(), "/metrics", None);
        if text.contains("reason=\"tls_expired\"") || std::time::Instant::now() > deadline {
            break (status, text);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert!(exposition.contains("pathprobe_failure_reason{"), "{exposition}");
    assert!(exposition.contains("reason=\"tls_expired\""), "{exposition}");
    assert!(exposition.contains("pathprobe_target_expected{") && exposition.contains("target=\"kube-scheduler\""));
    let (ok, report) = agent::promtool_check_metrics(&exposition);
    assert!(ok && report.trim().is_empty(), "promtool check metrics: {report}");
}

/// `check ARGS…`: (exit code, stdout, stderr).
async fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["check".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = pathprobe_async(all).await;
    (out.status.code(), stdout(&out), stderr(&out))
}

#[tokio::test]
async fn a_401_with_no_credentials_sent_says_so_and_names_the_flags() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(401, "no")).await;
    let (code, out, _) = check(&[&format!("http://{}/", server.addr)]).await;
    assert_eq!(code, Some(1));
    assert!(out.contains("HTTP 401 with no credentials sent"), "{out}");
    assert!(
        out.contains("--basic-auth-user") && out.contains("--bearer-token-file"),
        "{out}"
    );
    assert!(!out.contains("password file") && !out.contains("basic_auth"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong\n").unwrap();
    let (_, out, _) = check(&[
        "--basic-auth-user",
        "root@pam",
        "--basic-auth-password-file",
        pw.to_str().unwrap(),
        &format!("http://{}/", server.addr),
    ])
    .await;
    assert!(
        out.contains(
            "HTTP 401: the target refused the credentials sent — check the password in --basic-auth-password-file"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn a_hostname_mismatch_names_the_name_asked_for_and_the_names_the_certificate_holds() {
    let ca = testbed::TestCa::new();
    let server = testbed::https(
        &ca.issue_valid(&["grafana.example.internal", "grafana"]),
        |_: &testbed::Seen<'_>| Reply::new(200, "ok"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let (code, out, _) = check(&[
        "--ca-file",
        ca_file.to_str().unwrap(),
        &format!("tls://{}", server.addr),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!(
            "certificate of {} is for grafana.example.internal, grafana, not 127.0.0.1, the name asked for: fix the URL, or set --server-name to a name the certificate holds",
            server.addr
        )),
        "{out}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_port_says_it_was_not_tls() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let url = format!("https://{}/", server.addr);
    let (code, out, _) = check(&[&url]).await;
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!(
            "{} did not answer in TLS: it speaks plain text there, not TLS — use http://",
            server.addr
        )),
        "{out}"
    );
    let (_, out, _) = check(&["--json", &url]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["reason"], "tls_handshake");
    assert!(v["error"].as_str().unwrap().contains("not TLS"), "{v}");
}

#[tokio::test]
async fn untrusted_advice_fits_whether_a_ca_file_was_given_and_json_tls_is_null_without_a_handshake() {
    let now = time::OffsetDateTime::now_utc();
    let served = testbed::self_signed_ca(
        &["127.0.0.1"],
        now - time::Duration::days(1),
        now + time::Duration::days(30),
    );
    let other = testbed::self_signed_ca(
        &["127.0.0.1"],
        now - time::Duration::days(1),
        now + time::Duration::days(30),
    );
    let server = testbed::https(&served, |_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let target = format!("tls://{}", server.addr);
    let (_, out, _) = check(&[&target]).await;
    assert!(
        out.contains("tls_untrusted")
            && out.contains("pass --ca-file with its CA or the certificate itself, or --insecure"),
        "{out}"
    );
    assert!(!out.contains("tls.ca_file"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("other.pem");
    std::fs::write(&wrong, &other.cert_pem).unwrap();
    let (_, out, _) = check(&["--ca-file", wrong.to_str().unwrap(), &target]).await;
    assert!(
        out.contains("does not verify against the CA given with --ca-file"),
        "{out}"
    );
    assert!(
        !out.contains("pass --ca-file") && !out.contains("set tls.ca_file"),
        "{out}"
    );
    let (_, out, _) = check(&["--json", "--ca-file", wrong.to_str().unwrap(), &target]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["reason"], "tls_untrusted");
    assert!(v["tls"].is_null(), "no handshake completed: {v}");

    let pinned = dir.path().join("pinned.pem");
    std::fs::write(&pinned, &served.cert_pem).unwrap();
    let (code, out, _) = check(&["--json", "--ca-file", pinned.to_str().unwrap(), &target]).await;
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["tls"]["version"], "TLSv1.3", "{v}");
}

/// The runbook tool in an incident: one target's missing Secret key does not stop `check` of
/// another; flags override the named target's settings (and say so); an unknown name gets a
/// "did you mean".
#[tokio::test]
async fn check_of_a_name_survives_errors_elsewhere_and_applies_flags_as_overrides() {
    let slow = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let teapot = testbed::http(|_: &testbed::Seen<'_>| Reply::new(418, "short and stout")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.yaml");
    std::fs::write(
        &path,
        format!(
            "agent: {{ source_cluster: prod }}\ntargets:\n  - {{ name: proxmox, kind: http, url: \"http://{slow}/\", basic_auth: {{ username: root@pam, password_file: secrets/missing }} }}\n  - {{ name: web, kind: http, url: \"http://{teapot}/\" }}\n  - {{ name: vault, kind: tcp, address: \"10.0.0.1\" }}\n",
            slow = slow.addr,
            teapot = teapot.addr
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap();

    // web alone: the other targets' errors are warnings.
    let (code, out, err) = check(&["--config", p, "web"]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("http_status"), "{out}");
    assert!(err.contains("2 error(s) in targets not asked for"), "{err}");
    assert!(
        err.contains("targets[0].basic_auth.password_file: cannot read"),
        "{err}"
    );
    assert!(err.contains("targets[2].address"), "{err}");

    // Flags override the named target's settings, and say so.
    let (code, out, err) = check(&[
        "--config",
        p,
        "--expect-status",
        "418",
        "--timeout",
        "2s",
        "--insecure",
        "web",
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("note: web: --timeout, --expect-status override(s) the inventory's settings"),
        "{err}"
    );
    assert!(err.contains("note: web: --insecure do(es) not apply"), "{err}");

    // The broken target itself is still refused, with its real path.
    let (code, _, err) = check(&["--config", p, "proxmox"]).await;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("targets[0].basic_auth.password_file: cannot read"),
        "{err}"
    );
    assert!(!err.contains("targets[2]"), "only what proxmox needs: {err}");
    // …unless the flags supply what it lacks.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let (code, out, err) = check(&[
        "--config",
        p,
        "--basic-auth-user",
        "root@pam",
        "--basic-auth-password-file",
        pw.to_str().unwrap(),
        "proxmox",
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, _, err) = check(&["--config", p, "prox"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("did you mean `proxmox`?"), "{err}");
}

#[tokio::test]
async fn one_sample_is_singular() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "# TYPE up gauge\nup 1\n")).await;
    let (code, out, _) = check(&[&format!("scrape+http://{}/metrics", server.addr)]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("HTTP 200, 1 sample\n"), "{out}");
}

/// An inventory shared by clusters leaves `agent.source_cluster` to the agents' command line:
/// `check` needs no cluster at all, `validate` takes `PATHPROBE_SOURCE_CLUSTER` as the agent does.
#[tokio::test]
async fn an_inventory_without_source_cluster_serves_check_and_validates_with_the_env() {
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.yaml");
    std::fs::write(
        &path,
        format!(
            "targets:\n  - {{ name: web, kind: http, url: \"http://{}/\" }}\n",
            server.addr
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap().to_string();
    let run = move |args: Vec<String>, cluster: Option<&'static str>| {
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_pathprobe"));
            c.args(&args).env_remove("PATHPROBE_SOURCE_CLUSTER");
            if let Some(v) = cluster {
                c.env("PATHPROBE_SOURCE_CLUSTER", v);
            }
            c.output().unwrap()
        })
    };
    let out = run(vec!["check".into(), "--config".into(), p.clone(), "web".into()], None)
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(vec!["validate".into(), p.clone()], None).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--source-cluster or PATHPROBE_SOURCE_CLUSTER"),
        "{}",
        stderr(&out)
    );
    let out = run(vec!["validate".into(), p], Some("prod")).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn diagnose_without_a_prometheus_to_ask_exits_2_with_the_reason() {
    let addr = testbed::refused_port().await;
    let out = pathprobe_async(vec!["diagnose".into(), "--prometheus".into(), format!("http://{addr}")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach Prometheus at http://{addr}: connect_refused")),
        "{err}"
    );
}

#[test]
fn diagnose_refuses_a_bad_url_or_selector_with_exit_2_and_no_secret() {
    let out = pathprobe(&["diagnose", "--prometheus", "http://admin:hunter2@127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("credentials in the URL are not supported"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("hunter2"));
    let out = pathprobe(&["diagnose", "--prometheus", "http://127.0.0.1:1", "job/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`job/` is not JOB or JOB/INSTANCE"),
        "{}",
        stderr(&out)
    );
}
