//! The container image, run with podman the way `deploy/base` runs it. The DaemonSets' args,
//! env, user, read-only root, dropped capabilities, memory limit and mount paths are read from
//! the manifests themselves and turned into podman flags. Two network set-ups, both made here:
//! a "node" namespace in which the host-network agent runs (`podman --network host` started
//! inside it), and a separate "pod" namespace joined to the node by a veth pair, as a CNI does.
//! The targets are real HTTPS and HTTP servers in the node namespace; no traffic leaves the
//! test's namespaces.
//!
//! Needs root and the image built by `scripts/image`, so every test here is `#[ignore]`d for a
//! plain `cargo test`: `scripts/image-test` (part of `scripts/test`) builds the image and runs
//! them with `--ignored`, exporting `PATHPROBE_IMAGE`, `PATHPROBE_IMAGE_REVISION` (the commit it
//! was built from) and the containers configuration of `scripts/containers-env`.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/sh.rs"]
mod sh;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pathprobe::fault_servers::{self as testbed, Reply, Seen, TestCa};
use sh::{require_root, run};

/// The node's end of the veth pair: where the targets answer from the pod namespace.
const NODE_IP: &str = "10.253.0.1";
/// The pod's end: where the pod-network agent listens, as a pod IP.
const POD_IP: &str = "10.253.0.2";
/// Where the image keeps its CA bundle (Debian's path, found by rustls-native-certs).
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

const NEEDS: &str = "run through scripts/image-test (part of scripts/test), which builds the image";

/// The image under test, from scripts/image-test.
fn image() -> String {
    assert!(
        std::env::var_os("CONTAINERS_CONF").is_some(),
        "CONTAINERS_CONF is not set: these tests use the containers configuration of scripts/containers-env; {NEEDS}"
    );
    std::env::var("PATHPROBE_IMAGE").unwrap_or_else(|_| panic!("PATHPROBE_IMAGE is not set; {NEEDS}"))
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e} (apt-get install podman runc; .ci/run does)"))
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread into network namespace `ns`; sockets it opens afterwards are there.
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("opening the namespace");
    // SAFETY: setns on a valid namespace fd changes only this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A node namespace and a pod namespace joined by a veth pair; removed on drop.
struct Lab {
    id: String,
    node: String,
    pod: String,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::SeqCst));
        let lab = Lab {
            node: format!("ppin{id}"),
            pod: format!("ppip{id}"),
            id,
        };
        run(&["ip", "netns", "add", &lab.node]);
        run(&["ip", "netns", "add", &lab.pod]);
        let (vn, vp) = (format!("vin{}", lab.id), format!("vip{}", lab.id));
        run(&[
            "ip", "link", "add", &vn, "netns", &lab.node, "type", "veth", "peer", "name", &vp, "netns", &lab.pod,
        ]);
        for (ns, dev, ip) in [(&lab.node, &vn, NODE_IP), (&lab.pod, &vp, POD_IP)] {
            run(&["ip", "-n", ns, "addr", "add", &format!("{ip}/30"), "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.node, &self.pod] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// An HTTPS server whose certificate a throwaway CA signed, and an HTTP server that wants a
/// bearer token, both on every address of the node namespace.
struct Targets {
    ca_pem: String,
    token: String,
    https_port: u16,
    http_port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Targets {
    fn start(ns: &str) -> Targets {
        let ca = TestCa::new();
        let cert = ca.issue_valid(&["127.0.0.1", NODE_IP]);
        let token = format!("image-test-token-{}", std::process::id());
        let expected = format!("Bearer {token}");
        let (ports_tx, ports_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ns = ns.to_string();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let https = testbed::https_on("0.0.0.0:0", &cert, |_: &Seen<'_>| Reply::new(200, "ok\n")).await;
                let http = testbed::http_on("0.0.0.0:0", move |s: &Seen<'_>| match s.headers.get("authorization") {
                    Some(v) if v == expected.as_str() => Reply::new(200, "ok\n"),
                    _ => Reply::new(401, "a bearer token is needed\n"),
                })
                .await;
                ports_tx.send((https.addr.port(), http.addr.port())).unwrap();
                let _ = stopped.await;
            });
        });
        let (https_port, http_port) = ports_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the targets started");
        Targets {
            ca_pem: ca.cert_pem.clone(),
            token,
            https_port,
            http_port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

/// What a DaemonSet's pod spec asks of the container runtime.
struct PodSpec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    user: String,
    read_only_root: bool,
    drop_all: bool,
    no_new_privileges: bool,
    host_network: bool,
    memory_limit: String,
    inventory_path: String,
    secrets_path: String,
    listen_port: u16,
}

fn daemonset(file: &str) -> PodSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base").join(file);
    let ds: serde_json::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let spec = &ds["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mount = |volume: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("{file}: no {volume} mount"))["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let env = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => {
                    assert_eq!(
                        e["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName",
                        "{file}: {name}"
                    );
                    "image-test-node".to_string()
                }
            };
            (name, value)
        })
        .collect();
    let psc = &spec["securityContext"];
    let csc = &c["securityContext"];
    PodSpec {
        args: strs(&c["args"]),
        env,
        user: format!("{}:{}", psc["runAsUser"], psc["runAsGroup"]),
        read_only_root: csc["readOnlyRootFilesystem"] == true,
        drop_all: strs(&csc["capabilities"]["drop"]) == ["ALL"],
        no_new_privileges: csc["allowPrivilegeEscalation"] == false,
        host_network: spec["hostNetwork"] == true,
        memory_limit: c["resources"]["limits"]["memory"]
            .as_str()
            .unwrap()
            .trim_end_matches("Mi")
            .to_string()
            + "m",
        inventory_path: mount("inventory"),
        secrets_path: mount("secrets"),
        listen_port: c["ports"][0]["containerPort"].as_u64().unwrap() as u16,
    }
}

/// The podman flags for `spec`: `--user`, `--read-only` (without podman's own tmpfs mounts,
/// which Kubernetes does not add), `--cap-drop ALL`, no-new-privileges, the memory limit.
fn hardening(spec: &PodSpec) -> Vec<String> {
    assert!(spec.read_only_root && spec.drop_all && spec.no_new_privileges);
    [
        "--user",
        &spec.user,
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        &spec.memory_limit,
    ]
    .map(String::from)
    .to_vec()
}

/// The image's own CA bundle, copied out of it.
fn image_bundle(image: &str, dir: &Path) -> Vec<u8> {
    let name = format!("ppimg-cp-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "");
    podman_ok(&["create", "--pull=never", "--name", &name, image]);
    let dest = dir.join("image-bundle.crt");
    let out = podman(&["cp", &format!("{name}:{BUNDLE}"), dest.to_str().unwrap()]);
    podman_ok(&["rm", &name]);
    assert!(
        out.status.success(),
        "podman cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dest).unwrap()
}

/// A directory the container user (65532) can read, as a ConfigMap or Secret volume is.
fn readable_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    set_mode(path, 0o755);
    path.to_path_buf()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write_readable(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
    set_mode(path, 0o644);
}

/// The memory limit of process `pid`'s cgroup (v1 or v2), in bytes.
fn memory_limit(pid: &str) -> u64 {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = |line: &str| line.splitn(3, ':').nth(2).unwrap().to_string();
    let file = match cgroups
        .lines()
        .find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")))
    {
        Some(v1) => format!("/sys/fs/cgroup/memory{}/memory.limit_in_bytes", path(v1)),
        None => format!(
            "/sys/fs/cgroup{}/memory.max",
            path(cgroups.lines().find(|l| l.starts_with("0::")).unwrap())
        ),
    };
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.trim().parse().unwrap_or_else(|_| panic!("{file}: {text}"))
}

/// A GET that reports a refused or reset connection as `None` (the agent may not listen yet).
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    // `/metrics` is streamed: a chunked body.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        agent::dechunk(body)
    } else {
        body.to_string()
    };
    Some((head.split_whitespace().nth(1)?.parse().ok()?, body))
}

/// A running `podman run` of the image; removed on drop.
struct Container {
    name: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Container {
    fn start(in_node_netns: Option<&str>, name: &str, flags: &[String], image: &str, args: &[String]) -> Container {
        let mut cmd = match in_node_netns {
            // nsenter, not `ip netns exec`: that also remounts /sys, hiding the cgroup mounts runc needs.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("podman");
                c
            }
            None => Command::new("podman"),
        };
        cmd.args(["run", "--rm", "--pull=never", "--name", name])
            .args(flags)
            .arg(image)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting podman run");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Container {
            name: name.to_string(),
            child,
            logs,
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn logged(&self, message: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["message"] == message))
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs one DaemonSet's agent from the image and checks it end to end.
fn agent_as_daemonset(file: &str, network: &str) {
    let image = image();
    let spec = daemonset(file);
    assert_eq!(spec.host_network, network == "host", "{file}: hostNetwork");
    let lab = Lab::new();
    let targets = Targets::start(&lab.node);
    let tmp = tempfile::tempdir().unwrap();
    let root = readable_dir(tmp.path());

    // The inventory (the ConfigMap) and the Secret, mounted where the DaemonSet mounts them. The
    // Secret's mount point exists inside the inventory's, as kubelet makes it.
    let inventory = readable_dir(&root.join("inventory"));
    readable_dir(&inventory.join("secrets"));
    let secrets = readable_dir(&root.join("secrets"));
    write_readable(&secrets.join("token"), targets.token.as_bytes());
    let server = if spec.host_network { "127.0.0.1" } else { NODE_IP };
    let yaml = format!(
        r#"agent: {{ source_cluster: image-test, network: host }}   # the DaemonSet's env overrides both
defaults: {{ interval: 2s, timeout: 1s }}
targets:
  # No ca_file: verified against the system trust store, the image's bundle.
  - {{ name: https-system-roots, job: image-test, kind: http, url: "https://{server}:{https}/" }}
  # The token comes from the mounted Secret, relative to the inventory as in the seed's.
  - {{ name: http-secret-token, job: image-test, kind: http, url: "http://{server}:{http}/", bearer_token_file: secrets/token }}
"#,
        https = targets.https_port,
        http = targets.http_port,
    );
    write_readable(&inventory.join("inventory.yaml"), yaml.as_bytes());
    let config_arg = spec.args.iter().position(|a| a == "--config").unwrap() + 1;
    assert_eq!(spec.args[config_arg], format!("{}/inventory.yaml", spec.inventory_path));

    // The image's bundle plus this run's test CA, mounted over the image's bundle: the target is
    // trusted only if the agent reads the bundle at the image's path (the unchanged bundle's
    // verdict is checked in `the_image_carries_debians_ca_bundle`).
    let mut bundle = image_bundle(&image, &root);
    bundle.extend_from_slice(targets.ca_pem.as_bytes());
    write_readable(&root.join("bundle.crt"), &bundle);

    let mut flags = hardening(&spec);
    for (host, container) in [
        (inventory.as_path(), spec.inventory_path.as_str()),
        (secrets.as_path(), spec.secrets_path.as_str()),
        (root.join("bundle.crt").as_path(), BUNDLE),
    ] {
        flags.extend(["--volume".into(), format!("{}:{container}:ro", host.display())]);
    }
    for (k, v) in &spec.env {
        flags.extend(["--env".into(), format!("{k}={v}")]);
    }
    let name = format!("ppimg-{}-{network}", lab.id);
    let (in_node_netns, agent_ns, agent_ip) = if spec.host_network {
        flags.extend(["--network".into(), "host".into()]);
        (Some(lab.node.as_str()), &lab.node, "127.0.0.1")
    } else {
        flags.extend(["--network".into(), format!("ns:/run/netns/{}", lab.pod)]);
        (None, &lab.node, POD_IP)
    };
    let mut container = Container::start(in_node_netns, &name, &flags, &image, &spec.args);
    let addr: SocketAddr = format!("{agent_ip}:{}", spec.listen_port).parse().unwrap();

    // kubelet's probes and Prometheus's scrape, from the node.
    in_netns(agent_ns, || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, body)) = try_get(addr, "/readyz") {
                assert_eq!(body.trim(), "ready");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never ready at {addr}:\n{}",
                container.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(try_get(addr, "/healthz").map(|r| r.0), Some(200), "/healthz");
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            let (status, text) = try_get(addr, "/metrics").expect("/metrics answers");
            assert_eq!(status, 200);
            let ok = |t| agent::value(&text, "pathprobe_success", &[("target", t)]) == Some(1.0);
            if ok("https-system-roots") && ok("http-secret-token") {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "targets not reached:\n{text}\n{}",
                container.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let (ok, report) = agent::promtool_check_metrics(&text);
        assert!(ok, "promtool check metrics:\n{report}");
        let info = agent::series(&text, "pathprobe_build_info", &[]);
        assert_eq!(info.len(), 1, "{text}");
        for (label, value) in [
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "revision",
                std::env::var("PATHPROBE_IMAGE_REVISION").expect("PATHPROBE_IMAGE_REVISION from scripts/image-test"),
            ),
            ("source_node", "image-test-node".to_string()),
            ("network", network.to_string()),
        ] {
            assert!(
                info[0].contains(&format!("{label}=\"{value}\"")),
                "build_info {label}: {}",
                info[0]
            );
        }
    });

    // The process as the kernel sees it: user 65532, no capabilities, a seccomp filter, and the
    // DaemonSet's memory limit on its cgroup.
    let top = podman_ok(&["top", &name, "huser", "capeff", "seccomp"]);
    let row: Vec<&str> = top
        .lines()
        .nth(1)
        .expect("podman top's row")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["65532", "none", "filter"], "podman top:\n{top}");
    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &name]);
    let limit: u64 = spec.memory_limit.trim_end_matches('m').parse::<u64>().unwrap() << 20;
    assert_eq!(
        memory_limit(pid.trim()),
        limit,
        "the memory limit of the agent's cgroup"
    );
    // The root filesystem is read-only: `demo`, which writes its inventory to /tmp, says so and
    // what to mount.
    let demo = podman(&["exec", &name, "/usr/local/bin/pathprobe", "demo", "--once"]);
    let err = String::from_utf8_lossy(&demo.stderr);
    assert_eq!(demo.status.code(), Some(1), "demo on a read-only root: {err}");
    assert!(
        err.contains("Read-only file system") && err.contains("mount an emptyDir or a tmpfs at /tmp"),
        "{err}"
    );

    // kubelet stops a pod with SIGTERM: the agent drains and exits 0, well before SIGKILL.
    podman_ok(&["kill", "--signal", "TERM", &name]);
    let status = container.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit after SIGTERM:\n{}", container.logs());
    assert!(container.logged("SIGTERM: draining"), "{}", container.logs());
    assert!(
        container.logged("all running probes finished; exiting"),
        "{}",
        container.logs()
    );
}

#[test]
#[ignore = "needs root and the image: scripts/image-test"]
fn host_network_agent_as_the_daemonset_runs_it() {
    agent_as_daemonset("daemonset-host.yaml", "host");
}

#[test]
#[ignore = "needs root and the image: scripts/image-test"]
fn pod_network_agent_as_the_daemonset_runs_it() {
    agent_as_daemonset("daemonset-pod.yaml", "pod");
}

/// The image ships Debian's bundle unchanged, and the agent's verifier is built from it: a
/// server whose CA is not in it is `tls_untrusted` (an empty store would be a config error,
/// "no root trust anchors").
#[test]
#[ignore = "needs root and the image: scripts/image-test"]
fn the_image_carries_debians_ca_bundle() {
    let image = image();
    let lab = Lab::new();
    let targets = Targets::start(&lab.node);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = image_bundle(&image, tmp.path());
    let debian = std::fs::read(BUNDLE).expect("Debian's ca-certificates on the build machine");
    assert!(
        bundle == debian,
        "the image's {BUNDLE} is not this machine's Debian bundle"
    );
    let certs = String::from_utf8_lossy(&bundle).matches("BEGIN CERTIFICATE").count();
    assert!(certs > 100, "{certs} certificates in the image's bundle");

    let spec = daemonset("daemonset-pod.yaml");
    let mut flags = hardening(&spec);
    flags.extend(["--network".into(), format!("ns:/run/netns/{}", lab.pod)]);
    let url = format!("https://{NODE_IP}:{}/", targets.https_port);
    let check = |extra: &[String]| {
        let mut args = vec!["run".to_string(), "--rm".into(), "--pull=never".into()];
        args.extend(flags.iter().cloned());
        args.extend(extra.iter().cloned());
        args.extend([image.clone(), "check".into(), "--json".into(), url.clone()]);
        let out = podman(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check --json: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (
            out.status.code(),
            line["reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(
        check(&[]),
        (Some(1), "tls_untrusted".to_string()),
        "the image's own bundle"
    );
    let mut with_ca = bundle.clone();
    with_ca.extend_from_slice(targets.ca_pem.as_bytes());
    let path = tmp.path().join("bundle.crt");
    write_readable(&path, &with_ca);
    assert_eq!(
        check(&["--volume".into(), format!("{}:{BUNDLE}:ro", path.display())]),
        (Some(0), "none".to_string()),
        "the bundle with the test CA at the image's path"
    );
}

/// The image's labels and configuration: what `docker inspect` shows users and scanners.
#[test]
#[ignore = "needs root and the image: scripts/image-test"]
fn the_image_is_labelled_and_runs_as_nonroot() {
    let image = image();
    let inspect: serde_json::Value =
        serde_json::from_str(&podman_ok(&["image", "inspect", &image])).expect("podman image inspect");
    let config = &inspect[0]["Config"];
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        std::env::var("PATHPROBE_IMAGE_REVISION")
            .expect("PATHPROBE_IMAGE_REVISION from scripts/image-test")
            .as_str()
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/pathprobe/pathprobe"
    );
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/pathprobe"]));
    assert!(
        image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "{image}: the tag is the version"
    );
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1, "one layer");
}

/// `demo` in the image: with a writable root (a plain `docker run`) it uses the image's /tmp; with
/// the DaemonSet's read-only root it needs an emptyDir (here a tmpfs) at /tmp.
#[test]
#[ignore = "needs root and the image: scripts/image-test"]
fn demo_runs_in_the_image() {
    let image = image();
    let lab = Lab::new();
    let spec = daemonset("daemonset-pod.yaml");
    let net = format!("ns:/run/netns/{}", lab.pod);
    let demo = |flags: &[String]| {
        let mut args = vec![
            "run".to_string(),
            "--rm".into(),
            "--pull=never".into(),
            "--network".into(),
            net.clone(),
        ];
        args.extend(flags.iter().cloned());
        args.extend([image.clone(), "demo".into(), "--once".into()]);
        podman(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let plain = demo(&[]);
    let out = String::from_utf8_lossy(&plain.stdout);
    assert!(
        plain.status.success(),
        "demo, writable root: {}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(out.contains("healthy-http") && out.contains("wrong-name-cert"), "{out}");

    let mut hardened = hardening(&spec);
    let ro = demo(&hardened);
    assert_eq!(ro.status.code(), Some(1), "demo, read-only root and no /tmp mount");
    hardened.extend(["--tmpfs".into(), "/tmp:rw,size=16m,mode=1777".into()]);
    let with_tmp = demo(&hardened);
    assert!(
        with_tmp.status.success(),
        "demo, read-only root and a tmpfs /tmp: {}",
        String::from_utf8_lossy(&with_tmp.stderr)
    );
}
