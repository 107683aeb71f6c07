/* access.c: the node's access cache and the check of every keyed route (see access.h). */
#include "api/access.h"

#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calls.h"
#include "common/log.h"
#include "common/reply.h"
#include "common/util.h"

struct used {
    char id[32];
    int64_t written_ms; /* last written to Redis (wall ms); 0: never */
    int64_t seen_ms;    /* last check that let the key through */
};

struct access_cache {
    uv_loop_t *loop;
    const struct keys *keys;        /* borrowed */
    const struct shoal_config *cfg; /* borrowed */
    struct rconn *cmd;              /* borrowed: the node's command link */
    struct rconn *sub;              /* owned: subscribed to {NS}:access */
    uv_timer_t tick;                /* every heartbeat period: version check, last-use writes */
    struct access_snapshot snap;    /* in force when loaded */
    bool loaded;                    /* snap came from Redis since the last reconnect */
    bool ever_loaded;               /* ... once at least: before, the list counts as empty
                                     * (a key is refused 403, as no Redis key is known yet) */
    bool loading;                   /* a load is in flight */
    bool again;                     /* ... and another was asked for meanwhile */
    bool checking;                  /* a version check is in flight */
    uint64_t valid_mono_ms;         /* when the last load or check that agreed was sent */
    int64_t ttl_ms;                 /* liveness TTL: three heartbeats */
    unsigned long cmd_reconnects;   /* the command link's reconnects when last looked */
    struct access_lock locks[ACCESS_MAX_LOCKS]; /* lockouts heard of (ended ones reused) */
    size_t nlocks;
    struct used *used; /* last use per key id (at most ACCESS_MAX_KEYS + a few) */
    size_t nused;
    int closing;
    void (*done)(void *arg);
    void *done_arg;
};

static void load(struct access_cache *a);
static void ignore_cb(struct rconn *rc, redisReply *r, void *priv);

/* --- lockouts ------------------------------------------------------------------------------ */

static void lock_add(struct access_cache *a, const char *addr, int64_t until) {
    int64_t now = clock_wall_ms();
    struct access_lock *same = NULL, *free_slot = NULL, *first_end = NULL;
    for (size_t i = 0; i < a->nlocks && !same; i++) {
        struct access_lock *l = &a->locks[i];
        if (strcmp(l->addr, addr) == 0) same = l;
        if (!free_slot && l->until_ms <= now) free_slot = l;
        if (!first_end || l->until_ms < first_end->until_ms) first_end = l;
    }
    struct access_lock *slot = same ? same : free_slot;
    if (!slot && a->nlocks < ACCESS_MAX_LOCKS) slot = &a->locks[a->nlocks++];
    if (!slot) slot = first_end; /* full of live lockouts: the one ending first makes room */
    if (slot != same) {
        snprintf(slot->addr, sizeof slot->addr, "%s", addr);
        slot->until_ms = until;
    } else if (until > slot->until_ms) {
        slot->until_ms = until;
    }
}

/* The end of addr's lockout (wall ms), or 0. O(locks), at most ACCESS_MAX_LOCKS, and 0 in
 * the usual case of none. */
static int64_t locked_until(const struct access_cache *a, const char *addr, int64_t now) {
    for (size_t i = 0; i < a->nlocks; i++)
        if (a->locks[i].until_ms > now && strcmp(a->locks[i].addr, addr) == 0)
            return a->locks[i].until_ms;
    return 0;
}

/* --- loading ------------------------------------------------------------------------------- */

struct sent {
    struct access_cache *a;
    uint64_t at_mono_ms;
};

static void load_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct sent *s = priv;
    struct access_cache *a = s->a;
    uint64_t at = s->at_mono_ms;
    free(s);
    a->loading = false;
    if (r == NULL || a->closing) return;
    struct access_snapshot next;
    if (r->type == REDIS_REPLY_ERROR || access_snapshot_parse(r, &next) != 0) {
        log_warn("cannot read the access list", " err=\"%s\"",
                 r->type == REDIS_REPLY_ERROR ? r->str : "wrong shape");
        return;
    }
    bool first = !a->loaded;
    access_snapshot_free(&a->snap);
    a->snap = next;
    a->loaded = a->ever_loaded = true;
    a->valid_mono_ms = at;
    for (size_t i = 0; i < a->snap.nlocks; i++)
        lock_add(a, a->snap.locks[i].addr, a->snap.locks[i].until_ms);
    if (first)
        log_info("access list loaded", " version=%lld users=%zu keys=%zu",
                 (long long)a->snap.version, a->snap.nusers, a->snap.nkeys);
    else
        log_debug("access list reloaded", " version=%lld users=%zu keys=%zu",
                  (long long)a->snap.version, a->snap.nusers, a->snap.nkeys);
    if (a->again) {
        a->again = false;
        load(a);
    }
}

static void load(struct access_cache *a) {
    if (a->closing) return;
    if (a->loading) {
        a->again = true;
        return;
    }
    struct script_call call;
    struct sent *s = xcalloc(1, sizeof *s);
    s->a = a;
    s->at_mono_ms = clock_mono_ms();
    call_access_load(&call, a->keys, clock_wall_ms());
    if (rconn_call(a->cmd, &call, load_cb, s) == 0)
        a->loading = true;
    else
        free(s);
    call_free(&call);
}

void access_cache_reload(struct access_cache *a) {
    if (a) load(a);
}

/* Every cache entry goes: Redis-held keys answer 503 until the reload is in. */
static void drop(struct access_cache *a, const char *why) {
    if (a->loaded) log_info("access cache dropped; reloading", " why=\"%s\"", why);
    a->loaded = false;
    load(a);
}

/* --- the heartbeat-period check ------------------------------------------------------------ */

static void version_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct sent *s = priv;
    struct access_cache *a = s->a;
    uint64_t at = s->at_mono_ms;
    free(s);
    a->checking = false;
    if (r == NULL || a->closing) return;
    int64_t v = 0;
    if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r->type != REDIS_REPLY_NIL)
        return;
    if (a->loaded && v == a->snap.version)
        a->valid_mono_ms = at;
    else
        load(a);
}

static void write_used(struct access_cache *a) {
    const char *argv[2 + 2 * 64];
    char key[160], ms[64][24];
    int n = 0;
    int64_t now = clock_wall_ms();
    argv[n++] = "HSET";
    argv[n++] = keys_apikey_used(a->keys, key, sizeof key);
    for (size_t i = 0; i < a->nused && n < (int)ARRAY_SIZE(argv); i++) {
        struct used *u = &a->used[i];
        if (u->seen_ms <= u->written_ms || now - u->written_ms < ACCESS_USED_EVERY_MS) continue;
        char *m = ms[(n - 2) / 2];
        snprintf(m, sizeof ms[0], "%lld", (long long)u->seen_ms);
        argv[n++] = u->id;
        argv[n++] = m;
        u->written_ms = now;
    }
    if (n > 2) (void)rconn_command(a->cmd, ignore_cb, NULL, n, argv, NULL);
}

static void tick_cb(uv_timer_t *t) {
    struct access_cache *a = t->data;
    if (!rconn_is_up(a->cmd)) return;
    if (!a->loaded && !a->loading) load(a); /* the subscriber came up before the command link */
    unsigned long rec = rconn_reconnects(a->cmd);
    if (rec != a->cmd_reconnects) {
        a->cmd_reconnects = rec;
        drop(a, "Redis command link reconnected");
        return;
    }
    if (!a->checking) {
        char key[160];
        const char *argv[] = {"GET", keys_access_version(a->keys, key, sizeof key)};
        struct sent *s = xcalloc(1, sizeof *s);
        s->a = a;
        s->at_mono_ms = clock_mono_ms();
        if (rconn_command(a->cmd, version_cb, s, 2, argv, NULL) == 0)
            a->checking = true;
        else
            free(s);
    }
    write_used(a);
}

/* --- the subscriber ------------------------------------------------------------------------ */

static void message_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct access_cache *a = priv;
    if (r == NULL || a->closing || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    if (strcmp(reply_str(r, 0, NULL), "message") != 0) return;
    const char *msg = reply_str(r, 2, NULL);
    long long v, until;
    char addr[48];
    if (sscanf(msg, "v %lld", &v) == 1) {
        if (!a->loaded || v != a->snap.version) load(a);
    } else if (sscanf(msg, "lock %47s %lld", addr, &until) == 2) {
        lock_add(a, addr, until);
        log_warn("address locked out after failed API key checks", " addr=%s until_ms=%lld", addr,
                 until);
    }
}

static void sub_up_cb(struct rconn *rc, void *arg) {
    struct access_cache *a = arg;
    char ch[160];
    const char *channels[] = {keys_access(a->keys, ch, sizeof ch)};
    (void)rconn_subscribe(rc, channels, 1, message_cb, a);
    /* Messages may have been missed while the link was down. */
    drop(a, "Redis subscriber link (re)connected");
}

/* --- life cycle ---------------------------------------------------------------------------- */

struct access_cache *access_cache_new(uv_loop_t *loop, const struct rurl *url,
                                      const struct keys *keys, const struct shoal_config *cfg,
                                      struct rconn *cmd) {
    struct access_cache *a = xcalloc(1, sizeof *a);
    a->loop = loop;
    a->keys = keys;
    a->cfg = cfg;
    a->cmd = cmd;
    a->ttl_ms = cfg->heartbeat_ms * 3;
    a->cmd_reconnects = rconn_reconnects(cmd);
    struct rconn_events ev = {sub_up_cb, NULL, a};
    a->sub = rconn_new(loop, url, "access", false, &ev);
    uv_timer_init(loop, &a->tick);
    a->tick.data = a;
    return a;
}

void access_cache_start(struct access_cache *a) {
    rconn_start(a->sub);
    uv_timer_start(&a->tick, tick_cb, (uint64_t)a->cfg->heartbeat_ms,
                   (uint64_t)a->cfg->heartbeat_ms);
}

static void part_done(struct access_cache *a) {
    if (--a->closing == 0 && a->done) a->done(a->done_arg);
}
static void sub_done_cb(void *arg) { part_done(arg); }
static void tick_closed_cb(uv_handle_t *h) { part_done(h->data); }

void access_cache_close(struct access_cache *a, void (*done)(void *arg), void *arg) {
    a->done = done;
    a->done_arg = arg;
    a->closing = 3;
    uv_close((uv_handle_t *)&a->tick, tick_closed_cb);
    rconn_free(a->sub, sub_done_cb, a);
    a->sub = NULL;
    part_done(a);
}

void access_cache_free(struct access_cache *a) {
    if (!a) return;
    access_snapshot_free(&a->snap);
    free(a->used);
    free(a);
}

int64_t access_cache_version(const struct access_cache *a) {
    return a && a->loaded ? a->snap.version : -1;
}

const struct access_snapshot *access_cache_snapshot(const struct access_cache *a) {
    return a && a->loaded ? &a->snap : NULL;
}

/* --- the check ----------------------------------------------------------------------------- */

static const char *const missing[PERM_COUNT] = {
    [PERM_ADMINISTER_SYSTEM] = "You do not have permission to perform this action. Missing "
                               "permission: AdministerSystem",
    [PERM_TASK_VIEW] = "You do not have permission to perform this action. Missing permission: "
                       "TaskView",
    [PERM_TASK_CREATE] = "You do not have permission to perform this action. Missing "
                         "permission: TaskCreate",
    [PERM_TASK_CANCEL] = "You do not have permission to perform this action. Missing "
                         "permission: TaskCancel",
    [PERM_EVENT_VIEW] = "You do not have permission to perform this action. Missing permission: "
                        "EventView",
    [PERM_FEED_VIEW] = "You do not have permission to perform this action. Missing permission: "
                       "FeedView",
    [PERM_BUILTIN_FEED_PUSH] = "You do not have permission to perform this action. Missing "
                               "permission: BuiltInFeedPush",
    [PERM_BUILTIN_FEED_DOWNLOAD] = "You do not have permission to perform this action. Missing "
                                   "permission: BuiltInFeedDownload",
    [PERM_BUILTIN_FEED_ADMINISTER] = "You do not have permission to perform this action. "
                                     "Missing permission: BuiltInFeedAdminister",
};

/* For writes whose answer changes nothing here (a lockout arrives by its PUBLISH). */
static void ignore_cb(struct rconn *rc, redisReply *r, void *priv) {
    if (r && r->type == REDIS_REPLY_ERROR) log_warn("access write failed", " err=\"%s\"", r->str);
}

/* Counts a wrong key from addr in Redis (lua/auth_fail.lua), after the answer is decided. */
static void count_failure(struct access_cache *a, struct http_exchange *ex, const char *addr) {
    if (!a || !addr[0] || !a->cfg->auth_fail_limit || !rconn_is_up(a->cmd)) return;
    struct access_actor who;
    memset(&who, 0, sizeof who);
    snprintf(who.user, sizeof who.user, "anonymous");
    snprintf(who.ip, sizeof who.ip, "%s", addr);
    const char *ua = http_header(ex, "User-Agent");
    snprintf(who.agent, sizeof who.agent, "%s", ua ? ua : "");
    snprintf(who.via, sizeof who.via, "API key");
    char msg[200];
    snprintf(msg, sizeof msg,
             "Address %s locked out for %lld s after %lld failed API key checks within %d s", addr,
             (long long)(a->cfg->auth_lockout_ms / 1000), (long long)a->cfg->auth_fail_limit,
             ACCESS_FAIL_WINDOW_MS / 1000);
    struct buf ev;
    buf_init(&ev);
    int64_t now = clock_wall_ms();
    access_event_json(&ev, &who, "LoginFailed", msg, NULL, NULL, NULL, now);
    struct call_auth_fail_args args = {addr,
                                       now,
                                       ACCESS_FAIL_WINDOW_MS,
                                       a->cfg->auth_fail_limit,
                                       a->cfg->auth_lockout_ms,
                                       ACCESS_EVENT_RETENTION_MS,
                                       ev.data};
    struct script_call call;
    call_auth_fail(&call, a->keys, &args);
    (void)rconn_call(a->cmd, &call, ignore_cb, NULL);
    call_free(&call);
    buf_free(&ev);
}

static void mark_used(struct access_cache *a, const char *id, int64_t now) {
    for (size_t i = 0; i < a->nused; i++)
        if (strcmp(a->used[i].id, id) == 0) {
            a->used[i].seen_ms = now;
            return;
        }
    if (a->nused >= ACCESS_MAX_KEYS + 64) return; /* bounded: a revoked key's slot is never freed */
    a->used = xrealloc(a->used, (a->nused + 1) * sizeof *a->used);
    struct used *u = &a->used[a->nused++];
    snprintf(u->id, sizeof u->id, "%s", id);
    u->written_ms = 0;
    u->seen_ms = now;
}

/* Audits a request refused for a missing permission (who it was, what it asked). Fire and
 * forget; one XADD, trimmed to the retention. */
static void denied(struct access_cache *a, const struct access_actor *who, struct http_exchange *ex,
                   enum access_perm perm) {
    if (!rconn_is_up(a->cmd)) return;
    char msg[400], key[160], minid[24];
    snprintf(msg, sizeof msg, "%s was refused %s %.200s: missing permission %s", who->user,
             llhttp_method_name(http_method(ex)), http_path(ex), access_perm_name(perm));
    struct buf ev;
    buf_init(&ev);
    int64_t now = clock_wall_ms();
    access_event_json(&ev, who, "PermissionDenied", msg, NULL, NULL, NULL, now);
    snprintf(minid, sizeof minid, "%lld", (long long)(now - ACCESS_EVENT_RETENTION_MS));
    const char *argv[] = {
        "XADD", keys_events(a->keys, key, sizeof key), "MINID", "~", minid, "*", "e", ev.data};
    (void)rconn_command(a->cmd, ignore_cb, NULL, 8, argv, NULL);
    buf_free(&ev);
}

static void bootstrap_actor(struct access_actor *who, struct http_exchange *ex) {
    snprintf(who->user, sizeof who->user, ACCESS_BOOTSTRAP_USER);
    snprintf(who->via, sizeof who->via, "Bootstrap key");
    who->service = true;
    who->perms = ACCESS_ALL_PERMS;
}

/* True when the comma list holds exactly addr. */
static bool listed(const char *list, const char *addr) {
    size_t n = strlen(addr);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t len = strcspn(p, ", ");
        if (len == n && n && strncmp(p, addr, n) == 0) return true;
        p += len;
    }
    return false;
}

/* The client's address: the peer's, or, when the peer is a --trusted-proxies address, the last
 * entry of X-Forwarded-For (what that proxy appended) if it is an IP address. */
static void client_addr(const struct shoal_config *cfg, struct http_exchange *ex, char *out,
                        size_t len) {
    const char *peer = http_peer(ex);
    snprintf(out, len, "%s", peer);
    const char *xff = cfg && cfg->trusted_proxies && cfg->trusted_proxies[0] && peer[0] &&
                              listed(cfg->trusted_proxies, peer)
                          ? http_header(ex, "X-Forwarded-For")
                          : NULL;
    if (!xff) return;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ' || *last == '\t') last++;
    char ip[48];
    size_t n = strcspn(last, " \t");
    if (n == 0 || n >= sizeof ip) return;
    memcpy(ip, last, n);
    ip[n] = '\0';
    unsigned char bin[16];
    if (uv_inet_pton(AF_INET, ip, bin) == 0 || uv_inet_pton(AF_INET6, ip, bin) == 0)
        snprintf(out, len, "%s", ip);
}

int access_check(struct access_cache *a, const struct auth_keys *file_keys,
                 struct http_exchange *ex, enum access_perm perm, struct access_actor *who,
                 const char **why) {
    struct access_actor scratch;
    if (!who) who = &scratch;
    memset(who, 0, sizeof *who);
    char addr[48];
    client_addr(a ? a->cfg : NULL, ex, addr, sizeof addr);
    int64_t now = clock_wall_ms();
    snprintf(who->ip, sizeof who->ip, "%s", addr);
    const char *ua = http_header(ex, "User-Agent");
    snprintf(who->agent, sizeof who->agent, "%s", ua ? ua : "");
    int64_t until = a && addr[0] ? locked_until(a, addr, now) : 0;
    if (until) {
        char s[24];
        snprintf(s, sizeof s, "%lld", (long long)((until - now + 999) / 1000));
        http_add_header(ex, "Retry-After", s);
        *why = "too many failed API key checks from this address; try again later";
        return 429;
    }
    size_t n = 0;
    const char *p = auth_presented(ex, &n);
    bool redis_keys = a && a->snap.nkeys > 0; /* kept while a reload is under way */
    if (auth_keys_count(file_keys) == 0 && !redis_keys) {
        *why = "this endpoint needs an API key and this node has none configured: create one "
               "(shoal user add NAME --role administrator; shoal apikey create --user NAME "
               "--purpose P), or start the node with SHOAL_API_KEY=<key> (or --api-key) or "
               "SHOAL_API_KEY_FILE=<file with one key a line> (or --api-key-file)";
        return 403;
    }
    if (!p) {
        *why = "an API key is required: send it as X-Octopus-ApiKey: <key> or "
               "Authorization: Bearer <key>";
        return 401;
    }
    unsigned char d[32];
    unsigned int dl = 0;
    if (EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL) != 1 || dl != 32) abort();
    if (auth_keys_match_digest(file_keys, d)) {
        explicit_bzero(d, sizeof d);
        bootstrap_actor(who, ex);
        return 0;
    }
    if (a && a->ever_loaded &&
        (!a->loaded || clock_mono_ms() - a->valid_mono_ms > (uint64_t)a->ttl_ms)) {
        explicit_bzero(d, sizeof d);
        *why = "the access list cannot be confirmed with Redis now (unreachable or reloading); "
               "try again";
        return 503;
    }
    const struct access_key *k = a ? access_snapshot_find(&a->snap, d) : NULL;
    explicit_bzero(d, sizeof d);
    if (!k || (k->expires_ms && now >= k->expires_ms)) {
        count_failure(a, ex, addr);
        *why = "the API key is not valid for this node";
        return 403;
    }
    snprintf(who->user, sizeof who->user, "%s", k->user);
    snprintf(who->key_id, sizeof who->key_id, "%s", k->id);
    snprintf(who->hint, sizeof who->hint, "%s", k->hint);
    snprintf(who->via, sizeof who->via, "API key");
    const struct access_user *u = access_snapshot_user(&a->snap, k->user);
    who->service = u && u->service;
    who->perms = k->perms;
    who->read_only = k->read_only;
    if (perm != PERM_NONE && !(k->perms & PERM_BIT(perm))) {
        denied(a, who, ex, perm);
        *why = missing[perm];
        return 403;
    }
    mark_used(a, k->id, now);
    return 0;
}
