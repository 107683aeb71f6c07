/* node_info.c: parsing list_nodes.lua's reply and deriving a node's status. */
#include "common/node_info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/reply.h"
#include "common/util.h"

static void copy(char *dst, size_t len, const redisReply *r) {
    snprintf(dst, len, "%.*s", r->type == REDIS_REPLY_STRING ? (int)r->len : 0,
             r->type == REDIS_REPLY_STRING ? r->str : "");
}

static const struct {
    const char *field;
    size_t off, len;
} strs[] = {
    {"instance", offsetof(struct node_info, instance), sizeof(((struct node_info *)0)->instance)},
    {"version", offsetof(struct node_info, version), sizeof(((struct node_info *)0)->version)},
    {"host", offsetof(struct node_info, host), sizeof(((struct node_info *)0)->host)},
    {"listen", offsetof(struct node_info, listen), sizeof(((struct node_info *)0)->listen)},
    {"queues", offsetof(struct node_info, queues), sizeof(((struct node_info *)0)->queues)},
    {"cap_by", offsetof(struct node_info, cap_by), sizeof(((struct node_info *)0)->cap_by)},
};
static const struct {
    const char *field;
    size_t off;
} nums[] = {
    {"cap", offsetof(struct node_info, cap)},
    {"last_seen", offsetof(struct node_info, last_seen_ms)},
    {"started", offsetof(struct node_info, started_ms)},
    {"offline_at", offsetof(struct node_info, offline_at_ms)},
    {"pid", offsetof(struct node_info, pid)},
};

int node_info_parse_list(const redisReply *reply, struct node_info **out) {
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) return -1;
    struct node_info *v = xcalloc(reply->elements ? reply->elements : 1, sizeof *v);
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        struct node_info *n = &v[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_STRING) {
            free(v);
            return -1;
        }
        copy(n->name, sizeof n->name, e->element[0]);
        n->ttl_ms = reply_num(e->element[1]);
        n->alive = n->ttl_ms > 0 || n->ttl_ms == -1;
        n->running = reply_num(e->element[2]);
        for (size_t f = 3; f + 1 < e->elements; f += 2) {
            const redisReply *k = e->element[f], *val = e->element[f + 1];
            if (k->type != REDIS_REPLY_STRING) continue;
            if (strcmp(k->str, "drain") == 0) {
                n->drain = reply_num(val) != 0;
                continue;
            }
            for (size_t s = 0; s < ARRAY_SIZE(strs); s++)
                if (strcmp(k->str, strs[s].field) == 0)
                    copy((char *)n + strs[s].off, strs[s].len, val);
            for (size_t s = 0; s < ARRAY_SIZE(nums); s++)
                if (strcmp(k->str, nums[s].field) == 0)
                    *(int64_t *)((char *)n + nums[s].off) = reply_num(val);
        }
    }
    *out = v;
    return (int)reply->elements;
}

enum node_status node_info_status(const struct node_info *n) {
    if (!n->alive) return NODE_OFFLINE;
    if (!n->drain) return NODE_RUNNING;
    return n->running > 0 ? NODE_DRAINING_STATUS : NODE_DRAINED;
}

const char *node_status_name(enum node_status s) {
    static const char *const names[] = {"Running", "Draining", "Drained", "Offline"};
    return names[s];
}
