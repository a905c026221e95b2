#!/usr/bin/env python3
"""The image's size and start-up time, written to benches/results/image.txt.

Run by scripts/image-bench (after scripts/image), inside a network namespace of its own, so the
agent's `--network host` is that namespace and its 0.0.0.0:9807 meets nobody. Each round starts
the image as deploy/base's host DaemonSet runs it (read-only root, user 65532, no capabilities,
the DaemonSet's args) with a one-target inventory, and measures:

- podman run -d → first 200 on /readyz: what an operator sees (podman's container set-up
  included);
- the agent's own start-up: the container's start (podman's State.StartedAt) → first 200 on
  /readyz;
- for scale, `podman run --rm IMAGE --version`: podman's own cost of one container that does
  nothing.
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

ROUNDS = 10
IMAGE = os.environ["PATHPROBE_IMAGE"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "benches/results/image.txt")


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def ready():
    try:
        with urllib.request.urlopen("http://127.0.0.1:9807/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def parse_started(s):
    """podman's StartedAt, RFC 3339 with nanoseconds: 2026-11-26T07:40:01.123456789Z."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    zone = "+00:00" if m[3] == "Z" else m[3]
    whole = datetime.strptime(m[1] + zone, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return whole + float("0." + (m[2] or "0"))


def one_round(name, flags, args, total, own, noop, stop, rss):
    t0 = time.monotonic()
    podman("run", "-d", "--pull=never", "--name", name, *flags, IMAGE, *args)
    while not ready():
        if time.monotonic() - t0 > 30:
            sys.exit(f"not ready after 30s: {podman('logs', name, check=False).stderr}")
        time.sleep(0.002)
    t_ready, wall_ready = time.monotonic(), time.time()
    total.append(t_ready - t0)
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    own.append(wall_ready - parse_started(state["StartedAt"]))
    pid = state["Pid"]
    with open(f"/proc/{pid}/status") as f:
        rss.append(next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024)
    t1 = time.monotonic()
    podman("stop", "--time", "30", name)
    stop.append(time.monotonic() - t1)
    code = json.loads(podman("inspect", name).stdout)[0]["State"]["ExitCode"]
    podman("rm", name)
    if code != 0:
        sys.exit(f"exit code {code} after SIGTERM")
    t2 = time.monotonic()
    podman("run", "--rm", "--pull=never", "--network", "host", IMAGE, "--version")
    noop.append(time.monotonic() - t2)


def main():
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)
    inv = os.path.join(tmp, "inventory")
    os.makedirs(os.path.join(inv, "secrets"))
    os.chmod(inv, 0o755)
    with open(os.path.join(inv, "inventory.yaml"), "w") as f:
        f.write("agent: { source_cluster: bench, network: host }\ntargets:\n  - { name: loopback, job: bench, kind: tcp, address: '127.0.0.1:9807' }\n")
    os.chmod(os.path.join(inv, "inventory.yaml"), 0o644)
    flags = ["--network", "host", "--user", "65532:65532", "--read-only", "--read-only-tmpfs=false",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", "320m",
             "--volume", f"{inv}:/etc/pathprobe:ro", "--env", "NODE_NAME=bench", "--env", "PATHPROBE_NETWORK=host"]
    args = ["run", "--config", "/etc/pathprobe/inventory.yaml", "--listen", "0.0.0.0:9807", "--log-format", "json",
            "--drain-grace", "10s", "--max-in-flight", "16"]
    total, own, noop, stop, rss = [], [], [], [], []
    for i in range(ROUNDS):
        name = f"ppbench-{os.getpid()}-{i}"
        try:
            one_round(name, flags, args, total, own, noop, stop, rss)
        finally:
            podman("rm", "--force", "--time", "0", name, check=False)

    inspect = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    oci = os.path.join(tmp, "oci")
    subprocess.run(["buildah", "push", "--quiet", IMAGE, f"oci:{oci}"], check=True, capture_output=True)
    index = json.load(open(os.path.join(oci, "index.json")))
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(open(os.path.join(oci, "blobs/sha256", digest)))
    compressed = sum(l["size"] for l in manifest["layers"])
    rootfs = os.path.join(os.environ["PP_TARGET"], "image/rootfs")
    binary = os.path.getsize(os.path.join(rootfs, "usr/local/bin/pathprobe"))
    bundle = os.path.getsize(os.path.join(rootfs, "etc/ssl/certs/ca-certificates.crt"))

    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms, min {min(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"
    mb = lambda n: f"{n / 1e6:.1f} MB ({n} bytes)"
    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1 (hybrid)"
    versions = podman("--version").stdout.strip() + ", " + subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    text = f"""# The container image: size and start-up (benches/image_startup.py, run by scripts/image-bench)
date: {datetime.now().astimezone().isoformat(timespec='seconds')}
image: {IMAGE}  revision {inspect['Labels'].get('org.opencontainers.image.revision')}
machine: {os.cpu_count()} cores, kernel {platform.release()}, {versions}, vfs storage, cgroup {cgroup} (cgroupfs)

size (goal <= 15 MB)
  image, uncompressed (podman image inspect):   {mb(inspect['Size'])}
  image, as a registry stores it (gzip layer):  {mb(compressed)}
  of which the static binary (stripped):        {mb(binary)}
  and Debian's CA bundle:                       {mb(bundle)}

start-up, {ROUNDS} rounds, host-network DaemonSet flags, one tcp target (goal: ready < 1 s)
  agent: container start -> /readyz 200:        {ms(own)}
  podman run -d -> /readyz 200:                 {ms(total)}
  podman run --rm IMAGE --version (no agent):   {ms(noop)}
  SIGTERM (podman stop) -> exit 0:              {ms(stop)}
  RSS once ready:                               median {statistics.median(rss):.1f} MiB
"""
    open(OUT, "w").write(text)
    shutil.rmtree(tmp)
    print(text)


if __name__ == "__main__":
    main()
