/* api_spaces.c: what Octopus's API clients read first. GET /api, the root document (Application,
 * Version, ApiVersion, InstallationId and Links to every collection shoal serves, with Octopus's
 * URI templates); and spaces: a namespace is one Octopus space, Spaces-1 named Default, and each
 * space that holds packages is listed too (GET /api/spaces, /api/spaces/all, /api/spaces/{id}).
 * The root document is open, as Octopus's is (it says what the server is, nothing of its data);
 * the spaces need a key. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/config.h"
#include "common/package.h"
#include "common/util.h"

#define SPACES_MAX 1000 /* spaces listed at most (each is a set member of {NS}:pkgspaces) */

/* The namespace's installation id: a GUID made of the SHA-256 of "shoal:" + namespace, the
 * same on every node and across restarts, with no state of its own. */
static void installation_id(const char *ns, char out[37]) {
    unsigned char d[32];
    unsigned int n = 0;
    char text[128];
    snprintf(text, sizeof text, "shoal:%s", ns);
    EVP_Digest(text, strlen(text), d, &n, EVP_sha256(), NULL);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0],
             d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14],
             d[15]);
}

/* GET /api */
static void root_cb(struct http_exchange *ex) {
    const struct http_site *site = http_site_of(ex);
    const struct node_services *svc = site->data;
    static const char *const links[][2] = {
        {"Self", "/api"},
        {"Spaces", "/api/spaces{/id}{?skip,take,ids,partialName}"},
        {"SpacesAll", "/api/spaces/all"},
        {"OctopusServerNodes", "/api/octopusservernodes{/id}{?skip,take}"},
        {"OctopusServerNodesAll", "/api/octopusservernodes/all"},
        {"OctopusServerClusterSummary", "/api/octopusservernodes/summary"},
        {"Tasks", "/api/tasks{/id}{?skip,take,node,states}"},
        {"Packages", "/api/{spaceId}/packages{/id}{?skip,take,filter}"},
        {"PackageUpload", "/api/{spaceId}/packages/raw{?replace,overwriteMode}"},
        {"PackageUploadLegacy", "/api/packages/raw{?replace,overwriteMode}"},
    };
    char id[37];
    installation_id(svc && svc->cfg ? svc->cfg->namespace : "shoal", id);
    struct buf b;
    struct json j;
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
    json_str(&j, id);
    json_key(&j, "IsEarlyAccessProgram");
    json_bool(&j, false);
    json_key(&j, "HasLongTermSupport");
    json_bool(&j, false);
    json_key(&j, "Links");
    json_obj_open(&j);
    for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
        json_key(&j, links[i][0]);
        json_str(&j, links[i][1]);
    }
    json_obj_close(&j);
    json_obj_close(&j);
    api_respond_json(ex, 200, &b);
    buf_free(&b);
}

/* --- spaces --------------------------------------------------------------------------------- */

enum spaces_shape { SPACES_COLLECTION, SPACES_ALL, SPACES_ONE };

struct spaces_call {
    struct http_exchange *ex;
    enum spaces_shape shape;
    int64_t skip, take;
    char partial[72]; /* partialName, lower-cased; "" for none */
    char id[72];      /* /api/spaces/{id} */
};

static void space_json(struct json *j, const char *id) {
    bool def = strcmp(id, PACKAGE_DEFAULT_SPACE) == 0;
    char self[128], home[128];
    snprintf(self, sizeof self, "/api/spaces/%s", id);
    snprintf(home, sizeof home, "/api/%s", id);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Name");
    json_str(j, def ? "Default" : id);
    json_key(j, "Slug");
    json_str(j, def ? "default" : id);
    json_key(j, "Description");
    json_str(j, def ? "The default space: this namespace's tasks and packages" : "Packages");
    json_key(j, "IsDefault");
    json_bool(j, def);
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
    json_key(j, "SpaceHome");
    json_str(j, home);
    json_obj_close(j);
    json_obj_close(j);
}

static int by_id(const void *a, const void *b) {
    /* Spaces-1 first, then by number when both are Spaces-<n>, else by text. */
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    long long nx = strncmp(x, "Spaces-", 7) == 0 ? atoll(x + 7) : 0;
    long long ny = strncmp(y, "Spaces-", 7) == 0 ? atoll(y + 7) : 0;
    if (nx && ny && nx != ny) return nx < ny ? -1 : 1;
    if (nx && !ny) return -1;
    if (ny && !nx) return 1;
    return strcmp(x, y);
}

/* Case-insensitive "contains", for partialName (Octopus matches the name that way). */
static bool contains(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return true;
    return n == 0;
}

/* SMEMBERS {NS}:pkgspaces: the spaces, with Spaces-1 always among them. */
static void members_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct spaces_call *c = priv;
    struct http_exchange *ex = c->ex;
    if (api_reply_failed(ex, r, NULL)) goto done;
    const char *ids[SPACES_MAX + 1];
    size_t n = 0;
    ids[n++] = PACKAGE_DEFAULT_SPACE;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && n < SPACES_MAX; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[i]->str, PACKAGE_DEFAULT_SPACE) != 0 &&
            package_space_valid(r->element[i]->str))
            ids[n++] = r->element[i]->str;
    qsort(ids, n, sizeof *ids, by_id);
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    if (c->shape == SPACES_ONE) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(ids[i], c->id) == 0) {
                space_json(&j, ids[i]);
                api_respond_json(ex, 200, &b);
                goto out;
            }
        http_respond_error(ex, 404, "no space with that id: this namespace is Spaces-1 (and the "
                                    "spaces its packages name)");
        goto out;
    }
    const char *match[SPACES_MAX + 1];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = strcmp(ids[i], PACKAGE_DEFAULT_SPACE) == 0 ? "Default" : ids[i];
        if (contains(name, c->partial)) match[m++] = ids[i];
    }
    if (c->shape == SPACES_ALL) {
        json_arr_open(&j);
        for (size_t i = 0; i < m; i++) space_json(&j, match[i]);
        json_arr_close(&j);
    } else {
        api_collection_open(&j, "Space", (int64_t)m, c->take);
        for (int64_t i = c->skip; i < (int64_t)m && i < c->skip + c->take; i++)
            space_json(&j, match[i]);
        api_collection_close(&j, "/api/spaces", "{?skip,take,ids,partialName}", c->skip, c->take,
                             (int64_t)m);
    }
    api_respond_json(ex, 200, &b);
out:
    buf_free(&b);
done:
    free(c);
}

static void spaces_begin(struct http_exchange *ex, enum spaces_shape shape) {
    const struct node_services *svc = api_begin(ex);
    if (!svc) return;
    struct spaces_call *c = xcalloc(1, sizeof *c);
    c->ex = ex;
    c->shape = shape;
    if (shape == SPACES_COLLECTION &&
        (api_query_int(ex, "skip", 0, 0, INT32_MAX, &c->skip) != 0 ||
         api_query_int(ex, "take", API_TAKE_DEFAULT, 0, API_TAKE_MAX, &c->take) != 0)) {
        free(c);
        return;
    }
    if (shape != SPACES_ONE) api_query_get(http_query(ex), "partialName", c->partial,
                                           sizeof c->partial);
    if (shape == SPACES_ONE) snprintf(c->id, sizeof c->id, "%s", http_param(ex, 0));
    char key[160];
    const char *argv[] = {"SMEMBERS", keys_package_spaces(svc->keys, key, sizeof key)};
    if (api_send(ex, svc, members_cb, c, 2, argv, NULL) != 0) free(c);
}

static void spaces_cb(struct http_exchange *ex) { spaces_begin(ex, SPACES_COLLECTION); }
static void spaces_all_cb(struct http_exchange *ex) { spaces_begin(ex, SPACES_ALL); }
static void space_cb(struct http_exchange *ex) { spaces_begin(ex, SPACES_ONE); }

const struct http_route api_space_routes[] = {
    {HTTP_GET, "/api", root_cb, HTTP_BODY_NONE, NULL},
    {HTTP_GET, "/api/spaces", spaces_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/spaces/all", spaces_all_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/spaces/{id}", space_cb, HTTP_BODY_NONE, api_admit},
};
const size_t api_space_nroutes = ARRAY_SIZE(api_space_routes);
