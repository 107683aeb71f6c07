/* test_snippets.c: the README's "enqueue from any language" examples run for real: the
 * redis-cli --eval call (examples/enqueue.sh) and the Python EVALSHA snippet
 * (examples/enqueue.py), against a live node that then runs the tasks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/client.h"
#include "tests/harness.h"

static struct h_redis redis;
TestSuite(snippets, .init = NULL, .timeout = 60);

static char *run(const char *const *argv) {
    char log[256];
    snprintf(log, sizeof log, "%s/snippet.out", redis.dir);
    remove(log);
    pid_t pid = h_spawn(argv, NULL, log);
    cr_assert_eq(h_wait(pid, 20000), 0, "%s failed: %s", argv[0], h_read_file(log));
    return h_read_file(log);
}

struct wait_arg {
    struct shoal_client *c;
    int64_t id;
};
static bool succeeded(void *arg) {
    struct wait_arg *w = arg;
    struct shoal_task t;
    char err[256];
    if (shoal_task_get(w->c, w->id, &t, err, sizeof err) != 0) return false;
    bool ok = strcmp(t.state, "Success") == 0;
    shoal_task_free(&t);
    return ok;
}

Test(snippets, redis_cli_and_python_enqueue_tasks_a_node_runs) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    const char *extra[] = {"--allow-exec", "/bin/", NULL};
    h_worker_start(&w, &redis, "polyglot", extra);
    cr_assert(h_ping_is(&w, 200, 10000));
    char src[512], sh[600], py[600], port[16];
    snprintf(src, sizeof src, "%s", getenv("SHOAL_SRC") ? getenv("SHOAL_SRC") : ".");
    snprintf(sh, sizeof sh, "%s/examples/enqueue.sh", src);
    snprintf(py, sizeof py, "%s/examples/enqueue.py", src);
    snprintf(port, sizeof port, "%d", redis.port);
    const char *a1[] = {"bash", sh, "-p", port, NULL};
    char *out = run(a1);
    int64_t n1 = atoll(out);
    free(out);
    const char *a2[] = {"/usr/bin/python3", py, redis.url, NULL};
    out = run(a2);
    int64_t n2, n3;
    cr_assert_eq(sscanf(out, "ServerTasks-%ld\nServerTasks-%ld", &n2, &n3), 2, "%s", out);
    free(out);
    struct shoal_client c;
    char err[256];
    cr_assert_eq(shoal_client_open(&c, redis.url, "shoal", err, sizeof err), 0);
    int64_t ids[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++) {
        struct wait_arg wa = {&c, ids[i]};
        cr_assert(h_eventually(succeeded, &wa, 10000), "ServerTasks-%ld did not succeed", ids[i]);
    }
    size_t len = 0;
    char *log = shoal_task_log(&c, n2, &len, err, sizeof err);
    cr_assert(log && strstr(log, "hello from python"), "log: %s", log ? log : "(none)");
    free(log);
    shoal_client_close(&c);
    cr_assert_eq(h_worker_stop(&w), 0);
    h_redis_stop(&redis, false);
}
