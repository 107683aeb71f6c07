#!/usr/bin/python3
"""The least-privilege Redis ACL user of docs/operations.md ("Redis ACL user"), tested for real.

Usage: tests/deploy/acl.py BUILD/shoal

Takes the `redis-cli ACL SETUSER shoal ...` line from docs/operations.md as it is written (so the document
cannot drift from what works), runs it against a redis-server of our own with a generated
password, disables the default user, and then runs nodes and every CLI command through
redis://shoal:PASSWORD@127.0.0.1:PORT/0: register, heartbeat, pub/sub, enqueue of each task
type, claim and complete, drain and cap, cancel, wait, logs, recovery of a SIGKILLed node's task,
forget, clean shutdown, and the HTTP API when it is there. At the end Redis' ACL LOG must be
empty: no command or key shoal touches was refused, even where shoal would only log it.
"""
import glob
import os
import re
import secrets
import shlex
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import ROOT, check, say, wait_for  # noqa: E402


def readme_acl_line():
    text = open(os.path.join(ROOT, "docs", "operations.md")).read()
    m = re.search(r"^redis-cli ACL SETUSER shoal .*$", text, re.M)
    return m.group(0) if m else None


# Commands sent somewhere other than the data Redis (Sentinel), or allowed to every user.
NOT_DATA = {"sentinel", "auth", "hello"}
TWO_WORD = {"script", "client", "config", "command", "object", "memory", "cluster", "pubsub"}


def commands_in_sources():
    """Commands shoal can send, read from the sources: redis.call/pcall in lua/*.lua, and in
    the C sources the first word of a command format string (rsync_cmd, redisCommand,
    redisAsyncCommand, gather) or the first element of an argv array literal, with a
    subcommand for SCRIPT LOAD and the like. Returns {command: [files]}."""
    found = {}
    for f in sorted(glob.glob(os.path.join(ROOT, "lua", "*.lua"))):
        for c, sub in re.findall(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]"
                                 r"(?:\s*,\s*['\"]([A-Za-z]+)['\"])?", open(f).read()):
            c = c.lower()
            if c in TWO_WORD and sub:
                c = f"{c}|{sub.lower()}"
            found.setdefault(c, set()).add(os.path.relpath(f, ROOT))
    pats = [r"\b(?:rsync_cmd|redisCommand|redisAsyncCommand|redisAppendCommand|gather)\s*\("
            r"[^;\"]*\"([A-Z]+)(?: ([a-zA-Z-]+))?",
            r"\[\d*\]\s*=\s*\{\s*\"([A-Z]+)\"()",
            r"\bxstrdup\(\"([A-Z]{3,})\"\)()",
            r"\bmemcpy\([^,]+,\s*\"([A-Z]{3,})\"()"]
    for d in ("common", "cli", "worker", "http", "ping", "api", "packages"):
        for f in sorted(glob.glob(os.path.join(ROOT, d, "*.c"))):
            text = open(f).read()
            for pat in pats:
                for c, sub in re.findall(pat, text):
                    c = c.lower()
                    if c in TWO_WORD and sub:
                        c = f"{c}|{sub.lower()}"
                    found.setdefault(c, set()).add(os.path.relpath(f, ROOT))
    return found


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    line = readme_acl_line()
    if not check("docs/operations.md gives the ACL line (redis-cli ACL SETUSER shoal ...)", bool(line)):
        return
    tmp = lib.tmpdir("shoal-acl-")
    redis = lib.Redis(tmp)
    real = {c.lower() for c in redis.cli("COMMAND", "LIST").split()}
    granted = {a[1:].lower() for a in shlex.split(line) if a.startswith("+")}
    used = {c: fs for c, fs in commands_in_sources().items()
            if c.split("|")[0] in real and c not in NOT_DATA}
    missing = {c: sorted(fs) for c, fs in used.items()
               if c not in granted and c.split("|")[0] not in granted}
    check("the ACL line grants every command in lua/*.lua and the C sources", not missing,
          f"missing {missing}" if missing else f"{len(used)} commands: {' '.join(sorted(used))}")
    unused = sorted(c for c in granted if c not in used)
    check("the ACL line grants nothing the sources do not use", not unused, f"{unused or 'ok'}")
    pw = secrets.token_hex(16)
    args = [a.replace(">PASSWORD", ">" + pw) for a in shlex.split(line)[1:]]
    out = redis.cli(*args, check=False)
    check("the ACL SETUSER line of docs/operations.md is accepted", out == "OK", out)
    # From here on only the shoal user can do anything.
    admin_pw = secrets.token_hex(16)
    redis.cli("ACL", "SETUSER", "admin", "on", ">" + admin_pw, "~*", "&*", "+@all")
    redis.cli("ACL", "SETUSER", "default", "off")

    def admin(*a):
        return redis.cli(*a, user="admin", password=admin_pw, check=False)

    url = f"redis://shoal:{pw}@127.0.0.1:{redis.port}/0"
    shoal = lib.Shoal(binary, url, tmp)
    settings = shoal.cli("settings").stdout
    key = secrets.token_hex(8)
    api = ("--api-key", key) if "SHOAL_API_KEY" in settings else ()
    pa, pb = lib.free_port(), lib.free_port()
    flags = ("--heartbeat", "1s", "--grace", "2s", "--allow-exec", "/bin/echo", *api)
    a = shoal.start_node("acl-a", pa, *flags)
    b = shoal.start_node("acl-b", pb, *flags)
    ok = wait_for("both nodes online", lambda: lib.ping_status(pa) == 200 and
                  lib.ping_status(pb) == 200, 10)
    if not check("nodes register and go online as the ACL user", bool(ok),
                 f"see {tmp}/acl-a.log"):
        return

    def run(*a, want=0, timeout=30):
        r = shoal.cli(*a, timeout=timeout)
        good = r.returncode == want and "NOPERM" not in r.stderr + r.stdout
        if not good:
            say(f"shoal {' '.join(a)}: exit {r.returncode}: {r.stderr.strip()[:300]}")
        return good, r

    results = {}
    g, r = run("enqueue", "--", "/bin/echo", "hello from acl")
    results["enqueue exec"] = g
    exec_id = r.stdout.strip()
    results["wait exec task: Success"] = run("wait", exec_id, "--timeout", "15s")[0]
    g, r = run("task", exec_id, "--log")
    results["task --log shows the output"] = g and "hello from acl" in r.stdout
    for cmd in (("enqueue", "--type", "noop", "--count", "20", "--", "x"),
                ("enqueue", "--type", "sleep", "--priority", "5", "--", "100ms")):
        results[" ".join(cmd[:3])] = run(*cmd)[0]
    g, r = run("enqueue", "--type", "fail", "--", "boom")
    results["fail task ends Failed (wait exit 10)"] = run("wait", r.stdout.strip(), "--timeout",
                                                         "15s", want=10)[0]
    g, r = run("enqueue", "--type", "sleep", "--delay", "1h", "--", "1s")
    results["cancel a scheduled task"] = run("cancel", r.stdout.strip())[0]
    g, r = run("enqueue", "--type", "sleep", "--", "30s")
    long_id = r.stdout.strip()
    wait_for("long task executing", lambda: '"State":"Executing"' in
             shoal.cli("task", long_id, "--json").stdout, 10)
    results["cancel an executing task"] = run("cancel", long_id)[0] and \
        run("wait", long_id, "--timeout", "15s", want=12)[0]
    for cmd in (("nodes",), ("nodes", "--json"), ("tasks",), ("tasks", "--state", "Success"),
                ("tasks", "--node", "acl-a"), ("tasks", "--queue", "default", "--json"),
                ("cap", "acl-a", "3"), ("drain", "acl-b", "on"),
                ("drain", "acl-b", "on", "--wait", "--timeout", "10s"), ("drain", "acl-b", "off"),
                ("settings",)):
        results[" ".join(cmd)] = run(*cmd)[0]
    if api:
        hdr = {"X-Octopus-ApiKey": key}
        import http.client
        for path in ("/api/octopusservernodes", "/api/octopusservernodes/summary", "/api/tasks",
                     "/metrics"):
            c = http.client.HTTPConnection("127.0.0.1", pa, timeout=3)
            try:
                c.request("GET", path, headers=hdr)
                st = c.getresponse().status
            except OSError as e:
                st = str(e)
            c.close()
            say(f"HTTP GET {path} as the ACL user's node: {st}")

    # Recovery: SIGKILL acl-b while it runs a task; acl-a requeues and runs it after one TTL.
    shoal.cli("drain", "acl-a", "on")
    g, r = run("enqueue", "--type", "sleep", "--", "3s")
    rid = r.stdout.strip()
    wait_for("task on acl-b", lambda: '"ServerNode":"acl-b"' in shoal.cli("task", rid, "--json").stdout
             and '"Executing"' in shoal.cli("task", rid, "--json").stdout, 10)
    lib.stop(b, signal.SIGKILL)
    shoal.cli("drain", "acl-a", "off")
    results["a SIGKILLed node's task is recovered and run elsewhere"] = \
        run("wait", rid, "--timeout", "20s", timeout=30)[0]
    gone = wait_for("acl-b offline", lambda: shoal.nodes().get("acl-b", {}).get("Status") ==
                    "Offline", 10)
    results["forget an offline node"] = bool(gone) and run("forget", "acl-b")[0]
    code = lib.stop(a, signal.SIGTERM, 15)
    results["clean shutdown (deregister) exits 0"] = code == 0
    for name, good in results.items():
        check(f"as the ACL user: {name}", bool(good))
    log = admin("ACL", "LOG")
    check("Redis refused nothing (ACL LOG empty)", log == "", log[:500])
    logs = "".join(open(os.path.join(tmp, f)).read() for f in ("acl-a.log", "acl-b.log"))
    check("no NOPERM in the nodes' logs", "NOPERM" not in logs,
          next((l for l in logs.splitlines() if "NOPERM" in l), ""))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("ACL checks ran to the end", False, repr(e))
    lib.finish()
