#!/usr/bin/python3
"""Enqueue shoal tasks from Python with EVALSHA (Debian: python3-redis python3-msgpack).

Loads lua/enqueue.lua once (SCRIPT LOAD), then calls it by its SHA; on NOSCRIPT (Redis was
restarted) it loads it again. An exec task's arguments are a msgpack map
{"argv": [...], "env": {...}, "cwd": "..."}; other types take what their handler expects.
Usage: examples/enqueue.py [redis-url]   (default redis://127.0.0.1:6379/0)
"""
import pathlib
import sys
import time

import msgpack
import redis

NS = "shoal"
SCRIPT = (pathlib.Path(__file__).resolve().parent.parent / "lua" / "enqueue.lua").read_text()


def enqueue(r, tasks):
    """tasks: dicts with queue, type, args (bytes), priority, at_ms, expiry_ms, timeout_ms,
    attempts, lost_budget. Returns the task ids."""
    keys = [f"{{{NS}}}:seq", f"{{{NS}}}:stats", f"{{{NS}}}:scheduled", f"{{{NS}}}:queues"]
    argv = [f"{{{NS}}}:", int(time.time() * 1000), f"{{{NS}}}:wake", len(tasks)]
    for t in tasks:
        argv += [t.get("queue", "default"), t.get("type", "exec"), t.get("args", b""),
                 t.get("priority", 0), t.get("at_ms", 0), t.get("expiry_ms", 86400000),
                 t.get("timeout_ms", 0), t.get("attempts", 1), t.get("lost_budget", 1)]
    sha = r.script_load(SCRIPT)
    try:
        ids = r.evalsha(sha, len(keys), *keys, *argv)
    except redis.exceptions.NoScriptError:
        ids = r.evalsha(r.script_load(SCRIPT), len(keys), *keys, *argv)
    return [f"ServerTasks-{n}" for n in ids]


if __name__ == "__main__":
    r = redis.Redis.from_url(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0")
    echo = msgpack.packb({"argv": ["/bin/echo", "hello from python"]})
    for task_id in enqueue(r, [{"type": "exec", "args": echo}, {"type": "noop"}]):
        print(task_id)
