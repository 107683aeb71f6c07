/* test_outage.c: Redis going away while tasks run (issue: never lose a task). With AOF on,
 * Redis is stopped and started again: running tasks keep running, a result produced during the
 * outage is held and written when Redis returns, nothing is re-run or reported twice, and the
 * node re-registers by itself. Also: a second signal stops at once, still requeueing. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/client.h"
#include "common/task_codec.h"
#include "tests/harness.h"

static struct h_redis redis;

static int64_t enqueue_sleep(struct shoal_client *c, const char *dur) {
    struct buf b;
    buf_init(&b);
    const char *args[] = {dur};
    task_args_strings_encode(&b, args, 1);
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    o.type = "sleep";
    o.args = b.data;
    o.args_len = b.len;
    int64_t id;
    char err[256];
    cr_assert_eq(shoal_enqueue(c, &o, 1, &id, err, sizeof err), 0, "%s", err);
    buf_free(&b);
    return id;
}

struct want {
    struct shoal_client *c;
    int64_t id;
    const char *state;
};
static bool is_state(void *arg) {
    struct want *w = arg;
    struct shoal_task t;
    char err[256];
    if (shoal_task_get(w->c, w->id, &t, err, sizeof err) != 0) return false;
    bool ok = strcmp(t.state, w->state) == 0;
    shoal_task_free(&t);
    return ok;
}
static void await(struct shoal_client *c, int64_t id, const char *state, int ms) {
    struct want w = {c, id, state};
    cr_assert(h_eventually(is_state, &w, ms), "ServerTasks-%lld never became %s", (long long)id,
              state);
}

TestSuite(outage, .timeout = 90);

Test(outage, redis_restart_with_tasks_running_loses_and_repeats_nothing) {
    const char *aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    cr_assert_eq(h_redis_start(&redis, aof), 0);
    struct h_worker w;
    h_worker_start(&w, &redis, "steady", NULL);
    cr_assert(h_ping_is(&w, 200, 10000));
    struct shoal_client c;
    char err[256];
    cr_assert_eq(shoal_client_open(&c, redis.url, "shoal", err, sizeof err), 0, "%s", err);
    int64_t during = enqueue_sleep(&c, "700ms"); /* finishes while Redis is down */
    int64_t after = enqueue_sleep(&c, "2500ms"); /* finishes after Redis is back */
    await(&c, during, "Executing", 5000);
    await(&c, after, "Executing", 5000);
    shoal_client_close(&c);

    h_redis_stop(&redis, true);
    cr_assert(h_ping_is(&w, 503, 2000), "ping must say 503 while Redis is away");
    usleep(1200 * 1000); /* the 700 ms task ends during the outage; its result waits */
    cr_assert_eq(h_redis_restart(&redis), 0);
    cr_assert(h_ping_is(&w, 200, 10000), "node did not come back");
    cr_assert_eq(shoal_client_open(&c, redis.url, "shoal", err, sizeof err), 0, "%s", err);
    await(&c, during, "Success", 5000);
    await(&c, after, "Success", 10000);
    int64_t ids[] = {during, after};
    for (int i = 0; i < 2; i++) {
        struct shoal_task t;
        cr_assert_eq(shoal_task_get(&c, ids[i], &t, err, sizeof err), 0);
        cr_assert_eq(t.attempt, 1, "ran once");
        cr_assert_str_eq(t.node, "steady");
        cr_assert(t.error == NULL || t.error[0] == '\0', "no requeue history: %s", t.error);
        shoal_task_free(&t);
    }
    shoal_client_close(&c);
    char *log = h_read_file(w.log);
    cr_assert(strstr(log, "recovered tasks") == NULL, "nothing was recovered: %s", log);
    free(log);
    cr_assert_eq(h_worker_stop(&w), 0);
    h_redis_stop(&redis, false);
}

Test(outage, second_signal_stops_at_once_and_requeues) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    const char *extra[] = {"--grace", "30s", NULL};
    h_worker_start(&w, &redis, "hasty", extra);
    cr_assert(h_ping_is(&w, 200, 10000));
    struct shoal_client c;
    char err[256];
    cr_assert_eq(shoal_client_open(&c, redis.url, "shoal", err, sizeof err), 0, "%s", err);
    int64_t id = enqueue_sleep(&c, "20s");
    await(&c, id, "Executing", 5000);
    uint64_t t0 = h_now_ms();
    kill(w.pid, SIGTERM);
    cr_assert(h_ping_is(&w, 418, 5000));
    kill(w.pid, SIGTERM);
    cr_assert_eq(h_wait(w.pid, 5000), 0, "exit 0 soon after the second signal");
    cr_assert(h_now_ms() - t0 < 5000);
    struct shoal_task t;
    cr_assert_eq(shoal_task_get(&c, id, &t, err, sizeof err), 0);
    cr_assert_str_eq(t.state, "Queued", "requeued, not lost");
    cr_assert_eq(t.attempt, 0);
    shoal_task_free(&t);
    shoal_client_close(&c);
    h_redis_stop(&redis, false);
}
