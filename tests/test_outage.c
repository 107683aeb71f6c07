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
    char err[256];
    int64_t id = h_enqueue_sleep(c, dur, err, sizeof err);
    cr_assert_geq(id, 0, "%s", err);
    return id;
}

static void open_client(struct shoal_client *c) {
    char err[256];
    cr_assert_eq(shoal_client_open(c, redis.url, "shoal", err, sizeof err), 0, "%s", err);
}

static void await(struct shoal_client *c, int64_t id, const char *state, int ms) {
    cr_assert(h_task_reaches(c, id, state, ms), "ServerTasks-%lld never became %s", (long long)id,
              state);
}

TestSuite(outage, .timeout = 90);

/* An outage shorter than the node's lease (liveness TTL less the fencing margin: here a 3 s
 * heartbeat, TTL 9 s, margin 3.9 s: 5.1 s) stops nothing. */
Test(outage, redis_restart_with_tasks_running_loses_and_repeats_nothing) {
    const char *aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    cr_assert_eq(h_redis_start(&redis, aof), 0);
    struct h_worker w;
    const char *lease[] = {"--heartbeat", "3s", NULL};
    h_worker_start(&w, &redis, "steady", lease);
    cr_assert(h_ping_is(&w, 200, 10000));
    struct shoal_client c;
    char err[256];
    open_client(&c);
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
    open_client(&c);
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

static long long alive_pttl(redisContext *rc, const char *name) {
    redisReply *r = redisCommand(rc, "PTTL {shoal}:alive:%s", name);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* A heartbeat sent between two ticks (a re-subscription asks for one at once) gets a whole
 * period for its answer. The tick after it found it pending and dropped the link ("heartbeat
 * unanswered for a whole period") however recently it was sent: after a restart of Redis, a CI
 * run saw the API answer 503 just after ping said 200. Here: just after a tick, the subscriber
 * links are cut and writes paused for 1 s (`CLIENT PAUSE WRITE`), so the beat of the
 * re-subscription waits across the next tick; its answer then comes 0.9 s after it was sent. */
Test(outage, a_heartbeat_sent_between_ticks_gets_a_whole_period) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    const char *hb[] = {"--heartbeat", "1s", NULL};
    h_worker_start(&w, &redis, "offbeat", hb);
    cr_assert(h_ping_is(&w, 200, 10000));
    redisContext *rc = h_redis_connect(&redis);
    /* A tick: the TTL jumps back up above the lowest seen. */
    long long low = alive_pttl(rc, "offbeat"), now = low;
    for (int i = 0; i < 600 && now <= low + 200; i++) {
        usleep(5000);
        now = alive_pttl(rc, "offbeat");
        if (now < low) low = now;
    }
    cr_assert_gt(now, low + 200, "no heartbeat seen in 3 s");
    usleep(300 * 1000);
    freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE pubsub"));
    freeReplyObject(redisCommand(rc, "CLIENT PAUSE 1000 WRITE"));
    for (int i = 0; i < 80; i++) { /* 1.6 s: across the next tick and the pause's end */
        cr_assert_eq(h_http(w.port, "GET", "/api/octopusservernodes/ping", NULL, 0), 200,
                     "ping not 200 %d ms after the cut", i * 20);
        usleep(20 * 1000);
    }
    char *log = h_read_file(w.log);
    cr_assert(log && !strstr(log, "heartbeat unanswered"), "%s", log ? log : "(no log)");
    free(log);
    redisFree(rc);
    cr_assert_eq(h_worker_stop(&w), 0);
    h_redis_stop(&redis, false);
}

/* The shortest heartbeat the settings accept (the low end of the range a refused `--heartbeat`
 * names) leaves a healthy node's lease room for the next heartbeat's answer. The fence
 * (worker/node.c) fires TTL - margin after the last acknowledged heartbeat was sent; at 100 ms
 * (TTL 300 ms, margin 100 ms of grace + 100 ms of slack) that was the next heartbeat's own send
 * time, so a node on a quiet Redis stopped its tasks every period (found driving a node at
 * 100 ms: 34 fences in 4 s). */
Test(outage, the_shortest_heartbeat_accepted_keeps_its_lease) {
    char *err = NULL;
    const char *bad[] = {"worker", "--heartbeat", "1ms", NULL};
    cr_assert_neq(h_shoal(NULL, &err, bad), 0);
    const char *from = err ? strstr(err, "from ") : NULL;
    char shortest[16] = "";
    cr_assert(from && sscanf(from + 5, "%15s", shortest) == 1, "no range in: %s",
              err ? err : "(nothing)");
    free(err);
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    const char *hb[] = {"--heartbeat", shortest, NULL};
    h_worker_start(&w, &redis, "quick", hb);
    cr_assert(h_ping_is(&w, 200, 10000));
    struct shoal_client c;
    open_client(&c);
    int64_t id = enqueue_sleep(&c, "1500ms"); /* many heartbeats long */
    await(&c, id, "Success", 10000);
    shoal_client_close(&c);
    char *log = h_read_file(w.log);
    cr_assert(log && !strstr(log, "liveness TTL less the margin"), "heartbeat %s: %s", shortest,
              log ? log : "(no log)");
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
    open_client(&c);
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

/* The pid in path (written by the task), or 0. */
static pid_t read_pid(const char *path) {
    char *t = h_read_file(path);
    pid_t p = t ? (pid_t)atoi(t) : 0;
    free(t);
    return p;
}
static bool pid_gone(void *arg) {
    pid_t p = *(pid_t *)arg;
    return p > 0 && kill(p, 0) != 0;
}

/* Queues `sh -c 'echo $$ > PIDFILE; exec sleep 60'` with the CLI and waits for it to run;
 * returns the program's pid (its task number in *id when id is not NULL). */
static pid_t start_sleeper(long long *id) {
    char pidfile[160], cmd[640];
    snprintf(pidfile, sizeof pidfile, "%s/task.pid", redis.dir);
    unlink(pidfile);
    snprintf(cmd, sizeof cmd, "echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 60", pidfile, pidfile,
             pidfile);
    char *out = NULL;
    const char *enq[] = {"enqueue", "--redis", redis.url, "--", "/bin/sh", "-c", cmd, NULL};
    cr_assert_eq(h_shoal(&out, NULL, enq), 0);
    if (id) *id = atoll(strchr(out, '-') + 1);
    free(out);
    pid_t pid = 0;
    for (int i = 0; i < 500 && !(pid = read_pid(pidfile)); i++) usleep(10000);
    cr_assert_gt(pid, 0, "the task did not start");
    return pid;
}

/* Fencing (issue 16): a node that cannot prove it still holds its name stops its tasks before
 * its liveness TTL runs out, so that no other node runs them again while they still run.
 * Redis is frozen (SIGSTOP: nothing answers, nothing expires in Redis's eyes until it resumes)
 * for longer than the TTL: the program is gone before the TTL since the last acknowledged
 * heartbeat; a freeze shorter than the TTL less the margin stops nothing. Before, the program
 * ran on through any outage. */
Test(outage, a_node_that_cannot_prove_its_liveness_stops_its_tasks_before_its_ttl) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    /* heartbeat 500 ms: TTL 1.5 s, grace min(5 s, 0.5 s) = 0.5 s, margin 0.65 s */
    const char *extra[] = {"--heartbeat", "500ms", "--allow-exec", "/bin/sh", "--grace",
                           "1s",          NULL};
    h_worker_start(&w, &redis, "fenced", extra);
    cr_assert(h_ping_is(&w, 200, 10000));
    pid_t pid = start_sleeper(NULL);
    usleep(700 * 1000); /* a heartbeat or two acknowledged */

    /* A short freeze (well under TTL - margin = 0.85 s after the last acknowledged beat):
     * nothing is stopped. */
    kill(redis.pid, SIGSTOP);
    usleep(250 * 1000);
    kill(redis.pid, SIGCONT);
    usleep(600 * 1000);
    cr_assert_eq(kill(pid, 0), 0, "a freeze shorter than the lease stopped the task");

    /* A long freeze: gone within TTL (1.5 s) of the freeze at the latest. */
    kill(redis.pid, SIGSTOP);
    uint64_t t0 = h_now_ms();
    bool gone = h_eventually(pid_gone, &pid, 3000);
    uint64_t took = h_now_ms() - t0;
    kill(redis.pid, SIGCONT);
    cr_assert(gone, "the task still ran 3 s into the freeze");
    cr_assert_lt(took, 1500, "gone %llu ms into the freeze, after the TTL",
                 (unsigned long long)took);
    char body[8192];
    cr_assert(h_ping_is(&w, 200, 10000), "the node came back");
    cr_assert_eq(h_http(w.port, "GET", "/metrics", body, sizeof body), 200);
    cr_assert(strstr(body, "shoal_tasks_fenced_total 1"), "%s", body);
    char *log = h_read_file(w.log);
    cr_assert(strstr(log, "stopping every running task"), "%s", log);
    free(log);
    cr_assert_eq(h_worker_stop(&w), 0);
    h_redis_stop(&redis, false);
}

/* A run Redis no longer records as its node's (a failover to a replica that missed the claim,
 * and the task went back to its queue; or the task was recovered and handed to another node)
 * must stop, or two runs of the task overlap. Here the task is moved to another node by hand,
 * then the node's connections are killed: at its re-registration its reconcile sees the run is
 * not its own and stops it. Before, the program ran on to its end (the partition chaos run,
 * scripts/partition.py, saw two such overlaps after its failover). */
Test(outage, a_run_redis_no_longer_records_as_the_nodes_is_stopped) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    const char *extra[] = {"--allow-exec", "/bin/sh", "--kill-grace", "300ms", NULL};
    h_worker_start(&w, &redis, "lost", extra);
    long long id = 0;
    pid_t pid = start_sleeper(&id);

    redisContext *rc = h_redis_connect(&redis);
    cr_assert_not_null(rc);
    char key[64], id_s[24];
    snprintf(key, sizeof key, "{shoal}:task:%lld", id);
    snprintf(id_s, sizeof id_s, "%lld", id);
    redisReply *r = redisCommand(rc, "HSET %s node elsewhere lease 99999999999999", key);
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc, "ZREM {shoal}:running:lost %s", id_s));
    freeReplyObject(redisCommand(rc, "ZADD {shoal}:running:elsewhere 99999999999999 %s", id_s));
    freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    redisFree(rc);

    bool gone = h_eventually(pid_gone, &pid, 5000);
    if (!gone) kill(pid, SIGKILL);
    cr_assert(gone, "the run went on after Redis handed its task to another node");
    char *log = h_read_file(w.log);
    cr_assert(strstr(log, "no longer records as this node's"), "%s", log);
    free(log);
    cr_assert_eq(h_worker_stop(&w), 0);
    h_redis_stop(&redis, false);
}

/* The node itself stopped (SIGSTOP: a debugger, a frozen cgroup, a loop blocked in its own
 * work): its fencing timer cannot fire, but the shim holds the node's lease deadline and stops
 * the run by itself before the TTL ends. Before, the program ran on while the node was frozen,
 * and recovery could run its task again elsewhere. */
Test(outage, a_frozen_node_cannot_keep_its_runs_past_its_lease) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct h_worker w;
    /* heartbeat 500 ms: TTL 1.5 s, grace min(5 s, 0.5 s) = 0.5 s, margin 0.65 s */
    const char *extra[] = {
        "--heartbeat", "500ms", "--allow-exec", "/bin/sh", "--grace",
        "1s",          NULL}; /* the task runs again after the freeze: shut down in 1 s */
    h_worker_start(&w, &redis, "frozen", extra);
    pid_t pid = start_sleeper(NULL);
    usleep(700 * 1000); /* a heartbeat or two acknowledged */

    kill(w.pid, SIGSTOP);
    uint64_t t0 = h_now_ms();
    bool gone = h_eventually(pid_gone, &pid, 4000);
    uint64_t took = h_now_ms() - t0;
    kill(w.pid, SIGCONT);
    if (!gone) kill(pid, SIGKILL);
    cr_assert(gone, "the task still ran 4 s into the node's freeze");
    /* TTL 1.5 s after the last acknowledged heartbeat, itself at most ~0.5 s before the freeze */
    cr_assert_lt(took, 1500, "gone %llu ms into the freeze, after the TTL",
                 (unsigned long long)took);
    cr_assert(h_ping_is(&w, 200, 10000), "the node came back");
    int code = h_worker_stop(&w);
    char *log = h_read_file(w.log);
    cr_assert_eq(code, 0, "exit %d; log:\n%s", code, log ? log : "");
    free(log);
    h_redis_stop(&redis, false);
}
