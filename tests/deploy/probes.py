#!/usr/bin/python3
"""Kubernetes-style probing of a real node, the Docker HEALTHCHECK line, and sizing.

Usage: tests/deploy/probes.py BUILD/shoal

A prober does what the kubelet does with the StatefulSet's readinessProbe and livenessProbe
(deploy/kubernetes/statefulset.yaml): an HTTP GET every periodSeconds with timeoutSeconds,
success for 200-399, and a state change after successThreshold / failureThreshold results in a
row; the timings are the manifest's, scaled down. It shows:
  - the pod turns ready, leaves readiness on `shoal drain on` and comes back on `drain off`;
  - on SIGTERM with tasks running and --grace 3s, readiness turns false within the manifest's
    period x failureThreshold, well before the process exits (after the grace), while liveness
    keeps passing until the end: the kubelet never restarts a node that is shutting down;
  - the Dockerfile's HEALTHCHECK command, run as written, passes on 200 and 418 and fails once
    the node is gone;
  - the node's resident memory, idle and with 5 tasks running (4 `sleep`, 1 `exec`), stays
    under the manifest's memory request (the figures go in the README's sizing table);
  - a node starts and stops cleanly with each set of settings deploy/ ships (ConfigMap + Secret,
    compose.yaml, shoal.env): no shipped value is refused.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import DEPLOY, check, say, wait_for  # noqa: E402

SCALE = 0.1       # probe period and timeout: the manifest's, times this
GRACE_S = 3.0


class Prober(threading.Thread):
    """One kubelet probe worker: GET path every period (timeout each), threshold logic, and a
    log of (time, result) and of state changes (time, state)."""

    def __init__(self, name, port, probe, scale, initial):
        super().__init__(daemon=True)
        self.name, self.port, self.path = name, port, probe["httpGet"]["path"]
        self.period = probe.get("periodSeconds", 10) * scale
        # Scaled, but not below 300 ms: a loaded CI machine must not fail probes on time alone.
        self.timeout = max(probe.get("timeoutSeconds", 1) * scale, 0.3)
        self.delay = probe.get("initialDelaySeconds", 0) * scale
        self.fail_n = probe.get("failureThreshold", 3)
        self.ok_n = probe.get("successThreshold", 1)
        self.state = initial
        self.results, self.changes = [], []
        self.halt = threading.Event()

    def run(self):
        time.sleep(self.delay)
        ok_row = fail_row = 0
        while not self.halt.is_set():
            t = time.monotonic()
            status = lib.http_get(self.port, self.path, self.timeout)[0]
            good = status is not None and 200 <= status < 400
            self.results.append((t, status))
            ok_row, fail_row = (ok_row + 1, 0) if good else (0, fail_row + 1)
            if not self.state and ok_row >= self.ok_n:
                self.state = True
                self.changes.append((time.monotonic(), True, status))
            elif self.state and fail_row >= self.fail_n:
                self.state = False
                self.changes.append((time.monotonic(), False, status))
            self.halt.wait(max(0.0, self.period - (time.monotonic() - t)))

    def first_change(self, to, after):
        return next((c for c in self.changes if c[1] == to and c[0] >= after), None)


def sanitized(binary):
    """True for an ASan/UBSan build (make test SANITIZE=1), whose memory figures mean nothing."""
    out = subprocess.run(["objdump", "-p", binary], capture_output=True, text=True).stdout
    return re.search(r"NEEDED\s+lib(asan|ubsan)", out) is not None


def healthcheck_argv():
    """The HEALTHCHECK CMD of deploy/Dockerfile, as the exec-form array it is."""
    text = re.sub(r"\\\n", " ", open(os.path.join(DEPLOY, "Dockerfile")).read())
    m = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
    return json.loads(m.group(1))


def healthcheck(argv, port):
    env = dict(os.environ, SHOAL_LISTEN=f"0.0.0.0:{port}")
    try:
        return subprocess.run(argv, env=env, capture_output=True, timeout=5).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    sts = yaml.safe_load(open(os.path.join(DEPLOY, "kubernetes", "statefulset.yaml")))
    c = sts["spec"]["template"]["spec"]["containers"][0]
    req_mib = int(re.fullmatch(r"(\d+)Mi", c["resources"]["requests"]["memory"]).group(1))
    rp, lp = c["readinessProbe"], c["livenessProbe"]
    tmp = lib.tmpdir("shoal-probe-")
    redis = lib.Redis(tmp)
    shoal = lib.Shoal(binary, redis.url, tmp)
    port = lib.free_port()
    node = shoal.start_node("pod-0", port, "--cap", "5", "--grace", f"{GRACE_S:g}s",
                            "--heartbeat", "1s", "--allow-exec", "/usr/bin/sleep")
    t_start = time.monotonic()
    ready = Prober("readiness", port, rp, SCALE, False)
    live = Prober("liveness", port, lp, SCALE, True)
    ready.start()
    live.start()
    say(f"kubelet-style probes (manifest x{SCALE}): readiness GET {ready.path} every "
        f"{ready.period * 1000:.0f}ms, timeout {ready.timeout * 1000:.0f}ms, failureThreshold "
        f"{ready.fail_n}; liveness GET {live.path} every {live.period * 1000:.0f}ms, "
        f"failureThreshold {live.fail_n}")
    if not check("pod turns ready", wait_for("ready", lambda: ready.state, 10),
                 f"{(ready.changes[0][0] - t_start) * 1000:.0f}ms after start" if ready.changes else
                 f"see {tmp}/pod-0.log"):
        return
    rss_idle = lib.rss_kib(node.pid)

    hc = healthcheck_argv()
    check("Dockerfile HEALTHCHECK passes while the node answers 200", healthcheck(hc, port) == 0)

    r = shoal.cli("enqueue", "--type", "sleep", "--count", "4", "--", "20s")
    r2 = shoal.cli("enqueue", "--", "/usr/bin/sleep", "20")
    ids = r.stdout.split() + r2.stdout.split()
    busy = wait_for("5 running tasks",
                    lambda: shoal.nodes().get("pod-0", {}).get("RunningTaskCount") == 5, 10)
    time.sleep(0.2)
    rss_busy = lib.rss_kib(node.pid)
    check("5 tasks running (4 sleep, 1 exec of /usr/bin/sleep)", bool(busy), " ".join(ids))
    say(f"node resident memory: idle {rss_idle / 1024:.1f} MiB, 5 tasks running "
        f"{rss_busy / 1024:.1f} MiB (the exec'd program is a separate process)")
    if sanitized(binary):
        lib.skip("node memory stays under the manifest's memory request",
                 "ASan build: its shadow memory is not what production runs")
    else:
        check("node memory stays under the manifest's memory request",
              max(rss_idle, rss_busy) < req_mib * 1024,
              f"{max(rss_idle, rss_busy) / 1024:.1f} MiB < {req_mib} MiB")

    # An operator's drain takes the pod out of readiness; liveness does not care.
    t = time.monotonic()
    shoal.cli("drain", "pod-0", "on")
    out = wait_for("not ready after drain", lambda: ready.first_change(False, t), 5)
    check("drain on: readiness false (pod leaves the Service endpoints)", bool(out),
          f"{(out[0] - t) * 1000:.0f}ms, probe saw {out[2]}" if out else "")
    check("Dockerfile HEALTHCHECK still passes while drained (418)", healthcheck(hc, port) == 0)
    t = time.monotonic()
    shoal.cli("drain", "pod-0", "off")
    back = wait_for("ready after undrain", lambda: ready.first_change(True, t), 5)
    check("drain off: readiness true again", bool(back),
          f"{(back[0] - t) * 1000:.0f}ms" if back else "")

    # SIGTERM with tasks running: readiness false at once, exit after the grace.
    t_term = time.monotonic()
    node.send_signal(signal.SIGTERM)
    unready = wait_for("not ready after SIGTERM", lambda: ready.first_change(False, t_term), 10)
    exited = wait_for("process exit", lambda: node.poll() is not None, GRACE_S + 15)
    t_exit = time.monotonic()
    ready.halt.set()
    live.halt.set()
    ready.join(5)
    live.join(5)
    bound = ready.period * ready.fail_n + ready.timeout + 0.5
    if unready:
        say(f"SIGTERM at 0ms: readiness false at {(unready[0] - t_term) * 1000:.0f}ms "
            f"(probe answer {unready[2]}), process exit {node.returncode} at "
            f"{(t_exit - t_term) * 1000:.0f}ms (--grace {GRACE_S:g}s)")
    check("SIGTERM: readiness false within period x failureThreshold", bool(unready) and
          unready[0] - t_term <= bound,
          f"{(unready[0] - t_term) * 1000:.0f}ms <= {bound * 1000:.0f}ms" if unready else "never")
    check("SIGTERM: readiness false before the process exits", bool(unready) and bool(exited) and
          unready[0] < t_exit, f"exit after {(t_exit - t_term) * 1000:.0f}ms")
    check("SIGTERM: the node exits 0 after the grace", node.returncode == 0 and
          t_exit - t_term >= GRACE_S - 0.2, f"exit {node.returncode}")
    # A probe still waiting for its answer when the process exits cannot get one: count only the
    # probes sent at least one probe timeout before the exit (the kubelet would see one such
    # failure, never failureThreshold in a row).
    live_fail = [r for r in live.results if r[0] < t_exit - live.timeout and r[1] != 200]
    check("liveness passes until the process exits (no restart while shutting down)",
          not live_fail and all(c[1] for c in live.changes),
          f"{len([r for r in live.results if r[0] < t_exit])} liveness probes, failures {live_fail}")
    states = [json.loads(shoal.cli("task", i, "--json").stdout or "{}").get("State") for i in ids]
    check("tasks still running after the grace are requeued", states == ["Queued"] * 5,
          f"{states}")
    rc = healthcheck(hc, port)
    check("Dockerfile HEALTHCHECK fails once the node is gone", rc not in (0, "timeout"),
          f"exit {rc}")
    check_shipped_settings(shoal, tmp)


def shipped_settings():
    """{where: {SHOAL_X: value}} for each place deploy/ sets node settings."""
    kdir = os.path.join(DEPLOY, "kubernetes")
    cm = yaml.safe_load(open(os.path.join(kdir, "configmap.yaml")))["data"]
    # The Secret's files are not mounted here, and this test's Redis has no password: the
    # *_FILE settings pointing into it are checked by check_files.py instead.
    k8s = dict(cm)
    compose = yaml.safe_load(open(os.path.join(DEPLOY, "compose.yaml")))["services"]["shoal-1"]
    env = {}
    for line in open(os.path.join(DEPLOY, "systemd", "shoal.env")):
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    return {"kubernetes ConfigMap + Secret": k8s, "compose.yaml": compose["environment"],
            "systemd shoal.env": env}


def check_shipped_settings(shoal, tmp):
    """A node starts with each shipped set of settings as it is (address, Redis URL and package
    dir pointed at this test's), answers ping 200 and stops cleanly: no value in deploy/ is
    refused by the settings table's validators."""
    for where, env in shipped_settings().items():
        port = lib.free_port()
        env = dict(env, SHOAL_LISTEN=f"127.0.0.1:{port}", SHOAL_REDIS_URL=shoal.url,
                   SHOAL_PACKAGE_DIR=os.path.join(tmp, "packages"), SHOAL_NODE_NAME="settings",
                   SHOAL_NAMESPACE="settings-check")  # away from the requeued tasks above
        if env.get("SHOAL_EXEC_USER"):
            # shoal-task is the deploy files' to create (sysusers.d, the Dockerfile), not this
            # host's: as root the node switches to nobody instead (privsep.py tests the real
            # set-up); otherwise no switch is possible here at all.
            env["SHOAL_EXEC_USER"] = "nobody" if os.geteuid() == 0 else ""
        os.makedirs(env["SHOAL_PACKAGE_DIR"], exist_ok=True)
        p = lib.spawn([shoal.bin, "worker"], os.path.join(tmp, "settings.log"),
                      dict(shoal.env(), **env))
        up = wait_for(f"node with {where} settings", lambda: lib.ping_status(port) == 200 or
                      p.poll() is not None, 10)
        ok = bool(up) and p.poll() is None
        code = lib.stop(p, signal.SIGTERM, 15)
        tail = open(os.path.join(tmp, "settings.log")).read().strip().splitlines()[-1:]
        check(f"a node runs with the settings of {where}", ok and code == 0,
              f"exit {code}" + ("" if ok else f": {tail}"))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("probe checks ran to the end", False, repr(e))
    lib.finish()
