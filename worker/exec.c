/* exec.c: the `exec` handler. It owns one program run: the allowlist decision, the spawn
 * (argv without a shell, env, cwd), the capped log of stdout+stderr, and stopping the program's
 * whole process group. Outcome wording and timeouts belong to the runner (runner.c).
 *
 * Rules a change must keep:
 * - Allowlist: argv[0] without '/' is looked up in the node's PATH (absolute entries only);
 *   a relative path with '/' is refused; the absolute path must be in canonical form (no '.',
 *   '..' or '//' segment, or "/usr/bin/../../tmp/x" would pass the "/usr/bin/" prefix) and
 *   then equal an --allow-exec entry or start with an entry ending in '/'. An empty list
 *   refuses everything. Symlinks are not resolved: the list names what operators type.
 * - Environment: with no "env" the program inherits the node's environment; with one, the
 *   node's environment is inherited and the task's entries override or add to it (so PATH,
 *   HOME, LANG... stay usable). stdin is /dev/null.
 * - Process group: the program starts in a process group of its own (setpgid, by the shim and
 *   by the node, whichever comes first), so every signal goes to -pid and `sh -c 'sleep 100'`
 *   children die with it. It stays in the node's session: a new session would also be a new
 *   scheduler autogroup (Debian's kernels enable autogroups), weighted like the node's whole
 *   session whatever its nice value, and CPU-bound tasks would then take the CPU from the
 *   node's loop as equals (ping p99 4.5-6.6 ms with 4 busy tasks on 2 cores, against 0.1-0.3
 *   ms in one session). Without the shim the program gets a new session (UV_PROCESS_DETACHED),
 *   the only way to a group of its own before it runs. When the program exits and
 *   something it started still holds stdout/stderr open, that is given DRAIN_MS to finish,
 *   then the rest of its group is killed and the pipes closed: a task never hangs on output,
 *   and its leftover processes do not outlive it (unless they left the group and closed the
 *   pipes, as proper daemons do).
 * - Completion: done runs once, after the exit status AND both pipes' EOF (or close) AND every
 *   handle's close callback: no lost tail output, nothing freed under libuv's feet. */
#include "worker/exec.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/package.h"
#include "common/task_codec.h"
#include "common/util.h"
#include "worker/handlers_int.h"

#define DRAIN_MS 500           /* after exit, how long output may stay open */
#define READ_CHUNK 65536
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

extern char **environ;

enum timer_phase { PHASE_NONE, PHASE_GRACE, PHASE_DRAIN };

struct exec_proc {
    uv_process_t proc;         /* the program; closed in exit_cb (or at once if spawn failed) */
    uv_pipe_t out, err;        /* its stdout and stderr, read into res.log */
    uv_timer_t timer;          /* grace (TERM -> KILL) or drain (exit -> close pipes) */
    int open;                  /* handles not yet through their close callback */
    int pid;                   /* > 0 once spawned: the process group to signal is -pid */
    bool out_open, err_open;   /* still reading (no EOF, not closed) */
    bool stopping;             /* exec_stop was called */
    enum timer_phase phase;    /* what the timer is counting down to */
    size_t log_cap;
    int64_t grace_ms;
    struct exec_result res;    /* handed to done */
    exec_done_cb done;
    void *arg;
    char rbuf[READ_CHUNK];     /* read buffer shared by both pipes: libuv reads synchronously */
};

/* ---- allowlist ---- */

/* Calls match(entry, len, ctx) for each non-empty entry of the comma list; stops at a true. */
static bool each_entry(const char *list, bool (*match)(const char *, size_t, void *), void *ctx) {
    for (const char *s = list; s && *s;) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *e = s;
        size_t m = n;
        while (m && (*e == ' ' || *e == '\t')) e++, m--;
        while (m && (e[m - 1] == ' ' || e[m - 1] == '\t')) m--;
        if (m && match(e, m, ctx)) return true;
        s = end ? end + 1 : s + n;
    }
    return false;
}

static bool entry_absolute_cb(const char *e, size_t n, void *ctx) { return e[0] == '/'; }

static bool entry_allows_cb(const char *e, size_t n, void *ctx) {
    const char *path = ctx;
    if (e[0] != '/') return false;   /* relative entries mean nothing: ignored */
    if (e[n - 1] == '/') return strncmp(path, e, n) == 0 && path[n] != '\0';
    return strlen(path) == n && strncmp(path, e, n) == 0;
}

/* No "." or ".." segment and no empty one ("//", or a trailing '/'). */
static bool canonical(const char *path) {
    for (const char *s = path + 1;; ) {
        const char *end = strchr(s, '/');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return false;
        if (!end) return true;
        s = end + 1;
    }
}

/* Looks name up in the node's PATH (absolute directories only). Returns 0 or -ENOENT. */
static int path_lookup(const char *name, char *out, size_t outlen) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = DEFAULT_PATH;
    for (const char *s = path; *s;) {
        const char *end = strchr(s, ':');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n > 0 && s[0] == '/') {
            int w = snprintf(out, outlen, "%.*s%s%s", (int)n, s, s[n - 1] == '/' ? "" : "/", name);
            struct stat st;
            if (w > 0 && (size_t)w < outlen && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
                access(out, X_OK) == 0)
                return 0;
        }
        s = end ? end + 1 : s + n;
    }
    return -ENOENT;
}

int exec_resolve(const char *allow_exec, const char *argv0, char *path, size_t pathlen,
                 char *err, size_t errlen) {
    bool any = each_entry(allow_exec, entry_absolute_cb, NULL);
    if (strchr(argv0, '/') && argv0[0] != '/') {
        snprintf(err, errlen, "program '%.200s' is a relative path; exec takes an absolute path "
                 "or a bare name looked up in the node's PATH", argv0);
        return -EINVAL;
    }
    int found = 0;
    if (argv0[0] == '/') snprintf(path, pathlen, "%s", argv0);
    else found = path_lookup(argv0, path, pathlen);
    if (!any) {
        snprintf(err, errlen, "this node allows no programs; start it with --allow-exec %.200s "
                 "(a comma list of programs, or directories ending in '/') to run '%.100s'",
                 found == 0 ? path : "/path/to/program", argv0);
        return -EINVAL;
    }
    if (found < 0) {
        snprintf(err, errlen, "program '%.200s' was not found in the node's PATH", argv0);
        return -ENOENT;
    }
    if (!canonical(path)) {
        snprintf(err, errlen, "program path '%.200s' has an empty, '.' or '..' segment; "
                 "give its canonical absolute path", path);
        return -EINVAL;
    }
    if (!each_entry(allow_exec, entry_allows_cb, path)) {
        const char *slash = strrchr(path, '/');
        snprintf(err, errlen, "program %.200s is not in this node's --allow-exec list; allow it "
                 "with --allow-exec %.200s (or its directory, %.*s)", path, path,
                 (int)(slash - path + 1), path);
        return -EINVAL;
    }
    return 0;
}

/* ---- environment ---- */

/* The node's environment with task entries overriding or added. The strings are borrowed (from
 * environ and a): uv_spawn copies them into the child before returning. */
static char **build_env(const struct exec_args *a, const char *extra) {
    size_t n = 0;
    while (environ && environ[n]) n++;
    char **env = xcalloc(n + (size_t)a->envc + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (int j = 0; j < a->envc && !overridden; j++)
            overridden = strncmp(a->env[j], environ[i], kl) == 0 && a->env[j][kl] == '=';
        if (!overridden) env[k++] = environ[i];
    }
    for (int j = 0; j < a->envc; j++) env[k++] = a->env[j];
    if (extra) env[k++] = (char *)extra;
    return env;
}

/* ---- the process ---- */

static void finish(struct exec_proc *p) {
    p->done(p, &p->res, p->arg);
    buf_free(&p->res.log);
    free(p);
}

static void close_cb(uv_handle_t *h) {
    struct exec_proc *p = h->data;
    if (--p->open == 0) finish(p);
}

static void close_handle(struct exec_proc *p, void *h) {
    if (!uv_is_closing(h)) uv_close(h, close_cb);
}

static void group_kill(struct exec_proc *p, int sig) {
    if (p->pid > 0) kill(-p->pid, sig);   /* ESRCH: the group is gone already */
}

/* Closes what is still reading; once the process exited and no pipe reads, the timer goes
 * last, and its close callback (the fourth) runs finish(). */
static void close_pipes(struct exec_proc *p) {
    if (p->out_open) { p->out_open = false; close_handle(p, &p->out); }
    if (p->err_open) { p->err_open = false; close_handle(p, &p->err); }
}

static void maybe_wrap(struct exec_proc *p) {
    if (p->res.exited && !p->out_open && !p->err_open) close_handle(p, &p->timer);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
    struct exec_proc *p = h->data;
    *b = uv_buf_init(p->rbuf, sizeof p->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    struct exec_proc *p = s->data;
    if (nread > 0) {
        log_keep_tail(&p->res.log, p->log_cap, &p->res.log_truncated, b->base, (size_t)nread);
        return;
    }
    if (nread == 0) return;   /* EAGAIN */
    /* EOF or a read error: this stream is done either way. */
    if (s == (uv_stream_t *)&p->out) p->out_open = false;
    else p->err_open = false;
    close_handle(p, s);
    maybe_wrap(p);
}

static void timer_cb(uv_timer_t *t) {
    struct exec_proc *p = t->data;
    if (p->phase == PHASE_GRACE) {
        p->res.killed = true;
        group_kill(p, SIGKILL);
    } else if (p->phase == PHASE_DRAIN) {
        static const char note[] = "\n[shoal: output still open after the program exited; "
                                   "its remaining processes were killed]\n";
        group_kill(p, SIGKILL);
        log_keep_tail(&p->res.log, p->log_cap, &p->res.log_truncated, note, sizeof note - 1);
        close_pipes(p);
        maybe_wrap(p);
    }
    p->phase = PHASE_NONE;
}

static void exit_cb(uv_process_t *proc, int64_t status, int sig) {
    struct exec_proc *p = proc->data;
    p->res.exited = true;
    p->res.exit_status = status;
    p->res.term_signal = sig;
    close_handle(p, proc);
    if (p->out_open || p->err_open) {   /* (replaces a pending grace: the leader is gone) */
        p->phase = PHASE_DRAIN;
        uv_timer_start(&p->timer, timer_cb, DRAIN_MS, 0);
    }
    maybe_wrap(p);
}

int exec_child_main(int argc, char **argv) {
    pid_t parent = getppid();
    if (argc < 3) {
        fprintf(stderr, "usage: shoal exec-child PATH ARGV...\n");
        return 127;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return 127;
    /* A process group of its own, in the node's session (see "Process group" above); the node
     * does the same from its side, so the group exists before either signals it. */
    if (setpgid(0, 0) != 0) return 127;
    /* Below the node: a CPU-bound task must not delay ping or the heartbeat. */
    if (setpriority(PRIO_PROCESS, 0, TASK_NICE) != 0) { /* keep going at the node's priority */ }
    execv(argv[1], argv + 2);
    fprintf(stderr, "shoal: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}

static int spawn(uv_loop_t *loop, struct exec_proc *p, const struct exec_args *a, const char *path,
                 const char *shim, const char *extra_env) {
    char **env = a->env || extra_env ? build_env(a, extra_env) : NULL;
    char **args = a->argv;
    const char *file = path;
    if (shim) {   /* shim exec-child PATH ARGV... */
        args = xcalloc((size_t)a->argc + 4, sizeof *args);
        args[0] = (char *)"shoal";
        args[1] = (char *)"exec-child";
        args[2] = (char *)path;
        for (int i = 0; i < a->argc; i++) args[i + 3] = a->argv[i];
        file = shim;
    }
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
    };
    uv_process_options_t opts = {
        .exit_cb = exit_cb,
        .file = file,
        .args = args,
        .env = env,
        .cwd = a->cwd,
        /* Through the shim: setpgid, here and in the shim. Without: setsid(). Either way its
         * own process group, signalled as -pid. */
        .flags = shim ? 0 : UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    int rc = uv_spawn(loop, &p->proc, &opts);
    /* EACCES: the shim ran its setpgid and exec'd already; ESRCH: it is gone. */
    if (rc == 0 && shim) (void)setpgid(p->proc.pid, p->proc.pid);
    free(env);
    if (args != a->argv) free(args);
    return rc;
}

int exec_start(uv_loop_t *loop, const struct exec_opts *o, const char *args, size_t len,
               exec_done_cb done, void *arg, struct exec_proc **out, char *err, size_t errlen) {
    struct exec_args a;
    char why[256];
    char path[PATH_MAX];
    int rc = task_args_exec_decode(args, len, &a, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "payload cannot be decoded: %s", why);
        goto fail_args;
    }
    if ((rc = exec_resolve(o->allow_exec, a.argv[0], path, sizeof path, err, errlen)) < 0)
        goto fail_args;
    /* A task that names an uploaded package gets its path in SHOAL_PACKAGE_PATH. */
    char pkg_env[PATH_MAX + 32] = "";
    if (a.package) {
        char pkg[PATH_MAX], why2[256];
        rc = package_locate(o->package_dir ? o->package_dir : "packages", a.package, pkg,
                            sizeof pkg, why2, sizeof why2);
        if (rc < 0) {
            if (rc == -ENOENT)
                snprintf(err, errlen, "package '%s' is not in this node's --package-dir (%s)",
                         a.package, o->package_dir ? o->package_dir : "packages");
            else
                snprintf(err, errlen, "package '%s': %s", a.package, why2);
            goto fail_args;
        }
        snprintf(pkg_env, sizeof pkg_env, "SHOAL_PACKAGE_PATH=%s", pkg);
    }
    /* Through the shim, a program that cannot run would only show as exit code 127. */
    if (o->shim && access(path, X_OK) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot run %s: %s", path, strerror(errno));
        goto fail_args;
    }

    struct exec_proc *p = xcalloc(1, sizeof *p);
    p->log_cap = o->log_cap;
    p->grace_ms = o->kill_grace_ms > 0 ? o->kill_grace_ms : 0;
    p->done = done;
    p->arg = arg;
    buf_init(&p->res.log);
    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    uv_timer_init(loop, &p->timer);
    p->proc.data = p->out.data = p->err.data = p->timer.data = p;
    p->open = 4;
    snprintf(p->res.spawn_what, sizeof p->res.spawn_what, "%.200s%s%.90s", path,
             a.cwd ? " in " : "", a.cwd ? a.cwd : "");
    rc = spawn(loop, p, &a, path, o->shim, pkg_env[0] ? pkg_env : NULL);
    p->proc.data = p;   /* uv_spawn initialised the handle */
    if (rc < 0) {
        /* The handles exist either way: close them all; done reports the spawn error. */
        p->res.spawn_err = rc;
        p->res.exited = true;
        close_handle(p, &p->proc);
        close_handle(p, &p->out);
        close_handle(p, &p->err);
        close_handle(p, &p->timer);
    } else {
        p->pid = p->proc.pid;
        p->out_open = uv_read_start((uv_stream_t *)&p->out, alloc_cb, read_cb) == 0;
        p->err_open = uv_read_start((uv_stream_t *)&p->err, alloc_cb, read_cb) == 0;
        if (!p->out_open) close_handle(p, &p->out);
        if (!p->err_open) close_handle(p, &p->err);
    }
    exec_args_free(&a);
    *out = p;
    return 0;

fail_args:
    exec_args_free(&a);
    return -EINVAL;
}

void exec_stop(struct exec_proc *p) {
    if (p->stopping || p->pid <= 0) return;
    p->stopping = true;
    if (p->res.exited) {   /* only output draining is left: end it now */
        if (p->out_open || p->err_open) group_kill(p, SIGKILL);   /* what still holds them */
        close_pipes(p);
        maybe_wrap(p);
        return;
    }
    group_kill(p, SIGTERM);
    p->phase = PHASE_GRACE;
    uv_timer_start(&p->timer, timer_cb, (uint64_t)p->grace_ms, 0);
}
