//! The status page in a real headless browser (Debian's chromium): the DOM a person sees, and
//! screenshots at phone and desktop sizes (written under the target directory to look at).

#[path = "common/agent.rs"]
mod agent;

use std::process::Command;
use std::time::Duration;

use agent::{value, Agent};
use pathprobe::fault_servers::{self as testbed, Reply, TestCa};

fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium is needed (Debian package chromium; .ci/run installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_each_target_state_reason_and_certificate_in_a_browser() {
    let healthy = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let refused = testbed::refused_port().await;
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let tls = testbed::https(
        &ca.issue(
            &["127.0.0.1"],
            now - time::Duration::days(300),
            now + time::Duration::days(10),
        ),
        |_: &testbed::Seen<'_>| Reply::new(200, "ok"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(
        &config,
        format!(
            "agent: {{ source_cluster: lab }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n  - {{ name: web, kind: http, url: \"http://{}/\" }}\n  - {{ name: argocd-metrics, kind: tcp, address: \"{refused}\" }}\n  - {{ name: grafana, kind: tls, address: \"{}\", tls: {{ ca_file: ca.pem }} }}\n  - {{ name: kube-proxy, expected: false, why: Cilium replaces kube-proxy }}\n",
            healthy.addr, tls.addr
        ),
    )
    .unwrap();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "talos-cp-1", &[]);
        agent.wait_metrics("every target probed", Duration::from_secs(10), |t| {
            ["web", "argocd-metrics", "grafana"]
                .iter()
                .all(|n| value(t, "pathprobe_success", &[("target", n)]).is_some())
        });
        let url = format!("http://{}/", agent.addr);
        let dom = chromium(&["--dump-dom".into(), url.clone()]);
        let html = String::from_utf8_lossy(&dom.stdout);
        assert!(html.contains("pathprobe on talos-cp-1"), "{html}");
        let rows: Vec<&str> = html.split("<tr class=\"row").skip(1).collect();
        assert_eq!(rows.len(), 3, "one row per probed target");
        assert!(
            rows[0].contains("argocd-metrics") && rows[0].contains("FAIL") && rows[0].contains("connect_refused"),
            "failing first: {}",
            rows[0]
        );
        assert!(rows[0].contains("nothing listens on that port"), "the reason in words");
        let grafana = rows.iter().find(|r| r.contains("grafana")).unwrap();
        assert!(grafana.contains("days left"), "certificate expiry shown: {grafana}");
        assert!(html.contains("kube-proxy") && html.contains("Cilium replaces kube-proxy"));
        assert!(html.contains("http-equiv=\"refresh\""), "the page refreshes itself");
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "no external assets"
        );
        for (name, size) in [("status-phone.png", "390,844"), ("status-desktop.png", "1280,800")] {
            let path = shots.join(name);
            let _ = std::fs::remove_file(&path);
            let out = chromium(&[
                format!("--screenshot={}", path.display()),
                format!("--window-size={size}"),
                url.clone(),
            ]);
            let png = std::fs::read(&path)
                .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert!(png.len() > 10_000, "{name} has content ({} bytes)", png.len());
        }
    })
    .await
    .unwrap();
}
