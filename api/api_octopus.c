#define _GNU_SOURCE /* strcasestr */
/* api_octopus.c: what Octopus's own clients read before anything else: the root document
 * (GET /api) and spaces. shoal's namespace is one Octopus space, Spaces-1 named "Default";
 * a space that holds packages (the feed accepts any space id) is listed too, named after its
 * id. The root document is answered from memory (no Redis round trip): clients read it on
 * every connect. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "common/package.h"
#include "common/rconn.h"
#include "common/util.h"

/* Octopus's URI templates for every collection shoal serves. */
static const struct {
    const char *name, *href;
} root_links[] = {
    {"Self", "/api"},
    {"Spaces", "/api/spaces{/id}{?skip,ids,take,partialName}"},
    {"Tasks", "/api/tasks{/id}{?skip,node,states,take,ids,spaces,includeSystem}"},
    {"TaskDetails", "/api/tasks/{id}/details"},
    {"OctopusServerNodes", "/api/octopusservernodes{/id}{?skip,take}"},
    {"OctopusServerClusterSummary", "/api/octopusservernodes/summary"},
    {"Packages", "/api/{spaceId}/packages{/id}{?nuGetPackageId,filter,latest,skip,take}"},
    {"PackageUpload", "/api/{spaceId}/packages/raw{?replace,overwriteMode}"},
};

/* A UUID-shaped id derived from the namespace, so every node of it gives the same one. */
static void installation_id(const struct keys *k, char *out, size_t len) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)k->prefix, strlen(k->prefix), d);
    snprintf(out, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0],
             d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13],
             d[14], d[15]);
}

/* GET /api: Octopus's root document. */
static void root_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_NONE);
    if (!svc) return;
    char install[40];
    struct buf b;
    struct json j;
    installation_id(svc->keys, install, sizeof install);
    buf_init(&b);
    json_init(&j, &b);
    json_obj_open(&j);
    json_key(&j, "Application");
    json_str(&j, "shoal");
    json_key(&j, "Version");
    json_str(&j, SHOAL_VERSION);
    json_key(&j, "ApiVersion");
    json_str(&j, "3.0.0");
    json_key(&j, "InstallationId");
    json_str(&j, install);
    json_key(&j, "IsEarlyAccessProgram");
    json_bool(&j, false);
    json_key(&j, "HasLongTermSupport");
    json_bool(&j, false);
    json_key(&j, "Links");
    json_obj_open(&j);
    for (size_t i = 0; i < ARRAY_SIZE(root_links); i++) {
        json_key(&j, root_links[i].name);
        json_str(&j, root_links[i].href);
    }
    json_obj_close(&j);
    json_obj_close(&j);
    api_respond_json(ex, 200, &b);
    buf_free(&b);
}

/* --- spaces ---------------------------------------------------------------------------------- */

void api_space_json(struct json *j, const char *id) {
    bool dflt = strcmp(id, API_DEFAULT_SPACE) == 0;
    char self[128];
    snprintf(self, sizeof self, "/api/spaces/%s", id);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Name");
    json_str(j, dflt ? "Default" : id);
    json_key(j, "Slug");
    json_str(j, dflt ? "default" : id);
    json_key(j, "Description");
    json_str(j, dflt ? "shoal's namespace" : "a space holding packages");
    json_key(j, "IsDefault");
    json_bool(j, dflt);
    json_key(j, "TaskQueueStopped");
    json_bool(j, false);
    json_key(j, "SpaceManagersTeams");
    json_arr_open(j);
    json_arr_close(j);
    json_key(j, "SpaceManagersTeamMembers");
    json_arr_open(j);
    json_arr_close(j);
    json_key(j, "Links");
    json_obj_open(j);
    json_key(j, "Self");
    json_str(j, self);
    snprintf(self, sizeof self, "/api/%s/tasks", id);
    json_key(j, "Tasks");
    json_str(j, self);
    snprintf(self, sizeof self, "/api/%s/packages", id);
    json_key(j, "Packages");
    json_str(j, self);
    json_obj_close(j);
    json_obj_close(j);
}

void api_unknown_space(struct http_exchange *ex, const char *id) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "The resource you requested was not found: no space %.80s (this namespace is "
             "the space " API_DEFAULT_SPACE ")",
             id);
    http_respond_error(ex, 404, msg);
}

bool api_space_scope(struct http_exchange *ex, unsigned *first) {
    const char *path = http_path(ex);
    *first = 0;
    if (strncmp(path, "/api/tasks", 10) == 0) return true;
    const char *space = http_param(ex, 0);
    *first = 1;
    if (space && strcasecmp(space, API_DEFAULT_SPACE) == 0) return true;
    api_unknown_space(ex, space ? space : "");
    return false;
}

enum spaces_kind { SPACES_PAGE, SPACES_ALL, SPACES_ONE };

#define SPACES_FRESH_MS 1000 /* the space list is read from Redis at most once a second */

struct spaces_req {
    struct http_exchange *ex;
    enum spaces_kind kind;
    char want[PACKAGE_SPACE_MAX + 1]; /* SPACES_ONE: the id; else partialName ("" for any) */
    char ids[512];                    /* ids= comma list, or "" */
    int64_t skip, take;
    const struct node_services *svc; /* borrowed */
};

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The space listed for a query? */
static bool wanted(const struct spaces_req *q, const char *id) {
    if (q->ids[0]) {
        char copy[512], *save = NULL;
        snprintf(copy, sizeof copy, "%s", q->ids);
        bool in = false;
        for (char *s = strtok_r(copy, ",", &save); s && !in; s = strtok_r(NULL, ",", &save))
            in = strcasecmp(s, id) == 0;
        if (!in) return false;
    }
    if (!q->want[0]) return true;
    const char *name = strcmp(id, API_DEFAULT_SPACE) == 0 ? "Default" : id;
    return strcasestr(name, q->want) != NULL;
}

/* Answers q from the space list ids[0..m) (Spaces-1 first, the rest sorted). */
static void spaces_answer(struct spaces_req *q, char *const *ids, size_t m) {
    struct http_exchange *ex = q->ex;
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    if (q->kind == SPACES_ONE) {
        const char *found = NULL;
        for (size_t i = 0; i < m && !found; i++)
            if (strcasecmp(ids[i], q->want) == 0) found = ids[i];
        if (found) {
            api_space_json(&j, found);
            api_respond_json(ex, 200, &b);
        } else {
            api_unknown_space(ex, q->want);
        }
    } else if (q->kind == SPACES_ALL) {
        json_arr_open(&j);
        for (size_t i = 0; i < m; i++) api_space_json(&j, ids[i]);
        json_arr_close(&j);
        api_respond_json(ex, 200, &b);
    } else {
        int64_t total = 0;
        for (size_t i = 0; i < m; i++) total += wanted(q, ids[i]);
        api_collection_open(&j, "Space", total, q->take);
        int64_t at = 0;
        for (size_t i = 0; i < m; i++) {
            if (!wanted(q, ids[i])) continue;
            if (at >= q->skip && at < q->skip + q->take) api_space_json(&j, ids[i]);
            at++;
        }
        api_collection_close(&j, "/api/spaces", "{/id}{?skip,ids,take,partialName}", q->skip,
                             q->take, total);
        api_respond_json(ex, 200, &b);
    }
    buf_free(&b);
}

/* SMEMBERS of the package spaces (bounded by the feed: one member per space that holds a
 * package), plus Spaces-1: kept in the node's API state for SPACES_FRESH_MS, then answered. */
static void spaces_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct spaces_req *q = priv;
    struct http_exchange *ex = q->ex;
    if (api_reply_failed(ex, r, NULL)) goto out;
    struct api_state *a = q->svc->api;
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    char **ids = xcalloc(n + 1, sizeof *ids);
    size_t m = 0;
    ids[m++] = xstrdup(API_DEFAULT_SPACE);
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[i]->str, API_DEFAULT_SPACE) != 0)
            ids[m++] = xstrdup(r->element[i]->str);
    qsort(ids + 1, m - 1, sizeof *ids, cmp_str);
    for (size_t i = 0; i < a->nspaces; i++) free(a->spaces[i]);
    free(a->spaces);
    a->spaces = ids;
    a->nspaces = m;
    a->spaces_at_ms = clock_mono_ms();
    spaces_answer(q, ids, m);
out:
    free(q);
}

/* From memory when the list is fresh (a space that got its first package shows within
 * SPACES_FRESH_MS), else one SMEMBERS. */
static void spaces_send(struct http_exchange *ex, const struct node_services *svc,
                        struct spaces_req *q) {
    const struct api_state *a = svc->api;
    q->svc = svc;
    if (a->spaces && clock_mono_ms() - a->spaces_at_ms < SPACES_FRESH_MS) {
        spaces_answer(q, a->spaces, a->nspaces);
        free(q);
        return;
    }
    char key[160];
    const char *argv[] = {"SMEMBERS", keys_package_spaces(svc->keys, key, sizeof key)};
    if (api_send(ex, svc, spaces_reply_cb, q, 2, argv, NULL) != 0) free(q);
}

/* GET /api/spaces[?partialName&ids&skip&take] */
static void spaces_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_NONE);
    if (!svc) return;
    struct spaces_req *q = xcalloc(1, sizeof *q);
    q->ex = ex;
    q->kind = SPACES_PAGE;
    /* Octopus's clients ask for take=2147483647: "all of them" */
    if (api_query_int(ex, "skip", 0, 0, INT32_MAX, &q->skip) != 0 ||
        api_query_int(ex, "take", API_TAKE_DEFAULT, 0, INT32_MAX, &q->take) != 0) {
        free(q);
        return;
    }
    if (!api_query_get(http_query(ex), "partialName", q->want, sizeof q->want)) q->want[0] = 0;
    if (!api_query_get(http_query(ex), "ids", q->ids, sizeof q->ids)) q->ids[0] = 0;
    spaces_send(ex, svc, q);
}

/* GET /api/spaces/all */
static void spaces_all_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_NONE);
    if (!svc) return;
    struct spaces_req *q = xcalloc(1, sizeof *q);
    q->ex = ex;
    q->kind = SPACES_ALL;
    spaces_send(ex, svc, q);
}

/* GET /api/spaces/{id} */
static void space_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_NONE);
    if (!svc) return;
    struct spaces_req *q = xcalloc(1, sizeof *q);
    q->ex = ex;
    q->kind = SPACES_ONE;
    snprintf(q->want, sizeof q->want, "%s", http_param(ex, 0));
    spaces_send(ex, svc, q);
}

const struct http_route api_octopus_routes[] = {
    {HTTP_GET, "/api", root_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/spaces", spaces_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/spaces/all", spaces_all_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/spaces/{id}", space_cb, HTTP_BODY_NONE, api_admit},
};
const size_t api_octopus_nroutes = ARRAY_SIZE(api_octopus_routes);
