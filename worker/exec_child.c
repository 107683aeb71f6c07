/* exec_child.c: the exec-child shim (`shoal exec-child ...`) and the --exec-user account it
 * switches to. The node spawns every exec task through the shim (exec.c); the shim ties the
 * program's life to the node, puts it in its own process group below the node's priority,
 * optionally becomes the task account, and only then execve()s the program with the task's
 * environment.
 *
 * Why the task's environment does not reach the shim's own start: the shim is the node's own
 * binary, and LD_PRELOAD (or any loader variable) in its environment would run code inside it
 * before main(), with the node's rights. So the node starts the shim with an EMPTY environment
 * and hands it the task's final environment in a memfd on fd 3 (not in argv: /proc/PID/cmdline
 * is world-readable); the shim reads it and applies it only at its execve.
 *
 * The credential switch happens here, just before execve, and not in libuv's child (setuid
 * option) for this reason: a node that runs non-root with CAP_SETUID/CAP_SETGID (systemd
 * AmbientCapabilities, or file capabilities) keeps its capabilities across a non-root to
 * non-root setuid; the kernel only clears them on a switch away from uid 0. The shim drops
 * them all (effective, permitted, inheritable, ambient, and the bounding set when it may), sets
 * PR_SET_NO_NEW_PRIVS, and checks that it cannot get uid 0 back. A credential change clears
 * PR_SET_PDEATHSIG, so the shim sets it again and checks its parent is still the node. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/task_env.h"
#include "common/util.h"
#include "worker/exec.h"

/* ---- --exec-user ---- */

/* A uid/gid given as digits, or -1. */
static long number_of(const char *s) {
    if (!*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return *end || errno || v < 0 || v > 0x7fffffff ? -1 : v;
}

int exec_cred_resolve(const char *spec, struct exec_cred *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    char user[128], group[128] = "";
    const char *colon = strchr(spec, ':');
    size_t ul = colon ? (size_t)(colon - spec) : strlen(spec);
    if (ul == 0 || ul >= sizeof user ||
        (colon && (!colon[1] || strlen(colon + 1) >= sizeof group))) {
        snprintf(err, errlen, "--exec-user '%.100s': expected USER or USER:GROUP", spec);
        return -EINVAL;
    }
    memcpy(user, spec, ul);
    user[ul] = '\0';
    if (colon) snprintf(group, sizeof group, "%s", colon + 1);
    struct passwd *pw = getpwnam(user);
    if (!pw && number_of(user) >= 0) pw = getpwuid((uid_t)number_of(user));
    if (!pw) {
        snprintf(err, errlen,
                 "--exec-user: no user '%s' on this system (create it, e.g. "
                 "useradd --system --no-create-home --shell /usr/sbin/nologin %s)",
                 user, user);
        return -ENOENT;
    }
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    snprintf(out->name, sizeof out->name, "%s", pw->pw_name);
    snprintf(out->home, sizeof out->home, "%s", pw->pw_dir ? pw->pw_dir : "/");
    if (group[0]) {
        struct group *gr = getgrnam(group);
        if (!gr && number_of(group) >= 0) gr = getgrgid((gid_t)number_of(group));
        if (!gr) {
            snprintf(err, errlen, "--exec-user: no group '%s' on this system", group);
            return -ENOENT;
        }
        out->gid = gr->gr_gid;
    }
    int n = EXEC_MAX_GROUPS;
    if (getgrouplist(out->name, out->gid, out->groups, &n) < 0) {
        snprintf(err, errlen, "--exec-user: %s is in more than %d groups", out->name,
                 EXEC_MAX_GROUPS);
        return -E2BIG;
    }
    out->ngroups = n;
    return 0;
}

void exec_cred_format(const struct exec_cred *c, char *buf, size_t len) {
    size_t off = (size_t)snprintf(buf, len, "%u:%u:", (unsigned)c->uid, (unsigned)c->gid);
    for (int i = 0; i < c->ngroups && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? "," : "", (unsigned)c->groups[i]);
}

/* The shim's side of exec_cred_format. Returns 0 or -EINVAL. */
static int cred_parse(const char *s, struct exec_cred *c) {
    memset(c, 0, sizeof *c);
    char *end;
    unsigned long v[2];
    for (int i = 0; i < 2; i++) {
        errno = 0;
        v[i] = strtoul(s, &end, 10);
        if (end == s || *end != ':' || errno || v[i] > 0x7fffffff) return -EINVAL;
        s = end + 1;
    }
    c->uid = (uid_t)v[0];
    c->gid = (gid_t)v[1];
    while (*s) {
        if (c->ngroups == EXEC_MAX_GROUPS) return -EINVAL;
        errno = 0;
        unsigned long g = strtoul(s, &end, 10);
        if (end == s || (*end && *end != ',') || errno || g > 0x7fffffff) return -EINVAL;
        c->groups[c->ngroups++] = (gid_t)g;
        s = *end ? end + 1 : end;
    }
    return 0;
}

static int capset_zero(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    return (int)syscall(SYS_capset, &h, d);
}

static bool caps_all_zero(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return false;
    for (int i = 0; i < 2; i++)
        if (d[i].effective || d[i].permitted || d[i].inheritable) return false;
    return true;
}

/* Without --exec-user: the program runs as the node's own account, but never with the node's
 * capabilities. A node started with ambient capabilities (systemd AmbientCapabilities=, as
 * deploy/systemd/shoal.service gives CAP_SETUID/CAP_SETGID for --exec-user) would hand them on:
 * ambient capabilities survive execve, even under no_new_privs, and CAP_SETUID is the power to
 * become root. So the ambient set is cleared (fatal if that fails: the task would get them),
 * and the inheritable set emptied too, so a program with inheritable file capabilities gains
 * nothing from it (best effort: capset may be filtered when the unit drops its @setuid line,
 * and then the inheritable set grants nothing without the ambient one but such a file). A
 * non-root node's permitted and effective sets are not passed on by execve anyway; a root
 * node's program is root and gets root's capabilities back at execve whatever we do here.
 * Returns 0 or -errno. */
static int drop_ambient(void) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return -errno; /* EINVAL: a kernel before 4.3 has no ambient set */
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) == 0 && (d[0].inheritable || d[1].inheritable)) {
        d[0].inheritable = d[1].inheritable = 0;
        (void)syscall(SYS_capset, &h, d);
    }
    return 0;
}

/* Becomes c for good: groups, gid, uid, no capabilities of any kind, no way back, no new
 * privileges through execve. Returns 0, or a negative errno naming the step in *step. */
static int become(const struct exec_cred *c, const char **step) {
    *step = "setgroups";
    if (setgroups((size_t)c->ngroups, c->groups) != 0) return -errno;
    *step = "setresgid";
    if (setresgid(c->gid, c->gid, c->gid) != 0) return -errno;
    /* The bounding set needs CAP_SETPCAP: root has it; a node with only CAP_SETUID/SETGID
     * does not, and then NO_NEW_PRIVS below keeps execve from gaining anything anyway. */
    for (int cap = 0; cap < 64 && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    *step = "setresuid";
    if (setresuid(c->uid, c->uid, c->uid) != 0) return -errno;
    *step = "clearing ambient capabilities";
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return -errno;
    *step = "capset";
    if (capset_zero() != 0) return -errno;
    *step = "PR_SET_NO_NEW_PRIVS";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    *step = "checking the switch";
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (getresuid(&r, &e, &s) != 0 || r != c->uid || e != c->uid || s != c->uid ||
        getresgid(&gr, &ge, &gs) != 0 || gr != c->gid || ge != c->gid || gs != c->gid ||
        !caps_all_zero())
        return -EPERM;
    if (c->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) return -EPERM; /* no way back */
    return 0;
}

int exec_cred_probe(const struct exec_cred *c, char *err, size_t errlen) {
    int p[2];
    if (pipe(p) != 0) {
        snprintf(err, errlen, "--exec-user: pipe: %s", strerror(errno));
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        snprintf(err, errlen, "--exec-user: fork: %s", strerror(errno));
        return -EAGAIN;
    }
    if (pid == 0) { /* the child tries the real switch and reports the failing step */
        close(p[0]);
        const char *step = "";
        int rc = become(c, &step);
        if (rc != 0) {
            char m[160];
            int n = snprintf(m, sizeof m, "%s: %s", step, strerror(-rc));
            if (write(p[1], m, (size_t)n) < 0) { /* the exit code still tells */
            }
        }
        _exit(rc == 0 ? 0 : 1);
    }
    close(p[1]);
    char m[160] = "";
    ssize_t n = read(p[0], m, sizeof m - 1); /* returns once the child wrote or is gone */
    m[n > 0 ? n : 0] = '\0';
    close(p[0]);
    /* The child, switched, is now a zombie (not reaped yet) with the task's credentials: may
     * the node signal it? A non-root node needs CAP_KILL for that, or it could not stop its
     * tasks: timeouts, cancel and the shutdown grace signal the task's process group, and
     * even the parent-death signal the shim asks for is checked against the dying node's
     * rights. Without it those would fail silently and tasks would outlive everything. */
    int kill_rc = kill(pid, 0), kill_errno = errno;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errlen,
                 "--exec-user %s: this node cannot switch to uid %u gid %u (%s); "
                 "run it as root, or give it CAP_SETUID, CAP_SETGID and CAP_KILL (see the "
                 "deploy files)",
                 c->name, (unsigned)c->uid, (unsigned)c->gid, m[0] ? m : "the probe died");
        return -EPERM;
    }
    if (kill_rc != 0 && kill_errno == EPERM) {
        snprintf(err, errlen,
                 "--exec-user %s: this node can switch to uid %u but not signal "
                 "it (kill: %s), so it could not stop its tasks (timeout, cancel, shutdown); "
                 "run it as root, or give it CAP_KILL too (see the deploy files)",
                 c->name, (unsigned)c->uid, strerror(kill_errno));
        return -EPERM;
    }
    return 0;
}

/* ---- the shim ---- */

/* Reads the whole env block from fd into a malloc'd buffer. Returns its length or -1. */
static ssize_t read_block(int fd, char **out) {
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || st.st_size > TASK_ENV_BLOCK_MAX) return -1;
    char *b = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, b + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            free(b);
            return -1;
        }
        got += (size_t)n;
    }
    *out = b;
    return (ssize_t)got;
}

/* Closes descriptors lo..hi. */
static void close_fds(unsigned lo, unsigned hi) {
    if (close_range(lo, hi, 0) == 0) return;
    for (unsigned fd = lo; fd < 65536 && fd <= hi; fd++) (void)close((int)fd);
}

static int usage(void) {
    fprintf(stderr, "usage: shoal exec-child [--env-fd N] [--lease-fd N --lease-until-ms MS] "
                    "[--orphan-grace-ms MS] [--cred UID:GID:GROUPS] -- PATH ARGV...\n");
    return 127;
}

/* ---- the resident shim: a child subreaper that outlives nothing it started ---- */

/* At most this many processes are looked at per /proc scan (pid_max's ceiling is 4194304). */
#define SCAN_MAX 4194304
/* SIGKILL rounds before giving up on a tree that keeps forking (each round kills every
 * descendant seen; a killed process forks no more, so a fork bomb shrinks each round). */
#define KILL_ROUNDS 64
#define KILL_ROUND_PAUSE_NS 2000000 /* between rounds: 2 ms for the killed to die */

struct proc_pair {
    pid_t pid, ppid;
};

static int by_ppid(const void *a, const void *b) {
    pid_t x = ((const struct proc_pair *)a)->ppid, y = ((const struct proc_pair *)b)->ppid;
    return x < y ? -1 : x > y;
}

/* Reads the parent pid (field 4) and state (field 3) of /proc/PID/stat. The name (field 2)
 * may hold spaces and parentheses: parse from the last ')'. Returns 0 or -1. */
static int stat_of(const char *pid, pid_t *ppid, char *state) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    int pp;
    if (!rp || sscanf(rp + 1, " %c %d", state, &pp) != 2) return -1;
    *ppid = (pid_t)pp;
    return 0;
}

/* Every living descendant of this process (zombies left out: they hold nothing, and their
 * parent, being killed too, hands them to us to reap). One scan of /proc, then a walk down
 * from us over the pairs sorted by parent. As a child subreaper we are the ancestor of
 * everything our program started, however it forked, daemonized or left its process group:
 * an orphan is re-parented to us, not to init. *out is malloc'd; returns how many. */
static size_t descendants(pid_t **out) {
    *out = NULL;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct proc_pair *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < SCAN_MAX) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        pid_t ppid;
        char state;
        if (stat_of(e->d_name, &ppid, &state) != 0 || state == 'Z') continue;
        if (n == cap) all = xrealloc(all, (cap = cap ? cap * 2 : 256) * sizeof *all);
        all[n++] = (struct proc_pair){(pid_t)atoi(e->d_name), ppid};
    }
    closedir(d);
    qsort(all, n, sizeof *all, by_ppid);
    /* Breadth first: q holds us, then each found descendant once (a process has one parent,
     * so nothing is queued twice); each is looked up by binary search among the pairs. */
    pid_t *q = xmalloc((n + 1) * sizeof *q);
    size_t head = 0, tail = 0;
    q[tail++] = getpid();
    while (head < tail) {
        pid_t parent = q[head++];
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (all[mid].ppid < parent)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n && all[lo].ppid == parent && tail <= n; lo++) q[tail++] = all[lo].pid;
    }
    free(all);
    memmove(q, q + 1, (tail - 1) * sizeof *q);
    *out = q;
    return tail - 1;
}

struct shim {
    pid_t program;      /* our child: the task's program */
    bool program_done;  /* reaped */
    int status;         /* its wait status */
    bool children_left; /* something else we must reap is still there */
};

/* Reaps whatever has ended; remembers the program's status. */
static void reap(struct shim *s) {
    for (int i = 0; i < SCAN_MAX; i++) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid < 0 && errno == EINTR) continue;
        if (pid <= 0) {
            s->children_left = pid == 0; /* -1 ECHILD: no child of ours is left */
            return;
        }
        if (pid == s->program) {
            s->program_done = true;
            s->status = st;
        }
    }
}

/* Sends sig to every descendant. With SIGKILL, goes on (at most KILL_ROUNDS rounds) until
 * none is left alive. Returns how many descendants were seen in the first round. */
static size_t signal_tree(struct shim *s, int sig) {
    size_t first = 0;
    for (int round = 0; round < (sig == SIGKILL ? KILL_ROUNDS : 1); round++) {
        pid_t *pids;
        size_t n = descendants(&pids);
        if (round == 0) first = n;
        for (size_t i = 0; i < n; i++) (void)kill(pids[i], sig);
        free(pids);
        reap(s);
        if (n == 0) break;
        if (sig == SIGKILL) nanosleep(&(struct timespec){0, KILL_ROUND_PAUSE_NS}, NULL);
    }
    return first;
}

/* Ends the shim the way its program ended: the node reads our exit status as the program's. */
static int exit_like(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit no_core = {0, 0};
        (void)setrlimit(RLIMIT_CORE, &no_core);
        sigset_t all;
        sigfillset(&all);
        (void)sigprocmask(SIG_UNBLOCK, &all, NULL);
        signal(sig, SIG_DFL);
        raise(sig);
        kill(getpid(), SIGKILL); /* a signal whose default is not to die */
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The node's lease, as the node last told us: a monotonic time (CLOCK_MONOTONIC ms, one clock
 * for every process) at which the run must stop unless the node extends it. 0: none. */
struct lease {
    int fd;           /* read end of the node's pipe, or -1 */
    int64_t until_ms; /* 0: no lease */
    bool fired;       /* passed: the run is being stopped */
    unsigned char part[8];
    size_t npart;
};

/* Reads all the node has written (the pipe is non-blocking): 8-byte monotonic deadlines, each
 * written at once (< PIPE_BUF). The newest (largest) counts. EOF: the node is gone; its death
 * signal does the rest. Bound: 64 reads of 512 bytes (4,096 deadlines, far more than the pipe
 * holds unread between two turns). */
static void lease_read(struct lease *l) {
    unsigned char buf[512];
    for (int r = 0; r < 64 && l->fd >= 0; r++) {
        ssize_t n = read(l->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            close(l->fd);
            l->fd = -1;
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            l->part[l->npart++] = buf[i];
            if (l->npart == sizeof l->part) {
                int64_t v;
                memcpy(&v, l->part, sizeof v);
                if (v > l->until_ms) l->until_ms = v;
                l->npart = 0;
            }
        }
    }
}

/* The shim's loop once the program runs. Signals arrive on a signalfd:
 * - SIGCHLD: reap; once the program ended, whatever it left gets EXEC_DRAIN_MS, then SIGKILL.
 * - SIGTERM from the node (exec_stop): SIGTERM to every descendant; the node follows with
 *   SIGUSR1 when its grace ends.
 * - SIGTERM as the parent-death signal (the node died: our parent changed): the same, and
 *   orphan_grace_ms later SIGKILL to the tree, by ourselves.
 * - SIGUSR1 from the node: SIGKILL to the tree at once.
 * And the node's lease (--lease-fd): when its deadline passes without an extension (the node
 * is stopped, its loop blocked, or it lost Redis and could not act), SIGTERM to the tree and
 * SIGKILL orphan_grace_ms later, as the node's own fencing would have done: the run is gone
 * before the node's liveness TTL ends even when the node cannot act.
 * We exit once the program was reaped and no child of ours is left. Each turn handles one
 * signal, one read of the lease pipe or one deadline; the loop ends because every path leads
 * to the SIGKILL rounds. */
static int supervise(struct shim *s, int sfd, pid_t parent, int64_t orphan_grace_ms,
                     struct lease *l) {
    int64_t deadline = -1; /* monotonic ms of the next SIGKILL of the tree, or -1 */
    bool drain_armed = false, termed = false;
    for (;;) {
        reap(s);
        if (s->program_done && !s->children_left) return exit_like(s->status);
        /* Extensions first, whatever woke us: the deadline checked below is the newest the
         * node wrote. */
        if (l->fd >= 0) lease_read(l);
        int64_t now = mono_ms();
        if (s->program_done && !drain_armed) {
            drain_armed = true;
            int64_t at = now + EXEC_DRAIN_MS;
            if (deadline < 0 || at < deadline) deadline = at;
        }
        if (l->until_ms > 0 && !l->fired && now >= l->until_ms) {
            l->fired = true;
            if (!termed) signal_tree(s, SIGTERM);
            termed = true;
            int64_t at = now + orphan_grace_ms;
            if (deadline < 0 || at < deadline) deadline = at;
        }
        int64_t next = deadline;
        if (l->until_ms > 0 && !l->fired && (next < 0 || l->until_ms < next)) next = l->until_ms;
        int timeout = -1;
        if (next >= 0) {
            int64_t left = next - now;
            timeout = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
        }
        struct pollfd pfd[2] = {{sfd, POLLIN, 0}, {l->fd, POLLIN, 0}};
        int pr = poll(pfd, l->fd >= 0 ? 2 : 1, timeout);
        if (pr < 0 && errno != EINTR) {
            signal_tree(s, SIGKILL); /* cannot wait for signals any more: end it all */
            deadline = -1;
            continue;
        }
        if (deadline >= 0 && mono_ms() >= deadline) {
            signal_tree(s, SIGKILL);
            deadline = -1;
        }
        if (pr <= 0) continue;
        if (!(pfd[0].revents & POLLIN)) continue;
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si) continue;
        if (si.ssi_signo == SIGUSR1) {
            signal_tree(s, SIGKILL);
            deadline = -1;
        } else if (si.ssi_signo == SIGTERM) {
            signal_tree(s, SIGTERM);
            termed = true;
            if (getppid() != parent) { /* the node is gone: nobody else will say when */
                int64_t at = mono_ms() + orphan_grace_ms;
                if (deadline < 0 || at < deadline) deadline = at;
            }
        }
    }
}

int exec_child_main(int argc, char **argv) {
    pid_t parent = getppid();
    /* Not SIGKILL: when the node dies we must outlive it long enough to stop what the program
     * started, wherever it went. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) return 127;
    int env_fd = -1, i = 1;
    int64_t orphan_grace_ms = 0;
    struct lease lease = {.fd = -1};
    const char *cred_arg = NULL;
    for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        if (i + 1 >= argc) return usage();
        char *end;
        errno = 0;
        if (strcmp(argv[i], "--env-fd") == 0) {
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || end == argv[i + 1] || errno || v < 0 || v > 1024) return usage();
            env_fd = (int)v;
        } else if (strcmp(argv[i], "--lease-fd") == 0) {
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || end == argv[i + 1] || errno || v < 3 || v > 1024) return usage();
            lease.fd = (int)v;
        } else if (strcmp(argv[i], "--lease-until-ms") == 0) {
            long long v = strtoll(argv[i + 1], &end, 10);
            if (*end || end == argv[i + 1] || errno || v < 0) return usage();
            lease.until_ms = v;
        } else if (strcmp(argv[i], "--orphan-grace-ms") == 0) {
            long long v = strtoll(argv[i + 1], &end, 10);
            if (*end || end == argv[i + 1] || errno || v < 0 || v > 86400000) return usage();
            orphan_grace_ms = v;
        } else if (strcmp(argv[i], "--cred") == 0) {
            cred_arg = argv[i + 1];
        } else {
            return usage();
        }
    }
    if (i + 2 >= argc) return usage(); /* "--", PATH and argv[0] at least */
    const char *path = argv[i + 1];
    char **args = argv + i + 2;
    char **env = NULL, *block = NULL, why[160];
    if (env_fd >= 0) {
        ssize_t n = read_block(env_fd, &block);
        close(env_fd);
        if (n < 0 || task_env_block_parse(block, (size_t)n, &env, why, sizeof why) != 0) {
            fprintf(stderr, "shoal: cannot read the task's environment: %s\n",
                    n < 0 ? "bad env fd" : why);
            return 127;
        }
    }
    struct exec_cred cred;
    if (cred_arg && cred_parse(cred_arg, &cred) != 0) {
        fprintf(stderr, "shoal: bad --cred '%s'\n", cred_arg);
        return 127;
    }
    /* A process group of its own, in the node's session (see exec.c, "Process group"); the
     * node does the same from its side, so the group exists before either signals it. The
     * program inherits it. */
    if (setpgid(0, 0) != 0) return 127;
    /* Below the node: a CPU-bound task must not delay ping or the heartbeat. */
    if (setpriority(PRIO_PROCESS, 0, TASK_NICE) != 0) { /* keep going at the node's priority */
    }
    /* Nothing of the node's but stdin, stdout and stderr stays with us or reaches the program:
     * descriptors without close-on-exec (hiredis's Redis sockets, already authenticated;
     * libuv's reserve; listeners) would hand the task the node's Redis access. */
    if (lease.fd > 3) close_fds(3, (unsigned)lease.fd - 1); /* all but the lease pipe */
    close_fds(lease.fd >= 3 ? (unsigned)lease.fd + 1 : 3, ~0U);
    if (lease.fd >= 0 &&
        (fcntl(lease.fd, F_SETFD, FD_CLOEXEC) != 0 || fcntl(lease.fd, F_SETFL, O_NONBLOCK) != 0)) {
        fprintf(stderr, "shoal: bad --lease-fd: %s\n", strerror(errno));
        return 127;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        fprintf(stderr, "shoal: cannot become a child subreaper: %s\n", strerror(errno));
        return 127;
    }
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, &old) != 0) return 127;
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0 || getppid() != parent) return 127; /* the node died before we could listen */
    pid_t shim = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "shoal: cannot start %s: fork: %s\n", path, strerror(errno));
        return 127;
    }
    if (pid == 0) { /* the program: the task's account, its signals back to normal */
        (void)sigprocmask(SIG_SETMASK, &old, NULL);
        signal(SIGPIPE, SIG_DFL); /* (the node ignores it; libuv reset it for us, but be sure) */
        if (cred_arg) {
            const char *step = "";
            int rc = become(&cred, &step);
            if (rc != 0) {
                fprintf(stderr, "shoal: cannot switch to uid %u: %s: %s\n", (unsigned)cred.uid,
                        step, strerror(-rc));
                _exit(127);
            }
        } else {
            int rc = drop_ambient();
            if (rc != 0) {
                fprintf(stderr, "shoal: cannot clear the ambient capabilities: %s\n",
                        strerror(-rc));
                _exit(127);
            }
        }
        /* Dies with the shim (a credential change cleared any earlier request); then check the
         * shim did not die in between (we would have been re-parented). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != shim) _exit(127);
        static char *empty[] = {NULL};
        execve(path, args, env ? env : env_fd >= 0 ? empty : environ);
        fprintf(stderr, "shoal: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    free(env);
    free(block);
    struct shim s = {.program = pid};
    return supervise(&s, sfd, parent, orphan_grace_ms, &lease);
}
