#!/usr/bin/python3
"""The chaos run: never lose a task.

Three `shoal worker` nodes share a Redis master (AOF on) that has a replica and a sentinel; the
nodes and the producer reach it through redis-sentinel://. Tasks of mixed length are exec tasks
that append "S <token> <time>" and "E <token> <time>" lines to an event file, so every run of
every task is visible. Meanwhile, every few seconds one node is killed with SIGKILL and started
again, another gets SIGTERM (graceful: finish, requeue the rest, exit 0) and is started again;
Redis is restarted once and Sentinel fails over once. At the end every task must be final,
none missing, none may have started after it was reported final, and the run prints:
tasks, lost (must be 0), re-executed (at most the tasks in flight at kill times), the longest
time from a kill to the recovery of the node's tasks, and the time to drain.

Usage: scripts/chaos.py BUILD_DIR [--tasks N] [--seconds S] [--short]
Exit status 0 when every check holds. Everything runs on 127.0.0.1, every wait is bounded, and
only the processes started here are stopped (by PID).
"""
import argparse
import ctypes
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_port  # noqa: E402  (partition.py and cluster.py import it from here)

NS = "shoal"
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent():
    LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
FINAL = {"Success", "Failed", "Canceled", "TimedOut"}


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.ResponseError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"chaos: timed out waiting for {what}")


class Chaos:
    def __init__(self, build, tmp, args):
        self.bin = os.path.join(build, "shoal")
        self.tmp = tmp
        self.args = args
        self.procs = {}          # name -> Popen of every process we started
        self.events = os.path.join(tmp, "events")
        self.kill_log = []       # (time, node, tasks in flight)
        self.detect = []         # seconds from SIGKILL to the node's tasks recovered
        self.node_exits = []     # exit codes of SIGTERMed nodes
        self.redis_events = []   # (what, wall start, wall end) of each Redis restart/failover

    # --- processes -------------------------------------------------------------------------
    def spawn(self, name, argv, **kw):
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        # Our children die with us even if we are killed (a CI timeout): PR_SET_PDEATHSIG.
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                            preexec_fn=die_with_parent, **kw)
        return self.procs[name]

    def stop(self, name, sig=signal.SIGTERM, timeout=15):
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait(5)

    def redis_server(self, name, port, extra=()):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        self.spawn(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                          "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                          "--daemonize", "no", *extra])
        wait_for(lambda: redis.Redis(port=port).ping(), 10, f"{name} on {port}")

    def start_redis(self):
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self.redis_server("master", self.master_port)
        self.redis_server("replica", self.replica_port,
                          ("--replicaof", "127.0.0.1", str(self.master_port)))
        conf = os.path.join(self.tmp, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.tmp}\n"
                    f"sentinel monitor mymaster 127.0.0.1 {self.master_port} 1\n"
                    "sentinel down-after-milliseconds mymaster 60000\n"
                    "sentinel failover-timeout mymaster 10000\n")
        self.spawn("sentinel", ["redis-sentinel", conf])
        s = redis.Redis(port=self.sentinel_port)
        wait_for(lambda: s.execute_command("SENTINEL", "REPLICAS", "mymaster"), 20, "sentinel")
        self.url = f"redis-sentinel://127.0.0.1:{self.sentinel_port}/mymaster"

    def master(self):
        s = redis.Redis(port=self.sentinel_port)
        host, port = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return redis.Redis(host=host.decode(), port=int(port), socket_timeout=5)

    def start_node(self, name):
        self.spawn(name, [self.bin, "worker", "--redis", self.url, "--name", name,
                          "--listen", "127.0.0.1:0", "--cap", "8", "--heartbeat", "500ms",
                          "--grace", "2s", "--kill-grace", "1s", "--allow-exec", "/bin/bash",
                          "--log-level", "warn"])

    # --- the run ---------------------------------------------------------------------------
    def enqueue(self, n):
        """Enqueues n more tasks (tokens continue from the last one)."""
        script = ('echo "S $0 $EPOCHREALTIME" >> "$1"; sleep "$2"; '
                  'echo "E $0 $EPOCHREALTIME" >> "$1"')
        first = len(self.tokens)
        for i in range(first, first + n):
            dur = random.choice([0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]) if not self.args.short \
                else random.choice([0.5, 1.0, 1.5, 2.0])
            out = subprocess.run([self.bin, "enqueue", "--redis", self.url, "--", "/bin/bash",
                                  "-c", script, str(i), self.events, str(dur)],
                                 capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise SystemExit(f"chaos: enqueue failed: {out.stderr}")
            self.tokens[str(i)] = int(out.stdout.strip().split("-")[1])
        if first == 0:
            self.enqueued_at = time.monotonic()

    def in_flight(self, r, node):
        return r.zcard(f"{{{NS}}}:running:{node}")

    def kill9(self, node):
        r = self.master()
        flying = self.in_flight(r, node)
        t0 = time.monotonic()
        self.stop(node, signal.SIGKILL)
        self.kill_log.append((t0, node, flying))
        # Detection: the recovery pass empties its running set (TTL 1.5 s + a heartbeat).
        wait_for(lambda: self.in_flight(self.master(), node) == 0, 30, f"recovery of {node}")
        self.detect.append(time.monotonic() - t0)
        self.start_node(node)

    def sigterm(self, node):
        self.node_exits.append(self.stop(node, signal.SIGTERM, timeout=20))
        self.start_node(node)

    def restart_redis(self):
        """Stops whichever server is master now and starts it again (AOF keeps the data)."""
        t0 = time.time()
        m = self.master()
        port = m.connection_pool.connection_kwargs["port"]
        name = "master" if port == self.master_port else "replica"
        # It is the master now (after a failover, the former replica): it must come back as a
        # master, not with the --replicaof it was first started with, or it would resync from
        # the old master and roll back everything written since the failover.
        self.stop(name)
        self.redis_server(name, port)
        self.settle()
        self.redis_events.append(("restart", t0, time.time()))

    def settle(self):
        """Waits until every node is registered again after a Redis event."""
        wait_for(lambda: all(self.master().exists(f"{{{NS}}}:alive:{n}")
                             for n in ("chaos-a", "chaos-b", "chaos-c")), 30, "nodes back")

    def replicas_caught_up(self, target):
        """Every replica of the master is online and has everything up to offset target."""
        info = self.master().info("replication")
        reps = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return reps and all(r.get("state") == "online" and int(r.get("offset", 0)) >= target
                            for r in reps)

    def failover(self):
        s = redis.Redis(port=self.sentinel_port)
        t0 = time.time()
        before = self.master().connection_pool.connection_kwargs["port"]
        # As an operator would: fail over only to a replica holding what the master has.
        # SENTINEL FAILOVER promotes a replica whatever its state, and one still in its first
        # sync (diskless, after a 5 s delay) is empty: a CI run once failed over 5.8 s after
        # start, and the restarted old master then resynced from it, losing every task. That
        # is Redis losing data by request, not what this run tests.
        target = self.master().info("replication")["master_repl_offset"]
        wait_for(lambda: self.replicas_caught_up(target), 30, "replica in sync before failover")
        wait_for(lambda: s.execute_command("SENTINEL", "FAILOVER", "mymaster"), 30, "failover accepted")
        wait_for(lambda: self.master().connection_pool.connection_kwargs["port"] != before, 30,
                 "failover done")
        self.settle()
        self.redis_events.append(("failover", t0, time.time()))

    def done(self):
        r = self.master()
        states = r.pipeline()
        for tid in self.tokens.values():
            states.hget(f"{{{NS}}}:task:{tid}", "state")
        return all(s is not None and s.decode() in FINAL for s in states.execute())

    def run(self):
        self.start_redis()
        nodes = ["chaos-a", "chaos-b", "chaos-c"]
        for n in nodes:
            self.start_node(n)
        wait_for(lambda: len(self.master().smembers(f"{{{NS}}}:nodes")) == 3, 20, "nodes")
        self.tokens = {}
        self.enqueue(self.args.tasks)
        actions = ["kill9", "sigterm", "kill9", "redis", "kill9", "sigterm", "failover", "kill9"]
        if self.args.short:
            actions = ["kill9", "failover", "sigterm", "redis"]
        step = max(1.5, self.args.seconds / (len(actions) + 1))
        # Every action runs, with tasks in flight: a fleet that drains the queue before the
        # next action gets another wave (a tenth of the run's tasks), so a faster build cannot
        # skip the Redis restart or the failover by finishing early.
        for a in actions:
            time.sleep(step)
            if self.done():
                wave = max(50, self.args.tasks // 10)
                print(f"chaos: the queue ran dry before the {a}: {wave} more tasks", flush=True)
                self.enqueue(wave)
                time.sleep(1.0)
            victim = random.choice(nodes)
            print(f"chaos: {a} {victim if a in ('kill9', 'sigterm') else ''}".rstrip(), flush=True)
            {"kill9": lambda: self.kill9(victim), "sigterm": lambda: self.sigterm(victim),
             "redis": self.restart_redis, "failover": self.failover}[a]()
        wait_for(self.done, 300, "every task final")
        self.drain_s = time.monotonic() - self.enqueued_at
        return self.verify()

    def outcomes(self):
        """Reads the event file ("S|E token epoch-seconds" lines) and every task's record:
        returns (starts, ends: token -> [ms]; lost: tasks not final; late: runs started after
        their task was reported final, with 10 ms of clock slack; states: state -> count)."""
        r = self.master()
        starts, ends = {}, {}
        with open(self.events) as f:
            for line in f:
                kind, token, t = line.split()
                (starts if kind == "S" else ends).setdefault(token, []).append(float(t) * 1000)
        lost, late, states = 0, 0, {}
        for token, tid in self.tokens.items():
            h = {k.decode(): v.decode(errors="replace")
                 for k, v in r.hgetall(f"{{{NS}}}:task:{tid}").items()}
            state = h.get("state")
            states[state] = states.get(state, 0) + 1
            if state not in FINAL:
                lost += 1
                continue
            completed = int(h.get("completed", "0"))
            late += sum(1 for s in starts.get(token, []) if s > completed + 10)
        return starts, ends, lost, late, states

    def verify(self):
        starts, ends, lost, late, states = self.outcomes()
        reexec = sum(1 for v in starts.values() if len(v) > 1)
        # Runs that may legitimately happen twice: those in flight when a node was killed or
        # stopped, and those in flight at any moment while Redis restarted or failed over
        # (asynchronous replication and everysec fsync can lose a claim or a completion, and
        # until Sentinel announces the switch, nodes may still write to the old master).
        windows = [(t0 * 1000, t1 * 1000) for _, t0, t1 in self.redis_events]
        during = 0
        for token, ss in starts.items():
            es = ends.get(token, [])
            for i, st in enumerate(ss):
                en = es[i] if i < len(es) else float("inf")
                if any(st <= w1 and en >= w0 for w0, w1 in windows):
                    during += 1
                    break
        in_flight = sum(f for _, _, f in self.kill_log) + 8 * len(self.node_exits) + during
        bad_exits = [c for c in self.node_exits if c != 0]
        print(f"chaos: tasks {len(self.tokens)}, states {states}")
        print(f"chaos: lost {lost} (must be 0)")
        print(f"chaos: ran after reported final {late} (must be 0)")
        print(f"chaos: re-executed {reexec} (at most {in_flight}: tasks in flight at node kills, "
              f"stops, the Redis restart and the failover)")
        print(f"chaos: kills {len(self.kill_log)}, max detection delay "
              f"{max(self.detect) if self.detect else 0:.2f} s (TTL 1.5 s + one heartbeat)")
        print(f"chaos: graceful stops {len(self.node_exits)}, exit codes {self.node_exits}")
        print(f"chaos: time to drain {self.drain_s:.1f} s")
        consistent = self.check()
        ok = lost == 0 and late == 0 and reexec <= in_flight and not bad_exits and consistent
        print(f"chaos: {'OK' if ok else 'FAILED'}")
        return ok

    def check(self):
        """`shoal check` on the namespace (every task in exactly the structure its state says,
        counters equal to what they count). The walk is not atomic: a finding must survive a
        second walk a moment later to count."""
        r = self.master()
        url = f"redis://{r.connection_pool.connection_kwargs['host']}:" \
              f"{r.connection_pool.connection_kwargs['port']}/0"
        out = None
        for attempt in range(3):
            out = subprocess.run([self.bin, "check", "--redis", url], capture_output=True,
                                 text=True, timeout=60)
            if out.returncode == 0:
                break
            time.sleep(1)
        print("chaos: shoal check: " + (out.stdout.strip().splitlines() or ["?"])[-1]
              + ("" if out.returncode == 0 else " (must be 0 findings)"))
        if out.returncode != 0:
            print(out.stdout + out.stderr)
        return out.returncode == 0

    def cleanup(self):
        for name in list(self.procs):
            self.stop(name, signal.SIGTERM, timeout=10)


def run_main(cls, label, tasks, short_tasks, seconds=0.0, short_seconds=0.0):
    """The shared command line of the chaos runs: BUILD_DIR [--tasks N] [--seconds S] [--short];
    runs cls(build, tmp, args).run() in a fresh temporary directory, keeps it when a check
    failed, prints "LABEL: 1 passed, 0 failed" (or the reverse) and exits with 0 or 1."""
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--tasks", type=int, default=tasks)
    ap.add_argument("--seconds", type=float, default=seconds)
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args()
    if args.short:
        args.tasks, args.seconds = min(args.tasks, short_tasks), min(args.seconds, short_seconds)
    random.seed(int(os.environ.get("CHAOS_SEED", "7")))
    tmp = tempfile.mkdtemp(prefix=f"shoal-{label}-")
    c = cls(os.path.abspath(args.build), tmp, args)
    ok = False
    try:
        ok = c.run()
    finally:
        c.cleanup()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"{label}: logs kept in {tmp}")
    print(f"{label}: {1 if ok else 0} passed, {0 if ok else 1} failed")
    sys.exit(0 if ok else 1)


def main():
    run_main(Chaos, "chaos", 5000, 300, 60, 8)


if __name__ == "__main__":
    main()
