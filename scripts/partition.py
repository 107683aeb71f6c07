#!/usr/bin/python3
"""The partition chaos run: never two runs of one task at once.

Three `shoal worker` nodes reach Redis (a master with a replica and a sentinel) each through
its own TCP proxy, run here, that can pass, stall or cut each direction of its link:
- stall: nothing moves (bytes wait in the sockets, as in a network that holds packets) until
  the link heals, then everything is delivered, late;
- cut: bytes are read and dropped; at the heal the connections that lost bytes are reset (as
  TCP gives up on a stream with a hole), new ones go through.
Each proxy forwards to the current master; after a failover it resets its connections, as a
managed endpoint does. Exec tasks of 0.2 to 5 s record "S", then "E" (done) or "K" (stopped by
SIGTERM) lines with token, node, pid, a monotonic and a wall-clock time.

During the run: one node's link is stalled both ways for 2.5 TTLs, one is cut Redis->node only
(its writes arrive, its replies do not), one is cut node->Redis only, two stalls are short
enough that they must stop nothing, one node is SIGKILLed, and Sentinel fails over once.
Checks: every task final, none lost; no two runs of one task overlap in time (the node stops
its runs before its TTL ends, so no slack is needed; 20 ms are allowed for the clock's
resolution); no run was stopped by a short stall; every run stopped for lost liveness
(`shoal_tasks_fenced_total`) was requeued and its task ran to the end elsewhere; `shoal check`
finds nothing.

Usage: scripts/partition.py BUILD_DIR [--short]
Exit status 0 when every check holds. Everything runs on 127.0.0.1, every wait is bounded, and
only the processes started here are stopped (by PID).
"""
import asyncio
import os
import random
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import Chaos, FINAL, NS, free_port, run_main, wait_for  # noqa: E402

TOLERANCE = 0.02  # s: /proc/uptime's resolution is 10 ms


class Conn:
    def __init__(self, cw):
        self.cw, self.uw, self.broken = cw, None, False


class Proxy:
    """One node's link: 127.0.0.1:port -> target() (the current master). Driven from the main
    thread through set() and reset(); runs on the asyncio loop of a Proxies thread."""

    def __init__(self, loop, target):
        self.loop, self.target = loop, target
        self.flowing = {"up": asyncio.Event(), "down": asyncio.Event()}  # up: node -> Redis
        self.cut = {"up": False, "down": False}
        for e in self.flowing.values():
            e.set()
        self.conns = set()

    async def start(self):
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def accept(self, cr, cw):
        conn = Conn(cw)
        self.conns.add(conn)
        try:
            # A connection opened while a direction is stalled waits for the heal (its SYN
            # would not get through).
            await self.flowing["up"].wait()
            await self.flowing["down"].wait()
            host, port = self.target()
            ur, uw = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            conn.uw = uw
            await asyncio.gather(self.pump(conn, cr, uw, "up"), self.pump(conn, ur, cw, "down"))
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            self.close(conn)

    async def pump(self, conn, reader, writer, way):
        while True:
            await self.flowing[way].wait()
            data = await reader.read(65536)
            if not data:
                break
            if self.cut[way]:
                conn.broken = True  # a hole in the stream: reset at the heal
                continue
            if not self.flowing[way].is_set():  # stalled while we read: deliver at the heal
                await self.flowing[way].wait()
                if conn.broken or self.cut[way]:
                    break
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    def close(self, conn):
        for w in (conn.cw, conn.uw):
            if w is not None:
                w.transport.abort()
        self.conns.discard(conn)

    def _set(self, up, down):
        for way, mode in (("up", up), ("down", down)):
            self.cut[way] = mode == "cut"
            if mode == "stall":
                self.flowing[way].clear()
            else:
                self.flowing[way].set()
        if up == "pass" and down == "pass":
            for conn in [c for c in self.conns if c.broken]:
                self.close(conn)

    def _reset(self):
        for conn in list(self.conns):
            self.close(conn)

    def set(self, up, down):
        """Each of up (node -> Redis) and down (Redis -> node): pass, stall or cut."""
        self.loop.call_soon_threadsafe(self._set, up, down)

    def reset(self):
        self.loop.call_soon_threadsafe(self._reset)


class Proxies:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def new(self, target):
        async def make():
            p = Proxy(self.loop, target)
            await p.start()
            return p
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Partition(Chaos):
    def __init__(self, build, tmp, args):
        super().__init__(build, tmp, args)
        self.proxies = Proxies()
        self.master_addr = None
        # heartbeat H, TTL 3H, grace g = min(kill-grace, H), margin m = g + max(3H/10, 100 ms):
        # a stall shorter than TTL - m - H stops nothing whatever its phase.
        self.hb = 1.0 if args.short else 2.0
        self.kill_grace = 0.3 if args.short else 0.5
        ttl = 3 * self.hb
        self.ttl = ttl
        self.margin = min(self.kill_grace, self.hb) + max(ttl / 10, 0.1)
        self.safe = ttl - self.margin - self.hb
        self.ports, self.links = {}, {}
        self.fenced_seen = {}  # node -> fenced count of earlier processes (before a kill)
        self.short_stalls = []  # (node, mono start, mono end)
        self.long_cuts = []  # (what, node, mono start, mono end)

    def target(self):
        return self.master_addr

    def refresh_master(self):
        m = self.master()
        kw = m.connection_pool.connection_kwargs
        self.master_addr = (kw["host"], kw["port"])

    def start_node(self, name):
        if name not in self.links:
            self.links[name] = self.proxies.new(self.target)
            self.ports[name] = free_port()
        url = f"redis://127.0.0.1:{self.links[name].port}/0"
        self.spawn(name, [self.bin, "worker", "--redis", url, "--name", name,
                          "--listen", f"127.0.0.1:{self.ports[name]}", "--cap", "4",
                          "--heartbeat", f"{int(self.hb * 1000)}ms", "--grace", "1s",
                          "--kill-grace", f"{int(self.kill_grace * 1000)}ms",
                          "--allow-exec", "/bin/bash", "--log-level", "info"])

    def fenced(self, name):
        """shoal_tasks_fenced_total of the node's current process, or None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics",
                                        timeout=2) as r:
                m = re.search(rb"^shoal_tasks_fenced_total (\d+)", r.read(), re.M)
                return int(m.group(1)) if m else None
        except OSError:
            return None

    def total_fenced(self):
        return sum(self.fenced_seen.values()) + sum(self.fenced(n) or 0 for n in self.links)

    def enqueue(self):
        n = self.args.tasks
        script = (f'rec() {{ read up _ < /proc/uptime; '
                  f'echo "$1 $TOKEN $SHOAL_TASK_NODE $$ $up $EPOCHREALTIME" >> "$EVENTS"; }}; '
                  f'trap \'rec K; exit 143\' TERM; rec S; sleep "$DUR" & wait $!; rec E')
        self.tokens = {}
        for i in range(n):
            dur = round(random.uniform(0.2, 5.0), 2)
            # Any task may be on several nodes that lose their link in one run: a node-loss
            # budget of 5 requeues it every time, so every stopped run must run again.
            out = self.run_cli(["enqueue", "--lost-budget", "5", "--env", f"TOKEN={i}", "--env", f"EVENTS={self.events}",
                                "--env", f"DUR={dur}", "--", "/bin/bash", "-c", script])
            self.tokens[str(i)] = int(out.strip().split("-")[1])
        self.enqueued_at = time.monotonic()

    def run_cli(self, args):
        import subprocess
        m = self.master_addr
        out = subprocess.run([self.bin, *args[:1], "--redis", f"redis://{m[0]}:{m[1]}/0",
                              *args[1:]], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SystemExit(f"partition: {args[0]} failed: {out.stderr}")
        return out.stdout

    def running_on(self, name):
        return self.master().zcard(f"{{{NS}}}:running:{name}")

    # --- actions -----------------------------------------------------------------------------
    def link(self, name, up, down, seconds, what):
        t0 = time.monotonic()
        print(f"partition: {name}: {what} for {seconds:.1f} s "
              f"({self.running_on(name)} tasks running there)", flush=True)
        self.links[name].set(up, down)
        return (what, name, t0, seconds)

    def heal(self, name):
        self.links[name].set("pass", "pass")

    def kill9(self, node):
        self.fenced_seen[node] = self.fenced_seen.get(node, 0) + (self.fenced(node) or 0)
        super().kill9(node)

    def failover(self):
        before = self.master_addr
        super().failover()  # ends with settle(), below
        print(f"partition: failover {before[1]} -> {self.master_addr[1]}", flush=True)

    def settle(self):
        """After a failover: the proxies follow the new master and reset their connections (a
        managed endpoint's way), then every node must be registered there."""
        before = self.master_addr
        self.refresh_master()
        if self.master_addr != before:
            for p in self.links.values():
                p.reset()
        wait_for(lambda: all(self.master().exists(f"{{{NS}}}:alive:{n}") for n in self.links),
                 30, "nodes back")

    def schedule(self):
        """(at seconds, action) pairs. The long events overlap each other; the short stalls
        land on nodes with tasks running and nothing else happening to them."""
        h, ttl, safe = self.hb, self.ttl, self.safe
        short = max(0.5 * h, safe - 0.5)  # below TTL - margin - heartbeat, with room
        plan = [
            (1.0 * ttl, lambda: self.event("a", "stall", "stall", 2.5 * ttl, "stalled both ways")),
            (1.5 * ttl, lambda: self.event("b", "pass", "cut", 2.0 * ttl, "cut Redis->node")),
            (4.5 * ttl, lambda: self.event("c", "cut", "pass", 2.0 * ttl, "cut node->Redis")),
            (5.0 * ttl, lambda: self.event("b", "stall", "stall", short, "short stall", True)),
            (7.0 * ttl, lambda: self.event("a", "stall", "stall", short, "short stall", True)),
            (8.0 * ttl, lambda: self.kill9("partition-c")),
            (9.0 * ttl, self.failover),
        ]
        return plan

    def event(self, node, up, down, seconds, what, short=False):
        name = f"partition-{node}"
        before = self.fenced(name)
        t0 = time.monotonic()
        self.link(name, up, down, seconds, what)
        timer = threading.Timer(seconds, self.heal_event,
                                (name, what, t0, seconds, short, before))
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def heal_event(self, name, what, t0, seconds, short, before):
        self.heal(name)
        t1 = time.monotonic()
        if short:
            time.sleep(1.0)  # what the stall could have stopped has been counted by now
            self.short_stalls.append((name, t0, t1, before, self.fenced(name)))
        else:
            self.long_cuts.append((what, name, t0, t1))

    def run(self):
        self.start_redis()
        self.refresh_master()
        nodes = ["partition-a", "partition-b", "partition-c"]
        for n in nodes:
            self.start_node(n)
        wait_for(lambda: len(self.master().smembers(f"{{{NS}}}:nodes")) == 3, 20, "nodes")
        self.enqueue()
        self.timers = []
        start = time.monotonic()
        for at, action in self.schedule():
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
        for t in self.timers:
            t.join(60)
        wait_for(self.done, 300, "every task final")
        self.drain_s = time.monotonic() - self.enqueued_at
        return self.verify()

    def done(self):
        self.refresh_master()
        return super().done()

    # --- checks ------------------------------------------------------------------------------
    def verify(self):
        r = self.master()
        runs = {}  # token -> [[start, end, node, kind_of_end]]
        with open(self.events) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 6:
                    continue
                kind, token, node, pid, up, wall = parts
                if kind == "S":
                    runs.setdefault(token, []).append([float(up), None, node, None, pid])
                else:
                    for run in runs.get(token, []):
                        if run[2] == node and run[4] == pid and run[1] is None:
                            run[1], run[3] = float(up), kind
        lost, states = 0, {}
        for token, tid in self.tokens.items():
            state = r.hget(f"{{{NS}}}:task:{tid}", "state")
            state = state.decode() if state else None
            states[state] = states.get(state, 0) + 1
            if state not in FINAL:
                lost += 1
        overlaps, unended, stopped, stopped_finished = [], 0, 0, 0
        for token, rs in runs.items():
            rs.sort(key=lambda x: x[0])
            for i, run in enumerate(rs):
                if run[1] is None:
                    unended += 1
                if run[3] == "K":
                    stopped += 1
                    if any(later[3] == "E" for later in rs[i + 1:]):
                        stopped_finished += 1
                end = run[1] if run[1] is not None else float("inf")
                for later in rs[i + 1:]:
                    if later[0] < end - TOLERANCE:
                        overlaps.append((token, run, later))
        short_stopped = 0
        for name, t0, t1, before, after in self.short_stalls:
            up0 = t0 - time.monotonic() + uptime()
            up1 = t1 - time.monotonic() + uptime()
            k = sum(1 for rs in runs.values() for run in rs
                    if run[2] == name and run[3] == "K" and up0 <= run[1] <= up1 + 1.0)
            short_stopped += k + max(0, (after or 0) - (before or 0))
        fenced = self.total_fenced()
        print(f"partition: heartbeat {self.hb:.1f} s, TTL {self.ttl:.1f} s, margin "
              f"{self.margin:.2f} s: stalls under {self.safe:.2f} s must stop nothing")
        print(f"partition: tasks {len(self.tokens)}, states {states}, runs "
              f"{sum(len(v) for v in runs.values())}")
        errors = {}
        for tid in self.tokens.values():
            h = r.hmget(f"{{{NS}}}:task:{tid}", "state", "error")
            if h[0] == b"Failed":
                e = (h[1] or b"").decode(errors="replace")
                errors[e] = errors.get(e, 0) + 1
        for e, n in errors.items():
            print(f"partition: Failed x{n}: {e}")
        print(f"partition: lost {lost} (must be 0)")
        print(f"partition: overlapping runs of one task {len(overlaps)} (must be 0)")
        for token, a, b in overlaps[:5]:
            print(f"  task {token}: {a[2]} {a[0]:.3f}-{a[1]} and {b[2]} from {b[0]:.3f}")
        print(f"partition: runs without an end record {unended} (must be 0)")
        print(f"partition: runs stopped by a short stall {short_stopped} (must be 0; "
              f"{len(self.short_stalls)} short stalls)")
        print(f"partition: runs stopped for lost liveness {fenced} (shoal_tasks_fenced_total); "
              f"runs ended by SIGTERM {stopped} (those, disowned runs and the SIGKILLed node's), of which {stopped_finished} ran again "
              f"to the end (must be all)")
        print(f"partition: time to drain {self.drain_s:.1f} s")
        consistent = self.check()
        ok = (lost == 0 and not overlaps and unended == 0 and short_stopped == 0 and fenced > 0
              and stopped_finished == stopped and consistent)
        print(f"partition: {'OK' if ok else 'FAILED'}")
        return ok

    def cleanup(self):
        super().cleanup()
        self.proxies.stop()


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def main():
    run_main(Partition, "partition", 600, 120)


if __name__ == "__main__":
    main()
