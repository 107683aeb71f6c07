#!/usr/bin/python3
"""The Redis Cluster run: a namespace's slot moves while tasks flow.

A real cluster on loopback: three primaries and three replicas of Debian's redis-server
(`redis-cli --cluster create ... --cluster-replicas 1`). Two `shoal worker` nodes and the CLI use
redis-cluster:// with every cluster node as a seed. Exec tasks record their starts and ends.
While they run: (1) the namespace's slot is migrated to another primary (CLUSTER SETSLOT
IMPORTING/MIGRATING, MIGRATE of every key, SETSLOT NODE), (2) that primary is failed over to
its replica with CLUSTER FAILOVER, (3) the new primary is killed with SIGKILL and the cluster
promotes its replica. Checks: every task final, none lost, no run started after its task was
reported final, `shoal check` finds nothing, ping (sampled every 50 ms) answers other than 200
only inside an event's window; prints how long each event took to be followed (until every
node answers ping 200 and a task has started after the event).

Usage: scripts/cluster.py BUILD_DIR [--tasks N] [--short]
Exit status 0 when every check holds. Everything runs on 127.0.0.1; every wait is bounded; only
processes started here are stopped (by PID).
"""
import datetime
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import Chaos, FINAL, NS, free_port, run_main, wait_for  # noqa: E402


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


SLOT = crc16(NS.encode()) % 16384


def cluster_port():
    """A free port <= 55535 whose cluster bus port (+10000) is free too."""
    import socket
    for _ in range(1000):
        port = random.randint(20000, 55535)
        socks = []
        try:
            for p in (port, port + 10000):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("cluster: no free port pair")


class Cluster(Chaos):
    def __init__(self, build, tmp, args):
        super().__init__(build, tmp, args)
        self.ports = []
        self.http = {}
        self.follow = []  # (event, seconds until followed)

    def r(self, port):
        return redis.Redis(port=port, socket_timeout=5)

    def start_cluster(self):
        for i in range(6):
            port = cluster_port()
            d = os.path.join(self.tmp, f"r{port}")
            os.makedirs(d)
            self.spawn(f"redis-{port}", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                         "--dir", d, "--save", "", "--appendonly", "no",
                                         "--cluster-enabled", "yes", "--cluster-config-file",
                                         "nodes.conf", "--cluster-node-timeout", "2000",
                                         "--daemonize", "no"])
            self.ports.append(port)
        for p in self.ports:
            wait_for(lambda p=p: self.r(p).ping(), 10, f"redis {p}")
        out = subprocess.run(["redis-cli", "--cluster", "create",
                              *[f"127.0.0.1:{p}" for p in self.ports],
                              "--cluster-replicas", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SystemExit(f"cluster: create failed: {out.stdout}{out.stderr}")
        wait_for(lambda: all(self.r(p).execute_command("CLUSTER", "INFO").decode()
                             .find("cluster_state:ok") >= 0 for p in self.ports), 30, "cluster ok")
        self.url = "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def owner(self):
        """(port, node id) of the primary holding the namespace's slot, as a live node sees it."""
        for p in self.ports:
            try:
                for start, end, primary, *_ in self.r(p).execute_command("CLUSTER", "SLOTS"):
                    if start <= SLOT <= end:
                        return int(primary[1]), primary[2].decode()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                continue
        raise SystemExit("cluster: nobody holds the slot")

    def master(self):
        return self.r(self.owner()[0])

    def start_node(self, name):
        self.http.setdefault(name, free_port())
        self.spawn(name, [self.bin, "worker", "--redis", self.url, "--name", name,
                          "--listen", f"127.0.0.1:{self.http[name]}", "--cap", "8",
                          "--heartbeat", "500ms", "--grace", "2s", "--kill-grace", "1s",
                          "--allow-exec", "/bin/bash", "--log-level", "info"])

    def ping_ok(self):
        for port in self.http.values():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/octopusservernodes/ping",
                                            timeout=1) as resp:
                    if resp.status != 200:
                        return False
            except OSError:
                return False
        return True

    def enqueue(self):
        script = ('echo "S $0 $EPOCHREALTIME" >> "$1"; sleep "$2"; '
                  'echo "E $0 $EPOCHREALTIME" >> "$1"')
        self.tokens = {}
        for i in range(self.args.tasks):
            dur = random.choice([0.1, 0.3, 0.6, 1.0])
            out = subprocess.run([self.bin, "enqueue", "--redis", self.url, "--lost-budget", "5",
                                  "--", "/bin/bash", "-c", script, str(i), self.events, str(dur)],
                                 capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise SystemExit(f"cluster: enqueue failed: {out.stderr}")
            self.tokens[str(i)] = int(out.stdout.strip().split("-")[1])

    def started_after(self, t):
        try:
            with open(self.events) as f:
                return any(l.startswith("S ") and float(l.split()[2]) > t for l in f)
        except OSError:
            return False

    def sample_pings(self):
        """Every 50 ms, each node's ping status, until stopped: (monotonic time, status)."""
        while not self.sampling_done:
            for port in list(self.http.values()):
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/api/octopusservernodes/ping",
                            timeout=1) as resp:
                        status = resp.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except OSError:
                    status = None
                self.samples.append((time.monotonic(), status))
            time.sleep(0.05)

    def reconnected_since(self, wall):
        """Every node has logged a new command connection since wall (epoch seconds): it has
        followed the slot to its new primary, not merely not noticed the move yet."""
        for n in self.http:
            with open(os.path.join(self.tmp, n + ".log"), errors="replace") as f:
                stamps = [datetime.datetime.strptime(l[3:26], "%Y-%m-%dT%H:%M:%S.%f")
                          .replace(tzinfo=datetime.timezone.utc).timestamp()
                          for l in f if 'msg="redis connected" conn=cmd' in l]
            if not any(t >= wall for t in stamps):
                return False
        return True

    def followed(self, what, t0, wall):
        """Waits until the nodes answer ping 200 from a connection to the slot's new primary and
        a task has started since the event (wall: its epoch time)."""
        wait_for(lambda: self.reconnected_since(wall) and self.ping_ok() and
                 (self.started_after(wall) or self.done()), 60, f"nodes following {what}")
        self.windows.append((t0, time.monotonic()))
        self.follow.append((what, time.monotonic() - t0))
        print(f"cluster: {what}: followed in {self.follow[-1][1]:.2f} s", flush=True)

    def migrate(self):
        src_port, src_id = self.owner()
        primaries = {int(p[1]): p[2].decode() for _, _, p, *_ in
                     self.r(src_port).execute_command("CLUSTER", "SLOTS")}
        dst_port = random.choice([p for p in primaries if p != src_port])
        dst_id = primaries[dst_port]
        t0, wall = time.monotonic(), time.time()
        src, dst = self.r(src_port), self.r(dst_port)
        dst.execute_command("CLUSTER", "SETSLOT", SLOT, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", SLOT, "MIGRATING", dst_id)
        moved = 0
        for _ in range(100000):  # bounded: a namespace of at most 10 million keys
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", SLOT, 100)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", dst_port, "", 0, 5000, "REPLACE",
                                "KEYS", *keys)
            moved += len(keys)
        for p in [dst_port, src_port] + [p for p in self.ports if p not in (src_port, dst_port)]:
            try:
                self.r(p).execute_command("CLUSTER", "SETSLOT", SLOT, "NODE", dst_id)
            except redis.exceptions.RedisError:
                pass
        print(f"cluster: migrated slot {SLOT} ({moved} keys) {src_port} -> {dst_port} in "
              f"{time.monotonic() - t0:.2f} s", flush=True)
        self.followed("slot migration", t0, wall)

    def replica_of(self, port):
        node_id = self.owner()[1]
        for line in self.r(port).execute_command("CLUSTER", "REPLICAS", node_id):
            addr = (line.decode() if isinstance(line, bytes) else line).split()[1]
            return int(addr.split("@")[0].split(":")[1])
        raise SystemExit("cluster: the owner has no replica")

    def failover(self):
        port, _ = self.owner()
        rep = self.replica_of(port)
        t0, wall = time.monotonic(), time.time()
        self.r(rep).execute_command("CLUSTER", "FAILOVER")
        wait_for(lambda: self.owner()[0] == rep, 30, "CLUSTER FAILOVER")
        print(f"cluster: CLUSTER FAILOVER {port} -> {rep}", flush=True)
        self.followed("CLUSTER FAILOVER", t0, wall)

    def kill_owner(self):
        port, _ = self.owner()
        rep = self.replica_of(port)
        t0, wall = time.monotonic(), time.time()
        self.stop(f"redis-{port}", signal.SIGKILL)
        self.ports.remove(port)
        wait_for(lambda: self.owner()[0] == rep, 60, "the replica promoted")
        print(f"cluster: SIGKILL of the owner {port}; {rep} promoted", flush=True)
        self.followed("SIGKILL of the slot's primary", t0, wall)

    def run(self):
        self.start_cluster()
        print(f"cluster: 3 primaries, 3 replicas; namespace {NS} is slot {SLOT}", flush=True)
        for n in ("cluster-a", "cluster-b"):
            self.start_node(n)
        wait_for(self.ping_ok, 20, "nodes up")
        self.samples, self.windows, self.sampling_done = [], [], False
        sampler = threading.Thread(target=self.sample_pings, daemon=True)
        sampler.start()
        self.enqueue()
        self.enqueued_at = time.monotonic()
        for step in (self.migrate, self.failover, self.kill_owner):
            time.sleep(1.0)
            step()
        wait_for(self.done, 300, "every task final")
        self.drain_s = time.monotonic() - self.enqueued_at
        self.sampling_done = True
        sampler.join(5)
        return self.verify_cluster()

    def verify_cluster(self):
        starts, _, lost, late, states = self.outcomes()
        reexec = sum(1 for v in starts.values() if len(v) > 1)
        owner = self.owner()[0]
        out = subprocess.run([self.bin, "check", "--redis", f"redis://127.0.0.1:{owner}/0"],
                             capture_output=True, text=True, timeout=60)
        print(f"cluster: tasks {len(self.tokens)}, states {states}")
        print(f"cluster: lost {lost} (must be 0)")
        print(f"cluster: ran after reported final {late} (must be 0)")
        print(f"cluster: re-executed {reexec} (runs in flight when the primary was killed may "
              f"run again)")
        print("cluster: followed: " + ", ".join(f"{w} {s:.2f} s" for w, s in self.follow))
        moves = 0
        for n in ("cluster-a", "cluster-b"):
            with open(os.path.join(self.tmp, n + ".log"), errors="replace") as f:
                moves += sum(1 for l in f if "slot moved to another cluster node" in l)
        print(f"cluster: MOVED replies followed by the nodes: {moves} (must be > 0)")
        print(f"cluster: time to drain {self.drain_s:.1f} s")
        print("cluster: shoal check: " + (out.stdout.strip().splitlines() or ["?"])[-1])
        # Ping is 503 only while the slot has no primary to answer: inside an event's window
        # (from its start until it was followed, with 0.5 s for the last heartbeat's news).
        bad = [(t, st) for t, st in self.samples if st != 200]
        outside = [b for b in bad if not any(w0 <= b[0] <= w1 + 0.5 for w0, w1 in self.windows)]
        print(f"cluster: ping samples {len(self.samples)}: not 200 in {len(bad)}, "
              f"{len(outside)} of them outside the events (must be 0)"
              + "".join(f"; {st} at {t - self.enqueued_at:.2f} s" for t, st in outside[:5]))
        ok = (lost == 0 and late == 0 and out.returncode == 0 and moves > 0 and not outside)
        print(f"cluster: {'OK' if ok else 'FAILED'}")
        return ok


def main():
    run_main(Cluster, "cluster", 1000, 150)


if __name__ == "__main__":
    main()
