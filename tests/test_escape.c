/* test_escape.c: stopping a run stops everything it started. Real `shoal worker` processes run
 * an exec task whose program starts processes that try to outlive it: a plain background
 * child, a double fork (orphaned at once), a `setsid` child in a new session (out of the
 * process group), and children that ignore SIGTERM; the program itself ignores SIGTERM too.
 * Each records its pid. Whatever ends the run (the node SIGKILLed, a timeout, a cancel, the
 * node's shutdown, or just the program's own exit), none of those pids may be left alive.
 * Before the resident shim (worker/exec_child.c) the double fork and the setsid child lived on
 * under PID 1 in every case. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/client.h"
#include "common/task_codec.h"
#include "tests/harness.h"

#define ESCAPERS 6 /* pids the program records, its own included */

static struct h_redis redis;
static struct shoal_client client;
static struct h_worker w;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
    char err[256];
    cr_assert_eq(shoal_client_open(&client, redis.url, "shoal", err, sizeof err), 0, "%s", err);
    memset(&w, 0, sizeof w);
}
static void teardown(void) {
    if (w.pid > 0) h_worker_stop(&w);
    shoal_client_close(&client);
    h_redis_stop(&redis, false);
}
TestSuite(escape, .init = setup, .fini = teardown, .timeout = 60);

static void start_node(void) {
    /* heartbeat 200 ms: TTL 600 ms, so the grace after the node's death is min(300, 200) ms */
    const char *extra[] = {"--allow-exec",
                           "/bin/sh,/usr/bin/setsid", /* the program, setsid */
                           "--kill-grace",
                           "300ms",
                           "--grace",
                           "300ms",
                           NULL};
    h_worker_start(&w, &redis, "esc", extra);
}

/* Queues `/bin/sh -c script` with this timeout (0: none); returns its number. */
static int64_t enqueue_sh(const char *script, int64_t timeout_ms) {
    const char *argv[] = {"/bin/sh", "-c", script};
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, argv, 3, NULL, 0, NULL);
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    o.args = b.data;
    o.args_len = b.len;
    o.timeout_ms = timeout_ms;
    int64_t id = 0;
    char err[256];
    cr_assert_eq(shoal_enqueue(&client, &o, 1, &id, err, sizeof err), 0, "%s", err);
    buf_free(&b);
    return id;
}

/* The program: every process it starts tries to survive it, and it ignores SIGTERM. Each
 * writes its pid to the file; the program then waits (or exits at once with exit_now). */
static int64_t enqueue_escapers(const char *pidfile, int64_t timeout_ms, bool exit_now) {
    char script[2048];
    snprintf(
        script, sizeof script,
        "F=%s; trap '' TERM; "
        "sleep 301 & echo $! >> $F; "                              /* plain child */
        "( sleep 302 & echo $! >> $F ) & "                         /* double fork */
        "/usr/bin/setsid sh -c 'echo $$ >> %s; exec sleep 303' & " /* new session */
        "/usr/bin/setsid sh -c 'trap \"\" TERM; echo $$ >> %s; ( sleep 304 & echo $! >> %s ) & "
        "exec sleep 305' & " /* both, no TERM */
        "echo $$ >> $F; %s",
        pidfile, pidfile, pidfile, pidfile, exit_now ? "exit 0" : "while :; do sleep 1; done");
    return enqueue_sh(script, timeout_ms);
}

struct pids {
    const char *file;
    pid_t v[16];
    int n;
};

static bool all_recorded(void *arg) {
    struct pids *p = arg;
    char *s = h_read_file(p->file);
    p->n = 0;
    for (char *line = s, *next; line && *line && p->n < 16; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (atoi(line) > 0) p->v[p->n++] = (pid_t)atoi(line);
        if (!next) break;
    }
    free(s);
    return p->n >= ESCAPERS;
}

/* Alive: signalable and not a zombie (a zombie has ended; init reaps it in its own time). */
static bool alive(pid_t pid) {
    if (kill(pid, 0) != 0) return errno != ESRCH;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *s = h_read_file(path);
    if (!s) return false;
    const char *rp = strrchr(s, ')');
    bool zombie = rp && rp[1] == ' ' && rp[2] == 'Z';
    free(s);
    return !zombie;
}

static bool none_alive(void *arg) {
    struct pids *p = arg;
    for (int i = 0; i < p->n; i++)
        if (alive(p->v[i])) return false;
    return true;
}

/* Starts the escapers, waits until all recorded their pids, and returns the task id. */
static int64_t run_escapers(struct pids *p, char *pidfile, size_t len, int64_t timeout_ms,
                            bool exit_now) {
    snprintf(pidfile, len, "%s/escapers-%d", redis.dir, h_free_port());
    p->file = pidfile;
    int64_t id = enqueue_escapers(pidfile, timeout_ms, exit_now);
    cr_assert(h_eventually(all_recorded, p, 10000), "only %d of %d processes started", p->n,
              ESCAPERS);
    return id;
}

/* Every recorded pid must be gone within bound_ms; names the survivors, then kills them (the
 * test's own processes: never left behind, even on failure). */
static void assert_all_gone(struct pids *p, int bound_ms, const char *after) {
    bool ok = h_eventually(none_alive, p, bound_ms);
    char left[256] = "";
    size_t off = 0;
    for (int i = 0; i < p->n; i++)
        if (alive(p->v[i])) {
            off += (size_t)snprintf(left + off, sizeof left - off, " %d", (int)p->v[i]);
            kill(p->v[i], SIGKILL);
            if (off >= sizeof left) break;
        }
    cr_assert(ok, "after %s, these processes of the run were still alive %d ms later:%s", after,
              bound_ms, left);
}

Test(escape, node_sigkilled) {
    start_node();
    struct pids p = {0};
    char f[300];
    run_escapers(&p, f, sizeof f, 0, false);
    kill(w.pid, SIGKILL);
    h_wait(w.pid, 2000);
    w.pid = 0;
    /* orphan grace 200 ms, then SIGKILL rounds */
    assert_all_gone(&p, 3000, "the node was SIGKILLed");
}

Test(escape, timeout) {
    start_node();
    struct pids p = {0};
    char f[300];
    int64_t id = run_escapers(&p, f, sizeof f, 1500, false);
    cr_assert(h_task_reaches(&client, id, "TimedOut", 10000), "the task did not time out");
    assert_all_gone(&p, 1000, "the task timed out and was reported");
}

Test(escape, cancel) {
    start_node();
    struct pids p = {0};
    char f[300], res[64], err[256];
    int64_t id = run_escapers(&p, f, sizeof f, 0, false);
    cr_assert_eq(shoal_task_cancel(&client, id, res, sizeof res, err, sizeof err), 0, "%s", err);
    cr_assert(h_task_reaches(&client, id, "Canceled", 10000), "the task was not canceled");
    assert_all_gone(&p, 1000, "the task was canceled and reported");
}

Test(escape, node_shutdown) {
    start_node();
    struct pids p = {0};
    char f[300];
    run_escapers(&p, f, sizeof f, 0, false);
    kill(w.pid, SIGTERM);
    h_wait(w.pid, 10000);
    w.pid = 0;
    assert_all_gone(&p, 1000, "the node shut down");
}

Test(escape, program_exits) {
    start_node();
    struct pids p = {0};
    char f[300];
    int64_t id = run_escapers(&p, f, sizeof f, 0, true);
    cr_assert(h_task_reaches(&client, id, "Success", 10000), "the task did not succeed");
    assert_all_gone(&p, 1000, "the program exited and its task was reported");
}

/* A task running as the node's own account can kill its shim (`kill -9 $PPID`) after leaving a
 * process that holds its output. The node then wrote the next lease extension to the dead
 * shim's pipe and died of SIGPIPE: a task took its node down. Now the write fails with EPIPE,
 * the node stays up, and what the task left is killed when its output drains. */
Test(escape, a_task_that_kills_its_shim_does_not_take_the_node_down) {
    start_node();
    char script[512];
    snprintf(script, sizeof script, "(sleep 30 & echo $! > %s/left); sleep 0.1; kill -9 $PPID",
             redis.dir);
    int64_t id = enqueue_sh(script, 0);
    bool failed = h_task_reaches(&client, id, "Failed", 5000);
    usleep(600 * 1000); /* heartbeats (200 ms) go on: their lease extensions hit no shim */
    int st = 0;
    if (waitpid(w.pid, &st, WNOHANG) == w.pid) {
        w.pid = 0;
        cr_assert_fail("the node died (%s %d)", WIFSIGNALED(st) ? "signal" : "exit",
                       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    cr_assert(failed, "the task did not fail");
    cr_assert(h_ping_is(&w, 200, 2000), "the node does not answer ping");
    char path[300];
    snprintf(path, sizeof path, "%s/left", redis.dir);
    char *t = h_read_file(path);
    struct pids p = {.file = path, .v = {t ? (pid_t)atoi(t) : 0}, .n = t ? 1 : 0};
    free(t);
    assert_all_gone(&p, 2000, "its shim was killed");
}
