//! A small cluster in network namespaces for end-to-end tests: hosts on one bridge (each its own
//! namespace, as if a node), processes run inside them, and a Prometheus asked over its API.
//! Namespace names carry the pid, so parallel runs on one machine do not collide.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sh::{in_ns, require_root, run};

/// Namespaces on one bridge; processes and namespaces removed on drop.
pub struct Cluster {
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub children: Vec<Child>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new() -> Cluster {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!("pe{}{}", std::process::id() % 10_000, N.fetch_add(1, Ordering::SeqCst));
        let mut c = Cluster {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let lan = c.ns("lan");
        in_ns(&lan, &["ip", "link", "add", "br0", "type", "bridge"]);
        in_ns(&lan, &["ip", "link", "set", "br0", "up"]);
        c
    }

    pub fn ns(&mut self, role: &str) -> String {
        let name = format!("{}{role}", self.prefix);
        run(&["ip", "netns", "add", &name]);
        in_ns(&name, &["ip", "link", "set", "lo", "up"]);
        self.namespaces.push(name.clone());
        name
    }

    /// A host on the bridge with `ip`.
    pub fn host(&mut self, role: &str, ip: &str) -> String {
        let ns = self.ns(role);
        let lan = format!("{}lan", self.prefix);
        let (inside, outside) = (format!("{}{role}i", self.prefix), format!("{}{role}o", self.prefix));
        run(&[
            "ip", "link", "add", &inside, "netns", &ns, "type", "veth", "peer", "name", &outside, "netns", &lan,
        ]);
        in_ns(&lan, &["ip", "link", "set", &outside, "master", "br0", "up"]);
        in_ns(&ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", &inside]);
        in_ns(&ns, &["ip", "link", "set", &inside, "up"]);
        ns
    }

    /// Starts `args` inside `ns` (stdout and stderr discarded); returns its index for [`Cluster::pid`].
    pub fn spawn(&mut self, ns: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    /// The pid of a spawned process (`ip netns exec` execs it, so it is the command's own).
    pub fn pid(&self, index: usize) -> u32 {
        self.children[index].id()
    }

    /// Stops a spawned process now.
    pub fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }

    /// Serves the files of `dir` (under the cluster's directory, created empty) over HTTP at
    /// `ip:port` inside `ns`: the plain target host of the end-to-end tests.
    pub fn http_server(&mut self, ns: &str, ip: &str, port: u16, dir: &str) -> usize {
        std::fs::create_dir_all(self.dir.path().join(dir)).unwrap();
        let (port, dir) = (port.to_string(), self.path(dir));
        self.spawn(
            ns,
            &["python3", "-m", "http.server", &port, "--bind", ip, "--directory", &dir],
            &[],
        )
    }

    /// Starts an agent inside `ns` as node `node` (`NODE_NAME`): `pathprobe run` with the
    /// inventory at `config`, listening on `listen`, no jitter, then `extra` flags.
    pub fn agent(&mut self, ns: &str, node: &str, config: &str, listen: &str, extra: &[&str]) -> usize {
        let mut args = vec![
            env!("CARGO_BIN_EXE_pathprobe"),
            "run",
            "--config",
            config,
            "--listen",
            listen,
            "--jitter",
            "0",
        ];
        args.extend_from_slice(extra);
        self.spawn(ns, &args, &[("NODE_NAME", node)])
    }

    /// Starts Prometheus inside `ns` on `listen` (`ip:port`) with `config` written to
    /// `prometheus.yml` (rewrite that file and send SIGHUP to [`Cluster::pid`] to reload).
    pub fn prometheus(&mut self, ns: &str, listen: &str, config: &str) -> usize {
        let config = self.write("prometheus.yml", config);
        let (config, data, listen) = (
            format!("--config.file={config}"),
            format!("--storage.tsdb.path={}", self.path("tsdb")),
            format!("--web.listen-address={listen}"),
        );
        self.spawn(ns, &["prometheus", &config, &data, &listen], &[])
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self.path(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Drops the packets that match `rule` (nft match words, e.g. `ip daddr 10.0.0.2 tcp dport 80`)
/// at the `hook` (`input` or `output`) of namespace `ns`. The rules live in table `inet fault`:
/// `nft delete table inet fault` inside `ns` heals every fault of that namespace.
pub fn drop_packets(ns: &str, hook: &str, rule: &[&str]) {
    let chain = format!("{{ type filter hook {hook} priority 0; policy accept; }}");
    in_ns(ns, &["nft", "add", "table", "inet", "fault"]);
    in_ns(ns, &["nft", "add", "chain", "inet", "fault", hook, &chain]);
    let mut full = vec!["nft", "add", "rule", "inet", "fault", hook];
    full.extend_from_slice(rule);
    full.push("drop");
    in_ns(ns, &full);
}

/// Asks the Prometheus at `prom` (`ip:port`, inside namespace `mon`) an instant query; `None`
/// until it answers.
pub fn query_at(mon: &str, prom: &str, promql: &str) -> Option<Vec<serde_json::Value>> {
    let script = format!(
        "import json,sys,urllib.parse,urllib.request\nq=urllib.parse.urlencode({{'query':sys.argv[1]}})\nprint(urllib.request.urlopen('http://{prom}/api/v1/query?'+q,timeout=5).read().decode())"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", mon, "python3", "-c", &script, promql])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if v["status"] != "success" {
        panic!("query {promql} failed: {v}");
    }
    v["data"]["result"].as_array().cloned()
}

/// Polls [`query_at`] until `cond` holds; panics after `within`.
pub fn wait_at(
    mon: &str,
    prom: &str,
    promql: &str,
    within: Duration,
    cond: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = query_at(mon, prom, promql) {
            if cond(&r) {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {promql}: {:?}",
            query_at(mon, prom, promql)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
