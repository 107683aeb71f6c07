#!/usr/bin/python3
"""The container image's privilege separation, for real (no container engine needed).

Usage: tests/deploy/privsep.py BUILD/shoal        (needs root; skips otherwise)

deploy/Dockerfile runs the node as a non-root user and gives it CAP_SETUID/CAP_SETGID through
file capabilities on the binary (setcap cap_setuid,cap_setgid=ep), mode 0750 root:<node's
group>, so that --exec-user can run tasks as a second account that cannot execute the binary.
This script builds exactly that on the host and checks what the image relies on:

  - a copy of BUILD/shoal, chown root:G, chmod 0750, setcap cap_setuid,cap_setgid=ep;
  - the node runs as an unprivileged uid U (setpriv --reuid U --regid G --clear-groups, no
    capabilities of its own), and the kernel grants it CAP_SETUID/CAP_SETGID from the file;
  - with --exec-user nobody tasks (enqueued with the same binary's CLI) run as nobody:
      `id -u` prints nobody's uid;
      `cat /proc/<node pid>/environ` is refused and shows nothing of the node's environment
        (a process that gained file capabilities is also non-dumpable, which alone refuses
        this to its own uid; the next two are what only the separate account stops);
      `cat` of the node's key file (0600, the node's) is refused;
      `kill -0 <node pid>` is refused;
      running the shoal binary is refused (0750, nobody is not in group G);
      /proc/self/status shows CapInh/CapPrm/CapEff/CapAmb all zero and NoNewPrivs: 1;
  - the same binary WITHOUT the file capabilities, started the same way, refuses to start
    (exit 2, "cannot switch to uid ...").

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
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, say, skip, wait_for  # noqa: E402

CAP_SETGID, CAP_SETUID = 6, 7


def free_id(taken, start=64100, end=64999):
    """The first number in [start, end) not in taken (uids from passwd, gids from group)."""
    return next(i for i in range(start, end) if i not in taken)


def status_fields(text):
    """{'CapEff': '0000...', 'NoNewPrivs': '1', ...} from /proc/PID/status lines."""
    return dict(re.findall(r"^(\w+):\s*(\S+)", text, re.M))


def run_task(shoal, *argv, timeout=20):
    """Enqueues an exec task with the CLI, waits for it, returns (state, log text)."""
    r = shoal.cli("enqueue", "--", *argv)
    if r.returncode != 0:
        return "enqueue failed", r.stderr.strip()
    tid = r.stdout.strip()
    shoal.cli("wait", tid, "--timeout", f"{timeout}s", timeout=timeout + 10)
    out = shoal.cli("task", tid, "--log").stdout
    m = re.search(r"^State\s+(\S+)", out, re.M)
    log = out.split("--- log ---", 1)[1] if "--- log ---" in out else ""
    return (m.group(1) if m else "unknown"), log.strip()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        skip("privilege separation with file capabilities",
             "needs root (chown, setcap, setpriv to another uid); CI runs as root")
        return
    missing = [t for t in ("setcap", "getcap", "setpriv") if not shutil.which(t)]
    if missing:
        skip("privilege separation with file capabilities",
             f"{' '.join(missing)} not installed (scripts/deps.sh installs libcap2-bin, "
             "util-linux)")
        return
    try:
        task = pwd.getpwnam("nobody")
    except KeyError:
        skip("privilege separation with file capabilities", "no account 'nobody' on this host")
        return
    uid = free_id({p.pw_uid for p in pwd.getpwall()})
    gid = free_id({g.gr_gid for g in grp.getgrall()} | set(os.getgrouplist("nobody", task.pw_gid)))

    tmp = lib.tmpdir("shoal-privsep-")
    os.chmod(tmp, 0o755)   # the node (uid U) and the task reach the binary and the work dir
    bindir = os.path.join(tmp, "bin")
    os.mkdir(bindir, 0o755)
    binary = os.path.join(bindir, "shoal")
    nocap = os.path.join(bindir, "shoal-nocap")
    for b in (binary, nocap):
        shutil.copyfile(src, b)
        os.chown(b, 0, gid)
        os.chmod(b, 0o750)
    r = subprocess.run(["setcap", "cap_setuid,cap_setgid=ep", binary], capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 0:
        skip("privilege separation with file capabilities",
             f"setcap failed here (file system without security xattrs?): {r.stderr.strip()}")
        return
    caps = subprocess.run(["getcap", binary], capture_output=True, text=True).stdout.strip()
    st = os.stat(binary)
    check("the image's binary: root:G, mode 0750, file capabilities cap_setuid,cap_setgid=ep",
          st.st_uid == 0 and st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o750 and
          re.search(r"cap_setgid,cap_setuid[=+]ep", caps) is not None,
          f"uid {st.st_uid} gid {st.st_gid} mode {oct(stat.S_IMODE(st.st_mode))}; {caps}")
    marker = "privsep-" + secrets.token_hex(8)
    work = os.path.join(tmp, "work")
    os.mkdir(work, 0o711)   # like /var/lib/shoal in the image: the task may be in it, not list it
    os.chown(work, uid, gid)
    keyfile = os.path.join(work, "api-keys")
    with open(keyfile, "w") as f:
        f.write(marker + "\n")
    os.chown(keyfile, uid, gid)
    os.chmod(keyfile, 0o600)

    redis = lib.Redis(lib.tmpdir("shoal-privsep-redis-"))
    shoal = lib.Shoal(binary, redis.url, tmp)   # the CLI is the same binary (run as root)
    port = lib.free_port()
    env = shoal.env()
    env.update({"PRIVSEP_MARKER": marker, "HOME": work})
    as_node = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    say(f"node: uid {uid} gid {gid} (no account), tasks: nobody ({task.pw_uid}:{task.pw_gid})")
    node = lib.spawn(as_node + [binary, "worker", "--name", "privsep", "--listen",
                                f"127.0.0.1:{port}", "--allow-exec", "/usr/bin/",
                                "--exec-user", f"{task.pw_uid}:{task.pw_gid}"],
                     os.path.join(tmp, "node.log"), env, cwd=work)
    up = wait_for("the node to answer ping", lambda: node.poll() is not None or
                  lib.ping_status(port) == 200, 15)
    if not check("a non-root node with the file capabilities starts with --exec-user",
                 up and node.poll() is None,
                 "" if up and node.poll() is None else open(os.path.join(tmp, "node.log")).read()[-600:]):
        return
    with open(f"/proc/{node.pid}/status") as f:
        ns = status_fields(f.read())
    eff = int(ns.get("CapEff", "0"), 16)
    check("the node runs as uid U with exactly CAP_SETUID and CAP_SETGID (from the file)",
          ns.get("Uid", "").split("\t")[0] == str(uid) and
          eff == (1 << CAP_SETUID) | (1 << CAP_SETGID),
          f"Uid {ns.get('Uid')}, CapEff {ns.get('CapEff')}")
    with open(f"/proc/{node.pid}/environ", "rb") as f:
        has_marker = marker.encode() in f.read()

    state, log = run_task(shoal, "/usr/bin/id", "-u")
    check("a task runs as the --exec-user account (id -u)",
          state == "Success" and log == str(task.pw_uid), f"{state}: {log!r}")

    state, log = run_task(shoal, "/usr/bin/cat", f"/proc/{node.pid}/environ")
    check("a task cannot read /proc/<node>/environ (root can, and it holds a marker)",
          has_marker and state == "Failed" and "Permission denied" in log and marker not in log,
          f"{state}: {log[:200]!r}")

    # The key file of the node (what --api-key-file / --redis-password-file name): its own,
    # 0600. And the node itself: a task must not signal it.
    state, log = run_task(shoal, "/usr/bin/cat", keyfile)
    check("a task cannot read the node's key file (0600, the node's)",
          state == "Failed" and "Permission denied" in log and marker not in log,
          f"{state}: {log[:200]!r}")
    state, log = run_task(shoal, "/usr/bin/kill", "-0", str(node.pid))
    check("a task cannot signal the node (kill -0)",
          state == "Failed" and "not permitted" in log and node.poll() is None,
          f"{state}: {log[:200]!r}")

    state, log = run_task(shoal, "/usr/bin/env", binary, "version")
    check("a task cannot run the node's binary (0750, not in its group)",
          state == "Failed" and "Permission denied" in log and "0.1" not in log,
          f"{state}: {log[:200]!r}")

    state, log = run_task(shoal, "/usr/bin/grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status")
    ts = status_fields(log)
    zero = ("CapInh", "CapPrm", "CapEff", "CapAmb")
    check("a task has no capabilities (CapInh/CapPrm/CapEff/CapAmb zero) and NoNewPrivs: 1",
          state == "Success" and all(k in ts and int(ts[k], 16) == 0 for k in zero) and
          ts.get("NoNewPrivs") == "1", f"{state}: " + " ".join(f"{k}={v}" for k, v in ts.items()))

    lib.stop(node)
    r = subprocess.run(as_node + [nocap, "worker", "--name", "privsep-nocap", "--listen",
                                  f"127.0.0.1:{lib.free_port()}", "--exec-user",
                                  f"{task.pw_uid}:{task.pw_gid}"],
                       capture_output=True, text=True, timeout=30, env=env, cwd=work)
    check("the same binary without file capabilities refuses to start (exit 2, cannot switch)",
          r.returncode == 2 and f"cannot switch to uid {task.pw_uid}" in r.stderr,
          f"exit {r.returncode}: {r.stderr.strip()[-300:]}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("privilege separation checks ran to the end", False, repr(e))
    lib.finish()
