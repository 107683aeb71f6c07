/* api_tasks.c: the task endpoints of the keyed API, shaped like Octopus's /api/tasks: a paged
 * listing (list_tasks.lua), one task, its log as text (/raw), enqueueing (enqueue.lua, with the
 * CLI's rules) and cancelling (cancel.lua). Task ids are ServerTasks-<n> (or just <n>).
 *
 * POST /api/tasks takes {"Type", "Queue", "Arguments", "Priority", "QueueTime" | "Delay",
 * "Expiry", "Timeout", "Attempts", "NodeLossBudget"}; every field but Arguments (for exec) is
 * optional; the README's "HTTP API" section documents each. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/rconn.h"
#include "common/task_codec.h"
#include "common/util.h"

struct task_call {
    struct http_exchange *ex;        /* answered exactly once, then NULL */
    const struct node_services *svc; /* borrowed */
    int pending;                     /* reply callbacks still to run */
    int64_t id;                      /* the task of /{id} routes (and the enqueued one) */
    int64_t skip, take;              /* the listing's page */
    int status;                      /* the status of the final answer (200, 201) */
    bool missing;                    /* /raw, cancel: the first reply found no such task */
    bool have_task;                  /* /details: task holds the task read first */
    struct shoal_task task;          /* ... freed with the call */
    struct access_actor who;         /* enqueue, cancel: who asked (the audit trail) */
    char what[160];                  /* enqueue: "<type> on queue <queue>" */
};

static struct task_call *task_call_new(struct http_exchange *ex, const struct node_services *svc) {
    struct task_call *c = xcalloc(1, sizeof *c);
    c->ex = ex;
    c->svc = svc;
    c->status = 200;
    return c;
}

/* Ends one reply: frees c after its last one. */
static void task_call_done(struct task_call *c) {
    if (--c->pending > 0) return;
    if (c->ex) http_respond_error(c->ex, 500, "no answer was produced"); /* defensive */
    if (c->have_task) shoal_task_free(&c->task);
    free(c);
}

/* Handles a failed reply (answers once); true when r carries nothing to use. */
static bool failed(struct task_call *c, const redisReply *r, const struct api_error_code *codes) {
    if (!c->ex) return true;
    if (!api_reply_failed(c->ex, r, codes)) return false;
    c->ex = NULL;
    return true;
}

static void not_found(struct task_call *c) {
    char msg[160];
    snprintf(msg, sizeof msg, "no task " API_TASK_PREFIX "%lld (unknown, or past its retention)",
             (long long)c->id);
    http_respond_error(c->ex, 404, msg);
    c->ex = NULL;
}

/* The {id} of the route (after its {space}, if scoped), or answers 404 and returns NULL. */
static struct task_call *id_call(struct http_exchange *ex, const struct node_services *svc) {
    unsigned at;
    if (!api_space_scope(ex, &at)) return NULL;
    struct task_call *c = task_call_new(ex, svc);
    if (shoal_task_parse_id(http_param(ex, at), &c->id) == 0) return c;
    char msg[200];
    snprintf(msg, sizeof msg, "'%.80s' is not a task id (ServerTasks-<n>)", http_param(ex, at));
    http_respond_error(ex, 404, msg);
    free(c);
    return NULL;
}

/* Sends HGETALL of the task with task_cb. Returns 0, or -1 when the link is down. */
static void task_cb(struct rconn *rc, redisReply *r, void *priv);
static int send_get(struct task_call *c) {
    char key[160];
    const char *argv[] = {"HGETALL", keys_task(c->svc->keys, c->id, key, sizeof key)};
    if (rconn_command(c->svc->redis, task_cb, c, 2, argv, NULL) != 0) return -1;
    c->pending++;
    return 0;
}

/* A task hash: answers the task (the last reply of GET, POST and cancel). */
static void task_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    if (failed(c, r, NULL)) goto done;
    if (c->missing || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        not_found(c);
        goto done;
    }
    struct shoal_task t;
    struct buf b;
    struct json j;
    shoal_task_from_reply(r, 0, c->id, &t);
    buf_init(&b);
    json_init(&j, &b);
    api_task_json(&j, &t, clock_wall_ms());
    api_respond_json(c->ex, c->status, &b);
    c->ex = NULL;
    buf_free(&b);
    shoal_task_free(&t);
done:
    task_call_done(c);
}

/* GET /api/tasks/{id} */
static void get_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    struct task_call *c = svc ? id_call(ex, svc) : NULL;
    if (!c) return;
    if (send_get(c) != 0) {
        http_respond_error(ex, 503, "Redis is unreachable from this node; try again");
        free(c);
    }
}

/* /raw's first reply: EXISTS of the task. */
static void exists_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    if (!failed(c, r, NULL)) c->missing = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    task_call_done(c);
}

/* /raw's second reply: the log (nil when the task has none yet). */
static void log_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    if (failed(c, r, NULL)) goto done;
    if (c->missing) {
        not_found(c);
        goto done;
    }
    bool has = r->type == REDIS_REPLY_STRING;
    http_respond(c->ex, 200, "text/plain; charset=utf-8", has ? r->str : "", has ? r->len : 0);
    c->ex = NULL;
done:
    task_call_done(c);
}

/* GET /api/tasks/{id}/raw: the task's output (the last --task-log-cap bytes) as text. */
static void raw_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    struct task_call *c = svc ? id_call(ex, svc) : NULL;
    if (!c) return;
    char task_k[160], log_k[160];
    const char *exists[] = {"EXISTS", keys_task(svc->keys, c->id, task_k, sizeof task_k)};
    const char *get[] = {"GET", keys_log(svc->keys, c->id, log_k, sizeof log_k)};
    if (api_send(ex, svc, exists_cb, c, 2, exists, NULL) != 0) {
        free(c);
        return;
    }
    c->pending++;
    if (rconn_command(svc->redis, log_cb, c, 2, get, NULL) == 0) c->pending++;
}

/* cancel.lua's reply; the task hash follows (pipelined) and answers. */
static void cancel_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    static const struct api_error_code codes[] = {{"NOTASK", 404}, {NULL, 0}};
    if (!failed(c, r, codes)) {
        char id[40], msg[80];
        snprintf(id, sizeof id, API_TASK_PREFIX "%lld", (long long)c->id);
        snprintf(msg, sizeof msg, "Task %s canceled", id);
        api_audit(c->svc, &c->who, "Canceled", msg, id, NULL, NULL);
    }
    task_call_done(c);
}

/* POST /api/tasks/{id}/cancel: answers the task as it is after the cancel (Canceled, or
 * Cancelling while its node stops it; a finished task is left as it was). */
static void cancel_cb(struct http_exchange *ex) {
    struct access_actor who;
    const struct node_services *svc = api_begin_who(ex, PERM_TASK_CANCEL, &who);
    struct task_call *c = svc ? id_call(ex, svc) : NULL;
    if (!c) return;
    c->who = who;
    struct script_call call;
    call_cancel(&call, svc->keys, c->id, clock_wall_ms());
    int rc = api_call(ex, svc, &call, cancel_reply_cb, c);
    call_free(&call);
    if (rc != 0) {
        free(c);
        return;
    }
    c->pending++;
    send_get(c); /* if the link dropped meanwhile, the cancel's NULL reply answers 503 */
}

/* --- listing ------------------------------------------------------------------------------- */

static const char *const states[] = {"Queued", "Executing", "Cancelling", "Success",
                                     "Failed", "Canceled",  "TimedOut"};

/* Checks a comma list of states; returns the first unknown one's position or -1. */
static int bad_state(const char *list, char *bad, size_t len) {
    char copy[256], *save = NULL;
    snprintf(copy, sizeof copy, "%s", list);
    for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        bool ok = false;
        for (size_t i = 0; i < ARRAY_SIZE(states); i++) ok |= strcmp(s, states[i]) == 0;
        if (!ok) {
            snprintf(bad, len, "%s", s);
            return 1;
        }
    }
    return 0;
}

static void list_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    if (failed(c, r, NULL)) goto done;
    if (!api_list_reply_ok(r)) {
        http_respond_error(c->ex, 500, "unexpected reply from list_tasks.lua");
        c->ex = NULL;
        goto done;
    }
    struct buf b;
    struct json j;
    int64_t now = clock_wall_ms();
    buf_init(&b);
    json_init(&j, &b);
    api_collection_open(&j, "Task", r->element[0]->integer, c->take);
    for (size_t i = 2; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        struct shoal_task t;
        shoal_task_from_reply(e, 1, strtoll(e->element[0]->str, NULL, 10), &t);
        api_task_json(&j, &t, now);
        shoal_task_free(&t);
    }
    api_collection_close(&j, "/api/tasks", "{?skip,take,node,states}", c->skip, c->take,
                         r->element[0]->integer);
    api_respond_json(c->ex, 200, &b);
    c->ex = NULL;
    buf_free(&b);
done:
    task_call_done(c);
}

/* GET /api/tasks[?node&states&skip&take]: node is a name or OctopusServerNodes-<name>, states
 * a comma list (Executing,Cancelling). Other parameters (spaces, includeSystem) are ignored. */
static void list_ids(struct http_exchange *ex, const struct node_services *svc, const char *ids,
                     const char *want_states, int64_t skip, int64_t take, bool scoped);
static void list_tasks_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    unsigned scoped;
    if (!svc || !api_space_scope(ex, &scoped)) return;
    struct task_call *c = task_call_new(ex, svc);
    char node_q[128] = "", node[65] = "", st[256] = "", bad[64], ids[API_TAKE_MAX * 24];
    if (api_query_int(ex, "skip", 0, 0, INT32_MAX, &c->skip) != 0 ||
        api_query_int(ex, "take", API_TAKE_DEFAULT, 0, API_TAKE_MAX, &c->take) != 0) {
        free(c);
        return;
    }
    char msg[200];
    const char *why = NULL;
    if (api_query_get(http_query(ex), "node", node_q, sizeof node_q) && node_q[0] &&
        !api_node_name(node_q, node, sizeof node)) {
        snprintf(msg, sizeof msg, "node: '%.80s' is not a node name or id", node_q);
        why = msg;
    } else if (api_query_get(http_query(ex), "states", st, sizeof st) &&
               bad_state(st, bad, sizeof bad)) {
        snprintf(msg, sizeof msg,
                 "states: '%.40s' is not a state (Queued, Executing, Cancelling, "
                 "Success, Failed, Canceled, TimedOut)",
                 bad);
        why = msg;
    }
    if (why) {
        http_respond_error(ex, 400, why);
        free(c);
        return;
    }
    if (api_query_get(http_query(ex), "ids", ids, sizeof ids) && ids[0]) {
        list_ids(ex, svc, ids, st, c->skip, c->take, scoped);
        free(c);
        return;
    }
    struct call_list_tasks_args a = {node, st, c->skip, c->take, API_SCAN_LIMIT};
    struct script_call call;
    call_list_tasks(&call, svc->keys, &a);
    int rc = api_call(ex, svc, &call, list_cb, c);
    call_free(&call);
    if (rc != 0) {
        free(c);
        return;
    }
    c->pending++;
}

/* --- details: Octopus's ServerTaskDetails ------------------------------------------------ */

/* Octopus's activity status for a task state. */
static const char *activity_status(const char *state) {
    if (!strcmp(state, "Queued")) return "Pending";
    if (!strcmp(state, "Executing") || !strcmp(state, "Cancelling")) return "Running";
    if (!strcmp(state, "Success")) return "Success";
    if (!strcmp(state, "Canceled")) return "Canceled";
    return "Failed"; /* Failed, TimedOut */
}

/* /details' first reply: the task hash, kept until the log arrives. */
static void details_task_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    if (!failed(c, r, NULL)) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
            c->missing = true;
        } else {
            shoal_task_from_reply(r, 0, c->id, &c->task);
            c->have_task = true;
        }
    }
    task_call_done(c);
}

/* Writes one ActivityLogs element: the task as one activity, its log lines as LogElements
 * (the log is bounded by --task-log-cap, so the lines are too). */
static void activity_json(struct json *j, const struct shoal_task *t, const char *log, size_t len,
                          int64_t now) {
    bool final = shoal_state_final(t->state);
    int64_t at = t->started_ms > 0 ? t->started_ms : t->queued_ms;
    char id[48];
    snprintf(id, sizeof id, API_TASK_PREFIX "%lld", (long long)t->id);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Name");
    json_str(j, t->type);
    json_key(j, "Started");
    json_time(j, t->started_ms);
    json_key(j, "Ended");
    json_time(j, final ? t->completed_ms : 0);
    json_key(j, "Category");
    json_str(j, "Info");
    json_key(j, "Status");
    json_str(j, activity_status(t->state));
    json_key(j, "ShowAtSummaryLevel");
    json_bool(j, true);
    json_key(j, "ProgressPercentage");
    json_int(j, final ? 100 : 0);
    json_key(j, "ProgressMessage");
    json_str(j, t->error && t->error[0] ? t->error : "");
    json_key(j, "Children");
    json_arr_open(j);
    json_arr_close(j);
    json_key(j, "LogElements");
    json_arr_open(j);
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(log + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (log + i)) : len - i;
        json_obj_open(j);
        json_key(j, "Category");
        json_str(j, "Info");
        json_key(j, "MessageText");
        json_strn(j, log + i, n);
        json_key(j, "OccurredAt");
        json_time(j, at);
        json_obj_close(j);
        i += n + 1;
    }
    if (t->error && t->error[0]) {
        json_obj_open(j);
        json_key(j, "Category");
        json_str(j, "Error");
        json_key(j, "MessageText");
        json_str(j, t->error);
        json_key(j, "OccurredAt");
        json_time(j, final ? t->completed_ms : now);
        json_obj_close(j);
    }
    json_arr_close(j);
    json_obj_close(j);
}

/* /details' second reply: the log; answers. */
static void details_log_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    if (failed(c, r, NULL)) goto done;
    if (c->missing || !c->have_task) {
        not_found(c);
        goto done;
    }
    bool has = r->type == REDIS_REPLY_STRING;
    const char *log = has ? r->str : "";
    size_t len = has ? r->len : 0;
    int64_t now = clock_wall_ms();
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    json_obj_open(&j);
    json_key(&j, "Task");
    api_task_json(&j, &c->task, now);
    json_key(&j, "ActivityLogs");
    json_arr_open(&j);
    activity_json(&j, &c->task, log, len, now);
    json_arr_close(&j);
    json_key(&j, "PhysicalLogSize");
    json_int(&j, (int64_t)len);
    json_key(&j, "Progress");
    json_obj_open(&j);
    json_key(&j, "ProgressPercentage");
    json_int(&j, shoal_state_final(c->task.state) ? 100 : 0);
    json_key(&j, "EstimatedTimeRemaining");
    json_str(&j, "");
    json_obj_close(&j);
    json_obj_close(&j);
    api_respond_json(c->ex, 200, &b);
    c->ex = NULL;
    buf_free(&b);
done:
    task_call_done(c);
}

/* GET /api/tasks/{id}/details: Octopus's ServerTaskDetails (Task, ActivityLogs, Progress). */
static void details_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_TASK_VIEW);
    struct task_call *c = svc ? id_call(ex, svc) : NULL;
    if (!c) return;
    char task_k[160], log_k[160];
    const char *hget[] = {"HGETALL", keys_task(svc->keys, c->id, task_k, sizeof task_k)};
    const char *get[] = {"GET", keys_log(svc->keys, c->id, log_k, sizeof log_k)};
    if (api_send(ex, svc, details_task_cb, c, 2, hget, NULL) != 0) {
        free(c);
        return;
    }
    c->pending++;
    if (rconn_command(svc->redis, details_log_cb, c, 2, get, NULL) == 0) c->pending++;
}

/* --- ids=: the tasks named, in the order given ------------------------------------------- */

struct ids_call {
    struct http_exchange *ex; /* answered by the last reply */
    int pending;
    size_t n;                /* ids asked for */
    int64_t skip, take;      /* the page */
    char states[256];        /* states= filter, or "" */
    char path[64];           /* the collection's path, for Links */
    struct shoal_task *task; /* [n] */
    bool *found;             /* [n] */
};

static bool state_in(const char *list, const char *state) {
    if (!list[0]) return true;
    size_t n = strlen(state);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, state, n) && (p[n] == ',' || p[n] == '\0')) return true;
    return false;
}

struct ids_slot {
    struct ids_call *q;
    size_t i;
};

static void ids_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct ids_slot *slot = priv;
    struct ids_call *q = slot->q;
    size_t i = slot->i;
    free(slot);
    if (q->ex && api_reply_failed(q->ex, r, NULL)) q->ex = NULL;
    if (q->ex && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        shoal_task_from_reply(r, 0, q->task[i].id, &q->task[i]);
        q->found[i] = state_in(q->states, q->task[i].state);
        if (!q->found[i]) shoal_task_free(&q->task[i]);
    }
    if (--q->pending > 0) return;
    if (q->ex) {
        int64_t total = 0, at = 0, now = clock_wall_ms();
        for (size_t k = 0; k < q->n; k++) total += q->found[k];
        struct buf b;
        struct json j;
        buf_init(&b);
        json_init(&j, &b);
        api_collection_open(&j, "Task", total, q->take);
        for (size_t k = 0; k < q->n; k++) {
            if (!q->found[k]) continue;
            if (at >= q->skip && at < q->skip + q->take) api_task_json(&j, &q->task[k], now);
            at++;
        }
        api_collection_close(&j, q->path, "{?skip,take,node,states,ids}", q->skip, q->take, total);
        api_respond_json(q->ex, 200, &b);
        buf_free(&b);
    }
    for (size_t k = 0; k < q->n; k++)
        if (q->found[k]) shoal_task_free(&q->task[k]);
    free(q->task);
    free(q->found);
    free(q);
}

/* Lists the tasks of ids (a comma list of at most API_TAKE_MAX ids; unknown ones are left
 * out, as Octopus does): one pipelined HGETALL each. */
static void list_ids(struct http_exchange *ex, const struct node_services *svc, const char *ids,
                     const char *want_states, int64_t skip, int64_t take, bool scoped) {
    struct ids_call *q = xcalloc(1, sizeof *q);
    q->ex = ex;
    q->skip = skip;
    q->take = take;
    snprintf(q->states, sizeof q->states, "%s", want_states);
    snprintf(q->path, sizeof q->path, "%s",
             scoped ? "/api/" API_DEFAULT_SPACE "/tasks" : "/api/tasks");
    size_t cap = 1;
    for (const char *p = ids; *p; p++) cap += *p == ',';
    if (cap > API_TAKE_MAX) {
        http_respond_error(ex, 400, "ids: at most 1000 task ids");
        free(q);
        return;
    }
    q->task = xcalloc(cap, sizeof *q->task);
    q->found = xcalloc(cap, sizeof *q->found);
    char *copy = xstrdup(ids), *save = NULL;
    for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        while (*s == ' ') s++;
        int64_t id;
        if (shoal_task_parse_id(s, &id) != 0) continue;
        q->task[q->n++].id = id;
    }
    free(copy);
    q->pending = 1; /* held until every command is sent */
    for (size_t i = 0; i < q->n; i++) {
        char key[160];
        const char *argv[] = {"HGETALL", keys_task(svc->keys, q->task[i].id, key, sizeof key)};
        struct ids_slot *slot = xcalloc(1, sizeof *slot);
        slot->q = q;
        slot->i = i;
        if (rconn_command(svc->redis, ids_reply_cb, slot, 2, argv, NULL) != 0) {
            free(slot);
            if (q->ex)
                http_respond_error(q->ex, 503, "Redis is unreachable from this node; try again");
            q->ex = NULL;
            break;
        }
        q->pending++;
    }
    /* the hold: a reply with nothing in it ends it as a reply would */
    struct ids_slot *hold = xcalloc(1, sizeof *hold);
    hold->q = q;
    hold->i = q->n;
    redisReply empty = {.type = REDIS_REPLY_NIL};
    ids_reply_cb(NULL, &empty, hold);
}

/* --- enqueue ------------------------------------------------------------------------------- */

/* One numeric field of the body: a whole number, a duration ("30s" or ms) or a time (ISO-8601
 * UTC or epoch ms). */
enum field_kind { F_INT, F_DUR, F_TIME };
struct num_field {
    const char *name;
    enum field_kind kind;
    size_t off; /* into struct shoal_task_opts */
    int64_t min, max;
    const char *expect; /* for the 400 message */
};

#define OPT(f) offsetof(struct shoal_task_opts, f)
static const struct num_field num_fields[] = {
    {"Priority", F_INT, OPT(priority), -1000, 1000, "a whole number from -1000 to 1000"},
    {"QueueTime", F_TIME, OPT(at_ms), 0, INT64_MAX,
     "a time like 2026-11-28T10:00:00Z, or epoch milliseconds"},
    {"Expiry", F_DUR, OPT(expiry_ms), 1, 1000000000000LL,
     "a positive duration like 30m or 1d (or milliseconds)"},
    {"Timeout", F_DUR, OPT(timeout_ms), 0, 1000000000000LL,
     "a duration like 30s or 10m (or milliseconds; 0 = none)"},
    {"Attempts", F_INT, OPT(attempts), 1, 1000, "a whole number from 1 to 1000"},
    {"NodeLossBudget", F_INT, OPT(lost_budget), 0, 1000, "a whole number from 0 to 1000"},
};

static int read_num(json_t *v, const struct num_field *f, int64_t *out) {
    if (json_is_integer(v))
        *out = json_integer_value(v);
    else if (!json_is_string(v) || f->kind == F_INT)
        return -1;
    else if (f->kind == F_DUR && parse_duration_ms(json_string_value(v), out) != 0)
        return -1;
    else if (f->kind == F_TIME && parse_iso8601_ms(json_string_value(v), out) != 0)
        return -1;
    return *out >= f->min && *out <= f->max ? 0 : -1;
}

/* Collects a JSON array of strings into a NULL-terminated vector (borrowed strings). */
static const char **strings_of(json_t *arr, int *n) {
    size_t len = json_array_size(arr);
    const char **v = xcalloc(len + 1, sizeof *v);
    for (size_t i = 0; i < len; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_is_string(s)) {
            free(v);
            return NULL;
        }
        v[i] = json_string_value(s);
    }
    *n = (int)len;
    return v;
}

/* Encodes Arguments into args: exec takes {"argv": [..], "env": {K: V} or ["K=V"], "cwd": ".."}
 * (or just the argv array); other types an array of strings or one string. */
static const char *encode_args(const char *type, json_t *a, struct buf *args) {
    bool exec = strcmp(type, "exec") == 0;
    int n = 0;
    if (!exec) {
        if (!a || json_is_null(a)) return NULL;
        if (json_is_string(a)) {
            const char *one = json_string_value(a);
            task_args_strings_encode(args, &one, 1);
            return NULL;
        }
        const char **v = json_is_array(a) ? strings_of(a, &n) : NULL;
        if (!v) return "Arguments: expected an array of strings (or one string)";
        task_args_strings_encode(args, v, n);
        free(v);
        return NULL;
    }
    json_t *argv = json_is_array(a) ? a : json_object_get(a, "argv");
    if (!a || !argv)
        return "Arguments.argv: required for an exec task, e.g. "
               "{\"argv\": [\"/usr/bin/echo\", \"hello\"]}";
    const char **v = json_is_array(argv) ? strings_of(argv, &n) : NULL;
    if (!v || n == 0) {
        free(v);
        return "Arguments.argv: expected a non-empty array of strings";
    }
    json_t *env = json_is_object(a) ? json_object_get(a, "env") : NULL;
    json_t *cwd = json_is_object(a) ? json_object_get(a, "cwd") : NULL;
    const char *why = NULL;
    char **envv = NULL;
    int envc = 0;
    if (env && json_is_object(env)) {
        envv = xcalloc(json_object_size(env) + 1, sizeof *envv);
        const char *k;
        json_t *val;
        json_object_foreach(env, k, val) {
            if (!json_is_string(val)) {
                why = "Arguments.env: values must be strings";
                break;
            }
            size_t l = strlen(k) + json_string_length(val) + 2;
            envv[envc] = xmalloc(l);
            snprintf(envv[envc++], l, "%s=%s", k, json_string_value(val));
        }
    } else if (env && json_is_array(env)) {
        envv = xcalloc(json_array_size(env) + 1, sizeof *envv);
        for (size_t i = 0; i < json_array_size(env) && !why; i++) {
            json_t *e = json_array_get(env, i);
            if (!json_is_string(e) || !strchr(json_string_value(e), '='))
                why = "Arguments.env: expected {\"K\": \"V\"} or [\"K=V\", ...]";
            else
                envv[envc++] = xstrdup(json_string_value(e));
        }
    } else if (env && !json_is_null(env)) {
        why = "Arguments.env: expected {\"K\": \"V\"} or [\"K=V\", ...]";
    }
    if (!why && cwd && !json_is_null(cwd) && !json_is_string(cwd))
        why = "Arguments.cwd: expected a string";
    if (!why)
        task_args_exec_encode(args, v, n, (const char *const *)envv, envc,
                              json_is_string(cwd) ? json_string_value(cwd) : NULL);
    for (int i = 0; i < envc; i++) free(envv[i]);
    free(envv);
    free(v);
    return why;
}

/* Fills o and args from the body; returns NULL or the 400 message (static or in msg). */
static const char *read_task(json_t *root, struct shoal_task_opts *o, struct buf *args, char *msg,
                             size_t len) {
    if (!json_is_object(root)) return "body: expected a JSON object, e.g. {\"Type\": \"noop\"}";
    json_t *v;
    /* Octopus names a task's kind "Name"; shoal's field is "Type". */
    static const struct {
        const char *field;
        size_t off;
    } names[] = {{"Type", OPT(type)}, {"Name", OPT(type)}, {"Queue", OPT(queue)}};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (!(v = json_object_get(root, names[i].field)) || json_is_null(v)) continue;
        if (!json_is_string(v)) {
            snprintf(msg, len, "%s: expected a string", names[i].field);
            return msg;
        }
        *(const char **)((char *)o + names[i].off) = json_string_value(v);
    }
    for (size_t i = 0; i < ARRAY_SIZE(num_fields); i++) {
        const struct num_field *f = &num_fields[i];
        if (!(v = json_object_get(root, f->name)) || json_is_null(v)) continue;
        if (read_num(v, f, (int64_t *)((char *)o + f->off)) != 0) {
            snprintf(msg, len, "%s: expected %s", f->name, f->expect);
            return msg;
        }
    }
    if ((v = json_object_get(root, "Delay")) && !json_is_null(v)) {
        int64_t d;
        static const struct num_field delay = {"Delay", F_DUR, 0, 0, 1000000000000LL, ""};
        if (json_object_get(root, "QueueTime")) return "Delay: excludes QueueTime (give one)";
        if (read_num(v, &delay, &d) != 0)
            return "Delay: expected a duration like 30s or 10m (or milliseconds)";
        o->at_ms = clock_wall_ms() + d;
    }
    const char *why = encode_args(o->type, json_object_get(root, "Arguments"), args);
    if (why) return why;
    o->args = args->data;
    o->args_len = args->len;
    if (shoal_task_opts_check(o, msg, len) != 0) return msg;
    return NULL;
}

/* enqueue.lua's reply: the new id; its hash follows and answers 201. */
static void enqueue_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct task_call *c = priv;
    static const struct api_error_code codes[] = {{"BADTASK", 400}, {"BADARGS", 400}, {NULL, 0}};
    if (failed(c, r, codes)) goto done;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        http_respond_error(c->ex, 500, "unexpected reply from enqueue.lua");
        c->ex = NULL;
        goto done;
    }
    c->id = r->element[0]->integer;
    c->status = 201;
    char loc[96], msg[300];
    snprintf(loc, sizeof loc, API_TASK_PREFIX "%lld", (long long)c->id);
    snprintf(msg, sizeof msg, "Task %s enqueued: %s", loc, c->what);
    api_audit(c->svc, &c->who, "Created", msg, loc, NULL, NULL);
    snprintf(loc, sizeof loc, "/api/tasks/" API_TASK_PREFIX "%lld", (long long)c->id);
    http_add_header(c->ex, "Location", loc);
    if (send_get(c) != 0) {
        snprintf(loc, sizeof loc, "enqueued " API_TASK_PREFIX "%lld, then the Redis link dropped",
                 (long long)c->id);
        http_respond_error(c->ex, 503, loc);
        c->ex = NULL;
    }
done:
    task_call_done(c);
}

/* POST /api/tasks: enqueues one task; 201 with the task (and Location). */
static void enqueue_http_cb(struct http_exchange *ex) {
    struct access_actor who;
    const struct node_services *svc = api_begin_who(ex, PERM_TASK_CREATE, &who);
    if (!svc) return;
    const struct buf *body = http_body(ex);
    json_error_t e;
    char msg[300];
    const char *why = NULL;
    struct shoal_task_opts o;
    struct buf args;
    shoal_task_opts_init(&o);
    buf_init(&args);
    json_t *root = json_loadb(body->data ? body->data : "", body->len, JSON_DECODE_ANY, &e);
    if (!root) {
        snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)", e.text, e.line,
                 e.column);
        why = msg;
    } else {
        why = read_task(root, &o, &args, msg, sizeof msg);
    }
    if (why) {
        http_respond_error(ex, 400, why);
        goto out;
    }
    struct script_call call;
    call_enqueue(&call, svc->keys, clock_wall_ms(), 1);
    call_enqueue_add(&call, &o);
    struct task_call *c = task_call_new(ex, svc);
    c->who = who;
    snprintf(c->what, sizeof c->what, "%.60s on queue %.60s", o.type ? o.type : "exec",
             o.queue ? o.queue : "default");
    if (api_call(ex, svc, &call, enqueue_cb, c) != 0)
        free(c);
    else
        c->pending++;
    call_free(&call);
out:
    json_decref(root);
    buf_free(&args);
}

const struct http_route api_task_routes[] = {
    {HTTP_GET, "/api/tasks", list_tasks_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_POST, "/api/tasks", enqueue_http_cb, HTTP_BODY_BUFFER, api_admit_task_create},
    {HTTP_GET, "/api/tasks/{id}", get_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/tasks/{id}/raw", raw_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_POST, "/api/tasks/{id}/cancel", cancel_cb, HTTP_BODY_NONE, api_admit_task_cancel},
    {HTTP_GET, "/api/tasks/{id}/details", details_cb, HTTP_BODY_NONE, api_admit_task_view},
    /* the same in Octopus's space-scoped form (the namespace is Spaces-1) */
    {HTTP_GET, "/api/{space}/tasks", list_tasks_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/{space}/tasks/{id}", get_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/{space}/tasks/{id}/raw", raw_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_GET, "/api/{space}/tasks/{id}/details", details_cb, HTTP_BODY_NONE, api_admit_task_view},
    {HTTP_POST, "/api/{space}/tasks/{id}/cancel", cancel_cb, HTTP_BODY_NONE, api_admit_task_cancel},
};
const size_t api_task_nroutes = ARRAY_SIZE(api_task_routes);
