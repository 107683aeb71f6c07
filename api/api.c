/* api.c: the helpers every keyed handler shares (see api.h): the gate, Redis reply checks,
 * query parameters, and the JSON of nodes, tasks and Octopus's paged collections. */
#include "api/api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/log.h"
#include "common/rconn.h"
#include "common/util.h"

int api_state_new(const struct shoal_config *cfg, struct api_state **out, char *err,
                  size_t errlen) {
    struct api_state *a = xcalloc(1, sizeof *a);
    int rc = auth_keys_load(cfg, &a->keys, err, errlen);
    if (rc) {
        free(a);
        return rc;
    }
    a->metrics = metrics_cache_new();
    *out = a;
    return 0;
}

void api_state_free(struct api_state *a) {
    if (!a) return;
    auth_keys_free(a->keys);
    access_cache_free(a->access);
    metrics_cache_free(a->metrics);
    buf_free(&a->summary);
    for (size_t i = 0; i < a->nspaces; i++) free(a->spaces[i]);
    free(a->spaces);
    free(a);
}

static int admit_who(struct http_exchange *ex, enum access_perm perm, struct access_actor *who,
                     const char **why) {
    const struct http_site *site = http_site_of(ex);
    const struct node_services *svc = site ? site->data : NULL;
    if (!svc || !svc->api || !svc->redis) {
        *why = "the API is not available on this server";
        return 503;
    }
    int status = access_check(svc->api->access, svc->api->keys, ex, perm, who, why);
    if (status == 401) http_add_header(ex, "WWW-Authenticate", "Bearer");
    return status;
}

int api_admit(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_NONE, NULL, why);
}
int api_admit_admin(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_ADMINISTER_SYSTEM, NULL, why);
}
int api_admit_task_view(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_TASK_VIEW, NULL, why);
}
int api_admit_task_create(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_TASK_CREATE, NULL, why);
}
int api_admit_task_cancel(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_TASK_CANCEL, NULL, why);
}
int api_admit_event_view(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_EVENT_VIEW, NULL, why);
}
int api_admit_feed_view(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_FEED_VIEW, NULL, why);
}
int api_admit_feed_push(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_BUILTIN_FEED_PUSH, NULL, why);
}
int api_admit_feed_download(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_BUILTIN_FEED_DOWNLOAD, NULL, why);
}
int api_admit_feed_admin(struct http_exchange *ex, const char **why) {
    return admit_who(ex, PERM_BUILTIN_FEED_ADMINISTER, NULL, why);
}

void api_state_set_keys(struct api_state *a, struct auth_keys *k) {
    auth_keys_free(a->keys);
    a->keys = k;
}

const struct node_services *api_begin_who(struct http_exchange *ex, enum access_perm perm,
                                          struct access_actor *who) {
    const char *why;
    int status = admit_who(ex, perm, who, &why);
    if (status) {
        http_respond_error(ex, status, why);
        return NULL;
    }
    return http_site_of(ex)->data;
}

const struct node_services *api_begin(struct http_exchange *ex, enum access_perm perm) {
    return api_begin_who(ex, perm, NULL);
}

static void audit_cb(struct rconn *rc, redisReply *r, void *priv) {
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("audit event not written", " err=\"%s\"", r ? r->str : "connection lost");
}

void api_audit(const struct node_services *svc, const struct access_actor *who,
               const char *category, const char *message, const char *related, const char *before,
               const char *after) {
    struct buf ev;
    char key[160], minid[24];
    int64_t now = clock_wall_ms();
    buf_init(&ev);
    access_event_json(&ev, who, category, message, related, before, after, now);
    snprintf(minid, sizeof minid, "%lld", (long long)(now - ACCESS_EVENT_RETENTION_MS));
    const char *argv[] = {
        "XADD", keys_events(svc->keys, key, sizeof key), "MINID", "~", minid, "*", "e", ev.data};
    if (rconn_command(svc->redis, audit_cb, NULL, 8, argv, NULL) != 0)
        log_warn("audit event not written", " err=\"Redis unreachable\" message=\"%s\"", message);
    buf_free(&ev);
}

void api_respond_json(struct http_exchange *ex, int status, const struct buf *b) {
    http_respond(ex, status, "application/json", b->data, b->len);
}

bool api_reply_failed(struct http_exchange *ex, const redisReply *r,
                      const struct api_error_code *codes) {
    if (r == NULL) {
        http_respond_error(ex, 503, "Redis connection lost; try again");
        return true;
    }
    if (r->type != REDIS_REPLY_ERROR) return false;
    const char *sp = strchr(r->str, ' ');
    size_t code_len = sp ? (size_t)(sp - r->str) : strlen(r->str);
    int status = 500;
    for (size_t i = 0; codes && codes[i].code; i++)
        if (strlen(codes[i].code) == code_len && strncmp(r->str, codes[i].code, code_len) == 0)
            status = codes[i].status;
    /* A 500 shows an error id, not this text (http_respond_error logs it under that id). */
    http_respond_error(ex, status, status == 500 ? r->str : (sp ? sp + 1 : r->str));
    return true;
}

int api_send(struct http_exchange *ex, const struct node_services *svc, rconn_reply_cb cb,
             void *priv, int argc, const char **argv, const size_t *lens) {
    if (rconn_command(svc->redis, cb, priv, argc, argv, lens) == 0) return 0;
    http_respond_error(ex, 503, "Redis is unreachable from this node; try again");
    return -1;
}

int api_call(struct http_exchange *ex, const struct node_services *svc,
             const struct script_call *call, rconn_reply_cb cb, void *priv) {
    if (rconn_call(svc->redis, call, cb, priv) == 0) return 0;
    http_respond_error(ex, 503, "Redis is unreachable from this node; try again");
    return -1;
}

/* --- query strings ------------------------------------------------------------------------ */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes s[0..n) into out (NUL-terminated, truncated to len - 1). */
static void pct_decode(const char *s, size_t n, char *out, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
}

bool api_query_get(const char *query, const char *name, char *out, size_t len) {
    size_t nlen = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        if (klen == nlen && strncasecmp(p, name, nlen) == 0) {
            if (eq)
                pct_decode(eq + 1, plen - klen - 1, out, len);
            else if (len)
                out[0] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

int api_query_int(struct http_exchange *ex, const char *name, int64_t def, int64_t min, int64_t max,
                  int64_t *out) {
    char v[32];
    *out = def;
    if (!api_query_get(http_query(ex), name, v, sizeof v) || v[0] == '\0') return 0;
    if (parse_int64(v, min, max, out) == 0) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: expected a whole number from %lld to %lld", name, (long long)min,
             (long long)max);
    http_respond_error(ex, 400, msg);
    return -1;
}

/* --- nodes -------------------------------------------------------------------------------- */

bool api_node_name(const char *id, char *name, size_t len) {
    size_t pl = strlen(API_NODE_PREFIX);
    const char *n = strncmp(id, API_NODE_PREFIX, pl) == 0 ? id + pl : id;
    if (!node_name_valid(n) || strlen(n) >= len) return false;
    snprintf(name, len, "%s", n);
    return true;
}

void api_node_json(struct json *j, const struct node_info *n) {
    char id[96], self[160], details[180];
    snprintf(id, sizeof id, API_NODE_PREFIX "%s", n->name);
    snprintf(self, sizeof self, "/api/octopusservernodes/%s", id);
    snprintf(details, sizeof details, "%s/details", self);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Name");
    json_str(j, n->name);
    json_key(j, "LastSeen");
    json_time(j, n->last_seen_ms);
    json_key(j, "IsOffline");
    json_bool(j, !n->alive);
    json_key(j, "MaxConcurrentTasks");
    json_int(j, n->cap);
    json_key(j, "IsInMaintenanceMode");
    json_bool(j, n->drain);
    json_key(j, "RunningTaskCount");
    json_int(j, n->running);
    json_key(j, "Status");
    json_str(j, node_status_name(node_info_status(n)));
    json_key(j, "Version");
    json_str(j, n->version);
    json_key(j, "Links");
    json_obj_open(j);
    json_key(j, "Self");
    json_str(j, self);
    json_key(j, "Node");
    json_str(j, self);
    json_key(j, "Details");
    json_str(j, details);
    json_obj_close(j);
    json_obj_close(j);
}

/* --- tasks -------------------------------------------------------------------------------- */

void api_task_json(struct json *j, const struct shoal_task *t, int64_t now_ms) {
    char id[40], self[80], raw[96], dur[32], desc[200];
    snprintf(id, sizeof id, API_TASK_PREFIX "%lld", (long long)t->id);
    snprintf(self, sizeof self, "/api/tasks/%s", id);
    snprintf(raw, sizeof raw, "%s/raw", self);
    snprintf(desc, sizeof desc, "%s task on queue %s", t->type, t->queue);
    bool final = shoal_state_final(t->state);
    int64_t end = final ? t->completed_ms : now_ms;
    int64_t ms = t->started_ms > 0 && end >= t->started_ms ? end - t->started_ms : 0;
    format_duration_ms(ms >= 1000 ? ms / 1000 * 1000 : ms, dur, sizeof dur);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "SpaceId");
    json_str(j, API_DEFAULT_SPACE);
    json_key(j, "Name");
    json_str(j, t->type);
    json_key(j, "Description");
    json_str(j, desc);
    json_key(j, "State");
    json_str(j, t->state);
    json_key(j, "Queue");
    json_str(j, t->queue);
    json_key(j, "Type");
    json_str(j, t->type);
    json_key(j, "Priority");
    json_int(j, t->priority);
    json_key(j, "ServerNode");
    if (t->node[0])
        json_str(j, t->node);
    else
        json_null_value(j);
    json_key(j, "QueueTime");
    json_time(j, t->queued_ms);
    json_key(j, "QueueTimeExpiry");
    json_time(j, t->expiry_ms);
    json_key(j, "StartTime");
    json_time(j, t->started_ms);
    json_key(j, "CompletedTime");
    json_time(j, final ? t->completed_ms : 0);
    json_key(j, "Duration");
    json_str(j, dur);
    json_key(j, "DurationMs");
    json_int(j, ms);
    json_key(j, "ErrorMessage");
    json_str(j, t->error ? t->error : "");
    json_key(j, "HasBeenPickedUpByProcessor");
    json_bool(j, t->started_ms > 0);
    json_key(j, "IsCompleted");
    json_bool(j, final);
    json_key(j, "FinishedSuccessfully");
    json_bool(j, strcmp(t->state, "Success") == 0);
    json_key(j, "HasPendingInterruptions");
    json_bool(j, false);
    json_key(j, "HasWarningsOrErrors");
    json_bool(j, final && strcmp(t->state, "Success") != 0);
    json_key(j, "CanRerun");
    json_bool(j, false); /* shoal enqueues anew instead (a rerun is a new task) */
    json_key(j, "LastUpdatedTime");
    json_time(j, final && t->completed_ms ? t->completed_ms
                 : t->started_ms > 0      ? t->started_ms
                                          : t->queued_ms);
    json_key(j, "Attempt");
    json_int(j, t->attempt);
    json_key(j, "Attempts");
    json_int(j, t->attempts);
    json_key(j, "TimeoutMs");
    json_int(j, t->timeout_ms);
    json_key(j, "ExitCode");
    if (t->has_exit)
        json_int(j, t->exit_code);
    else
        json_null_value(j);
    json_key(j, "Links");
    json_obj_open(j);
    json_key(j, "Self");
    json_str(j, self);
    json_key(j, "Raw");
    json_str(j, raw);
    snprintf(raw, sizeof raw, "%s/details", self);
    json_key(j, "Details");
    json_str(j, raw);
    snprintf(raw, sizeof raw, "%s/cancel", self);
    json_key(j, "Cancel");
    json_str(j, raw);
    json_obj_close(j);
    json_obj_close(j);
}

bool api_list_reply_ok(const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return false;
    for (size_t i = 2; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            return false;
    }
    return true;
}

/* --- collections -------------------------------------------------------------------------- */

static int64_t pages_of(int64_t total, int64_t take) {
    if (take <= 0 || total <= 0) return 1;
    return (total + take - 1) / take;
}

void api_collection_open(struct json *j, const char *type, int64_t total, int64_t take) {
    int64_t pages = pages_of(total, take);
    json_obj_open(j);
    json_key(j, "ItemType");
    json_str(j, type);
    json_key(j, "TotalResults");
    json_int(j, total);
    json_key(j, "ItemsPerPage");
    json_int(j, take);
    json_key(j, "NumberOfPages");
    json_int(j, pages);
    json_key(j, "LastPageNumber");
    json_int(j, pages - 1);
    json_key(j, "Items");
    json_arr_open(j);
}

void api_collection_close(struct json *j, const char *path, const char *template_q, int64_t skip,
                          int64_t take, int64_t total) {
    char b[320];
    int64_t last = take > 0 ? (pages_of(total, take) - 1) * take : 0;
    json_arr_close(j);
    json_key(j, "Links");
    json_obj_open(j);
    snprintf(b, sizeof b, "%s?skip=%lld&take=%lld", path, (long long)skip, (long long)take);
    json_key(j, "Self");
    json_str(j, b);
    snprintf(b, sizeof b, "%s%s", path, template_q);
    json_key(j, "Template");
    json_str(j, b);
    if (strcmp(path, "/api/octopusservernodes") == 0) { /* tasks have no /all */
        snprintf(b, sizeof b, "%s/all", path);
        json_key(j, "Page.All");
        json_str(j, b);
    }
    snprintf(b, sizeof b, "%s?skip=%lld&take=%lld", path, (long long)skip, (long long)take);
    json_key(j, "Page.Current");
    json_str(j, b);
    snprintf(b, sizeof b, "%s?skip=%lld&take=%lld", path, (long long)last, (long long)take);
    json_key(j, "Page.Last");
    json_str(j, b);
    if (take > 0 && skip + take < total) {
        snprintf(b, sizeof b, "%s?skip=%lld&take=%lld", path, (long long)(skip + take),
                 (long long)take);
        json_key(j, "Page.Next");
        json_str(j, b);
    }
    json_obj_close(j);
    json_obj_close(j);
}
