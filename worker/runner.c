/* runner.c: runs claimed tasks and reports each one's outcome exactly once (runner.h). It owns
 * dispatch by type, timeouts, cancel and stop, and the wording of every outcome; exec.c owns
 * the process side of `exec`, handlers.c the registry and the job a C handler sees.
 *
 * A task is a `struct run` from runner_start to its completion. Each run has one timer: the
 * sleep itself, the execution timeout (exec and C handlers), or a zero timeout that defers an
 * immediate failure, so done_cb always runs from a libuv callback on the loop thread, never
 * inside runner_start, runner_cancel or runner_stop_all. The first stop reason (timeout,
 * cancel, stop_all) wins and becomes the outcome, whatever the work did afterwards.
 *
 * C handlers run on the runner's own threads (common/bgq.h, at TASK_NICE; fail too; noop, which
 * does nothing, needs no thread), not libuv's pool: handing a result back through libuv's pool
 * makes the loop spin (uv__async_spin) while a pool thread below it is preempted between
 * claiming the async handle and writing its eventfd, 12 % of a node's CPU at cap 10
 * (docs/benchmarks.md, "Handler threads"). A thread cannot be killed: on timeout, cancel or
 * stop the job's stopping flag is set (a job no thread took yet then never runs), and the run
 * completes when the handler returns. A handler that never polls shoal_job_stopping() holds
 * its thread, and its task slot, until it returns.
 *
 * Freeing: a completed run leaves the list at once (runner_running drops) and is freed in its
 * timer's close callback; runner_close waits for those, then closes its own idle handle, so
 * the runner is freed, and close's callback runs, only after every handle it opened closed. */
#include "worker/runner.h"

#include <ctype.h>
#include <errno.h>
#include <search.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bgq.h"
#include "common/task_codec.h"
#include "common/util.h"
#include "worker/exec.h"
#include "worker/handlers_int.h"

#define DEFAULT_LOG_CAP 65536

enum run_kind {
    KIND_IMMEDIATE, /* outcome known at start (refused, undecodable, unknown): timer at 0 */
    KIND_SLEEP,     /* the timer is the sleep (or its timeout when that is shorter) */
    KIND_C,         /* a C handler on the thread pool; the timer is the timeout */
    KIND_EXEC,      /* a process (exec.c); the timer is the timeout */
};

struct run {
    struct runner *r;
    struct run *prev, *next;   /* in r->runs until completed */
    struct run *same;          /* the next older run of the same task id in r->runs, or NULL */
    struct runner_task *t;     /* owned until handed to done_cb */
    struct runner_result *res; /* owned until handed to done_cb */
    enum run_kind kind;
    bool stopped; /* a stop reason was recorded */
    enum runner_outcome stop_outcome;
    const char *interrupt_why; /* RUN_INTERRUPTED by fencing or disowning: why; NULL: shutdown */
    bool sleep_times_out;      /* sleep: the timer counts the (shorter) timeout */
    bool exec_killed;          /* exec: SIGKILL was needed after the grace */
    uv_timer_t timer;          /* see enum run_kind; freed with the run in its close cb */
    struct exec_proc *exec;    /* KIND_EXEC until exec's done callback; NULL while it waits for its
                             * spawn, in r->spawn_first's list */
    struct run *spawn_prev, *spawn_next;
    struct bgq_job bj;    /* KIND_C: on the runner's handler threads */
    bool never_ran;       /* KIND_C: stopped before a thread took it */
    struct shoal_job job; /* KIND_C: what the handler sees */
    shoal_handler_fn fn;  /* KIND_C: copied at start, so a registry change is harmless */
    void *fn_arg;
    int fn_rc;      /* KIND_C: the handler's return value */
    char *fail_msg; /* `fail`: the decoded message, owned */
};

struct runner {
    uv_loop_t *loop;
    char *allow_exec;            /* owned copy of cfg->allow_exec ("" when none) */
    char *exec_shim;             /* owned copy of cfg->exec_shim, or NULL */
    char *package_dir;           /* owned copy of cfg->package_dir, or NULL */
    char *exec_env_allow;        /* owned copy of cfg->exec_env_allow, or NULL */
    char *task_env_allow;        /* owned copy of cfg->task_env_allow, or NULL */
    char *node_name;             /* owned copy of cfg->node_name, or NULL */
    struct exec_cred *exec_cred; /* owned copy of cfg->exec_cred, or NULL */
    size_t log_cap;
    int64_t kill_grace_ms;
    int64_t orphan_grace_ms;
    int64_t lease_until_ms; /* the node's fencing deadline (monotonic ms), 0 before the first */
    bool fenced;            /* runner_fence ran and no runner_extend since: start nothing */
    const struct shoal_handlers *handlers; /* borrowed */
    struct bgq *pool;                      /* C handler threads, made at the first C run */
    unsigned pool_threads;                 /* at most */
    runner_done_cb done;
    void *arg;
    struct run *runs;      /* runs not yet completed */
    void *by_id;           /* the same runs by task id (glibc's tsearch tree): the newest run of
                            * each id, older ones through run->same; so a claim answer of k tasks
                            * costs O(k log running) on the loop, never O(k × running) */
    unsigned running;      /* their number */
    unsigned closing_runs; /* completed runs whose timer has not closed yet */
    struct run *spawn_first, *spawn_last; /* exec runs waiting for their spawn, in order */
    uv_idle_t spawner; /* active while any waits: one spawn a loop turn (see start_exec) */
    uv_timer_t self;   /* never started: closed last, so close always ends async */
    bool closing;      /* runner_close was called */
    void (*close_done)(void *);
    void *close_arg;
};

static void timer_cb(uv_timer_t *h);

/* ---- runs by task id ---- */

static int run_cmp(const void *a, const void *b) {
    return strcmp(((const struct run *)a)->t->id, ((const struct run *)b)->t->id);
}

/* The newest run of task `id` not yet completed (older ones follow through ->same), or NULL. */
static struct run *runs_of(const struct runner *r, const char *id) {
    struct runner_task kt;
    struct run key = {.t = &kt};
    size_t n = strlen(id);
    if (n >= sizeof kt.id) return NULL; /* longer than any run's id */
    memcpy(kt.id, id, n + 1);
    struct run **slot = tfind(&key, &r->by_id, run_cmp);
    return slot ? *slot : NULL;
}

static void index_add(struct runner *r, struct run *run) {
    struct run **slot = tsearch(run, &r->by_id, run_cmp);
    if (!slot) oom(sizeof(void *) * 4); /* a tree node */
    if (*slot != run) { /* an older run of this task is still here: the new one heads the list */
        run->same = *slot;
        *slot = run;
    }
}

static void index_remove(struct runner *r, struct run *run) {
    struct run **slot = tfind(run, &r->by_id, run_cmp);
    if (!slot) return;
    if (*slot != run) {
        struct run *p = *slot;
        while (p->same && p->same != run) p = p->same;
        if (p->same == run) p->same = run->same;
    } else if (run->same) {
        *slot = run->same; /* the same key: the tree's order holds */
    } else {
        tdelete(run, &r->by_id, run_cmp);
    }
    run->same = NULL;
}

/* ---- completion ---- */

static const char *signal_name(int sig, char *buf, size_t len) {
    static const struct {
        int sig;
        const char *name;
    } names[] = {
        {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
        {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
        {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
        {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
        {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (names[i].sig == sig) return names[i].name;
    snprintf(buf, len, "signal %d", sig);
    return buf;
}

static void stop_message(const struct run *run, char *out, size_t len) {
    char d[32], g[32];
    static const char *const what[] = {
        [KIND_IMMEDIATE] = "task",
        [KIND_SLEEP] = "sleep",
        [KIND_C] = "handler",
        [KIND_EXEC] = "process",
    };
    switch (run->stop_outcome) {
    case RUN_TIMEDOUT:
        format_duration_ms(run->t->timeout_ms, d, sizeof d);
        format_duration_ms(run->r->kill_grace_ms, g, sizeof g);
        snprintf(out, len, "execution timeout of %s exceeded; %s stopped%s%s%s", d, what[run->kind],
                 run->exec_killed ? " (SIGKILL after the " : "", run->exec_killed ? g : "",
                 run->exec_killed ? " grace)" : "");
        break;
    case RUN_CANCELED: snprintf(out, len, "canceled"); break;
    case RUN_INTERRUPTED:
        snprintf(out, len, "interrupted: %s",
                 run->interrupt_why ? run->interrupt_why : "the node is shutting down");
        break;
    default: break;
    }
}

static void maybe_finish(struct runner *r);

#define WHY_FENCED "this node could not prove its liveness to Redis in time (fenced)"

static void run_closed_cb(uv_handle_t *h) {
    struct run *run = container_of((uv_timer_t *)h, struct run, timer);
    struct runner *r = run->r;
    free(run);
    r->closing_runs--;
    maybe_finish(r);
}

/* Hands the task and its result to done_cb (which owns them from then on) and starts freeing
 * the run. Called only from libuv callbacks. */
static void complete(struct run *run) {
    struct runner *r = run->r;
    struct runner_task *t = run->t;
    struct runner_result *res = run->res;
    if (run->stopped) {
        res->outcome = run->stop_outcome;
        stop_message(run, res->error, sizeof res->error);
    }
    res->duration_ms = (int64_t)((clock_mono_ns() - t->started_ns) / 1000000);
    if (run->prev)
        run->prev->next = run->next;
    else
        r->runs = run->next;
    if (run->next) run->next->prev = run->prev;
    index_remove(r, run);
    r->running--;
    if (run->kind == KIND_C) job_close(&run->job);
    free(run->fail_msg);
    run->fail_msg = NULL;
    run->t = NULL;
    run->res = NULL;
    r->closing_runs++;
    uv_close((uv_handle_t *)&run->timer, run_closed_cb);
    r->done(r, t, res, r->arg);
}

static void spawn_unqueue(struct runner *r, struct run *run);

/* Records the first stop reason and starts stopping the work; completion comes later. */
static void request_stop(struct run *run, enum runner_outcome why) {
    if (run->stopped) return;
    run->stopped = true;
    run->stop_outcome = why;
    switch (run->kind) {
    case KIND_IMMEDIATE: break; /* its zero timer completes it */
    case KIND_SLEEP: uv_timer_start(&run->timer, timer_cb, 0, 0); break;
    case KIND_C:
        atomic_store(&run->job.stopping, true); /* a job no thread took yet never runs */
        break;
    case KIND_EXEC:
        if (run->exec) {
            exec_stop(run->exec);
        } else { /* still waiting for its spawn: it never runs, and ends on the next turn */
            spawn_unqueue(run->r, run);
            run->kind = KIND_IMMEDIATE;
            uv_timer_start(&run->timer, timer_cb, 0, 0);
        }
        break;
    }
}

static void timer_cb(uv_timer_t *h) {
    struct run *run = container_of(h, struct run, timer);
    switch (run->kind) {
    case KIND_IMMEDIATE: complete(run); break;
    case KIND_SLEEP:
        if (run->sleep_times_out) request_stop(run, RUN_TIMEDOUT);
        complete(run);
        break;
    case KIND_C:
    case KIND_EXEC: request_stop(run, RUN_TIMEDOUT); break;
    }
}

/* ---- the kinds ---- */

static void work_cb(struct bgq_job *j) { /* on a handler thread */
    struct run *run = container_of(j, struct run, bj);
    if (atomic_load(&run->job.stopping)) {
        run->never_ran = true;
        return;
    }
    run->fn_rc = run->fn(&run->job, run->fn_arg);
}

static void after_work_cb(struct bgq_job *j) {
    struct run *run = container_of(j, struct run, bj);
    struct runner_result *res = run->res;
    int status = run->never_ran ? UV_ECANCELED : 0;
    pthread_mutex_lock(&run->job.mu); /* the handler returned; this only orders memory */
    res->log = run->job.log;
    buf_init(&run->job.log);
    res->log_truncated = run->job.log_truncated;
    if (status == 0 && run->fn_rc == 0) {
        res->outcome = RUN_SUCCESS;
    } else if (status == 0) {
        res->outcome = RUN_FAILED;
        if (run->job.error[0])
            snprintf(res->error, sizeof res->error, "%s", run->job.error);
        else
            snprintf(res->error, sizeof res->error, "handler '%s' failed (returned %d)",
                     run->t->type, run->fn_rc);
    } /* else UV_ECANCELED: never ran, and only a stop cancels, so the stop reason applies */
    pthread_mutex_unlock(&run->job.mu);
    complete(run);
}

static void start_timeout(struct run *run) {
    if (run->t->timeout_ms > 0)
        uv_timer_start(&run->timer, timer_cb, (uint64_t)run->t->timeout_ms, 0);
}

static int start_c(struct run *run, shoal_handler_fn fn, void *arg) {
    struct runner_task *t = run->t;
    run->kind = KIND_C;
    run->fn = fn;
    run->fn_arg = arg;
    job_init(&run->job, t->id, t->type, t->args, t->args_len, t->attempt, run->r->log_cap);
    struct runner *r = run->r;
    if (!r->pool) {
        int rc = bgq_new(r->loop, r->pool_threads, TASK_NICE, &r->pool);
        if (rc != 0) {
            r->pool = NULL;
            job_close(&run->job);
            run->kind = KIND_IMMEDIATE;
            snprintf(run->res->error, sizeof run->res->error,
                     "no thread for C handlers could be started: %s", uv_strerror(rc));
            return -EAGAIN;
        }
    }
    run->bj.work = work_cb;
    run->bj.done = after_work_cb;
    bgq_submit(r->pool, &run->bj);
    start_timeout(run);
    return 0;
}

static int decode_error(struct run *run, const char *why) {
    snprintf(run->res->error, sizeof run->res->error, "payload cannot be decoded: %s", why);
    return -EINVAL;
}

static int fail_fn(struct shoal_job *job, void *arg) {
    shoal_job_fail(job, "%s", (const char *)arg);
    return 1;
}

/* noop does no work, so it needs no thread: it succeeds on the next loop iteration through
 * the same zero timer as an immediate failure (never from inside runner_start). */
static int start_noop(struct run *run) {
    run->kind = KIND_IMMEDIATE;
    run->res->outcome = RUN_SUCCESS;
    uv_timer_start(&run->timer, timer_cb, 0, 0);
    return 0;
}

static int start_fail(struct run *run) {
    char why[256];
    if (task_args_fail_decode(run->t->args, run->t->args_len, &run->fail_msg, why, sizeof why) < 0)
        return decode_error(run, why);
    return start_c(run, fail_fn, run->fail_msg);
}

static int start_sleep(struct run *run) {
    struct runner_task *t = run->t;
    char why[256];
    int64_t ms;
    if (task_args_sleep_decode(t->args, t->args_len, &ms, why, sizeof why) < 0)
        return decode_error(run, why);
    run->kind = KIND_SLEEP;
    run->res->outcome = RUN_SUCCESS;
    if (t->timeout_ms > 0 && t->timeout_ms < ms) {
        ms = t->timeout_ms;
        run->sleep_times_out = true;
    }
    uv_timer_start(&run->timer, timer_cb, (uint64_t)ms, 0);
    return 0;
}

static void exec_finished_cb(struct exec_proc *p, struct exec_result *x, void *arg) {
    struct run *run = arg;
    struct runner_result *res = run->res;
    char sb[32];
    res->log = x->log;
    buf_init(&x->log);
    res->log_truncated = x->log_truncated;
    res->outcome = RUN_FAILED;
    if (x->spawn_err) {
        snprintf(res->error, sizeof res->error, "cannot start %s: %s", x->spawn_what,
                 uv_strerror(x->spawn_err));
    } else if (x->term_signal) {
        res->exit_code = 128 + x->term_signal;
        snprintf(res->error, sizeof res->error, "killed by signal %s",
                 signal_name(x->term_signal, sb, sizeof sb));
    } else {
        res->exit_code = (int)x->exit_status;
        if (x->exit_status == 0)
            res->outcome = RUN_SUCCESS;
        else
            snprintf(res->error, sizeof res->error, "exited with code %d", res->exit_code);
    }
    run->exec_killed = x->killed;
    run->exec = NULL;
    complete(run);
}

/* Spawns a waiting exec run now. Its failure (a bad payload, a program not allowed) completes
 * the run as Failed; called only from the spawner's callback. */
static void spawn_now(struct run *run) {
    struct runner *r = run->r;
    struct exec_opts o = {.allow_exec = r->allow_exec,
                          .log_cap = r->log_cap,
                          .kill_grace_ms = r->kill_grace_ms,
                          .shim = r->exec_shim,
                          .package_dir = r->package_dir,
                          .exec_env_allow = r->exec_env_allow,
                          .task_env_allow = r->task_env_allow,
                          .node_name = r->node_name,
                          .task_id = run->t->id,
                          .attempt = run->t->attempt,
                          .cred = r->exec_cred,
                          .orphan_grace_ms = r->orphan_grace_ms,
                          .lease_until_ms = r->lease_until_ms};
    if (exec_start(r->loop, &o, run->t->args, run->t->args_len, exec_finished_cb, run, &run->exec,
                   run->res->error, sizeof run->res->error) < 0) {
        run->kind = KIND_IMMEDIATE;
        run->res->outcome = RUN_FAILED;
        complete(run); /* closing the timer stops its timeout */
    }
}

/* Active only while the list is not empty (spawn_unqueue stops it when it empties). */
static void spawner_cb(uv_idle_t *h) {
    struct runner *r = container_of(h, struct runner, spawner);
    struct run *run = r->spawn_first;
    spawn_unqueue(r, run);
    spawn_now(run);
}

static void spawn_unqueue(struct runner *r, struct run *run) {
    if (run->spawn_prev)
        run->spawn_prev->spawn_next = run->spawn_next;
    else
        r->spawn_first = run->spawn_next;
    if (run->spawn_next)
        run->spawn_next->spawn_prev = run->spawn_prev;
    else
        r->spawn_last = run->spawn_prev;
    run->spawn_prev = run->spawn_next = NULL;
    if (!r->spawn_first) uv_idle_stop(&r->spawner);
}

/* A process is not spawned here but queued, and the spawner starts one a loop turn: a spawn
 * holds the loop until the child has exec'd (fork and exec: 2-4 ms on a small virtual machine),
 * and a claim answer of 64 exec tasks spawned at once held ping for over half a second
 * (docs/benchmarks.md, "Ping while a node takes exec tasks"). Its timeout counts from now. */
static int start_exec(struct run *run) {
    struct runner *r = run->r;
    run->kind = KIND_EXEC;
    run->spawn_prev = r->spawn_last;
    if (r->spawn_last)
        r->spawn_last->spawn_next = run;
    else
        r->spawn_first = run;
    r->spawn_last = run;
    uv_idle_start(&r->spawner, spawner_cb);
    start_timeout(run);
    return 0;
}

static const struct {
    const char *type;
    int (*start)(struct run *run);
} builtins[] = {
    {"exec", start_exec},
    {"fail", start_fail},
    {"noop", start_noop},
    {"sleep", start_sleep},
};

static int unknown_type(struct run *run) {
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "unknown task type '");
    for (const char *c = run->t->type; *c; c++) /* it came from Redis: keep it printable */
        buf_append(&b, isprint((unsigned char)*c) ? c : "?", 1);
    buf_puts(&b, "' (this node knows: exec, fail, noop, sleep");
    const struct shoal_handlers *h = run->r->handlers;
    for (size_t i = 0; h && i < h->n; i++) buf_printf(&b, ", %s", h->v[i].name);
    buf_puts(&b, ")");
    snprintf(run->res->error, sizeof run->res->error, "%s", b.data);
    buf_free(&b);
    return -EINVAL;
}

static int dispatch(struct run *run) {
    const char *type = run->t->type;
    for (size_t i = 0; i < ARRAY_SIZE(builtins); i++)
        if (strcmp(type, builtins[i].type) == 0) return builtins[i].start(run);
    const struct handler_entry *e = handlers_find(run->r->handlers, type);
    if (e) return start_c(run, e->fn, e->arg);
    return unknown_type(run);
}

/* ---- the API (contracts in runner.h) ---- */

struct runner *runner_new(uv_loop_t *loop, const struct runner_config *cfg, runner_done_cb done,
                          void *arg) {
    struct runner *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->allow_exec = xstrdup(cfg->allow_exec ? cfg->allow_exec : "");
    r->exec_shim = cfg->exec_shim ? xstrdup(cfg->exec_shim) : NULL;
    r->package_dir = cfg->package_dir ? xstrdup(cfg->package_dir) : NULL;
    r->exec_env_allow = cfg->exec_env_allow ? xstrdup(cfg->exec_env_allow) : NULL;
    r->task_env_allow = cfg->task_env_allow ? xstrdup(cfg->task_env_allow) : NULL;
    r->node_name = cfg->node_name ? xstrdup(cfg->node_name) : NULL;
    if (cfg->exec_cred) {
        r->exec_cred = xmalloc(sizeof *r->exec_cred);
        *r->exec_cred = *cfg->exec_cred;
    }
    r->log_cap = cfg->log_cap ? cfg->log_cap : DEFAULT_LOG_CAP;
    r->kill_grace_ms = cfg->kill_grace_ms > 0 ? cfg->kill_grace_ms : 0;
    r->orphan_grace_ms = cfg->orphan_grace_ms > 0 ? cfg->orphan_grace_ms : r->kill_grace_ms;
    r->handlers = cfg->handlers;
    r->pool_threads = cfg->handler_threads ? cfg->handler_threads : 4;
    r->done = done;
    r->arg = arg;
    uv_idle_init(loop, &r->spawner);
    uv_timer_init(loop, &r->self);
    return r;
}

void runner_start(struct runner *r, struct runner_task *t) {
    struct run *run = xcalloc(1, sizeof *run);
    run->r = r;
    run->t = t;
    run->res = xcalloc(1, sizeof *run->res);
    buf_init(&run->res->log);
    run->res->exit_code = -1;
    t->id[sizeof t->id - 1] = '\0';
    t->type[sizeof t->type - 1] = '\0';
    t->started_ns = clock_mono_ns();
    uv_update_time(r->loop); /* timers count from now, not from the loop's cached time */
    uv_timer_init(r->loop, &run->timer);
    run->next = r->runs;
    if (r->runs) r->runs->prev = run;
    r->runs = run;
    index_add(r, run);
    r->running++;

    int rc;
    if (r->closing || r->fenced) { /* started during runner_close, or while the node cannot
                                     * prove its liveness (a claim answered after the fence
                                     * fired): interrupted like the rest, never run */
        rc = -ECANCELED;
        run->stopped = true;
        run->stop_outcome = RUN_INTERRUPTED;
        if (!r->closing) run->interrupt_why = WHY_FENCED;
    } else {
        rc = dispatch(run);
    }
    if (rc < 0) { /* completes on the next loop iteration, never from here */
        run->kind = KIND_IMMEDIATE;
        run->res->outcome = RUN_FAILED;
        uv_timer_start(&run->timer, timer_cb, 0, 0);
    }
}

void runner_foreach(const struct runner *r, void (*fn)(const struct runner_task *t, void *arg),
                    void *arg) {
    for (const struct run *run = r->runs; run; run = run->next) fn(run->t, arg);
}

int runner_cancel(struct runner *r, const char *id) {
    int rc = UV_ENOENT;
    for (struct run *run = runs_of(r, id); run; run = run->same) {
        request_stop(run, RUN_CANCELED);
        rc = 0;
    }
    return rc;
}

bool runner_stopping(const struct runner *r, const char *id) {
    for (const struct run *run = runs_of(r, id); run; run = run->same)
        if (run->stopped) return true;
    return false;
}

unsigned runner_fence(struct runner *r, int64_t grace_ms) {
    unsigned n = 0;
    r->fenced = true;
    for (struct run *run = r->runs; run; run = run->next) {
        if (run->stopped) continue;
        n++;
        run->interrupt_why = WHY_FENCED;
        if (run->kind == KIND_EXEC && run->exec) exec_stop_within(run->exec, grace_ms);
        request_stop(run, RUN_INTERRUPTED);
    }
    return n;
}

void runner_extend(struct runner *r, int64_t until_ms) {
    r->lease_until_ms = until_ms;
    r->fenced = false;
    for (struct run *run = r->runs; run; run = run->next)
        if (run->kind == KIND_EXEC && run->exec && !run->stopped) exec_extend(run->exec, until_ms);
}

int runner_disown(struct runner *r, const char *id, int64_t grace_ms) {
    for (struct run *run = runs_of(r, id); run; run = run->same) {
        if (run->stopped) continue;
        run->interrupt_why = "Redis no longer records this run as this node's";
        if (run->kind == KIND_EXEC && run->exec) exec_stop_within(run->exec, grace_ms);
        request_stop(run, RUN_INTERRUPTED);
        return 0;
    }
    return UV_ENOENT;
}

void runner_stop_all(struct runner *r) {
    for (struct run *run = r->runs; run; run = run->next) request_stop(run, RUN_INTERRUPTED);
}

unsigned runner_running(const struct runner *r) { return r->running; }

static void self_closed_cb(uv_handle_t *h) {
    struct runner *r = container_of((uv_timer_t *)h, struct runner, self);
    void (*done)(void *) = r->close_done;
    void *arg = r->close_arg;
    free(r->allow_exec);
    free(r->exec_shim);
    free(r->package_dir);
    free(r->exec_env_allow);
    free(r->task_env_allow);
    free(r->node_name);
    free(r->exec_cred);
    free(r);
    if (done) done(arg);
}

/* The spawner closed: self goes last (libuv runs close callbacks newest first, so closing
 * both at once would free r before the spawner's close is done with it). */
static void spawner_closed_cb(uv_handle_t *h) {
    struct runner *r = container_of((uv_idle_t *)h, struct runner, spawner);
    uv_close((uv_handle_t *)&r->self, self_closed_cb);
}

static void maybe_finish(struct runner *r) {
    if (r->closing && r->running == 0 && r->closing_runs == 0 &&
        !uv_is_closing((uv_handle_t *)&r->spawner)) {
        if (r->pool) bgq_close(r->pool); /* no C run left, so no job: its threads are idle */
        r->pool = NULL;
        uv_close((uv_handle_t *)&r->spawner, spawner_closed_cb);
    }
}

/* Tasks still running are stopped as by runner_stop_all (their done_cb still runs). */
void runner_close(struct runner *r, void (*done)(void *arg), void *arg) {
    r->closing = true;
    r->close_done = done;
    r->close_arg = arg;
    runner_stop_all(r);
    maybe_finish(r);
}

void runner_task_free(struct runner_task *t) {
    if (!t) return;
    free(t->args);
    free(t);
}

void runner_result_free(struct runner_result *res) {
    if (!res) return;
    buf_free(&res->log);
    free(res);
}
