#!/usr/bin/python3
"""bench-latency.py BUILD [K]: where the time goes between an enqueue and its handler, on an
idle node (issue 19's breakdown of bench-tasks.sh's "latency enqueue -> handler").

Runs bench_tasks's latency step (K tasks, 200 by default, one every 10 ms, each carrying the
producer's CLOCK_REALTIME taken just before its enqueue call; bench_node's `lat` handler notes
the time at entry) while a MONITOR connection records when Redis ran every command, then lines
each sample up with its enqueue.lua and claim.lua runs. Redis feeds MONITOR a command as it
starts it, with its own clock (the same clock on one machine), and then each command the script
makes as it runs: a script runs from its EVALSHA line to its last inner command. Stages:

  send     producer's call -> enqueue.lua starts (client, socket, Redis reading the call)
  enqueue  enqueue.lua itself (its PUBLISH on the wake channel included)
  wake     enqueue.lua ends -> claim.lua starts (the message to the node, its loop, the claim
           call sent and read)
  claim    claim.lua itself
  start    claim.lua ends -> the handler runs (the answer to the node, the runner, the thread)

A task pushed to the idle node (enqueue.lua claims for it and publishes the answer: docs/
design.md, "Push to an idle node") has no wake and no claim.lua: its stages are send, enqueue
(the claim for the node and the PUBLISH included) and start (enqueue.lua ends -> the handler
runs: the message to the node, its loop, the runner, the thread). Both kinds are printed.

MONITOR makes every command cost Redis more, so the stages add up to more than bench-tasks.sh's
figure; the same step is run first without MONITOR for that figure. Starts its own redis-server
on a free loopback port and stops exactly the processes it started.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import die_with_parent, free_port, wait_for  # noqa: E402

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
K = int(sys.argv[2]) if len(sys.argv) > 2 else 200
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAP = os.environ.get("CAP", "64")


def sha(name):
    """The SHA1 of a script as the build embeds it (with its `--@body` inclusions: the build
    writes those out as scripts_gen.c.<name>.lua)."""
    built = os.path.join(BUILD, "scripts_gen.c.%s.lua" % name)
    path = built if os.path.exists(built) else os.path.join(ROOT, "lua", name + ".lua")
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def latency_step(url, tmp, samples=None):
    env = dict(os.environ)
    if samples:
        env["SHOAL_BENCH_LAT_SAMPLES"] = samples
    out = subprocess.run(
        ["timeout", "-k", "5", "120", os.path.join(BUILD, "bench_tasks"), url, "shoal", tmp,
         "latency", str(K), CAP, os.path.join(BUILD, "bench_node")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, text=True)
    return out.stdout


def main():
    tmp = tempfile.mkdtemp(prefix="shoal-bench-latency-")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        r = redis.Redis(port=port)
        wait_for(r.ping, 10, "redis-server on %d" % port)
        url = "redis://127.0.0.1:%d/0" % port
        plain = latency_step(url, tmp)
        events, stop = [], threading.Event()

        def watch():
            with r.monitor() as m:
                while not stop.is_set():
                    try:
                        c = m.next_command()
                    except (redis.ConnectionError, ValueError):
                        return
                    events.append((c["time"], c.get("client_type") == "lua", c["command"]))

        mon = threading.Thread(target=watch, daemon=True)
        mon.start()
        time.sleep(0.2)
        samples = os.path.join(tmp, "samples")
        latency_step(url, tmp, samples)
        time.sleep(0.2)
        stop.set()
        r.ping()  # one more event, so that the watcher sees stop
        mon.join(5)

        # Script runs: Redis 7 feeds a script's EVALSHA line as it starts it, then each inner
        # command as it runs, so a run spans its EVALSHA line to its last inner command.
        runs = []
        for t, lua, command in list(events):
            if lua and runs and runs[-1][3]:
                runs[-1][2] = t
            elif not lua:
                is_eval = command.startswith("EVALSHA ")
                runs.append([command.split(" ", 2)[1] if is_eval else "", t, t, is_eval])
        enq_sha, claim_sha = sha("enqueue"), sha("claim")
        stages = {k: [] for k in ("send", "enqueue", "wake", "claim", "start", "total")}
        pushed = {k: [] for k in ("send", "enqueue", "start", "total")}
        with open(samples) as f:
            lines = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
        ri = 0
        for t0_us, lat_us in lines:
            t0, t3 = t0_us / 1e6, (t0_us + lat_us) / 1e6
            while ri < len(runs) and not (runs[ri][0] == enq_sha and runs[ri][2] >= t0):
                ri += 1
            if ri == len(runs):
                break
            enq = runs[ri]
            ci = ri + 1
            while ci < len(runs) and runs[ci][0] != claim_sha:
                ci += 1
            if ci == len(runs) or runs[ci][2] > t3:
                if enq[2] <= t3:  # no claim before the handler ran: pushed
                    ri += 1
                    for name, a, b in (("send", t0, enq[1]), ("enqueue", enq[1], enq[2]),
                                       ("start", enq[2], t3), ("total", t0, t3)):
                        pushed[name].append((b - a) * 1e6)
                continue
            cl = runs[ci]
            ri = ci + 1
            for name, a, b in (("send", t0, enq[1]), ("enqueue", enq[1], enq[2]),
                               ("wake", enq[2], cl[1]), ("claim", cl[1], cl[2]),
                               ("start", cl[2], t3), ("total", t0, t3)):
                stages[name].append((b - a) * 1e6)
        n, npush = len(stages["total"]), len(pushed["total"])
        fig = {}
        for line in plain.splitlines():
            if '"metric":"lat_p50_ms"' in line or '"metric":"lat_p99_ms"' in line:
                key = "p50" if "p50" in line else "p99"
                fig[key] = float(line.split('"value":')[1].split(",")[0])
        print("latency enqueue -> handler, idle node (cap %s, %d samples): p50 %.3f ms, p99 %.3f ms"
              " without MONITOR" % (CAP, K, fig.get("p50", float("nan")),
                                    fig.get("p99", float("nan"))))
        if n + npush == 0:
            print("bench-latency: no sample could be lined up with MONITOR's record")
            return 1
        for kind, st, m in (("pushed", pushed, npush), ("woken, then claimed", stages, n)):
            if m == 0:
                continue
            print("breakdown with MONITOR on, %s (%d of %d samples), microseconds:" %
                  (kind, m, len(lines)))
            print("  %-8s %8s %8s" % ("stage", "p50", "p99"))
            for name in st:
                print("  %-8s %8.0f %8.0f" % (name, pct(st[name], 50), pct(st[name], 99)))
        return 0
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
