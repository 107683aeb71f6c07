/* test_lua.c: each lua/ node script run directly against a real redis-server (EVALSHA through
 * rsync, the CLI's path), with time passed in ARGV so expiry logic is checked without waiting. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/calls.h"
#include "common/keys.h"
#include "common/rsync.h"
#include "tests/harness.h"

static struct h_redis redis;
static struct rsync rs;
static struct keys k;
static char node_k[128], alive_k[128], nodes_k[128], run_k[128], ctl[128], stats_k[128],
    done_k[128];

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
    char err[256];
    cr_assert_eq(rsync_open(&rs, redis.url, 2000, err, sizeof err), 0, "%s", err);
    keys_init(&k, "t");
    keys_node(&k, "n1", node_k, sizeof node_k);
    keys_alive(&k, "n1", alive_k, sizeof alive_k);
    keys_nodes(&k, nodes_k, sizeof nodes_k);
    keys_running(&k, "n1", run_k, sizeof run_k);
    keys_control(&k, ctl, sizeof ctl);
    keys_stats(&k, stats_k, sizeof stats_k);
    keys_done(&k, done_k, sizeof done_k);
}
static void teardown(void) {
    rsync_close(&rs);
    h_redis_stop(&redis, false);
}

/* Sends a call built by common/calls.h (the builders the node and the CLI use) and frees it. */
static redisReply *run(struct script_call *c) {
    char err[256];
    redisReply *r = rsync_call(&rs, c, err, sizeof err);
    call_free(c);
    cr_assert_not_null(r, "%s", err);
    return r;
}

static redisReply *reg(const char *instance, long long now, long long cap) {
    struct call_register_args a = {"n1", instance,         now,       3000, cap, "0.1.0", "host",
                                   42,   "127.0.0.1:8080", "default", 1000};
    struct script_call c;
    call_register(&c, &k, &a);
    return run(&c);
}

/* The node scripts for node n1. */
static redisReply *set_cap(long long cap) {
    struct script_call c;
    call_set_cap(&c, &k, "n1", cap);
    return run(&c);
}
static redisReply *set_drain(bool drain) {
    struct script_call c;
    call_set_drain(&c, &k, "n1", drain);
    return run(&c);
}
static redisReply *heartbeat(const char *instance, long long now, long long ttl) {
    struct script_call c;
    call_heartbeat(&c, &k, "n1", instance, now, ttl);
    return run(&c);
}
static redisReply *deregister(const char *instance, long long now) {
    struct script_call c;
    call_deregister(&c, &k, "n1", instance, now);
    return run(&c);
}
static redisReply *forget(void) {
    struct script_call c;
    call_forget(&c, &k, "n1");
    return run(&c);
}
static redisReply *list_nodes(void) {
    struct script_call c;
    call_list_nodes(&c, &k);
    return run(&c);
}
static redisReply *sweep(long long now, long long forget_after, long long retention) {
    struct script_call c;
    call_sweep(&c, &k, now, forget_after, retention);
    return run(&c);
}

static const char *s(redisReply *r, size_t i) { return r->element[i]->str; }
static long long n(redisReply *r, size_t i) { return r->element[i]->integer; }

TestSuite(lua, .init = setup, .fini = teardown, .timeout = 60);

Test(lua, register_then_busy_for_another_instance) {
    redisReply *r = reg("aaaa", 1000, 5);
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_str_eq(s(r, 1), "");
    cr_assert_eq(n(r, 2), 5);
    cr_assert_eq(n(r, 3), 0);
    freeReplyObject(r);
    r = reg("bbbb", 1100, 5);
    cr_assert_str_eq(s(r, 0), "busy");
    cr_assert_str_eq(s(r, 1), "aaaa");
    cr_assert(n(r, 2) > 0 && n(r, 2) <= 3000);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    r = redisCommand(c, "HGET %s instance", node_k);
    cr_assert_str_eq(r->str, "aaaa", "the busy attempt changed nothing");
    freeReplyObject(r);
    /* The holder's TTL runs out: the next instance takes over and sees its predecessor. */
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    r = reg("bbbb", 5000, 5);
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_str_eq(s(r, 1), "aaaa");
    freeReplyObject(r);
    redisFree(c);
}

/* The layout version: the first registration writes this build's; a namespace at a newer one
 * refuses the node before anything is written; an older number is raised. */
Test(lua, register_checks_and_raises_the_layout_version) {
    redisContext *c = h_redis_connect(&redis);
    char lk[128];
    keys_layout_version(&k, lk, sizeof lk);
    redisReply *r = reg("aaaa", 1000, 5);
    cr_assert_str_eq(s(r, 0), "ok");
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", lk);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "the first registration writes the layout");
    cr_assert_eq(atoll(r->str), SHOAL_LAYOUT);
    freeReplyObject(r);

    freeReplyObject(redisCommand(c, "SET %s %d", lk, SHOAL_LAYOUT + 1));
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    freeReplyObject(redisCommand(c, "HSET %s instance aaaa", node_k));
    r = reg("bbbb", 2000, 7);
    cr_assert_str_eq(s(r, 0), "layout", "a newer layout refuses the node");
    cr_assert_eq(n(r, 1), SHOAL_LAYOUT + 1);
    cr_assert_eq(n(r, 2), SHOAL_LAYOUT);
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS %s", alive_k);
    cr_assert_eq(r->integer, 0, "a refused registration writes nothing");
    freeReplyObject(r);
    r = redisCommand(c, "HGET %s instance", node_k);
    cr_assert_str_eq(r->str, "aaaa");
    freeReplyObject(r);

    freeReplyObject(redisCommand(c, "SET %s 0", lk));
    r = reg("bbbb", 3000, 5);
    cr_assert_str_eq(s(r, 0), "ok");
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", lk);
    cr_assert_eq(atoll(r->str), SHOAL_LAYOUT, "an older number is raised");
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, operator_cap_and_drain_survive_reregistration) {
    freeReplyObject(reg("aaaa", 1000, 5));
    redisReply *r = set_cap(9);
    cr_assert_eq(n(r, 0), 9);
    freeReplyObject(r);
    freeReplyObject(set_drain(true));
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    redisFree(c);
    r = reg("cccc", 2000, 5); /* restarted with --cap 5 */
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_eq(n(r, 2), 9, "operator's cap kept");
    cr_assert_eq(n(r, 3), 1, "operator's drain kept");
    cr_assert_str_eq(s(r, 4), "operator");
    freeReplyObject(r);
}

Test(lua, config_cap_follows_flag) {
    freeReplyObject(reg("aaaa", 1000, 5));
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    redisFree(c);
    redisReply *r = reg("bbbb", 2000, 8);
    cr_assert_eq(n(r, 2), 8);
    freeReplyObject(r);
}

Test(lua, heartbeat_verdicts) {
    redisReply *r = heartbeat("aaaa", 2000, 3000);
    cr_assert_str_eq(s(r, 0), "gone", "no record yet");
    freeReplyObject(r);
    freeReplyObject(reg("aaaa", 1000, 5));
    r = heartbeat("aaaa", 2000, 3000);
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_eq(n(r, 1), 5);
    cr_assert_eq(n(r, 2), 0);
    cr_assert_eq(n(r, 3), 0);
    cr_assert_eq(n(r, 4), 0, "not late");
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    r = redisCommand(c, "HGET %s last_seen", node_k);
    cr_assert_str_eq(r->str, "2000");
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    r = heartbeat("aaaa", 2000, 3000);
    cr_assert_eq(n(r, 4), 1, "late: the TTL had expired");
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "SET %s zzzz", alive_k));
    r = heartbeat("aaaa", 2000, 3000);
    cr_assert_str_eq(s(r, 0), "taken");
    cr_assert_str_eq(s(r, 1), "zzzz");
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, deregister_only_by_owner) {
    freeReplyObject(reg("aaaa", 1000, 5));
    redisReply *r = deregister("bbbb", 3000);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    r = deregister("aaaa", 3000);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    r = redisCommand(c, "EXISTS %s", alive_k);
    cr_assert_eq(r->integer, 0, "offline at once");
    freeReplyObject(r);
    r = redisCommand(c, "HMGET %s offline_at last_seen", node_k);
    cr_assert_str_eq(r->element[0]->str, "3000");
    cr_assert_str_eq(r->element[1]->str, "3000");
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, set_cap_and_drain_validate_and_publish) {
    redisReply *r = set_cap(3);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strncmp(r->str, "NONODE", 6) == 0, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(reg("aaaa", 1000, 5));
    r = set_cap(-2);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BADCAP", 6) == 0);
    freeReplyObject(r);
    /* Deliberately malformed (a drain is 0 or 1, which call_set_drain always sends): the list
     * is made by hand, in set_drain.lua's order, KEYS node, alive, stats; ARGV name, drain,
     * control channel. */
    const char *baddrain[] = {node_k, alive_k, stats_k, "n1", "yes", ctl};
    char err[256];
    r = rsync_eval(&rs, SCRIPT_SET_DRAIN, 3, 6, baddrain, NULL, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BADDRAIN", 8) == 0);
    freeReplyObject(r);

    /* A subscriber hears "node n1 <cap> <drain>". */
    redisContext *sub = h_redis_connect(&redis);
    freeReplyObject(redisCommand(sub, "SUBSCRIBE %s", ctl));
    freeReplyObject(set_drain(true));
    redisReply *m = NULL;
    cr_assert_eq(redisGetReply(sub, (void **)&m), REDIS_OK);
    cr_assert_str_eq(m->element[2]->str, "node n1 5 1");
    freeReplyObject(m);
    redisFree(sub);
}

Test(lua, forget_refusals) {
    redisReply *r = forget();
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NONODE", 6) == 0);
    freeReplyObject(r);
    freeReplyObject(reg("aaaa", 1000, 5));
    r = forget();
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ALIVE", 5) == 0);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    freeReplyObject(redisCommand(c, "ZADD %s 9999 ServerTasks-1", run_k));
    r = forget();
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSY", 4) == 0, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL %s", run_k));
    r = forget();
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS %s %s", node_k, nodes_k);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, list_nodes_and_sweep_by_time) {
    freeReplyObject(reg("aaaa", 1000, 5));
    redisReply *r = list_nodes();
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->element[0]->str, "n1");
    cr_assert(r->element[0]->element[1]->integer > 0, "alive pttl");
    freeReplyObject(r);
    /* Alive: never swept. */
    r = sweep(999999999, 60000, 604800000);
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    /* Offline but within the forget period: kept. */
    r = sweep(50000, 60000, 604800000);
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
    /* Past it: forgotten. */
    r = sweep(999999999, 60000, 604800000);
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->str, "n1");
    freeReplyObject(r);
    r = list_nodes();
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, noscript_is_reloaded) {
    freeReplyObject(reg("aaaa", 1000, 5));
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    redisReply *r = list_nodes();
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "reloaded after SCRIPT FLUSH");
    freeReplyObject(r);
}

static long long avail(void) {
    redisContext *c = h_redis_connect(&redis);
    redisReply *r = redisCommand(c, "HGET %s avail_cap", stats_k);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

Test(lua, available_capacity_follows_cap_drain_and_liveness) {
    freeReplyObject(reg("aaaa", 1000, 5));
    cr_assert_eq(avail(), 5);
    freeReplyObject(set_cap(8));
    cr_assert_eq(avail(), 8);
    freeReplyObject(set_drain(true));
    cr_assert_eq(avail(), 0, "a draining node offers nothing");
    freeReplyObject(set_drain(false));
    cr_assert_eq(avail(), 8);
    /* The node dies (TTL gone): the sweep takes its cap out; drift is corrected. */
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    freeReplyObject(redisCommand(c, "HINCRBY %s avail_cap 100", stats_k));
    redisFree(c);
    freeReplyObject(sweep(2000, 60000, 604800000));
    cr_assert_eq(avail(), 0);
    /* Clean deregistration takes it out at once. */
    freeReplyObject(reg("bbbb", 3000, 5));
    cr_assert_eq(avail(), 8, "operator cap kept");
    freeReplyObject(deregister("bbbb", 4000));
    cr_assert_eq(avail(), 0);
}
