#!/usr/bin/python3
"""bench-cluster.py BUILD [N]: past one primary, measured. A Redis Cluster of three primaries
on loopback; two namespaces whose slots live on two different primaries. Each namespace gets N
(default 50000) built-in noop tasks and one node at cap 64; first one namespace alone, then
both at once, A/B interleaved over 3 rounds. Prints the rate of one namespace alone and the
aggregate of two (first start to last completion, from the tasks' own records), with each
primary's CPU per task, and checks every task of both namespaces ended Success. On a 2-core
machine the nodes and the primaries share the same two cores, so the aggregate shows what the
cluster spreads, not what two machines would do. Stops exactly what it started."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import wait_for  # noqa: E402
from cluster import Cluster, cluster_port, crc16  # noqa: E402
import redis  # noqa: E402


class Bench(Cluster):
    def start_primaries(self):
        for _ in range(3):
            port = cluster_port()
            d = os.path.join(self.tmp, f"r{port}")
            os.makedirs(d)
            self.spawn(f"redis-{port}", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                         "--dir", d, "--save", "", "--appendonly", "no",
                                         "--cluster-enabled", "yes", "--cluster-config-file",
                                         "nodes.conf", "--daemonize", "no"])
            self.ports.append(port)
        for p in self.ports:
            wait_for(lambda p=p: self.r(p).ping(), 10, f"redis {p}")
        out = subprocess.run(["redis-cli", "--cluster", "create",
                              *[f"127.0.0.1:{p}" for p in self.ports], "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SystemExit(f"bench-cluster: create failed: {out.stdout}{out.stderr}")
        wait_for(lambda: all(b"cluster_state:ok" in self.r(p).execute_command("CLUSTER", "INFO")
                             for p in self.ports), 30, "cluster ok")
        self.url = "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def owner_of(self, ns):
        slot = crc16(ns.encode()) % 16384
        for start, end, primary, *_ in self.r(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
        raise SystemExit("bench-cluster: no owner")

    def cpu(self, port):
        info = self.r(port).info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    def round(self, namespaces, n):
        for ns in namespaces:
            out = subprocess.run([self.bin, "enqueue", "--redis", self.url, "--namespace", ns,
                                  "--type", "noop", "--count", str(n)],
                                 capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise SystemExit(f"bench-cluster: enqueue: {out.stderr}")
        c0 = {ns: self.cpu(self.owner_of(ns)) for ns in namespaces}
        for ns in namespaces:
            self.spawn(f"node-{ns}", [self.bin, "worker", "--redis", self.url, "--namespace", ns,
                                      "--name", f"bench-{ns}", "--cap", "64", "--listen",
                                      "127.0.0.1:0", "--log-level", "warn"])

        def done(ns):
            return self.r(self.owner_of(ns)).zcard(f"{{{ns}}}:done") >= n
        wait_for(lambda: all(done(ns) for ns in namespaces), 600, "every task done")
        rates, cpus, windows = {}, {}, {}
        for ns in namespaces:
            r = self.r(self.owner_of(ns))
            first = r.eval("local m for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do "
                           "local s = tonumber(redis.call('hget', KEYS[2] .. id, 'started')) "
                           "if s and (not m or s < m) then m = s end end return m", 2,
                           f"{{{ns}}}:done", f"{{{ns}}}:task:")
            last = float(r.zrange(f"{{{ns}}}:done", -1, -1, withscores=True)[0][1])
            rates[ns] = (n - 1) * 1000 / (last - first)
            windows[ns] = (float(first), last)
            cpus[ns] = (self.cpu(self.owner_of(ns)) - c0[ns]) * 1e6 / n
            states = r.eval("local c = 0 for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) "
                            "do if redis.call('hget', KEYS[2] .. id, 'state') == 'Success' then "
                            "c = c + 1 end end return c", 2, f"{{{ns}}}:done", f"{{{ns}}}:task:")
            if states != n:
                raise SystemExit(f"bench-cluster: {ns}: {states} of {n} tasks Success")
        for ns in namespaces:
            self.stop(f"node-{ns}")
            r = self.r(self.owner_of(ns))
            for key in r.scan_iter(f"{{{ns}}}:*", count=1000):
                r.delete(key)
        # The aggregate is every task over the union of the windows: a sum of per-namespace
        # rates would count two windows that barely overlap (the nodes start one after the
        # other) as if they ran side by side.
        rates["all"] = len(namespaces) * n * 1000 / (max(w[1] for w in windows.values()) -
                                                     min(w[0] for w in windows.values()))
        return rates, cpus


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    tmp = tempfile.mkdtemp(prefix="shoal-bench-cluster-")

    class Args:
        tasks = 0
        seconds = 0
    b = Bench(build, tmp, Args())
    try:
        b.start_primaries()
        owners = {}
        for i in range(100):  # two namespaces on two different primaries
            ns = f"fleet{i}"
            owners.setdefault(b.owner_of(ns), ns)
            if len(owners) == 2:
                break
        a, c = list(owners.values())
        print(f"bench-cluster: 3 primaries; namespaces {a} (primary {b.owner_of(a)}) and {c} "
              f"(primary {b.owner_of(c)}); {n} noop tasks each, one node at cap 64 each",
              flush=True)
        one, two, summed, cpu1, cpu2 = [], [], [], [], []
        for rnd in range(3):
            order = ("one", "two") if rnd % 2 == 0 else ("two", "one")
            for what in order:
                if what == "one":
                    rates, cpus = b.round([a], n)
                    one.append(rates[a])
                    cpu1.append(cpus[a])
                else:
                    rates, cpus = b.round([a, c], n)
                    two.append(rates["all"])
                    summed.append(rates[a] + rates[c])
                    cpu2.append((cpus[a] + cpus[c]) / 2)
        m1, m2 = statistics.median(one), statistics.median(two)
        print(f"one namespace alone:   {m1:,.0f} tasks/s (its primary's CPU "
              f"{statistics.median(cpu1):.1f} us/task)")
        print(f"two namespaces at once: {m2:,.0f} tasks/s together (each primary's CPU "
              f"{statistics.median(cpu2):.1f} us/task); aggregate / one = {m2 / m1:.2f} (over the "
              f"union of both windows; the two rates summed, each over its own window: "
              f"{statistics.median(summed):,.0f}, {statistics.median(summed) / m1:.2f})")
        print("bench-cluster: every task of both namespaces ended Success")
    finally:
        b.cleanup()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
