/* test_lua.c: each lua/ node script run directly against a real redis-server (EVALSHA through
 * rsync, the CLI's path), with time passed in ARGV so expiry logic is checked without waiting. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/keys.h"
#include "common/rsync.h"
#include "tests/harness.h"

static struct h_redis redis;
static struct rsync rs;
static struct keys k;
static char node_k[128], alive_k[128], nodes_k[128], run_k[128], ctl[128], stats_k[128], done_k[128];

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

static redisReply *run(enum script_id id, int nkeys, int argc, const char **argv) {
    char err[256];
    redisReply *r = rsync_eval(&rs, id, nkeys, argc, argv, NULL, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    return r;
}

static redisReply *reg(const char *instance, const char *now, const char *cap) {
    const char *a[] = {node_k, alive_k, nodes_k, stats_k, "n1", instance, now, "3000", cap,
                       "0.1.0", "host", "42", "127.0.0.1:8080", "default", "1000"};
    return run(SCRIPT_REGISTER, 4, 15, a);
}

static const char *s(redisReply *r, size_t i) { return r->element[i]->str; }
static long long n(redisReply *r, size_t i) { return r->element[i]->integer; }

TestSuite(lua, .init = setup, .fini = teardown, .timeout = 60);

Test(lua, register_then_busy_for_another_instance) {
    redisReply *r = reg("aaaa", "1000", "5");
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_str_eq(s(r, 1), "");
    cr_assert_eq(n(r, 2), 5);
    cr_assert_eq(n(r, 3), 0);
    freeReplyObject(r);
    r = reg("bbbb", "1100", "5");
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
    r = reg("bbbb", "5000", "5");
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_str_eq(s(r, 1), "aaaa");
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, operator_cap_and_drain_survive_reregistration) {
    freeReplyObject(reg("aaaa", "1000", "5"));
    const char *cap[] = {node_k, alive_k, stats_k, "n1", "9", ctl};
    redisReply *r = run(SCRIPT_SET_CAP, 3, 6, cap);
    cr_assert_eq(n(r, 0), 9);
    freeReplyObject(r);
    const char *drain[] = {node_k, alive_k, stats_k, "n1", "1", ctl};
    freeReplyObject(run(SCRIPT_SET_DRAIN, 3, 6, drain));
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    redisFree(c);
    r = reg("cccc", "2000", "5");  /* restarted with --cap 5 */
    cr_assert_str_eq(s(r, 0), "ok");
    cr_assert_eq(n(r, 2), 9, "operator's cap kept");
    cr_assert_eq(n(r, 3), 1, "operator's drain kept");
    cr_assert_str_eq(s(r, 4), "operator");
    freeReplyObject(r);
}

Test(lua, config_cap_follows_flag) {
    freeReplyObject(reg("aaaa", "1000", "5"));
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    redisFree(c);
    redisReply *r = reg("bbbb", "2000", "8");
    cr_assert_eq(n(r, 2), 8);
    freeReplyObject(r);
}

Test(lua, heartbeat_verdicts) {
    const char *hb[] = {node_k, alive_k, run_k, stats_k, "aaaa", "2000", "3000"};
    redisReply *r = run(SCRIPT_HEARTBEAT, 4, 7, hb);
    cr_assert_str_eq(s(r, 0), "gone", "no record yet");
    freeReplyObject(r);
    freeReplyObject(reg("aaaa", "1000", "5"));
    r = run(SCRIPT_HEARTBEAT, 4, 7, hb);
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
    r = run(SCRIPT_HEARTBEAT, 4, 7, hb);
    cr_assert_eq(n(r, 4), 1, "late: the TTL had expired");
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "SET %s zzzz", alive_k));
    r = run(SCRIPT_HEARTBEAT, 4, 7, hb);
    cr_assert_str_eq(s(r, 0), "taken");
    cr_assert_str_eq(s(r, 1), "zzzz");
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, deregister_only_by_owner) {
    freeReplyObject(reg("aaaa", "1000", "5"));
    const char *other[] = {node_k, alive_k, stats_k, "bbbb", "3000"};
    redisReply *r = run(SCRIPT_DEREGISTER, 3, 5, other);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    const char *mine[] = {node_k, alive_k, stats_k, "aaaa", "3000"};
    r = run(SCRIPT_DEREGISTER, 3, 5, mine);
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
    const char *unknown[] = {node_k, alive_k, stats_k, "n1", "3", ctl};
    redisReply *r = run(SCRIPT_SET_CAP, 3, 6, unknown);
    cr_assert_eq(r->type, REDIS_REPLY_ERROR);
    cr_assert(strncmp(r->str, "NONODE", 6) == 0, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(reg("aaaa", "1000", "5"));
    const char *bad[] = {node_k, alive_k, stats_k, "n1", "-2", ctl};
    r = run(SCRIPT_SET_CAP, 3, 6, bad);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BADCAP", 6) == 0);
    freeReplyObject(r);
    const char *baddrain[] = {node_k, alive_k, stats_k, "n1", "yes", ctl};
    r = run(SCRIPT_SET_DRAIN, 3, 6, baddrain);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BADDRAIN", 8) == 0);
    freeReplyObject(r);

    /* A subscriber hears "node n1 <cap> <drain>". */
    redisContext *sub = h_redis_connect(&redis);
    freeReplyObject(redisCommand(sub, "SUBSCRIBE %s", ctl));
    const char *drain[] = {node_k, alive_k, stats_k, "n1", "1", ctl};
    freeReplyObject(run(SCRIPT_SET_DRAIN, 3, 6, drain));
    redisReply *m = NULL;
    cr_assert_eq(redisGetReply(sub, (void **)&m), REDIS_OK);
    cr_assert_str_eq(m->element[2]->str, "node n1 5 1");
    freeReplyObject(m);
    redisFree(sub);
}

Test(lua, forget_refusals) {
    const char *a[] = {node_k, alive_k, nodes_k, run_k, "n1"};
    redisReply *r = run(SCRIPT_FORGET, 4, 5, a);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NONODE", 6) == 0);
    freeReplyObject(r);
    freeReplyObject(reg("aaaa", "1000", "5"));
    r = run(SCRIPT_FORGET, 4, 5, a);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ALIVE", 5) == 0);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    freeReplyObject(redisCommand(c, "ZADD %s 9999 ServerTasks-1", run_k));
    r = run(SCRIPT_FORGET, 4, 5, a);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSY", 4) == 0, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL %s", run_k));
    r = run(SCRIPT_FORGET, 4, 5, a);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS %s %s", node_k, nodes_k);
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, list_nodes_and_sweep_by_time) {
    freeReplyObject(reg("aaaa", "1000", "5"));
    const char *l[] = {nodes_k, k.prefix};
    redisReply *r = run(SCRIPT_LIST_NODES, 1, 2, l);
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->element[0]->str, "n1");
    cr_assert(r->element[0]->element[1]->integer > 0, "alive pttl");
    freeReplyObject(r);
    /* Alive: never swept. */
    const char *sw[] = {nodes_k, stats_k, done_k, k.prefix, "999999999", "60000", "604800000"};
    r = run(SCRIPT_SWEEP, 3, 7, sw);
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    /* Offline but within the forget period: kept. */
    const char *early[] = {nodes_k, stats_k, done_k, k.prefix, "50000", "60000", "604800000"};
    r = run(SCRIPT_SWEEP, 3, 7, early);
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
    /* Past it: forgotten. */
    r = run(SCRIPT_SWEEP, 3, 7, sw);
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->str, "n1");
    freeReplyObject(r);
    r = run(SCRIPT_LIST_NODES, 1, 2, l);
    cr_assert_eq(r->elements, 0);
    freeReplyObject(r);
    redisFree(c);
}

Test(lua, noscript_is_reloaded) {
    freeReplyObject(reg("aaaa", "1000", "5"));
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    const char *l[] = {nodes_k, k.prefix};
    redisReply *r = run(SCRIPT_LIST_NODES, 1, 2, l);
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
    freeReplyObject(reg("aaaa", "1000", "5"));
    cr_assert_eq(avail(), 5);
    const char *cap[] = {node_k, alive_k, stats_k, "n1", "8", ctl};
    freeReplyObject(run(SCRIPT_SET_CAP, 3, 6, cap));
    cr_assert_eq(avail(), 8);
    const char *on[] = {node_k, alive_k, stats_k, "n1", "1", ctl};
    freeReplyObject(run(SCRIPT_SET_DRAIN, 3, 6, on));
    cr_assert_eq(avail(), 0, "a draining node offers nothing");
    const char *off[] = {node_k, alive_k, stats_k, "n1", "0", ctl};
    freeReplyObject(run(SCRIPT_SET_DRAIN, 3, 6, off));
    cr_assert_eq(avail(), 8);
    /* The node dies (TTL gone): the sweep takes its cap out; drift is corrected. */
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL %s", alive_k));
    freeReplyObject(redisCommand(c, "HINCRBY %s avail_cap 100", stats_k));
    redisFree(c);
    const char *sw[] = {nodes_k, stats_k, done_k, k.prefix, "2000", "60000", "604800000"};
    freeReplyObject(run(SCRIPT_SWEEP, 3, 7, sw));
    cr_assert_eq(avail(), 0);
    /* Clean deregistration takes it out at once. */
    freeReplyObject(reg("bbbb", "3000", "5"));
    cr_assert_eq(avail(), 8, "operator cap kept");
    const char *dereg[] = {node_k, alive_k, stats_k, "bbbb", "4000"};
    freeReplyObject(run(SCRIPT_DEREGISTER, 3, 5, dereg));
    cr_assert_eq(avail(), 0);
}
