/* test_lua_fuzz.c: every writing script against damaged data. Redis does not roll a script
 * back when it fails half-way, so each script must read and check before its first write:
 * here a seeded generator damages task records (fields missing, numbers that are not numbers),
 * plants ids of no task in the lists and sets, and sends scripts malformed argument lists,
 * between rounds of ordinary work (claims, reports of every outcome, cancels, expiry,
 * recovery, reconcile, sweep). After every round `shoal check` must find the namespace
 * consistent: every task in exactly the structure its state says, counters equal to what they
 * count. A script may refuse damaged input (an error reply); it may never leave a task
 * half-moved. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calls.h"
#include "common/client.h"
#include "common/keys.h"
#include "common/rsync.h"
#include "tests/harness.h"

#define ROUNDS 300
#define T0 1000000LL
#define DAY 86400000LL

static struct h_redis redis;
static struct rsync rs;
static struct keys k;
static redisContext *rc;
static unsigned seed = 12345;
/* FUZZ_SEED=N replays another sequence (the failure message names the state of the generator). */
static void seed_from_env(void) {
    if (getenv("FUZZ_SEED")) seed = (unsigned)atoi(getenv("FUZZ_SEED"));
}

static unsigned rnd(unsigned n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
}

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    char err[256];
    cr_assert_eq(rsync_open(&rs, redis.url, 5000, err, sizeof err), 0, "%s", err);
    keys_init(&k, "t");
    rc = h_redis_connect(&redis);
    seed_from_env();
}
static void teardown(void) {
    redisFree(rc);
    rsync_close(&rs);
    h_redis_stop(&redis, false);
}
TestSuite(fuzz, .init = setup, .fini = teardown, .timeout = 300);

/* Runs a call; any reply is fine (an error reply included), a lost connection is not. */
static redisReply *run(struct script_call *c) {
    char err[256];
    redisReply *r = rsync_call(&rs, c, err, sizeof err);
    call_free(c);
    cr_assert_not_null(r, "%s", err);
    return r;
}
static void run_free(struct script_call *c) { freeReplyObject(run(c)); }

static void cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r);
    freeReplyObject(r);
}

static long long seq(void) {
    redisReply *r = redisCommand(rc, "GET {t}:seq");
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static void node(const char *name, int cap, long long now) {
    struct call_register_args a = {name, name, now, 600000, cap, "0", "h", 1, "x", "default", 1000};
    struct script_call c;
    call_register(&c, &k, &a);
    run_free(&c);
}

/* n tasks; varied: random queues, priorities, schedules, expiries and attempts; else plain. */
static void enqueue(long long now, int n, bool varied) {
    static const char *const queues[] = {"default", "other"};
    struct script_call c;
    call_enqueue(&c, &k, now, (size_t)n);
    for (int i = 0; i < n; i++) {
        struct shoal_task_opts o = {.queue = varied ? queues[rnd(2)] : "default",
                                    .type = "noop",
                                    .priority = varied ? (int)rnd(3) - 1 : 0,
                                    .at_ms = varied && rnd(4) == 0 ? now + 1000 + rnd(5000) : 0,
                                    .expiry_ms = varied && rnd(3) == 0 ? 1000 + rnd(3000) : DAY,
                                    .attempts = varied ? 1 + (int)rnd(2) : 1,
                                    .lost_budget = 1};
        call_enqueue_add(&c, &o);
    }
    run_free(&c);
}

struct claimed {
    char id[24];
    long long lease;
    char node[8];
};

/* Appends what claim.lua's answer r handed node name to out. */
static void take(const redisReply *r, const char *name, struct claimed *out, int *n, int max) {
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        (strcmp(r->element[0]->str, "ok") == 0 || strcmp(r->element[0]->str, "more") == 0))
        for (size_t i = 3; i + 6 < r->elements && *n < max; i += 7) {
            struct claimed *t = &out[(*n)++];
            snprintf(t->id, sizeof t->id, "%s", r->element[i]->str);
            t->lease = r->element[i + 1]->integer;
            snprintf(t->node, sizeof t->node, "%s", name);
        }
}

static const char *const claim_queues[] = {"default", "other"};

/* Claims for node name; appends what it got to out. */
static void claim(const char *name, long long now, struct claimed *out, int *n, int max) {
    struct call_claim_args a = {name, name, now, 1 + rnd(6), rnd(2), 30000, rnd(2) == 1};
    struct script_call c;
    call_claim(&c, &k, &a);
    call_claim_add_queue(&c, claim_queues[0]);
    call_claim_add_queue(&c, claim_queues[1]);
    redisReply *r = run(&c);
    take(r, name, out, n, max);
    freeReplyObject(r);
}

/* Damages the data: a field of a task record removed or made a non-number, or an id of no
 * task planted in a ready list, the scheduled set or a running set. */
static void damage(long long top) {
    /* Not state or node: they say which structure a task belongs in, so damaging them is
     * damaging the structure itself, which no script could have caused. */
    static const char *const fields[] = {"queue",    "prio",  "expiry", "queued",  "attempt",
                                         "attempts", "lease", "type",   "timeout", "lost_budget"};
    static const char *const junk[] = {"", "x", "-", "1e999", "nan", "9999999999999999999999"};
    long long id = 1 + rnd((unsigned)(top > 0 ? top : 1));
    const char *f = fields[rnd(sizeof fields / sizeof *fields)];
    switch (rnd(6)) {
    case 0: cmd("HDEL {t}:task:%lld %s", id, f); break;
    case 1: cmd("HSET {t}:task:%lld %s %s", id, f, junk[rnd(6)]); break;
    case 2: cmd("RPUSH {t}:q:default:0 %s", rnd(2) ? "abc" : "99999999"); break;
    case 3: cmd("ZADD {t}:scheduled %lld %s", T0, rnd(2) ? "abc" : "99999999"); break;
    case 4: cmd("ZADD {t}:running:n%u 1 %s", 1 + rnd(2), rnd(2) ? "abc" : "99999999"); break;
    case 5: cmd("HDEL {t}:task:%lld queue", id); break;
    }
}

/* A script sent an argument list of the wrong shape must answer (an error, say) and write
 * nothing it cannot finish. */
static void malformed_args(long long now) {
    char nows[24], big[24];
    snprintf(nows, sizeof nows, "%lld", now);
    snprintf(big, sizeof big, "%u", 1 + rnd(100));
    const char *junk[] = {"{t}:", nows, "x", big, "", "-1", "abc", "99999999", "Success", "n1"};
    enum script_id ids[] = {SCRIPT_CLAIM,     SCRIPT_COMPLETE,  SCRIPT_CANCEL,  SCRIPT_EXPIRE,
                            SCRIPT_RECOVER,   SCRIPT_RECONCILE, SCRIPT_SWEEP,   SCRIPT_ENQUEUE,
                            SCRIPT_HEARTBEAT, SCRIPT_SET_DRAIN, SCRIPT_SET_CAP, SCRIPT_CANCELLING,
                            SCRIPT_TURN,      SCRIPT_OWNED};
    /* The keys each script is built with, from its real builder, then junk arguments. */
    struct script_call c;
    enum script_id id = ids[rnd(sizeof ids / sizeof *ids)];
    switch (id) {
    case SCRIPT_CLAIM: {
        struct call_claim_args a = {"n1", "n1", now, 5, true, 1, false};
        call_claim(&c, &k, &a);
        break;
    }
    case SCRIPT_COMPLETE: call_complete(&c, &k, "n1", now, DAY, 0); break;
    case SCRIPT_TURN: {
        struct call_claim_args a = {"n1", "n1", now, 5, true, 1, false};
        call_turn(&c, &k, &a, DAY, claim_queues, 2, 0);
        break;
    }
    case SCRIPT_CANCEL: call_cancel(&c, &k, 1 + rnd(20), now); break;
    case SCRIPT_EXPIRE: call_expire(&c, &k, now, 10, "0", 1000); break;
    case SCRIPT_RECOVER: call_recover(&c, &k, now, "tok", 1000, NULL); break;
    case SCRIPT_RECONCILE: call_reconcile(&c, &k, "n1", now, 0); break;
    case SCRIPT_SWEEP: call_sweep(&c, &k, now, DAY, DAY); break;
    case SCRIPT_ENQUEUE: call_enqueue(&c, &k, now, 0); break;
    case SCRIPT_HEARTBEAT: call_heartbeat(&c, &k, "n1", "n1", now, 600000); break;
    case SCRIPT_SET_DRAIN: call_set_drain(&c, &k, "n1", false); break;
    case SCRIPT_SET_CAP: call_set_cap(&c, &k, "n1", 5); break;
    case SCRIPT_OWNED: call_owned(&c, &k, "n1", 0); break;
    default: call_cancelling(&c, &k, "n1", 0, 5); break;
    }
    const char *argv[40];
    int argc = 0;
    for (int i = 0; i < c.nkeys; i++) argv[argc++] = c.argv[i];
    int extra = (int)rnd(12);
    for (int i = 0; i < extra; i++) argv[argc++] = junk[rnd(sizeof junk / sizeof *junk)];
    char err[256];
    redisReply *r = rsync_eval(&rs, id, c.nkeys, argc, argv, NULL, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    freeReplyObject(r);
    call_free(&c);
}

static void check_consistent(int round) {
    char *report = NULL;
    bool ok = h_check_namespace(&redis, "t", &report);
    cr_assert(ok, "round %d (seed %u): %s", round, seed, report);
    free(report);
}

Test(fuzz, every_script_leaves_every_task_in_its_structure) {
    struct claimed held[512];
    int nheld = 0;
    long long now = T0;
    node("n1", 8, now);
    node("n2", 8, now);
    static const char *const outcomes[] = {"Success", "Failed", "TimedOut", "Canceled",
                                           "Interrupted"};
    for (int round = 0; round < ROUNDS; round++) {
        now += 200 + rnd(800);
        enqueue(now, 1 + (int)rnd(12), true);
        for (int d = rnd(4); d > 0; d--) damage(seq());
        if (rnd(3) == 0) malformed_args(now);
        claim(rnd(2) ? "n1" : "n2", now, held, &nheld, 512);
        /* Reports: a batch of what is held, in random outcomes, some with a stale lease. */
        int n = nheld ? (int)rnd((unsigned)nheld + 1) : 0;
        if (n) {
            char name[8];
            snprintf(name, sizeof name, "%s", held[0].node);
            struct script_call c;
            int sent = 0;
            /* Alone (complete.lua), or with the node's next claim in the same call (turn.lua). */
            bool turn = rnd(2);
            struct call_claim_args a = {name, name, now, 1 + rnd(6), rnd(2), 30000, rnd(2) == 1};
            if (turn)
                call_turn(&c, &k, &a, DAY, claim_queues, 2, (size_t)n);
            else
                call_complete(&c, &k, name, now, DAY, (size_t)n);
            for (int i = 0; i < nheld && sent < n; i++) {
                if (strcmp(held[i].node, name) != 0) continue;
                struct call_report r = {held[i].id,
                                        held[i].lease + (rnd(8) == 0),
                                        outcomes[rnd(5)],
                                        rnd(2) ? "it broke" : "",
                                        -1,
                                        "log",
                                        3,
                                        500};
                call_complete_add(&c, &r);
                held[i].node[0] = '\0'; /* reported */
                sent++;
            }
            redisReply *r = sent ? run(&c) : NULL;
            int w = 0;
            for (int i = 0; i < nheld; i++)
                if (held[i].node[0]) held[w++] = held[i];
            nheld = w;
            if (r && turn && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
                take(r->element[1], name, held, &nheld, 512);
            if (r) freeReplyObject(r);
            call_free(&c);
        }
        if (rnd(3) == 0) {
            struct script_call c;
            call_cancel(&c, &k, 1 + rnd((unsigned)seq()), now);
            run_free(&c);
        }
        if (rnd(3) == 0) {
            struct script_call c;
            call_expire(&c, &k, now, 16, "0", 5000);
            run_free(&c);
        }
        if (rnd(4) == 0) { /* n2 dies: recovery requeues its tasks */
            cmd("DEL {t}:alive:n2");
            struct script_call c;
            call_recover(&c, &k, now, "tok", 1, NULL);
            run_free(&c);
            cmd("DEL {t}:lock:recover");
            int w = 0;
            for (int i = 0; i < nheld; i++)
                if (strcmp(held[i].node, "n2") != 0) held[w++] = held[i];
            nheld = w;
            node("n2", 8, now);
        }
        if (rnd(4) == 0) { /* n1 reconciles: it knows only what it holds */
            struct script_call c;
            call_reconcile(&c, &k, "n1", now, (size_t)nheld);
            for (int i = 0; i < nheld; i++)
                if (strcmp(held[i].node, "n1") == 0) call_reconcile_add(&c, held[i].id);
            run_free(&c);
        }
        if (rnd(5) == 0) {
            struct script_call c;
            call_sweep(&c, &k, now, DAY, DAY);
            run_free(&c);
        }
        check_consistent(round);
    }
}

/* A task key that is not a hash at all (a stray SET on it): claims, expiry and recovery set it
 * aside instead of failing with other tasks half-moved. */
Test(fuzz, a_task_key_of_another_type_is_set_aside) {
    node("n1", 8, T0);
    enqueue(T0, 6, false);
    cmd("DEL {t}:task:3");
    cmd("SET {t}:task:3 junk");
    struct claimed held[16];
    int n = 0;
    for (int i = 0; i < 40 && n < 5; i++) claim("n1", T0 + 1, held, &n, 16);
    struct script_call c;
    call_expire(&c, &k, T0 + 2 * DAY, 64, "0", 1000);
    run_free(&c);
    /* The claims got past it: every other task is claimed or still queued in order. */
    cr_assert_eq(n, 5, "%d claimed", n);
    /* The planted key is no task: gone, with the ready count it had as a task (the check
     * would rightly report that count), the rest must be consistent. */
    cmd("DEL {t}:task:3");
    cmd("HINCRBY {t}:stats ready -1");
    check_consistent(0);
}
