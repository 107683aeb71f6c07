/* api_users.c: users, their API keys and permissions, and the audit trail over HTTP, in
 * Octopus's shapes (UserResource, ApiKeyResource, UserPermissionSetResource, EventResource).
 *
 * Reads run lua/access_load.lua (fresh from Redis: an operator's list agrees with the last
 * write, whatever node answers); writes run lua/access_write.lua, which raises the access
 * version and publishes it, so every node applies the change at once. Users and the user list
 * need AdministerSystem; a user may read and manage its own keys and permissions (as in
 * Octopus), an administrator anyone's. The plaintext of a key appears only in the answer to the
 * POST that made it. Events are read-only here: the API cannot change or delete them. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/rconn.h"
#include "common/util.h"

enum user_op { U_ME, U_LIST, U_KEYS, U_KEY, U_PERMS, U_ADD, U_KEY_ADD, U_KEY_DEL };

struct user_call {
    struct http_exchange *ex;
    const struct node_services *svc;
    struct access_actor who;
    enum user_op op;
    char user[72];   /* the {id} user's name */
    char key_id[32]; /* {keyId}, or the new key's */
    /* POST answers: what was written */
    char key[ACCESS_KEY_LEN + 1]; /* the new key's plaintext (wiped after the answer) */
    char purpose[128], role[16], display[128], hint[16];
    int64_t expires_ms, created_ms;
    bool read_only, service;
    int64_t skip, take;
};

static void user_call_free(struct user_call *c) {
    explicit_bzero(c->key, sizeof c->key);
    free(c);
}

/* "Users-alice" or "alice" -> "alice". False when it is no user name. */
static bool user_name(const char *id, char *out, size_t len) {
    size_t pl = strlen(ACCESS_USER_PREFIX);
    const char *n = strncmp(id, ACCESS_USER_PREFIX, pl) == 0 ? id + pl : id;
    if (!access_name_valid(n) || strlen(n) >= len) return false;
    snprintf(out, len, "%s", n);
    return true;
}

static bool admin(const struct access_actor *who) {
    return (who->perms & PERM_BIT(PERM_ADMINISTER_SYSTEM)) != 0;
}

/* --- JSON ---------------------------------------------------------------------------------- */

static void user_json(struct json *j, const char *name, const char *display, const char *role,
                      bool service) {
    char id[96], link[160];
    snprintf(id, sizeof id, ACCESS_USER_PREFIX "%s", name);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Username");
    json_str(j, name);
    json_key(j, "DisplayName");
    json_str(j, display && *display ? display : name);
    json_key(j, "IsActive");
    json_bool(j, true);
    json_key(j, "IsService");
    json_bool(j, service);
    json_key(j, "EmailAddress");
    json_null_value(j);
    json_key(j, "CanPasswordBeEdited");
    json_bool(j, false);
    json_key(j, "IsRequestor");
    json_bool(j, false);
    json_key(j, "Role");
    json_str(j, role);
    json_key(j, "Links");
    json_obj_open(j);
    snprintf(link, sizeof link, "/api/users/%s", id);
    json_key(j, "Self");
    json_str(j, link);
    snprintf(link, sizeof link, "/api/users/%s/permissions", id);
    json_key(j, "Permissions");
    json_str(j, link);
    snprintf(link, sizeof link, "/api/users/%s/apikeys{/id}{?skip,take}", id);
    json_key(j, "ApiKeys");
    json_str(j, link);
    json_obj_close(j);
    json_obj_close(j);
}

static void key_json(struct json *j, const char *id, const char *user, const char *purpose,
                     int64_t created, int64_t expires, bool read_only, const char *hint,
                     int64_t last_used, const char *plaintext) {
    char uid[96], self[200];
    snprintf(uid, sizeof uid, ACCESS_USER_PREFIX "%s", user);
    snprintf(self, sizeof self, "/api/users/%s/apikeys/%s", uid, id);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Purpose");
    json_str(j, purpose);
    json_key(j, "UserId");
    json_str(j, uid);
    json_key(j, "Created");
    json_time(j, created);
    json_key(j, "Expires");
    if (expires)
        json_time(j, expires);
    else
        json_null_value(j);
    json_key(j, "AccessLevel");
    json_str(j, read_only ? "ReadOnly" : "FullAccess");
    json_key(j, "ApiKey");
    if (plaintext) {
        json_str(j, plaintext); /* the POST's answer only */
    } else {
        json_obj_open(j);
        json_key(j, "HasValue");
        json_bool(j, true);
        json_key(j, "Hint");
        json_str(j, hint);
        json_obj_close(j);
    }
    json_key(j, "LastUsedTimeStamp");
    if (last_used)
        json_time(j, last_used);
    else
        json_null_value(j);
    json_key(j, "Links");
    json_obj_open(j);
    json_key(j, "Self");
    json_str(j, self);
    json_obj_close(j);
    json_obj_close(j);
}

static void perms_json(struct json *j, const char *user, unsigned perms) {
    char id[96];
    snprintf(id, sizeof id, ACCESS_USER_PREFIX "%s", user);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "SystemPermissions");
    json_arr_open(j);
    if (perms & PERM_BIT(PERM_ADMINISTER_SYSTEM)) json_str(j, "AdministerSystem");
    json_arr_close(j);
    json_key(j, "SpacePermissions");
    json_obj_open(j);
    for (int p = 0; p < PERM_COUNT; p++) {
        if (p == PERM_ADMINISTER_SYSTEM || !(perms & PERM_BIT(p))) continue;
        json_key(j, access_perm_name(p));
        json_arr_open(j);
        json_obj_open(j);
        json_key(j, "SpaceId");
        json_str(j, API_DEFAULT_SPACE);
        json_obj_close(j);
        json_arr_close(j);
    }
    json_obj_close(j);
    json_obj_close(j);
}

/* --- reads --------------------------------------------------------------------------------- */

static void not_found_user(struct http_exchange *ex, const char *name) {
    char msg[160];
    snprintf(msg, sizeof msg, "no user " ACCESS_USER_PREFIX "%s", name);
    http_respond_error(ex, 404, msg);
}

static void render(struct user_call *c, const struct access_snapshot *s, struct buf *b) {
    struct json j;
    json_init(&j, b);
    const struct access_user *u = access_snapshot_user(s, c->user);
    bool boot = strcmp(c->user, ACCESS_BOOTSTRAP_USER) == 0 && !u;
    switch (c->op) {
    case U_ME:
        if (boot)
            user_json(&j, ACCESS_BOOTSTRAP_USER, "Bootstrap administrator (--api-key)",
                      "administrator", true);
        else if (u)
            user_json(&j, u->name, u->display, u->role, u->service);
        break;
    case U_LIST: {
        int64_t total = (int64_t)s->nusers, end = c->skip + c->take;
        api_collection_open(&j, "User", total, c->take);
        for (int64_t i = c->skip; i < total && i < end; i++)
            user_json(&j, s->users[i].name, s->users[i].display, s->users[i].role,
                      s->users[i].service);
        api_collection_close(&j, "/api/users", "{?skip,take}", c->skip, c->take, total);
        break;
    }
    case U_KEYS: {
        int64_t total = 0, at = 0, end = c->skip + c->take;
        for (size_t i = 0; i < s->nkeys; i++) total += strcmp(s->keys[i].user, c->user) == 0;
        char path[120];
        snprintf(path, sizeof path, "/api/users/" ACCESS_USER_PREFIX "%s/apikeys", c->user);
        api_collection_open(&j, "ApiKey", total, c->take);
        for (size_t i = 0; i < s->nkeys; i++) {
            const struct access_key *k = &s->keys[i];
            if (strcmp(k->user, c->user) != 0) continue;
            if (at >= c->skip && at < end)
                key_json(&j, k->id, k->user, k->purpose, k->created_ms, k->expires_ms, k->read_only,
                         k->hint, k->last_used_ms, NULL);
            at++;
        }
        api_collection_close(&j, path, "{?skip,take}", c->skip, c->take, total);
        break;
    }
    case U_KEY:
        for (size_t i = 0; i < s->nkeys; i++) {
            const struct access_key *k = &s->keys[i];
            if (strcmp(k->id, c->key_id) == 0 && strcmp(k->user, c->user) == 0)
                key_json(&j, k->id, k->user, k->purpose, k->created_ms, k->expires_ms, k->read_only,
                         k->hint, k->last_used_ms, NULL);
        }
        break;
    case U_PERMS:
        if (boot)
            perms_json(&j, ACCESS_BOOTSTRAP_USER, ACCESS_ALL_PERMS);
        else if (u)
            perms_json(&j, u->name, u->perms);
        break;
    default: break;
    }
}

static void load_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct user_call *c = priv;
    if (api_reply_failed(c->ex, r, NULL)) goto done;
    struct access_snapshot s;
    if (access_snapshot_parse(r, &s) != 0) {
        http_respond_error(c->ex, 500, "unexpected reply from access_load.lua");
        goto done;
    }
    bool known =
        access_snapshot_user(&s, c->user) ||
        (strcmp(c->user, ACCESS_BOOTSTRAP_USER) == 0 && (c->op == U_ME || c->op == U_PERMS));
    struct buf b;
    buf_init(&b);
    if (c->op != U_LIST && !known) {
        not_found_user(c->ex, c->user);
    } else {
        render(c, &s, &b);
        if (b.len)
            api_respond_json(c->ex, 200, &b);
        else
            http_respond_error(c->ex, 404, "no such API key for this user");
    }
    buf_free(&b);
    access_snapshot_free(&s);
done:
    user_call_free(c);
}

/* Starts a call for ex: checks the route's rule (own records, or AdministerSystem) and reads
 * the {id} user's name. Returns NULL when ex was answered. */
static struct user_call *begin(struct http_exchange *ex, enum user_op op, bool own_ok) {
    struct access_actor who;
    const struct node_services *svc =
        api_begin_who(ex, own_ok ? PERM_NONE : PERM_ADMINISTER_SYSTEM, &who);
    if (!svc) return NULL;
    struct user_call *c = xcalloc(1, sizeof *c);
    c->ex = ex;
    c->svc = svc;
    c->who = who;
    c->op = op;
    const char *id = http_param(ex, 0);
    if (op == U_ME) {
        snprintf(c->user, sizeof c->user, "%s", who.user);
    } else if (id && !user_name(id, c->user, sizeof c->user)) {
        not_found_user(ex, id);
        user_call_free(c);
        return NULL;
    }
    if (own_ok && op != U_ME && strcmp(c->user, who.user) != 0 && !admin(&who)) {
        http_respond_error(ex, 403,
                           "You do not have permission to perform this action. Missing "
                           "permission: AdministerSystem");
        user_call_free(c);
        return NULL;
    }
    if ((op == U_KEY_ADD || op == U_KEY_DEL) && who.read_only) {
        http_respond_error(ex, 403,
                           "a ReadOnly API key cannot change anything, its own user's "
                           "keys included; use a FullAccess key");
        user_call_free(c);
        return NULL;
    }
    const char *kid = http_param(ex, 1);
    if (kid) snprintf(c->key_id, sizeof c->key_id, "%s", kid);
    if (api_query_int(ex, "skip", 0, 0, INT32_MAX, &c->skip) != 0 ||
        api_query_int(ex, "take", API_TAKE_DEFAULT, 0, API_TAKE_MAX, &c->take) != 0) {
        user_call_free(c);
        return NULL;
    }
    return c;
}

static void read_op(struct http_exchange *ex, enum user_op op, bool own_ok) {
    struct user_call *c = begin(ex, op, own_ok);
    if (!c) return;
    struct script_call call;
    call_access_load(&call, c->svc->keys, clock_wall_ms());
    if (api_call(ex, c->svc, &call, load_cb, c) != 0) user_call_free(c);
    call_free(&call);
}

static void me_cb(struct http_exchange *ex) { read_op(ex, U_ME, true); }
static void list_cb(struct http_exchange *ex) { read_op(ex, U_LIST, false); }
static void keys_cb(struct http_exchange *ex) { read_op(ex, U_KEYS, true); }
static void key_cb(struct http_exchange *ex) { read_op(ex, U_KEY, true); }
static void perms_cb(struct http_exchange *ex) { read_op(ex, U_PERMS, true); }

/* --- writes -------------------------------------------------------------------------------- */

static void write_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct user_call *c = priv;
    static const struct api_error_code codes[] = {
        {"EXISTS", 409},  {"NOUSER", 404},    {"NOKEY", 404}, {"TOOMANY", 409},
        {"BADROLE", 400}, {"BADACCESS", 400}, {NULL, 0}};
    if (api_reply_failed(c->ex, r, codes)) goto done;
    access_cache_reload(c->svc->api->access); /* this node agrees at once */
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    if (c->op == U_ADD) {
        user_json(&j, c->user, c->display, c->role, c->service);
        api_respond_json(c->ex, 201, &b);
    } else if (c->op == U_KEY_ADD) {
        key_json(&j, c->key_id, c->user, c->purpose, c->created_ms, c->expires_ms, c->read_only,
                 c->hint, 0, c->key);
        api_respond_json(c->ex, 201, &b);
        explicit_bzero(b.data, b.len);
    } else {
        json_obj_open(&j);
        json_key(&j, "Id");
        json_str(&j, c->key_id);
        json_key(&j, "Deleted");
        json_bool(&j, true);
        json_obj_close(&j);
        api_respond_json(c->ex, 200, &b);
    }
    buf_free(&b);
done:
    user_call_free(c);
}

static void send_write(struct user_call *c, const char *op, const char *const *args, int n,
                       const char *category, const char *msg, const char *related,
                       const char *before, const char *after) {
    struct buf ev;
    int64_t now = clock_wall_ms();
    buf_init(&ev);
    access_event_json(&ev, &c->who, category, msg, related, before, after, now);
    struct script_call call;
    call_access_write(&call, c->svc->keys, now, ACCESS_EVENT_RETENTION_MS, ev.data, op, args, n);
    if (api_call(c->ex, c->svc, &call, write_cb, c) != 0) user_call_free(c);
    call_free(&call);
    buf_free(&ev);
}

/* The buffered body as a JSON object, or NULL after answering 400. */
static json_t *body_object(struct http_exchange *ex) {
    const struct buf *body = http_body(ex);
    json_error_t e;
    json_t *o = json_loadb(body->data ? body->data : "", body->len, 0, &e);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        http_respond_error(ex, 400, "body: expected a JSON object");
        return NULL;
    }
    return o;
}

static const char *opt_str(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* POST /api/users {Username, DisplayName?, IsService?, Role?}: 201 with the user. */
static void add_user_cb(struct http_exchange *ex) {
    struct user_call *c = begin(ex, U_ADD, false);
    if (!c) return;
    json_t *o = body_object(ex);
    if (!o) return user_call_free(c);
    const char *name = opt_str(o, "Username"), *role = opt_str(o, "Role"),
               *display = opt_str(o, "DisplayName");
    const char *why = NULL;
    if (!name || !access_name_valid(name))
        why = "Username: required, 1-64 of A-Z a-z 0-9 . _ @ -";
    else if (role && !access_role_perms(role))
        why = "Role: one of viewer, buildserver, operator, administrator";
    else if (display && strlen(display) >= sizeof c->display)
        why = "DisplayName: at most 127 bytes";
    if (why) {
        json_decref(o);
        http_respond_error(ex, 400, why);
        return user_call_free(c);
    }
    snprintf(c->user, sizeof c->user, "%s", name);
    snprintf(c->role, sizeof c->role, "%s", role ? role : "viewer");
    snprintf(c->display, sizeof c->display, "%s", display ? display : name);
    c->service = json_is_true(json_object_get(o, "IsService"));
    json_decref(o);
    const char *args[] = {c->user, c->role, c->display, c->service ? "1" : "0"};
    char msg[200], uid[96];
    snprintf(msg, sizeof msg, "User %s added with role %s", c->user, c->role);
    snprintf(uid, sizeof uid, ACCESS_USER_PREFIX "%s", c->user);
    send_write(c, "user_add", args, 4, "Created", msg, uid, NULL, c->role);
}

/* POST /api/users/{id}/apikeys {Purpose, Expires?, AccessLevel?}: 201 with the key, its
 * plaintext in ApiKey (the only time it is shown). */
static void add_key_cb(struct http_exchange *ex) {
    struct user_call *c = begin(ex, U_KEY_ADD, true);
    if (!c) return;
    json_t *o = body_object(ex);
    if (!o) return user_call_free(c);
    const char *purpose = opt_str(o, "Purpose"), *exp = opt_str(o, "Expires"),
               *level = opt_str(o, "AccessLevel");
    const char *why = NULL;
    c->created_ms = clock_wall_ms();
    if (!purpose || !*purpose || strlen(purpose) > 100)
        why = "Purpose: required, at most 100 bytes";
    else if (exp && (parse_iso8601_ms(exp, &c->expires_ms) != 0 || c->expires_ms <= c->created_ms))
        why = "Expires: an ISO-8601 time in the future";
    else if (level && strcmp(level, "FullAccess") != 0 && strcmp(level, "ReadOnly") != 0)
        why = "AccessLevel: FullAccess or ReadOnly";
    char sha[65];
    if (!why && access_key_new(c->key, sha, c->key_id) != 0)
        why = "the random generator failed; try again";
    if (why) {
        json_decref(o);
        http_respond_error(ex, 400, why);
        return user_call_free(c);
    }
    snprintf(c->purpose, sizeof c->purpose, "%s", purpose);
    c->read_only = level && strcmp(level, "ReadOnly") == 0;
    json_decref(o);
    snprintf(c->hint, sizeof c->hint, "%.*s", ACCESS_HINT_LEN, c->key);
    char expires[24], msg[320];
    snprintf(expires, sizeof expires, "%lld", (long long)c->expires_ms);
    const char *args[] = {c->key_id,  c->user, sha,
                          c->purpose, expires, c->read_only ? "ReadOnly" : "FullAccess",
                          c->hint};
    snprintf(msg, sizeof msg, "API key %s (%s) created for user %s", c->key_id, c->purpose,
             c->user);
    send_write(c, "key_create", args, 7, "Created", msg, c->key_id, NULL, c->hint);
}

/* DELETE /api/users/{id}/apikeys/{keyId}: revokes it on every node. */
static void del_key_cb(struct http_exchange *ex) {
    struct user_call *c = begin(ex, U_KEY_DEL, true);
    if (!c) return;
    const char *args[] = {c->key_id, c->user};
    char msg[160];
    snprintf(msg, sizeof msg, "API key %s of user %s revoked", c->key_id, c->user);
    send_write(c, "key_revoke", args, 2, "Deleted", msg, c->key_id, c->key_id, NULL);
}

/* --- events -------------------------------------------------------------------------------- */

/* The most stream entries one GET /api/events looks at (its filters run over these). */
#define EVENTS_SCAN 5000

struct events_call {
    struct http_exchange *ex;
    int64_t skip, take;
    char users[512], regarding[512];
    bool filtered; /* users or regarding given: entries are decoded and matched */
    bool use_len;  /* unfiltered, whole stream: TotalResults is XLEN, only the page is read */
    int64_t len;   /* XLEN's answer */
    bool orphaned; /* the XREVRANGE could not be sent: xlen_cb frees the call */
};

static void xlen_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct events_call *c = priv;
    if (r && r->type == REDIS_REPLY_INTEGER) c->len = r->integer;
    if (c->orphaned) free(c);
}

/* True when the comma list has an entry equal to s (or the list is empty). */
static bool in_list(const char *list, const char *s) {
    if (!*list) return true;
    size_t n = strlen(s);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static bool matches(const struct events_call *c, json_t *e) {
    const char *uid = opt_str(e, "UserId");
    if (!in_list(c->users, uid ? uid : "")) return false;
    if (!*c->regarding) return true;
    json_t *rel = json_object_get(e, "RelatedDocumentIds"), *v;
    size_t i;
    json_array_foreach(rel, i, v) {
        if (json_is_string(v) && in_list(c->regarding, json_string_value(v))) return true;
    }
    return false;
}

static void events_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct events_call *c = priv;
    if (api_reply_failed(c->ex, r, NULL)) goto done;
    if (r->type != REDIS_REPLY_ARRAY) {
        http_respond_error(c->ex, 500, "unexpected reply from XREVRANGE");
        goto done;
    }
    json_t *items = json_array();
    int64_t total = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *en = r->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[1]->type != REDIS_REPLY_ARRAY || en->element[1]->elements != 2)
            continue;
        bool in_page = total >= c->skip && total < c->skip + c->take;
        if (!c->filtered && !in_page) { /* counted, never decoded */
            total++;
            continue;
        }
        json_t *e = json_loads(en->element[1]->element[1]->str, 0, NULL);
        if (!e || !matches(c, e)) {
            json_decref(e);
            continue;
        }
        if (in_page) {
            char id[64];
            snprintf(id, sizeof id, "Events-%s", en->element[0]->str);
            json_t *ev = json_pack("{s:s}", "Id", id); /* Id first, as Octopus writes it */
            json_object_update(ev, e);
            json_array_append_new(items, ev);
        }
        json_decref(e);
        total++;
    }
    if (c->use_len) total = c->len > total ? c->len : total;
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    api_collection_open(&j, "Event", total, c->take);
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (i) buf_append(&b, ",", 1);
        buf_append(&b, s, strlen(s));
        free(s);
    }
    api_collection_close(&j, "/api/events", "{?skip,take,from,to,users,regarding}", c->skip,
                         c->take, total);
    json_decref(items);
    api_respond_json(c->ex, 200, &b);
    buf_free(&b);
done:
    free(c);
}

/* GET /api/events?skip&take&from&to&users&regarding, newest first. The filters run over the
 * EVENTS_SCAN newest entries in [from, to]: TotalResults counts matches among those. Without
 * any of them (the Nodes page's "ten newest"), only skip + take entries are read and
 * TotalResults is the stream's length: the stream holds every audited enqueue, and reading
 * and decoding 5,000 entries on the loop for ten would delay ping. */
static void events_http_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_EVENT_VIEW);
    if (!svc) return;
    struct events_call *c = xcalloc(1, sizeof *c);
    c->ex = ex;
    char from[64] = "", to[64] = "", lo[32] = "-", hi[32] = "+";
    int64_t ms;
    if (api_query_int(ex, "skip", 0, 0, EVENTS_SCAN, &c->skip) != 0 ||
        api_query_int(ex, "take", API_TAKE_DEFAULT, 0, API_TAKE_MAX, &c->take) != 0) {
        free(c);
        return;
    }
    api_query_get(http_query(ex), "users", c->users, sizeof c->users);
    api_query_get(http_query(ex), "regarding", c->regarding, sizeof c->regarding);
    if (api_query_get(http_query(ex), "from", from, sizeof from) && *from) {
        if (parse_iso8601_ms(from, &ms) != 0) {
            free(c);
            return http_respond_error(ex, 400, "from: an ISO-8601 time");
        }
        snprintf(lo, sizeof lo, "%lld", (long long)ms);
    }
    if (api_query_get(http_query(ex), "to", to, sizeof to) && *to) {
        if (parse_iso8601_ms(to, &ms) != 0) {
            free(c);
            return http_respond_error(ex, 400, "to: an ISO-8601 time");
        }
        snprintf(hi, sizeof hi, "%lld", (long long)ms);
    }
    c->filtered = c->users[0] || c->regarding[0];
    c->use_len = !c->filtered && !*from && !*to;
    char key[160], count[24];
    keys_events(svc->keys, key, sizeof key);
    int64_t n = c->use_len ? c->skip + c->take : EVENTS_SCAN;
    snprintf(count, sizeof count, "%lld", (long long)(n > 0 ? n : 1));
    if (c->use_len) {
        const char *len_argv[] = {"XLEN", key};
        if (api_send(ex, svc, xlen_cb, c, 2, len_argv, NULL) != 0) {
            free(c);
            return;
        }
    }
    const char *argv[] = {"XREVRANGE", key, hi, lo, "COUNT", count};
    if (api_send(ex, svc, events_cb, c, 6, argv, NULL) != 0) {
        if (c->use_len)
            c->orphaned = true; /* xlen_cb, still to come, frees it */
        else
            free(c);
    }
}

const struct http_route api_user_routes[] = {
    {HTTP_GET, "/api/users/me", me_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/users", list_cb, HTTP_BODY_NONE, api_admit_admin},
    {HTTP_POST, "/api/users", add_user_cb, HTTP_BODY_BUFFER, api_admit_admin},
    {HTTP_GET, "/api/users/{id}/apikeys", keys_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_POST, "/api/users/{id}/apikeys", add_key_cb, HTTP_BODY_BUFFER, api_admit},
    {HTTP_GET, "/api/users/{id}/apikeys/{keyId}", key_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_DELETE, "/api/users/{id}/apikeys/{keyId}", del_key_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/users/{id}/permissions", perms_cb, HTTP_BODY_NONE, api_admit},
    {HTTP_GET, "/api/events", events_http_cb, HTTP_BODY_NONE, api_admit_event_view},
};
const size_t api_user_nroutes = ARRAY_SIZE(api_user_routes);
