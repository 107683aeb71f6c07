#!/usr/bin/python3
"""Install rules and the .deb.

Usage: tests/deploy/package.py BUILD/shoal      (BUILD is the CMake build directory)

  - `cmake --install BUILD --prefix TMP` puts the binary, the systemd unit (its paths filled in
    for TMP) and the example environment file (0600) where the README says, and a second
    install keeps an edited environment file;
  - cpack (what `make package` runs) builds shoal_<version>_<arch>.deb whose Depends names the
    package of every library the binary links (objdump -p + dpkg -S), marks /etc/shoal/shoal.env as a conffile, and whose files are
    /usr/bin/shoal (runs), /usr/lib/systemd/system/shoal.service (naming /usr/bin/shoal and
    /etc/shoal/shoal.env), /usr/lib/sysusers.d/shoal.conf and /etc/shoal/shoal.env;
  - the .deb's postinst, run for real against a copy of /etc (DPKG_ROOT), creates the accounts
    the unit and SHOAL_EXEC_USER name, with systemd-sysusers and with its useradd fallback (a
    container image has no systemd), shoal-task outside group shoal, and a second run changes
    nothing.
"""
import os
import re
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, say, skip  # noqa: E402

def runtime_packages(binary):
    """{library: Debian package} for the binary's NEEDED libraries (objdump -p, ldd, dpkg -S)."""
    od = run(["objdump", "-p", binary]).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", run(["ldd", binary]).stdout, re.M))
    pkgs = {}
    for lib_ in re.findall(r"NEEDED\s+(\S+)", od):
        real = os.path.realpath(paths.get(lib_, lib_))
        pkgs[lib_] = None
        for path in (real, real.replace("/usr/lib/", "/lib/")):  # merged /usr
            r = run(["dpkg", "-S", path])
            if r.returncode == 0:
                pkgs[lib_] = r.stdout.split(":")[0]
                break
    return pkgs


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120),
                          **kw)


def unit_values(text):
    return {k: v for k, _, v in (l.partition("=") for l in text.splitlines()
                                 if "=" in l and not l.startswith("#"))}


def check_install(build, tmp):
    prefix = os.path.join(tmp, "prefix")
    r = run(["cmake", "--install", build, "--prefix", prefix])
    if not check("cmake --install into a temp prefix", r.returncode == 0, r.stderr.strip()[-300:]):
        return
    binp = os.path.join(prefix, "bin", "shoal")
    sysusers = os.path.join(prefix, "lib", "sysusers.d", "shoal.conf")
    check("installed: lib/sysusers.d/shoal.conf", os.path.exists(sysusers))
    unit = os.path.join(prefix, "lib", "systemd", "system", "shoal.service")
    env = os.path.join(prefix, "etc", "shoal", "shoal.env")
    doc = os.path.join(prefix, "share", "doc", "shoal", "README.md")
    v = run([binp, "version"]) if os.access(binp, os.X_OK) else None
    check("installed: bin/shoal runs", v is not None and v.returncode == 0,
          v.stdout.strip() if v else "missing")
    u = unit_values(open(unit).read()) if os.path.exists(unit) else {}
    check("installed: lib/systemd/system/shoal.service names the installed files",
          u.get("ExecStart") == f"{binp} worker" and u.get("EnvironmentFile") == env,
          f"ExecStart={u.get('ExecStart')} EnvironmentFile={u.get('EnvironmentFile')}")
    mode = stat.S_IMODE(os.stat(env).st_mode) if os.path.exists(env) else None
    check("installed: etc/shoal/shoal.env, mode 0600", mode == 0o600,
          f"mode {oct(mode) if mode is not None else 'missing'}")
    check("installed: share/doc/shoal/README.md", os.path.exists(doc))
    with open(env, "a") as f:
        f.write("SHOAL_TASK_CAP=9  # edited by the operator\n")
    r = run(["cmake", "--install", build, "--prefix", prefix])
    check("a second install keeps the operator's shoal.env",
          r.returncode == 0 and "edited by the operator" in open(env).read())


def check_deb(build, binary, tmp):
    if not shutil.which("cpack") or not shutil.which("dpkg-deb"):
        skip(".deb", "cpack or dpkg-deb missing")
        return
    out = os.path.join(tmp, "pkg")
    say("cpack -G DEB (what `make package` runs)")
    r = run(["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"),
             "-B", out], cwd=build, timeout=300)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")] if os.path.isdir(out) else []
    if not check("cpack builds shoal_<version>_<arch>.deb",
                 r.returncode == 0 and len(debs) == 1 and re.fullmatch(r"shoal_[\d.]+_\w+\.deb",
                                                                       debs[0]),
                 f"{debs or (r.stdout + r.stderr)[-400:]}"):
        return
    deb = os.path.join(out, debs[0])
    info = run(["dpkg-deb", "-I", deb]).stdout
    m = re.search(r"^ Depends: (.*)$", info, re.M)
    deps = [d.strip().split()[0] for d in m.group(1).split(",")] if m else []
    need = runtime_packages(binary)
    check(".deb declares a package for every library the binary links",
          None not in need.values() and set(need.values()) <= set(deps),
          f"Depends: {m.group(1) if m else 'none'}; NEEDED {need}")
    check(".deb is package shoal and marks /etc/shoal/shoal.env as a conffile",
          run(["dpkg-deb", "-f", deb, "Package"]).stdout.strip() == "shoal" and
          conffiles(deb, tmp).split() == ["/etc/shoal/shoal.env"])
    listing = run(["dpkg-deb", "-c", deb]).stdout
    files = {l.split()[-1]: l.split()[0] for l in listing.splitlines() if l.strip()}
    want = {"./usr/bin/shoal": "-rwxr-xr-x", "./usr/lib/systemd/system/shoal.service": "-rw-r--r--",
            "./usr/lib/sysusers.d/shoal.conf": "-rw-r--r--", "./etc/shoal/shoal.env": "-rw-------"}
    check(".deb contains the binary, the unit, the sysusers file and the env file with their modes",
          all(files.get(f) == m for f, m in want.items()),
          f"{ {f: files.get(f) for f in want} }")
    owners = {l.split()[1] for l in listing.splitlines() if l.strip()}
    check(".deb files are owned by root", owners == {"root/root"}, f"{owners}")
    x = os.path.join(tmp, "x")
    os.makedirs(x)
    run(["dpkg-deb", "-x", deb, x])
    v = run([os.path.join(x, "usr", "bin", "shoal"), "version"])
    check(".deb's /usr/bin/shoal runs", v.returncode == 0, v.stdout.strip())
    u = unit_values(open(os.path.join(x, "usr/lib/systemd/system/shoal.service")).read())
    check(".deb's unit runs /usr/bin/shoal with /etc/shoal/shoal.env",
          u.get("ExecStart") == "/usr/bin/shoal worker" and
          u.get("EnvironmentFile") == "/etc/shoal/shoal.env",
          f"ExecStart={u.get('ExecStart')} EnvironmentFile={u.get('EnvironmentFile')}")
    check_postinst(deb, x, tmp)
    if shutil.which("apt-get"):
        r = run(["apt-get", "install", "-s", "--no-install-recommends", deb])
        check("apt-get install -s ./shoal_*.deb resolves its dependencies",
              r.returncode == 0 and re.search(r"^Inst shoal ", r.stdout, re.M) is not None,
              (r.stdout + r.stderr).strip().splitlines()[-1] if r.stdout + r.stderr else "")
    say(f"{debs[0]}: {os.path.getsize(deb) // 1024} KiB; Depends: {m.group(1) if m else ''}")


def accounts(root):
    """({user: (uid, gid, home, shell)}, {group: (gid, [members])}) from root/etc."""
    users, groups = {}, {}
    for line in open(os.path.join(root, "etc", "passwd")):
        f = line.rstrip("\n").split(":")
        users[f[0]] = (int(f[2]), int(f[3]), f[5], f[6])
    for line in open(os.path.join(root, "etc", "group")):
        f = line.rstrip("\n").split(":")
        groups[f[0]] = (int(f[2]), [m for m in f[3].split(",") if m])
    return users, groups


def check_postinst(deb, x, tmp):
    """Runs the .deb's postinst against a copy of this host's account files (DPKG_ROOT), once
    with systemd-sysusers (reading the .deb's sysusers.d/shoal.conf) and once without it (the
    useradd fallback), and checks the accounts the unit and shoal.env name."""
    ctrl = os.path.join(tmp, "ctrl")
    os.makedirs(ctrl, exist_ok=True)
    run(["dpkg-deb", "-e", deb, ctrl])
    post = os.path.join(ctrl, "postinst")
    mode = stat.S_IMODE(os.stat(post).st_mode) if os.path.exists(post) else None
    if not check(".deb has a postinst, mode 0755", mode == 0o755,
                 oct(mode) if mode is not None else "missing"):
        return
    unit = unit_values(open(os.path.join(x, "usr/lib/systemd/system/shoal.service")).read())
    envf = unit_values(open(os.path.join(x, "etc/shoal/shoal.env")).read())
    node, task = unit.get("User"), envf.get("SHOAL_EXEC_USER")
    ways = []
    if shutil.which("systemd-sysusers"):
        ways.append(("systemd-sysusers", None))
    # Without systemd: a PATH holding only what the fallback uses.
    nosd = os.path.join(tmp, "nosd-bin")
    os.makedirs(nosd)
    for t in ("sh", "grep", "useradd"):
        if shutil.which(t):
            os.symlink(shutil.which(t), os.path.join(nosd, t))
    ways.append(("useradd (no systemd)", nosd))
    for name, path in ways:
        root = os.path.join(tmp, "root-" + name.split()[0])
        os.makedirs(os.path.join(root, "etc"))
        for f in ("passwd", "group", "shadow", "gshadow"):
            if os.path.exists(os.path.join("/etc", f)):
                shutil.copy2(os.path.join("/etc", f), os.path.join(root, "etc", f))
        shutil.copytree(os.path.join(x, "usr"), os.path.join(root, "usr"))
        env = dict(os.environ, DPKG_ROOT=root)
        if path:
            env["PATH"] = path
        r1 = run(["/bin/sh", post, "configure"], env=env)
        users, groups = accounts(root)
        before = open(os.path.join(root, "etc", "passwd")).read()
        r2 = run(["/bin/sh", post, "configure"], env=env)
        same = open(os.path.join(root, "etc", "passwd")).read() == before
        n, t = users.get(node), users.get(task)
        ok = (r1.returncode == 0 and r2.returncode == 0 and same and node == "shoal" and
              task == "shoal-task" and n is not None and t is not None and
              n[2] == "/var/lib/shoal" and n[3] == t[3] == "/usr/sbin/nologin" and
              groups.get("shoal", (None,))[0] == n[1] and t[1] != n[1] and
              task not in groups.get("shoal", (0, []))[1] and 0 < n[0] < 1000 and 0 < t[0] < 1000)
        check(f"postinst ({name}) creates User={node} and SHOAL_EXEC_USER={task}: system "
              "accounts, nologin, shoal-task not in group shoal; a second run changes nothing",
              ok, f"{node}={n} {task}={t} group shoal={groups.get('shoal')}" +
              ("" if ok else f" {(r1.stdout + r1.stderr + r2.stderr).strip()[-300:]}"))


def conffiles(deb, tmp):
    d = os.path.join(tmp, "ctrl")
    os.makedirs(d, exist_ok=True)
    run(["dpkg-deb", "-e", deb, d])
    p = os.path.join(d, "conffiles")
    return open(p).read() if os.path.exists(p) else ""


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = os.path.dirname(os.path.abspath(sys.argv[1]))
    if not os.path.exists(os.path.join(build, "cmake_install.cmake")):
        skip("install rules", f"{build} is not a CMake build directory")
        return
    tmp = lib.tmpdir("shoal-pkg-")
    check_install(build, tmp)
    check_deb(build, os.path.abspath(sys.argv[1]), tmp)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("package checks ran to the end", False, repr(e))
    lib.finish()
