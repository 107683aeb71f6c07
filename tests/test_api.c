/* test_api.c: the keyed HTTP API against real `shoal worker` processes and a real
 * redis-server: API keys (401/403, both headers, key files, none configured, never logged),
 * the node endpoints in Octopus's shapes (collection paging, /all, /summary, /{id}, details,
 * PUT reaching ping and Redis, DELETE of live and offline nodes), the task endpoints (enqueue
 * with the CLI's rules, get, raw log, list filters, cancel), 400s naming the field, 404s, 503
 * when Redis is gone, and Octopus's own HA scripts (tests/octopus/, Python) replayed against a
 * three-node fleet. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/util.h"
#include "tests/harness.h"

#define KEY "test-key-0123456789abcdef"
#define KEYH "X-Octopus-ApiKey: " KEY "\r\n"

static struct h_redis redis;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
}
static void teardown(void) { h_redis_stop(&redis, false); }

TestSuite(api, .init = setup, .fini = teardown, .timeout = 60);

/* --- a small HTTP client: any method, extra headers, a body ------------------------------- */

static json_t *get(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert_not_null(v, "missing field %s", k);
    return v;
}
static const char *sget(const json_t *o, const char *k) { return json_string_value(get(o, k)); }
static long long iget(const json_t *o, const char *k) { return json_integer_value(get(o, k)); }

static void start(struct h_worker *w, const char *name, const char *const *extra) {
    const char *args[16] = {"--api-key", KEY};
    int n = 2;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n] = NULL;
    h_worker_start(w, &redis, name, args);
    cr_assert(h_ping_is(w, 200, 10000), "%s did not come up", name);
}

/* The ErrorMessage of r contains want. */
static void error_says(const struct h_resp *r, int status, const char *want) {
    cr_assert_eq(r->status, status, "status %d, body %s", r->status, r->body);
    cr_assert_not_null(r->json, "body is not JSON: %s", r->body);
    cr_assert(strstr(sget(r->json, "ErrorMessage"), want), "'%s' lacks '%s'",
              sget(r->json, "ErrorMessage"), want);
}

/* --- auth ----------------------------------------------------------------------------------- */

Test(api, keys_are_required_checked_and_never_shown) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "auth", NULL);
    h_req(w.port, "GET", "/api/octopusservernodes", NULL, NULL, &r);
    error_says(&r, 401, "X-Octopus-ApiKey");
    cr_assert(strstr(r.head, "WWW-Authenticate: Bearer"));
    cr_assert(strstr(r.head, "Octopus-Node: auth"));
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/octopusservernodes", "X-Octopus-ApiKey: wrong\r\n", NULL, &r);
    error_says(&r, 403, "not valid");
    cr_assert_null(strstr(r.body, "wrong"));
    h_resp_free(&r);
    /* Same length as the key, one byte off. */
    h_req(w.port, "GET", "/api/tasks", "Authorization: Bearer test-key-0123456789abcdeF\r\n", NULL,
          &r);
    cr_assert_eq(r.status, 403);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes", KEYH, NULL, &r), 200);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes/summary",
                       "Authorization: Bearer " KEY "\r\n", NULL, &r),
                 200);
    h_resp_free(&r);
    /* ping, healthz and metrics stay open; ping never shows the key. */
    static const char *const open[] = {"/api/octopusservernodes/ping", "/healthz", "/metrics"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(h_req(w.port, "GET", open[i], NULL, NULL, &r), 200, "%s", open[i]);
        cr_assert_null(strstr(r.body, KEY));
        h_resp_free(&r);
    }
    cr_assert_eq(h_worker_stop(&w), 0);
    char *log = h_read_file(w.log);
    cr_assert_not_null(log);
    cr_assert(strstr(log, "api-key=***"), "the start-up line masks the key");
    cr_assert_null(strstr(log, KEY), "the key appears in the log");
    free(log);
    /* --help shows no key either. */
    char *out = NULL;
    const char *help[] = {"worker", "--help", NULL};
    setenv("SHOAL_API_KEY", KEY, 1);
    h_shoal(&out, NULL, help);
    unsetenv("SHOAL_API_KEY");
    cr_assert(strstr(out, "--api-key"));
    cr_assert_null(strstr(out, KEY));
    free(out);
}

Test(api, no_key_configured_answers_403_saying_how) {
    struct h_worker w;
    struct h_resp r;
    h_worker_start(&w, &redis, "nokey", NULL);
    cr_assert(h_ping_is(&w, 200, 10000));
    h_req(w.port, "GET", "/api/octopusservernodes/all", KEYH, NULL, &r);
    error_says(&r, 403, "SHOAL_API_KEY");
    h_resp_free(&r);
    h_req(w.port, "DELETE", "/api/octopusservernodes/nokey", NULL, NULL, &r);
    error_says(&r, 403, "SHOAL_API_KEY_FILE");
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

Test(api, key_file_holds_several_keys_and_a_bad_file_stops_startup) {
    char path[256];
    snprintf(path, sizeof path, "%s/keys", redis.dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# operators\nfirst-key-aaaaaaaa\n\n  second-key-bbbbbbbb  \n");
    fclose(f);
    struct h_worker w;
    struct h_resp r;
    const char *extra[] = {"--api-key-file", path, NULL};
    h_worker_start(&w, &redis, "keyfile", extra);
    cr_assert(h_ping_is(&w, 200, 10000));
    cr_assert_eq(
        h_req(w.port, "GET", "/api/tasks", "X-Octopus-ApiKey: first-key-aaaaaaaa\r\n", NULL, &r),
        200);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks", "Authorization: Bearer second-key-bbbbbbbb\r\n",
                       NULL, &r),
                 200);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks", "X-Octopus-ApiKey: # operators\r\n", NULL, &r),
                 403);
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);

    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope", redis.dir);
    const char *bad[] = {"--api-key-file", missing, NULL};
    h_worker_start(&w, &redis, "badfile", bad);
    cr_assert_eq(h_wait(w.pid, 10000), 2);
    char *log = h_read_file(w.log);
    cr_assert(strstr(log, "--api-key-file") && strstr(log, "cannot read"), "%s", log);
    free(log);
}

/* --- nodes ---------------------------------------------------------------------------------- */

/* Registers an offline node by hand, as a node that went away leaves it. */
static void fake_node(const char *name, int cap, int drain) {
    redisContext *c = h_redis_connect(&redis);
    redisReply *x = redisCommand(c,
                                 "HSET {shoal}:node:%s name %s cap %d drain %d last_seen %lld "
                                 "version 0.1.0",
                                 name, name, cap, drain, 1700000000000LL);
    freeReplyObject(x);
    freeReplyObject(redisCommand(c, "SADD {shoal}:nodes %s", name));
    redisFree(c);
}

Test(api, node_collection_pages_and_filters_like_octopus) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "web-1", NULL);
    fake_node("web-2", 5, 0);
    fake_node("worker-3", 3, 1);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes?take=2", KEYH, NULL, &r), 200);
    cr_assert_str_eq(sget(r.json, "ItemType"), "OctopusServerNode");
    cr_assert_eq(iget(r.json, "TotalResults"), 3);
    cr_assert_eq(iget(r.json, "ItemsPerPage"), 2);
    cr_assert_eq(iget(r.json, "NumberOfPages"), 2);
    cr_assert_eq(iget(r.json, "LastPageNumber"), 1);
    json_t *items = get(r.json, "Items");
    cr_assert_eq(json_array_size(items), 2);
    json_t *n0 = json_array_get(items, 0);
    cr_assert_str_eq(sget(n0, "Id"), "OctopusServerNodes-web-1");
    cr_assert_eq(json_is_false(get(n0, "IsOffline")), true);
    cr_assert_str_eq(sget(get(n0, "Links"), "Node"),
                     "/api/octopusservernodes/OctopusServerNodes-web-1");
    cr_assert_str_eq(sget(get(r.json, "Links"), "Page.Next"),
                     "/api/octopusservernodes?skip=2&take=2");
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes?skip=2&take=2", KEYH, NULL, &r),
                 200);
    cr_assert_str_eq(sget(json_array_get(get(r.json, "Items"), 0), "Name"), "worker-3");
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes?partialName=WEB", KEYH, NULL, &r),
                 200);
    cr_assert_eq(iget(r.json, "TotalResults"), 2);
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/octopusservernodes?take=x", KEYH, NULL, &r);
    error_says(&r, 400, "take");
    h_resp_free(&r);

    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes/all", KEYH, NULL, &r), 200);
    cr_assert_eq(json_array_size(r.json), 3);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes/summary", KEYH, NULL, &r), 200);
    json_t *w3 = json_array_get(get(r.json, "Nodes"), 2);
    cr_assert_eq(json_is_true(get(w3, "IsOffline")), true);
    cr_assert_eq(json_is_true(get(w3, "IsInMaintenanceMode")), true);
    cr_assert_eq(iget(w3, "RunningTaskCount"), 0);
    cr_assert_str_eq(sget(w3, "LastSeen"), "2023-11-14T22:13:20.000+00:00");
    cr_assert_str_eq(sget(w3, "Status"), "Offline");
    h_resp_free(&r);
    /* By id or by name, doubled slashes tolerated; unknown ids 404. */
    cr_assert_eq(
        h_req(w.port, "GET", "//api/octopusservernodes//OctopusServerNodes-web-2", KEYH, NULL, &r),
        200);
    cr_assert_eq(iget(r.json, "MaxConcurrentTasks"), 5);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes/web-1/details", KEYH, NULL, &r),
                 200);
    cr_assert_eq(iget(r.json, "RunningTasks"), 0);
    cr_assert_eq(json_array_size(get(r.json, "Tasks")), 0);
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/octopusservernodes/OctopusServerNodes-ghost", KEYH, NULL, &r);
    error_says(&r, 404, "ghost");
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

Test(api, put_changes_cap_and_drain_and_validates_the_body) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "node-1", NULL);
    const char *path = "/api/octopusservernodes/OctopusServerNodes-node-1";
    /* Octopus's DrainOddOrEven script puts the task cap in Name: accepted, ignored. */
    cr_assert_eq(h_req(w.port, "PUT", path, KEYH,
                       "{\"Id\":\"OctopusServerNodes-node-1\",\"Name\":5,"
                       "\"MaxConcurrentTasks\":8,\"IsInMaintenanceMode\":true}",
                       &r),
                 200, "%s", r.body);
    cr_assert_eq(iget(r.json, "MaxConcurrentTasks"), 8);
    cr_assert_eq(json_is_true(get(r.json, "IsInMaintenanceMode")), true);
    cr_assert_str_eq(sget(r.json, "Name"), "node-1");
    h_resp_free(&r);
    cr_assert(h_ping_is(&w, 418, 5000), "drain reaches ping");
    redisContext *c = h_redis_connect(&redis);
    redisReply *x = redisCommand(c, "HMGET {shoal}:node:node-1 cap drain cap_by");
    cr_assert_str_eq(x->element[0]->str, "8");
    cr_assert_str_eq(x->element[1]->str, "1");
    cr_assert_str_eq(x->element[2]->str, "operator");
    freeReplyObject(x);
    redisFree(c);
    cr_assert_eq(h_req(w.port, "PUT", "/api/octopusservernodes/node-1", KEYH,
                       "{\"MaxConcurrentTasks\":8,\"IsInMaintenanceMode\":false}", &r),
                 200);
    h_resp_free(&r);
    cr_assert(h_ping_is(&w, 200, 5000));

    static const struct {
        const char *body;
        const char *says;
    } bad[] = {
        {"{\"MaxConcurrentTasks\":8", "not valid JSON"},
        {"[1,2]", "JSON object"},
        {"{\"IsInMaintenanceMode\":true}", "MaxConcurrentTasks: required"},
        {"{\"MaxConcurrentTasks\":\"8\",\"IsInMaintenanceMode\":true}", "MaxConcurrentTasks"},
        {"{\"MaxConcurrentTasks\":10001,\"IsInMaintenanceMode\":true}", "MaxConcurrentTasks"},
        {"{\"MaxConcurrentTasks\":8}", "IsInMaintenanceMode: required"},
        {"{\"MaxConcurrentTasks\":8,\"IsInMaintenanceMode\":\"yes\"}", "IsInMaintenanceMode"},
        {"{\"Id\":\"OctopusServerNodes-other\",\"MaxConcurrentTasks\":8,"
         "\"IsInMaintenanceMode\":true}",
         "Id"},
        {"{\"Id\":7,\"MaxConcurrentTasks\":8,\"IsInMaintenanceMode\":true}", "Id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h_req(w.port, "PUT", path, KEYH, bad[i].body, &r);
        error_says(&r, 400, bad[i].says);
        h_resp_free(&r);
    }
    h_req(w.port, "PUT", "/api/octopusservernodes/ghost", KEYH,
          "{\"MaxConcurrentTasks\":1,\"IsInMaintenanceMode\":true}", &r);
    error_says(&r, 404, "ghost");
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

Test(api, delete_forgets_offline_nodes_only) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "live", NULL);
    fake_node("gone", 5, 0);
    h_req(w.port, "DELETE", "/api/octopusservernodes/OctopusServerNodes-live", KEYH, NULL, &r);
    error_says(&r, 409, "alive");
    h_resp_free(&r);
    cr_assert_eq(
        h_req(w.port, "DELETE", "/api/octopusservernodes/OctopusServerNodes-gone", KEYH, NULL, &r),
        200);
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/octopusservernodes/gone", KEYH, NULL, &r);
    error_says(&r, 404, "gone");
    h_resp_free(&r);
    h_req(w.port, "DELETE", "/api/octopusservernodes/gone", KEYH, NULL, &r);
    error_says(&r, 404, "gone");
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* --- tasks ---------------------------------------------------------------------------------- */

struct task_want {
    int port;
    const char *path;
    const char *state;
};
static bool task_is(void *arg) {
    struct task_want *t = arg;
    struct h_resp r;
    bool ok = h_req(t->port, "GET", t->path, KEYH, NULL, &r) == 200 && r.json &&
              strcmp(json_string_value(json_object_get(r.json, "State")), t->state) == 0;
    h_resp_free(&r);
    return ok;
}

/* POSTs a task; returns its id (malloc'd). */
static char *post_task(int port, const char *body) {
    struct h_resp r;
    cr_assert_eq(h_req(port, "POST", "/api/tasks", KEYH, body, &r), 201, "%s", r.body);
    char *id = strdup(sget(r.json, "Id"));
    char loc[96];
    snprintf(loc, sizeof loc, "Location: /api/tasks/%s", id);
    cr_assert(strstr(r.head, loc), "%s", r.head);
    cr_assert(strstr("Queued Executing Success TimedOut",
                     sget(r.json, "State"))); /* a node may be quick */
    h_resp_free(&r);
    return id;
}

Test(api, tasks_enqueue_run_list_log_and_cancel) {
    struct h_worker w;
    struct h_resp r;
    const char *extra[] = {"--allow-exec", "/bin/echo", NULL};
    start(&w, "runner", extra);
    char *echo =
        post_task(w.port, "{\"Type\":\"exec\",\"Arguments\":{\"argv\":[\"/bin/echo\","
                          "\"hello\",\"api\"],\"env\":{\"A\":\"1\"}},\"Timeout\":\"10s\"}");
    char path[96];
    snprintf(path, sizeof path, "/api/tasks/%s", echo);
    struct task_want tw = {w.port, path, "Success"};
    cr_assert(h_eventually(task_is, &tw, 10000), "the exec task did not succeed");
    cr_assert_eq(h_req(w.port, "GET", path, KEYH, NULL, &r), 200);
    cr_assert_str_eq(sget(r.json, "ServerNode"), "runner");
    cr_assert_eq(json_is_true(get(r.json, "IsCompleted")), true);
    cr_assert_eq(json_is_true(get(r.json, "FinishedSuccessfully")), true);
    cr_assert(json_is_string(get(r.json, "StartTime")) &&
              json_is_string(get(r.json, "CompletedTime")));
    cr_assert_eq(iget(r.json, "ExitCode"), 0);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/api/tasks/%s/raw", echo);
    cr_assert_eq(h_req(w.port, "GET", path, KEYH, NULL, &r), 200);
    cr_assert_str_eq(r.body, "hello api\n");
    cr_assert(strstr(r.head, "Content-Type: text/plain"));
    h_resp_free(&r);

    /* A task due in an hour waits; cancel finalises it. */
    char *later = post_task(w.port, "{\"Type\":\"noop\",\"Queue\":\"default\",\"Delay\":\"1h\","
                                    "\"Priority\":3,\"Attempts\":2}");
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks?states=Queued", KEYH, NULL, &r), 200);
    cr_assert_eq(iget(r.json, "TotalResults"), 1);
    cr_assert_str_eq(sget(json_array_get(get(r.json, "Items"), 0), "Id"), later);
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks?node=OctopusServerNodes-runner&states=Success",
                       KEYH, NULL, &r),
                 200);
    cr_assert_eq(iget(r.json, "TotalResults"), 1);
    cr_assert_str_eq(sget(r.json, "ItemType"), "Task");
    h_resp_free(&r);
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks?take=1", KEYH, NULL, &r), 200);
    cr_assert_eq(iget(r.json, "TotalResults"), 2);
    cr_assert_eq(json_array_size(get(r.json, "Items")), 1);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/api/tasks/%s/cancel", later);
    cr_assert_eq(h_req(w.port, "POST", path, KEYH, NULL, &r), 200);
    cr_assert_str_eq(sget(r.json, "State"), "Canceled");
    cr_assert(strstr(sget(r.json, "ErrorMessage"), "Canceled"));
    h_resp_free(&r);

    /* Unknown ids, bad filters, bad bodies. */
    h_req(w.port, "GET", "/api/tasks/ServerTasks-999", KEYH, NULL, &r);
    error_says(&r, 404, "ServerTasks-999");
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/tasks/ServerTasks-999/raw", KEYH, NULL, &r);
    error_says(&r, 404, "ServerTasks-999");
    h_resp_free(&r);
    h_req(w.port, "POST", "/api/tasks/ServerTasks-999/cancel", KEYH, NULL, &r);
    error_says(&r, 404, "ServerTasks-999");
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/tasks/bogus", KEYH, NULL, &r);
    error_says(&r, 404, "not a task id");
    h_resp_free(&r);
    h_req(w.port, "GET", "/api/tasks?states=Running", KEYH, NULL, &r);
    error_says(&r, 400, "states");
    h_resp_free(&r);
    static const struct {
        const char *body;
        const char *says;
    } bad[] = {
        {"{\"Type\":", "not valid JSON"},
        {"\"noop\"", "JSON object"},
        {"{\"Type\":\"exec\"}", "Arguments.argv: required"},
        {"{\"Type\":\"exec\",\"Arguments\":{\"argv\":[1]}}", "Arguments.argv"},
        {"{\"Type\":\"exec\",\"Arguments\":{\"argv\":[\"/bin/echo\"],\"env\":3}}", "Arguments.env"},
        {"{\"Type\":\"noop\",\"Arguments\":{\"x\":1}}", "Arguments"},
        {"{\"Type\":7}", "Type"},
        {"{\"Type\":\"no spaces\"}", "type"},
        {"{\"Type\":\"noop\",\"Priority\":1001}", "Priority"},
        {"{\"Type\":\"noop\",\"Priority\":\"high\"}", "Priority"},
        {"{\"Type\":\"noop\",\"Attempts\":0}", "Attempts"},
        {"{\"Type\":\"noop\",\"Expiry\":\"soon\"}", "Expiry"},
        {"{\"Type\":\"noop\",\"Timeout\":-5}", "Timeout"},
        {"{\"Type\":\"noop\",\"QueueTime\":\"yesterday\"}", "QueueTime"},
        {"{\"Type\":\"noop\",\"Delay\":\"1s\",\"QueueTime\":0}", "Delay"},
        {"{\"Type\":\"noop\",\"Queue\":\"a b\"}", "queue"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h_req(w.port, "POST", "/api/tasks", KEYH, bad[i].body, &r);
        error_says(&r, 400, bad[i].says);
        h_resp_free(&r);
    }
    /* An explicit QueueTime and a string argument. */
    char *at = post_task(w.port, "{\"Name\":\"fail\",\"Arguments\":\"boom\","
                                 "\"QueueTime\":\"2020-01-01T00:00:00Z\",\"Expiry\":3600000}");
    snprintf(path, sizeof path, "/api/tasks/%s", at);
    struct task_want tf = {w.port, path, "TimedOut"};
    cr_assert(h_eventually(task_is, &tf, 10000), "a task past its expiry times out");
    free(echo);
    free(later);
    free(at);
    cr_assert_eq(h_worker_stop(&w), 0);
}

Test(api, redis_gone_answers_503) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "lonely", NULL);
    h_redis_stop(&redis, true);
    cr_assert(h_ping_is(&w, 503, 5000));
    static const char *const paths[] = {"/api/octopusservernodes", "/api/tasks",
                                        "/api/tasks/ServerTasks-1"};
    for (size_t i = 0; i < 3; i++) {
        h_req(w.port, "GET", paths[i], KEYH, NULL, &r);
        error_says(&r, 503, "Redis");
        h_resp_free(&r);
    }
    cr_assert_eq(h_req(w.port, "GET", "/metrics", NULL, NULL, &r), 200);
    h_resp_free(&r);
    cr_assert_eq(h_redis_restart(&redis), 0);
    cr_assert(h_ping_is(&w, 200, 10000));
    cr_assert_eq(h_req(w.port, "GET", "/api/octopusservernodes", KEYH, NULL, &r), 200);
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* --- Octopus's scripts, replayed ------------------------------------------------------------ */

/* Runs python3 tests/octopus/SCRIPT URL KEY args...; returns the exit code, output in *out. */
static int replay(const char *script, int port, const char *a1, const char *a2, const char *a3,
                  char **out) {
    char path[512], url[64], log[300];
    const char *src = getenv("SHOAL_SRC");
    snprintf(path, sizeof path, "%s/tests/octopus/%s", src ? src : ".", script);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(log, sizeof log, "%s/%s.out", redis.dir, script);
    unlink(log);
    const char *argv[] = {"/usr/bin/python3", path, url, KEY, a1, a2, a3, NULL};
    int rc = h_wait(h_spawn(argv, NULL, log), 30000);
    *out = h_read_file(log);
    return rc;
}

static bool drained(const char *name) {
    redisContext *c = h_redis_connect(&redis);
    redisReply *x = redisCommand(c, "HGET {shoal}:node:%s drain", name);
    bool on = x->type == REDIS_REPLY_STRING && strcmp(x->str, "1") == 0;
    freeReplyObject(x);
    redisFree(c);
    return on;
}

Test(api, octopus_drain_odd_or_even_script) {
    struct h_worker w[3];
    static const char *const names[] = {"node-1", "node-2", "node-3"};
    for (int i = 0; i < 3; i++) start(&w[i], names[i], NULL);
    char *out = NULL;
    cr_assert_eq(replay("drain_odd_or_even.py", w[1].port, NULL, NULL, NULL, &out), 0, "%s", out);
    cr_assert(strstr(out, "Draining node: node-1") && strstr(out, "Draining node: node-3"), "%s",
              out);
    cr_assert(strstr(out, "Skipping drain of node: node-2 as its not a valid candidate"), "%s",
              out);
    free(out);
    cr_assert(h_ping_is(&w[0], 418, 2000) && h_ping_is(&w[2], 418, 5000));
    cr_assert(h_ping_is(&w[1], 200, 5000));
    cr_assert(drained("node-1") && !drained("node-2") && drained("node-3"));
    /* Run again: already drained nodes are skipped. Then the even ones. */
    cr_assert_eq(replay("drain_odd_or_even.py", w[0].port, NULL, NULL, NULL, &out), 0, "%s", out);
    cr_assert(strstr(out, "Skipping drain of node: node-3 as its already in a draining/drained "
                          "state"),
              "%s", out);
    free(out);
    cr_assert_eq(replay("drain_odd_or_even.py", w[0].port, "--even", NULL, NULL, &out), 0, "%s",
                 out);
    cr_assert(strstr(out, "Draining node: node-2"), "%s", out);
    free(out);
    cr_assert(h_ping_is(&w[1], 418, 5000));
    for (int i = 0; i < 3; i++) cr_assert_eq(h_worker_stop(&w[i]), 0);
}

static bool node_gone(void *arg) {
    const int *port = arg;
    struct h_resp r;
    bool gone = h_req(*port, "GET", "/api/octopusservernodes/node-3", KEYH, NULL, &r) == 404;
    h_resp_free(&r);
    return gone;
}

Test(api, octopus_scale_in_script_with_a_draining_node) {
    struct h_worker w[3];
    static const char *const names[] = {"node-1", "node-2"};
    for (int i = 0; i < 2; i++) start(&w[i], names[i], NULL);
    /* Only node-3 serves queue "slow"; its task runs ~1 s. */
    const char *q[] = {"--queues", "slow", NULL};
    start(&w[2], "node-3", q);
    char *id =
        post_task(w[0].port, "{\"Type\":\"sleep\",\"Queue\":\"slow\",\"Arguments\":[\"1s\"]}");
    char path[96];
    snprintf(path, sizeof path, "/api/tasks/%s", id);
    struct task_want tw = {w[0].port, path, "Executing"};
    cr_assert(h_eventually(task_is, &tw, 5000));
    char pid[24], *out = NULL;
    snprintf(pid, sizeof pid, "%d", (int)w[2].pid);
    cr_assert_eq(replay("scale_in.py", w[0].port, "node-3", "--terminate-pid", pid, &out), 0, "%s",
                 out);
    cr_assert(strstr(out, "IsInMaintenanceMode=True"), "%s", out);
    cr_assert(strstr(out, "finished processing all the tasks"), "%s", out);
    cr_assert(strstr(out, "Deleted"), "%s", out);
    free(out);
    cr_assert_eq(h_wait(w[2].pid, 10000), 0, "the terminated node exits cleanly");
    tw.state = "Success";
    cr_assert(task_is(&tw), "the drain let the running task finish");
    cr_assert(node_gone(&w[0].port));
    free(id);
    for (int i = 0; i < 2; i++) cr_assert_eq(h_worker_stop(&w[i]), 0);
}

Test(api, octopus_scale_in_script_after_the_node_died) {
    struct h_worker w[3];
    static const char *const names[] = {"node-1", "node-2"};
    for (int i = 0; i < 2; i++) start(&w[i], names[i], NULL);
    const char *q[] = {"--queues", "slow", NULL};
    start(&w[2], "node-3", q);
    char *id =
        post_task(w[0].port, "{\"Type\":\"sleep\",\"Queue\":\"slow\",\"Arguments\":[\"60s\"],"
                             "\"NodeLossBudget\":0}");
    char path[96];
    snprintf(path, sizeof path, "/api/tasks/%s", id);
    struct task_want tw = {w[0].port, path, "Executing"};
    cr_assert(h_eventually(task_is, &tw, 5000));
    kill(w[2].pid, SIGKILL);
    h_wait(w[2].pid, 5000);
    char *out = NULL;
    cr_assert_eq(replay("scale_in.py", w[0].port, "node-3", "--stale-after", "1", &out), 0, "%s",
                 out);
    /* Whether the script saw it stale or saw recovery empty it first, it ends deleted. */
    cr_assert(strstr(out, "Deleted"), "%s", out);
    free(out);
    cr_assert(node_gone(&w[0].port));
    /* Cancelled by the script, or failed "node lost" by recovery first: never left Executing. */
    struct h_resp r;
    cr_assert_eq(h_req(w[0].port, "GET", path, KEYH, NULL, &r), 200);
    const char *st = sget(r.json, "State");
    cr_assert(strcmp(st, "Canceled") == 0 || strcmp(st, "Failed") == 0, "state %s", st);
    h_resp_free(&r);
    free(id);
    for (int i = 0; i < 2; i++) cr_assert_eq(h_worker_stop(&w[i]), 0);
}

/* --- request-level hardening ---------------------------------------------------------------- */

/* Sends raw bytes on a fresh connection, then reads for at most wait_ms (or until EOF) and
 * returns what came back (malloc'd, NUL-terminated). The peer's close sets *closed. */
static char *raw_exchange(int port, const char *bytes, int wait_ms, bool *closed) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    size_t cap = 8192, got = 0;
    char *buf = malloc(cap);
    ssize_t n = 0;
    uint64_t end = h_now_ms() + (uint64_t)wait_ms;
    while (got + 1 < cap && h_now_ms() < end && (n = read(fd, buf + got, cap - got - 1)) > 0)
        got += (size_t)n;
    if (closed) *closed = n == 0;
    close(fd);
    buf[got] = '\0';
    return buf;
}

/* The ErrorMessage of a raw answer contains want. */
static void raw_error_says(const char *raw, int status, const char *want) {
    int st = 0;
    cr_assert_eq(sscanf(raw, "HTTP/1.1 %d", &st), 1, "no answer: '%s'", raw);
    cr_assert_eq(st, status, "%s", raw);
    const char *body = strstr(raw, "\r\n\r\n");
    cr_assert_not_null(body, "%s", raw);
    json_t *j = json_loads(body + 4, 0, NULL);
    cr_assert_not_null(j, "body is not JSON: %s", raw);
    cr_assert(strstr(sget(j, "ErrorMessage"), want), "'%s' lacks '%s'", sget(j, "ErrorMessage"),
              want);
    json_decref(j);
}

/* A client that waits for "100 Continue" gets it only once the key is checked: a keyless or
 * wrong-key request is answered at once, no body byte read, and the connection closed. */
Test(api, continue_only_after_the_key_is_checked) {
    struct h_worker w;
    start(&w, "cont", NULL);
    static const char *const heads[] = {
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "X-Octopus-ApiKey: wrong-key-0123456789\r\nContent-Length: 1000000\r\n\r\n",
        "POST /api/Spaces-1/packages/raw?filename=A.1.0.0.zip HTTP/1.1\r\nHost: x\r\n"
        "Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n",
        "PUT /api/octopusservernodes/cont HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
    };
    static const int want[] = {401, 403, 401, 401};
    for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
        bool closed = false;
        char *got = raw_exchange(w.port, heads[i], 3000, &closed);
        cr_assert_null(strstr(got, "100 Continue"), "interim answer before the key check:\n%s",
                       got);
        raw_error_says(got, want[i], want[i] == 401 ? "API key is required" : "not valid");
        cr_assert(strstr(got, "Connection: close"), "%s", got);
        cr_assert(closed, "the connection stays open for a body nobody reads");
        free(got);
    }
    /* A keyless request without a body keeps its connection. */
    char *got = raw_exchange(w.port,
                             "GET /api/tasks HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                             3000, NULL);
    cr_assert(strstr(got, "HTTP/1.1 401") && strstr(got, "HTTP/1.1 200"), "%s", got);
    free(got);
    /* With the key, 100 Continue comes and the task is enqueued. */
    static const char body[] = "{\"Type\":\"noop\",\"Delay\":\"1h\"}";
    char head[512];
    snprintf(head, sizeof head,
             "POST /api/tasks HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" KEYH
             "Connection: close\r\nContent-Length: %zu\r\n\r\n",
             sizeof body - 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)w.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    char in[4096];
    ssize_t n = read(fd, in, sizeof in - 1);
    cr_assert_gt(n, 0);
    in[n] = '\0';
    cr_assert_str_eq(in, "HTTP/1.1 100 Continue\r\n\r\n");
    cr_assert_eq(write(fd, body, sizeof body - 1), (ssize_t)(sizeof body - 1));
    size_t got_n = 0;
    while (got_n + 1 < sizeof in && (n = read(fd, in + got_n, sizeof in - 1 - got_n)) > 0)
        got_n += (size_t)n;
    in[got_n] = '\0';
    close(fd);
    cr_assert(strncmp(in, "HTTP/1.1 201", 12) == 0, "%s", in);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* obs-fold (a header line that starts with SP or HT continues the previous one) is refused:
 * a key folded over two lines does not authenticate, nor does any folded header pass. */
Test(api, folded_header_lines_are_refused) {
    struct h_worker w;
    start(&w, "fold", NULL);
    static const char *const reqs[] = {
        "GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Octopus-ApiKey:\r\n " KEY "\r\n\r\n",
        "GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Octopus-ApiKey:\r\n\t" KEY "\r\n\r\n",
        "GET /api/tasks HTTP/1.1\r\nHost: x\r\n" KEYH "X-Other: a\r\n b\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\n \r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
        bool closed = false;
        char *got = raw_exchange(w.port, reqs[i], 3000, &closed);
        raw_error_says(got, 400, "folded");
        cr_assert(closed);
        free(got);
    }
    struct h_resp r;
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks", "X-Octopus-ApiKey:   " KEY "  \r\n", NULL, &r),
                 200);
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* %00 in a path or a query value is refused, not cut at the NUL. */
Test(api, percent_00_is_refused) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "nul", NULL);
    static const char *const paths[] = {
        "/api/tasks?states=Queued%00Running",  "/api/tasks?states=Queued%00",
        "/api/tasks/ServerTasks-1%00",         "/api/octopusservernodes?partialName=n%00x",
        "/api/Spaces-1/packages?filter=a%00b", "/healthz?x=%00",
    };
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        h_req(w.port, "GET", paths[i], KEYH, NULL, &r);
        error_says(&r, 400, "%00");
        h_resp_free(&r);
    }
    cr_assert_eq(h_req(w.port, "GET", "/api/tasks?states=Queued%2CSuccess", KEYH, NULL, &r), 200);
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* A 500 tells the client an error id, never Redis's text; the log has both at error level. */
Test(api, internal_errors_answer_an_id_not_redis_text) {
    struct h_worker w;
    struct h_resp r;
    const char *extra[] = {"--cap", "0", NULL};
    start(&w, "e500", extra);
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "DEL {shoal}:queues"));
    freeReplyObject(redisCommand(c, "SET {shoal}:queues not-a-set"));
    h_req(w.port, "GET", "/api/tasks", KEYH, NULL, &r);
    freeReplyObject(redisCommand(c, "DEL {shoal}:queues"));
    redisFree(c);
    cr_assert_eq(r.status, 500, "%d %s", r.status, r.body);
    cr_assert_null(strstr(r.body, "WRONGTYPE"), "%s", r.body);
    cr_assert_null(strstr(r.body, "script"), "%s", r.body);
    const char *msg = sget(r.json, "ErrorMessage");
    const char *id = strstr(msg, "E-");
    cr_assert_not_null(id, "no error id in '%s'", msg);
    char want[64];
    size_t idlen = strspn(id + 2, "0123456789abcdef") + 2;
    cr_assert_geq(idlen, 10, "%s", msg);
    snprintf(want, sizeof want, "error_id=%.*s", (int)idlen, id);
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
    char *log = h_read_file(w.log);
    const char *line = strstr(log, want);
    cr_assert_not_null(line, "no log line with %s:\n%s", want, log);
    const char *bol = line;
    while (bol > log && bol[-1] != '\n') bol--;
    const char *eol = strchr(line, '\n');
    cr_assert(strstr(bol, "level=error") && strstr(bol, "level=error") < line, "%.*s",
              (int)(eol - bol), bol);
    char *wt = strstr(bol, "WRONGTYPE");
    cr_assert(wt && (!eol || wt < eol), "the full text is logged: %.*s", (int)(eol - bol), bol);
    free(log);
}

/* Every answer carries X-Content-Type-Options: nosniff (and Octopus-Node). */
Test(api, every_answer_says_nosniff) {
    struct h_worker w;
    struct h_resp r;
    const char *extra[] = {"--allow-exec", "/bin/echo", NULL};
    start(&w, "sniff", extra);
    char *id = post_task(w.port, "{\"Type\":\"exec\",\"Arguments\":{\"argv\":[\"/bin/echo\","
                                 "\"<html><script>alert(1)</script>\"]}}");
    char path[96], raw[112];
    snprintf(path, sizeof path, "/api/tasks/%s", id);
    snprintf(raw, sizeof raw, "/api/tasks/%s/raw", id);
    struct task_want tw = {w.port, path, "Success"};
    cr_assert(h_eventually(task_is, &tw, 10000));
    const struct {
        const char *method, *path, *hdrs;
        int status;
    } probes[] = {
        {"GET", raw, KEYH, 200},           {"GET", path, KEYH, 200},
        {"GET", "/api/tasks", NULL, 401},  {"GET", "/api/octopusservernodes/ping", NULL, 200},
        {"HEAD", "/healthz", NULL, 200},   {"GET", "/metrics", NULL, 200},
        {"GET", "/nodes", NULL, 200},      {"GET", "/nope", NULL, 404},
        {"DELETE", "/healthz", NULL, 405},
    };
    for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
        cr_assert_eq(h_req(w.port, probes[i].method, probes[i].path, probes[i].hdrs, NULL, &r),
                     probes[i].status, "%s %s", probes[i].method, probes[i].path);
        cr_assert(strstr(r.head, "\r\nX-Content-Type-Options: nosniff"), "%s %s:\n%s",
                  probes[i].method, probes[i].path, r.head);
        cr_assert(strstr(r.head, "\r\nOctopus-Node: sniff"), "%s", r.head);
        h_resp_free(&r);
    }
    free(id);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* Keys shorter than 16 characters stop start-up, from any source, without showing the key. */
Test(api, short_keys_stop_startup) {
    char path[256];
    snprintf(path, sizeof path, "%s/shortkeys", redis.dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# ops\nlong-enough-key-0001\nshort-key-01\n");
    fclose(f);
    const char *flag[] = {"--api-key", "long-enough-key-0001,tiny-key-0001", NULL};
    const char *file[] = {"--api-key-file", path, NULL};
    const struct {
        const char *const *extra;
        const char *env, *says, *secret;
    } cases[] = {
        {flag, NULL, "--api-key", "tiny-key-0001"},
        {NULL, "SHOAL_API_KEY=tiny-key", "--api-key", "tiny-key"},
        {file, NULL, "line 3", "short-key-01"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct h_worker w;
        if (cases[i].env) putenv((char *)cases[i].env);
        h_worker_start(&w, &redis, "short", cases[i].extra);
        int code = h_wait(w.pid, 5000);
        if (cases[i].env) unsetenv("SHOAL_API_KEY");
        if (code < 0) h_worker_stop(&w);
        cr_assert_eq(code, 2, "case %zu: a short key must stop start-up (exit %d)", i, code);
        char *log = h_read_file(w.log);
        cr_assert(strstr(log, "at least 16"), "%s", log);
        cr_assert(strstr(log, cases[i].says), "%s", log);
        cr_assert_null(strstr(log, cases[i].secret), "the key is shown: %s", log);
        free(log);
    }
}

static void write_keys(const char *path, const char *text) {
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

struct key_want {
    int port;
    const char *hdr;
    int status;
};
static bool key_answers(void *arg) {
    struct key_want *k = arg;
    struct h_resp r;
    int st = h_req(k->port, "GET", "/api/octopusservernodes", k->hdr, NULL, &r);
    h_resp_free(&r);
    return st == k->status;
}

struct keyed_task_want {
    int port;
    const char *path, *hdr, *state;
};
static bool keyed_task_is(void *arg) {
    struct keyed_task_want *t = arg;
    struct h_resp r;
    bool ok = h_req(t->port, "GET", t->path, t->hdr, NULL, &r) == 200 && r.json &&
              strcmp(json_string_value(json_object_get(r.json, "State")), t->state) == 0;
    h_resp_free(&r);
    return ok;
}

/* SIGHUP re-reads the key file; the node keeps running, and so does its task. A file that
 * fails to load keeps the keys in force and logs the error. */
Test(api, sighup_reloads_the_key_file_and_keeps_running) {
#define OLDK "X-Octopus-ApiKey: old-key-0123456789abcdef\r\n"
#define NEWK "X-Octopus-ApiKey: new-key-0123456789abcdef\r\n"
    char path[256];
    snprintf(path, sizeof path, "%s/hupkeys", redis.dir);
    write_keys(path, "old-key-0123456789abcdef\n");
    struct h_worker w;
    const char *extra[] = {"--api-key-file", path, NULL};
    h_worker_start(&w, &redis, "hup", extra);
    cr_assert(h_ping_is(&w, 200, 10000));
    struct h_resp r;
    cr_assert_eq(h_req(w.port, "POST", "/api/tasks", OLDK,
                       "{\"Type\":\"sleep\",\"Arguments\":[\"2s\"]}", &r),
                 201, "%s", r.body);
    char task[96];
    snprintf(task, sizeof task, "/api/tasks/%s", sget(r.json, "Id"));
    h_resp_free(&r);
    struct keyed_task_want running = {w.port, task, OLDK, "Executing"};
    cr_assert(h_eventually(keyed_task_is, &running, 5000), "the task did not start");

    write_keys(path, "# rotated\nnew-key-0123456789abcdef\nsecond-key-0123456789\n");
    cr_assert_eq(kill(w.pid, SIGHUP), 0);
    struct key_want fresh = {w.port, NEWK, 200};
    cr_assert(h_eventually(key_answers, &fresh, 5000), "the new key is not accepted");
    struct key_want stale = {w.port, OLDK, 403};
    cr_assert(key_answers(&stale), "the removed key still works");
    cr_assert(h_ping_is(&w, 200, 1000), "the node stopped serving");
    running.hdr = NEWK;
    cr_assert(keyed_task_is(&running), "the task did not survive the reload");

    /* A file that no longer loads (a short key): the keys in force stay, the error is logged. */
    write_keys(path, "tiny\n");
    cr_assert_eq(kill(w.pid, SIGHUP), 0);
    struct key_want still = {w.port, "X-Octopus-ApiKey: second-key-0123456789\r\n", 200};
    for (uint64_t until = h_now_ms() + 500; h_now_ms() < until;)
        cr_assert(key_answers(&still), "a failed reload dropped the keys");

    struct keyed_task_want done = {w.port, task, NEWK, "Success"};
    cr_assert(h_eventually(keyed_task_is, &done, 10000), "the task did not finish on this node");
    cr_assert_eq(h_wait(w.pid, 0), -1, "the node exited");
    cr_assert_eq(h_worker_stop(&w), 0, "a clean drain after the reloads");
    char *log = h_read_file(w.log);
    cr_assert(strstr(log, "API keys reloaded") && strstr(log, "keys=2"), "%s", log);
    const char *bad = strstr(log, "API key reload failed");
    cr_assert(bad && strstr(bad, "at least 16"), "%s", log);
    cr_assert_null(strstr(log, "new-key-0123456789abcdef"), "%s", log);
    cr_assert_null(strstr(log, "old-key-0123456789abcdef"), "%s", log);
    cr_assert_null(strstr(log, "tiny"), "%s", log);
    free(log);
#undef OLDK
#undef NEWK
}

/* The space list is answered from memory for a second at most (GET /api/spaces under load
 * stays well under a millisecond): a space that gets its first package shows within it. */
struct spaces_want {
    int port;
    long long total;
};
static bool spaces_total_is(void *arg) {
    struct spaces_want *s = arg;
    struct h_resp r;
    bool ok = h_req(s->port, "GET", "/api/spaces", KEYH, NULL, &r) == 200 && r.json &&
              json_integer_value(json_object_get(r.json, "TotalResults")) == s->total;
    h_resp_free(&r);
    return ok;
}

Test(api, the_space_list_is_at_most_a_second_old) {
    struct h_worker w;
    start(&w, "spacey", NULL);
    struct spaces_want one = {w.port, 1};
    cr_assert(h_eventually(spaces_total_is, &one, 2000), "Spaces-1 alone");
    redisContext *c = h_redis_connect(&redis);
    freeReplyObject(redisCommand(c, "SADD {shoal}:pkgspaces Spaces-5"));
    redisFree(c);
    uint64_t t0 = h_now_ms();
    struct spaces_want two = {w.port, 2};
    cr_assert(h_eventually(spaces_total_is, &two, 3000), "the new space never showed");
    cr_assert_lt(h_now_ms() - t0, 1500, "shown only after %llu ms",
                 (unsigned long long)(h_now_ms() - t0));
    cr_assert_eq(h_worker_stop(&w), 0);
}
