/* access.c: permission names, built-in roles, key generation and audit events (access.h). */
#include "common/access.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const perm_names[PERM_COUNT] = {
    [PERM_ADMINISTER_SYSTEM] = "AdministerSystem",
    [PERM_TASK_VIEW] = "TaskView",
    [PERM_TASK_CREATE] = "TaskCreate",
    [PERM_TASK_CANCEL] = "TaskCancel",
    [PERM_EVENT_VIEW] = "EventView",
    [PERM_FEED_VIEW] = "FeedView",
    [PERM_BUILTIN_FEED_PUSH] = "BuiltInFeedPush",
    [PERM_BUILTIN_FEED_DOWNLOAD] = "BuiltInFeedDownload",
    [PERM_BUILTIN_FEED_ADMINISTER] = "BuiltInFeedAdminister",
};

const char *access_perm_name(enum access_perm p) {
    return (unsigned)p < PERM_COUNT ? perm_names[p] : NULL;
}

const char *const access_roles[] = {"viewer", "buildserver", "operator", "administrator", NULL};

unsigned access_role_perms(const char *role) {
    if (!role) return 0;
    if (strcmp(role, "viewer") == 0)
        return PERM_BIT(PERM_TASK_VIEW) | PERM_BIT(PERM_EVENT_VIEW) | PERM_BIT(PERM_FEED_VIEW);
    if (strcmp(role, "buildserver") == 0)
        return PERM_BIT(PERM_BUILTIN_FEED_PUSH) | PERM_BIT(PERM_FEED_VIEW);
    if (strcmp(role, "operator") == 0)
        return ACCESS_ALL_PERMS & ~PERM_BIT(PERM_ADMINISTER_SYSTEM) &
               ~PERM_BIT(PERM_BUILTIN_FEED_ADMINISTER);
    if (strcmp(role, "administrator") == 0) return ACCESS_ALL_PERMS;
    return 0;
}

bool access_name_valid(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '@' || c == '-';
        if (!ok) return false;
    }
    return true;
}

void access_sha256_hex(const char *s, size_t n, char out[65]) {
    unsigned char d[32];
    unsigned int len = 0;
    if (EVP_Digest(s, n, d, &len, EVP_sha256(), NULL) != 1 || len != 32) abort();
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
    out[64] = '\0';
}

int access_key_new(char key[ACCESS_KEY_LEN + 1], char sha_hex[65], char id[32]) {
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char r[16], rid[8];
    if (RAND_bytes(r, sizeof r) != 1 || RAND_bytes(rid, sizeof rid) != 1) return -1;
    /* 128 bits in 26 base32 characters (5 bits each, the last holds the 3 left over). */
    memcpy(key, ACCESS_KEY_PREFIX, 4);
    unsigned acc = 0, bits = 0, o = 4;
    for (size_t i = 0; i < sizeof r; i++) {
        acc = (acc << 8) | r[i];
        bits += 8;
        while (bits >= 5) {
            key[o++] = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits) key[o++] = b32[(acc << (5 - bits)) & 31];
    key[o] = '\0';
    access_sha256_hex(key, o, sha_hex);
    int n = snprintf(id, 32, ACCESS_KEYID_PREFIX);
    for (size_t i = 0; i < sizeof rid; i++) n += snprintf(id + n, 32 - (size_t)n, "%02x", rid[i]);
    explicit_bzero(r, sizeof r);
    return 0;
}

void access_event_json(struct buf *out, const struct access_actor *a, const char *category,
                       const char *message, const char *related, const char *before,
                       const char *after, int64_t now_ms) {
    struct json j;
    char uid[96];
    snprintf(uid, sizeof uid, ACCESS_USER_PREFIX "%s", a->user);
    json_init(&j, out);
    json_obj_open(&j);
    json_key(&j, "Category");
    json_str(&j, category);
    json_key(&j, "Occurred");
    json_time(&j, now_ms);
    json_key(&j, "UserId");
    json_str(&j, uid);
    json_key(&j, "Username");
    json_str(&j, a->user);
    json_key(&j, "IsService");
    json_bool(&j, a->service);
    json_key(&j, "IdentityEstablishedWith");
    json_str(&j, a->via);
    json_key(&j, "ApiKeyId");
    if (a->key_id[0])
        json_str(&j, a->key_id);
    else
        json_null_value(&j);
    json_key(&j, "ApiKeyHint");
    if (a->hint[0])
        json_str(&j, a->hint);
    else
        json_null_value(&j);
    json_key(&j, "IpAddress");
    json_str(&j, a->ip);
    json_key(&j, "UserAgent");
    json_str(&j, a->agent);
    json_key(&j, "Message");
    json_str(&j, message);
    json_key(&j, "RelatedDocumentIds");
    json_arr_open(&j);
    if (related && *related) json_str(&j, related);
    json_arr_close(&j);
    json_key(&j, "ChangeDetails");
    json_obj_open(&j);
    json_key(&j, "DocumentContext");
    json_str(&j, related ? related : "");
    json_key(&j, "Differences");
    json_obj_open(&j);
    json_key(&j, "Before");
    json_str(&j, before);
    json_key(&j, "After");
    json_str(&j, after);
    json_obj_close(&j);
    json_obj_close(&j);
    json_obj_close(&j);
}

/* --- snapshot ------------------------------------------------------------------------------ */

static const char *el(const redisReply *a, size_t i) {
    const redisReply *e = a->element[i];
    return e->type == REDIS_REPLY_STRING ? e->str : "";
}
static int64_t el_int(const redisReply *a, size_t i) {
    const redisReply *e = a->element[i];
    if (e->type == REDIS_REPLY_INTEGER) return e->integer;
    return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}
static bool flat(const redisReply *r, size_t i, size_t width) {
    const redisReply *e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements % width) return false;
    for (size_t j = 0; j < e->elements; j++)
        if (e->element[j]->type != REDIS_REPLY_STRING) return false;
    return true;
}
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}
static int by_digest(const void *a, const void *b) {
    return memcmp(((const struct access_key *)a)->digest, ((const struct access_key *)b)->digest,
                  32);
}

int access_snapshot_parse(const struct redisReply *r, struct access_snapshot *s) {
    memset(s, 0, sizeof *s);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || !flat(r, 1, 5) || !flat(r, 2, 9) ||
        !flat(r, 3, 2))
        return -1;
    s->version = r->element[0]->integer;
    const redisReply *u = r->element[1], *k = r->element[2], *l = r->element[3];
    s->users = xcalloc(u->elements / 5 + 1, sizeof *s->users);
    for (size_t i = 0; i < u->elements; i += 5) {
        struct access_user *x = &s->users[s->nusers++];
        snprintf(x->name, sizeof x->name, "%s", el(u, i));
        snprintf(x->role, sizeof x->role, "%s", el(u, i + 1));
        snprintf(x->display, sizeof x->display, "%s", el(u, i + 2));
        x->service = strcmp(el(u, i + 3), "1") == 0;
        x->created_ms = el_int(u, i + 4);
        x->perms = access_role_perms(x->role);
    }
    s->keys = xcalloc(k->elements / 9 + 1, sizeof *s->keys);
    for (size_t i = 0; i < k->elements; i += 9) {
        struct access_key *x = &s->keys[s->nkeys];
        const char *hex = el(k, i + 2);
        bool ok = strlen(hex) == 64;
        for (int b = 0; ok && b < 32; b++) {
            int hi = hexval(hex[2 * b]), lo = hexval(hex[2 * b + 1]);
            ok = hi >= 0 && lo >= 0;
            if (ok) x->digest[b] = (unsigned char)(hi * 16 + lo);
        }
        if (!ok) continue; /* not a key this build can check: left out */
        snprintf(x->id, sizeof x->id, "%s", el(k, i));
        snprintf(x->user, sizeof x->user, "%s", el(k, i + 1));
        snprintf(x->purpose, sizeof x->purpose, "%s", el(k, i + 3));
        x->created_ms = el_int(k, i + 4);
        x->expires_ms = el_int(k, i + 5);
        x->read_only = strcmp(el(k, i + 6), "ReadOnly") == 0;
        snprintf(x->hint, sizeof x->hint, "%s", el(k, i + 7));
        x->last_used_ms = el_int(k, i + 8);
        const struct access_user *owner = access_snapshot_user(s, x->user);
        x->perms = owner ? owner->perms : 0;
        if (x->read_only) x->perms &= ACCESS_READ_PERMS;
        s->nkeys++;
    }
    qsort(s->keys, s->nkeys, sizeof *s->keys, by_digest);
    s->locks = xcalloc(l->elements / 2 + 1, sizeof *s->locks);
    for (size_t i = 0; i < l->elements; i += 2) {
        struct access_lock *x = &s->locks[s->nlocks++];
        snprintf(x->addr, sizeof x->addr, "%s", el(l, i));
        x->until_ms = el_int(l, i + 1);
    }
    return 0;
}

void access_snapshot_free(struct access_snapshot *s) {
    if (s->keys) explicit_bzero(s->keys, s->nkeys * sizeof *s->keys);
    free(s->users);
    free(s->keys);
    free(s->locks);
    memset(s, 0, sizeof *s);
}

const struct access_key *access_snapshot_find(const struct access_snapshot *s,
                                              const unsigned char digest[32]) {
    struct access_key probe;
    memcpy(probe.digest, digest, 32);
    if (!s->nkeys) return NULL;
    return bsearch(&probe, s->keys, s->nkeys, sizeof *s->keys, by_digest);
}

const struct access_user *access_snapshot_user(const struct access_snapshot *s, const char *name) {
    for (size_t i = 0; i < s->nusers; i++)
        if (strcmp(s->users[i].name, name) == 0) return &s->users[i];
    return NULL;
}
