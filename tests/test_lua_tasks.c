/* test_lua_tasks.c: the task scripts (enqueue, claim, complete, cancel, expire) run directly
 * against a real redis-server, with time passed in ARGV: caps, drain, liveness, FIFO and
 * priorities, queue order, Octopus's balancing worked example, scheduling, expiry, fencing,
 * retries, requeue on shutdown, cancel in every state. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calls.h"
#include "common/client.h"
#include "common/keys.h"
#include "common/rsync.h"
#include "tests/harness.h"

#define T0 1000000LL /* "now" at the start of every test (ms) */
#define DAY 86400000LL

static struct h_redis redis;
static struct rsync rs;
static struct keys k;
static redisContext *rc;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    char err[256];
    cr_assert_eq(rsync_open(&rs, redis.url, 2000, err, sizeof err), 0, "%s", err);
    keys_init(&k, "t");
    rc = h_redis_connect(&redis);
}
static void teardown(void) {
    redisFree(rc);
    rsync_close(&rs);
    h_redis_stop(&redis, false);
}
TestSuite(tasks, .init = setup, .fini = teardown, .timeout = 60);

/* Sends a call built by common/calls.h (the builders the node and the client use); frees it. */
static redisReply *eval(struct script_call *c) {
    char err[256];
    redisReply *r = rsync_call(&rs, c, err, sizeof err);
    call_free(c);
    cr_assert_not_null(r, "%s", err);
    return r;
}

static long long num(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long num(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static char *str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str(const char *fmt, ...) {
    static char out[4][512];
    static int slot;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    char *o = out[slot++ % 4];
    snprintf(o, 512, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return o;
}

/* Registers node `name` alive with `cap` (instance = name). */
static void node(const char *name, int cap) {
    struct call_register_args a = {name, name, 1000000, 600000,    cap, "0",
                                   "h",  1,    "x",     "default", 1000};
    struct script_call c;
    call_register(&c, &k, &a);
    freeReplyObject(eval(&c));
}

/* Enqueues one task; returns its number. */
static long long enq(const char *queue, const char *type, int prio, long long at, long long expiry,
                     int attempts, long long now) {
    struct shoal_task_opts o = {.queue = queue,
                                .type = type,
                                .priority = prio,
                                .at_ms = at,
                                .expiry_ms = expiry,
                                .timeout_ms = 0,
                                .attempts = attempts,
                                .lost_budget = 1};
    struct script_call c;
    call_enqueue(&c, &k, now, 1);
    call_enqueue_add(&c, &o);
    redisReply *r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long id = r->element[0]->integer;
    freeReplyObject(r);
    return id;
}

/* Claims for node `name` (instance = name) at `now`; queues NULL-terminated; push: register
 * the node idle when it is left room and nothing to take. */
static redisReply *claim_as(const char *name, int max, long long now, bool balance,
                            const char *const *queues, bool push) {
    struct call_claim_args a = {name, name, now, max, balance, 30000, push};
    struct script_call c;
    call_claim(&c, &k, &a);
    static const char *const def[] = {"default", NULL};
    for (const char *const *q = queues ? queues : def; *q; q++) call_claim_add_queue(&c, *q);
    redisReply *r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    return r;
}

static redisReply *claim(const char *name, int max, long long now, bool balance,
                         const char *const *queues) {
    return claim_as(name, max, now, balance, queues, false);
}

static size_t claimed(const redisReply *r) { return (r->elements - 3) / 7; }
static long long claimed_id(const redisReply *r, size_t i) {
    return atoll(r->element[3 + 7 * i]->str);
}
static long long claimed_lease(const redisReply *r, size_t i) {
    return r->element[4 + 7 * i]->integer;
}

/* Reports one result for node `name`, with its error text and exit code (-1: none). Returns the
 * reply (caller frees). */
static redisReply *complete_as(const char *name, long long id, long long lease, const char *outcome,
                               long long now, long long retry_delay, const char *error,
                               long long exit_code) {
    char i[24];
    snprintf(i, sizeof i, "%lld", id);
    struct call_report rep = {i,         lease,     outcome,           error,
                              exit_code, "the log", strlen("the log"), retry_delay};
    struct script_call c;
    call_complete(&c, &k, name, now, 604800000, 1);
    call_complete_add(&c, &rep);
    return eval(&c);
}

static redisReply *complete(const char *name, long long id, long long lease, const char *outcome,
                            long long now, long long retry_delay) {
    return complete_as(name, id, lease, outcome, now, retry_delay, "it went wrong", -1);
}

static const char *state(long long id) { return str("HGET {t}:task:%lld state", id); }

static redisReply *cancel(long long id) {
    struct script_call c;
    call_cancel(&c, &k, id, 1000100);
    return eval(&c);
}

/* Enqueues n tasks of queue `queue` in one call (expiry ms after T0); returns the first id. */
static long long enq_many(const char *queue, int n, long long expiry) {
    struct shoal_task_opts o = {
        .queue = queue, .type = "noop", .expiry_ms = expiry, .attempts = 1, .lost_budget = 1};
    struct script_call c;
    call_enqueue(&c, &k, T0, n);
    for (int i = 0; i < n; i++) call_enqueue_add(&c, &o);
    redisReply *r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long first = r->element[0]->integer;
    freeReplyObject(r);
    return first;
}

Test(tasks, claim_requires_alive_undrained_and_below_cap) {
    enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("ghost", 5, T0, false, NULL);
    cr_assert_str_eq(r->element[0]->str, "dead");
    freeReplyObject(r);
    node("n1", 1);
    freeReplyObject(redisCommand(rc, "HSET {t}:node:n1 drain 1"));
    r = claim("n1", 5, T0, false, NULL);
    cr_assert_str_eq(r->element[0]->str, "drained");
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc, "HSET {t}:node:n1 drain 0"));
    r = claim("n1", 5, T0, false, NULL);
    cr_assert_eq(claimed(r), 1, "cap 1: one task");
    freeReplyObject(r);
    enq("default", "noop", 0, 0, DAY, 1, T0);
    r = claim("n1", 5, T0, false, NULL);
    cr_assert_str_eq(r->element[0]->str, "full");
    freeReplyObject(r);
    cr_assert_eq(num("HGET {t}:stats running"), 1);
    cr_assert_eq(num("HGET {t}:stats ready"), 1);
}

Test(tasks, priority_then_fifo_then_queue_order) {
    node("n1", 10);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long b = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long hi = enq("default", "noop", 5, 0, DAY, 1, T0);
    long long urgent = enq("urgent", "noop", -3, 0, DAY, 1, T0);
    const char *const qs[] = {"urgent", "default", NULL};
    redisReply *r = claim("n1", 10, T0, false, qs);
    cr_assert_eq(claimed(r), 4);
    long long want[] = {urgent, hi, a, b};
    for (size_t i = 0; i < 4; i++) cr_assert_eq(claimed_id(r, i), want[i], "position %zu", i);
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Executing");
    cr_assert_str_eq(str("HGET {t}:task:%lld node", a), "n1");
    cr_assert_eq(num("ZCARD {t}:running:n1"), 4);
    /* No timeout, no lease deadline: 2^53 - 1 less the task number, beyond any time (recovery
     * never finds it due), and each newer task at the head of the set (claim.lua). */
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(num("ZSCORE {t}:running:n1 %lld", want[i]), 9007199254740991LL - want[i]);
    cr_assert_eq(num("ZRANK {t}:running:n1 %lld", urgent), 0, "the newest task first");
}

/* A ready list holding an id that is no number, whose record says Queued (planted by hand):
 * the claim still ends whole, and their entries are scored beyond any time. It once computed that task's running-set score from its number,
 * and a Lua error there came after the tasks before it were written Executing but before their
 * running-set entries (claim.lua writes those last). */
Test(tasks, a_queued_record_under_an_id_that_is_no_number_does_not_break_a_claim) {
    node("n1", 5);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0);
    freeReplyObject(redisCommand(rc,
                                 "HSET {t}:task:abc state Queued queue default type noop "
                                 "queued %lld",
                                 T0));
    freeReplyObject(redisCommand(rc,
                                 "HSET {t}:task:inf state Queued queue default type noop "
                                 "queued %lld",
                                 T0));
    freeReplyObject(redisCommand(rc, "RPUSH {t}:q:default:0 abc inf"));
    long long b = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 5, T0, false, NULL);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_str_eq(r->element[0]->str, "ok");
    cr_assert_eq(claimed(r), 4);
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Executing");
    cr_assert_str_eq(state(b), "Executing");
    cr_assert_eq(num("ZCARD {t}:running:n1"), 4, "every task written Executing has its entry");
    /* Beyond any time, as every entry without a deadline: recovery never finds them due. */
    cr_assert_eq(num("ZSCORE {t}:running:n1 abc"), 9007199254740991LL);
    cr_assert_eq(num("ZSCORE {t}:running:n1 inf"), 9007199254740991LL);
}

/* Octopus's worked example: three nodes with cap 10, 12 pending, 10 active. Node one runs 8
 * (80% > 73.3%: takes none), node two runs 3 (takes 5), node three runs none (takes the 7 left). */
Test(tasks, balancing_follows_octopus_worked_example) {
    node("one", 10);
    node("two", 10);
    node("three", 10);
    cr_assert_eq(num("HGET {t}:stats avail_cap"), 30);
    for (int i = 0; i < 8; i++) freeReplyObject(redisCommand(rc, "ZADD {t}:running:one 1 x%d", i));
    for (int i = 0; i < 3; i++) freeReplyObject(redisCommand(rc, "ZADD {t}:running:two 1 y%d", i));
    freeReplyObject(redisCommand(rc, "HSET {t}:stats running 10"));
    for (int i = 0; i < 12; i++) enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("one", 10, T0, true, NULL);
    cr_assert_eq(claimed(r), 0, "80%% > 73.3%%");
    freeReplyObject(r);
    r = claim("two", 10, T0, true, NULL);
    cr_assert_eq(claimed(r), 5, "30%% -> picks until its ratio passes 73.3%%");
    freeReplyObject(r);
    r = claim("three", 10, T0, true, NULL);
    cr_assert_eq(claimed(r), 7, "the rest");
    freeReplyObject(r);
    /* Without balancing, a node fills up to its cap. */
    for (int i = 0; i < 12; i++) enq("default", "noop", 0, 0, DAY, 1, T0);
    r = claim("one", 10, T0, false, NULL);
    cr_assert_eq(claimed(r), 2);
    freeReplyObject(r);
}

Test(tasks, scheduled_task_waits_for_its_time) {
    node("n1", 5);
    long long id = enq("default", "noop", 0, T0 + 5000, DAY, 1, T0);
    cr_assert_str_eq(state(id), "Queued");
    redisReply *r = claim("n1", 5, T0 + 4999, false, NULL);
    cr_assert_eq(claimed(r), 0);
    cr_assert_eq(r->element[1]->integer, T0 + 5000, "next due reported");
    freeReplyObject(r);
    r = claim("n1", 5, T0 + 5000, false, NULL);
    cr_assert_eq(claimed(r), 1);
    cr_assert_eq(r->element[1]->integer, -1);
    freeReplyObject(r);
    cr_assert_eq(num("HGET {t}:task:%lld started", id), T0 + 5000);
}

Test(tasks, expired_task_becomes_timedout_not_claimed) {
    node("n1", 5);
    long long old = enq("default", "noop", 0, 0, 1000, 1, T0);
    long long fresh = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 5, T0 + 1000, false, NULL);
    cr_assert_eq(claimed(r), 1);
    cr_assert_eq(claimed_id(r, 0), fresh);
    cr_assert_eq(r->element[2]->integer, 1, "one expired");
    freeReplyObject(r);
    cr_assert_str_eq(state(old), "TimedOut");
    cr_assert(strstr(str("HGET {t}:task:%lld error", old), "not picked up within 1s"));
    cr_assert_eq(num("ZSCORE {t}:done %lld", old), T0 + 1000);
}

/* The default expiry (a day) is not stored: 18 bytes less per queued task. A claim, the expiry
 * pass and the client all take a missing one as the queue time plus a day. */
Test(tasks, a_default_expiry_is_not_stored_and_still_applies) {
    node("n1", 5);
    long long dflt = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long later = enq("default", "noop", 0, T0 + 10, DAY, 1, T0);
    long long two = enq("default", "noop", 0, 0, 2 * DAY, 1, T0);
    cr_assert_eq(num("HEXISTS {t}:task:%lld expiry", dflt), 0);
    cr_assert_eq(num("HEXISTS {t}:task:%lld expiry", later), 0);
    cr_assert_eq(num("HGET {t}:task:%lld expiry", two), T0 + 2 * DAY);
    redisReply *h = redisCommand(rc, "HGETALL {t}:task:%lld", dflt);
    struct shoal_task t;
    shoal_task_from_reply(h, 0, dflt, &t);
    freeReplyObject(h);
    cr_assert_eq(t.expiry_ms, T0 + DAY, "the client shows the default expiry");
    shoal_task_free(&t);
    redisReply *r = claim("n1", 5, T0 + DAY + 5, false, NULL);
    cr_assert_eq(claimed(r), 2, "the scheduled one (a day from T0 + 10) and the two-day one");
    freeReplyObject(r);
    cr_assert_str_eq(state(dflt), "TimedOut");
    cr_assert(strstr(str("HGET {t}:task:%lld error", dflt), "not picked up within 1d"));
    cr_assert_str_eq(state(later), "Executing");
    cr_assert_str_eq(state(two), "Executing");
}

Test(tasks, expire_pass_covers_queues_nobody_serves) {
    long long a = enq("orphans", "noop", 0, 0, 1000, 1, T0);
    long long b = enq("orphans", "noop", 0, 0, DAY, 1, T0);
    long long s = enq("orphans", "noop", 0, T0 + 10, 500, 1, T0);
    struct script_call c;
    call_expire(&c, &k, 1002000, 1000, "0", DAY);
    redisReply *r = eval(&c);
    cr_assert_eq(r->element[0]->integer, 2);
    cr_assert_str_eq(r->element[1]->str, "0", "one queue: the pass is over");
    cr_assert_eq(r->element[2]->integer, 0, "within the budget");
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "TimedOut");
    cr_assert_str_eq(state(b), "Queued");
    cr_assert_str_eq(state(s), "TimedOut", "a scheduled task past its expiry too");
    cr_assert_eq(num("HGET {t}:stats ready"), 1);
}

/* Runs expiry passes (slice after slice, as the node does) at `now`; returns the calls made. */
static int expire_pass(long long now, long long budget, long long idle, long long *expired) {
    char cursor[32] = "0";
    int calls = 0;
    *expired = 0;
    for (;;) {
        struct script_call c;
        call_expire(&c, &k, now, budget, cursor, idle);
        redisReply *r = eval(&c);
        calls++;
        cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
        *expired += r->element[0]->integer;
        snprintf(cursor, sizeof cursor, "%s", r->element[1]->str);
        bool more = r->element[2]->integer != 0;
        freeReplyObject(r);
        if (!more && strcmp(cursor, "0") == 0) break;
        cr_assert_lt(calls, 1000, "the pass does not end");
    }
    return calls;
}

/* Canceled entries count against the budget too: before, 200,000 canceled queued tasks were
 * all popped by one call whose bound was 1,000 (0.61 s). */
Test(tasks, expire_counts_canceled_entries_against_its_bound) {
    long long c0 = enq_many("orphans", 3000, DAY);
    for (long long id = c0; id < c0 + 3000; id++) freeReplyObject(cancel(id));
    enq_many("orphans", 500, 1000); /* expire at T0 + 1000 */
    struct script_call c;
    call_expire(&c, &k, T0 + 2000, 256, "0", DAY);
    redisReply *r = eval(&c);
    cr_assert_eq(r->element[2]->integer, 1, "the budget ran out: more to do");
    freeReplyObject(r);
    cr_assert_eq(num("LLEN {t}:q:orphans:0"), 3500 - 256, "one call popped exactly its budget");
    long long expired = 0;
    int calls = expire_pass(T0 + 2000, 256, DAY, &expired);
    cr_assert_geq(calls, (3000 - 256) / 256 + 500 * 4 / 256, "%d calls", calls);
    cr_assert_eq(expired, 500);
    cr_assert_eq(num("LLEN {t}:q:orphans:0"), 0);
    cr_assert_eq(num("HGET {t}:stats ready"), 0);
    cr_assert_eq(num("ZCARD {t}:done"), 3500);
}

/* Queue names: an empty queue unused for the idle period is forgotten (before, {NS}:queues
 * only grew: 20,000 one-off names made every /metrics refresh walk them all); one with work,
 * or enqueued to lately, stays; whatever pushes to a forgotten queue brings its name back. */
Test(tasks, idle_empty_queue_names_are_forgotten_and_come_back) {
    const long long idle = 60000;
    for (int i = 0; i < 200; i++) {
        char q[32];
        snprintf(q, sizeof q, "oneoff-%d", i);
        long long id = enq(q, "noop", 0, 0, DAY, 1, T0);
        freeReplyObject(cancel(id));
    }
    long long busy = enq("busy", "noop", 0, 0, DAY, 1, T0);
    long long later = enq("later", "noop", 0, T0 + 5 * idle, DAY, 1, T0); /* scheduled */
    cr_assert_eq(num("SCARD {t}:queues"), 202);
    long long expired;
    expire_pass(T0 + idle / 2, 256, idle, &expired);
    cr_assert_eq(num("SCARD {t}:queues"), 202, "not idle long enough yet");
    expire_pass(T0 + idle, 256, idle, &expired);
    cr_assert_eq(num("SCARD {t}:queues"), 1, "only the queue with a ready task is left");
    cr_assert_eq(num("SISMEMBER {t}:queues busy"), 1);
    cr_assert_eq(num("ZCARD {t}:qseen"), 1);
    /* The scheduled task comes due: its queue is known again, and claimed from. */
    node("n1", 5);
    const char *const qs[] = {"later", "busy", NULL};
    redisReply *r = claim("n1", 5, T0 + 5 * idle, false, qs);
    cr_assert_eq(claimed(r), 2);
    cr_assert_eq(claimed_id(r, 0), later);
    cr_assert_eq(claimed_id(r, 1), busy);
    freeReplyObject(r);
    cr_assert_eq(num("SISMEMBER {t}:queues later"), 1, "promotion brought the name back");
    enq("oneoff-7", "noop", 0, 0, DAY, 1, T0 + 5 * idle);
    cr_assert_eq(num("SISMEMBER {t}:queues oneoff-7"), 1, "an enqueue brings it back");
}

Test(tasks, results_are_fenced_by_lease) {
    node("n1", 5);
    long long id = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 5, T0, false, NULL);
    long long lease = claimed_lease(r, 0);
    freeReplyObject(r);
    r = complete("n1", id, lease + 1, "Success", T0 + 10, 0);
    cr_assert_eq(r->element[0]->integer, 0);
    cr_assert_eq(r->elements, 4, "refused");
    freeReplyObject(r);
    cr_assert_str_eq(state(id), "Executing");
    r = complete("n1", id, lease, "Success", T0 + 10, 0);
    cr_assert_eq(r->element[0]->integer, 1);
    freeReplyObject(r);
    cr_assert_str_eq(state(id), "Success");
    cr_assert_str_eq(str("GET {t}:log:%lld", id), "the log");
    cr_assert_eq(num("ZCARD {t}:running:n1"), 0);
    cr_assert_eq(num("HGET {t}:stats running"), 0);
    r = complete("n1", id, lease, "Failed", T0 + 20, 0);
    cr_assert_eq(r->elements, 4, "a second report of the same run is refused");
    freeReplyObject(r);
    cr_assert_str_eq(state(id), "Success");
}

/* A final report writes the outcome, the completion time and, when given, the error text and
 * the exit code (one HSET, its fields by case); an exit code of -1 and an empty error write
 * neither field. */
Test(tasks, a_final_report_writes_its_error_and_exit_code_when_given) {
    node("n1", 4);
    const char *errors[] = {"", "", "it went wrong", "it went wrong"};
    long long codes[] = {-1, 0, -1, 3};
    long long ids[4];
    for (int i = 0; i < 4; i++) ids[i] = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 4, T0, false, NULL);
    cr_assert_eq(claimed(r), 4);
    for (int i = 0; i < 4; i++) {
        long long lease = claimed_lease(r, (size_t)i);
        redisReply *d = complete_as("n1", ids[i], lease, i < 2 ? "Success" : "Failed", T0 + 10, 0,
                                    errors[i], codes[i]);
        cr_assert_eq(d->element[0]->integer, 1, "report %d", i);
        freeReplyObject(d);
    }
    freeReplyObject(r);
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(state(ids[i]), i < 2 ? "Success" : "Failed");
        cr_assert_eq(num("HGET {t}:task:%lld completed", ids[i]), T0 + 10);
        if (errors[i][0])
            cr_assert_str_eq(str("HGET {t}:task:%lld error", ids[i]), errors[i]);
        else
            cr_assert_eq(num("HEXISTS {t}:task:%lld error", ids[i]), 0);
        if (codes[i] >= 0)
            cr_assert_eq(num("HGET {t}:task:%lld exit", ids[i]), codes[i]);
        else
            cr_assert_eq(num("HEXISTS {t}:task:%lld exit", ids[i]), 0);
    }
}

/* turn.lua: the reports first, then the claim, in one call: a node at its cap that reports a task
 * takes the next in the same call. A malformed report writes nothing and claims nothing; an
 * error of the claim half comes back beside the applied reports. */
static redisReply *turn(const char *name, long long id, long long lease, const char *outcome,
                        int max, long long now, const char *max_text) {
    char i[24];
    snprintf(i, sizeof i, "%lld", id);
    struct call_report rep = {i, lease, outcome, "", -1, "", 0, 0};
    struct call_claim_args a = {name, name, now, max, false, 30000, false};
    static const char *const queues[] = {"default"};
    struct script_call c;
    call_turn(&c, &k, &a, 604800000, queues, 1, 1);
    call_complete_add(&c, &rep);
    if (!max_text) return eval(&c);
    const char *argv[40];
    cr_assert_lt(c.argc, 40);
    for (int j = 0; j < c.argc; j++) argv[j] = c.argv[j];
    argv[c.nkeys + 4] = max_text; /* ARGV[5], max */
    char err[256];
    redisReply *r = rsync_eval(&rs, SCRIPT_TURN, c.nkeys, c.argc, argv, NULL, err, sizeof err);
    call_free(&c);
    cr_assert_not_null(r, "%s", err);
    return r;
}

Test(tasks, a_turn_reports_then_claims_in_one_call) {
    node("n1", 1);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long b = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long c = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 1, T0, false, NULL);
    long long lease = claimed_lease(r, 0);
    freeReplyObject(r);
    /* At its cap of 1: the claim half sees the slot the report freed. */
    r = turn("n1", a, lease, "Success", 1, T0 + 5, NULL);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->elements, 2);
    cr_assert_eq(r->element[0]->element[0]->integer, 1, "the report was applied");
    cr_assert_str_eq(r->element[1]->element[0]->str, "ok");
    cr_assert_eq(claimed(r->element[1]), 1);
    cr_assert_eq(claimed_id(r->element[1], 0), b);
    long long lease_b = claimed_lease(r->element[1], 0);
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Success");
    cr_assert_str_eq(state(b), "Executing");
    cr_assert_eq(num("HGET {t}:task:%lld completed", a), T0 + 5);
    cr_assert_eq(num("HGET {t}:task:%lld started", b), T0 + 5);
    cr_assert_eq(num("HGET {t}:stats running"), 1);
    /* A malformed report: an error, nothing written, nothing claimed. */
    r = turn("n1", b, lease_b, "Bogus", 1, T0 + 6, NULL);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strstr(r->str, "BADARGS"), "%s", r->str);
    freeReplyObject(r);
    cr_assert_str_eq(state(b), "Executing");
    cr_assert_str_eq(state(c), "Queued");
    /* The claim half's error comes back after the report was applied. */
    r = turn("n1", b, lease_b, "Success", 1, T0 + 7, "x");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->element[0]->element[0]->integer, 1);
    cr_assert_eq(r->element[1]->type, REDIS_REPLY_ERROR);
    cr_assert(strstr(r->element[1]->str, "BADARGS"), "%s", r->element[1]->str);
    freeReplyObject(r);
    cr_assert_str_eq(state(b), "Success");
    cr_assert_str_eq(state(c), "Queued");
    cr_assert_eq(num("HGET {t}:stats running"), 0);
    cr_assert_eq(num("ZCARD {t}:running:n1"), 0);
}

Test(tasks, failures_retry_after_backoff_then_fail) {
    node("n1", 5);
    long long id = enq("default", "fail", 0, 0, DAY, 2, T0);
    redisReply *r = claim("n1", 5, T0, false, NULL);
    long long lease = claimed_lease(r, 0);
    freeReplyObject(r);
    r = complete("n1", id, lease, "Failed", T0 + 10, 700);
    cr_assert_eq(r->element[1]->integer, 1, "retried");
    freeReplyObject(r);
    cr_assert_str_eq(state(id), "Queued");
    cr_assert(strstr(str("HGET {t}:task:%lld error", id), "attempt 1 of 2 failed"));
    cr_assert_eq(num("ZSCORE {t}:scheduled %lld", id), T0 + 710);
    r = claim("n1", 5, T0 + 709, false, NULL);
    cr_assert_eq(claimed(r), 0, "not before the backoff");
    freeReplyObject(r);
    r = claim("n1", 5, T0 + 710, false, NULL);
    cr_assert_eq(claimed(r), 1);
    cr_assert_eq(r->element[8]->integer, 2, "second attempt");
    lease = claimed_lease(r, 0);
    freeReplyObject(r);
    r = complete("n1", id, lease, "Failed", T0 + 800, 700);
    cr_assert_eq(r->element[0]->integer, 1, "final");
    freeReplyObject(r);
    cr_assert_str_eq(state(id), "Failed");
    cr_assert_str_eq(str("HGET {t}:task:%lld error", id), "it went wrong");
}

Test(tasks, interrupted_task_goes_back_first_without_using_an_attempt) {
    node("n1", 1);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long b = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 5, T0, false, NULL);
    long long lease = claimed_lease(r, 0);
    freeReplyObject(r);
    freeReplyObject(complete("n1", a, lease, "Interrupted", T0 + 5, 0));
    cr_assert_str_eq(state(a), "Queued");
    r = claim("n1", 5, T0 + 6, false, NULL);
    cr_assert_eq(claimed_id(r, 0), a, "back at the head, before %lld", b);
    cr_assert_eq(r->element[8]->integer, 1, "still its first attempt");
    freeReplyObject(r);
}

/* A backlog of expired and canceled tasks ahead of a live one (a queue after an outage): each
 * claim pops a bounded slice and says 'more'; the node's next calls get through it, and the
 * live task is claimed in the end with every counter right. Before the bound one call popped
 * the whole backlog (200,000 expired tasks: 2 s of Redis for every client). */
Test(tasks, claim_through_an_expired_and_canceled_backlog_is_bounded_per_call) {
    node("n1", 5);
    long long e0 = enq_many("default", 2000, 1000); /* expired by T0 + 1000 */
    long long c0 = enq_many("default", 2000, DAY);
    for (long long id = c0; id < c0 + 2000; id++) freeReplyObject(cancel(id));
    long long live = enq("default", "noop", 0, 0, DAY, 1, T0);
    cr_assert_eq(num("HGET {t}:stats ready"), 2001);
    long long before = num("LLEN {t}:q:default:0"), calls = 0, got = 0, expired = 0;
    cr_assert_eq(before, 4001);
    while (calls < 200) {
        redisReply *r = claim("n1", 5, T0 + 1000, false, NULL);
        calls++;
        long long len = num("LLEN {t}:q:default:0");
        cr_assert_leq(before - len, 256, "call %lld popped %lld ids: not bounded", calls,
                      before - len);
        before = len;
        expired += r->element[2]->integer;
        if (claimed(r)) {
            got = claimed_id(r, 0);
            cr_assert_str_eq(r->element[0]->str, "ok");
        } else {
            cr_assert_str_eq(r->element[0]->str, "more", "call %lld: %s with work left", calls,
                             r->element[0]->str);
        }
        freeReplyObject(r);
        if (got) break;
    }
    cr_assert_eq(got, live, "the live task behind the backlog is claimed");
    cr_assert_geq(calls, 2000 / 64 + 2000 / 256, "slices, not one call");
    cr_assert_eq(expired, 2000);
    cr_assert_str_eq(state(e0 + 1999), "TimedOut");
    cr_assert_eq(num("ZCARD {t}:done"), 4000, "expired and canceled all in the finished index");
    cr_assert_eq(num("HGET {t}:stats ready"), 0);
    cr_assert_eq(num("HGET {t}:stats running"), 1);
    cr_assert_eq(num("ZCARD {t}:running:n1"), 1);
}

Test(tasks, cancel_in_every_state) {
    node("n1", 5);
    long long q = enq("default", "noop", 0, 0, DAY, 1, T0);
    long long run = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r;
    r = claim("n1", 1, T0, false, NULL); /* FIFO: q runs, `run` stays queued */
    freeReplyObject(r);
    /* q is executing now, run is queued: cancel the queued one. */
    r = cancel(run);
    cr_assert_str_eq(r->element[0]->str, "canceled");
    freeReplyObject(r);
    cr_assert_str_eq(state(run), "Canceled");
    cr_assert_eq(num("HGET {t}:stats ready"), 0);
    r = claim("n1", 5, T0, false, NULL);
    cr_assert_eq(claimed(r), 0, "a canceled task is skipped");
    freeReplyObject(r);
    /* Executing on a live node: Cancelling, and the node is told. */
    redisContext *sub = h_redis_connect(&redis);
    freeReplyObject(redisCommand(sub, "SUBSCRIBE {t}:control"));
    r = cancel(q);
    cr_assert_str_eq(r->element[0]->str, "cancelling");
    freeReplyObject(r);
    redisReply *m = NULL;
    cr_assert_eq(redisGetReply(sub, (void **)&m), REDIS_OK);
    char want[64];
    snprintf(want, sizeof want, "cancel n1 %lld", q);
    cr_assert_str_eq(m->element[2]->str, want);
    freeReplyObject(m);
    redisFree(sub);
    cr_assert_str_eq(state(q), "Cancelling");
    /* Its node dies: cancel finalises at once and fixes the counts. */
    freeReplyObject(redisCommand(rc, "DEL {t}:alive:n1"));
    r = cancel(q);
    cr_assert_str_eq(r->element[0]->str, "canceled");
    freeReplyObject(r);
    cr_assert_str_eq(state(q), "Canceled");
    cr_assert_eq(num("ZCARD {t}:running:n1"), 0);
    cr_assert_eq(num("HGET {t}:stats running"), 0);
    /* Final: unchanged. */
    r = cancel(q);
    cr_assert_str_eq(r->element[0]->str, "final");
    freeReplyObject(r);
    r = cancel(99999);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

Test(tasks, bad_enqueue_writes_nothing) {
    struct shoal_task_opts t[2] = {
        {.queue = "default", .type = "noop", .expiry_ms = 1000, .attempts = 1, .lost_budget = 1},
        {.queue = "bad queue!",
         .type = "noop",
         .expiry_ms = 1000,
         .attempts = 1,
         .lost_budget = 1}};
    struct script_call c;
    call_enqueue(&c, &k, 1000000, 2);
    call_enqueue_add(&c, &t[0]);
    call_enqueue_add(&c, &t[1]);
    redisReply *r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strstr(r->str, "task 2: queue names"), "%s", r->str);
    freeReplyObject(r);
    cr_assert_eq(num("DBSIZE"), 0, "nothing half-written");
    t[1].timeout_ms = -5; /* a negative timeout on the second task */
    t[1].queue = "default";
    call_enqueue(&c, &k, 1000000, 2);
    call_enqueue_add(&c, &t[0]);
    call_enqueue_add(&c, &t[1]);
    r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strstr(r->str, "timeout must be"), "%s", r->str);
    freeReplyObject(r);
    cr_assert_eq(num("DBSIZE"), 0);
}

static redisReply *recover(const char *only, const char *token, long long now) {
    struct script_call c;
    call_recover(&c, &k, now, token, 1000, only);
    redisReply *r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    return r;
}

Test(tasks, lost_node_tasks_are_requeued_then_failed_per_budget) {
    node("doomed", 5);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0); /* budget 1 (default) */
    long long b = enq("default", "noop", 0, 0, DAY, 1, T0);
    freeReplyObject(redisCommand(rc, "HSET {t}:task:%lld lost_budget 0", b));
    long long c = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("doomed", 5, T0, false, NULL);
    cr_assert_eq(claimed(r), 3);
    long long old_lease = claimed_lease(r, 0);
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc, "HSET {t}:task:%lld state Cancelling", c));
    /* Alive: recovery leaves it alone. */
    r = recover("", "tok", T0 + 100);
    cr_assert_eq(r->element[1]->integer + r->element[2]->integer + r->element[3]->integer, 0);
    freeReplyObject(r);
    /* Another pass within the lock TTL is refused. */
    r = recover("", "other", T0 + 200);
    cr_assert_str_eq(r->element[0]->str, "locked");
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc, "DEL {t}:alive:doomed"));
    freeReplyObject(redisCommand(rc, "DEL {t}:lock:recover"));
    r = recover("", "tok", T0 + 2000);
    cr_assert_eq(r->element[1]->integer, 1, "requeued");
    cr_assert_eq(r->element[2]->integer, 1, "failed: budget 0");
    cr_assert_eq(r->element[3]->integer, 1, "canceled");
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Queued");
    cr_assert_eq(num("HGET {t}:task:%lld attempt", a), 0, "a lost node does not use an attempt");
    cr_assert(strstr(str("HGET {t}:task:%lld error", a), "node doomed stopped responding"));
    cr_assert_str_eq(state(b), "Failed");
    cr_assert(strstr(str("HGET {t}:task:%lld error", b), "node lost"));
    cr_assert_str_eq(state(c), "Canceled");
    cr_assert_eq(num("ZCARD {t}:running:doomed"), 0, "no slot leaks");
    cr_assert_eq(num("HGET {t}:stats running"), 0);
    cr_assert_eq(num("HGET {t}:stats avail_cap"), 0, "its capacity is gone");
    /* The dead node's late report is refused; the next claim runs it again. */
    r = complete("doomed", a, old_lease, "Success", T0 + 2100, 0);
    cr_assert_eq(r->elements, 4, "refused");
    freeReplyObject(r);
    node("heir", 5);
    r = claim("heir", 5, T0 + 2200, false, NULL);
    cr_assert_eq(claimed(r), 1);
    cr_assert_eq(claimed_id(r, 0), a);
    freeReplyObject(r);
}

/* recover.lua looks at 128 running-set entries a call at most and says 'more' when it stopped
 * there: a dead node of cap 10,000 was one call of 120-196 ms. The lock's holder calls again;
 * the rest of the fleet still finds it locked. */
Test(tasks, recovery_of_a_large_dead_node_goes_128_tasks_a_call) {
    node("big", 300);
    for (int i = 0; i < 300; i++) enq("default", "noop", 0, 0, DAY, 1, T0);
    for (int i = 0; i < 2; i++) {
        redisReply *r = claim("big", 150, T0, false, NULL);
        cr_assert_eq(claimed(r), 150);
        freeReplyObject(r);
    }
    cr_assert_eq(num("HGET {t}:stats running"), 300);
    freeReplyObject(redisCommand(rc, "DEL {t}:alive:big"));
    long long want[] = {128, 128, 44};
    const char *verdict[] = {"more", "more", "ok"};
    for (int call = 0; call < 3; call++) {
        redisReply *r = recover("", "tok", T0 + 2000 + call);
        cr_assert_str_eq(r->element[0]->str, verdict[call], "call %d", call);
        cr_assert_eq(r->element[1]->integer, want[call], "call %d requeued", call);
        freeReplyObject(r);
        long long left = 300 - 128 * (call + 1);
        cr_assert_eq(num("ZCARD {t}:running:big"), left > 0 ? left : 0);
        if (call == 0) { /* the pass is this holder's: anyone else waits */
            r = recover("", "other", T0 + 2000);
            cr_assert_str_eq(r->element[0]->str, "locked");
            freeReplyObject(r);
        }
    }
    cr_assert_eq(num("HGET {t}:stats running"), 0);
    cr_assert_eq(num("HGET {t}:stats ready"), 300);
    cr_assert_eq(num("LLEN {t}:q:default:0"), 300);
    cr_assert_eq(num("ZCARD {t}:qp:default"), 1);
    cr_assert_eq(num("SISMEMBER {t}:queues default"), 1);
    /* A restarted node's own recovery is bounded the same way (lost twice now: Failed, their
     * node-loss budget being 1). */
    node("phoenix2", 300);
    for (int i = 0; i < 2; i++) {
        redisReply *r = claim("phoenix2", 150, T0 + 3000, false, NULL);
        cr_assert_eq(claimed(r), 150);
        freeReplyObject(r);
    }
    long long failed[] = {128, 128, 44};
    for (int call = 0; call < 3; call++) {
        redisReply *r = recover("phoenix2", "", T0 + 3100 + call);
        cr_assert_str_eq(r->element[0]->str, verdict[call], "own call %d", call);
        cr_assert_eq(r->element[2]->integer, failed[call], "own call %d failed", call);
        freeReplyObject(r);
    }
    cr_assert_eq(num("EXISTS {t}:running:phoenix2"), 0);
    cr_assert_eq(num("HGET {t}:stats running"), 0);
}

/* cancelling.lua looks at 1,000 running-set entries a call at most, from the rank it is given
 * (a node of cap 10,000 asked for all of them at once: 12-13 ms every heartbeat). */
Test(tasks, cancelling_looks_at_1000_entries_a_call_from_the_rank_given) {
    for (int i = 1; i <= 1500; i++) {
        redisAppendCommand(rc, "ZADD {t}:running:n %d %d", i, i);
        redisAppendCommand(rc, "HSET {t}:task:%d state %s", i,
                           i == 5 || i == 1000 || i == 1001 || i == 1400 ? "Cancelling"
                                                                         : "Executing");
    }
    for (int i = 0; i < 3000; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(rc, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    struct script_call c;
    const long long want[2][3] = {{5, 1000, 0}, {1001, 1400, 0}};
    for (int call = 0; call < 2; call++) {
        call_cancelling(&c, &k, "n", call * 1000, 5000); /* more asked than it looks at */
        redisReply *r = eval(&c);
        cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
        cr_assert_eq(r->elements, 2, "call %d: %zu ids", call, r->elements);
        for (size_t i = 0; i < 2; i++) cr_assert_eq(atoll(r->element[i]->str), want[call][i]);
        freeReplyObject(r);
    }
    call_cancelling(&c, &k, "n", 1500, 1000); /* past the end: nothing */
    redisReply *r = eval(&c);
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
}

/* owned.lua (after each reconcile): of the runs a node names, which Redis no longer records as
 * its own. At most 1,000 a call (reconcile.lua did this for every run in its own call: 28-44 ms
 * at cap 10,000). */
Test(tasks, owned_names_the_runs_redis_no_longer_records_as_the_nodes) {
    freeReplyObject(redisCommand(rc, "HSET {t}:task:1 state Executing node n"));
    freeReplyObject(redisCommand(rc, "HSET {t}:task:2 state Cancelling node n"));
    freeReplyObject(redisCommand(rc, "HSET {t}:task:3 state Executing node other"));
    freeReplyObject(redisCommand(rc, "HSET {t}:task:4 state Queued"));
    freeReplyObject(redisCommand(rc, "HSET {t}:task:5 state Success node n"));
    freeReplyObject(redisCommand(rc, "SET {t}:task:6 not-a-hash"));
    struct script_call c;
    call_owned(&c, &k, "n", 7);
    static const char *const ids[] = {"ServerTasks-1", "ServerTasks-2", "ServerTasks-3", "4",
                                      "ServerTasks-5", "ServerTasks-6", "ServerTasks-7"};
    for (size_t i = 0; i < 7; i++) call_owned_add(&c, ids[i]); /* 7: no record at all */
    redisReply *r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_eq(r->elements, 5, "%zu", r->elements);
    const char *want[] = {"3", "4", "5", "6", "7"};
    for (size_t i = 0; i < 5; i++) cr_assert_str_eq(r->element[i]->str, want[i]);
    freeReplyObject(r);
    call_owned(&c, &k, "n", 1001);
    for (int i = 0; i < 1001; i++) call_owned_add(&c, "1");
    r = eval(&c);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR, "more than 1,000 in one call");
    cr_assert(strstr(r->str, "BADARGS"), "%s", r->str);
    freeReplyObject(r);
}

/* Keys as they are now (DUMP), to put back later: a primary that lost the writes since. */
struct snap {
    const char *key;
    char *dump; /* NULL: the key did not exist */
    size_t len;
};
static void snap_take(struct snap *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        redisReply *r = redisCommand(rc, "DUMP %s", s[i].key);
        s[i].dump = NULL;
        if (r->type == REDIS_REPLY_STRING) {
            s[i].dump = malloc(r->len);
            memcpy(s[i].dump, r->str, r->len);
            s[i].len = r->len;
        }
        freeReplyObject(r);
    }
}
static void snap_restore(struct snap *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        freeReplyObject(redisCommand(rc, "DEL %s", s[i].key));
        if (s[i].dump)
            freeReplyObject(
                redisCommand(rc, "RESTORE %s 0 %b REPLACE", s[i].key, s[i].dump, s[i].len));
        free(s[i].dump);
    }
}

/* A failover to a replica that had not received the last claim loses it, and with it the
 * lease counter's last step. The next claim must not hand the same lease out again, or the
 * first run's report (still on its way) would be taken for the second's. Before, the lease
 * was the counter + 1: the same number came back and the stale report was accepted. */
Test(tasks, a_claim_lost_in_a_failover_never_gives_its_lease_again) {
    node("n1", 5);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0);
    struct snap s[] = {{"{t}:task:1", NULL, 0},
                       {"{t}:q:default:0", NULL, 0},
                       {"{t}:qp:default", NULL, 0},
                       {"{t}:stats", NULL, 0},
                       {"{t}:running:n1", NULL, 0}};
    cr_assert_eq(a, 1);
    snap_take(s, 5);
    redisReply *r = claim("n1", 5, T0, false, NULL);
    cr_assert_eq(claimed(r), 1);
    long long first = claimed_lease(r, 0);
    freeReplyObject(r);
    snap_restore(s, 5); /* the failover: the claim never happened, as far as Redis knows */
    cr_assert_str_eq(state(a), "Queued");
    r = claim("n1", 5, T0 + 100, false, NULL);
    cr_assert_eq(claimed(r), 1);
    long long second = claimed_lease(r, 0);
    freeReplyObject(r);
    cr_assert_gt(second, first, "lease %lld handed out twice", first);
    r = complete("n1", a, first, "Failed", T0 + 200, 0);
    cr_assert_eq(r->elements, 4, "the first run's report is refused");
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Executing");
    r = complete("n1", a, second, "Success", T0 + 300, 0);
    cr_assert_eq(r->elements, 3, "the second run's report is taken");
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Success");
}

Test(tasks, restart_recovers_previous_incarnation_and_stuck_tasks_time_out) {
    node("phoenix", 5);
    long long a = enq("default", "noop", 0, 0, DAY, 1, T0);
    freeReplyObject(claim("phoenix", 5, T0, false, NULL));
    redisReply *r = recover("phoenix", "", T0 + 10);
    cr_assert_eq(r->element[1]->integer, 1);
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "Queued");
    cr_assert(strstr(str("HGET {t}:task:%lld error", a), "restarted"));
    /* A live node's task past its lease deadline is timed out. */
    freeReplyObject(redisCommand(rc, "HSET {t}:task:%lld timeout 1000", a));
    r = claim("phoenix", 5, T0 + 20, false, NULL);
    cr_assert_eq(claimed(r), 1);
    freeReplyObject(r);
    cr_assert_eq(num("ZSCORE {t}:running:phoenix %lld", a), T0 + 20 + 1000 + 30000);
    r = recover("", "tok", T0 + 20 + 31001);
    cr_assert_eq(r->element[4]->integer, 1);
    freeReplyObject(r);
    cr_assert_str_eq(state(a), "TimedOut");
    cr_assert_eq(num("ZCARD {t}:running:phoenix"), 0);
}

Test(tasks, finished_tasks_are_deleted_after_the_retention) {
    node("n1", 500);
    enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n1", 5, T0, false, NULL);
    long long id = claimed_id(r, 0), lease = claimed_lease(r, 0);
    freeReplyObject(r);
    freeReplyObject(complete("n1", id, lease, "Success", T0, 0));
    cr_assert_eq(num("EXISTS {t}:task:%lld {t}:log:%lld", id, id), 2);
    /* A week later, the next report sweeps it away. */
    enq("default", "noop", 0, 0, 30 * DAY, 1, T0);
    r = claim("n1", 5, T0 + 604800001, false, NULL);
    long long id2 = claimed_id(r, 0), lease2 = claimed_lease(r, 0);
    freeReplyObject(r);
    freeReplyObject(complete("n1", id2, lease2, "Success", T0 + 604800001, 0));
    cr_assert_eq(num("EXISTS {t}:task:%lld", id), 0);
    cr_assert_eq(num("ZSCORE {t}:done %lld", id), -1);
    cr_assert_str_eq(state(id2), "Success");
}

/* --- push: enqueue.lua claims for an idle node ------------------------------------------- */

/* The next message on a subscribed connection: {channel, text} into ch and msg (len bytes). */
static void next_message(redisContext *sub, char *ch, size_t chlen, char *msg, size_t *len) {
    redisReply *m = NULL;
    cr_assert_eq(redisGetReply(sub, (void **)&m), REDIS_OK);
    cr_assert_eq(m->type, REDIS_REPLY_ARRAY);
    cr_assert_str_eq(m->element[0]->str, "message");
    snprintf(ch, chlen, "%s", m->element[1]->str);
    cr_assert_lt(m->element[2]->len, *len);
    memcpy(msg, m->element[2]->str, m->element[2]->len);
    *len = m->element[2]->len;
    msg[*len] = 0;
    freeReplyObject(m);
}

/* A subscriber to the given channels (each confirmation read). */
static redisContext *subscriber(int n, const char *const *channels) {
    redisContext *sub = h_redis_connect(&redis);
    for (int i = 0; i < n; i++) {
        redisReply *r = redisCommand(sub, "SUBSCRIBE %s", channels[i]);
        cr_assert_not_null(r);
        freeReplyObject(r);
    }
    return sub;
}

Test(tasks, an_enqueue_claims_for_the_idle_node_and_publishes_the_answer) {
    node("n1", 2);
    const char *chans[] = {"{t}:push:n1:n1", "{t}:wake"};
    redisContext *sub = subscriber(2, chans);
    /* Its claim leaves it room and nothing to take: it waits registered idle. */
    redisReply *r = claim_as("n1", 5, T0, false, NULL, true);
    cr_assert_eq(claimed(r), 0);
    freeReplyObject(r);
    cr_assert_eq(num("ZSCORE {t}:idle:default n1"), T0);
    cr_assert_str_eq(str("HGET {t}:node:n1 push"), "n1 0 30000 default");
    long long id = enq("default", "noop", 0, 0, DAY, 1, T0 + 5);
    freeReplyObject(redisCommand(rc, "PUBLISH {t}:wake marker"));
    char ch[128], msg[4096];
    size_t len = sizeof msg;
    next_message(sub, ch, sizeof ch, msg, &len);
    cr_assert_str_eq(ch, "{t}:push:n1:n1", "the answer comes first, on the node's own channel");
    /* The answer is claim.lua's, in RESP: hiredis's reader reads it as the node does. */
    redisReader *rd = redisReaderCreate();
    void *ans = NULL;
    cr_assert_eq(redisReaderFeed(rd, msg, len), REDIS_OK);
    cr_assert_eq(redisReaderGetReply(rd, &ans), REDIS_OK);
    cr_assert_not_null(ans);
    redisReply *a = ans;
    cr_assert_eq(a->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(claimed(a), 1);
    cr_assert_str_eq(a->element[0]->str, "ok");
    cr_assert_eq(claimed_id(a, 0), id);
    cr_assert_str_eq(a->element[5]->str, "noop");
    cr_assert_eq(a->element[8]->integer, 1, "attempt 1");
    long long lease = claimed_lease(a, 0);
    freeReplyObject(a);
    redisReaderFree(rd);
    len = sizeof msg;
    next_message(sub, ch, sizeof ch, msg, &len);
    cr_assert_str_eq(msg, "marker", "no wake: the push took the queue's only task");
    redisFree(sub);
    /* Claimed as by the node itself: Executing there, counted, leased; the node is no longer
     * idle (it registers again at its next claim that finds nothing). */
    cr_assert_str_eq(state(id), "Executing");
    cr_assert_str_eq(str("HGET {t}:task:%lld node", id), "n1");
    cr_assert_eq(num("ZCARD {t}:running:n1"), 1);
    cr_assert_eq(num("HGET {t}:stats running"), 1);
    cr_assert_eq(num("HGET {t}:stats ready"), 0);
    cr_assert_eq(num("ZCARD {t}:idle:default"), 0);
    r = complete("n1", id, lease, "Success", T0 + 6, 0);
    freeReplyObject(r);
    cr_assert_str_eq(state(id), "Success");
    /* A claim that takes what it asked for leaves the node unregistered. */
    enq("default", "noop", 0, 0, DAY, 1, T0 + 7);
    r = claim_as("n1", 1, T0 + 8, false, NULL, true);
    cr_assert_eq(claimed(r), 1);
    freeReplyObject(r);
    cr_assert_eq(num("ZCARD {t}:idle:default"), 0);
}

Test(tasks, no_push_unless_every_claim_rule_holds_and_the_node_listens) {
    /* n4 is full: it runs one task at cap 1. */
    node("n4", 1);
    long long x = enq("default", "noop", 0, 0, DAY, 1, T0);
    redisReply *r = claim("n4", 1, T0, false, NULL);
    cr_assert_eq(claimed(r), 1);
    freeReplyObject(r);
    /* n1 does not listen, n2 is drained, n3 is dead: each registered idle first. */
    const char *names[] = {"n1", "n2", "n3"};
    for (int i = 0; i < 3; i++) {
        node(names[i], 2);
        r = claim_as(names[i], 5, T0 + 1 + i, false, NULL, true);
        cr_assert_eq(claimed(r), 0);
        freeReplyObject(r);
    }
    freeReplyObject(redisCommand(rc, "ZADD {t}:idle:default %lld n4", T0 + 4));
    freeReplyObject(redisCommand(rc, "HSET {t}:node:n4 push \"n4 0 30000 default\""));
    freeReplyObject(redisCommand(rc, "HSET {t}:node:n2 drain 1"));
    freeReplyObject(redisCommand(rc, "DEL {t}:alive:n3"));
    const char *chans[] = {"{t}:push:n2:n2", "{t}:push:n3:n3", "{t}:push:n4:n4", "{t}:wake"};
    redisContext *sub = subscriber(4, chans);
    long long y = enq("default", "noop", 0, 0, DAY, 1, T0 + 10);
    char ch[128], msg[4096];
    size_t len = sizeof msg;
    next_message(sub, ch, sizeof ch, msg, &len);
    cr_assert_str_eq(ch, "{t}:wake", "no push: the first message is the wake");
    cr_assert_str_eq(msg, "default");
    redisFree(sub);
    cr_assert_str_eq(state(y), "Queued");
    cr_assert_eq(num("LLEN {t}:q:default:0"), 1);
    cr_assert_eq(num("ZCARD {t}:running:n4"), 1, "n4 still runs only %lld", x);
    cr_assert_eq(num("ZCARD {t}:running:n2") + num("ZCARD {t}:running:n3"), 0);
    cr_assert_eq(num("ZCARD {t}:idle:default"), 0, "every node tried is taken out");
    cr_assert_eq(num("HGET {t}:stats ready"), 1);
}

Test(tasks, unidle_takes_the_node_out_and_its_barrier_follows_every_push) {
    node("n1", 2);
    node("n2", 2);
    const char *chans[] = {"{t}:push:n1:n1"};
    redisContext *sub = subscriber(1, chans);
    const char *queues[] = {"a", "b", NULL};
    redisReply *r = claim_as("n1", 5, T0, false, queues, true);
    freeReplyObject(r);
    r = claim_as("n2", 5, T0, false, queues, true);
    freeReplyObject(r);
    cr_assert_eq(num("ZCARD {t}:idle:a") + num("ZCARD {t}:idle:b"), 4);
    long long id = enq("b", "noop", 0, 0, DAY, 1, T0 + 1); /* pushed to n1 */
    cr_assert_str_eq(state(id), "Executing");
    freeReplyObject(redisCommand(rc, "ZADD {t}:idle:a %lld n1", T0 + 2));
    struct script_call c;
    call_unidle(&c, &k, "n1", "n1", "7", queues, 2);
    r = eval(&c);
    cr_assert_eq(r->integer, 1, "one subscriber got the barrier");
    freeReplyObject(r);
    char ch[128], msg[4096];
    size_t len = sizeof msg;
    next_message(sub, ch, sizeof ch, msg, &len);
    cr_assert_eq(msg[0], '*', "the push first");
    len = sizeof msg;
    next_message(sub, ch, sizeof ch, msg, &len);
    cr_assert_str_eq(msg, "barrier 7");
    redisFree(sub);
    cr_assert_eq(num("ZSCORE {t}:idle:a n1"), -1);
    cr_assert_eq(num("ZSCORE {t}:idle:b n2"), T0, "n2 is still idle");
    call_unidle(&c, &k, "n2", "n2", "8", queues, 2);
    r = eval(&c);
    cr_assert_eq(r->integer, 0, "n2 does not listen: nothing can be on its way");
    freeReplyObject(r);
    cr_assert_eq(num("ZCARD {t}:idle:a") + num("ZCARD {t}:idle:b"), 0);
}

/* A node that died leaves the idle sets at the recovery pass that finds it dead (once), so no
 * enqueue spends a try on it; a live idle node stays. */
Test(tasks, a_dead_node_leaves_the_idle_sets_at_recovery) {
    node("gone", 2);
    node("here", 2);
    const char *queues[] = {"a", "b", NULL};
    freeReplyObject(claim_as("gone", 5, T0, false, queues, true));
    freeReplyObject(claim_as("here", 5, T0, false, queues, true));
    cr_assert_eq(num("ZCARD {t}:idle:a") + num("ZCARD {t}:idle:b"), 4);
    freeReplyObject(redisCommand(rc, "DEL {t}:alive:gone"));
    freeReplyObject(recover("", "tok", T0 + 1));
    cr_assert_eq(num("ZSCORE {t}:idle:a gone") + num("ZSCORE {t}:idle:b gone"), -2);
    cr_assert_eq(num("ZSCORE {t}:idle:a here"), T0);
    cr_assert_eq(num("ZSCORE {t}:idle:b here"), T0);
    cr_assert_str_eq(str("HGET {t}:node:gone push"), "");
    cr_assert_str_eq(str("HGET {t}:node:here push"), "here 0 30000 a b");
}

/* lua/enqueue.lua as it is in the tree (claim.lua not included: what docs/redis.md's
 * `redis-cli --eval` and the examples run) pushes nothing, leaves idle registrations alone and
 * still wakes the nodes at once. */
Test(tasks, enqueue_lua_run_by_hand_wakes_idle_nodes_instead_of_pushing) {
    node("n1", 2);
    freeReplyObject(claim_as("n1", 5, T0, false, NULL, true));
    const char *chans[] = {"{t}:push:n1:n1", "{t}:wake"};
    redisContext *sub = subscriber(2, chans);
    const char *src = getenv("SHOAL_SRC");
    cr_assert_not_null(src, "SHOAL_SRC is set by ctest");
    char path[512];
    snprintf(path, sizeof path, "%s/lua/enqueue.lua", src);
    char *text = h_read_file(path);
    cr_assert_not_null(text, "%s", path);
    redisReply *r = redisCommand(rc,
                                 "EVAL %s 4 {t}:seq {t}:stats {t}:scheduled {t}:queues {t}: %lld "
                                 "{t}:wake 1 default noop %b 0 0 86400000 0 1 1",
                                 text, T0 + 5, "", (size_t)0);
    free(text);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long id = r->element[0]->integer;
    freeReplyObject(r);
    freeReplyObject(redisCommand(rc, "PUBLISH {t}:wake marker"));
    char ch[128], msg[4096];
    size_t len = sizeof msg;
    next_message(sub, ch, sizeof ch, msg, &len);
    cr_assert_str_eq(ch, "{t}:wake", "the wake comes first, no push");
    cr_assert_str_eq(msg, "default", "the queue is woken at once");
    redisFree(sub);
    cr_assert_str_eq(state(id), "Queued");
    cr_assert_eq(num("ZSCORE {t}:idle:default n1"), T0, "the registration is left alone");
}
