/* api_nodes.c: the node endpoints of the keyed API, shaped like Octopus's
 * /api/octopusservernodes: the paged collection, /all, /summary, one node, its details, PUT
 * (task cap and drain, through set_cap.lua and set_drain.lua, as `shoal cap` and `shoal drain`
 * do) and DELETE (forget.lua: offline nodes only).
 *
 * Every read is one node_summary.lua call (O(nodes), atomic; list_nodes.lua's shape with only
 * the fields shown), filtered here: the fleet is small (hundreds of nodes at most) and a single
 * consistent snapshot beats per-node lookups. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "common/rconn.h"
#include "common/util.h"

/* What a request asked for; one per exchange, freed when its last reply has been handled. */
enum node_op { OP_COLLECTION, OP_ALL, OP_SUMMARY, OP_ONE, OP_DETAILS, OP_PUT };

struct node_call {
    struct http_exchange *ex;        /* answered exactly once, then NULL */
    const struct node_services *svc; /* borrowed (the server outlives its exchanges' calls) */
    enum node_op op;
    int pending;             /* reply callbacks still to run */
    char name[65];           /* the node of /{id} routes */
    int64_t skip, take;      /* the collection's page */
    char partial[72];        /* the collection's partialName filter */
    int64_t cap;             /* PUT: the wanted task cap */
    bool drain;              /* PUT: the wanted drain */
    bool writing;            /* PUT: the writes were sent (second stage) */
    struct access_actor who; /* PUT, DELETE: who asked (the audit trail) */
    struct node_info node;   /* details: the node read by the first reply */
    int status;              /* details: 0, or the error the first reply met */
    char why[200];
};

static void list_cb(struct rconn *rc, redisReply *r, void *priv);

static struct node_call *node_call_new(struct http_exchange *ex, const struct node_services *svc,
                                       enum node_op op) {
    struct node_call *c = xcalloc(1, sizeof *c);
    c->ex = ex;
    c->svc = svc;
    c->op = op;
    return c;
}

/* Runs node_summary.lua with cb. Returns 0, or -1 after answering (c is then freed). */
static int send_list(struct node_call *c, rconn_reply_cb cb) {
    struct script_call call;
    call_node_summary(&call, c->svc->keys);
    int rc = api_call(c->ex, c->svc, &call, cb, c);
    call_free(&call);
    if (rc != 0) {
        free(c);
        return -1;
    }
    c->pending++;
    return 0;
}

static void answer_error(struct node_call *c, int status, const char *msg) {
    http_respond_error(c->ex, status, msg);
    c->ex = NULL;
}

static void answer_json(struct node_call *c, int status, struct buf *b) {
    api_respond_json(c->ex, status, b);
    c->ex = NULL;
}

static void not_found(struct node_call *c) {
    char msg[200];
    snprintf(msg, sizeof msg, "no node named %s (OctopusServerNodes-%s)", c->name, c->name);
    answer_error(c, 404, msg);
}

static bool partial_match(const char *name, const char *partial) {
    if (!partial[0]) return true;
    size_t n = strlen(partial);
    for (const char *p = name; *p; p++)
        if (strncasecmp(p, partial, n) == 0) return true;
    return false;
}

static const struct node_info *find(const struct node_info *v, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) return &v[i];
    return NULL;
}

/* --- rendering each read ------------------------------------------------------------------- */

static void render_collection(struct node_call *c, const struct node_info *v, int n,
                              struct buf *b) {
    struct json j;
    int64_t total = 0, at = 0;
    for (int i = 0; i < n; i++) total += partial_match(v[i].name, c->partial);
    json_init(&j, b);
    api_collection_open(&j, "OctopusServerNode", total, c->take);
    for (int i = 0; i < n; i++) {
        if (!partial_match(v[i].name, c->partial)) continue;
        if (at >= c->skip && at < c->skip + c->take) api_node_json(&j, &v[i]);
        at++;
    }
    api_collection_close(&j, "/api/octopusservernodes", "{?skip,take,partialName}", c->skip,
                         c->take, total);
}

static void render_all(const struct node_info *v, int n, struct buf *b) {
    struct json j;
    json_init(&j, b);
    json_arr_open(&j);
    for (int i = 0; i < n; i++) api_node_json(&j, &v[i]);
    json_arr_close(&j);
}

static void render_summary(const struct node_info *v, int n, struct buf *b) {
    struct json j;
    json_init(&j, b);
    json_obj_open(&j);
    json_key(&j, "Nodes");
    json_arr_open(&j);
    for (int i = 0; i < n; i++) api_node_json(&j, &v[i]);
    json_arr_close(&j);
    json_key(&j, "Links");
    json_obj_open(&j);
    json_key(&j, "Self");
    json_str(&j, "/api/octopusservernodes/summary");
    json_obj_close(&j);
    json_obj_close(&j);
}

static void render_one(const struct node_info *n, struct buf *b) {
    struct json j;
    json_init(&j, b);
    api_node_json(&j, n);
}

/* PUT's first read: sends the writes that change something, then a fresh read (all
 * pipelined: Redis runs them in order, so the read sees the writes). */
static void put_write(struct node_call *c, const struct node_info *n) {
    struct script_call call;
    c->writing = true;
    /* A write that fails means the link dropped: the read below fails too and answers 503. */
    bool up = true;
    if (n->cap != c->cap) {
        call_set_cap(&call, c->svc->keys, c->name, c->cap);
        up = rconn_call(c->svc->redis, &call, list_cb, c) == 0;
        if (up) c->pending++;
        call_free(&call);
    }
    if (up && n->drain != c->drain) {
        call_set_drain(&call, c->svc->keys, c->name, c->drain);
        if (rconn_call(c->svc->redis, &call, list_cb, c) == 0) c->pending++;
        call_free(&call);
    }
    if (up && (n->cap != c->cap || n->drain != c->drain)) {
        char msg[200], before[64], after[64], id[96];
        snprintf(id, sizeof id, API_NODE_PREFIX "%s", c->name);
        snprintf(before, sizeof before, "MaxConcurrentTasks=%lld IsInMaintenanceMode=%s",
                 (long long)n->cap, n->drain ? "true" : "false");
        snprintf(after, sizeof after, "MaxConcurrentTasks=%lld IsInMaintenanceMode=%s",
                 (long long)c->cap, c->drain ? "true" : "false");
        snprintf(msg, sizeof msg, "Node %s: %s%s%s", c->name,
                 n->drain != c->drain ? (c->drain ? "drain on" : "drain off") : "",
                 n->drain != c->drain && n->cap != c->cap ? ", " : "",
                 n->cap != c->cap ? "task cap changed" : "");
        api_audit(c->svc, &c->who, "Modified", msg, id, before, after);
    }
    call_node_summary(&call, c->svc->keys);
    if (rconn_call(c->svc->redis, &call, list_cb, c) == 0)
        c->pending++;
    else if (c->ex)
        answer_error(c, 503, "Redis is unreachable from this node; try again");
    call_free(&call);
}

/* Every node read and write of this file lands here; the last pending reply answers. */
static void list_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node_call *c = priv;
    static const struct api_error_code codes[] = {
        {"NONODE", 404}, {"BADCAP", 400}, {"BADDRAIN", 400}, {NULL, 0}};
    c->pending--;
    if (!c->ex) goto done;
    if (api_reply_failed(c->ex, r, codes)) {
        c->ex = NULL;
        goto done;
    }
    /* Replies to set_cap/set_drain ({cap, drain}) carry nothing more: the read follows. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        goto done;
    struct node_info *v = NULL;
    int n = node_info_parse_list(r, &v);
    if (n < 0) {
        answer_error(c, 500, "unexpected reply from node_summary.lua");
        goto done;
    }
    const struct node_info *one = find(v, n, c->name);
    struct buf b;
    buf_init(&b);
    switch (c->op) {
    case OP_COLLECTION: render_collection(c, v, n, &b); break;
    case OP_ALL: render_all(v, n, &b); break;
    case OP_SUMMARY:
        render_summary(v, n, &b);
        buf_reset(&c->svc->api->summary);
        buf_append(&c->svc->api->summary, b.data, b.len);
        c->svc->api->summary_at_ms = clock_mono_ms();
        break;
    case OP_ONE:
    case OP_PUT:
    case OP_DETAILS:
        if (!one) {
            not_found(c);
        } else if (c->op == OP_PUT && !c->writing) {
            put_write(c, one);
        } else if (c->op == OP_DETAILS) {
            c->node = *one; /* the task list's reply answers */
        } else {
            render_one(one, &b);
        }
        break;
    }
    if (c->ex && b.len) answer_json(c, 200, &b);
    buf_free(&b);
    free(v);
done:
    if (c->pending == 0) {
        if (c->ex) answer_error(c, 500, "no answer was produced"); /* defensive */
        free(c);
    }
}

/* --- handlers ------------------------------------------------------------------------------ */

/* GET /api/octopusservernodes[?skip&take&partialName] */
static void collection_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    if (!svc) return;
    struct node_call *c = node_call_new(ex, svc, OP_COLLECTION);
    if (api_query_int(ex, "skip", 0, 0, INT32_MAX, &c->skip) != 0 ||
        api_query_int(ex, "take", API_TAKE_DEFAULT, 0, API_TAKE_MAX, &c->take) != 0) {
        free(c);
        return;
    }
    api_query_get(http_query(ex), "partialName", c->partial, sizeof c->partial);
    send_list(c, list_cb);
}

static void all_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    if (svc) send_list(node_call_new(ex, svc, OP_ALL), list_cb);
}

static void summary_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    if (!svc) return;
    struct api_state *a = svc->api;
    if (a->summary_at_ms && clock_mono_ms() - a->summary_at_ms < SUMMARY_FRESH_MS) {
        api_respond_json(ex, 200, &a->summary);
        return;
    }
    send_list(node_call_new(ex, svc, OP_SUMMARY), list_cb);
}

/* A call for a /{id} route, or NULL after answering 404 for an id that names no valid node. */
static struct node_call *id_call(struct http_exchange *ex, const struct node_services *svc,
                                 enum node_op op) {
    struct node_call *c = node_call_new(ex, svc, op);
    if (api_node_name(http_param(ex, 0), c->name, sizeof c->name)) return c;
    char msg[200];
    snprintf(msg, sizeof msg, "'%.80s' is not a node id (OctopusServerNodes-<name>)",
             http_param(ex, 0));
    http_respond_error(ex, 404, msg);
    free(c);
    return NULL;
}

static void one_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    struct node_call *c = svc ? id_call(ex, svc, OP_ONE) : NULL;
    if (c) send_list(c, list_cb);
}

/* The details' second reply: the node's running tasks. Octopus's
 * OctopusServerNodeDetailsResource has RunningTasks as a count; Tasks lists them. */
static void details_tasks_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node_call *c = priv;
    c->pending--;
    if (c->ex && !api_reply_failed(c->ex, r, NULL)) {
        if (!api_list_reply_ok(r)) {
            answer_error(c, 500, "unexpected reply from list_tasks.lua");
        } else {
            struct buf b;
            struct json j;
            char id[96], self[180];
            snprintf(id, sizeof id, API_NODE_PREFIX "%s", c->name);
            snprintf(self, sizeof self, "/api/octopusservernodes/%s/details", id);
            buf_init(&b);
            json_init(&j, &b);
            json_obj_open(&j);
            json_key(&j, "Id");
            json_str(&j, id);
            json_key(&j, "Name");
            json_str(&j, c->name);
            json_key(&j, "RunningTasks");
            json_int(&j, r->element[0]->integer);
            json_key(&j, "MaxConcurrentTasks");
            json_int(&j, c->node.cap);
            json_key(&j, "IsInMaintenanceMode");
            json_bool(&j, c->node.drain);
            json_key(&j, "IsOffline");
            json_bool(&j, !c->node.alive);
            json_key(&j, "Tasks");
            json_arr_open(&j);
            int64_t now = clock_wall_ms();
            for (size_t i = 2; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                struct shoal_task t;
                shoal_task_from_reply(e, 1, strtoll(e->element[0]->str, NULL, 10), &t);
                api_task_json(&j, &t, now);
                shoal_task_free(&t);
            }
            json_arr_close(&j);
            json_key(&j, "Links");
            json_obj_open(&j);
            json_key(&j, "Self");
            json_str(&j, self);
            json_obj_close(&j);
            json_obj_close(&j);
            answer_json(c, 200, &b);
            buf_free(&b);
        }
    } else if (c->ex) {
        c->ex = NULL; /* api_reply_failed answered */
    }
    if (c->pending == 0) {
        if (c->ex) answer_error(c, 500, "no answer was produced");
        free(c);
    }
}

static void details_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    struct node_call *c = svc ? id_call(ex, svc, OP_DETAILS) : NULL;
    if (!c || send_list(c, list_cb) != 0) return;
    struct call_list_tasks_args a = {c->name, "Executing,Cancelling", 0, API_TAKE_MAX,
                                     API_SCAN_LIMIT};
    struct script_call call;
    call_list_tasks(&call, svc->keys, &a);
    if (rconn_call(svc->redis, &call, details_tasks_cb, c) == 0) c->pending++;
    call_free(&call);
    /* Otherwise the link dropped after the first send: its NULL reply answers 503. */
}

/* Reads PUT's body: {Id?, Name?, MaxConcurrentTasks, IsInMaintenanceMode}. Name is accepted
 * and ignored, whatever its type: a node's name is its identity (Octopus's own
 * DrainOddOrEvenOctopusServerNodes.ps1 sends the task cap in it). Returns 0, or answers 400. */
static int put_body(struct node_call *c) {
    const struct buf *body = http_body(c->ex);
    json_error_t e;
    char msg[300];
    json_t *root = json_loadb(body->data ? body->data : "", body->len, JSON_DECODE_ANY, &e);
    const char *why = NULL;
    json_t *id, *cap, *drain;
    if (!root) {
        snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)", e.text, e.line,
                 e.column);
        why = msg;
    } else if (!json_is_object(root)) {
        why = "body: expected a JSON object {Id, MaxConcurrentTasks, IsInMaintenanceMode}";
    } else if (!(cap = json_object_get(root, "MaxConcurrentTasks"))) {
        why = "MaxConcurrentTasks: required (the node's task cap, 0 to 10000)";
    } else if (!json_is_integer(cap) || json_integer_value(cap) < 0 ||
               json_integer_value(cap) > 10000) {
        why = "MaxConcurrentTasks: expected a whole number from 0 to 10000";
    } else if (!(drain = json_object_get(root, "IsInMaintenanceMode"))) {
        why = "IsInMaintenanceMode: required (true drains the node)";
    } else if (!json_is_boolean(drain)) {
        why = "IsInMaintenanceMode: expected true or false";
    } else if ((id = json_object_get(root, "Id")) && !json_is_null(id)) {
        char name[65];
        if (!json_is_string(id)) {
            why = "Id: expected a string (OctopusServerNodes-<name>)";
        } else if (!api_node_name(json_string_value(id), name, sizeof name) ||
                   strcmp(name, c->name) != 0) {
            snprintf(msg, sizeof msg, "Id: '%.80s' does not match the node in the URL (%s%s)",
                     json_string_value(id), API_NODE_PREFIX, c->name);
            why = msg;
        }
    }
    if (!why) {
        c->cap = json_integer_value(cap);
        c->drain = json_is_true(drain);
    }
    json_decref(root);
    if (!why) return 0;
    http_respond_error(c->ex, 400, why);
    return -1;
}

/* PUT /api/octopusservernodes/{id}: answers with the node as it is after the change. */
static void put_cb(struct http_exchange *ex) {
    const struct node_services *s = http_site_of(ex)->data;
    if (s && s->api) s->api->summary_at_ms = 0; /* this node's own change shows at once */
    struct access_actor who;
    const struct node_services *svc = api_begin_who(ex, PERM_ADMINISTER_SYSTEM, &who);
    struct node_call *c = svc ? id_call(ex, svc, OP_PUT) : NULL;
    if (!c) return;
    c->who = who;
    if (put_body(c) != 0) {
        free(c);
        return;
    }
    send_list(c, list_cb);
}

/* DELETE's reply: forget.lua's 1, or why not. */
static void forget_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node_call *c = priv;
    static const struct api_error_code codes[] = {
        {"NONODE", 404}, {"ALIVE", 409}, {"BUSY", 409}, {NULL, 0}};
    if (!api_reply_failed(c->ex, r, codes)) {
        struct buf b;
        struct json j;
        char id[96], msg[120];
        snprintf(id, sizeof id, API_NODE_PREFIX "%s", c->name);
        snprintf(msg, sizeof msg, "Node %s forgotten", c->name);
        api_audit(c->svc, &c->who, "Deleted", msg, id, c->name, NULL);
        buf_init(&b);
        json_init(&j, &b);
        json_obj_open(&j);
        json_key(&j, "Id");
        json_str(&j, id);
        json_key(&j, "Name");
        json_str(&j, c->name);
        json_key(&j, "Deleted");
        json_bool(&j, true);
        json_obj_close(&j);
        api_respond_json(c->ex, 200, &b);
        buf_free(&b);
    }
    free(c);
}

/* DELETE /api/octopusservernodes/{id}: forgets an offline node (409 while it is alive or
 * still has tasks recorded as running). */
static void delete_cb(struct http_exchange *ex) {
    const struct node_services *s = http_site_of(ex)->data;
    if (s && s->api) s->api->summary_at_ms = 0;
    struct access_actor who;
    const struct node_services *svc = api_begin_who(ex, PERM_ADMINISTER_SYSTEM, &who);
    struct node_call *c = svc ? id_call(ex, svc, OP_ONE) : NULL;
    if (!c) return;
    c->who = who;
    struct script_call call;
    call_forget(&call, svc->keys, c->name);
    if (api_call(ex, svc, &call, forget_cb, c) != 0) free(c);
    call_free(&call);
}

/* Fixed paths before the {id} pattern: first match wins. */
const struct http_route api_node_routes[] = {
    {HTTP_GET, "/api/octopusservernodes", collection_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/octopusservernodes/all", all_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/octopusservernodes/summary", summary_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/octopusservernodes/{id}", one_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_PUT, "/api/octopusservernodes/{id}", put_cb, HTTP_BODY_BUFFER, api_admit_admin},
    {HTTP_DELETE, "/api/octopusservernodes/{id}", delete_cb, HTTP_BODY_NONE, api_admit_admin},
    {HTTP_GET, "/api/octopusservernodes/{id}/details", details_cb, HTTP_BODY_NONE,
     api_admit_task_view},
};
const size_t api_node_nroutes = ARRAY_SIZE(api_node_routes);
