/* client.c: enqueue, read and cancel tasks over a blocking connection (see client.h). */
#include "common/client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/task_codec.h"
#include "common/task_env.h"
#include "common/util.h"

#define BATCH 500 /* tasks per enqueue.lua call: about 3 ms of Redis (the bound of one call) */

void shoal_task_opts_init(struct shoal_task_opts *o) {
    memset(o, 0, sizeof *o);
    o->queue = "default";
    o->type = "exec";
    o->expiry_ms = SHOAL_DEFAULT_EXPIRY_MS;
    o->attempts = 1;
    o->lost_budget = 1;
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

int shoal_task_opts_check(const struct shoal_task_opts *o, char *err, size_t errlen) {
    const char *why = NULL;
    if (!o->queue || !name_ok(o->queue))
        why = "queue: 1 to 64 of A-Z a-z 0-9 . _ -";
    else if (!o->type || !name_ok(o->type))
        why = "type: 1 to 64 of A-Z a-z 0-9 . _ -";
    else if (o->priority < -1000 || o->priority > 1000)
        why = "priority: from -1000 to 1000";
    else if (o->at_ms < 0)
        why = "queue time: must not be negative";
    else if (o->expiry_ms <= 0)
        why = "expiry: must be positive";
    else if (o->timeout_ms < 0)
        why = "timeout: must not be negative";
    else if (o->attempts < 1 || o->attempts > 1000)
        why = "attempts: from 1 to 1000";
    else if (o->lost_budget < 0 || o->lost_budget > 1000)
        why = "node-loss budget: from 0 to 1000";
    else if (o->args_len > TASK_ARGS_MAX)
        why = "arguments: larger than 1 MiB";
    if (!why && strcmp(o->type, "exec") == 0 && o->args_len > 0) {
        /* A task env a node would refuse never enters the queue. A payload that does not
         * decode is left to the node, which reports it on the task. */
        struct exec_args a;
        char msg[256];
        int rc = 0;
        if (task_args_exec_decode(o->args, o->args_len, &a, msg, sizeof msg) == 0)
            rc = task_env_check((const char *const *)a.env, a.envc, NULL, err, errlen);
        exec_args_free(&a);
        if (rc < 0) return -EINVAL;
    }
    if (!why) return 0;
    snprintf(err, errlen, "%s", why);
    return -EINVAL;
}

int shoal_client_open(struct shoal_client *c, const char *url, const char *ns, char *err,
                      size_t errlen) {
    memset(c, 0, sizeof *c);
    snprintf(c->ns, sizeof c->ns, "%s", ns);
    keys_init(&c->keys, ns);
    return rsync_open_ns(&c->redis, url, ns, 5000, err, errlen);
}

void shoal_client_close(struct shoal_client *c) { rsync_close(&c->redis); }

/* One atomic enqueue.lua call for n <= BATCH tasks. */
static int enqueue_batch(struct shoal_client *c, const struct shoal_task_opts *t, size_t n,
                         int64_t *ids, char *err, size_t errlen) {
    struct script_call call;
    call_enqueue(&call, &c->keys, clock_wall_ms(), n);
    for (size_t i = 0; i < n; i++) call_enqueue_add(&call, &t[i]);
    int rc = 0;
    redisReply *r = rsync_call(&c->redis, &call, err, errlen);
    if (!r) {
        rc = SHOAL_EREDIS;
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        const char *sp = strchr(r->str, ' ');
        snprintf(err, errlen, "refused: %s", sp ? sp + 1 : r->str);
        rc = SHOAL_EREPLY;
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        snprintf(err, errlen, "unexpected reply to enqueue");
        rc = SHOAL_EREPLY;
    } else {
        for (size_t i = 0; i < n; i++) ids[i] = r->element[i]->integer;
    }
out:
    if (r) freeReplyObject(r);
    call_free(&call);
    return rc;
}

int shoal_enqueue(struct shoal_client *c, const struct shoal_task_opts *tasks, size_t n,
                  int64_t *ids, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        char why[200];
        if (shoal_task_opts_check(&tasks[i], why, sizeof why) != 0) {
            snprintf(err, errlen, "task %zu: %s", i + 1, why);
            return -EINVAL;
        }
    }
    for (size_t off = 0; off < n; off += BATCH) {
        size_t m = n - off < BATCH ? n - off : BATCH;
        int rc = enqueue_batch(c, tasks + off, m, ids + off, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

int shoal_task_parse_id(const char *s, int64_t *id) {
    if (strncmp(s, "ServerTasks-", 12) == 0) s += 12;
    return parse_int64(s, 1, INT64_MAX, id) == 0 ? 0 : -EINVAL;
}

bool shoal_state_final(const char *s) {
    return strcmp(s, "Success") == 0 || strcmp(s, "Failed") == 0 || strcmp(s, "Canceled") == 0 ||
           strcmp(s, "TimedOut") == 0;
}

void shoal_task_from_reply(const redisReply *r, size_t from, int64_t id, struct shoal_task *t) {
    static const struct {
        const char *name;
        size_t off;
    } nums[] = {
        {"prio", offsetof(struct shoal_task, priority)},
        {"queued", offsetof(struct shoal_task, queued_ms)},
        {"expiry", offsetof(struct shoal_task, expiry_ms)},
        {"started", offsetof(struct shoal_task, started_ms)},
        {"completed", offsetof(struct shoal_task, completed_ms)},
        {"timeout", offsetof(struct shoal_task, timeout_ms)},
        {"attempt", offsetof(struct shoal_task, attempt)},
        {"attempts", offsetof(struct shoal_task, attempts)},
    };
    static const struct {
        const char *name;
        size_t off, len;
    } strs[] = {
        {"state", offsetof(struct shoal_task, state), sizeof(((struct shoal_task *)0)->state)},
        {"queue", offsetof(struct shoal_task, queue), sizeof(((struct shoal_task *)0)->queue)},
        {"type", offsetof(struct shoal_task, type), sizeof(((struct shoal_task *)0)->type)},
        {"node", offsetof(struct shoal_task, node), sizeof(((struct shoal_task *)0)->node)},
    };
    memset(t, 0, sizeof *t);
    t->id = id;
    t->attempts = 1;
    for (size_t i = from; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (strcmp(k->str, "error") == 0) {
            free(t->error);
            t->error = xstrndup(v->str, v->len);
        } else if (strcmp(k->str, "args") == 0) {
            free(t->args);
            t->args = xstrndup(v->str, v->len);
            t->args_len = v->len;
        } else if (strcmp(k->str, "exit") == 0) {
            t->exit_code = strtoll(v->str, NULL, 10);
            t->has_exit = true;
        }
        for (size_t s = 0; s < ARRAY_SIZE(strs); s++)
            if (strcmp(k->str, strs[s].name) == 0)
                snprintf((char *)t + strs[s].off, strs[s].len, "%.*s", (int)v->len, v->str);
        for (size_t s = 0; s < ARRAY_SIZE(nums); s++)
            if (strcmp(k->str, nums[s].name) == 0)
                *(int64_t *)((char *)t + nums[s].off) = strtoll(v->str, NULL, 10);
    }
    /* enqueue.lua writes no expiry for the default day (lua/claim.lua reads it so too). */
    if (t->expiry_ms == 0 && t->queued_ms > 0)
        t->expiry_ms = t->queued_ms + SHOAL_DEFAULT_EXPIRY_MS;
}

int shoal_task_get(struct shoal_client *c, int64_t id, struct shoal_task *t, char *err,
                   size_t errlen) {
    char key[160];
    memset(t, 0, sizeof *t);
    t->id = id;
    redisReply *r =
        rsync_cmd(&c->redis, err, errlen, "HGETALL %s", keys_task(&c->keys, id, key, sizeof key));
    if (!r) return SHOAL_EREDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        snprintf(err, errlen, "no task ServerTasks-%lld (unknown, or past its retention)",
                 (long long)id);
        return SHOAL_ENOTASK;
    }
    shoal_task_from_reply(r, 0, id, t);
    freeReplyObject(r);
    return 0;
}

void shoal_task_free(struct shoal_task *t) {
    free(t->error);
    free(t->args);
    t->error = t->args = NULL;
}

char *shoal_task_log(struct shoal_client *c, int64_t id, size_t *len, char *err, size_t errlen) {
    char key[160];
    redisReply *r =
        rsync_cmd(&c->redis, err, errlen, "GET %s", keys_log(&c->keys, id, key, sizeof key));
    if (!r) return NULL;
    char *out = NULL;
    if (r->type == REDIS_REPLY_STRING) {
        out = xstrndup(r->str, r->len);
        *len = r->len;
    }
    freeReplyObject(r);
    return out;
}

int shoal_task_cancel(struct shoal_client *c, int64_t id, char *result, size_t rlen, char *err,
                      size_t errlen) {
    struct script_call call;
    call_cancel(&call, &c->keys, id, clock_wall_ms());
    redisReply *r = rsync_call(&c->redis, &call, err, errlen);
    call_free(&call);
    if (!r) return SHOAL_EREDIS;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        bool missing = strncmp(r->str, "NOTASK", 6) == 0;
        snprintf(err, errlen, "%s", missing ? r->str + 7 : r->str);
        rc = missing ? SHOAL_ENOTASK : SHOAL_EREPLY;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
        if (strcmp(r->element[0]->str, "final") == 0 && r->elements >= 2)
            snprintf(result, rlen, "final:%s", r->element[1]->str);
        else
            snprintf(result, rlen, "%s", r->element[0]->str);
    } else {
        snprintf(err, errlen, "unexpected reply to cancel");
        rc = SHOAL_EREPLY;
    }
    freeReplyObject(r);
    return rc;
}
