"""The previous build and the new one on one namespace (tests/upgrade/run.sh OLD NEW).

A rolling upgrade leaves nodes of both builds running together for as long as the roll takes,
and operators keep using whichever CLI they have. So, against one Redis:
  1. an old and a new node register and see each other (from both CLIs);
  2. tasks enqueued by both CLIs run on both nodes, every one to Success, none twice;
  3. drain and cap from each CLI reach the other build's node (its ping answers 418);
  4. a cancel from each CLI stops a task running on the other build's node;
  5. the old node SIGKILLed mid-task: the new node recovers its tasks and runs them;
  6. the old build restarted under the same name takes it back cleanly;
  7. a namespace at a newer layout version refuses the new node with a clear message (exit 2),
     and the namespace keeps working for the nodes already there.
Prints PASS/FAIL lines; exits 1 on any FAIL. Only 127.0.0.1; only our own processes are stopped.
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "deploy"))
import lib  # noqa: E402
from lib import check, say, wait_for  # noqa: E402

OLD, NEW = sys.argv[1], sys.argv[2]
work = lib.tmpdir("shoal-upgrade-")
redis = lib.Redis(work)
old = lib.Shoal(OLD, redis.url, work)
new = lib.Shoal(NEW, redis.url, work)
FLAGS = ["--heartbeat", "500ms", "--allow-exec", "/bin/,/usr/bin/", "--grace", "2s",
         "--kill-grace", "1s"]


def tasks(cli):
    r = cli.cli("tasks", "--json", "--limit", "2000")
    return {t["Id"]: t for t in json.loads(r.stdout)} if r.returncode == 0 else {}


def enqueue(cli, count, *argv):
    r = cli.cli("enqueue", "--count", str(count), "--json", "--", *argv)
    if r.returncode != 0:
        check(f"enqueue with {cli.bin}", False, r.stderr.strip())
        return []
    return json.loads(r.stdout)


def states(ids, cli=None):
    all_ = tasks(cli or new)
    return [all_.get(i, {}).get("State") for i in ids]


def final(ids):
    return all(s in ("Success", "Failed", "Canceled", "TimedOut") for s in states(ids))


def start(shoal, name, port, *extra):
    return shoal.start_node(name, port, "--cap", "3", *FLAGS, *extra)


p_old, p_new = lib.free_port(), lib.free_port()
n_old = start(old, "old1", p_old)
n_new = start(new, "new1", p_new)
for cli, who in ((old, "old CLI"), (new, "new CLI")):
    seen = wait_for(f"both nodes Online ({who})",
                    lambda: (lambda ns: ns if all(ns.get(x, {}).get("IsOffline") is False
                                                  for x in ("old1", "new1")) else None)(
                        cli.nodes()), 15)
    check(f"{who} lists both builds' nodes online", bool(seen),
          str({k: v.get("IsOffline") for k, v in cli.nodes().items()}))
check("both nodes answer ping 200",
      lib.ping_status(p_old) == 200 and lib.ping_status(p_new) == 200)

# 2. Tasks from both CLIs, run by both nodes.
ids = enqueue(old, 60, "/bin/sh", "-c", "sleep 0.05") + enqueue(new, 60, "/bin/sh", "-c",
                                                                  "sleep 0.05")
check("120 tasks enqueued by the two CLIs", len(ids) == 120, str(len(ids)))
wait_for("120 tasks final", lambda: final(ids), 60, 0.2)
t = tasks(new)
ok = [i for i in ids if t.get(i, {}).get("State") == "Success"]
check("every task of both CLIs ended Success", len(ok) == len(ids),
      f"{len(ok)}/{len(ids)}: {sorted(set(t.get(i, {}).get('State') for i in ids), key=str)}; "
      + "; ".join(f"{i} on {t.get(i, {}).get('ServerNode')}: {t.get(i, {}).get('ErrorMessage')}"
                  for i in ids if i not in ok)[:2000])
ran = {t[i]["ServerNode"] for i in ok}
check("both builds' nodes ran tasks", ran == {"old1", "new1"}, str(ran))
check("the old CLI reads the same results",
      all(s == "Success" for s in states(ids, old)))
check("each task ran once (attempt 1)", all(t[i].get("Attempt") == 1 for i in ok),
      str(sorted({t[i].get("Attempt") for i in ok})))

# 3. Drain and cap across builds.
r1 = new.cli("drain", "old1", "on")
r2 = old.cli("drain", "new1", "on")
check("drain of each node from the other build's CLI", r1.returncode == 0 and r2.returncode == 0,
      r1.stderr + r2.stderr)
check("the old node's ping answers 418 after the new CLI drained it",
      bool(wait_for("old1 418", lambda: lib.ping_status(p_old) == 418, 5)))
check("the new node's ping answers 418 after the old CLI drained it",
      bool(wait_for("new1 418", lambda: lib.ping_status(p_new) == 418, 5)))
new.cli("drain", "old1", "off")
old.cli("drain", "new1", "off")
check("both back to 200 after undrain",
      bool(wait_for("both 200", lambda: lib.ping_status(p_old) == 200
                    and lib.ping_status(p_new) == 200, 5)))
r1, r2 = new.cli("cap", "old1", "2"), old.cli("cap", "new1", "2")
check("cap of each node from the other build's CLI",
      bool(wait_for("caps 2", lambda: (lambda ns: ns.get("old1", {}).get("MaxConcurrentTasks") == 2
                                      and ns.get("new1", {}).get("MaxConcurrentTasks") == 2)(
                                          new.nodes()), 5)),
      f"{r1.stderr}{r2.stderr} "
      f"{ {k: v.get('MaxConcurrentTasks') for k, v in new.nodes().items()} }")

# 4. Cancel across builds: four long tasks, two on each node.
longs = enqueue(new, 4, "/bin/sleep", "60")
placed = wait_for("four long tasks Executing on both nodes",
                  lambda: (lambda tt: tt if sorted(tt[i].get("ServerNode") or "" for i in longs
                                                   if tt[i]["State"] == "Executing")
                           == ["new1", "new1", "old1", "old1"] else None)(tasks(new)), 15)
check("long tasks placed two per node", bool(placed))
if placed:
    on_old = [i for i in longs if placed[i]["ServerNode"] == "old1"]
    on_new = [i for i in longs if placed[i]["ServerNode"] == "new1"]
    r1 = new.cli("cancel", on_old[0])
    r2 = old.cli("cancel", on_new[0])
    check("cancel from each CLI accepted", r1.returncode == 0 and r2.returncode == 0,
          r1.stderr + r2.stderr)
    wait_for("the two canceled tasks final", lambda: final([on_old[0], on_new[0]]), 10, 0.1)
    check("a task on the old node canceled by the new CLI",
          states([on_old[0]]) == ["Canceled"], str(states([on_old[0]])))
    check("a task on the new node canceled by the old CLI",
          states([on_new[0]]) == ["Canceled"], str(states([on_new[0]])))
    for i in (on_old[1], on_new[1]):
        new.cli("cancel", i)
    wait_for("long tasks final", lambda: final(longs), 10, 0.1)

# 5. The old node dies mid-task: the new one recovers its work.
new.cli("drain", "new1", "on")
short = enqueue(old, 2, "/bin/sh", "-c", "sleep 1")
on_old = wait_for("two tasks Executing on old1",
                  lambda: all(t.get("State") == "Executing" and t.get("ServerNode") == "old1"
                              for t in (tasks(new).get(i, {}) for i in short)), 10)
check("two tasks running on the old node", bool(on_old))
lib.stop(n_old, signal.SIGKILL)
new.cli("drain", "new1", "off")
wait_for("the old node's tasks recovered and final", lambda: final(short), 30, 0.2)
t = tasks(new)
check("the new node recovered and ran the killed old node's tasks",
      all(t[i]["State"] == "Success" and t[i]["ServerNode"] == "new1" for i in short),
      str([(t[i]["State"], t[i]["ServerNode"]) for i in short]))

# 6. The old build back under its name.
n_old = start(old, "old1", p_old)
check("the old build restarts beside the new one",
      bool(wait_for("old1 ping 200", lambda: lib.ping_status(p_old) == 200, 15)))
more = enqueue(old, 20, "/bin/true") + enqueue(new, 20, "/bin/true")
wait_for("40 more final", lambda: final(more), 30, 0.2)
t = tasks(new)
check("40 more tasks ran to Success across both builds",
      all(t[i]["State"] == "Success" for i in more))

# 7. The layout gate: a namespace at a newer layout refuses the new build at registration.
layout_key = "{shoal}:layout"
have = redis.cli("GET", layout_key)
check("the new build wrote the namespace's layout version", have.isdigit(), repr(have))
redis.cli("SET", layout_key, "999")
p3 = lib.free_port()
n3 = start(new, "new2", p3)
code = None
try:
    code = n3.wait(15)
except Exception:  # noqa: BLE001 (still running: a FAIL below)
    pass
with open(os.path.join(work, "new2.log"), errors="replace") as f:
    log = f.read()
check("a node of an older layout exits 2 at registration", code == 2, f"exit {code}")
check("its message names both layout versions and says what to do",
      "layout version 999" in log and "upgrade this node" in log, log[-400:])
check("a refused node leaves no record", "new2" not in new.nodes())
redis.cli("SET", layout_key, have)
check("the nodes already there kept serving",
      lib.ping_status(p_old) == 200 and lib.ping_status(p_new) == 200)

r = new.cli("check")
check("shoal check: the namespace both builds wrote is consistent", r.returncode == 0,
      (r.stdout + r.stderr).strip()[-600:])

for p in (n_old, n_new):
    rc = lib.stop(p)
    check(f"node exits 0 on SIGTERM ({p.args[0]})", rc == 0, str(rc))
say(f"{lib._results['pass']} passed, {lib._results['fail']} failed")
lib.finish()
