use std::sync::{Arc, Mutex};
use std::time::Duration;

use pathprobe::adhoc::AdhocOptions;
use pathprobe::fault_servers::{self as testbed, Reply};
use pathprobe::probe::{Phase, ProbeResult};
use pathprobe::reason::Reason;

use crate::common::{check, file, inventory, opts, run};
use crate::faults::faults;

faults! {
    http_401_403_and_407_are_http_auth => HttpAuth,
    api_server_proxy_503_is_http_server_error => HttpServerError,
    unexpected_status_is_http_status_and_expect_status_accepts_it => HttpStatus,
    a_server_that_never_answers_is_http_timeout_within_the_timeout => HttpTimeout,
    a_body_that_drips_forever_is_http_timeout => HttpTimeout,
    a_reset_after_connecting_is_connection_reset => ConnectionReset,
    a_close_without_answer_is_connection_reset => ConnectionReset,
    a_non_http_service_is_http_protocol => HttpProtocol,
    https_to_a_self_signed_server_is_tls_untrusted_and_insecure_passes => TlsUntrusted,
    body_regex_mismatch_is_body_mismatch => BodyMismatch,
    a_body_over_the_cap_is_body_too_large_whether_declared_or_streamed => BodyTooLarge,
    a_redirect_to_a_location_too_long_to_request_is_a_redirect_error_that_says_so => HttpProtocol,
}

async fn status_server(status: u16) -> testbed::Server {
    testbed::http(move |_: &testbed::Seen<'_>| Reply::new(status, "body\n")).await
}

#[tokio::test]
async fn http_probe_of_a_healthy_endpoint_times_every_phase() {
    let server = status_server(200).await;
    let r = check(&format!("http://{}/healthz", server.addr), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.http_status, Some(200));
    for phase in [Phase::Connect, Phase::Request, Phase::Transfer] {
        assert!(r.trace.phase(phase).is_some(), "{phase} timed");
    }
    assert!(r.trace.phase(Phase::Tls).is_none());
}

async fn http_401_403_and_407_are_http_auth() -> Vec<(String, ProbeResult)> {
    let mut produced = Vec::new();
    for status in [401, 403, 407] {
        let server = status_server(status).await;
        let r = check(&format!("http://{}/", server.addr), &opts()).await;
        assert_eq!(r.trace.http_status, Some(status));
        produced.push((format!("status {status}"), r));
    }
    produced
}

async fn api_server_proxy_503_is_http_server_error() -> ProbeResult {
    let server = testbed::http(|_: &testbed::Seen<'_>| {
        Reply::new(
            503,
            "Error trying to reach service: 'dial tcp 10.244.2.17:8082: i/o timeout'",
        )
    })
    .await;
    check(
        &format!(
            "http://{}/api/v1/namespaces/argocd/services/x:8082/proxy/metrics",
            server.addr
        ),
        &opts(),
    )
    .await
}

async fn unexpected_status_is_http_status_and_expect_status_accepts_it() -> ProbeResult {
    let server = status_server(404).await;
    let url = format!("http://{}/", server.addr);
    let unexpected = check(&url, &opts()).await;
    let o = AdhocOptions {
        expect_status: Some("404".into()),
        ..opts()
    };
    assert_eq!(check(&url, &o).await.reason, Reason::None);
    unexpected
}

async fn a_server_that_never_answers_is_http_timeout_within_the_timeout() -> ProbeResult {
    let server = testbed::hanging().await;
    let o = AdhocOptions {
        timeout: Duration::from_millis(500),
        ..opts()
    };
    let started = std::time::Instant::now();
    let r = check(&format!("http://{}/", server.addr), &o).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    r
}

async fn a_body_that_drips_forever_is_http_timeout() -> ProbeResult {
    let server = testbed::dripping(Duration::from_millis(50)).await;
    let o = AdhocOptions {
        timeout: Duration::from_millis(600),
        ..opts()
    };
    let r = check(&format!("http://{}/", server.addr), &o).await;
    assert!(
        r.trace.phase(Phase::Transfer).is_some(),
        "the time went to the transfer"
    );
    r
}

async fn a_reset_after_connecting_is_connection_reset() -> ProbeResult {
    let server = testbed::resetting().await;
    check(&format!("http://{}/", server.addr), &opts()).await
}

async fn a_close_without_answer_is_connection_reset() -> ProbeResult {
    let server = testbed::speaking(b"").await;
    check(&format!("http://{}/", server.addr), &opts()).await
}

async fn a_non_http_service_is_http_protocol() -> ProbeResult {
    let server = testbed::speaking(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    check(&format!("http://{}/", server.addr), &opts()).await
}

async fn https_to_a_self_signed_server_is_tls_untrusted_and_insecure_passes() -> ProbeResult {
    let server = testbed::https(&testbed::self_signed(&["127.0.0.1"]), |_: &testbed::Seen<'_>| {
        Reply::new(200, "ok")
    })
    .await;
    let url = format!("https://{}/", server.addr);
    let untrusted = check(&url, &opts()).await;
    let r = check(
        &url,
        &AdhocOptions {
            insecure: true,
            ..opts()
        },
    )
    .await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert!(r.trace.phase(Phase::Tls).is_some());
    untrusted
}

async fn body_regex_mismatch_is_body_mismatch() -> ProbeResult {
    let server = status_server(200).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: a, kind: http, url: \"http://{0}/\", expect: {{ body_regex: \"^ok\" }} }}\n  - {{ name: b, kind: http, url: \"http://{0}/\", expect: {{ body_regex: \"^body\" }} }}\n",
        server.addr
    );
    let targets = inventory(&yaml, dir.path());
    assert_eq!(run(&targets[1]).await.reason, Reason::None);
    run(&targets[0]).await
}

async fn a_body_over_the_cap_is_body_too_large_whether_declared_or_streamed() -> Vec<(String, ProbeResult)> {
    let big = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, vec![b'x'; 64 * 1024])).await;
    let dripping = testbed::dripping(Duration::from_micros(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: declared, kind: http, url: \"http://{}/\", body_limit: 1KiB }}\n  - {{ name: streamed, kind: http, url: \"http://{}/\", body_limit: 1KiB, timeout: 5s }}\n",
        big.addr, dripping.addr
    );
    let mut produced = Vec::new();
    for target in inventory(&yaml, dir.path()) {
        produced.push((target.name.clone(), run(&target).await));
    }
    produced
}

#[tokio::test]
async fn basic_auth_and_bearer_credentials_are_sent_from_their_files_and_never_shown() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let server = testbed::http(move |req: &testbed::Seen<'_>| {
        let auth = req
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        s.lock().unwrap().push(auth.clone());
        if auth == "Basic cm9vdEBwYW06czNjcmV0LXB3" || auth == "Bearer t0ken-s3cret" {
            Reply::new(200, "ok")
        } else {
            Reply::new(401, "no")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pw = file(dir.path(), "pw", "s3cret-pw\n");
    let token = file(dir.path(), "token", "t0ken-s3cret\n");
    let url = format!("http://{}/", server.addr);
    let basic = AdhocOptions {
        basic_auth_user: Some("root@pam".into()),
        basic_auth_password_file: Some(pw),
        ..opts()
    };
    let r = check(&url, &basic).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    let bearer = AdhocOptions {
        bearer_token_file: Some(token),
        ..opts()
    };
    let target = crate::common::adhoc(&url, &bearer);
    assert!(
        !format!("{target:?}").contains("t0ken-s3cret"),
        "Debug of a target hides the token"
    );
    let r = run(&target).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    let wrong = file(dir.path(), "wrong", "nope");
    let r = check(
        &url,
        &AdhocOptions {
            bearer_token_file: Some(wrong),
            ..opts()
        },
    )
    .await;
    assert_eq!(r.reason, Reason::HttpAuth);
    let json = pathprobe::report::json(&target, &r).to_string();
    assert!(!json.contains("nope") && !json.contains("s3cret"), "{json}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn redirects_are_not_followed_unless_asked() {
    let target = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "landed")).await;
    let location = format!("http://{}/landed", target.addr);
    let redirect =
        testbed::http(move |_: &testbed::Seen<'_>| Reply::new(302, "").header("location", location.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: stay, kind: http, url: \"http://{0}/\" }}\n  - {{ name: follow, kind: http, url: \"http://{0}/\", max_redirects: 3, expect: {{ body_regex: landed }} }}\n",
        redirect.addr
    );
    let targets = inventory(&yaml, dir.path());
    let r = run(&targets[0]).await;
    assert_eq!((r.reason, r.trace.http_status), (Reason::HttpStatus, Some(302)));
    let r = run(&targets[1]).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.address, Some(target.addr));
}

async fn a_redirect_to_a_location_too_long_to_request_is_a_redirect_error_that_says_so() -> ProbeResult {
    let long = format!("/{}", "a".repeat(70_000));
    let redirect =
        testbed::http(move |_: &testbed::Seen<'_>| Reply::new(302, "").header("location", long.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: follow, kind: http, url: \"http://{}/\", max_redirects: 1 }}\n",
        redirect.addr
    );
    let r = run(&inventory(&yaml, dir.path())[0]).await;
    assert_eq!(
        r.error.as_deref(),
        Some("redirect: the Location cannot be requested: the path and query: uri too long")
    );
    r
}

#[test]
fn a_target_url_too_long_to_request_is_refused_when_the_config_loads() {
    let yaml = format!(
        "agent: {{ source_cluster: t }}\ntargets:\n  - {{ name: long, kind: http, url: \"http://127.0.0.1:1/{}\" }}\n",
        "a".repeat(70_000)
    );
    let err = pathprobe::config::parse(&yaml, std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "targets[0].url: its path and query cannot go into an HTTP request (uri too long); shorten it"
    );
}

#[tokio::test]
async fn http_over_ipv6_literal_succeeds() {
    let server = testbed::http_on("[::1]:0", |_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let r = check(&format!("http://[::1]:{}/", server.addr.port()), &opts()).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
}
