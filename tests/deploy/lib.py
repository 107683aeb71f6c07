"""Shared helpers for the deploy checks (tests/deploy/*.py, run by tests/deploy/run.sh).

Owns: result lines (PASS/FAIL, counted by run.sh), free loopback ports, a redis-server and
`shoal worker` processes started for one check, plain HTTP on 127.0.0.1, and waits that always
have a deadline. Everything a check starts is recorded here and stopped at exit by its own PID
(SIGTERM, then SIGKILL after a deadline): never by name, never anything this process did not
start. Only 127.0.0.1 is ever contacted.
"""
import atexit
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
T0 = time.monotonic()

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from ports import free_port  # noqa: E402,F401  (lib.free_port: below the ephemeral range)

_results = {"pass": 0, "fail": 0}
_procs = []  # every subprocess.Popen we started, stopped at exit if still running


def elapsed():
    return time.monotonic() - T0


def say(msg):
    print(f"[{elapsed():6.2f}s] {msg}", flush=True)


def check(name, ok, detail=""):
    """Records one result: a PASS or FAIL line that run.sh counts. Returns ok."""
    _results["pass" if ok else "fail"] += 1
    line = f"{'PASS' if ok else 'FAIL'} {name}"
    if detail:
        line += f": {detail}"
    print(line, flush=True)
    return ok


def skip(name, why):
    print(f"SKIP {name}: {why}", flush=True)


def failures():
    return _results["fail"]


def finish():
    """Exit status for a check script: 1 if any FAIL line was printed."""
    sys.exit(1 if _results["fail"] else 0)


def wait_for(what, fn, timeout, interval=0.02):
    """Polls fn() until it returns a truthy value or timeout seconds pass. Returns the value
    (or None at the deadline). Every wait in these checks goes through here."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            say(f"timed out after {timeout}s waiting for {what}")
            return None
        time.sleep(interval)


def tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


def spawn(argv, log_path=None, env=None, cwd=None):
    """Starts a process we own (in cwd, default ours); it is stopped at exit if still running."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                         cwd=cwd)
    _procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Sends sig to our own process p and waits for it; SIGKILL after timeout. Returns the
    exit code (negative for a signal), or None if it was not ours."""
    if p not in _procs:
        return None
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    return p.returncode


@atexit.register
def _cleanup():
    for p in reversed(_procs):
        if p.poll() is None:
            stop(p, signal.SIGTERM, 5.0)


def _die_on_signal(signum, frame):
    sys.exit(128 + signum)  # runs atexit: our processes are stopped


signal.signal(signal.SIGTERM, _die_on_signal)
signal.signal(signal.SIGINT, _die_on_signal)


def http_get(port, path, timeout=2.0, method="GET"):
    """One request to 127.0.0.1:port on a fresh connection. Returns (status, headers dict with
    lower-case names, body bytes), or (None, {}, error string) when no answer came."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    except (OSError, http.client.HTTPException) as e:
        return None, {}, str(e)
    finally:
        c.close()


def ping_status(port, timeout=1.0):
    return http_get(port, "/api/octopusservernodes/ping", timeout)[0]


class Redis:
    """A redis-server of our own on a free loopback port, data in a temp dir."""

    def __init__(self, dirpath, extra=()):
        self.port = free_port()
        self.dir = dirpath
        self.proc = spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", dirpath,
                           "--daemonize", "no", *extra],
                          os.path.join(dirpath, "redis.log"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        if not wait_for("redis-server to answer PING",
                        lambda: self.cli("PING", check=False) == "PONG", 10):
            raise RuntimeError(f"redis-server did not start; see {dirpath}/redis.log")

    def cli(self, *args, user=None, password=None, check=True):
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if user:
            argv += ["--user", user, "--pass", password, "--no-auth-warning"]
        r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise RuntimeError(f"redis-cli {args}: {r.stderr}")
        return r.stdout.strip()


class Shoal:
    """Runs `shoal` CLI commands and `shoal worker` nodes against one Redis URL."""

    def __init__(self, binary, redis_url, logdir):
        self.bin = binary
        self.url = redis_url
        self.logdir = logdir

    def env(self):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("SHOAL_"):
                del e[k]  # only what a check passes explicitly
        e["SHOAL_REDIS_URL"] = self.url
        return e

    def cli(self, *args, timeout=30):
        """Runs `shoal ARGS...`; returns CompletedProcess (text)."""
        return subprocess.run([self.bin, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env())

    def nodes(self):
        r = self.cli("nodes", "--json")
        return {n["Name"]: n for n in json.loads(r.stdout)} if r.returncode == 0 else {}

    def start_node(self, name, port, *flags, extra_env=None):
        env = self.env()
        env.update(extra_env or {})
        return spawn([self.bin, "worker", "--name", name, "--listen", f"127.0.0.1:{port}",
                      *flags], os.path.join(self.logdir, f"{name}.log"), env)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None
