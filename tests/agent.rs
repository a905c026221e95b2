//! `pathprobe run` as a process: its live `/metrics` (checked by promtool and by value), reload,
//! shutdown, and start-up errors.

#[path = "common/agent.rs"]
mod agent;

use std::time::{Duration, Instant};

use agent::{promtool_check_metrics, series, value, write_atomic, Agent};
use pathprobe::fault_servers::{self as testbed, Reply};

const SECOND: Duration = Duration::from_secs(1);

/// A temporary directory holding `inventory.yaml` with `text`; the directory lives as long as
/// the returned handle.
fn config_file(text: impl AsRef<str>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(&config, text.as_ref()).unwrap();
    (dir, config)
}

fn inventory(body: &str) -> String {
    format!("agent: {{ source_cluster: lab, network: pod }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_exports_every_target_labelled_by_source_and_promtool_accepts_it() {
    let healthy = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let refused = testbed::refused_port().await;
    let (_dir, config) = config_file(inventory(&format!(
            "  - {{ name: web, job: web-job, cluster: prod, kind: http, url: \"http://{}/healthz\" }}\n  - {{ name: db, kind: tcp, address: \"{refused}\" }}\n  - {{ name: kube-scheduler, expected: false, why: bound to 127.0.0.1 on Talos }}\n",
            healthy.addr
        )));
    let agent = tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "node-a", &[]);
        let text = agent.wait_metrics("both targets probed", 10 * SECOND, |t| {
            series(t, "pathprobe_success", &[]).len() == 2
        });
        (agent, text)
    });
    let (agent, text) = agent.await.unwrap();
    let web = [
        ("target", "web"),
        ("target_job", "web-job"),
        ("target_cluster", "prod"),
        ("kind", "http"),
    ];
    assert_eq!(value(&text, "pathprobe_success", &web), Some(1.0));
    let instance = healthy.addr.to_string();
    assert_eq!(
        value(&text, "pathprobe_success", &[("target_instance", &instance)]),
        Some(1.0)
    );
    assert_eq!(value(&text, "pathprobe_http_status_code", &web), Some(200.0));
    assert_eq!(
        value(
            &text,
            "pathprobe_success",
            &[("target", "db"), ("target_job", "db"), ("target_cluster", "lab")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "pathprobe_failure_reason",
            &[("target", "db"), ("reason", "connect_refused")]
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&text, "pathprobe_failure_reason", &[("target", "db")]).len(),
        1,
        "one reason series per target"
    );
    assert_eq!(
        value(
            &text,
            "pathprobe_failure_reason",
            &[("target", "web"), ("reason", "none")]
        ),
        Some(1.0)
    );
    for line in text.lines().filter(|l| l.starts_with("pathprobe_")) {
        for label in ["source_node=\"node-a\"", "source_cluster=\"lab\"", "network=\"pod\""] {
            assert!(line.contains(label), "{label} on {line}");
        }
    }
    assert_eq!(
        value(&text, "pathprobe_target_expected", &[("target", "kube-scheduler")]),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "pathprobe_target_expected", &[("target", "web")]),
        Some(1.0)
    );
    assert!(
        series(&text, "pathprobe_success", &[("target", "kube-scheduler")]).is_empty(),
        "absent targets are never probed"
    );
    for phase in ["resolve", "connect", "tls", "request", "transfer", "total"] {
        assert!(
            value(
                &text,
                "pathprobe_duration_seconds",
                &[("target", "web"), ("phase", phase)]
            )
            .is_some(),
            "{phase}"
        );
    }
    assert!(value(&text, "pathprobe_last_probe_timestamp_seconds", &web).unwrap() > 1.7e9);
    assert_eq!(value(&text, "pathprobe_config_last_reload_successful", &[]), Some(1.0));
    assert!(text.contains("pathprobe_build_info{"));
    assert!(text.contains("pathprobe_scheduler_lag_seconds_bucket{"));
    assert!(text.contains("pathprobe_probes_in_flight{"));
    assert!(text.contains("pathprobe_probes_skipped_total{"));
    let (ok, report) = promtool_check_metrics(&text);
    assert!(ok && report.trim().is_empty(), "promtool check metrics: {report}");
    let (status, om) = agent.get("/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"));
    pathprobe::exposition::parse(&om, pathprobe::exposition::Format::OpenMetrics).expect("valid OpenMetrics");
    // `q=0` is "not this": the text format, which OpenMetrics' parser refuses (no `# EOF`).
    let (status, refused) = agent.get(
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0;q=0,text/plain;version=0.0.4"),
    );
    assert_eq!(status, 200);
    assert!(!refused.contains("# EOF"), "OpenMetrics served despite q=0");
    pathprobe::exposition::parse(&refused, pathprobe::exposition::Format::PrometheusText).expect("valid text format");
    assert_eq!(agent.get("/healthz", None).0, 200);
    assert_eq!(agent.get("/readyz", None).0, 200);
    assert!(agent.logged("target failing"), "a failing target is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_logged_when_the_state_changes_not_on_every_probe() {
    let refused = testbed::refused_port().await;
    let (_dir, config) = config_file(inventory(&format!(
        "  - {{ name: db, kind: tcp, address: \"{refused}\" }}\n"
    )));
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        agent.wait_metrics("three probes", 10 * SECOND, |t| {
            value(t, "pathprobe_probes_total", &[("result", "failure")]).unwrap_or(0.0) >= 3.0
        });
        let failing = agent
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["message"] == "target failing")
            .count();
        assert_eq!(failing, 1);
        let log = agent
            .logs
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["message"] == "target failing")
            .cloned()
            .unwrap();
        assert_eq!(
            (log["target"].as_str(), log["reason"].as_str()),
            (Some("db"), Some("connect_refused"))
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_reload_applies_keeps_unchanged_targets_and_removes_gone_series() {
    let a = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "a")).await;
    let b = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "b")).await;
    let c = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "c")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let line = |name: &str, addr: std::net::SocketAddr| {
        format!("  - {{ name: {name}, kind: http, url: \"http://{addr}/\" }}\n")
    };
    std::fs::write(&config, inventory(&(line("a", a.addr) + &line("b", b.addr)))).unwrap();
    let after = inventory(&(line("a", a.addr) + &line("c", c.addr)));
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        let before = agent.wait_metrics("a and b probed twice", 10 * SECOND, |t| {
            ["a", "b"].iter().all(|n| {
                value(t, "pathprobe_probes_total", &[("target", n), ("result", "success")]).unwrap_or(0.0) >= 2.0
            })
        });
        let a_before = value(
            &before,
            "pathprobe_probes_total",
            &[("target", "a"), ("result", "success")],
        )
        .unwrap();
        write_atomic(&config, &after);
        let started = Instant::now();
        let text = agent.wait_metrics("the reload applied", 5 * SECOND, |t| {
            value(t, "pathprobe_config_reloads_total", &[("result", "success")]) == Some(1.0)
                && value(t, "pathprobe_success", &[("target", "c")]) == Some(1.0)
        });
        assert!(started.elapsed() < 3 * SECOND, "applied within a couple of seconds");
        assert!(
            !text.contains("target=\"b\""),
            "every series of the removed target is gone:\n{text}"
        );
        let a_after = value(
            &text,
            "pathprobe_probes_total",
            &[("target", "a"), ("result", "success")],
        )
        .unwrap();
        assert!(
            a_after >= a_before,
            "the kept target's counters were not reset ({a_before} -> {a_after})"
        );
        assert_eq!(value(&text, "pathprobe_config_last_reload_successful", &[]), Some(1.0));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_rejected_whole_and_the_old_inventory_keeps_probing() {
    let a = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "a")).await;
    let (_dir, config) = config_file(inventory(&format!(
        "  - {{ name: a, kind: http, url: \"http://{}/\" }}\n",
        a.addr
    )));
    let broken = inventory(&format!(
        "  - {{ name: a, kind: http, url: \"http://{}/\" }}\n  - {{ name: b, kind: tcp, address: \"10.0.0.1:22\", intreval: 5s }}\n",
        a.addr
    ));
    let a_addr = a.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        agent.wait_metrics("a probed", 10 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "a")]) == Some(1.0)
        });
        write_atomic(&config, &broken);
        let text = agent.wait_metrics("the reload rejected", 5 * SECOND, |t| {
            value(t, "pathprobe_config_reloads_total", &[("result", "failure")]) == Some(1.0)
        });
        assert_eq!(value(&text, "pathprobe_config_last_reload_successful", &[]), Some(0.0));
        let probes = value(
            &text,
            "pathprobe_probes_total",
            &[("target", "a"), ("result", "success")],
        )
        .unwrap();
        agent.wait_metrics("a still probed", 5 * SECOND, |t| {
            value(t, "pathprobe_probes_total", &[("target", "a"), ("result", "success")]).unwrap() >= probes + 2.0
        });
        let logs = agent.logs.lock().unwrap();
        assert!(
            logs.iter().any(|v| v["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("targets[1].intreval: unknown field")),
            "the field-path error is logged"
        );
        drop(logs);
        std::thread::sleep(SECOND);
        let text = agent.metrics();
        assert_eq!(
            value(&text, "pathprobe_config_reloads_total", &[("result", "failure")]),
            Some(1.0),
            "not retried until it changes"
        );
        // The status page says the reload was rejected, and why, briefly.
        let (status, page) = agent.get("/", None);
        assert_eq!(status, 200);
        assert!(page.contains("id=reload-rejected"), "{page}");
        assert!(page.contains("The inventory was changed and rejected"), "{page}");
        assert!(page.contains("targets[1].intreval: unknown field"), "{page}");
        // A good inventory clears it.
        let fixed = broken.replace(", intreval: 5s", "").replace("10.0.0.1:22", &a_addr);
        write_atomic(&config, &fixed);
        agent.wait_metrics("the fixed reload", 5 * SECOND, |t| {
            value(t, "pathprobe_config_last_reload_successful", &[]) == Some(1.0)
        });
        let (_, page) = agent.get("/", None);
        assert!(!page.contains("reload-rejected"), "{page}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    let a = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "a")).await;
    let b = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "b")).await;
    // The kubelet's layout: inventory.yaml -> ..data/inventory.yaml, ..data -> ..2026_v1.
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("..v1");
    let v2 = dir.path().join("..v2");
    std::fs::create_dir(&v1).unwrap();
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v1.join("inventory.yaml"),
        inventory(&format!("  - {{ name: a, kind: http, url: \"http://{}/\" }}\n", a.addr)),
    )
    .unwrap();
    std::fs::write(
        v2.join("inventory.yaml"),
        inventory(&format!("  - {{ name: b, kind: http, url: \"http://{}/\" }}\n", b.addr)),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/inventory.yaml", dir.path().join("inventory.yaml")).unwrap();
    let config = dir.path().join("inventory.yaml");
    let root = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        agent.wait_metrics("a probed", 10 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "a")]) == Some(1.0)
        });
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let text = agent.wait_metrics("b after the swap", 5 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "b")]) == Some(1.0)
        });
        assert!(series(&text, "pathprobe_success", &[("target", "a")]).is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_at_once_and_rereads_rotated_secret_files() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s = seen.clone();
    let server = testbed::http(move |req: &testbed::Seen<'_>| {
        let auth = req
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        *s.lock().unwrap() = auth.clone();
        if auth == "Bearer new-token" {
            Reply::new(200, "ok")
        } else {
            Reply::new(401, "no")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    std::fs::write(dir.path().join("token"), "old-token\n").unwrap();
    std::fs::write(
        &config,
        inventory(&format!(
            "  - {{ name: api, kind: http, url: \"http://{}/\", bearer_token_file: token }}\n",
            server.addr
        )),
    )
    .unwrap();
    let extra = inventory(&format!(
        "  - {{ name: api, kind: http, url: \"http://{0}/\", bearer_token_file: token }}\n  - {{ name: api2, kind: tcp, address: \"{0}\" }}\n",
        server.addr
    ));
    let root = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // A poll so slow that only SIGHUP can explain a quick reload.
        let agent = Agent::start(&config, "n", &["--reload-poll", "1h"]);
        agent.wait_metrics("401 with the old token", 10 * SECOND, |t| {
            value(
                t,
                "pathprobe_failure_reason",
                &[("target", "api"), ("reason", "http_auth")],
            ) == Some(1.0)
        });
        write_atomic(&config, &extra);
        agent.signal("HUP");
        agent.wait_metrics("api2 after SIGHUP", 3 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "api2")]) == Some(1.0)
        });
        write_atomic(&root.join("token"), "new-token\n");
        agent.signal("HUP");
        agent.wait_metrics("the new token used", 5 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "api")]) == Some(1.0)
        });
        assert!(!agent.metrics().contains("new-token"), "secrets never reach a label");
        let logs = serde_json::to_string(&*agent.logs.lock().unwrap()).unwrap();
        assert!(
            !logs.contains("old-token") && !logs.contains("new-token"),
            "secrets never reach a log line"
        );
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), "Bearer new-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_reports_not_ready_and_exits_0() {
    let hanging = testbed::hanging().await;
    let (_dir, config) = config_file(
        "agent: { source_cluster: lab }\ntargets:\n".to_string()
            + &format!(
                "  - {{ name: slow, kind: http, url: \"http://{}/\", interval: 5s, timeout: 3s }}\n",
                hanging.addr
            ),
    );
    tokio::task::spawn_blocking(move || {
        let mut agent = Agent::start(&config, "n", &["--drain-grace", "10s"]);
        agent.wait_metrics("the slow probe in flight", 10 * SECOND, |t| {
            value(t, "pathprobe_probes_in_flight", &[]) == Some(1.0)
        });
        agent.signal("TERM");
        let deadline = Instant::now() + 2 * SECOND;
        let mut saw_draining = false;
        while Instant::now() < deadline && !saw_draining {
            saw_draining = agent.get("/readyz", None) == (503, "draining\n".to_string());
        }
        assert!(saw_draining, "not ready while draining");
        let status = agent.wait_exit(8 * SECOND);
        assert_eq!(status.code(), Some(0));
        assert!(
            agent.logged("all running probes finished; exiting"),
            "the in-flight probe was let finish"
        );
    })
    .await
    .unwrap();
}

#[test]
fn a_bad_config_at_start_exits_2_with_every_error() {
    let (_dir, config) = config_file("agent: { source_cluster: lab }\ntargets:\n  - { name: a, kind: tcp, address: \"10.0.0.1:22\", timeout: 5 seconds }\n  - { name: b, kind: http, url: \"http://10.0.0.1:9100/\", body_limit: lots }\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(["run", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("targets[0].timeout") && err.contains("targets[1].body_limit"),
        "{err}"
    );
}

#[test]
fn a_listen_address_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (_dir, config) = config_file("agent: { source_cluster: lab }\ntargets: []\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(["run", "--config", config.to_str().unwrap(), "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}: address already in use")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_source_labels_leaves_no_series_of_a_target_removed_mid_probe() {
    let hanging = testbed::hanging().await;
    let fast = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let fast_line = format!("  - {{ name: fast, kind: http, url: \"http://{}/\" }}\n", fast.addr);
    let hang_line = format!(
        "  - {{ name: hang, kind: http, url: \"http://{}/\", interval: 2s, timeout: 1500ms }}\n",
        hanging.addr
    );
    std::fs::write(&config, inventory(&(fast_line.clone() + &hang_line))).unwrap();
    let after = inventory(&fast_line).replace("network: pod", "network: host");
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        agent.wait_metrics("the hanging probe in flight", 10 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "fast")]) == Some(1.0)
                && value(t, "pathprobe_probes_in_flight", &[]).unwrap_or(0.0) >= 1.0
        });
        write_atomic(&config, &after);
        agent.wait_metrics("the new source labels", 5 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "fast"), ("network", "host")]) == Some(1.0)
        });
        // Past the removed target's timeout: its probe has ended, and was not recorded.
        std::thread::sleep(Duration::from_millis(2000));
        let text = agent.metrics();
        assert!(!text.contains("target=\"hang\""), "a removed target's series:\n{text}");
        assert!(
            !text.contains("network=\"pod\""),
            "a series with the old source labels:\n{text}"
        );
        assert_eq!(
            value(&text, "pathprobe_config_reloads_total", &[("result", "success")]),
            Some(1.0)
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_does_not_slow_the_schedule_of_others() {
    let hanging = testbed::hanging().await;
    let fast = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let mut body = String::new();
    for i in 0..20 {
        body += &format!(
            "  - {{ name: hang{i}, kind: http, url: \"http://{}/h{i}\", timeout: 900ms }}\n",
            hanging.addr
        );
    }
    body += &format!("  - {{ name: fast, kind: http, url: \"http://{}/\" }}\n", fast.addr);
    std::fs::write(&config, inventory(&body)).unwrap();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        std::thread::sleep(Duration::from_millis(4500));
        let text = agent.metrics();
        let fast_probes = value(
            &text,
            "pathprobe_probes_total",
            &[("target", "fast"), ("result", "success")],
        )
        .unwrap();
        assert!(
            fast_probes >= 3.0,
            "the fast target kept its 1s schedule: {fast_probes} probes in 4.5s"
        );
        // A tick is skipped only while the target's previous probe still runs, and a hanging
        // target's probe ends at its timeout, before its next tick: a skip can only follow a
        // probe that started late, never two in a row, so there are never more skips than
        // probes started (ended, plus at most one running). A probe held by the server rather
        // than by its timeout would end nothing more and skip every later tick.
        let hang = |i: usize| format!("hang{i}");
        let ended = |t: &str, target: &str| {
            value(
                t,
                "pathprobe_probes_total",
                &[("target", target), ("result", "failure")],
            )
            .unwrap_or(0.0)
        };
        let text = agent.wait_metrics("two probes of every hanging target ended", 20 * SECOND, |t| {
            (0..20).all(|i| ended(t, &hang(i)) >= 2.0)
        });
        for target in (0..20).map(hang) {
            let ended = ended(&text, &target);
            let skipped = value(&text, "pathprobe_probes_skipped_total", &[("target", &target)]).unwrap();
            assert!(
                skipped <= ended + 1.0,
                "{target}: {ended} probes ended at their timeout, {skipped} ticks skipped"
            );
            let succeeded = value(
                &text,
                "pathprobe_probes_total",
                &[("target", &target), ("result", "success")],
            );
            assert_eq!(succeeded, Some(0.0), "{target}");
        }
        assert_eq!(
            value(&text, "pathprobe_probes_skipped_total", &[("target", "fast")]),
            Some(0.0),
            "a probe of the fast target still running a whole interval later"
        );
        let hung = value(
            &text,
            "pathprobe_failure_reason",
            &[("target", "hang0"), ("reason", "http_timeout")],
        );
        assert_eq!(hung, Some(1.0));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_overrides_the_inventorys_source_cluster_and_network() {
    let refused = testbed::refused_port().await;
    let (_dir, config) = config_file(inventory(&format!(
        "  - {{ name: db, kind: tcp, address: \"{refused}\" }}\n"
    )));
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &["--source-cluster", "monit", "--network", "host"]);
        let text = agent.wait_metrics("db probed", 10 * SECOND, |t| {
            !series(t, "pathprobe_success", &[]).is_empty()
        });
        let line = series(&text, "pathprobe_success", &[("target", "db")])[0];
        assert!(
            line.contains("source_cluster=\"monit\"") && line.contains("network=\"host\""),
            "{line}"
        );
        assert!(
            line.contains("target_cluster=\"lab\""),
            "the targets' own cluster is the inventory's: {line}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_failed_for_a_missing_secret_applies_once_the_secret_arrives() {
    let server = testbed::http(|req: &testbed::Seen<'_>| {
        match req
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
        {
            Some(a) if a == "Bearer t" => Reply::new(200, "ok"),
            _ => Reply::new(401, "no"),
        }
    })
    .await;
    let (dir, config) = config_file(inventory(&format!(
        "  - {{ name: a, kind: tcp, address: \"{}\" }}\n",
        server.addr
    )));
    // The ConfigMap update lands first; the Secret it names comes a moment later.
    let next = inventory(&format!(
        "  - {{ name: a, kind: tcp, address: \"{0}\" }}\n  - {{ name: api, kind: http, url: \"http://{0}/\", bearer_token_file: token }}\n",
        server.addr
    ));
    let root = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        agent.wait_metrics("a probed", 10 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "a")]) == Some(1.0)
        });
        write_atomic(&config, &next);
        agent.wait_metrics("the reload failed", 5 * SECOND, |t| {
            value(t, "pathprobe_config_last_reload_successful", &[]) == Some(0.0)
        });
        std::thread::sleep(SECOND);
        let text = agent.metrics();
        assert_eq!(
            value(&text, "pathprobe_config_reloads_total", &[("result", "failure")]),
            Some(1.0),
            "counted once"
        );
        write_atomic(&root.join("token"), "t\n");
        let text = agent.wait_metrics("api probed after the secret arrived", 5 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "api")]) == Some(1.0)
        });
        assert_eq!(value(&text, "pathprobe_config_last_reload_successful", &[]), Some(1.0));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_becomes_documented_absent_is_exported_as_expected_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let refused = testbed::refused_port().await;
    std::fs::write(
        &config,
        inventory(&format!(
            "  - {{ name: kube-proxy, kind: tcp, address: \"{refused}\" }}\n"
        )),
    )
    .unwrap();
    let absent = inventory(&format!(
        "  - {{ name: kube-proxy, kind: tcp, address: \"{refused}\", expected: false, why: Cilium replaces it }}\n"
    ));
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        agent.wait_metrics("probed", 10 * SECOND, |t| {
            value(t, "pathprobe_success", &[("target", "kube-proxy")]).is_some()
        });
        write_atomic(&config, &absent);
        let text = agent.wait_metrics("no longer probed", 5 * SECOND, |t| {
            series(t, "pathprobe_success", &[("target", "kube-proxy")]).is_empty()
        });
        assert_eq!(
            value(&text, "pathprobe_target_expected", &[("target", "kube-proxy")]),
            Some(0.0),
            "{text}"
        );
    })
    .await
    .unwrap();
}

/// Starts `pathprobe run` with `args` (JSON logs) and returns the child and the address it
/// says it listens on.
fn start_with(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .arg("run")
        .args(args)
        .args(["--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let listen = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["message"] == "pathprobe agent started").then(|| v["listen"].as_str().unwrap().to_string())
        })
        .expect("the agent started");
    (child, listen)
}

#[test]
fn listen_takes_a_bare_port_and_localhost() {
    let (_dir, config) = config_file("agent: { source_cluster: lab }\ntargets: []\n");
    let config = config.to_str().unwrap();
    let (mut child, listen) = start_with(&["--config", config, "--listen", "localhost:0"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    let (mut child, listen) = start_with(&["--config", config, "--listen", ":0"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(["run", "--config", config, "--listen", "pathprobe.example:9807"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("e.g. 0.0.0.0:9807 (every address), :9807"), "{err}");
}

#[test]
fn max_in_flight_0_is_refused() {
    let (_dir, config) = config_file("agent: { source_cluster: lab }\ntargets: []\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(["run", "--config", config.to_str().unwrap(), "--max-in-flight", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 would never probe anything; give 1 or more"), "{err}");
}

#[test]
fn start_up_errors_follow_log_format_json() {
    let (_dir, config) = config_file("agent: { source_cluster: lab }\ntargets:\n  - { name: a, kind: tcp, address: \"127.0.0.1:9\", timeout: 5 seconds }\n  - { name: b, kind: http, url: \"http://127.0.0.1:9/\", body_limit: lots }\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().map(|v| v["message"].as_str().unwrap()).collect();
    assert!(messages.iter().any(|m| m.starts_with("targets[0].timeout:")), "{err}");
    assert!(
        messages.iter().any(|m| m.starts_with("targets[1].body_limit:")),
        "{err}"
    );
    assert!(lines.iter().all(|v| v["level"] == "ERROR"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_cluster_is_enough_without_agent_source_cluster() {
    let refused = testbed::refused_port().await;
    let (_dir, config) = config_file(format!(
        "defaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n  - {{ name: db, kind: tcp, address: \"{refused}\" }}\n"
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pathprobe"))
        .args(["run", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("PATHPROBE_SOURCE_CLUSTER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "neither is given");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source-cluster or PATHPROBE_SOURCE_CLUSTER"));
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &["--source-cluster", "monit"]);
        let text = agent.wait_metrics("db probed", 10 * SECOND, |t| {
            !series(t, "pathprobe_success", &[]).is_empty()
        });
        let line = series(&text, "pathprobe_success", &[("target", "db")])[0];
        assert!(
            line.contains("source_cluster=\"monit\"") && line.contains("target_cluster=\"monit\""),
            "{line}"
        );
    })
    .await
    .unwrap();
}

/// `pathprobe_build_info{revision}` is the commit built, set at build time (from
/// `PATHPROBE_REVISION` when the build had it, else from git).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_carries_the_revision_built() {
    let built = env!("PATHPROBE_REVISION");
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match env!("PATHPROBE_REVISION_SOURCE") {
        "git" => assert_eq!(Some(built), git.as_deref(), "the build's revision is git's HEAD"),
        "env" => assert!(!built.is_empty()),
        _ => assert!(git.is_none(), "git knows HEAD, yet the build did not take it"),
    }
    let (_dir, config) = config_file("agent: { source_cluster: lab }\ntargets: []\n");
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "n", &[]);
        let text = agent.metrics();
        let line = series(&text, "pathprobe_build_info", &[])[0];
        assert!(line.contains(&format!("revision=\"{built}\"")), "{line}");
    })
    .await
    .unwrap();
}
