/* test_octopus.c: what Octopus's own clients call first, against a real `shoal worker` and a
 * real redis-server (issue 17): the root document GET /api, spaces (shoal's namespace is the one
 * space Spaces-1 "Default"), space-scoped task routes, /details (ServerTaskDetails), ids= on
 * task collections, and Octopus's error shape for an unknown space. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/harness.h"

#define KEY "test-key-0123456789abcdef"
#define KEYH "X-Octopus-ApiKey: " KEY "\r\n"

static struct h_redis redis;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
}
static void teardown(void) { h_redis_stop(&redis, false); }

TestSuite(octopus, .init = setup, .fini = teardown, .timeout = 60);

/* One keyed request (h_req, tests/harness.h). */
static int req(int port, const char *method, const char *path, const char *body, struct h_resp *r) {
    return h_req(port, method, path, KEYH, body, r);
}

static json_t *get(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert_not_null(v, "missing field %s", k);
    return v;
}
static const char *sget(const json_t *o, const char *k) { return json_string_value(get(o, k)); }
static long long iget(const json_t *o, const char *k) { return json_integer_value(get(o, k)); }

static void start(struct h_worker *w, const char *name) {
    const char *args[] = {"--api-key", KEY, NULL};
    h_worker_start(w, &redis, name, args);
    cr_assert(h_ping_is(w, 200, 10000), "%s did not come up", name);
}

/* r is an Octopus error: the status, ErrorMessage containing want, and an Errors array. */
static void octopus_error(const struct h_resp *r, int status, const char *want) {
    cr_assert_eq(r->status, status, "status %d, body %s", r->status, r->body);
    cr_assert_not_null(r->json, "body is not JSON: %s", r->body);
    cr_assert(strstr(sget(r->json, "ErrorMessage"), want), "'%s' lacks '%s'",
              sget(r->json, "ErrorMessage"), want);
    cr_assert(json_is_array(get(r->json, "Errors")), "%s", r->body);
}

Test(octopus, root_document_links_what_shoal_serves) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "n1");
    cr_assert_eq(req(w.port, "GET", "/api", NULL, &r), 200, "%s", r.body);
    cr_assert(strstr(r.head, "Octopus-Node: n1"), "%s", r.head);
    cr_assert_str_eq(sget(r.json, "Application"), "shoal");
    cr_assert_str_eq(sget(r.json, "ApiVersion"), "3.0.0");
    cr_assert(sget(r.json, "Version")[0]);
    cr_assert(strlen(sget(r.json, "InstallationId")) == 36, "%s", r.body);
    json_t *links = get(r.json, "Links");
    cr_assert_str_eq(sget(links, "Self"), "/api");
    cr_assert_str_eq(sget(links, "Spaces"), "/api/spaces{/id}{?skip,ids,take,partialName}");
    cr_assert(strstr(sget(links, "Tasks"), "/api/tasks{/id}{?"), "%s", r.body);
    cr_assert(strstr(sget(links, "PackageUpload"), "/api/{spaceId}/packages/raw{?"));
    cr_assert(strstr(sget(links, "OctopusServerNodes"), "/api/octopusservernodes{/id}"));
    char *install = strdup(sget(r.json, "InstallationId"));
    h_resp_free(&r);
    /* the same InstallationId from every node of the namespace (it is the namespace's). */
    struct h_worker w2;
    start(&w2, "n2");
    cr_assert_eq(req(w2.port, "GET", "/api/", NULL, &r), 200);
    cr_assert_str_eq(sget(r.json, "InstallationId"), install);
    h_resp_free(&r);
    free(install);
    cr_assert_eq(h_worker_stop(&w2), 0);
    cr_assert_eq(h_worker_stop(&w), 0);
}

Test(octopus, spaces_default_is_spaces_1) {
    struct h_worker w;
    struct h_resp r;
    start(&w, "n1");
    cr_assert_eq(
        req(w.port, "GET", "/api/spaces?partialName=Default&skip=0&take=2147483647", NULL, &r), 200,
        "%s", r.body);
    cr_assert_str_eq(sget(r.json, "ItemType"), "Space");
    cr_assert_eq(iget(r.json, "TotalResults"), 1);
    json_t *s = json_array_get(get(r.json, "Items"), 0);
    cr_assert_str_eq(sget(s, "Id"), "Spaces-1");
    cr_assert_str_eq(sget(s, "Name"), "Default");
    cr_assert(json_is_true(get(s, "IsDefault")));
    h_resp_free(&r);
    cr_assert_eq(req(w.port, "GET", "/api/spaces?partialName=nothing", NULL, &r), 200);
    cr_assert_eq(iget(r.json, "TotalResults"), 0);
    h_resp_free(&r);
    cr_assert_eq(req(w.port, "GET", "/api/spaces/all", NULL, &r), 200, "%s", r.body);
    cr_assert(json_is_array(r.json) && json_array_size(r.json) == 1, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(req(w.port, "GET", "/api/spaces/Spaces-1", NULL, &r), 200, "%s", r.body);
    cr_assert_str_eq(sget(r.json, "Name"), "Default");
    h_resp_free(&r);
    req(w.port, "GET", "/api/spaces/Spaces-99", NULL, &r);
    octopus_error(&r, 404, "Spaces-99");
    h_resp_free(&r);
    cr_assert_eq(h_worker_stop(&w), 0);
}

static char *post_noop(int port) {
    struct h_resp r;
    cr_assert_eq(req(port, "POST", "/api/tasks", "{\"Type\":\"noop\"}", &r), 201, "%s", r.body);
    char *id = strdup(sget(r.json, "Id"));
    h_resp_free(&r);
    return id;
}

struct task_want {
    int port;
    const char *path;
};
static bool task_done(void *arg) {
    struct task_want *t = arg;
    struct h_resp r;
    bool ok = req(t->port, "GET", t->path, NULL, &r) == 200 && r.json &&
              json_is_true(json_object_get(r.json, "IsCompleted"));
    h_resp_free(&r);
    return ok;
}

Test(octopus, space_scoped_tasks_details_and_ids) {
    struct h_worker w;
    struct h_resp r;
    char path[160];
    start(&w, "n1");
    char *a = post_noop(w.port), *b = post_noop(w.port);
    snprintf(path, sizeof path, "/api/Spaces-1/tasks/%s", b);
    struct task_want tw = {w.port, path};
    cr_assert(h_eventually(task_done, &tw, 10000), "%s did not finish", b);
    cr_assert_eq(req(w.port, "GET", path, NULL, &r), 200, "%s", r.body);
    cr_assert_str_eq(sget(r.json, "Id"), b);
    cr_assert_str_eq(sget(r.json, "SpaceId"), "Spaces-1");
    cr_assert_str_eq(sget(r.json, "State"), "Success");
    cr_assert(json_is_true(get(r.json, "FinishedSuccessfully")));
    cr_assert(json_is_false(get(r.json, "HasWarningsOrErrors")));
    cr_assert(json_is_boolean(get(r.json, "CanRerun")));
    cr_assert(sget(r.json, "LastUpdatedTime")[0]);
    cr_assert(sget(r.json, "Duration")[0]);
    h_resp_free(&r);
    /* ids= filters every task collection */
    snprintf(path, sizeof path, "/api/tasks?ids=%s", b);
    cr_assert_eq(req(w.port, "GET", path, NULL, &r), 200, "%s", r.body);
    cr_assert_eq(iget(r.json, "TotalResults"), 1, "%s", r.body);
    cr_assert_str_eq(sget(json_array_get(get(r.json, "Items"), 0), "Id"), b);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/api/Spaces-1/tasks?ids=%s,%s,ServerTasks-999999", a, b);
    cr_assert_eq(req(w.port, "GET", path, NULL, &r), 200, "%s", r.body);
    cr_assert_eq(iget(r.json, "TotalResults"), 2, "%s", r.body);
    h_resp_free(&r);
    /* /details: ServerTaskDetails */
    const char *dpaths[] = {"/api/tasks/%s/details", "/api/Spaces-1/tasks/%s/details"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, dpaths[i], b);
        cr_assert_eq(req(w.port, "GET", path, NULL, &r), 200, "%s: %s", path, r.body);
        cr_assert_str_eq(sget(get(r.json, "Task"), "Id"), b);
        json_t *logs = get(r.json, "ActivityLogs");
        cr_assert(json_is_array(logs) && json_array_size(logs) == 1, "%s", r.body);
        cr_assert_str_eq(sget(json_array_get(logs, 0), "Status"), "Success");
        cr_assert(json_is_array(get(json_array_get(logs, 0), "LogElements")));
        cr_assert_eq(iget(get(r.json, "Progress"), "ProgressPercentage"), 100, "%s", r.body);
        h_resp_free(&r);
    }
    snprintf(path, sizeof path, "/api/Spaces-1/tasks/%s/raw", b);
    cr_assert_eq(req(w.port, "GET", path, NULL, &r), 200, "%s", r.body);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/api/Spaces-1/tasks/%s/cancel", b);
    cr_assert_eq(req(w.port, "POST", path, "", &r), 200, "%s", r.body);
    h_resp_free(&r);
    /* an unknown space: Octopus's 404 */
    snprintf(path, sizeof path, "/api/Spaces-7/tasks/%s", b);
    req(w.port, "GET", path, NULL, &r);
    octopus_error(&r, 404, "Spaces-7");
    h_resp_free(&r);
    free(a);
    free(b);
    cr_assert_eq(h_worker_stop(&w), 0);
}
