/* reply.c: bounds- and type-checked reads of hiredis replies (see reply.h). */
#include "common/reply.h"

#include <stdlib.h>
#include <string.h>

int64_t reply_num(const redisReply *r) {
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
    return 0;
}

const char *reply_str(const redisReply *r, size_t i, size_t *len) {
    if (len) *len = 0;
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) return "";
    const redisReply *e = r->element[i];
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS) return "";
    if (len) *len = e->len;
    return e->str;
}

int64_t reply_int(const redisReply *r, size_t i) {
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) return 0;
    return reply_num(r->element[i]);
}

const char *reply_field(const redisReply *r, size_t from, const char *name) {
    for (size_t i = from; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            strcmp(k->str, name) == 0)
            return v->str;
    }
    return NULL;
}
