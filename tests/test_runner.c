/* test_runner.c: the task runner (worker/runner.c, exec.c, handlers.c) on a real libuv loop:
 * exec (exit codes, signals, allowlist, PATH, env, cwd, log cap, timeouts with TERM and KILL,
 * process groups, cancel, stop), sleep, noop, fail, custom C handlers, unknown types and
 * undecodable payloads. Each test has its own loop, a guard timer bounding every wait, and
 * ends with runner_close and uv_loop_close() == 0. done_cb is checked to run on the loop
 * thread, never inside runner_start, exactly once per task. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "common/buf.h"
#include "common/task_codec.h"
#include "common/util.h"
#include "harness.h"
#include "worker/exec.h"
#include "worker/handler.h"
#include "worker/runner.h"

#define MAX_TASKS 64
#define ALLOW_SYS "/bin/,/usr/bin/"

struct ctx {
    uv_loop_t loop;
    struct runner *r;
    struct runner_config cfg;
    uv_timer_t guard;  /* fails the test if it fires */
    uv_timer_t action; /* runs act after a delay */
    void (*act)(struct ctx *c);
    unsigned started, got;
    struct runner_task *task[MAX_TASKS];
    struct runner_result *res[MAX_TASKS];
    int calls[MAX_TASKS]; /* done_cb calls per task */
    bool in_start, sync_call, wrong_thread, timed_out, closed;
    bool manual_close; /* the test calls runner_close itself */
    pthread_t loop_thread;
};

static void guard_cb(uv_timer_t *t) {
    struct ctx *c = t->data;
    c->timed_out = true;
    uv_stop(&c->loop);
}

static void closed_cb(void *arg) { ((struct ctx *)arg)->closed = true; }

static void done_cb(struct runner *r, struct runner_task *t, struct runner_result *res, void *arg) {
    struct ctx *c = arg;
    size_t i = (size_t)(uintptr_t)t->user;
    if (c->in_start) c->sync_call = true;
    if (!pthread_equal(pthread_self(), c->loop_thread)) c->wrong_thread = true;
    c->calls[i]++;
    c->task[i] = t;
    c->res[i] = res;
    if (++c->got == c->started && !c->manual_close) {
        runner_close(c->r, closed_cb, c);
        uv_close((uv_handle_t *)&c->guard, NULL);
        uv_close((uv_handle_t *)&c->action, NULL);
    }
}

static const char *ctx_shim; /* exec through `shoal exec-child` when set (the node's way) */

static void ctx_init(struct ctx *c, const char *allow, int64_t grace_ms,
                     const struct shoal_handlers *h) {
    memset(c, 0, sizeof *c);
    cr_assert_eq(uv_loop_init(&c->loop), 0);
    c->cfg = (struct runner_config){.allow_exec = allow,
                                    .log_cap = 65536,
                                    .kill_grace_ms = grace_ms,
                                    .handlers = h,
                                    .exec_shim = ctx_shim};
    c->loop_thread = pthread_self();
    c->r = runner_new(&c->loop, &c->cfg, done_cb, c);
    uv_timer_init(&c->loop, &c->guard);
    uv_timer_init(&c->loop, &c->action);
    c->guard.data = c->action.data = c;
    uv_timer_start(&c->guard, guard_cb, 20000, 0);
}

/* Replaces the runner (nothing started yet) after a test changed c->cfg. */
static void ctx_reconfig(struct ctx *c) {
    runner_close(c->r, NULL, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    c->r = runner_new(&c->loop, &c->cfg, done_cb, c);
}

/* Starts a task of type with a copy of args under the given id (NULL: ServerTasks-<index+1>);
 * returns its index. */
static size_t start_as(struct ctx *c, const char *id, const char *type, const void *args,
                       size_t len, int64_t timeout_ms) {
    cr_assert_lt(c->started, MAX_TASKS);
    struct runner_task *t = xcalloc(1, sizeof *t);
    size_t i = c->started++;
    if (id)
        snprintf(t->id, sizeof t->id, "%s", id);
    else
        snprintf(t->id, sizeof t->id, "ServerTasks-%zu", i + 1);
    snprintf(t->type, sizeof t->type, "%s", type);
    if (len) {
        t->args = xmalloc(len);
        memcpy(t->args, args, len);
        t->args_len = len;
    }
    t->timeout_ms = timeout_ms;
    t->attempt = 1;
    t->user = (void *)(uintptr_t)i;
    c->in_start = true;
    runner_start(c->r, t);
    c->in_start = false;
    return i;
}

static size_t start(struct ctx *c, const char *type, const void *args, size_t len,
                    int64_t timeout_ms) {
    return start_as(c, NULL, type, args, len, timeout_ms);
}

static size_t start_exec(struct ctx *c, int64_t timeout_ms, const char *const *argv, int argc,
                         const char *const *env, int envc, const char *cwd) {
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, argv, argc, env, envc, cwd);
    size_t i = start(c, "exec", b.data, b.len, timeout_ms);
    buf_free(&b);
    return i;
}

static size_t start_sh(struct ctx *c, int64_t timeout_ms, const char *script) {
    const char *argv[] = {"/bin/sh", "-c", script};
    return start_exec(c, timeout_ms, argv, 3, NULL, 0, NULL);
}

/* A task of a type that takes a list of strings, under the given id (NULL: as start). */
static size_t start_strings_as(struct ctx *c, const char *id, const char *type,
                               const char *const *items, int n, int64_t timeout_ms) {
    struct buf b;
    buf_init(&b);
    task_args_strings_encode(&b, items, n);
    size_t i = start_as(c, id, type, b.data, b.len, timeout_ms);
    buf_free(&b);
    return i;
}

static size_t start_strings(struct ctx *c, const char *type, const char *const *items, int n,
                            int64_t timeout_ms) {
    return start_strings_as(c, NULL, type, items, n, timeout_ms);
}

static void action_cb(uv_timer_t *t) {
    struct ctx *c = t->data;
    c->act(c);
}

static void after(struct ctx *c, uint64_t ms, void (*act)(struct ctx *c)) {
    c->act = act;
    uv_timer_start(&c->action, action_cb, ms, 0);
}

/* Runs the loop until every task completed and the runner closed; checks the invariants. */
static void finish(struct ctx *c) {
    if (c->started == 0) {
        runner_close(c->r, closed_cb, c);
        uv_close((uv_handle_t *)&c->guard, NULL);
        uv_close((uv_handle_t *)&c->action, NULL);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    cr_assert_not(c->timed_out, "timed out: %u of %u tasks completed", c->got, c->started);
    cr_assert_not(c->sync_call, "done_cb ran inside runner_start");
    cr_assert_not(c->wrong_thread, "done_cb ran off the loop thread");
    cr_assert(c->closed, "runner_close's callback did not run");
    for (unsigned i = 0; i < c->started; i++)
        cr_assert_eq(c->calls[i], 1, "task %u: %d calls", i, c->calls[i]);
    cr_assert_eq(uv_loop_close(&c->loop), 0, "handles left open");
}

static void ctx_free(struct ctx *c) {
    for (unsigned i = 0; i < c->started; i++) {
        runner_task_free(c->task[i]);
        runner_result_free(c->res[i]);
    }
}

static void assert_outcome(struct ctx *c, size_t i, enum runner_outcome want,
                           const char *err_part) {
    struct runner_result *res = c->res[i];
    cr_assert_eq(res->outcome, want, "task %zu: outcome %d, want %d (error '%s', log '%s')", i,
                 res->outcome, want, res->error, res->log.data ? res->log.data : "");
    if (err_part)
        cr_assert(strstr(res->error, err_part), "task %zu: error '%s' lacks '%s'", i, res->error,
                  err_part);
    else
        cr_assert_str_eq(res->error, "", "task %zu", i);
}

static const char *log_of(struct ctx *c, size_t i) {
    return c->res[i]->log.data ? c->res[i]->log.data : "";
}

/* ---- exec ---- */

Test(exec, echo_succeeds_with_its_output) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    const char *argv[] = {"/bin/echo", "hello", "world"};
    start_exec(&c, 5000, argv, 3, NULL, 0, NULL);
    cr_assert_eq(runner_running(c.r), 1);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert_str_eq(log_of(&c, 0), "hello world\n");
    cr_assert_not(c.res[0]->log_truncated);
    cr_assert_eq(c.res[0]->exit_code, 0);
    cr_assert_str_eq(c.task[0]->id, "ServerTasks-1");
    ctx_free(&c);
}

Test(exec, exit_code_and_signal_fail) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    start_sh(&c, 5000, "echo out; echo err >&2; exit 3");
    start_sh(&c, 5000, "kill -USR1 $$");
    finish(&c);
    assert_outcome(&c, 0, RUN_FAILED, "exited with code 3");
    cr_assert_eq(c.res[0]->exit_code, 3);
    cr_assert(strstr(log_of(&c, 0), "out\n") && strstr(log_of(&c, 0), "err\n"), "%s",
              log_of(&c, 0));
    assert_outcome(&c, 1, RUN_FAILED, "killed by signal SIGUSR1");
    cr_assert_eq(c.res[1]->exit_code, 128 + SIGUSR1);
    ctx_free(&c);
}

Test(exec, empty_allowlist_refuses_everything) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    const char *argv[] = {"echo", "hi"};
    start_exec(&c, 0, argv, 2, NULL, 0, NULL);
    c.cfg.allow_exec = NULL; /* the runner copied the config: this changes nothing */
    finish(&c);
    assert_outcome(&c, 0, RUN_FAILED, "this node allows no programs; start it with --allow-exec /");
    cr_assert_eq(c.res[0]->exit_code, -1);
    ctx_free(&c);
}

Test(exec, allowlist_rules) {
    char path[4096], err[512];
    static const struct {
        const char *allow, *argv0;
        int rc;
        const char *err;
    } cases[] = {
        {"/bin/", "/bin/echo", 0, NULL},
        {"/usr/bin/", "/usr/bin/echo", 0, NULL},
        {" /usr/local/bin/x , /bin/echo ", "/bin/echo", 0, NULL},
        {"/sbin/", "/usr/bin/echo", -EINVAL,
         "not in this node's --allow-exec list; allow it with --allow-exec /usr/bin/echo (or its "
         "directory, /usr/bin/)"},
        {"/bin", "/bin/echo", -EINVAL, "not in this node's --allow-exec list"},
        {"/bin/ech", "/bin/echo", -EINVAL, "not in this node's --allow-exec list"},
        {"/bin/", "/bin/", -EINVAL, "an empty, '.' or '..' segment"},
        {"bin/", "/bin/echo", -EINVAL, "this node allows no programs"},
        {"/usr/bin/", "/usr/bin/../../tmp/x", -EINVAL, "an empty, '.' or '..' segment"},
        {"/usr/bin/", "/usr/bin//echo", -EINVAL, "an empty, '.' or '..' segment"},
        {"/usr/bin/", "./echo", -EINVAL, "is a relative path"},
        {"/usr/bin/", "bin/echo", -EINVAL, "is a relative path"},
        {"/usr/bin/", "no-such-program-shoal", -ENOENT, "was not found in the node's PATH"},
        {NULL, "/bin/echo", -EINVAL, "this node allows no programs"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        err[0] = '\0';
        int rc = exec_resolve(cases[i].allow, cases[i].argv0, path, sizeof path, err, sizeof err);
        cr_assert_eq(rc, cases[i].rc, "case %zu: rc %d (%s)", i, rc, err);
        char real[4096];
        if (cases[i].err)
            cr_assert(strstr(err, cases[i].err), "case %zu: '%s'", i, err);
        else
            cr_assert_str_eq(path, realpath(cases[i].argv0, real), "case %zu", i);
    }
}

Test(exec, bare_names_resolve_through_path) {
    char path[4096], err[512];
    cr_assert_eq(exec_resolve(ALLOW_SYS, "echo", path, sizeof path, err, sizeof err), 0, "%s", err);
    cr_assert(strcmp(path, "/usr/bin/echo") == 0 || strcmp(path, "/bin/echo") == 0, "%s", path);
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    const char *argv[] = {"echo", "via", "PATH"};
    start_exec(&c, 5000, argv, 3, NULL, 0, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert_str_eq(log_of(&c, 0), "via PATH\n");
    ctx_free(&c);
}

Test(exec, refused_through_the_runner) {
    struct ctx c;
    ctx_init(&c, "/usr/local/bin/", 1000, NULL);
    const char *a0[] = {"/bin/echo"};
    const char *a1[] = {"./x"};
    start_exec(&c, 0, a0, 1, NULL, 0, NULL);
    start_exec(&c, 0, a1, 1, NULL, 0, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_FAILED, "program /bin/echo");
    assert_outcome(&c, 0, RUN_FAILED, "is not in this node's --allow-exec list");
    assert_outcome(&c, 1, RUN_FAILED, "is a relative path");
    ctx_free(&c);
}

Test(exec, spawn_failures_name_the_reason) {
    struct ctx c;
    char file[] = "/tmp/shoal-noexec-XXXXXX"; /* mode 0600: not executable, even for root */
    int fd = mkstemp(file);
    cr_assert_geq(fd, 0);
    close(fd);
    ctx_init(&c, "/bin/,/usr/bin/,/tmp/", 1000, NULL);
    const char *pwd[] = {"/bin/pwd"};
    const char *noexec[] = {file};
    start_exec(&c, 5000, pwd, 1, NULL, 0, "/nonexistent-shoal");
    start_exec(&c, 5000, noexec, 1, NULL, 0, NULL);
    finish(&c);
    unlink(file);
    char pwd_real[4096], want[4200];
    snprintf(want, sizeof want, "cannot start %s in /nonexistent-shoal: no such file or directory",
             realpath("/bin/pwd", pwd_real));
    assert_outcome(&c, 0, RUN_FAILED, want);
    assert_outcome(&c, 1, RUN_FAILED, "permission denied");
    cr_assert(strstr(c.res[1]->error, file), "%s", c.res[1]->error);
    ctx_free(&c);
}

Test(exec, env_and_cwd) {
    setenv("T_NODE_ONLY", "node", 1);
    setenv("T_OVER", "node", 1);
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    const char *argv[] = {"/bin/sh", "-c",
                          "printf '%s|%s|%s|' \"$T_NODE_ONLY\" \"$T_OVER\" \"$NEW\"; /bin/pwd"};
    const char *env[] = {"T_OVER=task", "NEW=x y"};
    start_exec(&c, 5000, argv, 3, env, 2, "/tmp");
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert_str_eq(log_of(&c, 0), "|task|x y|/tmp\n"); /* the node's own: not inherited */
    ctx_free(&c);
}

/* ---- the task's environment: built, not inherited; loader hooks refused ---- */

#define NODE_KEY "node-api-key-6b1f0e"
#define NODE_PW "redis-pw-93c2aa"
#define NODE_FOO "foo-secret-7d41"

static void node_secrets(void) {
    setenv("SHOAL_API_KEY", NODE_KEY, 1);
    setenv("SHOAL_REDIS_URL", "redis://shoal:" NODE_PW "@127.0.0.1:6379/0", 1);
    setenv("FOO_SECRET", NODE_FOO, 1);
    setenv("LANG", "C.UTF-8", 1);
}

/* /usr/bin/env run as a task, through the shim (as a node does) or not: none of the node's
 * secrets show; what it allows with --exec-env-allow does; the generated SHOAL_TASK_* do. */
static void env_is_built(const char *shim) {
    node_secrets();
    struct ctx c;
    ctx_shim = shim;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    ctx_shim = NULL;
    c.cfg.node_name = "node-7";
    ctx_reconfig(&c);
    const char *argv[] = {"/usr/bin/env"};
    const char *env[] = {"TASK_VAR=from-task", "LANG=de_DE.UTF-8"};
    start_exec(&c, 5000, argv, 1, env, 2, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    const char *log = log_of(&c, 0);
    cr_assert_null(strstr(log, NODE_KEY), "the node's API key leaked:\n%s", log);
    cr_assert_null(strstr(log, NODE_PW), "the Redis password leaked:\n%s", log);
    cr_assert_null(strstr(log, "SHOAL_API_KEY"), "%s", log);
    cr_assert_null(strstr(log, "SHOAL_REDIS_URL"), "%s", log);
    cr_assert_null(strstr(log, "FOO_SECRET"), "not allowed, yet passed:\n%s", log);
    cr_assert(strstr(log, "SHOAL_TASK_ID=ServerTasks-1\n"), "%s", log);
    cr_assert(strstr(log, "SHOAL_TASK_ATTEMPT=1\n"), "%s", log);
    cr_assert(strstr(log, "SHOAL_TASK_NODE=node-7\n"), "%s", log);
    cr_assert(strstr(log, "TASK_VAR=from-task\n"), "%s", log);
    cr_assert(strstr(log, "LANG=de_DE.UTF-8\n"), "the task's value wins:\n%s", log);
    cr_assert(strstr(log, "PATH=/"), "%s", log);
    ctx_free(&c);
}

Test(exec, env_is_built_not_inherited) { env_is_built(NULL); }
Test(exec, env_is_built_not_inherited_shim) { env_is_built(getenv("SHOAL_BIN")); }

Test(exec, exec_env_allow_passes_named_node_variables) {
    node_secrets();
    struct ctx c;
    ctx_shim = getenv("SHOAL_BIN");
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    ctx_shim = NULL;
    c.cfg.exec_env_allow = "FOO_*, SHOAL*"; /* SHOAL_* never passes, whatever the list */
    ctx_reconfig(&c);
    const char *argv[] = {"/usr/bin/env"};
    start_exec(&c, 5000, argv, 1, NULL, 0, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    const char *log = log_of(&c, 0);
    cr_assert(strstr(log, "FOO_SECRET=" NODE_FOO "\n"), "%s", log);
    cr_assert_null(strstr(log, NODE_KEY), "%s", log);
    cr_assert_null(strstr(log, NODE_PW), "%s", log);
    ctx_free(&c);
}

/* Loader, shell and interpreter hooks, and SHOAL_*, in a task's env: the task fails naming the
 * variable, and nothing ran (the program would have created a file). */
Test(exec, denied_env_fails_before_anything_runs) {
    static const char *const bad[] = {
        "LD_PRELOAD=/tmp/shoal-evil.so",
        "GCONV_PATH=/tmp",
        "BASH_ENV=/tmp/x",
        "PYTHONPATH=/tmp",
        "NODE_OPTIONS=--require /tmp/x.js",
        "SHOAL_TASK_ID=ServerTasks-999",
        "LD_LIBRARY_PATH=/tmp",
        "GLIBC_TUNABLES=glibc.malloc.check=3",
        "PERL5OPT=-d",
    };
    char dir[] = "/tmp/shoal-deny-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct ctx c;
    ctx_shim = getenv("SHOAL_BIN");
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    ctx_shim = NULL;
    char script[ARRAY_SIZE(bad)][300];
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        snprintf(script[i], sizeof script[i], "touch %s/ran-%zu", dir, i);
        const char *argv[] = {"/bin/sh", "-c", script[i]};
        const char *env[] = {"OK_VAR=1", bad[i]};
        start_exec(&c, 5000, argv, 3, env, 2, NULL);
    }
    const char *argv[] = {"/bin/sh", "-c", "touch \"$0\"/ran-ok", dir};
    const char *okenv[] = {"OK_VAR=1", "TMPDIR=/tmp"};
    start_exec(&c, 5000, argv, 4, okenv, 2, NULL);
    finish(&c);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char want[128], f[300];
        snprintf(want, sizeof want, "env %.*s is refused: ", (int)(strchr(bad[i], '=') - bad[i]),
                 bad[i]);
        assert_outcome(&c, i, RUN_FAILED, want);
        snprintf(f, sizeof f, "%s/ran-%zu", dir, i);
        cr_assert_neq(access(f, F_OK), 0, "task %zu (%s) ran", i, bad[i]);
    }
    assert_outcome(&c, 0, RUN_FAILED, "it changes how programs are loaded");
    assert_outcome(&c, 5, RUN_FAILED, "SHOAL_* names belong to the node");
    assert_outcome(&c, ARRAY_SIZE(bad), RUN_SUCCESS, NULL); /* the control did run */
    char f[300];
    snprintf(f, sizeof f, "%s/ran-ok", dir);
    cr_assert_eq(unlink(f), 0, "the control task did not run");
    cr_assert_eq(rmdir(dir), 0);
    ctx_free(&c);
}

Test(exec, task_env_allow_limits_names) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    c.cfg.task_env_allow = "APP_*,MODE";
    ctx_reconfig(&c);
    const char *argv[] = {"/bin/sh", "-c", "echo $APP_X $MODE"};
    const char *ok[] = {"APP_X=1", "MODE=fast"};
    const char *no[] = {"APP_X=1", "OTHER=2"};
    start_exec(&c, 5000, argv, 3, ok, 2, NULL);
    start_exec(&c, 5000, argv, 3, no, 2, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert_str_eq(log_of(&c, 0), "1 fast\n");
    assert_outcome(
        &c, 1, RUN_FAILED,
        "env OTHER is refused: this node's --task-env-allow (APP_*,MODE) does not list it");
    ctx_free(&c);
}

/* The shim is the node's own binary: were it started with the task's environment, LD_PRELOAD
 * and friends would run inside it. A wrapper in its place records the environment it starts
 * with: it must hold neither the task's variables nor the node's. */
Test(exec, shim_starts_without_the_task_env) {
    node_secrets();
    char dir[] = "/tmp/shoal-shim-XXXXXX", wrapper[300], seen[300];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(wrapper, sizeof wrapper, "%s/shim", dir);
    snprintf(seen, sizeof seen, "%s/shim-env", dir);
    FILE *f = fopen(wrapper, "w");
    cr_assert_not_null(f);
    fprintf(f, "#!/bin/sh\n/usr/bin/env > %s\nexec %s \"$@\"\n", seen, getenv("SHOAL_BIN"));
    fclose(f);
    cr_assert_eq(chmod(wrapper, 0755), 0);
    struct ctx c;
    ctx_shim = wrapper;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    ctx_shim = NULL;
    const char *argv[] = {"/usr/bin/env"};
    const char *env[] = {"TASK_MARKER=only-for-the-program"};
    start_exec(&c, 5000, argv, 1, env, 1, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert(strstr(log_of(&c, 0), "TASK_MARKER=only-for-the-program"), "%s", log_of(&c, 0));
    char *shim_env = h_read_file(seen);
    cr_assert_not_null(shim_env, "the wrapper did not run");
    cr_assert_null(strstr(shim_env, "TASK_MARKER"), "the shim started with the task's env:\n%s",
                   shim_env);
    cr_assert_null(strstr(shim_env, NODE_KEY), "the shim started with the node's env:\n%s",
                   shim_env);
    free(shim_env);
    unlink(seen);
    unlink(wrapper);
    rmdir(dir);
    ctx_free(&c);
}

/* ---- allow-list and symlinks ---- */

struct links {
    char dir[64], bin[128], opt[128], out_link[200], alias[200], real[200];
};
#pragma GCC diagnostic ignored "-Wformat-truncation" /* short /tmp paths */

/* dir/bin/ (to allow) holds out -> /usr/bin/id (outside it); dir/opt/prog is a copy of sh, and
 * dir/bin2/alias -> dir/opt/prog. */
static void make_links(struct links *l) {
    snprintf(l->dir, sizeof l->dir, "/tmp/shoal-links-XXXXXX");
    cr_assert_not_null(mkdtemp(l->dir));
    char b2[160], cmd[600];
    snprintf(l->bin, sizeof l->bin, "%s/bin/", l->dir);
    snprintf(l->opt, sizeof l->opt, "%s/opt/", l->dir);
    snprintf(b2, sizeof b2, "%s/bin2", l->dir);
    snprintf(l->out_link, sizeof l->out_link, "%sout", l->bin);
    snprintf(l->real, sizeof l->real, "%sprog", l->opt);
    snprintf(l->alias, sizeof l->alias, "%s/alias", b2);
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s %s %s && ln -s /usr/bin/id %s && cp /bin/sh %s && "
             "ln -s %s %s",
             l->bin, l->opt, b2, l->out_link, l->real, l->real, l->alias);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void rm_links(struct links *l) {
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", l->dir);
    cr_assert_eq(system(cmd), 0);
}

Test(exec, symlink_out_of_an_allowed_directory_is_refused) {
    struct links l;
    make_links(&l);
    char path[4096], err[512];
    int rc = exec_resolve(l.bin, l.out_link, path, sizeof path, err, sizeof err);
    cr_assert_eq(rc, -EINVAL, "a link to /usr/bin/id in an allowed directory was allowed");
    cr_assert(strstr(err, "resolves to /usr/bin/id, which is not in this node's --allow-exec "
                          "list (a symlink in an allowed directory does not allow"),
              "%s", err);
    struct ctx c;
    ctx_init(&c, l.bin, 1000, NULL);
    const char *argv[] = {l.out_link};
    start_exec(&c, 5000, argv, 1, NULL, 0, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_FAILED, "resolves to /usr/bin/id");
    cr_assert_str_eq(log_of(&c, 0), "");
    ctx_free(&c);
    rm_links(&l);
}

/* Allowing a link by name allows what it points to (the node runs the resolved file, with
 * argv[0] as the task gave it); allowing the directory the link points into works too. */
Test(exec, symlink_allowed_by_name_still_works) {
    struct links l;
    make_links(&l);
    char path[4096], err[512];
    cr_assert_eq(exec_resolve(l.alias, l.real, path, sizeof path, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(path, l.real);
    cr_assert_eq(exec_resolve(l.alias, l.alias, path, sizeof path, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(path, l.real, "the resolved path runs");
    cr_assert_eq(exec_resolve(l.opt, l.alias, path, sizeof path, err, sizeof err), 0, "%s", err);
    struct ctx c;
    ctx_shim = getenv("SHOAL_BIN");
    ctx_init(&c, l.alias, 1000, NULL);
    ctx_shim = NULL;
    const char *argv[] = {l.alias, "-c", "echo \"$0\"; readlink /proc/$$/exe"};
    start_exec(&c, 5000, argv, 3, NULL, 0, NULL);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    char want[500];
    snprintf(want, sizeof want, "%s\n%s\n", l.alias, l.real);
    cr_assert_str_eq(log_of(&c, 0), want);
    ctx_free(&c);
    rm_links(&l);
}

Test(exec, log_keeps_the_last_bytes) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    start_sh(&c, 10000, "head -c 100000 /dev/zero | tr '\\0' a; printf END >&2");
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    struct buf *log = &c.res[0]->log;
    cr_assert_eq(log->len, 65536);
    cr_assert(c.res[0]->log_truncated);
    cr_assert_eq(memcmp(log->data + log->len - 3, "END", 3), 0, "tail lost");
    cr_assert_eq(log->data[0], 'a');
    ctx_free(&c);
}

Test(exec, timeout_terminates_the_group) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 5000, NULL);
    start_sh(&c, 300, "sleep 30");
    finish(&c);
    assert_outcome(&c, 0, RUN_TIMEDOUT, "execution timeout of 300ms exceeded; process stopped");
    cr_assert_null(strstr(c.res[0]->error, "SIGKILL"), "%s", c.res[0]->error);
    cr_assert_eq(c.res[0]->exit_code, 128 + SIGTERM);
    cr_assert_lt(c.res[0]->duration_ms, 3000);
    cr_assert_geq(c.res[0]->duration_ms, 299);
    ctx_free(&c);
}

Test(exec, timeout_kills_after_the_grace) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 300, NULL);
    start_sh(&c, 200, "trap '' TERM; sleep 30");
    finish(&c);
    assert_outcome(
        &c, 0, RUN_TIMEDOUT,
        "execution timeout of 200ms exceeded; process stopped (SIGKILL after the 300ms grace)");
    cr_assert_eq(c.res[0]->exit_code, 128 + SIGKILL);
    cr_assert_geq(c.res[0]->duration_ms, 498);
    cr_assert_lt(c.res[0]->duration_ms, 5000);
    ctx_free(&c);
}

/* A process is gone when /proc has no entry or shows a zombie waiting for its reaper. */
static bool gone(long pid) {
    char p[64], st[512];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return true;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    char *rp = strrchr(st, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* Task i ran "sleep 30 & echo $!; wait" and timed out: the sleep it started must be gone. (Its
 * timeout is 1 s: at 300 ms the ASan build of the shim on a loaded machine timed out before the
 * shell printed the pid, and the test saw an empty log.) */
static void assert_child_died(struct ctx *c, size_t i) {
    assert_outcome(c, i, RUN_TIMEDOUT, "process stopped");
    long pid = atol(log_of(c, i));
    cr_assert_gt(pid, 0, "log: %s", log_of(c, i));
    for (int k = 0; k < 200 && !gone(pid); k++) usleep(10000);
    cr_assert(gone(pid), "child %ld survived its task", pid);
}

Test(exec, children_die_with_the_task) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 5000, NULL);
    start_sh(&c, 1000, "sleep 30 & echo $!; wait");
    finish(&c);
    assert_child_died(&c, 0);
    ctx_free(&c);
}

/* Through the shim, as a node runs them: the program is a child of the resident shim, in the
 * shim's process group (not the node's), in the node's session (a new session would be a scheduler autogroup of its
 * own, where nice 10 no longer puts it below the node), at nice 10; its children die with it. */
Test(exec, shim_own_group_same_session_nice) {
    ctx_shim = getenv("SHOAL_BIN");
    cr_assert(ctx_shim, "SHOAL_BIN is set by ctest");
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 5000, NULL);
    ctx_shim = NULL;
    start_sh(&c, 5000, "cat /proc/$$/stat");
    start_sh(&c, 1000, "sleep 30 & echo $!; wait");
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    const char *st = strrchr(log_of(&c, 0), ')');
    cr_assert(st, "log: %s", log_of(&c, 0));
    long pid = atol(log_of(&c, 0)), pgrp, sid, nice;
    char state;
    long f[16];
    /* after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice */
    int n = sscanf(st + 2, "%c %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld",
                   &state, &f[0], &pgrp, &sid, &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7],
                   &f[8], &f[9], &f[10], &f[11], &f[12], &nice);
    cr_assert_eq(n, 17, "stat: %s", log_of(&c, 0));
    cr_assert_neq(f[0], (long)getpid(), "the shim stays between the node and the program");
    cr_assert_eq(pgrp, f[0], "the shim's process group");
    cr_assert_neq(pgrp, (long)getpgrp(), "not the node's process group");
    (void)pid;
    cr_assert_eq(sid, (long)getsid(0), "the node's session");
    cr_assert_eq(nice, 10, "TASK_NICE");
    assert_child_died(&c, 1);
    ctx_free(&c);
}

Test(exec, output_held_open_does_not_hang) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    start_sh(&c, 0, "sleep 30 & echo $!; echo started"); /* sleep keeps stdout open */
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert(strstr(log_of(&c, 0), "started\n"), "%s", log_of(&c, 0));
    cr_assert(strstr(log_of(&c, 0), "remaining processes were killed"), "%s", log_of(&c, 0));
    cr_assert_lt(c.res[0]->duration_ms, 3000);
    long pid = atol(log_of(&c, 0));
    for (int i = 0; i < 200 && !gone(pid); i++) usleep(10000);
    cr_assert(gone(pid), "background child %ld survived", pid);
    ctx_free(&c);
}

static void cancel_first_cb(struct ctx *c) {
    cr_assert_eq(runner_cancel(c->r, "ServerTasks-1"), 0);
    cr_assert_eq(runner_cancel(c->r, "ServerTasks-1"), 0); /* twice: still one completion */
    cr_assert_eq(runner_cancel(c->r, "ServerTasks-999"), UV_ENOENT);
}

Test(exec, cancel) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 5000, NULL);
    const char *argv[] = {"/bin/sleep", "30"};
    start_exec(&c, 0, argv, 2, NULL, 0, NULL);
    after(&c, 100, cancel_first_cb);
    finish(&c);
    assert_outcome(&c, 0, RUN_CANCELED, "canceled");
    cr_assert_str_eq(c.res[0]->error, "canceled");
    cr_assert_eq(c.res[0]->exit_code, 128 + SIGTERM);
    ctx_free(&c);
}

/* ---- C handlers ---- */

/* Live children of this process: the runner spawns from the loop, which is this thread. */
static int children(void) {
    char p[64], buf[4096];
    snprintf(p, sizeof p, "/proc/self/task/%ld/children", (long)getpid());
    FILE *f = fopen(p, "r");
    cr_assert(f, "%s", p);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    int k = 0;
    for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
        k++;
    return k;
}

static void stop_all_cb(struct ctx *c) { runner_stop_all(c->r); }

/* A burst of exec tasks is spawned one a loop turn, never inside runner_start: a spawn holds
 * the loop until the child has exec'd, and a claim answer of 64 exec tasks spawned at once held
 * ping for over half a second. A task canceled while it waits for its spawn never runs. */
Test(exec, a_burst_is_spawned_one_a_loop_turn) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    const char *argv[] = {"/bin/sleep", "30"};
    int before = children();
    for (int i = 0; i < 6; i++) start_exec(&c, 0, argv, 2, NULL, 0, NULL);
    cr_assert_eq(children() - before, 0, "spawned inside runner_start");
    cr_assert_eq(runner_cancel(c.r, "ServerTasks-6"), 0); /* still waiting for its spawn */
    for (int turn = 1; turn <= 5; turn++) {
        uv_run(&c.loop, UV_RUN_NOWAIT);
        cr_assert_eq(children() - before, turn, "after %d loop turns", turn);
    }
    uv_run(&c.loop, UV_RUN_NOWAIT);
    cr_assert_eq(children() - before, 5, "the canceled task was spawned");
    after(&c, 0, stop_all_cb);
    finish(&c);
    for (int i = 0; i < 5; i++) assert_outcome(&c, i, RUN_INTERRUPTED, "shutting down");
    assert_outcome(&c, 5, RUN_CANCELED, "canceled");
    cr_assert_eq(c.res[5]->exit_code, -1, "it never ran");
    ctx_free(&c);
}

static int hello_fn(struct shoal_job *job, void *arg) {
    size_t n;
    const void *args = shoal_job_args(job, &n);
    shoal_job_log(job, "hello %d", *(int *)arg);
    shoal_job_log(job, "%s %s attempt %lld\n", shoal_job_id(job), shoal_job_type(job),
                  (long long)shoal_job_attempt(job));
    shoal_job_fail(job, "bad input: %zu bytes%s", n, args ? "" : " (none)");
    return 2;
}

static int loop_fn(struct shoal_job *job, void *arg) {
    while (!shoal_job_stopping(job)) usleep(1000);
    shoal_job_log(job, "stopping");
    return 0;
}

static int ok_fn(struct shoal_job *job, void *arg) { return 0; }
static int silent_fn(struct shoal_job *job, void *arg) { return 5; }

static int big_log_fn(struct shoal_job *job, void *arg) {
    for (int i = 0; i < 10000; i++) shoal_job_log(job, "line %05d of a long handler log", i);
    return 0;
}

static struct shoal_handlers *handlers(void) {
    static int one = 1;
    struct shoal_handlers *h = shoal_handlers_new();
    cr_assert_eq(shoal_handlers_add(h, "hello", silent_fn, NULL), 0);
    cr_assert_eq(shoal_handlers_add(h, "hello", hello_fn, &one), 0); /* replaces */
    cr_assert_eq(shoal_handlers_add(h, "loop", loop_fn, NULL), 0);
    cr_assert_eq(shoal_handlers_add(h, "ok", ok_fn, NULL), 0);
    cr_assert_eq(shoal_handlers_add(h, "silent", silent_fn, NULL), 0);
    cr_assert_eq(shoal_handlers_add(h, "big-log", big_log_fn, NULL), 0);
    return h;
}

Test(handlers, registry_refuses_builtins_and_bad_names) {
    struct shoal_handlers *h = shoal_handlers_new();
    const char *bad[] = {
        "exec", "sleep",
        "noop", "fail",
        "",     "a b",
        "x/y",  "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        cr_assert_eq(shoal_handlers_add(h, bad[i], ok_fn, NULL), -EINVAL, "accepted '%s'", bad[i]);
    cr_assert_eq(shoal_handlers_add(h, "ok", NULL, NULL), -EINVAL);
    cr_assert_eq(shoal_handlers_add(h, "resize.v2:img_x-1", ok_fn, NULL), 0);
    for (int i = 0; i < 20; i++) { /* growth */
        char n[16];
        snprintf(n, sizeof n, "h%d", i);
        cr_assert_eq(shoal_handlers_add(h, n, ok_fn, NULL), 0);
    }
    shoal_handlers_free(h);
    shoal_handlers_free(NULL);
}

Test(handlers, custom_success_failure_and_logs) {
    struct shoal_handlers *h = handlers();
    struct ctx c;
    ctx_init(&c, "", 1000, h);
    const char *items[] = {"a", "b"};
    start_strings(&c, "hello", items, 2, 5000);
    start(&c, "ok", NULL, 0, 0);
    start(&c, "silent", NULL, 0, 0);
    start(&c, "big-log", NULL, 0, 0);
    finish(&c);
    assert_outcome(&c, 0, RUN_FAILED, "bad input: 5 bytes");
    cr_assert_str_eq(log_of(&c, 0), "hello 1\nServerTasks-1 hello attempt 1\n");
    cr_assert_eq(c.res[0]->exit_code, -1);
    assert_outcome(&c, 1, RUN_SUCCESS, NULL);
    assert_outcome(&c, 2, RUN_FAILED, "handler 'silent' failed (returned 5)");
    assert_outcome(&c, 3, RUN_SUCCESS, NULL);
    cr_assert(c.res[3]->log_truncated);
    cr_assert_eq(c.res[3]->log.len, 65536);
    const char *tail = "line 09999 of a long handler log\n";
    cr_assert_str_eq(c.res[3]->log.data + c.res[3]->log.len - strlen(tail), tail);
    ctx_free(&c);
    shoal_handlers_free(h);
}

Test(handlers, timeout_sets_stopping_and_waits_for_the_handler) {
    struct shoal_handlers *h = handlers();
    struct ctx c;
    ctx_init(&c, "", 1000, h);
    start(&c, "loop", NULL, 0, 100);
    finish(&c);
    assert_outcome(&c, 0, RUN_TIMEDOUT, "execution timeout of 100ms exceeded; handler stopped");
    cr_assert_str_eq(log_of(&c, 0), "stopping\n");
    cr_assert_geq(c.res[0]->duration_ms, 99); /* timers have ms resolution */
    ctx_free(&c);
    shoal_handlers_free(h);
}

/* Waits (at most 5 s) until *arg handlers are in it at once: succeeds only if they are. */
static atomic_int gathered;
static int gather_fn(struct shoal_job *job, void *arg) {
    int want = *(int *)arg;
    atomic_fetch_add(&gathered, 1);
    for (int i = 0; i < 5000 && atomic_load(&gathered) < want; i++) usleep(1000);
    return atomic_load(&gathered) >= want ? 0 : 1;
}

/* The runner's handler threads start as runs need them: with --handler-threads 6, six
 * handlers that each wait for the others all run at once; a seventh waits for a thread. */
Test(handlers, as_many_run_at_once_as_there_are_handler_threads) {
    static int six = 6;
    struct shoal_handlers *h = shoal_handlers_new();
    cr_assert_eq(shoal_handlers_add(h, "gather", gather_fn, &six), 0);
    cr_assert_eq(shoal_handlers_add(h, "ok", ok_fn, NULL), 0);
    struct ctx c;
    ctx_init(&c, "", 1000, h);
    c.cfg.handler_threads = 6;
    ctx_reconfig(&c);
    atomic_store(&gathered, 0);
    for (int i = 0; i < 6; i++) start(&c, "gather", NULL, 0, 0);
    start(&c, "ok", NULL, 0, 0);
    finish(&c);
    for (unsigned i = 0; i < 7; i++) assert_outcome(&c, i, RUN_SUCCESS, NULL);
    ctx_free(&c);
    shoal_handlers_free(h);
}

static void stop_everything_cb(struct ctx *c) {
    cr_assert_eq(runner_running(c->r), c->started);
    runner_stop_all(c->r);
}

Test(handlers, stop_all_interrupts_every_kind) {
    struct shoal_handlers *h = handlers();
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 5000, h);
    const char *argv[] = {"/bin/sleep", "30"};
    start_exec(&c, 0, argv, 2, NULL, 0, NULL);
    const char *thirty[] = {"30s"};
    start_strings(&c, "sleep", thirty, 1, 0);
    for (int i = 0; i < 6; i++) start(&c, "loop", NULL, 0, 0); /* more than the pool's 4 threads */
    after(&c, 150, stop_everything_cb);
    finish(&c);
    for (unsigned i = 0; i < c.started; i++)
        assert_outcome(&c, i, RUN_INTERRUPTED, "interrupted: the node is shutting down");
    cr_assert_lt(c.res[1]->duration_ms, 2000);
    ctx_free(&c);
    shoal_handlers_free(h);
}

/* ---- built-ins, unknown types, bad payloads ---- */

Test(builtins, sleep_noop_fail) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    int64_t t0 = (int64_t)clock_mono_ms();
    const char *fifty[] = {"50ms"};
    start_strings(&c, "sleep", fifty, 1, 0);
    start(&c, "noop", NULL, 0, 0);
    const char *msg[] = {"disk", "full"};
    start_strings(&c, "fail", msg, 2, 0);
    start(&c, "fail", NULL, 0, 0);
    finish(&c);
    assert_outcome(&c, 0, RUN_SUCCESS, NULL);
    cr_assert_geq(c.res[0]->duration_ms, 49);
    cr_assert_geq((int64_t)clock_mono_ms() - t0, 49);
    cr_assert_eq(c.res[0]->exit_code, -1);
    assert_outcome(&c, 1, RUN_SUCCESS, NULL);
    cr_assert_eq(c.res[1]->exit_code, -1);
    assert_outcome(&c, 2, RUN_FAILED, "disk full");
    cr_assert_str_eq(c.res[2]->error, "disk full");
    assert_outcome(&c, 3, RUN_FAILED, "failed on purpose");
    ctx_free(&c);
}

Test(builtins, sleep_timed_out_and_canceled) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    const char *ten[] = {"10s"};
    start_strings(&c, "sleep", ten, 1, 0);   /* ServerTasks-1: canceled */
    start_strings(&c, "sleep", ten, 1, 100); /* timed out */
    after(&c, 50, cancel_first_cb);
    finish(&c);
    assert_outcome(&c, 0, RUN_CANCELED, "canceled");
    cr_assert_lt(c.res[0]->duration_ms, 2000);
    assert_outcome(&c, 1, RUN_TIMEDOUT, "execution timeout of 100ms exceeded; sleep stopped");
    cr_assert_lt(c.res[1]->duration_ms, 2000);
    ctx_free(&c);
}

Test(builtins, unknown_type_lists_what_the_node_knows) {
    struct shoal_handlers *h = handlers();
    struct ctx c;
    ctx_init(&c, "", 1000, h);
    start(&c, "nope", NULL, 0, 0);
    start(&c, "bad\x01type", NULL, 0, 0);
    finish(&c);
    assert_outcome(&c, 0, RUN_FAILED,
                   "unknown task type 'nope' (this node knows: "
                   "exec, fail, noop, sleep, hello, loop, ok, silent, big-log)");
    assert_outcome(&c, 1, RUN_FAILED, "unknown task type 'bad?type'");
    ctx_free(&c);
    shoal_handlers_free(h);
}

Test(builtins, undecodable_payloads_fail) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 1000, NULL);
    unsigned char junk[64];
    junk[0] = 0xc1; /* never valid msgpack, so the bytes after it cannot matter */
    unsigned seed = 12345;
    for (size_t i = 1; i < sizeof junk; i++) junk[i] = (unsigned char)(rand_r(&seed) & 0xff);
    start(&c, "exec", junk, sizeof junk, 0);
    start(&c, "sleep", junk, sizeof junk, 0);
    start(&c, "fail", junk, sizeof junk, 0);
    start(&c, "exec", NULL, 0, 0);
    start(&c, "sleep",
          "\x92\xa2"
          "1s\x01",
          5, 0);
    finish(&c);
    for (unsigned i = 0; i < 3; i++)
        assert_outcome(&c, i, RUN_FAILED,
                       "payload cannot be decoded: payload is not valid msgpack");
    assert_outcome(&c, 3, RUN_FAILED, "payload cannot be decoded: payload is empty");
    assert_outcome(&c, 4, RUN_FAILED,
                   "payload cannot be decoded: sleep takes one duration (got 2 items)");
    ctx_free(&c);
}

Test(builtins, fifty_concurrent_sleeps) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    int64_t t0 = (int64_t)clock_mono_ms();
    const char *d[] = {"200ms"};
    for (int i = 0; i < 50; i++) start_strings(&c, "sleep", d, 1, 0);
    cr_assert_eq(runner_running(c.r), 50);
    finish(&c);
    for (unsigned i = 0; i < 50; i++) assert_outcome(&c, i, RUN_SUCCESS, NULL);
    cr_assert_lt((int64_t)clock_mono_ms() - t0, 2000);
    ctx_free(&c);
}

Test(builtins, close_with_nothing_started) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    cr_assert_eq(runner_running(c.r), 0);
    cr_assert_eq(runner_cancel(c.r, "ServerTasks-1"), UV_ENOENT);
    finish(&c);
}

/* The runner finds a task's runs by its id through an index (a claim answer of k tasks costs
 * O(k log running), docs/design.md): a task claimed again while its earlier run still stops
 * has two runs under one id, and a completed run must leave the index (ASan: no freed run is
 * ever reached again). */
static void sleep_as(struct ctx *c, const char *id, const char *d) {
    const char *items[] = {d};
    start_strings_as(c, id, "sleep", items, 1, 0);
}

static void after_the_old_runs_completed_cb(struct ctx *c) {
    cr_assert_eq(runner_disown(c->r, "ServerTasks-7", 0), UV_ENOENT);
    cr_assert_not(runner_stopping(c->r, "ServerTasks-7"));
    cr_assert_eq(runner_cancel(c->r, "ServerTasks-7"), UV_ENOENT);
    cr_assert_eq(runner_disown(c->r, "ServerTasks-8", 0), 0); /* still there, and found */
}

Test(builtins, runs_are_found_by_task_id_also_when_one_task_runs_twice) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    char id[40];
    for (int i = 0; i < 20; i++) { /* other runs around them in the index */
        snprintf(id, sizeof id, "ServerTasks-%d", 100 + i * 7 % 20);
        sleep_as(&c, id, "100ms");
    }
    size_t first = c.started;
    sleep_as(&c, "ServerTasks-7", "10s");
    sleep_as(&c, "ServerTasks-8", "1s");
    cr_assert_not(runner_stopping(c.r, "ServerTasks-7"));
    cr_assert_eq(runner_disown(c.r, "ServerTasks-7", 0), 0);
    cr_assert(runner_stopping(c.r, "ServerTasks-7"));
    size_t again = c.started;
    sleep_as(&c, "ServerTasks-7", "10s"); /* claimed again while the first run stops */
    cr_assert_eq(runner_disown(c.r, "ServerTasks-7", 0), 0);         /* the new run, not the old */
    cr_assert_eq(runner_disown(c.r, "ServerTasks-7", 0), UV_ENOENT); /* both stopped */
    cr_assert_not(runner_stopping(c.r, "ServerTasks-8"));
    cr_assert_eq(runner_disown(c.r, "ServerTasks-", 0), UV_ENOENT);
    cr_assert_eq(runner_disown(c.r, "ServerTasks-8xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 0),
                 UV_ENOENT); /* longer than any id: never cut to one */
    after(&c, 50, after_the_old_runs_completed_cb);
    finish(&c);
    for (size_t i = 0; i < first; i++) assert_outcome(&c, i, RUN_SUCCESS, NULL);
    assert_outcome(&c, first, RUN_INTERRUPTED,
                   "interrupted: Redis no longer records this run as this node's");
    assert_outcome(&c, again, RUN_INTERRUPTED,
                   "interrupted: Redis no longer records this run as this node's");
    assert_outcome(&c, first + 1, RUN_INTERRUPTED,
                   "interrupted: Redis no longer records this run as this node's");
    ctx_free(&c);
}

static void close_while_running_cb(struct ctx *c) {
    runner_close(c->r, closed_cb, c); /* tasks still run: they are interrupted first */
    uv_close((uv_handle_t *)&c->guard, NULL);
    uv_close((uv_handle_t *)&c->action, NULL);
}

Test(builtins, close_while_tasks_run_interrupts_them) {
    struct ctx c;
    ctx_init(&c, "", 1000, NULL);
    c.manual_close = true;
    const char *ten[] = {"10s"};
    start_strings(&c, "sleep", ten, 1, 0);
    start(&c, "noop", NULL, 0, 0);
    after(&c, 30, close_while_running_cb);
    finish(&c);
    assert_outcome(&c, 0, RUN_INTERRUPTED, "interrupted: the node is shutting down");
    assert_outcome(&c, 1, RUN_SUCCESS, NULL);
    ctx_free(&c);
}

/* A node whose fence fired starts nothing until its lease is renewed: a claim answered after
 * the fence (the reply was in flight) completes Interrupted (requeued without using an attempt)
 * without running. Before, such a run started with the shim's lease already past, was SIGTERMed
 * at once, and ended Failed: 3 of 120 tasks in one loaded upgrade_mixed run. */
Test(exec, a_fenced_runner_starts_nothing_until_its_lease_is_renewed) {
    struct ctx c;
    ctx_init(&c, ALLOW_SYS, 5000, NULL);
    runner_fence(c.r, 100);
    start_sh(&c, 0, "echo ran");
    runner_extend(c.r, 0); /* renewed (0: no deadline for the shim): runs again */
    start_sh(&c, 0, "echo ran");
    finish(&c);
    assert_outcome(&c, 0, RUN_INTERRUPTED, "fenced");
    cr_assert_null(strstr(log_of(&c, 0), "ran"), "the fenced run ran: %s", log_of(&c, 0));
    assert_outcome(&c, 1, RUN_SUCCESS, NULL);
    ctx_free(&c);
}
