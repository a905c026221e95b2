//! Every target failing at once (a network cut, as the agent sees it) must not flood the log:
//! each target's change is logged once, at most `LOG_BUDGET` lines per window, and one line sums
//! up the rest by reason.

#[path = "common/agent.rs"]
mod agent;

use std::time::Duration;

use agent::{series, Agent};

const TARGETS: usize = 300;
/// `src/agent/status.rs`'s budget and window.
const LOG_BUDGET: usize = 20;
const LOG_WINDOW: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_fails_at_once_the_log_holds_the_budget_and_one_summary() {
    let refused = pathprobe::fault_servers::refused_port().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inventory.yaml");
    let mut text = String::from(
        "agent: { source_cluster: lab, network: pod }\ndefaults: { interval: 1s, timeout: 500ms }\ntargets:\n",
    );
    for i in 0..TARGETS {
        text.push_str(&format!("  - {{ name: t{i}, kind: tcp, address: \"{refused}\" }}\n"));
    }
    std::fs::write(&config, text).unwrap();
    tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&config, "node-a", &[]);
        agent.wait_metrics("every target failed", Duration::from_secs(20), |t| {
            series(t, "pathprobe_failure_reason", &[("reason", "connect_refused")])
                .iter()
                .filter(|l| l.ends_with(" 1"))
                .count()
                == TARGETS
        });
        // The window that saw the storm ends, and the control loop's next poll sums it up.
        let deadline = std::time::Instant::now() + LOG_WINDOW + Duration::from_secs(10);
        while !agent.logged("target state changes not logged (more than 20 in the window); the status page and pathprobe_failure_reason show every target") {
            assert!(std::time::Instant::now() < deadline, "no summary line");
            std::thread::sleep(Duration::from_millis(200));
        }
        // A few more rounds: steady failure logs nothing more.
        std::thread::sleep(Duration::from_secs(3));
        let logs = agent.logs.lock().unwrap();
        let failing = logs.iter().filter(|v| v["message"] == "target failing").count();
        let summaries: Vec<_> = logs
            .iter()
            .filter(|v| v["message"].as_str().unwrap_or("").starts_with("target state changes not logged"))
            .collect();
        assert_eq!(failing, LOG_BUDGET, "one line per change up to the budget");
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(summaries[0]["suppressed"], (TARGETS - LOG_BUDGET) as u64);
        assert_eq!(summaries[0]["by_reason"], format!("connect_refused={}", TARGETS - LOG_BUDGET));
    })
    .await
    .unwrap();
}
