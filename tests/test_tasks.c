/* test_tasks.c: the task queue end to end, with real `shoal worker` processes and a real
 * redis-server: caps never exceeded (checked on every task's start and end), drain, lowering a
 * cap, balancing, expiry, scheduling, priority, cancel, retries, timeouts, bad payloads, and
 * SIGTERM with tasks shorter and longer than the grace. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/client.h"
#include "common/task_codec.h"
#include "common/util.h"
#include "tests/harness.h"

static struct h_redis redis;
static struct shoal_client client;
static redisContext *rc;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
    char err[256];
    cr_assert_eq(shoal_client_open(&client, redis.url, "shoal", err, sizeof err), 0, "%s", err);
    rc = h_redis_connect(&redis);
}
static void teardown(void) {
    redisFree(rc);
    shoal_client_close(&client);
    h_redis_stop(&redis, false);
}
TestSuite(tasks, .init = setup, .fini = teardown, .timeout = 120);

/* Every test ends with the namespace's invariants checked (shoal check): whatever the test did
 * to its nodes, no task is left in no structure or in two, and the counters are right. (In the
 * test body: Criterion does not fail a test for an assertion in .fini.) */
static void check_ns(void) {
    char *report = NULL;
    bool ok = h_check_namespace(&redis, NULL, &report);
    cr_assert(ok, "%s", report);
    free(report);
}

static void start(struct h_worker *w, const char *name, const char *const *extra) {
    h_worker_start(w, &redis, name, extra);
    cr_assert(h_ping_is(w, 200, 10000) || h_ping_is(w, 418, 100), "%s did not come up", name);
}

static void stop(struct h_worker *w) {
    int code = h_worker_stop(w);
    if (code != 0) {
        char *log = h_read_file(w->log);
        cr_assert_fail("%s exited %d; log:\n%s", w->name, code, log ? log : "");
    }
}

/* Enqueues count tasks of type with string args (NULL-terminated, may be NULL). */
static int64_t enqueue(const char *type, const char *const *args, int count, int64_t prio,
                       int64_t expiry_ms, int64_t timeout_ms, int64_t attempts, int64_t at_ms) {
    struct buf b;
    buf_init(&b);
    int n = 0;
    while (args && args[n]) n++;
    if (strcmp(type, "exec") == 0)
        task_args_exec_encode(&b, args, n, NULL, 0, NULL);
    else if (n)
        task_args_strings_encode(&b, args, n);
    struct shoal_task_opts *o = calloc((size_t)count, sizeof *o);
    int64_t *ids = calloc((size_t)count, sizeof *ids);
    for (int i = 0; i < count; i++) {
        shoal_task_opts_init(&o[i]);
        o[i].type = type;
        o[i].args = b.data;
        o[i].args_len = b.len;
        o[i].priority = prio;
        if (expiry_ms) o[i].expiry_ms = expiry_ms;
        o[i].timeout_ms = timeout_ms;
        o[i].attempts = attempts ? attempts : 1;
        o[i].at_ms = at_ms;
    }
    char err[256];
    cr_assert_eq(shoal_enqueue(&client, o, (size_t)count, ids, err, sizeof err), 0, "%s", err);
    int64_t first = ids[0];
    free(o);
    free(ids);
    buf_free(&b);
    return first;
}

struct task_view {
    char state[16], node[72], error[512];
    int64_t started, completed, queued, attempt;
};

static void get(int64_t id, struct task_view *v) {
    struct shoal_task t;
    char err[256];
    memset(v, 0, sizeof *v);
    if (shoal_task_get(&client, id, &t, err, sizeof err) != 0) return;
    snprintf(v->state, sizeof v->state, "%s", t.state);
    snprintf(v->node, sizeof v->node, "%s", t.node);
    snprintf(v->error, sizeof v->error, "%s", t.error ? t.error : "");
    v->started = t.started_ms;
    v->completed = t.completed_ms;
    v->queued = t.queued_ms;
    v->attempt = t.attempt;
    shoal_task_free(&t);
}

struct state_want {
    int64_t id;
    const char *state;
};
static bool state_is(void *arg) {
    struct state_want *s = arg;
    struct task_view v;
    get(s->id, &v);
    return strcmp(v.state, s->state) == 0;
}
static void await_state(int64_t id, const char *state, int timeout_ms) {
    struct state_want s = {id, state};
    struct task_view v;
    bool ok = h_eventually(state_is, &s, timeout_ms);
    get(id, &v);
    cr_assert(ok, "ServerTasks-%lld is %s (%s), wanted %s", (long long)id, v.state, v.error, state);
}

static bool all_done(void *arg) {
    redisReply *r = redisCommand(rc, "ZCARD {shoal}:done");
    bool ok = r->integer >= *(long long *)arg;
    freeReplyObject(r);
    return ok;
}
static void await_done(long long n, int timeout_ms) {
    cr_assert(h_eventually(all_done, &n, timeout_ms), "not all %lld tasks finished", n);
}

/* The most tasks of `node` whose [started, completed) intervals overlap, over ids [first, last]. */
static int max_overlap(const char *node, int64_t first, int64_t last) {
    int64_t ev[4096][2];
    int n = 0;
    for (int64_t id = first; id <= last && n < 4094; id++) {
        struct task_view v;
        get(id, &v);
        if (strcmp(v.node, node) != 0) continue;
        ev[n][0] = v.started;
        ev[n++][1] = +1;
        ev[n][0] = v.completed;
        ev[n++][1] = -1;
    }
    /* Sort by time, ends before starts at the same instant. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (ev[j][0] < ev[j - 1][0] ||
                                  (ev[j][0] == ev[j - 1][0] && ev[j][1] < ev[j - 1][1]));
             j--) {
            int64_t t0 = ev[j][0], t1 = ev[j][1];
            ev[j][0] = ev[j - 1][0];
            ev[j][1] = ev[j - 1][1];
            ev[j - 1][0] = t0;
            ev[j - 1][1] = t1;
        }
    int cur = 0, best = 0;
    for (int i = 0; i < n; i++) {
        cur += (int)ev[i][1];
        if (cur > best) best = cur;
    }
    return best;
}

static int count_on(const char *node, int64_t first, int64_t last) {
    int n = 0;
    for (int64_t id = first; id <= last; id++) {
        struct task_view v;
        get(id, &v);
        n += strcmp(v.node, node) == 0;
    }
    return n;
}

Test(tasks, three_nodes_never_exceed_their_caps) {
    struct h_worker w[3];
    const char *caps[] = {"1", "2", "3"}, *names[] = {"c1", "c2", "c3"};
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {"--cap", caps[i], NULL};
        start(&w[i], names[i], extra);
    }
    const char *args[] = {"10ms", NULL};
    int64_t first = enqueue("sleep", args, 300, 0, 0, 0, 0, 0);
    await_done(300, 60000);
    int total = 0;
    for (int i = 0; i < 3; i++) {
        int over = max_overlap(names[i], first, first + 299);
        cr_assert(over <= i + 1, "%s ran %d at once with cap %d", names[i], over, i + 1);
        cr_assert(over >= 1, "%s ran nothing", names[i]);
        total += count_on(names[i], first, first + 299);
    }
    cr_assert_eq(total, 300);
    for (int64_t id = first; id < first + 300; id++) {
        struct task_view v;
        get(id, &v);
        cr_assert_str_eq(v.state, "Success", "ServerTasks-%lld: %s", (long long)id, v.error);
    }
    for (int i = 0; i < 3; i++) stop(&w[i]);
    check_ns();
}

Test(tasks, drained_node_claims_nothing) {
    struct h_worker a, b;
    start(&a, "busy", NULL);
    start(&b, "resting", NULL);
    char *out = NULL;
    const char *drain[] = {"drain", "resting", "on", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, drain), 0);
    free(out);
    cr_assert(h_ping_is(&b, 418, 5000));
    const char *args[] = {"5ms", NULL};
    int64_t first = enqueue("sleep", args, 40, 0, 0, 0, 0, 0);
    await_done(40, 30000);
    cr_assert_eq(count_on("busy", first, first + 39), 40);
    cr_assert_eq(count_on("resting", first, first + 39), 0);
    stop(&a);
    stop(&b);
    check_ns();
}

Test(tasks, lowering_the_cap_kills_nothing) {
    struct h_worker a;
    const char *extra[] = {"--cap", "3", NULL};
    start(&a, "shrink", extra);
    const char *long_args[] = {"700ms", NULL};
    int64_t first = enqueue("sleep", long_args, 3, 0, 0, 0, 0, 0);
    await_state(first + 2, "Executing", 5000);
    const char *cap[] = {"cap", "shrink", "1", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, cap), 0);
    const char *short_args[] = {"50ms", NULL};
    int64_t next = enqueue("sleep", short_args, 3, 0, 0, 0, 0, 0);
    await_done(6, 20000);
    for (int64_t id = first; id < first + 3; id++) {
        struct task_view v;
        get(id, &v);
        cr_assert_str_eq(v.state, "Success", "running tasks must finish: %s", v.error);
    }
    cr_assert_eq(max_overlap("shrink", next, next + 2), 1, "new work obeys cap 1");
    /* None of the new ones started before the old ones made room for it. */
    struct task_view old, fresh;
    get(first, &old);
    get(next, &fresh);
    cr_assert(fresh.started >= old.completed - 1);
    stop(&a);
    check_ns();
}

Test(tasks, balancing_spreads_a_small_burst) {
    struct h_worker a, b;
    start(&a, "left", NULL);
    start(&b, "right", NULL);
    const char *args[] = {"400ms", NULL};
    int64_t first = enqueue("sleep", args, 4, 0, 0, 0, 0, 0);
    await_done(4, 10000);
    int l = count_on("left", first, first + 3), r = count_on("right", first, first + 3);
    cr_assert(l >= 1 && r >= 1, "one node took everything: left %d right %d", l, r);
    cr_assert_eq(l + r, 4);
    stop(&a);
    stop(&b);
    check_ns();
}

Test(tasks, expiry_priority_and_schedule) {
    struct h_worker a;
    const char *extra[] = {"--cap", "1", NULL};
    start(&a, "orderly", extra);
    const char *drain[] = {"drain", "orderly", "on", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, drain), 0);
    cr_assert(h_ping_is(&a, 418, 5000));
    int64_t stale = enqueue("noop", NULL, 1, 0, 200, 0, 0, 0);
    int64_t low = enqueue("noop", NULL, 1, 0, 0, 0, 0, 0);
    int64_t high = enqueue("noop", NULL, 1, 7, 0, 0, 0, 0);
    int64_t at = clock_wall_ms() + 800;
    int64_t later = enqueue("noop", NULL, 1, 0, 0, 0, 0, at);
    usleep(300 * 1000); /* let the 200 ms expiry pass while the node is drained */
    const char *undrain[] = {"drain", "orderly", "off", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, undrain), 0);
    await_state(later, "Success", 10000);
    struct task_view s, l, h, t;
    get(stale, &s);
    get(low, &l);
    get(high, &h);
    get(later, &t);
    cr_assert_str_eq(s.state, "TimedOut");
    cr_assert(strstr(s.error, "not picked up within 200ms"), "%s", s.error);
    cr_assert(h.started <= l.started, "priority 7 first");
    cr_assert(t.started >= at, "scheduled task started %lld ms early", (long long)(at - t.started));
    stop(&a);
    check_ns();
}

Test(tasks, cancel_queued_and_executing) {
    struct h_worker a;
    const char *extra[] = {"--cap", "1", "--allow-exec", "/bin/,/usr/bin/", "--kill-grace",
                           "1s",    NULL};
    start(&a, "canceller", extra);
    const char *args[] = {"/bin/sleep", "30", NULL};
    int64_t run = enqueue("exec", args, 1, 0, 0, 0, 0, 0);
    int64_t waiting = enqueue("exec", args, 1, 0, 0, 0, 0, 0);
    await_state(run, "Executing", 5000);
    char *out = NULL;
    char id[32];
    snprintf(id, sizeof id, "ServerTasks-%lld", (long long)waiting);
    const char *c1[] = {"cancel", id, "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, c1), 0);
    cr_assert(strstr(out, "canceled"), "%s", out);
    free(out);
    snprintf(id, sizeof id, "ServerTasks-%lld", (long long)run);
    const char *c2[] = {"cancel", id, "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, c2), 0);
    cr_assert(strstr(out, "cancelling"), "%s", out);
    free(out);
    await_state(run, "Canceled", 5000);
    struct task_view v;
    get(waiting, &v);
    cr_assert_str_eq(v.state, "Canceled");
    const char *w[] = {"wait", id, "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, w), 12, "wait's exit code for Canceled");
    stop(&a);
    check_ns();
}

/* Cuts the nodes' subscriber links and cancels task `n` (`shoal cancel`) while they reconnect:
 * the control message is lost, and only the heartbeat's look (cancelling.lua) can find it. */
static void cancel_unheard(int64_t n) {
    char id[32];
    snprintf(id, sizeof id, "ServerTasks-%lld", (long long)n);
    freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE pubsub"));
    const char *c[] = {"cancel", id, "--redis", redis.url, NULL};
    char *out = NULL;
    cr_assert_eq(h_shoal(&out, NULL, c), 0);
    cr_assert(strstr(out, "cancelling"), "%s", out);
    free(out);
}

/* Cancel reaches a running node by PUBLISH; a message sent while the node's subscriber link is
 * away is lost. The node reads which of its running tasks are Cancelling at every heartbeat (and
 * so after every subscriber reconnect): a lost message costs at most one heartbeat. Here the
 * subscriber is cut and the cancel sent at once, while it reconnects (its backoff is >= 75 ms);
 * before, the task then ran on to its end and finished Success. */
Test(tasks, cancel_missed_by_the_subscriber_still_stops_the_task) {
    struct h_worker a;
    const char *extra[] = {"--cap", "1", NULL};
    start(&a, "deaf", extra);
    const char *args[] = {"3s", NULL};
    int64_t run = enqueue("sleep", args, 1, 0, 0, 0, 0, 0);
    await_state(run, "Executing", 5000);
    cancel_unheard(run);
    uint64_t t0 = h_now_ms();
    await_state(run, "Canceled", 2500);
    cr_assert_lt(h_now_ms() - t0, 2500, "the task was not stopped well before its 3 s end");
    stop(&a);
    check_ns();
}

static long long rnum(const char *cmd) {
    redisReply *r = redisCommand(rc, cmd);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* Waits (at most ms) until cmd answers want. */
static bool await_num(const char *cmd, long long want, uint64_t ms) {
    uint64_t until = h_now_ms() + ms;
    for (int i = 0; i < 100000 && h_now_ms() < until; i++) {
        if (rnum(cmd) == want) return true;
        usleep(20000);
    }
    return rnum(cmd) == want;
}

/* Node "many" at cap 1,200 running 1,200 one-minute sleeps (more than cancelling.lua and
 * owned.lua look at in one call); returns the oldest task's number, the last in its running set
 * (newer tasks without a timeout go in at its head). */
static int64_t start_many(struct h_worker *a) {
    const char *extra[] = {"--cap", "1200", "--grace", "1s", NULL};
    start(a, "many", extra);
    const char *args[] = {"60s", NULL};
    int64_t oldest = enqueue("sleep", args, 1200, 0, 0, 0, 0, 0);
    cr_assert(await_num("ZCARD {shoal}:running:many", 1200, 10000), "running %lld of 1200",
              rnum("ZCARD {shoal}:running:many"));
    return oldest;
}

/* The same on a node running more than cancelling.lua looks at in one call (1,000): the heartbeat
 * asks again from rank 1,000. The oldest task is last in the running set (newer tasks without a
 * timeout go in at its head), so only the second call finds it. */
Test(tasks, a_missed_cancel_is_found_beyond_the_first_thousand_running_tasks) {
    struct h_worker a;
    int64_t oldest = start_many(&a);
    redisReply *rank = redisCommand(rc, "ZRANK {shoal}:running:many %lld", (long long)oldest);
    cr_assert_eq(rank->integer, 1199, "the oldest is last");
    freeReplyObject(rank);
    cancel_unheard(oldest);
    await_state(oldest, "Canceled", 5000);
    stop(&a);
    check_ns();
}

/* After a reconcile the node asks owned.lua, 1,000 runs a call, which of its runs Redis no longer
 * records as its own. Here the oldest of 1,200 runs (the last the node names) is handed to
 * another node by hand, and the re-subscription's reconcile must stop it. */
Test(tasks, a_run_beyond_the_first_thousand_that_is_no_longer_ours_is_stopped) {
    struct h_worker a;
    int64_t oldest = start_many(&a);
    freeReplyObject(redisCommand(rc, "HSET {shoal}:task:%lld node elsewhere", (long long)oldest));
    freeReplyObject(redisCommand(rc, "ZREM {shoal}:running:many %lld", (long long)oldest));
    freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE pubsub")); /* re-subscribes: reconciles */
    char want[200];
    snprintf(want, sizeof want,
             "no longer records as this node's (its claim was lost in a Redis "
             "failover, or the task was recovered elsewhere)\" task=ServerTasks-%lld",
             (long long)oldest);
    char *log = NULL;
    for (int i = 0; i < 250; i++) { /* 5 s at most */
        free(log);
        log = h_read_file(a.log);
        if (log && strstr(log, want)) break;
        usleep(20000);
    }
    cr_assert(log && strstr(log, want), "the run was not stopped; log:\n%s", log ? log : "");
    free(log);
    stop(&a); /* no check_ns: the task's record names a node that never was, by hand */
}

Test(tasks, retries_backoff_timeout_and_refusals) {
    struct h_worker a;
    const char *extra[] = {
        "--cap", "4", "--retry-backoff", "100ms", "--allow-exec", "/bin/", "--kill-grace",
        "200ms", NULL};
    start(&a, "strict", extra);
    const char *boom[] = {"boom", NULL};
    int64_t fail = enqueue("fail", boom, 1, 0, 0, 0, 3, 0);
    const char *slow[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30", NULL};
    int64_t hung = enqueue("exec", slow, 1, 0, 0, 300, 0, 0);
    /* Not /usr/bin/env: on a merged-/usr system /bin/ is /usr/bin/, and the allow-list
     * compares resolved paths. */
    const char *denied[] = {"/usr/sbin/nologin", NULL};
    int64_t refused = enqueue("exec", denied, 1, 0, 0, 0, 0, 0);
    int64_t unknown = enqueue("frobnicate", NULL, 1, 0, 0, 0, 0, 0);
    await_state(fail, "Failed", 10000);
    await_state(hung, "TimedOut", 10000);
    await_state(refused, "Failed", 10000);
    await_state(unknown, "Failed", 10000);
    struct task_view v;
    get(fail, &v);
    cr_assert_eq(v.attempt, 3, "three attempts");
    cr_assert(v.completed - v.queued >= 150,
              "backoff 100ms then 200ms (halved by jitter at "
              "worst): took %lld ms",
              (long long)(v.completed - v.queued));
    cr_assert_str_eq(v.error, "boom");
    get(hung, &v);
    cr_assert(strstr(v.error, "timeout"), "%s", v.error);
    get(refused, &v);
    cr_assert(strstr(v.error, "--allow-exec"), "%s", v.error);
    get(unknown, &v);
    cr_assert(strstr(v.error, "unknown task type 'frobnicate'"), "%s", v.error);
    stop(&a);
    check_ns();
}

Test(tasks, malformed_payload_fails_and_the_node_goes_on) {
    struct h_worker a;
    start(&a, "sturdy", NULL);
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    o.type = "exec";
    o.args = "\xc1\xff garbage";
    o.args_len = 10;
    int64_t bad;
    char err[256];
    cr_assert_eq(shoal_enqueue(&client, &o, 1, &bad, err, sizeof err), 0, "%s", err);
    await_state(bad, "Failed", 5000);
    struct task_view v;
    get(bad, &v);
    cr_assert(strstr(v.error, "payload cannot be decoded"), "%s", v.error);
    int64_t ok = enqueue("noop", NULL, 1, 0, 0, 0, 0, 0);
    await_state(ok, "Success", 5000);
    stop(&a);
    check_ns();
}

Test(tasks, sigterm_lets_short_tasks_finish_and_requeues_long_ones) {
    struct h_worker a;
    const char *extra[] = {"--cap", "2", "--grace", "600ms", NULL};
    start(&a, "leaver", extra);
    const char *quick[] = {"300ms", NULL}, *slow[] = {"20s", NULL};
    int64_t q = enqueue("sleep", quick, 1, 0, 0, 0, 0, 0);
    int64_t s = enqueue("sleep", slow, 1, 0, 0, 0, 0, 0);
    await_state(s, "Executing", 5000);
    await_state(q, "Executing", 5000);
    kill(a.pid, SIGTERM);
    cr_assert(h_ping_is(&a, 418, 5000), "ping must turn 418 at once");
    cr_assert_eq(h_wait(a.pid, 10000), 0, "exit 0 after the grace");
    a.pid = 0;
    struct task_view v;
    get(q, &v);
    cr_assert_str_eq(v.state, "Success", "the short task finished within the grace");
    get(s, &v);
    cr_assert_str_eq(v.state, "Queued", "the long task went back to the queue");
    cr_assert_eq(v.attempt, 0, "without using an attempt");
    /* The next node runs it. */
    const char *fast[] = {"--cap", "2", "--grace", "100ms", NULL};
    start(&a, "heir", fast);
    await_state(s, "Executing", 5000);
    get(s, &v);
    cr_assert_str_eq(v.node, "heir");
    stop(&a);
    get(s, &v);
    cr_assert_str_eq(v.state, "Queued", "interrupted again at the heir's shutdown");
    check_ns();
}

Test(tasks, sigkill_mid_task_requeues_to_a_live_node) {
    struct h_worker a, b;
    start(&a, "victim", NULL);
    const char *args[] = {"800ms", NULL};
    int64_t id = enqueue("sleep", args, 1, 0, 0, 0, 0, 0);
    await_state(id, "Executing", 5000);
    start(&b, "survivor", NULL);
    uint64_t t0 = h_now_ms();
    kill(a.pid, SIGKILL);
    h_wait(a.pid, 2000);
    a.pid = 0;
    /* TTL (600 ms) + a recovery pass (one heartbeat), then the survivor runs it. */
    await_state(id, "Success", 10000);
    struct task_view v;
    get(id, &v);
    cr_assert_str_eq(v.node, "survivor");
    cr_assert_eq(v.attempt, 1, "the lost run did not count as an attempt");
    uint64_t took = h_now_ms() - t0;
    cr_assert(took < 5000, "recovered after %llu ms", (unsigned long long)took);
    redisReply *r = redisCommand(rc, "ZCARD {shoal}:running:victim");
    cr_assert_eq(r->integer, 0, "no slot left on the dead node");
    freeReplyObject(r);
    stop(&b);
    check_ns();
}

/* recover.lua looks at 128 running-set entries a call at most (a dead node of cap 10,000 was
 * one call of 120-196 ms); the node running the pass calls again after each answer until the pass
 * is done, and logs it once with its totals. */
Test(tasks, a_large_dead_node_is_recovered_in_one_pass_of_bounded_calls) {
    struct h_worker a, b;
    const char *big[] = {"--cap", "600", NULL};
    start(&a, "victim", big);
    const char *args[] = {"60s", NULL};
    enqueue("sleep", args, 600, 0, 0, 0, 0, 0);
    if (!await_num("ZCARD {shoal}:running:victim", 600, 10000)) {
        char *log = h_read_file(a.log);
        cr_assert_fail("the victim took %lld; its log:\n%s", rnum("ZCARD {shoal}:running:victim"),
                       log ? log : "");
    }
    const char *none[] = {"--cap", "0", NULL};
    start(&b, "survivor", none);
    kill(a.pid, SIGKILL);
    h_wait(a.pid, 2000);
    a.pid = 0;
    cr_assert(await_num("LLEN {shoal}:q:default:0", 600, 10000), "requeued %lld of 600",
              rnum("LLEN {shoal}:q:default:0"));
    cr_assert_eq(rnum("EXISTS {shoal}:running:victim"), 0);
    char *log = h_read_file(b.log);
    cr_assert(log && strstr(log, "msg=\"recovered tasks of lost nodes\" requeued=600 "), "%s",
              log ? log : "");
    free(log);
    stop(&b);
    check_ns();
}

/* A claim that rides on no report waits, while tasks run, for a batch of free slots (a quarter
 * of the cap); with long tasks no report comes, so a task could wait with a slot free until one
 * of them ended (24 of 600 tasks for a minute). The heartbeat now claims for a single slot. */
Test(tasks, a_task_waits_at_most_a_heartbeat_for_a_free_slot_while_long_tasks_run) {
    struct h_worker a;
    const char *extra[] = {"--cap", "8", "--grace", "1s", NULL}; /* a batch: 2 free slots */
    start(&a, "busy", extra);
    const char *longer[] = {"30s", NULL};
    int64_t first = enqueue("sleep", longer, 7, 0, 0, 0, 0, 0);
    for (int64_t id = first; id < first + 7; id++) await_state(id, "Executing", 5000);
    uint64_t t0 = h_now_ms();
    int64_t one = enqueue("noop", NULL, 1, 0, 0, 0, 0, 0);
    await_state(one, "Success", 5000);
    cr_assert_lt(h_now_ms() - t0, 5000, "the free slot took it only after a long task ended");
    stop(&a);
    check_ns();
}

/* A wave's reports wait for the rest of the wave only briefly (worker/claim.c, hold_reports):
 * one long task in a wave of short ones does not hold their results back. */
Test(tasks, a_long_task_does_not_hold_back_the_reports_of_its_wave) {
    struct h_worker a;
    /* A long heartbeat: each one sends whatever reports wait, which would hide a hold. */
    const char *extra[] = {"--cap", "10", "--grace", "1s", "--heartbeat", "10s", NULL};
    start(&a, "wave", extra);
    const char *drain[] = {"drain", "wave", "on", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, drain), 0);
    cr_assert(h_ping_is(&a, 418, 5000), "the node did not drain");
    const char *longer[] = {"30s", NULL};
    int64_t slow = enqueue("sleep", longer, 1, 0, 0, 0, 0, 0);
    int64_t first = enqueue("noop", NULL, 9, 0, 0, 0, 0, 0);
    const char *undrain[] = {"drain", "wave", "off", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, undrain), 0); /* one claim takes all ten: one wave */
    for (int64_t id = first; id < first + 9; id++) await_state(id, "Success", 3000);
    struct task_view v;
    get(slow, &v);
    cr_assert_str_eq(v.state, "Executing", "the long task should still run");
    stop(&a);
    check_ns();
}

Test(tasks, stats_gives_an_autoscaler_exact_figures) {
    struct h_worker a, b;
    const char *two[] = {"--cap", "2", NULL}, *three[] = {"--cap", "3", NULL};
    start(&a, "s1", two);
    start(&b, "s2", three);
    const char *drain[] = {"drain", "s2", "on", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, drain), 0);
    const char *args[] = {"3s", NULL};
    int64_t first = enqueue("sleep", args, 1, 0, 0, 0, 0, 0);
    enqueue("noop", NULL, 4, 0, 0, 0, 0, clock_wall_ms() + 3600000); /* scheduled */
    await_state(first, "Executing", 5000);
    char *out = NULL;
    const char *stats[] = {"stats", "--json", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, stats), 0);
    cr_assert(strstr(out, "\"Nodes\":{\"Running\":1,\"Draining\":0,\"Drained\":1,\"Offline\":0}"),
              "%s", out);
    cr_assert(strstr(out, "\"Capacity\":2,\"Running\":1,\"FreeSlots\":1,\"Ready\":0,"
                          "\"Scheduled\":4"),
              "%s", out);
    free(out);
    const char *undrain[] = {"drain", "s2", "off", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(NULL, NULL, undrain), 0);
    const char *cancel[] = {"cancel", "", "--redis", redis.url, NULL};
    char id[32];
    snprintf(id, sizeof id, "ServerTasks-%lld", (long long)first);
    cancel[1] = id;
    cr_assert_eq(h_shoal(NULL, NULL, cancel), 0);
    await_state(first, "Canceled", 5000);
    stop(&a);
    stop(&b);
    check_ns();
}

static bool pid_gone(void *arg) { return kill(*(pid_t *)arg, 0) != 0; }

Test(tasks, exec_programs_die_with_their_node) {
    struct h_worker a;
    const char *extra[] = {"--allow-exec", "/bin/", NULL};
    start(&a, "parent", extra);
    char pidfile[256], script[400];
    snprintf(pidfile, sizeof pidfile, "%s/child.pid", redis.dir);
    snprintf(script, sizeof script, "echo $$ > %s; exec sleep 30", pidfile);
    const char *args[] = {"/bin/sh", "-c", script, NULL};
    int64_t id = enqueue("exec", args, 1, 0, 0, 0, 0, 0);
    await_state(id, "Executing", 5000);
    pid_t child = 0;
    for (int i = 0; i < 300 && child <= 0; i++) {
        char *s = h_read_file(pidfile);
        if (s) child = (pid_t)atoi(s);
        free(s);
        if (child <= 0) usleep(10000);
    }
    cr_assert(child > 0, "the task never started");
    cr_assert_eq(kill(child, 0), 0, "the task's program runs");
    kill(a.pid, SIGKILL);
    h_wait(a.pid, 2000);
    a.pid = 0;
    cr_assert(h_eventually(pid_gone, &child, 3000),
              "pid %d outlived its node (it would run on while recovery runs the task again)",
              (int)child);
    check_ns();
}

Test(tasks, exec_programs_run_below_the_node) {
    struct h_worker a;
    const char *extra[] = {"--allow-exec", "/usr/bin/nice", NULL};
    start(&a, "polite", extra);
    const char *args[] = {"/usr/bin/nice", NULL};
    int64_t id = enqueue("exec", args, 1, 0, 0, 0, 0, 0);
    await_state(id, "Success", 5000);
    size_t len = 0;
    char err[256];
    char *log = shoal_task_log(&client, id, &len, err, sizeof err);
    cr_assert(log && atoi(log) == 10, "niceness of the task: %s", log ? log : "(no log)");
    free(log);
    stop(&a);
    check_ns();
}

/* A counter from the node's /metrics ("name " with its trailing space), -1 when absent. */
static long long metric(const struct h_worker *w, const char *name) {
    static char body[1 << 16];
    if (h_http(w->port, "GET", "/metrics", body, sizeof body) != 200) return -1;
    char line[128];
    snprintf(line, sizeof line, "\n%s", name); /* the sample, not its # HELP line */
    const char *at = strstr(body, line);
    return at ? atoll(at + strlen(line)) : -1;
}

static bool registered_idle(void *arg) {
    redisReply *r = redisCommand(rc, "ZSCORE {shoal}:idle:default %s", (const char *)arg);
    bool ok = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    return ok;
}

/* Push (docs/design.md, "Push to an idle node"): an idle node is handed its tasks by the enqueue
 * itself. Then a stream of single enqueues for 5 s while the node reconciles every 12 heartbeats
 * (2.4 s here): a reconcile that took a push still on its way for a lost claim would requeue that
 * task and it would be claimed twice. Each enqueue of the stream first waits (at most 20 ms) for
 * the node to be registered idle again, so pushes are nearly always on their way however fast
 * the node is (under ASan, or on a slow machine, a free-running stream keeps the queue full and
 * hardly anything is pushed). Every task is claimed once (the node's claimed counter equals the
 * task count), at attempt 1. */
Test(tasks, an_idle_node_is_pushed_its_tasks_and_reconciles_lose_none) {
    struct h_worker w;
    const char *extra[] = {"--cap", "4", NULL};
    start(&w, "p1", extra);
    cr_assert(h_eventually(registered_idle, "p1", 5000), "p1 never registered idle");
    for (int i = 0; i < 10; i++) {
        int64_t id = enqueue("noop", NULL, 1, 0, 0, 0, 0, 0);
        await_state(id, "Success", 5000);
        struct task_view v;
        get(id, &v);
        cr_assert_eq(v.attempt, 1);
    }
    long long pushed = metric(&w, "shoal_tasks_pushed_total ");
    cr_assert_geq(pushed, 8, "one at a time, an idle node is pushed its tasks: %lld of 10", pushed);
    long long n = 10;
    uint64_t until = clock_mono_ms() + 5000;
    for (int i = 0; i < 200000 && clock_mono_ms() < until; i++, n++) {
        uint64_t wait_until = clock_mono_ms() + 20;
        for (int k = 0; k < 10000 && !registered_idle("p1") && clock_mono_ms() < wait_until; k++)
            ;
        enqueue("noop", NULL, 1, 0, 0, 0, 0, 0);
    }
    await_done(n, 30000);
    long long claimed = metric(&w, "shoal_tasks_claimed_total ");
    pushed = metric(&w, "shoal_tasks_pushed_total ");
    long long fenced = metric(&w, "shoal_tasks_fenced_total ");
    char *log = h_read_file(w.log);
    bool requeued = log && strstr(log, "requeued tasks Redis recorded");
    if (claimed != n || requeued) fprintf(stderr, "p1's log:\n%s\n", log ? log : "(none)");
    free(log);
    cr_log_info("%lld tasks, %lld claims, %lld pushed", n, claimed, pushed);
    cr_assert_eq(claimed, n, "%lld tasks, %lld claims (%lld of them pushed): a task ran twice", n,
                 claimed, pushed);
    cr_assert_geq(pushed, 200, "pushed %lld of %lld", pushed, n);
    cr_assert_eq(fenced, 0);
    cr_assert(!requeued, "a reconcile requeued tasks Redis recorded (log above)");
    stop(&w);
    check_ns();
}
