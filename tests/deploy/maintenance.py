#!/usr/bin/python3
"""The maintenance procedure of README "Run it in production", end to end, through a real
HAProxy (Debian's) on loopback in front of three real `shoal worker` nodes.

Usage: tests/deploy/maintenance.py BUILD/shoal      (or scripts/maintenance-demo.sh)

  1. three nodes and HAProxy (deploy/haproxy.cfg's defaults and backend, with loopback servers
     and check timings scaled down); traffic through HAProxy reaches every node;
  2. tasks running everywhere; `shoal drain node-a on`: HAProxy marks node-a down within its
     check timings while node-a still runs its tasks, and requests keep succeeding;
  3. `shoal drain node-a on --wait` returns when node-a is idle; every task succeeded;
  4. node-a is "patched": SIGTERM, exit 0, started again under the same name (still drained:
     ping 418, still out of rotation);
  5. `shoal drain node-a off`: HAProxy marks it up and traffic reaches it again.
A client sends requests through HAProxy the whole time: not one may fail. Each step prints its
timing. Every wait has a deadline; only the processes started here are stopped, by PID.
"""
import http.client
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, say, wait_for  # noqa: E402

SCALE = 0.1          # HAProxy check timings: deploy/haproxy.cfg's, times this
NODES = ["node-a", "node-b", "node-c"]
TARGET = "node-a"
CAP = 2
TASK_SECONDS = 2.0
PATCH_SECONDS = 1.0


def parse_duration(s):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", s)
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, "m": n * 60, None: n / 1000}[m.group(2)]


def fmt_ms(sec):
    return f"{int(round(sec * 1000))}ms"


def sections(text):
    """deploy/haproxy.cfg as [(header, [body lines])], comments and blank lines dropped."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            out.append((line.strip(), []))
        elif out:
            out[-1][1].append(line.strip())
    return out


def test_config(cfg_text, tmp, fe_port, node_ports):
    """Builds the loopback HAProxy config from deploy/haproxy.cfg: its `defaults` section and
    its backend as they are, except the server lines (three loopback nodes) and the check
    timings on default-server (scaled by SCALE; no DNS resolvers). Returns (config, timings)."""
    secs = sections(cfg_text)
    defaults = next(b for h, b in secs if h == "defaults")
    backend_h, backend = next((h, b) for h, b in secs if h.startswith("backend "))
    timings = {}
    lines = []
    for line in backend:
        words = line.split()
        if words[0] == "server":
            continue
        if words[0] == "default-server":
            kept, i = [], 1
            while i < len(words):
                w = words[i]
                if w in ("inter", "fastinter", "downinter"):
                    timings[w] = parse_duration(words[i + 1])
                    kept += [w, fmt_ms(timings[w] * SCALE)]
                    i += 2
                elif w in ("fall", "rise"):
                    timings[w] = int(words[i + 1])
                    kept += [w, words[i + 1]]
                    i += 2
                elif w in ("resolvers", "init-addr"):
                    i += 2
                else:
                    kept.append(w)
                    i += 1
            line = "default-server " + " ".join(kept)
        lines.append(line)
    for name, port in zip(NODES, node_ports):
        lines.append(f"server {name} 127.0.0.1:{port}")
    timings["check_timeout"] = next(parse_duration(l.split()[2]) for l in defaults
                                    if l.startswith("timeout check"))
    ind = "\n    "
    cfg = (f"global\n    maxconn 2000\n    stats socket {tmp}/admin.sock mode 600 level admin\n\n"
           f"defaults{ind}{ind.join(l for l in defaults if not l.startswith('log'))}\n\n"
           f"frontend fe\n    bind 127.0.0.1:{fe_port}\n    default_backend {backend_h.split()[1]}\n\n"
           f"{backend_h}{ind}{ind.join(lines)}\n")
    return cfg, timings


def haproxy_status(sock_path):
    """{server name: status} from HAProxy's runtime API (show stat), or {} if unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(sock_path)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return {}
    rows = data.decode().splitlines()
    if not rows or not rows[0].startswith("# "):
        return {}
    cols = rows[0][2:].split(",")
    iname, istat = cols.index("svname"), cols.index("status")
    out = {}
    for r in rows[1:]:
        f = r.split(",")
        if len(f) > istat and f[iname] in NODES:
            out[f[iname]] = f[istat].split()[0]  # "UP", "DOWN", "UP 1/2", "MAINT"...
    return out


class Traffic(threading.Thread):
    """A client sending GET /healthz through HAProxy on one keep-alive connection (reopened after
    an error) every few ms. /healthz stands for the API traffic a node serves: a draining node
    still answers it (200); only ping says 418. Records (time, node or None, status)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.events = []
        self.halt = threading.Event()

    MAX_SECONDS, MAX_REQUESTS = 60, 20000  # bounded even if the script above misbehaves

    def run(self):
        conn = None
        t_end = time.monotonic() + self.MAX_SECONDS
        while not self.halt.is_set() and time.monotonic() < t_end and \
                len(self.events) < self.MAX_REQUESTS:
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                self.events.append((t, r.getheader("Octopus-Node"), r.status))
                if r.status != 200 or r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.events.append((t, None, f"{type(e).__name__}: {e}"))
                if conn:
                    conn.close()
                conn = None
            time.sleep(0.005)
        if conn:
            conn.close()

    def between(self, t0, t1):
        return [e for e in list(self.events) if t0 <= e[0] < t1]

    def stop(self):
        self.halt.set()
        self.join(10)


def count_by_node(events):
    out = {}
    for _, node, _ in events:
        out[node] = out.get(node, 0) + 1
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    tmp = lib.tmpdir("shoal-maint-")
    cfg_text = open(os.path.join(lib.DEPLOY, "haproxy.cfg")).read()

    say("start: redis-server, three nodes (cap 2), HAProxy on loopback")
    redis = lib.Redis(tmp)
    shoal = lib.Shoal(binary, redis.url, tmp)
    ports = [lib.free_port() for _ in NODES]
    flags = ("--cap", str(CAP), "--heartbeat", "1s", "--grace", "10s")
    procs = {n: shoal.start_node(n, p, *flags) for n, p in zip(NODES, ports)}
    port_of = dict(zip(NODES, ports))
    for n in NODES:
        if not wait_for(f"{n} ping 200", lambda n=n: lib.ping_status(port_of[n]) == 200, 10):
            check(f"{n} comes up", False, f"see {tmp}/{n}.log")
            return
    fe = lib.free_port()
    cfg, tm = test_config(cfg_text, tmp, fe, ports)
    cfg_path = os.path.join(tmp, "haproxy.cfg")
    with open(cfg_path, "w") as f:
        f.write(cfg)
    inter, fast = tm["inter"] * SCALE, tm.get("fastinter", tm["inter"]) * SCALE
    fall, rise = tm.get("fall", 3), tm.get("rise", 2)
    say(f"HAProxy health check: option httpchk GET /api/octopusservernodes/ping, expect 200; "
        f"inter {fmt_ms(inter)} fastinter {fmt_ms(fast)} fall {fall} rise {rise} "
        f"(deploy/haproxy.cfg's x{SCALE})")
    hp = lib.spawn(["haproxy", "-db", "-f", cfg_path], os.path.join(tmp, "haproxy.log"))
    sock = os.path.join(tmp, "admin.sock")
    t = time.monotonic()
    up = wait_for("HAProxy to mark all three nodes UP",
                  lambda: (lambda s: len(s) == 3 and all(v == "UP" for v in s.values()))(
                      haproxy_status(sock)), 15)
    if not check("HAProxy marks all three nodes UP", bool(up), f"{haproxy_status(sock)}"):
        say(open(os.path.join(tmp, "haproxy.log")).read()[-2000:])
        return
    say(f"HAProxy: {haproxy_status(sock)} after {fmt_ms(time.monotonic() - t)}")

    traffic = Traffic(fe)
    traffic.start()
    t_start = time.monotonic()
    seen = wait_for("traffic through HAProxy to reach every node",
                    lambda: set(NODES) <= set(count_by_node(traffic.between(t_start, 1e18))), 10)
    time.sleep(0.3)
    by = count_by_node(traffic.between(t_start, time.monotonic()))
    check("traffic through HAProxy reaches all three nodes", bool(seen), f"answers by node {by}")

    # Tasks on every node, then drain node-a.
    r = shoal.cli("enqueue", "--type", "sleep", "--count", str(CAP * len(NODES)), "--",
                  f"{int(TASK_SECONDS * 1000)}ms")
    ids = r.stdout.split()
    check("enqueue sleep tasks", r.returncode == 0 and len(ids) == CAP * len(NODES),
          f"{len(ids)} tasks of {TASK_SECONDS}s")
    busy = wait_for(f"{TARGET} to run tasks",
                    lambda: shoal.nodes().get(TARGET, {}).get("RunningTaskCount", 0) > 0, 10)
    fleet = {n: v.get("RunningTaskCount") for n, v in shoal.nodes().items()}
    say(f"running tasks by node: {fleet}")
    if not check(f"{TARGET} runs tasks before the drain", bool(busy)):
        return

    t_drain = time.monotonic()
    r = shoal.cli("drain", TARGET, "on")
    say(f"$ shoal drain {TARGET} on  -> {r.stdout.strip() or r.stderr.strip()}")
    down = wait_for(f"HAProxy to mark {TARGET} DOWN",
                    lambda: haproxy_status(sock).get(TARGET) == "DOWN", 10, 0.01)
    t_down = time.monotonic()
    bound = inter + (fall - 1) * fast + tm["check_timeout"] * SCALE + 1.0
    check(f"HAProxy marks {TARGET} DOWN after the drain", bool(down),
          f"{fmt_ms(t_down - t_drain)} after `shoal drain` (checks every {fmt_ms(inter)}, "
          f"fall {fall}; bound {fmt_ms(bound)} with 1 s of slack)")
    check(f"{TARGET} DOWN within its check timings", bool(down) and t_down - t_drain <= bound,
          f"{fmt_ms(t_down - t_drain)} <= {fmt_ms(bound)}")
    st = shoal.nodes().get(TARGET, {})
    check(f"{TARGET} still finishes its tasks while out of rotation",
          st.get("Status") == "Draining" and st.get("RunningTaskCount", 0) > 0,
          f"status {st.get('Status')}, {st.get('RunningTaskCount')} running")
    check(f"{TARGET}'s ping answers 418", lib.ping_status(port_of[TARGET]) == 418)

    r = shoal.cli("drain", TARGET, "on", "--wait", "--timeout", "30s", timeout=40)
    t_idle = time.monotonic()
    say(f"$ shoal drain {TARGET} on --wait  -> exit {r.returncode}, "
        f"{r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()}")
    check(f"{TARGET} becomes idle (drain --wait)", r.returncode == 0,
          f"{fmt_ms(t_idle - t_drain)} after the drain")
    states = [shoal.cli("wait", i, "--timeout", "20s", timeout=30).returncode for i in ids]
    check("every task succeeded (none lost or cut short)", all(s == 0 for s in states),
          f"shoal wait exit codes {states}")

    # Patch: stop and start under the same name.
    t_stop = time.monotonic()
    code = lib.stop(procs[TARGET], signal.SIGTERM, 15)
    say(f"patch: SIGTERM {TARGET} (pid {procs[TARGET].pid}) -> exit {code} in "
        f"{fmt_ms(time.monotonic() - t_stop)}")
    check(f"{TARGET} exits 0 on SIGTERM", code == 0, f"exit {code}")
    say(f"patch: {TARGET} is down for {PATCH_SECONDS:g}s (install the patch, reboot...); "
        f"requests keep flowing to the others")
    time.sleep(PATCH_SECONDS)
    procs[TARGET] = shoal.start_node(TARGET, port_of[TARGET], *flags)
    t_restart = time.monotonic()
    back = wait_for(f"{TARGET} to answer ping again",
                    lambda: lib.ping_status(port_of[TARGET]) in (200, 418), 10)
    st = lib.ping_status(port_of[TARGET])
    say(f"patch: {TARGET} started again (pid {procs[TARGET].pid}), ping {st} after "
        f"{fmt_ms(time.monotonic() - t_restart)}")
    check(f"{TARGET} restarts under its name, still drained (ping 418)", bool(back) and st == 418,
          f"ping {st}, status {shoal.nodes().get(TARGET, {}).get('Status')}")
    time.sleep(max(0.3, 3 * inter))
    check(f"HAProxy keeps {TARGET} DOWN while it is drained",
          haproxy_status(sock).get(TARGET) == "DOWN", f"{haproxy_status(sock)}")

    t_undrain = time.monotonic()
    r = shoal.cli("drain", TARGET, "off")
    say(f"$ shoal drain {TARGET} off  -> {r.stdout.strip() or r.stderr.strip()}")
    up = wait_for(f"HAProxy to mark {TARGET} UP",
                  lambda: haproxy_status(sock).get(TARGET) == "UP", 10, 0.01)
    t_up = time.monotonic()
    bound_up = rise * inter + tm["check_timeout"] * SCALE + 1.0
    check(f"HAProxy marks {TARGET} UP after the undrain", bool(up) and t_up - t_undrain <= bound_up,
          f"{fmt_ms(t_up - t_undrain)} after `shoal drain off` (rise {rise}; bound "
          f"{fmt_ms(bound_up)})")
    again = wait_for(f"traffic to reach {TARGET} again",
                     lambda: any(e[1] == TARGET for e in traffic.between(t_up, 1e18)), 10)
    t_again = time.monotonic()
    check(f"traffic reaches {TARGET} again", bool(again),
          f"{fmt_ms(t_again - t_undrain)} after `shoal drain off`")
    time.sleep(0.3)
    traffic.stop()

    ev = traffic.between(0, 1e18)
    bad = [e for e in ev if e[2] != 200]
    check("no request through HAProxy failed during the whole procedure", not bad,
          f"{len(ev)} requests, {len(bad)} failed" + (f"; first: {bad[0][1:]}" if bad else ""))
    out_window = traffic.between(t_down + 0.2, t_undrain)
    check(f"{TARGET} got no requests while out of rotation",
          not any(e[1] == TARGET for e in out_window),
          f"{len(out_window)} requests between DOWN and undrain, by node "
          f"{count_by_node(out_window)}")
    say(f"timeline: drain -> DOWN {fmt_ms(t_down - t_drain)}, drain -> idle "
        f"{fmt_ms(t_idle - t_drain)}, SIGTERM -> started again {fmt_ms(t_restart - t_stop)} "
        f"(with the {PATCH_SECONDS:g}s patch), "
        f"undrain -> UP {fmt_ms(t_up - t_undrain)}, undrain -> traffic "
        f"{fmt_ms(t_again - t_undrain)}; requests {len(ev)}, failed {len(bad)}, by node "
        f"{count_by_node(ev)}")

    codes = {n: lib.stop(p, signal.SIGTERM, 15) for n, p in procs.items()}
    check("every node exits 0 on SIGTERM at the end", all(c == 0 for c in codes.values()),
          f"{codes}")
    lib.stop(hp)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a crash is a failure, with its reason
        import traceback
        traceback.print_exc()
        check("maintenance procedure ran to the end", False, repr(e))
    lib.finish()
