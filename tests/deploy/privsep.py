#!/usr/bin/python3
"""The deploy files' privilege separation, for real (no container engine or systemd needed).

Usage: tests/deploy/privsep.py BUILD/shoal        (needs root; skips otherwise)

Both deploy files run the node as a non-root user holding only CAP_SETUID and CAP_SETGID (to
switch) and CAP_KILL (to stop tasks of another account), so that --exec-user runs tasks as a
second account (shoal-task):
  - deploy/Dockerfile through file capabilities on the binary
    (setcap cap_kill,cap_setuid,cap_setgid=ep), mode 0750 root:<node's group>, so the task
    account cannot even execute it;
  - deploy/systemd/shoal.service through User=, AmbientCapabilities=, CapabilityBoundingSet=
    (all three) and NoNewPrivileges=yes; setpriv sets up exactly that (--ambient-caps,
    --bounding-set, --no-new-privs) for a plain 0755 copy, as the .deb ships it. The seccomp
    filter is not reproduced (check_files.py checks its lines).
This script builds both on the host and checks what they rely on. For the image:

  - a copy of BUILD/shoal, chown root:G, chmod 0750, setcap cap_kill,cap_setuid,cap_setgid=ep;
  - the node runs as an unprivileged uid U (setpriv --reuid U --regid G --clear-groups, no
    capabilities of its own), and the kernel grants it the three from the file;
  - with --exec-user nobody tasks (enqueued with the same binary's CLI) run as nobody:
      `id -u` prints nobody's uid;
      `cat /proc/<node pid>/environ` is refused and shows nothing of the node's environment
        (a process that gained file capabilities is also non-dumpable, which alone refuses
        this to its own uid; the next two are what only the separate account stops);
      `cat` of the node's key file (0600, the node's) is refused;
      `kill -0 <node pid>` is refused;
      running the shoal binary is refused (0750, nobody is not in group G);
      the node stops them at their timeout, on cancel, and by dying (parent-death signal);
      /proc/self/status shows CapInh/CapPrm/CapEff/CapAmb all zero and NoNewPrivs: 1;
  - the same binary WITHOUT the file capabilities, started the same way, refuses to start
    (exit 2, "cannot switch to uid ..."), and with CAP_SETUID/CAP_SETGID but not CAP_KILL too
    ("could not stop its tasks").
For the unit: the node has exactly the three capabilities under no_new_privs, and the same task
checks pass (the binary is 0755 there, as in the .deb: without capabilities of its own it gives
a task nothing). And with SHOAL_EXEC_USER emptied but the capabilities left in the unit, a task
(then the node's account) still gets none of them: ambient capabilities survive execve, so the
exec-child shim clears them.

U and G are numbers no account or group uses on this host (setpriv needs no account), so
nothing is created and nothing is left behind. The task account must be resolvable
(--exec-user looks it up): Debian's `nobody` (65534:nogroup). Everything started here is stopped
by its own PID (tests/deploy/lib.py); the temporary directory is removed at exit.
"""
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, say, skip, wait_for  # noqa: E402

CAP_KILL, CAP_SETGID, CAP_SETUID = 5, 6, 7
NODE_CAPS = (1 << CAP_KILL) | (1 << CAP_SETGID) | (1 << CAP_SETUID)


def free_id(taken, start=64100, end=64999):
    """The first number in [start, end) not in taken (uids from passwd, gids from group)."""
    return next(i for i in range(start, end) if i not in taken)


def status_fields(text):
    """{'CapEff': '0000...', 'NoNewPrivs': '1', ...} from /proc/PID/status lines."""
    return dict(re.findall(r"^(\w+):\s*(\S+)", text, re.M))


def pid_gone(pid):
    """True once pid has exited (gone, or a zombie: PID 1 may not reap it at once)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def run_task(shoal, *argv, timeout=20, opts=()):
    """Enqueues an exec task with the CLI (enqueue flags opts), waits for it, returns (state,
    log text)."""
    r = shoal.cli("enqueue", *opts, "--", *argv)
    if r.returncode != 0:
        return "enqueue failed", r.stderr.strip()
    tid = r.stdout.strip()
    shoal.cli("wait", tid, "--timeout", f"{timeout}s", timeout=timeout + 10)
    out = shoal.cli("task", tid, "--log").stdout
    m = re.search(r"^State\s+(\S+)", out, re.M)
    log = out.split("--- log ---", 1)[1] if "--- log ---" in out else ""
    return (m.group(1) if m else "unknown"), log.strip()


def start_node(label, argv, tmp, work, env, port):
    """Starts `argv` (setpriv ... shoal worker ...) as the node; returns it once ping answers
    200, or None after a FAIL line."""
    log = os.path.join(tmp, f"node-{label}.log")
    node = lib.spawn(argv + ["--listen", f"127.0.0.1:{port}"], log, env, cwd=work)
    up = wait_for("the node to answer ping", lambda: node.poll() is not None or
                  lib.ping_status(port) == 200, 15)
    ok = bool(up) and node.poll() is None
    check(f"{label}: a non-root node with CAP_SETUID/CAP_SETGID/CAP_KILL starts", ok,
          "" if ok else open(log).read()[-600:])
    return node if ok else None


def task_checks(label, shoal, node, uid, task, marker, keyfile, binary, binary_runs):
    """The node (pid) runs as uid with exactly CAP_SETUID and CAP_SETGID; its tasks run as
    task with nothing of the node's in reach."""
    with open(f"/proc/{node.pid}/status") as f:
        ns = status_fields(f.read())
    check(f"{label}: the node runs as uid U with exactly CAP_SETUID, CAP_SETGID and CAP_KILL",
          ns.get("Uid", "").split("\t")[0] == str(uid) and
          int(ns.get("CapEff", "0"), 16) == NODE_CAPS,
          f"Uid {ns.get('Uid')}, CapEff {ns.get('CapEff')}, CapAmb {ns.get('CapAmb')}, "
          f"NoNewPrivs {ns.get('NoNewPrivs')}")
    with open(f"/proc/{node.pid}/environ", "rb") as f:
        has_marker = marker.encode() in f.read()

    state, log = run_task(shoal, "/usr/bin/id", "-u")
    check(f"{label}: a task runs as the --exec-user account (id -u)",
          state == "Success" and log == str(task.pw_uid), f"{state}: {log!r}")

    state, log = run_task(shoal, "/usr/bin/cat", f"/proc/{node.pid}/environ")
    check(f"{label}: a task cannot read /proc/<node>/environ (root can: it holds a marker)",
          has_marker and state == "Failed" and "Permission denied" in log and marker not in log,
          f"{state}: {log[:200]!r}")

    # The key file of the node (what --api-key-file / --redis-password-file name): its own,
    # 0600. And the node itself: a task must not signal it.
    state, log = run_task(shoal, "/usr/bin/cat", keyfile)
    check(f"{label}: a task cannot read the node's key file (0600, the node's)",
          state == "Failed" and "Permission denied" in log and marker not in log,
          f"{state}: {log[:200]!r}")
    state, log = run_task(shoal, "/usr/bin/kill", "-0", str(node.pid))
    check(f"{label}: a task cannot signal the node (kill -0)",
          state == "Failed" and "not permitted" in log and node.poll() is None,
          f"{state}: {log[:200]!r}")

    state, log = run_task(shoal, "/usr/bin/env", binary, "version")
    if binary_runs:
        check(f"{label}: the node's binary (0755) runs as a task, with no capabilities to give",
              state == "Success", f"{state}: {log[:200]!r}")
    else:
        check(f"{label}: a task cannot run the node's binary (0750, not in its group)",
              state == "Failed" and "Permission denied" in log and "0.1" not in log,
              f"{state}: {log[:200]!r}")

    # The node stops its tasks, which run as another account: timeout, cancel, its own death.
    t0 = time.monotonic()
    state, log = run_task(shoal, "/usr/bin/sleep", "30", opts=("--timeout", "1s"))
    took = time.monotonic() - t0
    check(f"{label}: the node stops a task at its timeout (sleep 30, --timeout 1s)",
          state == "TimedOut" and took < 10, f"{state} after {took:.1f}s")
    r = shoal.cli("enqueue", "--", "/usr/bin/sleep", "30")
    tid = r.stdout.strip()
    wait_for("the task to run", lambda: "Executing" in shoal.cli("task", tid).stdout, 10)
    t0 = time.monotonic()
    shoal.cli("cancel", tid)
    shoal.cli("wait", tid, "--timeout", "10s", timeout=20)
    m = re.search(r"^State\s+(\S+)", shoal.cli("task", tid).stdout, re.M)
    state = m.group(1) if m else "unknown"
    took = time.monotonic() - t0
    check(f"{label}: the node stops a canceled task", state == "Canceled" and took < 10,
          f"{state} after {took:.1f}s")

    state, log = run_task(shoal, "/usr/bin/grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status")
    ts = status_fields(log)
    zero = ("CapInh", "CapPrm", "CapEff", "CapAmb")
    check(f"{label}: a task has no capabilities (CapInh/CapPrm/CapEff/CapAmb zero) and "
          "NoNewPrivs: 1",
          state == "Success" and all(k in ts and int(ts[k], 16) == 0 for k in zero) and
          ts.get("NoNewPrivs") == "1", f"{state}: " + " ".join(f"{k}={v}" for k, v in ts.items()))

    # Last, as it ends the node: a task dies with its node (the parent-death signal, which the
    # kernel checks against the dying node's right to signal the task's account).
    pidfile = os.path.join(os.path.dirname(keyfile), "..", "pids", f"{label}.pid")
    shoal.cli("enqueue", "--", "/usr/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    pid = wait_for("the task to write its pid", lambda: os.path.exists(pidfile) and
                   open(pidfile).read().strip(), 10)
    lib.stop(node, signal.SIGKILL)
    gone = pid and wait_for("the task to die with its node", lambda: pid_gone(int(pid)), 5)
    check(f"{label}: a task dies with its node (node SIGKILLed)", bool(gone),
          f"task pid {pid}: {'gone' if gone else 'still running'}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        skip("privilege separation (file capabilities, ambient capabilities)",
             "needs root (chown, setcap, setpriv to another uid); CI runs as root")
        return
    missing = [t for t in ("setcap", "getcap", "setpriv") if not shutil.which(t)]
    if missing:
        skip("privilege separation (file capabilities, ambient capabilities)",
             f"{' '.join(missing)} not installed (scripts/deps.sh installs libcap2-bin, "
             "util-linux)")
        return
    try:
        task = pwd.getpwnam("nobody")
    except KeyError:
        skip("privilege separation", "no account 'nobody' on this host")
        return
    uid = free_id({p.pw_uid for p in pwd.getpwall()})
    gid = free_id({g.gr_gid for g in grp.getgrall()} | set(os.getgrouplist("nobody", task.pw_gid)))

    tmp = lib.tmpdir("shoal-privsep-")
    os.chmod(tmp, 0o755)   # the node (uid U) and the task reach the binary and the work dir
    bindir = os.path.join(tmp, "bin")
    os.mkdir(bindir, 0o755)
    binary = os.path.join(bindir, "shoal")          # the image's
    nocap = os.path.join(bindir, "shoal-nocap")     # the image's, without setcap
    nokill = os.path.join(bindir, "shoal-nokill")   # setuid+setgid, no CAP_KILL
    plain = os.path.join(bindir, "shoal-deb")       # the .deb's: root:root 0755
    for b, group, mode in ((binary, gid, 0o750), (nocap, gid, 0o750), (nokill, gid, 0o750),
                           (plain, 0, 0o755)):
        shutil.copyfile(src, b)
        os.chown(b, 0, group)
        os.chmod(b, mode)
    r = subprocess.run(["setcap", "cap_kill,cap_setuid,cap_setgid=ep", binary],
                       capture_output=True, text=True, timeout=10)
    if r.returncode == 0:
        r = subprocess.run(["setcap", "cap_setuid,cap_setgid=ep", nokill], capture_output=True,
                           text=True, timeout=10)
    if r.returncode != 0:
        skip("privilege separation",
             f"setcap failed here (file system without security xattrs?): {r.stderr.strip()}")
        return
    caps = subprocess.run(["getcap", binary], capture_output=True, text=True).stdout.strip()
    st = os.stat(binary)
    check("image: the binary is root:G, mode 0750, file capabilities "
          "cap_kill,cap_setuid,cap_setgid=ep",
          st.st_uid == 0 and st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o750 and
          re.search(r"cap_kill,cap_setgid,cap_setuid[=+]ep", caps) is not None,
          f"uid {st.st_uid} gid {st.st_gid} mode {oct(stat.S_IMODE(st.st_mode))}; {caps}")
    marker = "privsep-" + secrets.token_hex(8)
    work = os.path.join(tmp, "work")
    os.mkdir(work, 0o711)   # like /var/lib/shoal: a task may be in it, not list it
    os.chown(work, uid, gid)
    keyfile = os.path.join(work, "api-keys")
    with open(keyfile, "w") as f:
        f.write(marker + "\n")
    os.chown(keyfile, uid, gid)
    os.chmod(keyfile, 0o600)
    os.mkdir(os.path.join(tmp, "pids"))
    os.chmod(os.path.join(tmp, "pids"), 0o777)   # tasks (nobody) write their pid here

    redis = lib.Redis(lib.tmpdir("shoal-privsep-redis-"))
    shoal = lib.Shoal(binary, redis.url, tmp)   # the CLI is the same binary (run as root)
    env = shoal.env()
    env.update({"PRIVSEP_MARKER": marker, "HOME": work})
    worker = ["worker", "--allow-exec", "/usr/bin/", "--exec-user",
              f"{task.pw_uid}:{task.pw_gid}"]
    say(f"node: uid {uid} gid {gid} (no account), tasks: nobody ({task.pw_uid}:{task.pw_gid})")

    # The image: no capabilities of its own; the kernel grants the two from the file.
    as_node = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    node = start_node("image", as_node + [binary] + worker + ["--name", "privsep-image"], tmp,
                      work, env, lib.free_port())
    if node:
        task_checks("image", shoal, node, uid, task, marker, keyfile, binary, False)
        lib.stop(node)
    log = os.path.join(tmp, "node-nocap.log")
    p = lib.spawn(as_node + [nocap] + worker + ["--name", "privsep-nocap", "--listen",
                                                f"127.0.0.1:{lib.free_port()}"], log, env,
                  cwd=work)
    wait_for("the node without capabilities to exit", lambda: p.poll() is not None, 15)
    code = p.poll()
    lib.stop(p)
    err = open(log).read().strip()
    check("image: the same binary without file capabilities refuses to start (exit 2, cannot "
          "switch)", code == 2 and f"cannot switch to uid {task.pw_uid}" in err,
          f"exit {code if code is not None else 'none: still running after 15 s'}: {err[-300:]}")

    # Switching without CAP_KILL: the node could not stop its tasks, so it refuses to start.
    log = os.path.join(tmp, "node-nokill.log")
    p = lib.spawn(as_node + [nokill] + worker + ["--name", "privsep-nokill", "--listen",
                                                 f"127.0.0.1:{lib.free_port()}"], log, env,
                  cwd=work)
    wait_for("the node without CAP_KILL to exit", lambda: p.poll() is not None, 15)
    code = p.poll()
    lib.stop(p)
    err = open(log).read().strip()
    check("image: with CAP_SETUID/CAP_SETGID but not CAP_KILL the node refuses to start (exit 2, "
          "could not stop its tasks)", code == 2 and "could not stop its tasks" in err,
          f"exit {code if code is not None else 'none: still running after 15 s'}: {err[-300:]}")

    # The unit: User=, AmbientCapabilities=/CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_KILL,
    # NoNewPrivileges=yes, on the .deb's plain binary.
    as_unit = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
               "--inh-caps=-all,+setuid,+setgid,+kill",
               "--ambient-caps=-all,+setuid,+setgid,+kill",
               "--bounding-set=-all,+setuid,+setgid,+kill", "--no-new-privs", "--"]
    node = start_node("unit", as_unit + [plain] + worker + ["--name", "privsep-unit"], tmp,
                      work, env, lib.free_port())
    if node:
        task_checks("unit", shoal, node, uid, task, marker, keyfile, plain, True)
        lib.stop(node)
    # The unit with SHOAL_EXEC_USER emptied (privilege separation turned off) but its
    # AmbientCapabilities= left in place: tasks run as the node's account, yet must not inherit
    # CAP_SETUID (which is the power to become root).
    node = start_node("unit without --exec-user",
                      as_unit + [plain] + worker[:3] + ["--name", "privsep-unit-off"], tmp, work,
                      env, lib.free_port())
    if node:
        state, log = run_task(shoal, "/usr/bin/grep", "-E", "^(Cap|NoNewPrivs)",
                              "/proc/self/status")
        ts = status_fields(log)
        check("unit without --exec-user: a task does not inherit the node's ambient "
              "CAP_SETUID/CAP_SETGID/CAP_KILL (CapInh/CapPrm/CapEff/CapAmb zero)",
              state == "Success" and all(k in ts and int(ts[k], 16) == 0 for k in
                                         ("CapInh", "CapPrm", "CapEff", "CapAmb")),
              f"{state}: " + " ".join(f"{k}={v}" for k, v in ts.items()))
        lib.stop(node)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("privilege separation checks ran to the end", False, repr(e))
    lib.finish()
