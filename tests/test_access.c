/* test_access.c: users, API keys and permissions held in Redis, applied by every node of a real
 * three-node fleet (real `shoal worker` processes, a real redis-server): a key made with the
 * CLI works on every node; revoked (CLI or API) it is refused by every other node; a viewer
 * cannot drain (403 naming AdministerSystem) and the attempt is audited; an expired key is
 * refused everywhere; brute force from one address is locked out on every node; Redis away:
 * cached grants end after one liveness TTL (503); a key never shows in logs, events, metrics or
 * Redis; the HTTP user and key endpoints in Octopus's shapes. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define BOOT "bootstrap-key-0123456789abcdef"
#define BOOTH "X-Octopus-ApiKey: " BOOT "\r\n"

static struct h_redis redis;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
}
static void teardown(void) { h_redis_stop(&redis, false); }

TestSuite(access, .init = setup, .fini = teardown, .timeout = 90);

static void start(struct h_worker *w, const char *name) {
    const char *args[] = {"--api-key", BOOT, NULL};
    h_worker_start(w, &redis, name, args);
    cr_assert(h_ping_is(w, 200, 10000), "%s did not come up", name);
}

static void start3(struct h_worker w[3]) {
    start(&w[0], "a");
    start(&w[1], "b");
    start(&w[2], "c");
}

static void stop3(struct h_worker w[3]) {
    for (int i = 0; i < 3; i++) h_worker_stop(&w[i]);
}

/* Runs `shoal ARGS --redis URL`; returns its stdout (caller frees), asserting exit 0. */
static char *cli(const char *const *args) {
    const char *argv[24];
    int n = 0;
    for (; args[n]; n++) argv[n] = args[n];
    argv[n++] = "--redis";
    argv[n++] = redis.url;
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = h_shoal(&out, &err, argv);
    cr_assert_eq(rc, 0, "shoal %s %s: exit %d: %s", args[0], args[1] ? args[1] : "", rc, err);
    free(err);
    return out;
}

/* A user with role and a key for it (the plaintext, once). */
static void make_key(const char *user, const char *role, const char *expires, char *key,
                     size_t len) {
    const char *add[] = {"user", "add", user, "--role", role, NULL};
    free(cli(add));
    const char *mk[] = {
        "apikey", "create", "--user", user, "--purpose", "test", expires ? "--expires" : NULL,
        expires,  NULL};
    char *out = cli(mk);
    cr_assert(strncmp(out, "API-", 4) == 0, "no key printed: %s", out);
    snprintf(key, len, "%.*s", (int)strcspn(out, "\n"), out);
    cr_assert_geq(strlen(key), 30);
    free(out);
}

static int status_with(int port, const char *method, const char *path, const char *key) {
    char h[200];
    struct h_resp r;
    snprintf(h, sizeof h, "X-Octopus-ApiKey: %s\r\n", key);
    int st = h_req(port, method, path, h, NULL, &r);
    h_resp_free(&r);
    return st;
}

struct poll_arg {
    int port;
    const char *key;
    int want;
};
static bool status_is(void *arg) {
    struct poll_arg *p = arg;
    return status_with(p->port, "GET", "/api/octopusservernodes", p->key) == p->want;
}

/* The node knows p->key: its own user reads 200 (a key not loaded yet reads 403, as does a
 * known key without the permission asked, so a 403 cannot say the key arrived). */
static bool key_known(void *arg) {
    struct poll_arg *p = arg;
    return status_with(p->port, "GET", "/api/users/me", p->key) == 200;
}

/* The key id of the only key of user (from `shoal apikey list --json`). */
static void key_id_of(const char *user, char *id, size_t len) {
    const char *ls[] = {"apikey", "list", "--user", user, "--json", NULL};
    char *out = cli(ls);
    json_error_t e;
    json_t *o = json_loads(out, JSON_DISABLE_EOF_CHECK, &e);
    cr_assert_not_null(o, "not JSON: %s", out);
    snprintf(id, len, "%s", json_string_value(json_object_get(o, "Id")));
    json_decref(o);
    free(out);
}

Test(access, a_key_works_on_every_node_and_a_revocation_reaches_them_all) {
    struct h_worker w[3];
    char key[64], id[64];
    start3(w);
    make_key("ci", "viewer", NULL, key, sizeof key);
    for (int i = 0; i < 3; i++) {
        struct poll_arg p = {w[i].port, key, 200};
        cr_assert(h_eventually(status_is, &p, 2000), "node %s refuses a new key", w[i].name);
    }
    key_id_of("ci", id, sizeof id);
    /* Revoked through node b's API by the bootstrap administrator. */
    char path[160];
    snprintf(path, sizeof path, "/api/users/Users-ci/apikeys/%s", id);
    struct h_resp r;
    cr_assert_eq(h_req(w[1].port, "DELETE", path, BOOTH, NULL, &r), 200, "%s", r.body);
    h_resp_free(&r);
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < 3; i++) {
        struct poll_arg p = {w[i].port, key, 403};
        cr_assert(h_eventually(status_is, &p, 1000), "node %s still takes a revoked key",
                  w[i].name);
    }
    cr_assert_lt(h_now_ms() - t0, 1000);
    stop3(w);
}

Test(access, a_viewer_cannot_drain_and_the_attempt_is_audited) {
    struct h_worker w[3];
    char key[64];
    start3(w);
    make_key("watcher", "viewer", NULL, key, sizeof key);
    struct poll_arg p = {w[2].port, key, 200};
    cr_assert(h_eventually(status_is, &p, 2000));
    char h[200];
    snprintf(h, sizeof h, "X-Octopus-ApiKey: %s\r\n", key);
    struct h_resp r;
    h_req(w[2].port, "PUT", "/api/octopusservernodes/a", h,
          "{\"MaxConcurrentTasks\":1,\"IsInMaintenanceMode\":true}", &r);
    cr_assert_eq(r.status, 403, "%s", r.body);
    cr_assert_not_null(r.json);
    cr_assert(
        strstr(json_string_value(json_object_get(r.json, "ErrorMessage")), "AdministerSystem"),
        "%s", r.body);
    cr_assert(json_is_array(json_object_get(r.json, "Errors")));
    h_resp_free(&r);
    /* The node is not drained; the refusal is in the audit trail (GET /api/events). */
    h_req(w[0].port, "GET", "/api/octopusservernodes/a", BOOTH, NULL, &r);
    cr_assert(json_is_false(json_object_get(r.json, "IsInMaintenanceMode")));
    h_resp_free(&r);
    const char *ev[] = {"events", "--json", NULL};
    char *out = cli(ev);
    cr_assert(strstr(out, "\"PermissionDenied\"") && strstr(out, "watcher") &&
                  strstr(out, "AdministerSystem"),
              "%s", out);
    free(out);
    /* An administrator's drain goes through and is audited with who did it. */
    make_key("boss", "administrator", NULL, key, sizeof key);
    p.key = key;
    cr_assert(h_eventually(status_is, &p, 2000));
    snprintf(h, sizeof h, "X-Octopus-ApiKey: %s\r\n", key);
    h_req(w[2].port, "PUT", "/api/octopusservernodes/a", h,
          "{\"MaxConcurrentTasks\":1,\"IsInMaintenanceMode\":true}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    /* A CLI change is recorded with the OS user who ran it. */
    const char *drain[] = {"drain", "b", "on", NULL};
    free(cli(drain));
    h_req(w[1].port, "GET", "/api/events?take=10", BOOTH, NULL, &r);
    cr_assert(strstr(r.body, "Node b: drain on") && strstr(r.body, "\"Username\":\"os:"), "%s",
              r.body);
    h_resp_free(&r);
    /* The newest page alone reads only that page; TotalResults is still every event, as a
     * range wide enough to hold them all counts them. */
    h_req(w[1].port, "GET", "/api/events?take=1", BOOTH, NULL, &r);
    const char *tr = strstr(r.body, "\"TotalResults\":");
    long all_unfiltered = tr ? atol(tr + 15) : -1;
    h_resp_free(&r);
    h_req(w[1].port, "GET", "/api/events?take=1&from=2000-01-01T00:00:00Z", BOOTH, NULL, &r);
    tr = strstr(r.body, "\"TotalResults\":");
    long all_ranged = tr ? atol(tr + 15) : -2;
    cr_assert(all_unfiltered > 2 && all_unfiltered == all_ranged, "%ld vs %ld: %s", all_unfiltered,
              all_ranged, r.body);
    h_resp_free(&r);
    h_req(w[1].port, "GET", "/api/events?take=10&users=Users-boss", BOOTH, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "drain on") && strstr(r.body, "\"Username\":\"boss\"") &&
                  strstr(r.body, "\"ApiKeyHint\":\"API-"),
              "%s", r.body);
    h_resp_free(&r);
    stop3(w);
}

Test(access, an_expired_key_is_refused_everywhere) {
    struct h_worker w[3];
    char key[64];
    start3(w);
    make_key("temp", "operator", "2s", key, sizeof key);
    /* Good until it expires (with no message: by each node's clock)... */
    struct poll_arg p = {w[0].port, key, 200};
    cr_assert(h_eventually(status_is, &p, 1500));
    /* ...then refused by all. */
    for (int i = 0; i < 3; i++) {
        struct poll_arg q = {w[i].port, key, 403};
        cr_assert(h_eventually(status_is, &q, 4000), "node %s takes an expired key", w[i].name);
    }
    stop3(w);
}

Test(access, brute_force_is_locked_out_on_every_node) {
    struct h_worker w[3];
    start3(w);
    /* 20 wrong keys at node a... */
    for (int i = 0; i < 20; i++) {
        int st = status_with(w[0].port, "GET", "/api/tasks", "API-WRONGWRONGWRONGWRONGWRONGW");
        cr_assert(st == 403 || st == 429, "status %d", st);
    }
    /* ...and this address is refused by b and c too, even with a good key, with Retry-After. */
    for (int i = 1; i < 3; i++) {
        struct poll_arg p = {w[i].port, BOOT, 429};
        cr_assert(h_eventually(status_is, &p, 2000), "node %s did not lock out", w[i].name);
    }
    struct h_resp r;
    h_req(w[2].port, "GET", "/api/tasks", BOOTH, NULL, &r);
    cr_assert(strstr(r.head, "Retry-After: "), "%s", r.head);
    h_resp_free(&r);
    /* ping and healthz stay open. */
    char body[256];
    cr_assert_eq(h_http(w[1].port, "GET", "/api/octopusservernodes/ping", body, sizeof body), 200);
    const char *ev[] = {"events", "--json", NULL};
    char *out = cli(ev);
    cr_assert(strstr(out, "\"LoginFailed\"") && strstr(out, "locked out"), "%s", out);
    free(out);
    stop3(w);
}

static bool redis_503(void *arg) {
    struct poll_arg *p = arg;
    return status_with(p->port, "GET", "/api", p->key) == 503;
}

Test(access, redis_away_cached_grants_end_after_one_ttl) {
    struct h_worker w;
    char key[64];
    start(&w, "solo");
    make_key("ops", "operator", NULL, key, sizeof key);
    struct poll_arg p = {w.port, key, 200};
    cr_assert(h_eventually(status_is, &p, 2000));
    h_redis_stop(&redis, true);
    uint64_t t0 = h_now_ms();
    /* TTL = 3 heartbeats of 200 ms: 503 within it plus one check period. */
    p.want = 503;
    cr_assert(h_eventually(redis_503, &p, 3000), "a cached grant outlived the TTL");
    cr_assert_lt(h_now_ms() - t0, 1500);
    /* The bootstrap key is not Redis-held: break-glass while Redis is away. */
    cr_assert_eq(status_with(w.port, "GET", "/api", BOOT), 200);
    /* Redis back (empty: no persistence here): the cache follows it, old key gone, new one in. */
    cr_assert_eq(h_redis_restart(&redis), 0);
    /* The node's links come back after their backoff (at most 5 s, +25 % jitter), and then the
     * cache reloads within a heartbeat or two. */
    cr_assert(h_ping_is(&w, 200, 10000), "the node did not come back with Redis");
    p.want = 403;
    cr_assert(h_eventually(status_is, &p, 3000), "a key Redis no longer holds still works");
    char key2[64];
    make_key("ops2", "operator", NULL, key2, sizeof key2);
    struct poll_arg q = {w.port, key2, 200};
    cr_assert(h_eventually(status_is, &q, 5000), "the cache did not follow Redis back");
    h_worker_stop(&w);
}

/* Every string value in Redis (all types this namespace uses), concatenated. */
static char *redis_dump(void) {
    redisContext *c = h_redis_connect(&redis);
    redisReply *keys = redisCommand(c, "KEYS *");
    size_t cap = 1 << 16, len = 0;
    char *all = calloc(1, cap);
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        redisReply *t = redisCommand(c, "TYPE %s", k);
        redisReply *v = NULL;
        if (strcmp(t->str, "string") == 0) v = redisCommand(c, "GET %s", k);
        if (strcmp(t->str, "hash") == 0) v = redisCommand(c, "HGETALL %s", k);
        if (strcmp(t->str, "set") == 0) v = redisCommand(c, "SMEMBERS %s", k);
        if (strcmp(t->str, "zset") == 0) v = redisCommand(c, "ZRANGE %s 0 -1", k);
        if (strcmp(t->str, "stream") == 0) v = redisCommand(c, "XRANGE %s - +", k);
        for (size_t j = 0; v && j < v->elements + (v->type == REDIS_REPLY_STRING); j++) {
            const redisReply *e = v->type == REDIS_REPLY_STRING ? v : v->element[j];
            char tmp[8192];
            if (e->type == REDIS_REPLY_ARRAY) { /* a stream entry: id, [field, value] */
                snprintf(tmp, sizeof tmp, "%s",
                         e->elements == 2 && e->element[1]->elements == 2
                             ? e->element[1]->element[1]->str
                             : "");
            } else {
                snprintf(tmp, sizeof tmp, "%s", e->str ? e->str : "");
            }
            size_t n = strlen(tmp);
            if (len + n + 2 > cap) all = realloc(all, cap = (len + n + 2) * 2);
            memcpy(all + len, tmp, n);
            len += n;
            all[len++] = '\n';
            all[len] = '\0';
        }
        if (v) freeReplyObject(v);
        freeReplyObject(t);
    }
    freeReplyObject(keys);
    redisFree(c);
    return all;
}

Test(access, keys_never_show_in_logs_events_metrics_or_redis) {
    struct h_worker w;
    char key[64];
    start(&w, "quiet");
    make_key("svc", "administrator", NULL, key, sizeof key);
    struct poll_arg p = {w.port, key, 200};
    cr_assert(h_eventually(status_is, &p, 2000));
    char h[200];
    snprintf(h, sizeof h, "X-Octopus-ApiKey: %s\r\n", key);
    struct h_resp r;
    h_req(w.port, "PUT", "/api/octopusservernodes/quiet", h,
          "{\"MaxConcurrentTasks\":2,\"IsInMaintenanceMode\":false}", &r);
    h_resp_free(&r);
    /* A new key through the API: its plaintext comes in that answer only. */
    h_req(w.port, "POST", "/api/users/Users-svc/apikeys", h, "{\"Purpose\":\"second\"}", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    const char *second = json_string_value(json_object_get(r.json, "ApiKey"));
    cr_assert(second && strncmp(second, "API-", 4) == 0, "%s", r.body);
    char key2[64];
    snprintf(key2, sizeof key2, "%s", second);
    h_resp_free(&r);
    status_with(w.port, "GET", "/api/tasks", "API-NOTAKEYNOTAKEYNOTAKEYNOTAK");
    h_req(w.port, "GET", "/api/users/Users-svc/apikeys", h, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_null(strstr(r.body, key));
    cr_assert_null(strstr(r.body, key2));
    cr_assert(strstr(r.body, "\"HasValue\":true"), "%s", r.body);
    h_resp_free(&r);
    char metrics[65536];
    h_http(w.port, "GET", "/metrics", metrics, sizeof metrics);
    h_worker_stop(&w);
    char *log = h_read_file(w.log), *dump = redis_dump();
    const char *ev[] = {"events", "--json", "--take", "100", NULL};
    char *events = cli(ev);
    for (int i = 0; i < 2; i++) {
        const char *k = i ? key2 : key;
        cr_assert_null(strstr(log, k), "a key in the log");
        cr_assert_null(strstr(dump, k), "a key in Redis");
        cr_assert_null(strstr(events, k), "a key in the events");
        cr_assert_null(strstr(metrics, k), "a key in /metrics");
    }
    cr_assert_null(strstr(log, "API-NOTAKEY"), "a wrong key in the log");
    cr_assert(strstr(dump, "API-"), "the hints should be there: %s", dump);
    free(log);
    free(dump);
    free(events);
}

Test(access, users_and_keys_over_http_in_octopus_shapes) {
    struct h_worker w;
    start(&w, "http");
    struct h_resp r;
    h_req(w.port, "GET", "/api/users/me", BOOTH, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "Username")), "bootstrap");
    h_resp_free(&r);
    h_req(w.port, "POST", "/api/users", BOOTH,
          "{\"Username\":\"deploy\",\"DisplayName\":\"Deploys\",\"IsService\":true,"
          "\"Role\":\"buildserver\"}",
          &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "Id")), "Users-deploy");
    h_resp_free(&r);
    h_req(w.port, "POST", "/api/users/Users-deploy/apikeys", BOOTH,
          "{\"Purpose\":\"ci\",\"Expires\":\"2099-01-01T00:00:00Z\"}", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char key[64], id[64];
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(r.json, "ApiKey")));
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "Id")));
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "UserId")), "Users-deploy");
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "AccessLevel")), "FullAccess");
    h_resp_free(&r);
    char path[160];
    snprintf(path, sizeof path, "/api/users/Users-deploy/apikeys/%s", id);
    h_req(w.port, "GET", path, BOOTH, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *ak = json_object_get(r.json, "ApiKey");
    cr_assert(json_is_true(json_object_get(ak, "HasValue")));
    cr_assert(strncmp(json_string_value(json_object_get(ak, "Hint")), "API-", 4) == 0);
    cr_assert(strncmp(json_string_value(json_object_get(r.json, "Expires")), "2099-01-01", 10) ==
              0);
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/users/Users-deploy/permissions", BOOTH, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "BuiltInFeedPush") && !strstr(r.body, "AdministerSystem"), "%s",
              r.body);
    h_resp_free(&r);
    /* The build server's own key: itself, no user admin, no node or task view. */
    struct poll_arg p = {w.port, key, 403};
    cr_assert(h_eventually(key_known, &p, 2000));
    cr_assert(status_is(&p));
    cr_assert_eq(status_with(w.port, "GET", "/api/users", key), 403);
    h_req(w.port, "GET", "/api/users", BOOTH, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "TotalResults")), 1);
    h_resp_free(&r);
    /* A ReadOnly key reads, and cannot push nor mint itself a FullAccess key. */
    h_req(w.port, "POST", "/api/users/Users-deploy/apikeys", BOOTH,
          "{\"Purpose\":\"ro\",\"AccessLevel\":\"ReadOnly\"}", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char ro[64];
    snprintf(ro, sizeof ro, "%s", json_string_value(json_object_get(r.json, "ApiKey")));
    h_resp_free(&r);
    struct poll_arg q = {w.port, ro, 403};
    cr_assert(h_eventually(key_known, &q, 2000));
    cr_assert_eq(status_with(w.port, "GET", "/api/Spaces-1/packages", ro), 200);
    cr_assert_eq(status_with(w.port, "POST", "/api/packages/raw?filename=A.1.0.0.zip", ro), 403);
    char h[200];
    snprintf(h, sizeof h, "X-Octopus-ApiKey: %s\r\n", ro);
    h_req(w.port, "POST", "/api/users/Users-deploy/apikeys", h, "{\"Purpose\":\"up\"}", &r);
    cr_assert_eq(r.status, 403, "%s", r.body);
    h_resp_free(&r);
    h_worker_stop(&w);
}

Test(access, behind_a_trusted_proxy_the_forwarded_address_is_locked_out) {
    struct h_worker w;
    const char *args[] = {
        "--api-key", BOOT, "--trusted-proxies", "10.9.9.9, 127.0.0.1", "--auth-fail-limit",
        "5",         NULL};
    h_worker_start(&w, &redis, "proxied", args);
    cr_assert(h_ping_is(&w, 200, 10000));
    struct h_resp r;
    for (int i = 0; i < 5; i++) {
        h_req(w.port, "GET", "/api",
              "X-Forwarded-For: 192.0.2.7, 203.0.113.5\r\n"
              "X-Octopus-ApiKey: API-WRONGWRONGWRONGWRONGWRONGW\r\n",
              NULL, &r);
        cr_assert(r.status == 403 || r.status == 429, "status %d", r.status);
        h_resp_free(&r);
    }
    /* 203.0.113.5 (what the proxy appended) is locked out; another client is not. */
    struct h_resp q;
    uint64_t end = h_now_ms() + 2000;
    do {
        h_req(w.port, "GET", "/api", "X-Forwarded-For: 203.0.113.5\r\n" BOOTH, NULL, &q);
        if (q.status == 429) break;
        h_resp_free(&q);
    } while (h_now_ms() < end);
    cr_assert_eq(q.status, 429, "the forwarded address was not locked out");
    h_resp_free(&q);
    h_req(w.port, "GET", "/api", "X-Forwarded-For: 203.0.113.6\r\n" BOOTH, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/events?take=5", BOOTH, NULL, &r);
    cr_assert(strstr(r.body, "\"IpAddress\":\"203.0.113.5\""), "%s", r.body);
    h_resp_free(&r);
    h_worker_stop(&w);
}
