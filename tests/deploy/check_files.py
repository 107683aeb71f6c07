#!/usr/bin/python3
"""Static checks of deploy/: the files parse and say what we think they say.

Usage: tests/deploy/check_files.py BUILD/shoal

Kubernetes manifests, compose.yaml, haproxy.cfg (haproxy -c), the systemd unit (systemd-analyze
verify and security, when the tool works here), the example environment file, the Dockerfile
and .dockerignore, and the runtime dependencies (the binary's NEEDED libraries = the .deb's
Depends = the runtime image's packages). Every SHOAL_* name used anywhere in deploy/ and in the
"Run it in production" section of docs/operations.md must exist in `shoal settings`.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import DEPLOY, ROOT, check, skip  # noqa: E402

PING = "/api/octopusservernodes/ping"
HEALTHZ = "/healthz"
FLUSH_S = 5  # shutdown waits at most 5 s for Redis to have every result (README, Shutdown)


def seconds(d):
    """A shoal duration (25s, 1m30s, 250ms) or a Docker/systemd one (45s, 2m) in seconds."""
    total = 0.0
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", str(d)):
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}[unit]
    return total


def settings_names(binary):
    out = subprocess.run([binary, "settings"], capture_output=True, text=True, timeout=10).stdout
    return set(re.findall(r"`(SHOAL_[A-Z0-9_]+)`", out)), out


def defaults_from(settings_md):
    """{SHOAL_X: default} from `shoal settings`' Markdown table."""
    out = {}
    for row in settings_md.splitlines():
        cells = [c.strip().strip("`") for c in row.strip("|").split("|")]
        if len(cells) >= 3 and cells[1].startswith("SHOAL_"):
            out[cells[1]] = cells[2]
    return out


def names_in(text):
    return set(re.findall(r"\bSHOAL_[A-Z0-9_]+\b", text))


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check_kubernetes(known, dflt):
    kdir = os.path.join(DEPLOY, "kubernetes")
    docs, used = {}, set()
    for p in sorted(glob.glob(os.path.join(kdir, "*.yaml"))):
        try:
            docs[os.path.basename(p)] = load_all(p)
        except yaml.YAMLError as e:
            check(f"kubernetes/{os.path.basename(p)} parses", False, str(e))
            return
        used |= names_in(open(p).read())
    check("kubernetes/*.yaml parse", True, f"{len(docs)} files")
    kust = docs.pop("kustomization.yaml")[0]
    res = [r.split("#")[0].strip() for r in kust.get("resources", [])]
    check("kustomization.yaml lists every manifest and only existing ones",
          sorted(res) == sorted(docs), f"resources {res}")
    objs = [o for ds in docs.values() for o in ds]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    sts = [o for o in by_kind.get("StatefulSet", []) if o["metadata"]["name"] == "shoal"]
    if not check("a StatefulSet named shoal", len(sts) == 1):
        return
    sts = sts[0]
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    c = next(x for x in pod["containers"] if x["name"] == "shoal")
    cm = next(o for o in by_kind["ConfigMap"] if o["metadata"]["name"] == "shoal")["data"]
    secret = next(o for o in by_kind["Secret"] if o["metadata"]["name"] == "shoal")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))

    def selects(sel):
        return all(labels.get(k) == v for k, v in sel.items())

    check("StatefulSet selector matches its pod labels", selects(spec["selector"]["matchLabels"]))
    svcs = {o["metadata"]["name"]: o for o in by_kind.get("Service", [])}
    gov = svcs.get(spec["serviceName"], {})
    check("StatefulSet's serviceName is a headless Service over its pods",
          gov.get("spec", {}).get("clusterIP") == "None" and selects(gov["spec"]["selector"]),
          spec["serviceName"])
    api = svcs.get("shoal", {})
    check("Service shoal selects the nodes on port http",
          bool(api) and selects(api["spec"]["selector"]) and
          api["spec"]["ports"][0]["targetPort"] == "http")
    pdb = by_kind.get("PodDisruptionBudget", [{}])[0]
    check("PodDisruptionBudget selects the nodes",
          bool(pdb) and selects(pdb["spec"]["selector"]["matchLabels"]),
          f"maxUnavailable {pdb.get('spec', {}).get('maxUnavailable')}")

    env = {e["name"]: e for e in c.get("env", [])}
    nn = env.get("SHOAL_NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
    check("SHOAL_NODE_NAME comes from the pod name (downward API)",
          nn.get("fieldPath") == "metadata.name")
    refs = [e["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    refs += [r["secretRef"]["name"] for r in c.get("envFrom", []) if "secretRef" in r]
    check("no secret in the node's environment (a task or a dump of it would see it)",
          not refs, f"{refs}")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    smounts = [m for m in c.get("volumeMounts", [])
               if vols.get(m["name"], {}).get("secret", {}).get("secretName") == "shoal"]
    pwf = env.get("SHOAL_REDIS_PASSWORD_FILE", {}).get("value", "")
    check("the Secret is a read-only volume; SHOAL_REDIS_PASSWORD_FILE points at its "
          "redis-password; the URL carries no password",
          len(smounts) == 1 and smounts[0].get("readOnly") is True and
          pwf == smounts[0]["mountPath"].rstrip("/") + "/redis-password" and
          "redis-password" in secret_keys and "@" not in cm.get("SHOAL_REDIS_URL", ""),
          f"mounts {smounts}, SHOAL_REDIS_PASSWORD_FILE={pwf}")
    check("settings come from the ConfigMap (envFrom)",
          any(e.get("configMapRef", {}).get("name") == "shoal" for e in c.get("envFrom", [])))

    listen = cm.get("SHOAL_LISTEN", dflt.get("SHOAL_LISTEN"))
    lport = int(listen.rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
    check("containerPort http is SHOAL_LISTEN's port", ports.get("http") == lport,
          f"{ports} vs SHOAL_LISTEN {listen}")

    def probe_port(pr):
        p = pr["httpGet"]["port"]
        return ports.get(p) if isinstance(p, str) else p

    rp, lp = c.get("readinessProbe", {}), c.get("livenessProbe", {})
    check("readiness probe: GET ping on the node's port",
          rp.get("httpGet", {}).get("path") == PING and probe_port(rp) == lport,
          f"period {rp.get('periodSeconds')}s timeout {rp.get('timeoutSeconds')}s "
          f"failureThreshold {rp.get('failureThreshold')}")
    check("liveness probe: GET /healthz on the node's port",
          lp.get("httpGet", {}).get("path") == HEALTHZ and probe_port(lp) == lport)

    grace = seconds(cm.get("SHOAL_GRACE", dflt["SHOAL_GRACE"]))
    kill = seconds(cm.get("SHOAL_KILL_GRACE", dflt["SHOAL_KILL_GRACE"]))
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = seconds(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    need = pre_s + grace + kill + FLUSH_S
    check("terminationGracePeriodSeconds > preStop + SHOAL_GRACE + SHOAL_KILL_GRACE + flush",
          tgps > need, f"{tgps}s > {pre_s:g}+{grace:g}+{kill:g}+{FLUSH_S} = {need:g}s")
    ready_out = rp.get("periodSeconds", 10) * rp.get("failureThreshold", 3)
    check("readiness turns false well inside the grace", ready_out < grace,
          f"period x failureThreshold = {ready_out}s < SHOAL_GRACE {grace:g}s")

    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    check("runs as non-root",
          csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True and uid not in (None, 0),
          f"runAsNonRoot, uid {uid}")
    caps = csc.get("capabilities", {})
    exec_user = cm.get("SHOAL_EXEC_USER", image_env().get("SHOAL_EXEC_USER", ""))
    if exec_user:
        # File capabilities (the image's way to CAP_SETUID/CAP_SETGID) need no_new_privs off.
        check("with SHOAL_EXEC_USER: all capabilities dropped but SETUID, SETGID and KILL, "
              "privilege escalation allowed (file capabilities need it), read-only root",
              caps.get("drop") == ["ALL"] and
              sorted(caps.get("add", [])) == ["KILL", "SETGID", "SETUID"]
              and csc.get("allowPrivilegeEscalation") is True and
              csc.get("readOnlyRootFilesystem") is True, f"SHOAL_EXEC_USER={exec_user} {csc}")
    else:
        check("no privilege escalation, all capabilities dropped, read-only root",
              csc.get("allowPrivilegeEscalation") is False and caps.get("drop") == ["ALL"] and
              not caps.get("add") and csc.get("readOnlyRootFilesystem") is True)
    accts = image_accounts()
    task = accts.get(exec_user, {})
    smode = vols.get("secrets", {}).get("secret", {}).get("defaultMode")
    check("the Secret's files are readable by fsGroup only, and the task account is neither the "
          "node's uid nor in that group (so a task cannot read them)", not exec_user or (
              bool(task) and task["uid"] != uid and task["gid"] != psc.get("fsGroup") and
              not task["groups"] and smode is not None and smode & 0o007 == 0),
          f"SHOAL_EXEC_USER={exec_user} {task}, fsGroup {psc.get('fsGroup')}, "
          f"defaultMode {oct(smode) if smode is not None else None}")
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    pkg = cm.get("SHOAL_PACKAGE_DIR", "")
    check("SHOAL_PACKAGE_DIR is a mounted volume (root file system is read-only)",
          pkg in mounts, f"{pkg} in {sorted(mounts)}")
    res = c.get("resources", {})
    req, lim = res.get("requests", {}), res.get("limits", {})
    check("memory request and limit set, limit >= request",
          "memory" in req and "memory" in lim and mib(lim["memory"]) >= mib(req["memory"]),
          f"requests {req}, limits {lim}")
    redis_dev = open(os.path.join(kdir, "redis-dev.yaml")).read()
    check("the trial Redis is marked not for production",
          "NOT FOR PRODUCTION" in redis_dev and "Sentinel" in redis_dev)
    check("the StatefulSet says why it is not a Deployment",
          "Deployment" in open(os.path.join(kdir, "statefulset.yaml")).read().split("apiVersion")[0])
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", kdir], capture_output=True, text=True,
                           timeout=60)
        built = [d for d in yaml.safe_load_all(r.stdout) if d] if r.returncode == 0 else []
        check("kubectl kustomize deploy/kubernetes builds every object", r.returncode == 0 and
              len(built) == len(objs), f"{len(built)} of {len(objs)} objects "
              f"{r.stderr.strip()[:200]}")
    else:
        skip("kubectl kustomize", "kubectl not installed (optional)")
    return used


def mib(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(q))
    return int(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / 1048576}[m.group(2)]


def final_stage():
    """{instruction: [args]} of deploy/Dockerfile's runtime (last) stage."""
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    fi = {}
    for ins, args in dockerfile_stages(text)[-1][1]:
        fi.setdefault(ins, []).append(args)
    return fi


def image_env():
    """The runtime stage's ENV as a dict."""
    env = {}
    for args in final_stage().get("ENV", []):
        env.update(dict(re.findall(r"(\w+)=(\S*)", args)))
    return env


def image_accounts():
    """{name: {uid, gid, groups}} for each useradd in the runtime stage (groups: -G/--groups)."""
    out = {}
    for args in final_stage().get("RUN", []):
        for cmd in re.split(r"&&|;", args):
            w = cmd.split()
            if w[:1] != ["useradd"]:
                continue
            opt = {}
            i = 1
            while i < len(w) - 1:
                if w[i].startswith("-") and not w[i + 1].startswith("-"):
                    opt[w[i]] = w[i + 1]
                    i += 2
                else:
                    i += 1
            gid = opt.get("--gid", opt.get("-g"))
            gids = {name: int(g) for g, name in re.findall(r"groupadd [^&;]*?--gid (\d+) (\S+)",
                                                           args)}
            out[w[-1]] = {"uid": int(opt.get("--uid", opt.get("-u", "-1"))),
                          "gid": gids.get(gid, int(gid) if gid and gid.isdigit() else None),
                          "groups": opt.get("--groups", opt.get("-G", ""))}
    return out


def check_compose(dflt):
    p = os.path.join(DEPLOY, "compose.yaml")
    text = open(p).read()
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        check("compose.yaml parses", False, str(e))
        return set()
    svcs = d["services"]
    nodes = {n: s for n, s in svcs.items() if s.get("environment", {}).get("SHOAL_NODE_NAME")}
    check("compose.yaml: Redis, three nodes and HAProxy",
          "redis" in svcs and "haproxy" in svcs and len(nodes) == 3, f"services {sorted(svcs)}")
    names = [s["environment"]["SHOAL_NODE_NAME"] for s in nodes.values()]
    check("compose nodes have distinct names", len(set(names)) == 3, f"{names}")
    ok = True
    for n, s in nodes.items():
        e = s["environment"]
        grace = seconds(e.get("SHOAL_GRACE", dflt["SHOAL_GRACE"]))
        kill = seconds(e.get("SHOAL_KILL_GRACE", dflt["SHOAL_KILL_GRACE"]))
        sg = seconds(s.get("stop_grace_period", "10s"))
        ok &= s.get("stop_signal") == "SIGTERM" and sg > grace + kill + FLUSH_S
        ok &= os.path.exists(os.path.join(DEPLOY, s["build"]["context"], s["build"]["dockerfile"]))
        ok &= "redis://redis:" in e.get("SHOAL_REDIS_URL", "")
    caps_ok = all(s.get("cap_drop") == ["ALL"] and sorted(s.get("cap_add", [])) ==
                  ["KILL", "SETGID", "SETUID"] and not any("no-new-privileges" in str(o)
                                                   for o in s.get("security_opt", []))
                  for s in nodes.values())
    check("compose nodes: capabilities dropped but SETUID/SETGID/KILL (the image's file capabilities "
          "for SHOAL_EXEC_USER), no no-new-privileges", caps_ok,
          f"{ {n: (s.get('cap_drop'), s.get('cap_add')) for n, s in nodes.items()} }")
    check("compose nodes: SIGTERM, stop_grace_period > grace + kill grace + flush, built from "
          "deploy/Dockerfile, Redis URL points at the redis service", ok,
          f"stop_grace_period {list(nodes.values())[0].get('stop_grace_period')}")
    hp = svcs["haproxy"]
    vol = [v for v in hp.get("volumes", []) if "haproxy.cfg" in v]
    cfg = os.path.join(DEPLOY, vol[0].split(":")[0]) if vol else ""
    servers = re.findall(r"^\s*server\s+(\S+)\s+(\S+):(\d+)", open(cfg).read(), re.M) if cfg else []
    listen_port = dflt["SHOAL_LISTEN"].rsplit(":", 1)[1]
    check("compose HAProxy mounts deploy/haproxy.cfg, whose servers are the compose nodes",
          sorted(h for _, h, _ in servers) == sorted(s.get("hostname", n) for n, s in nodes.items())
          and all(port == listen_port for _, _, port in servers), f"servers {servers}")
    return names_in(text)


def check_haproxy():
    p = os.path.join(DEPLOY, "haproxy.cfg")
    text = open(p).read()
    if not shutil.which("haproxy"):
        skip("haproxy -c", "haproxy not installed (scripts/deps.sh installs it)")
    else:
        r = subprocess.run(["haproxy", "-c", "-f", p], capture_output=True, text=True, timeout=20)
        # Warnings about compose's host names, which do not resolve here, are expected.
        other = [l for l in (r.stdout + r.stderr).splitlines() if "WARNING" in l or "ALERT" in l
                 if "could not resolve address" not in l]
        check("haproxy -c -f deploy/haproxy.cfg", r.returncode == 0 and not other,
              "; ".join(other) or "valid")
    body = "\n".join(l.split("#")[0] for l in text.splitlines())
    check("HAProxy checks ping and wants 200",
          re.search(r"option httpchk GET /api/octopusservernodes/ping\b", body) is not None and
          re.search(r"http-check expect status 200\b", body) is not None)
    ds = re.search(r"default-server\s+(.*)", body)
    ds = ds.group(1) if ds else ""
    check("HAProxy check timings set (inter, fall, rise)",
          all(re.search(rf"\b{w}\s+\S+", ds) for w in ("inter", "fall", "rise")), ds.strip())
    t = dict(re.findall(r"timeout\s+(client|server)\s+(\S+)", body))
    check("HAProxy client/server timeouts long enough for big uploads (>= 5m)",
          all(seconds(t.get(k, "0")) >= 300 for k in ("client", "server")), f"{t}")
    check("HAProxy puts no limit on request bodies",
          "http-buffer-request" not in body and not re.search(r"req\.body_size|content-length", body, re.I))


def check_systemd(binary, known, dflt):
    unit_in = open(os.path.join(DEPLOY, "systemd", "shoal.service.in")).read()
    envf = os.path.join(DEPLOY, "systemd", "shoal.env")
    env = {}
    for line in open(envf):
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    check("shoal.env: every line is KEY=value with a known setting",
          all(k in known for k in env), f"{sorted(k for k in env if k not in known) or 'ok'}")
    kv = {}
    for line in unit_in.splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            kv.setdefault(k, []).append(v)

    def one(k):
        return kv.get(k, [""])[-1]

    grace = seconds(env.get("SHOAL_GRACE", dflt["SHOAL_GRACE"]))
    kill = seconds(env.get("SHOAL_KILL_GRACE", dflt["SHOAL_KILL_GRACE"]))
    tss = seconds(one("TimeoutStopSec"))
    check("unit: KillSignal=SIGTERM to shoal alone (KillMode=mixed)",
          one("KillSignal") == "SIGTERM" and one("KillMode") == "mixed")
    check("unit: TimeoutStopSec > SHOAL_GRACE + SHOAL_KILL_GRACE + flush",
          tss > grace + kill + FLUSH_S, f"{tss:g}s > {grace:g}+{kill:g}+{FLUSH_S}")
    check("unit: Restart=on-failure, EnvironmentFile, ExecStart worker",
          one("Restart") == "on-failure" and "@SHOAL_ENV_FILE@" in one("EnvironmentFile") and
          one("ExecStart").endswith(" worker"))
    hard = {"User": "shoal", "Group": "shoal", "DynamicUser": "", "NoNewPrivileges": "yes",
            "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "ProtectProc": "invisible", "RestrictSUIDSGID": "yes"}
    check("unit: hardening (static User=shoal, NoNewPrivileges, ProtectSystem=strict, ...)",
          all(one(k) == v for k, v in hard.items()), f"{ {k: one(k) for k in hard} }")
    check_privsep_unit(kv, one, env)

    if not shutil.which("systemd-analyze"):
        skip("systemd-analyze verify", "systemd-analyze not installed")
        return names_in(open(envf).read())
    tmp = lib.tmpdir("shoal-unit-")
    unit = os.path.join(tmp, "shoal.service")
    with open(unit, "w") as f:
        f.write(unit_in.replace("@SHOAL_BIN@", os.path.abspath(binary))
                .replace("@SHOAL_ENV_FILE@", envf).replace("@SHOAL_DOC_DIR@", ROOT))
    r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                       timeout=30)
    msg = (r.stdout + r.stderr).strip()
    if r.returncode != 0 and re.search(r"bus|System has not been booted|Failed to (connect|initialize)",
                                       msg, re.I):
        skip("systemd-analyze verify", f"the tool cannot work on this machine: {msg[:200]}")
    else:
        check("systemd-analyze verify shoal.service (no warnings)", r.returncode == 0 and not msg,
              msg[:300] or "clean")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", unit],
                       capture_output=True, text=True, timeout=30)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", r.stdout + r.stderr)
    if m:
        check("systemd-analyze security: exposure <= 2.5", float(m.group(1)) <= 2.5,
              f"{m.group(1)} {m.group(2)}")
    else:
        skip("systemd-analyze security", (r.stdout + r.stderr).strip()[:200])
    return names_in(open(envf).read())


def sysusers(path):
    """({user: home}, {group: {members}}) from a sysusers.d file: `u NAME ...` creates NAME
    and its group NAME; `g` a group; `m USER GROUP` a membership."""
    users, groups = {}, {}
    for line in open(path):
        if line.lstrip().startswith("#"):
            continue
        f = re.findall(r'"[^"]*"|\S+', line)
        if not f:
            continue
        if f[0] == "u":
            users[f[1]] = f[4] if len(f) > 4 else "-"
            groups.setdefault(f[1], set())
        elif f[0] == "g":
            groups.setdefault(f[1], set())
        elif f[0] == "m":
            groups.setdefault(f[2], set()).add(f[1])
    return users, groups


def check_privsep_unit(kv, one, env):
    """The node runs as shoal with exactly the two capabilities --exec-user needs, tasks as
    shoal-task, which reaches packages but nothing of the node's: see shoal.service's header."""
    users, groups = sysusers(os.path.join(DEPLOY, "systemd", "shoal.sysusers"))
    task = env.get("SHOAL_EXEC_USER", "")
    check("shoal.env: SHOAL_EXEC_USER=shoal-task; sysusers.d/shoal.conf creates it and the unit's "
          "User=, and does not put shoal-task in group shoal (the group of the node's files)",
          task == "shoal-task" and {task, one("User")} <= set(users) and
          one("Group") in groups and task not in groups.get(one("Group"), {task}) and
          users.get(one("User")) == "/var/lib/shoal", f"users {users}, groups {groups}")
    caps = {"AmbientCapabilities", "CapabilityBoundingSet"}
    check("unit: the node's only capabilities are CAP_SETUID, CAP_SETGID and CAP_KILL (ambient = "
          "bounding set; ambient ones survive NoNewPrivileges)",
          all(sorted(one(k).split()) == ["CAP_KILL", "CAP_SETGID", "CAP_SETUID"] and len(kv[k]) == 1
              for k in caps), f"{ {k: kv.get(k) for k in caps} }")
    scf = kv.get("SystemCallFilter", [])
    back = [i for i, v in enumerate(scf) if set(v.split()) >= {"@setuid", "capset"}]
    check("unit: SystemCallFilter allows @setuid and capset again after ~@privileged (the switch "
          "to shoal-task)", "~@privileged" in scf and bool(back) and
          back[-1] > scf.index("~@privileged"), f"{scf}")
    check("unit: state directory 0711 (tasks reach the package path they are given, cannot list "
          "or write), UMask=0022 (uploads 0644)",
          one("StateDirectoryMode") == "0711" and one("UMask") == "0022" and
          one("WorkingDirectory") == "%S/shoal",
          f"StateDirectoryMode={one('StateDirectoryMode')} UMask={one('UMask')}")
    live = [v for v in kv.get("LoadCredential", [])]
    fallback = {v.split(":")[0] for v in kv.get("SetCredential", [])}
    check("unit: no LoadCredential= of a file that may be missing without a SetCredential= "
          "fallback (systemd 252 would fail the start)",
          all(v.split(":")[0] in fallback for v in live), f"LoadCredential {live or 'commented'}")


def dockerfile_stages(text):
    """[(from line, [(instruction, args)])] with line continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages = []
    for line in joined.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        ins, _, args = s.partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            stages.append((args, []))
        elif stages:
            stages[-1][1].append((ins, args.strip()))
    return stages


def apt_packages(run_args):
    m = re.search(r"apt-get install ([^&;]*)", run_args)
    return [w for w in m.group(1).split() if not w.startswith("-")] if m else []


def pc_package(module):
    """The Debian package holding pkg-config module MODULE's .pc file (dpkg -S), or None."""
    r = subprocess.run(["pkg-config", "--variable=pcfiledir", module], capture_output=True,
                       text=True)
    pc = os.path.join(r.stdout.strip(), module + ".pc") if r.returncode == 0 else None
    for path in filter(None, [pc, pc and pc.replace("/usr/lib/", "/lib/")]):
        d = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
        if d.returncode == 0:
            return d.stdout.split(":")[0]
    return None


def check_dockerfile(binary, known):
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    stages = dockerfile_stages(text)
    check("Dockerfile: two stages, both on debian:12-slim",
          len(stages) == 2 and all(f.split()[0] == "debian:12-slim" for f, _ in stages),
          f"{[f for f, _ in stages]}")
    build, final = stages[0][1], stages[-1][1]
    fi = {}
    for ins, args in final:
        fi.setdefault(ins, []).append(args)
    user = (fi.get("USER") or ["root"])[-1].split(":")[0]
    check("Dockerfile: runs as a numeric non-root user", user.isdigit() and user != "0", user)
    check_image_privsep(fi, user)
    check("Dockerfile: STOPSIGNAL SIGTERM", fi.get("STOPSIGNAL") == ["SIGTERM"])
    check("Dockerfile: EXPOSE 8080 (SHOAL_LISTEN's port)",
          fi.get("EXPOSE") == ["8080"] and "SHOAL_LISTEN=0.0.0.0:8080" in " ".join(fi.get("ENV", [])))
    hc = " ".join(fi.get("HEALTHCHECK", []))
    check("Dockerfile: HEALTHCHECK on ping", PING in hc and "CMD" in hc)
    check("Dockerfile: builds with the project's CMake",
          any(i == "RUN" and "cmake -S . -B build" in a for i, a in build))
    fpk = [p for i, a in final if i == "RUN" for p in apt_packages(a)]
    check("Dockerfile: no -dev packages or compilers in the runtime stage",
          fpk and not any(p.endswith("-dev") or p in ("build-essential", "cmake", "gcc") for p in fpk),
          " ".join(fpk))
    copies = [a for i, a in final if i == "COPY" and a.startswith("--from=build")]
    deb = copies[0].split()[-1] if copies else None
    check("Dockerfile: the runtime stage installs the .deb built in the build stage (its Depends "
          "bring the libraries)", deb is not None and deb in fpk and
          any(i == "RUN" and "cpack -G DEB" in a for i, a in build), f"{deb}")
    bpk = [p for i, a in build if i == "RUN" for p in apt_packages(a)]
    mods = re.findall(r"pkg_check_modules\(\w+\s+REQUIRED\s+(?:IMPORTED_TARGET\s+)?([\w.+-]+)",
                      open(os.path.join(ROOT, "CMakeLists.txt")).read())
    devs = {m: pc_package(m) for m in mods}
    need = set(devs.values()) | {"cmake", "pkg-config", "node-llhttp", "file"}
    check("Dockerfile: the build stage installs the -dev package of every pkg_check_modules() "
          "in CMakeLists.txt, node-llhttp, and file for CPack", None not in devs.values() and
          need <= set(bpk), f"{devs}; missing {sorted(need - set(bpk))}")
    # The build context is the repository minus .dockerignore: nothing the build reads may be
    # left out. Top-level directories CMakeLists.txt names, outside its tests/fuzz blocks.
    ign = [l.strip() for l in open(os.path.join(ROOT, ".dockerignore"))
           if l.strip() and not l.startswith("#")]
    check("Dockerfile: copies the build context whole (COPY . .)",
          any(i == "COPY" and a.split() == [".", "."] for i, a in build))
    cml = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    cml = re.sub(r"#[^\n]*", "", cml)  # comments
    cml = re.sub(r"if\(SHOAL_(TESTS|FUZZ)\).*?endif\(\)", "", cml, flags=re.S)
    tops = {e for e in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, e))}
    read = sorted({d for d in re.findall(r"(?:\$\{CMAKE_SOURCE_DIR\}/|[\s(])([\w.-]+)/", cml)
                   if d in tops} | {"CMakeLists.txt", "README.md"})
    excluded = [d for d in read if any(re.fullmatch(g.rstrip("/").replace("*", ".*"), d)
                                       for g in ign)]
    check(".dockerignore keeps everything CMakeLists.txt reads", not excluded,
          f"reads {read}; excluded {excluded}")
    check(".dockerignore keeps build trees and .git out", {"build*/", ".git"} <= set(ign))
    return names_in(text)


def check_image_privsep(fi, user):
    """The runtime stage: a task account outside the node's group, SHOAL_EXEC_USER naming it,
    the binary 0750 root:<node's group> with file capabilities cap_kill,cap_setuid,cap_setgid=ep, no
    other setuid/setgid program, directories the task can traverse (tests/deploy/privsep.py
    runs this set-up for real)."""
    run = " && ".join(fi.get("RUN", []))
    accts = image_accounts()
    task = image_env().get("SHOAL_EXEC_USER", "")
    node = next((n for n, a in accts.items() if str(a["uid"]) == user), None)
    t = accts.get(task)
    check("Dockerfile: ENV SHOAL_EXEC_USER names a system account of its own (not the node's "
          "uid, group or groups)", bool(task) and t is not None and node is not None and
          t["uid"] != accts[node]["uid"] and t["gid"] != accts[node]["gid"] and
          not t["groups"] and "--system" in run, f"SHOAL_EXEC_USER={task} {accts}")
    deb = run.find("/tmp/shoal.deb")
    check("Dockerfile: the accounts exist before the .deb installs (its postinst then creates "
          "none)", 0 <= run.rfind("useradd", 0, deb) and run.find("useradd", deb) < 0,
          f"{sorted(accts)}")
    grp = accts.get(node, {}).get("gid")
    names = {a["gid"]: n for n, a in accts.items()}
    check("Dockerfile: /usr/bin/shoal is root:<node's group>, 0750, with file capabilities "
          "cap_kill,cap_setuid,cap_setgid=ep (only the node's group may run it and get them)",
          f"chown root:{names.get(grp, '?')} /usr/bin/shoal" in run and
          "chmod 0750 /usr/bin/shoal" in run and
          "setcap cap_kill,cap_setuid,cap_setgid=ep /usr/bin/shoal" in run and
          run.find("setcap") > run.find("chmod 0750 /usr/bin/shoal") and "libcap2-bin" in run,
          f"node group {names.get(grp)}")
    check("Dockerfile: no other program keeps a setuid/setgid bit (the node runs without "
          "no_new_privs)", re.search(r"find / -xdev -type f -perm /6000 -exec chmod ug-s", run)
          is not None)
    dirs = re.search(r"install -d -o \S+ -g \S+ -m (\d+) (/var/lib/shoal) ", run)
    check("Dockerfile: /var/lib/shoal and its packages/ are traversable by the task (0711)",
          dirs is not None and dirs.group(1) == "0711", dirs.group(0) if dirs else "none")


def check_readme(known, settings_md):
    text = open(os.path.join(ROOT, "docs", "operations.md")).read()
    table = [l for l in settings_md.splitlines() if l.startswith("|")]
    doc = re.search(r"^### Settings\n(.*?)(?=^#)", text, re.M | re.S)
    doc_rows = [l for l in (doc.group(1) if doc else "").splitlines() if l.startswith("|")]
    check("docs/operations.md's settings table is `shoal settings` verbatim", doc_rows == table,
          f"{len(doc_rows)} rows in the document, {len(table)} from the binary; paste "
          "`shoal settings` into docs/operations.md")
    m = re.search(r"^## Run it in production\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not check("docs/operations.md has a \"Run it in production\" section", m is not None):
        return set()
    return names_in(m.group(1))


def check_free_ports():
    """The checks' servers listen on ports below the ephemeral range, which the outgoing
    connections of the suites running beside them never take (scripts/ports.py)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    picks = [lib.free_port() for _ in range(50)]
    out = [p for p in picks if not 20000 <= p < low]
    check("free ports for the checks' servers come from below the ephemeral range",
          low <= 21000 or not out, f"{len(out)} of 50 at or above {low}: {out[:5]}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    known, md = settings_names(binary)
    dflt = defaults_from(md)
    check("shoal settings prints the settings table", len(known) > 10, f"{len(known)} names")
    used = set()
    used |= check_kubernetes(known, dflt) or set()
    used |= check_compose(dflt)
    check_haproxy()
    check_free_ports()
    used |= check_systemd(binary, known, dflt)
    used |= check_dockerfile(binary, known)
    used |= check_readme(known, md)
    unknown = sorted(used - known)
    check("every SHOAL_* name used in deploy/ and the production section of docs/operations.md is a setting "
          "(`shoal settings`)", not unknown,
          f"unknown: {unknown}" if unknown else f"{len(used)} names used")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("deploy file checks ran to the end", False, repr(e))
    lib.finish()
