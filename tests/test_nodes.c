/* test_nodes.c: real worker processes against a real redis-server: registration, the Nodes
 * table, drain and cap from the CLI reaching ping, SIGKILL -> Offline within one TTL, duplicate
 * names refused, takeover after a crash, clean shutdown, persistence of operator settings,
 * Redis going away and coming back (also empty), and the CLI's error paths. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"

#define HB "200ms"
#define HB_MS 200
#define TTL_MS (3 * HB_MS)

static struct h_redis redis;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
}
static void teardown(void) { h_redis_stop(&redis, false); }

static void start(struct h_worker *w, const char *name, const char *const *extra) {
    h_worker_start(w, &redis, name, extra);
}
static bool wait_ping(const struct h_worker *w, int status, int timeout_ms) {
    return h_ping_is(w, status, timeout_ms);
}

/* `shoal ARGS --redis URL`: exit code, stdout and stderr (caller frees). */
static int cli(char **out, char **err, const char *a, const char *b, const char *c, const char *d) {
    const char *args[8] = {a};
    int n = 1;
    if (b) args[n++] = b;
    if (c) args[n++] = c;
    if (d) args[n++] = d;
    args[n++] = "--redis";
    args[n++] = redis.url;
    args[n] = NULL;
    return h_shoal(out, err, args);
}

/* The line of `shoal nodes` for name, or NULL. */
static char *find_line(const char *name) {
    char *out = NULL;
    cr_assert_eq(cli(&out, NULL, "nodes", NULL, NULL, NULL), 0);
    char *line = NULL;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n"))
        if (strncmp(l, name, strlen(name)) == 0 && l[strlen(name)] == ' ') line = strdup(l);
    free(out);
    return line;
}

static char *nodes_line(const char *name) {
    char *line = find_line(name);
    cr_assert_not_null(line, "no line for %s", name);
    return line;
}

struct status_want {
    const char *name;
    const char *status;
};
static bool status_is(void *arg) {
    struct status_want *s = arg;
    char *l = find_line(s->name);
    bool ok = l && strstr(l, s->status) != NULL;
    free(l);
    return ok;
}

/* SIGTERM must end a node cleanly: exit 0 (under ASan this also proves no leak or error). */
static void stop(struct h_worker *w) {
    if (w->pid <= 0) return;
    int code = h_worker_stop(w);
    if (code != 0) {
        char *log = h_read_file(w->log);
        cr_assert_fail("%s exited %d on SIGTERM; log:\n%s", w->name, code, log ? log : "");
    }
}

TestSuite(nodes, .init = setup, .fini = teardown, .timeout = 90);

Test(nodes, three_nodes_drain_cap_and_kill) {
    struct h_worker w[3];
    const char *names[] = {"alpha", "beta", "gamma"};
    for (int i = 0; i < 3; i++) start(&w[i], names[i], NULL);
    for (int i = 0; i < 3; i++) cr_assert(wait_ping(&w[i], 200, 10000), "%s not online", names[i]);

    char *out = NULL;
    cr_assert_eq(cli(&out, NULL, "nodes", NULL, NULL, NULL), 0);
    cr_assert(strstr(out, "NAME") && strstr(out, "STATUS") && strstr(out, "LAST SEEN") &&
                  strstr(out, "TASK CAP") && strstr(out, "TASKS") && strstr(out, "DRAIN"),
              "%s", out);
    free(out);

    /* Drain beta from the CLI: its ping turns 418, the others stay 200; then back. */
    cr_assert_eq(cli(&out, NULL, "drain", "beta", "on", NULL), 0);
    cr_assert(strstr(out, "beta: drain on"), "%s", out);
    free(out);
    cr_assert(wait_ping(&w[1], 418, 5000));
    cr_assert_eq(h_http(w[0].port, "GET", "/api/octopusservernodes/ping", NULL, 0), 200);
    cr_assert_eq(h_http(w[2].port, "GET", "/api/octopusservernodes/ping", NULL, 0), 200);
    char *line = nodes_line("beta");
    cr_assert(strstr(line, "Drained") && strstr(line, " on"), "%s", line);
    free(line);
    cr_assert_eq(cli(NULL, NULL, "drain", "beta", "off", NULL), 0);
    cr_assert(wait_ping(&w[1], 200, 5000));

    /* Cap: shown by `shoal nodes` and in ping's body. */
    cr_assert_eq(cli(NULL, NULL, "cap", "gamma", "7", NULL), 0);
    line = nodes_line("gamma");
    cr_assert(strstr(line, "       7 ") != NULL, "%s", line);
    free(line);
    char body[2048];
    bool seen = false;
    for (int i = 0; i < 200 && !seen; i++) {
        h_http(w[2].port, "GET", "/api/octopusservernodes/ping", body, sizeof body);
        seen = strstr(body, "\"MaxConcurrentTasks\":7") != NULL;
        if (!seen) usleep(10000);
    }
    cr_assert(seen, "%s", body);

    /* SIGKILL alpha: Offline within one TTL (plus a heartbeat of slack for the poll). */
    uint64_t killed = h_now_ms();
    int64_t killed_wall = (int64_t)time(NULL) * 1000;
    kill(w[0].pid, SIGKILL);
    h_wait(w[0].pid, 2000);
    w[0].pid = 0;
    struct status_want off = {"alpha", "Offline"};
    cr_assert(h_eventually(status_is, &off, TTL_MS + 2 * HB_MS + 1000), "not Offline in time");
    uint64_t took = h_now_ms() - killed;
    cr_assert(took <= TTL_MS + 2 * HB_MS + 1000, "Offline after %llu ms", (unsigned long long)took);
    /* Last seen is the last heartbeat before the kill. */
    cr_assert_eq(cli(&out, NULL, "nodes", "--json", NULL, NULL), 0);
    char *a = strstr(out, "\"Name\":\"alpha\"");
    cr_assert_not_null(a, "%s", out);
    cr_assert(strstr(a, "\"IsOffline\":true") != NULL);
    free(out);
    redisContext *c = h_redis_connect(&redis);
    redisReply *r = redisCommand(c, "HGET {shoal}:node:alpha last_seen");
    int64_t last = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    redisFree(c);
    cr_assert(last <= killed_wall + 1000 && last >= killed_wall - HB_MS - 1500,
              "last seen %lld vs kill %lld", (long long)last, (long long)killed_wall);
    stop(&w[1]);
    stop(&w[2]);
}

Test(nodes, duplicate_live_name_refused) {
    struct h_worker a, b;
    start(&a, "dup", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    start(&b, "dup", NULL);
    int code = h_wait(b.pid, 10 * HB_MS + 5000);
    cr_assert_eq(code, 2, "duplicate exited with %d", code);
    char *log = h_read_file(b.log);
    cr_assert(strstr(log, "in use by a live process"), "%s", log);
    free(log);
    cr_assert_eq(h_http(a.port, "GET", "/api/octopusservernodes/ping", NULL, 0), 200);
    stop(&a);
}

Test(nodes, restart_after_crash_takes_over) {
    struct h_worker a, b;
    start(&a, "phoenix", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    kill(a.pid, SIGKILL);
    h_wait(a.pid, 2000);
    start(&b, "phoenix", NULL);
    cr_assert(wait_ping(&b, 200, TTL_MS + 5000), "restart did not take over");
    char *log = h_read_file(b.log);
    cr_assert(strstr(log, "took over node name from previous instance"), "%s", log);
    free(log);
    stop(&b);
}

Test(nodes, sigterm_exits_zero_and_is_offline_at_once) {
    struct h_worker a;
    start(&a, "tidy", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    cr_assert_eq(h_stop(a.pid, SIGTERM, 5000), 0);
    char *line = nodes_line("tidy");
    cr_assert(strstr(line, "Offline"), "%s", line);
    free(line);
    char *log = h_read_file(a.log);
    cr_assert(strstr(log, "deregistered"), "%s", log);
    free(log);
    /* Refused while alive, accepted once offline. */
    char *err = NULL;
    cr_assert_eq(cli(NULL, NULL, "forget", "tidy", NULL, NULL), 0);
    cr_assert_eq(cli(NULL, &err, "forget", "tidy", NULL, NULL), 1);
    cr_assert(strstr(err, "no node named tidy"), "%s", err);
    free(err);
}

Test(nodes, operator_drain_and_cap_persist_across_restart) {
    struct h_worker a;
    start(&a, "keeper", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    char *err = NULL;
    cr_assert_eq(cli(NULL, &err, "forget", "keeper", NULL, NULL), 1);
    cr_assert(strstr(err, "is alive"), "%s", err);
    free(err);
    cr_assert_eq(cli(NULL, NULL, "drain", "keeper", "on", NULL), 0);
    cr_assert_eq(cli(NULL, NULL, "cap", "keeper", "3", NULL), 0);
    stop(&a);
    const char *extra[] = {"--cap", "10", NULL};
    start(&a, "keeper", extra);
    cr_assert(wait_ping(&a, 418, 10000), "drain lost across restart");
    char body[2048];
    h_http(a.port, "GET", "/api/octopusservernodes/ping", body, sizeof body);
    cr_assert(strstr(body, "\"MaxConcurrentTasks\":3"), "%s", body);
    cr_assert(strstr(body, "\"IsInMaintenanceMode\":true"), "%s", body);
    stop(&a);
}

Test(nodes, redis_down_then_back_empty) {
    struct h_worker a;
    start(&a, "survivor", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    h_redis_stop(&redis, true);
    cr_assert(wait_ping(&a, 503, 2 * HB_MS + 2000), "ping not 503 with Redis down");
    cr_assert_eq(h_http(a.port, "GET", "/healthz", NULL, 0), 200, "liveness must stay up");
    cr_assert_eq(h_redis_restart(&redis), 0);
    cr_assert(wait_ping(&a, 200, 10000), "did not recover after Redis came back");
    char *line = nodes_line("survivor");
    cr_assert(strstr(line, "Running"), "%s", line);
    free(line);
    /* FLUSHALL: the node notices at its next heartbeat and registers again. */
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
    struct status_want run = {"survivor", "Running"};
    cr_assert(h_eventually(status_is, &run, 5000), "not re-registered after FLUSHALL");
    cr_assert_neq(kill(a.pid, 0), -1, "the node must never exit because Redis went away");
    stop(&a);
}

Test(nodes, cli_errors_are_one_clear_line) {
    char *out = NULL, *err = NULL;
    cr_assert_eq(cli(&out, &err, "drain", "ghost", "on", NULL), 1);
    cr_assert(strstr(err, "no node named ghost"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(cli(NULL, &err, "cap", "ghost", "many", NULL), 2);
    cr_assert(strstr(err, "expected a whole number"), "%s", err);
    free(err);
    cr_assert_eq(cli(NULL, &err, "drain", "ghost", "maybe", NULL), 2);
    free(err);
    cr_assert_eq(cli(NULL, &err, "nodes", "--bogus", "1", NULL), 2);
    cr_assert(strstr(err, "unknown flag --bogus"), "%s", err);
    free(err);
    int port = h_free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    const char *args[] = {"nodes", "--redis", url, NULL};
    cr_assert_eq(h_shoal(NULL, &err, args), 1);
    cr_assert(strstr(err, "cannot reach Redis at 127.0.0.1"), "%s", err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
    free(err);
    const char *unknown[] = {"frobnicate", NULL};
    cr_assert_eq(h_shoal(NULL, NULL, unknown), 2);
}

Test(nodes, worker_start_up_errors) {
    char *err = NULL;
    const char *bad[] = {"worker", "--cap", "-3", NULL};
    cr_assert_eq(h_shoal(NULL, &err, bad), 2);
    cr_assert(strstr(err, "--cap '-3'"), "%s", err);
    free(err);
    struct h_worker a;
    start(&a, "holder", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    char listen[40];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", a.port);
    const char *busy[] = {"worker", "--redis",  redis.url, "--name",
                          "other",  "--listen", listen,    NULL};
    cr_assert_eq(h_shoal(NULL, &err, busy), 1);
    cr_assert(strstr(err, "cannot listen on"), "%s", err);
    free(err);
    stop(&a);
}

Test(nodes, drain_wait_returns_when_idle) {
    struct h_worker a;
    start(&a, "waiter", NULL);
    cr_assert(wait_ping(&a, 200, 10000));
    char *out = NULL;
    cr_assert_eq(cli(&out, NULL, "drain", "waiter", "on", "--wait"), 0);
    cr_assert(strstr(out, "waiter: idle"), "%s", out);
    free(out);
    /* A task recorded as running keeps --wait waiting until the timeout (exit 3). */
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "ZADD {shoal}:running:waiter 9007199254740991 9"));
    redisFree(c);
    const char *args[] = {"drain", "waiter",  "on",      "--wait", "--timeout",
                          "300ms", "--redis", redis.url, NULL};
    char *err = NULL;
    cr_assert_eq(h_shoal(&out, &err, args), 3);
    cr_assert(strstr(err, "still has 1 running task"), "%s", err);
    free(out);
    free(err);
    c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL {shoal}:running:waiter"));
    redisFree(c);
    stop(&a);
}

/* A Redis that may evict keys would drop task records under memory pressure: a node refuses to
 * start on one (exit 2, saying how to fix it) unless --allow-redis-eviction, and a node already
 * running logs an error when it reconnects to one rather than exiting. */
Test(nodes, evicting_redis_refused_at_start) {
    redisContext *rc = h_redis_connect(&redis);
    freeReplyObject(redisCommand(rc, "CONFIG SET maxmemory-policy allkeys-lru"));
    struct h_worker a, b;
    start(&a, "evict", NULL);
    int code = h_wait(a.pid, 10000);
    cr_assert_eq(code, 2, "a node on an evicting Redis exited with %d", code);
    char *log = h_read_file(a.log);
    cr_assert(strstr(log, "maxmemory-policy is allkeys-lru") && strstr(log, "noeviction"), "%s",
              log);
    cr_assert(!strstr(log, "msg=registered"), "it registered before refusing: %s", log);
    free(log);

    const char *allow[] = {"--allow-redis-eviction", NULL};
    start(&b, "evict-ok", allow);
    cr_assert(wait_ping(&b, 200, 10000), "--allow-redis-eviction did not run");
    log = h_read_file(b.log);
    cr_assert(strstr(log, "Redis may evict keys"), "%s", log);
    free(log);
    stop(&b);

    /* Running on noeviction, then the policy changes and the link drops: an error, no exit. */
    freeReplyObject(redisCommand(rc, "CONFIG SET maxmemory-policy noeviction"));
    struct h_worker c;
    start(&c, "evict-later", NULL);
    cr_assert(wait_ping(&c, 200, 10000));
    freeReplyObject(redisCommand(rc, "CONFIG SET maxmemory-policy volatile-lru"));
    freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    cr_assert(wait_ping(&c, 200, 10000), "the node did not come back after the reconnect");
    uint64_t until = h_now_ms() + 5000;
    bool logged = false;
    while (!logged && h_now_ms() < until) {
        log = h_read_file(c.log);
        logged = log && strstr(log, "maxmemory-policy is volatile-lru");
        free(log);
        if (!logged) usleep(50000);
    }
    cr_assert(logged, "no error after reconnecting to an evicting Redis");
    cr_assert_eq(kill(c.pid, 0), 0, "the running node exited");
    stop(&c);
    freeReplyObject(redisCommand(rc, "CONFIG SET maxmemory-policy noeviction"));
    redisFree(rc);
}
