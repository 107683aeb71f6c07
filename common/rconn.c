/* rconn.c: the reconnecting async Redis connection.
 *
 * States: IDLE (waiting for the backoff timer) -> [RESOLVING: in Sentinel mode, ask each
 * sentinel in turn for the master's address] -> CONNECTING (TCP/unix connect under a timeout)
 * -> HANDSHAKE (AUTH, SELECT, ROLE in Sentinel mode, SCRIPT LOAD pipelined; the same timeout)
 * -> UP -> back to IDLE on any failure. Every reconnect in Sentinel mode asks again, and the
 * connection to the sentinel that answered stays open, subscribed to +switch-master: when our
 * master is switched, the link is reset at once (the old master may keep accepting writes
 * until Sentinel gets round to demoting it). Over TLS (rediss://, rediss-sentinel://,
 * rediss-cluster://) every one of these links, to a sentinel, a seed node or the master, runs
 * through a TLS bridge of its own (common/tls.h), closed with its hiredis context. hiredis
 * owns and frees the async context after the disconnect callback; the libuv adapter frees its
 * poll handle in its own close callback. We only free rc after our two timers have closed. */
#include "common/rconn.h"

#include "common/rloop.h"
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/util.h"

enum state { IDLE, RESOLVING, CONNECTING, HANDSHAKE, UP, CLOSING };

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 5000

struct rconn {
    uv_loop_t *loop;
    struct rurl url;              /* copied at creation */
    char name[16];                /* label in logs */
    bool load_scripts;            /* SCRIPT LOAD on each connect */
    struct rconn_events ev;       /* user callbacks */
    redisAsyncContext *ac;        /* NULL while not connected; owned by hiredis */
    struct tls_bridge *tls;       /* rediss://: the bridge hiredis talks through (common/tls.h) */
    redisAsyncContext *sac;       /* the sentinel being asked, while RESOLVING */
    struct tls_bridge *sac_tls;   /* rediss-sentinel://, rediss-cluster://: sac's bridge */
    redisAsyncContext *watch;     /* the sentinel that answered, subscribed to +switch-master */
    struct tls_bridge *watch_tls; /* its bridge (rediss-sentinel://) */
    int sentinel;                 /* index of that sentinel */
    char host[256];               /* where to connect: the URL's host, or the master found */
    int port;
    enum state state;
    uv_timer_t retry;           /* backoff before the next connect */
    uv_timer_t deadline;        /* connect + handshake timeout */
    int closed_handles;         /* close callbacks seen during rconn_free */
    uint64_t backoff_ms;        /* next backoff (before jitter) */
    unsigned handshake_left;    /* handshake replies still expected */
    bool handshake_failed;      /* an AUTH/SELECT/LOAD reply was an error */
    char sha[SCRIPT_COUNT][41]; /* SHA1 of each script, from SCRIPT LOAD */
    unsigned long reconnects;   /* successful connects after the first */
    unsigned long moved;        /* cluster MOVED replies seen */
    bool ever_up;               /* for the reconnect count */
    bool down_reported;         /* down_cb called for the current outage */
    rconn_reply_cb sub_cb;      /* rconn_subscribe's callback (kept: hiredis reuses it) */
    void *sub_priv;
    void (*done)(void *); /* rconn_free's callback */
    void *done_arg;
};

static void connect_now(struct rconn *rc);
static void connect_master(struct rconn *rc);
static void retry_cb(uv_timer_t *t);

static void schedule_retry(struct rconn *rc) {
    if (rc->state == CLOSING) return;
    rc->state = IDLE;
    uv_timer_stop(&rc->deadline);
    /* Jitter: 75%..125% of the backoff, so a fleet does not reconnect in lockstep. */
    uint64_t b = rc->backoff_ms;
    uint64_t wait = b * 3 / 4 + (uint64_t)(rand() % (int)(b / 2 + 1));
    rc->backoff_ms = b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
    uv_timer_start(&rc->retry, retry_cb, wait, 0);
}

static void report_down(struct rconn *rc, const char *why) {
    if (rc->down_reported) return;
    rc->down_reported = true;
    log_warn("redis connection lost", " conn=%s reason=\"%s\"", rc->name, why);
    if (rc->ev.down_cb) rc->ev.down_cb(rc, why, rc->ev.arg);
}

/* Ends a TLS bridge, if any: *b is then NULL. */
static void close_bridge(struct tls_bridge **b) {
    if (!*b) return;
    tls_bridge_close(*b);
    *b = NULL;
}

/* Ends the TLS bridge of the current connection attempt, if any. */
static void drop_tls(struct rconn *rc) { close_bridge(&rc->tls); }

static void disconnect_cb(const redisAsyncContext *ac, int status) {
    struct rconn *rc = ac->data;
    if (rc == NULL) return;
    drop_tls(rc);
    bool was_up = rc->state == UP;
    rc->ac = NULL;
    if (rc->state == CLOSING) return;
    if (was_up || !rc->down_reported) report_down(rc, ac->errstr[0] ? ac->errstr : "disconnected");
    schedule_retry(rc);
}

static void handshake_reply_cb(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = ac->data;
    redisReply *reply = r;
    if (rc == NULL || rc->state != HANDSHAKE) return;
    if (reply == NULL) return;     /* the disconnect callback handles it */
    intptr_t idx = (intptr_t)priv; /* -1: AUTH/SELECT, -2: ROLE, else script id */
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis handshake failed", " conn=%s error=\"%s\"", rc->name, reply->str);
        rc->handshake_failed = true;
    } else if (idx == -2) {
        bool master = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                      reply->element[0]->type == REDIS_REPLY_STRING &&
                      strcmp(reply->element[0]->str, "master") == 0;
        if (!master) {
            log_warn("the address Sentinel gave is not a master (failover in progress?)",
                     " conn=%s addr=%s:%d", rc->name, rc->host, rc->port);
            rc->handshake_failed = true;
        }
    } else if (idx >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(rc->sha[idx], reply->str, 40);
        rc->sha[idx][40] = '\0';
    }
    if (--rc->handshake_left > 0) return;
    if (rc->handshake_failed) {
        report_down(rc, "handshake failed");
        redisAsyncDisconnect(ac);
        return;
    }
    uv_timer_stop(&rc->deadline);
    rc->state = UP;
    rc->backoff_ms = BACKOFF_MIN_MS;
    if (rc->ever_up) rc->reconnects++;
    rc->ever_up = true;
    rc->down_reported = false;
    log_info("redis connected", " conn=%s", rc->name);
    if (rc->ev.up_cb) rc->ev.up_cb(rc, rc->ev.arg);
}

static void connect_cb(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rconn *rc = ac->data;
    if (rc == NULL) return;
    if (status != REDIS_OK) {
        rc->ac = NULL; /* hiredis frees it after this callback */
        drop_tls(rc);
        if (rc->state == CLOSING) return;
        report_down(rc, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule_retry(rc);
        return;
    }
    rc->state = HANDSHAKE;
    rc->handshake_left = 0;
    rc->handshake_failed = false;
    if (rc->url.pass[0]) {
        if (rc->url.user[0])
            redisAsyncCommand(ac, handshake_reply_cb, (void *)(intptr_t)-1, "AUTH %s %s",
                              rc->url.user, rc->url.pass);
        else
            redisAsyncCommand(ac, handshake_reply_cb, (void *)(intptr_t)-1, "AUTH %s",
                              rc->url.pass);
        rc->handshake_left++;
    }
    if (rc->url.db) {
        redisAsyncCommand(ac, handshake_reply_cb, (void *)(intptr_t)-1, "SELECT %d", rc->url.db);
        rc->handshake_left++;
    }
    if (rc->url.nsentinels > 0) {
        redisAsyncCommand(ac, handshake_reply_cb, (void *)(intptr_t)-2, "ROLE");
        rc->handshake_left++;
    }
    if (rc->load_scripts) {
        for (int i = 0; i < SCRIPT_COUNT; i++) {
            const struct script_src *s = script_get((enum script_id)i);
            redisAsyncCommand(ac, handshake_reply_cb, (void *)(intptr_t)i, "SCRIPT LOAD %b",
                              s->text, s->len);
            rc->handshake_left++;
        }
    }
    /* Nothing to wait for: finish the handshake with a PING so the path is the same. */
    if (rc->handshake_left == 0) {
        redisAsyncCommand(ac, handshake_reply_cb, (void *)(intptr_t)-1, "PING");
        rc->handshake_left++;
    }
}

static void resolve(struct rconn *rc);
static void resolve_tls_cb(struct tls_bridge *b, const char *path, const char *err, void *arg);
static void ask_node(struct rconn *rc, redisAsyncContext *ac);
static void deadline_cb(uv_timer_t *t);

static void drop_watch(struct rconn *rc) {
    redisAsyncContext *ac = rc->watch;
    close_bridge(&rc->watch_tls);
    if (!ac) return;
    rc->watch = NULL;   /* its callback, run with NULL by the free, then ignores it */
    redisAsyncFree(ac); /* deferred by hiredis when called from its own callback */
}

/* +switch-master "<name> <old ip> <old port> <new ip> <new port>": ours moved, reconnect. */
static void watch_cb(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (rc->watch != ac) return;
    if (reply == NULL) {
        rc->watch = NULL;
        close_bridge(&rc->watch_tls);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    size_t n = strlen(rc->url.master);
    const char *msg = reply->element[2]->str;
    if (strncmp(msg, rc->url.master, n) != 0 || msg[n] != ' ') return;
    log_warn("sentinel switched the master; reconnecting", " conn=%s switch=\"%s\"", rc->name, msg);
    drop_watch(rc);
    rconn_reset(rc, "sentinel switched the master");
}

/* The sentinel's answer (NULL when it could not be reached: hiredis runs the callback of a
 * queued command with NULL when the connection fails). Drives the next step either way. */
static void sentinel_reply_cb(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (rc->state != RESOLVING || rc->sac != ac) return;
    rc->sac = NULL;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(rc->host, sizeof rc->host, "%s", reply->element[0]->str);
        rc->port = atoi(reply->element[1]->str);
        drop_watch(rc);
        rc->watch = ac; /* keep it: it tells us when the master moves */
        rc->watch_tls = rc->sac_tls;
        rc->sac_tls = NULL;
        redisAsyncCommand(ac, watch_cb, rc, "SUBSCRIBE +switch-master");
        log_debug("sentinel named the master", " conn=%s master=%s addr=%s:%d", rc->name,
                  rc->url.master, rc->host, rc->port);
        connect_master(rc);
        return;
    }
    if (reply) redisAsyncDisconnect(ac); /* answered, but not the master's address */
    close_bridge(&rc->sac_tls);
    const struct rurl_sentinel *s = &rc->url.sentinels[rc->sentinel];
    log_warn("sentinel did not name the master", " conn=%s sentinel=%s:%d master=%s", rc->name,
             s->host, s->port, rc->url.master);
    rc->sentinel++;
    resolve(rc);
}

/* Redis Cluster: a seed node's CLUSTER SLOTS (NULL: not reached). Entries are [start, end,
 * [ip, port, id], replicas...]; the one holding our namespace's slot names its primary. */
static void cluster_reply_cb(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (rc->state != RESOLVING || rc->sac != ac) return;
    rc->sac = NULL;
    const struct rurl_sentinel *seed = &rc->url.sentinels[rc->sentinel];
    for (size_t i = 0; reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        if (rc->url.slot < e->element[0]->integer || rc->url.slot > e->element[1]->integer)
            continue;
        const redisReply *ip = e->element[2]->element[0], *port = e->element[2]->element[1];
        if (ip->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER) break;
        /* An empty address means "the node you asked". */
        snprintf(rc->host, sizeof rc->host, "%s", ip->len ? ip->str : seed->host);
        rc->port = (int)port->integer;
        log_debug("cluster named the slot's primary", " conn=%s slot=%d addr=%s:%d", rc->name,
                  rc->url.slot, rc->host, rc->port);
        redisAsyncDisconnect(ac);
        close_bridge(&rc->sac_tls);
        connect_master(rc);
        return;
    }
    if (reply) redisAsyncDisconnect(ac);
    close_bridge(&rc->sac_tls);
    log_warn("cluster node did not name the namespace's slot owner", " conn=%s node=%s:%d slot=%d",
             rc->name, seed->host, seed->port, rc->url.slot);
    rc->sentinel++;
    resolve(rc);
}

/* Asks sentinel (or cluster seed) number rc->sentinel; past the last one, waits and starts
 * over. */
static void resolve(struct rconn *rc) {
    if (rc->sentinel >= rc->url.nsentinels) {
        rc->sentinel = 0;
        report_down(rc, rc->url.cluster ? "no cluster node named the owner of the namespace's slot"
                                        : "no sentinel named the master");
        schedule_retry(rc);
        return;
    }
    const struct rurl_sentinel *s = &rc->url.sentinels[rc->sentinel];
    rc->state = RESOLVING;
    uv_timer_start(&rc->deadline, deadline_cb, CONNECT_TIMEOUT_MS, 0);
    if (rc->url.tls) { /* the TCP connect and the handshake in the bridge's thread */
        struct tls_opts o = {s->host,      s->port,     rc->url.ca,
                             rc->url.cert, rc->url.key, CONNECT_TIMEOUT_MS,
                             rc->url.sni};
        rc->sac_tls = tls_bridge_start(rc->loop, &o, resolve_tls_cb, rc);
        return;
    }
    ask_node(rc, redisAsyncConnect(s->host, s->port));
}

/* rediss-sentinel://, rediss-cluster://: the TLS link to the sentinel or seed node being asked
 * is up (path: where hiredis connects) or failed (err: the next one is asked). */
static void resolve_tls_cb(struct tls_bridge *b, const char *path, const char *err, void *arg) {
    struct rconn *rc = arg;
    if (rc->sac_tls != b || rc->state != RESOLVING) return;
    if (err) {
        const struct rurl_sentinel *s = &rc->url.sentinels[rc->sentinel];
        log_warn(rc->url.cluster ? "redis TLS connection to a cluster node failed"
                                 : "redis TLS connection to a sentinel failed",
                 " conn=%s addr=%s:%d reason=\"%s\"", rc->name, s->host, s->port, err);
        close_bridge(&rc->sac_tls);
        rc->sentinel++;
        resolve(rc);
        return;
    }
    ask_node(rc, redisAsyncConnectUnix(path));
}

/* Asks the sentinel or seed node (a new hiredis context, plain or through sac_tls) for the
 * address; its reply callback drives the next step. */
static void ask_node(struct rconn *rc, redisAsyncContext *ac) {
    if (ac == NULL) abort();
    if (ac->err || rloop_attach(ac, rc->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        close_bridge(&rc->sac_tls);
        rc->sentinel++;
        resolve(rc);
        return;
    }
    rc->sac = ac;
    if (rc->url.cluster) { /* cluster nodes want the same credentials as the primary */
        if (rc->url.pass[0] && rc->url.user[0])
            redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", rc->url.user, rc->url.pass);
        else if (rc->url.pass[0])
            redisAsyncCommand(ac, NULL, NULL, "AUTH %s", rc->url.pass);
        redisAsyncCommand(ac, cluster_reply_cb, rc, "CLUSTER SLOTS");
        return;
    }
    redisAsyncCommand(ac, sentinel_reply_cb, rc, "SENTINEL get-master-addr-by-name %s",
                      rc->url.master);
}

static void deadline_cb(uv_timer_t *t) {
    struct rconn *rc = container_of(t, struct rconn, deadline);
    if (rc->state == RESOLVING) {
        /* Freeing runs sentinel_reply_cb with NULL, which moves on to the next sentinel. */
        if (rc->sac) {
            redisAsyncFree(rc->sac);
            return;
        }
        /* Still in the TLS handshake with it: give up on it and ask the next one. */
        const struct rurl_sentinel *s = &rc->url.sentinels[rc->sentinel];
        log_warn("redis TLS connection timed out", " conn=%s addr=%s:%d", rc->name, s->host,
                 s->port);
        close_bridge(&rc->sac_tls);
        rc->sentinel++;
        resolve(rc);
        return;
    }
    if (rc->state != CONNECTING && rc->state != HANDSHAKE) return;
    report_down(rc, rc->tls && !rc->ac ? "TLS connect timed out" : "connect timed out");
    drop_tls(rc);
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        bool connected = (ac->c.flags & REDIS_CONNECTED) != 0;
        if (!connected) {
            ac->data = NULL; /* no callback will run for it */
            rc->ac = NULL;
        }
        redisAsyncFree(ac); /* when connected, disconnect_cb reschedules */
        if (connected) return;
    }
    schedule_retry(rc);
}

static void connect_now(struct rconn *rc) {
    if (rc->state == CLOSING) return;
    if (rc->url.nsentinels > 0) {
        rc->sentinel = 0;
        resolve(rc);
        return;
    }
    snprintf(rc->host, sizeof rc->host, "%s", rc->url.host);
    rc->port = rc->url.port;
    connect_master(rc);
}

static void attach(struct rconn *rc, redisAsyncContext *ac);

/* rediss://: the TLS connection is up (path: where hiredis connects) or failed (err). */
static void tls_up_cb(struct tls_bridge *b, const char *path, const char *err, void *arg) {
    struct rconn *rc = arg;
    if (rc->tls != b || rc->state != CONNECTING) return;
    if (err) {
        log_error("redis TLS connection failed", " conn=%s addr=%s:%d reason=\"%s\"", rc->name,
                  rc->host, rc->port, err);
        report_down(rc, err);
        drop_tls(rc);
        schedule_retry(rc);
        return;
    }
    attach(rc, redisAsyncConnectUnix(path));
}

static void connect_master(struct rconn *rc) {
    if (rc->url.tls) {
        /* The TCP connect and the handshake run in the bridge's thread, under our deadline. */
        struct tls_opts o = {rc->host,    rc->port,           rc->url.ca, rc->url.cert,
                             rc->url.key, CONNECT_TIMEOUT_MS, rc->url.sni};
        rc->tls = tls_bridge_start(rc->loop, &o, tls_up_cb, rc);
        rc->state = CONNECTING;
        uv_timer_start(&rc->deadline, deadline_cb, CONNECT_TIMEOUT_MS, 0);
        return;
    }
    attach(rc, rc->url.path[0] ? redisAsyncConnectUnix(rc->url.path)
                               : redisAsyncConnect(rc->host, rc->port));
}

/* Takes over a new hiredis context: callbacks, the loop, the deadline. */
static void attach(struct rconn *rc, redisAsyncContext *ac) {
    if (ac == NULL) abort(); /* out of memory */
    if (ac->err) {
        report_down(rc, ac->errstr);
        redisAsyncFree(ac);
        drop_tls(rc);
        schedule_retry(rc);
        return;
    }
    ac->data = rc;
    if (rloop_attach(ac, rc->loop) != REDIS_OK) {
        report_down(rc, "cannot attach to the event loop");
        redisAsyncFree(ac);
        drop_tls(rc);
        schedule_retry(rc);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    rc->ac = ac;
    rc->state = CONNECTING;
    if (!rc->tls) uv_timer_start(&rc->deadline, deadline_cb, CONNECT_TIMEOUT_MS, 0);
}

static void retry_cb(uv_timer_t *t) { connect_now(container_of(t, struct rconn, retry)); }

struct rconn *rconn_new(uv_loop_t *loop, const struct rurl *url, const char *name,
                        bool load_scripts, const struct rconn_events *ev) {
    struct rconn *rc = xcalloc(1, sizeof *rc);
    rc->loop = loop;
    rc->url = *url;
    snprintf(rc->name, sizeof rc->name, "%s", name);
    rc->load_scripts = load_scripts;
    if (ev) rc->ev = *ev;
    rc->backoff_ms = BACKOFF_MIN_MS;
    rc->state = IDLE;
    uv_timer_init(loop, &rc->retry);
    uv_timer_init(loop, &rc->deadline);
    return rc;
}

void rconn_start(struct rconn *rc) {
    if (rc->state == IDLE && !uv_is_active((uv_handle_t *)&rc->retry)) connect_now(rc);
}

bool rconn_is_up(const struct rconn *rc) { return rc->state == UP && rc->ac != NULL; }

unsigned long rconn_reconnects(const struct rconn *rc) { return rc->reconnects; }

/* A command awaiting its reply: adapts hiredis's callback to ours (rc first, typed reply). */
struct pending {
    struct rconn *rc;
    rconn_reply_cb cb;
    void *priv;
    /* For EVALSHA only: a copy of the arguments, to retry with EVAL on NOSCRIPT. */
    enum script_id script;
    int argc;
    char **argv;
    size_t *lens;
};

static void pending_free(struct pending *c) {
    for (int i = 0; i < c->argc; i++) free(c->argv[i]);
    free(c->argv);
    free(c->lens);
    free(c);
}

static void pending_reply_cb(redisAsyncContext *ac, void *r, void *priv) {
    struct pending *c = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && c->rc->url.cluster && c->rc->ac == ac) {
        /* Redis Cluster: the command did not run. MOVED: the namespace's slot has a new owner
         * (a finished migration, a failover): ask the cluster again. ASK, TRYAGAIN (the slot is
         * migrating) and CLUSTERDOWN: not now. Either way the caller sees what a lost link
         * shows (NULL: unknown, try again at its next turn), never a half-known error. */
        bool moved = strncmp(reply->str, "MOVED ", 6) == 0;
        if (moved || strncmp(reply->str, "ASK ", 4) == 0 ||
            strncmp(reply->str, "TRYAGAIN", 8) == 0 ||
            strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
            struct rconn *rc = c->rc;
            log_debug("redis cluster redirection", " conn=%s reply=\"%s\"", rc->name, reply->str);
            if (moved) rc->moved++;
            c->cb(rc, NULL, c->priv);
            pending_free(c);
            if (moved) {
                log_warn("the namespace's slot moved to another cluster node; reconnecting",
                         " conn=%s reply=\"%s\"", rc->name, reply->str);
                rconn_reset(rc, "the namespace's slot moved");
            }
            return;
        }
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && c->argv &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && c->rc->ac == ac) {
        /* The script cache was flushed under us: EVAL the text once, which reloads it. */
        const struct script_src *s = script_get(c->script);
        free(c->argv[1]);
        memcpy(c->argv[0], "EVAL", 5);
        c->lens[0] = 4;
        c->argv[1] = xstrndup(s->text, s->len);
        c->lens[1] = s->len;
        char **argv = c->argv;
        size_t *lens = c->lens;
        int argc = c->argc;
        c->argv = NULL; /* no second retry */
        c->argc = 0;
        log_warn("script cache flushed; reloading", " script=%s", s->name);
        int rc = redisAsyncCommandArgv(ac, pending_reply_cb, c, argc, (const char **)argv, lens);
        for (int i = 0; i < argc; i++) free(argv[i]);
        free(argv);
        free(lens);
        if (rc == REDIS_OK) return;
        c->cb(c->rc, NULL, c->priv);
        free(c);
        return;
    }
    c->cb(c->rc, reply, c->priv);
    pending_free(c);
}

int rconn_command(struct rconn *rc, rconn_reply_cb cb, void *priv, int argc, const char **argv,
                  const size_t *lens) {
    if (!rconn_is_up(rc)) return SHOAL_EREDIS;
    struct pending *c = xcalloc(1, sizeof *c);
    c->rc = rc;
    c->cb = cb;
    c->priv = priv;
    if (redisAsyncCommandArgv(rc->ac, pending_reply_cb, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return SHOAL_EREDIS;
    }
    return 0;
}

static void sub_reply_cb(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    if (rc->sub_cb) rc->sub_cb(rc, r, rc->sub_priv);
}

int rconn_subscribe(struct rconn *rc, const char *const *channels, int n, rconn_reply_cb cb,
                    void *priv) {
    if (!rconn_is_up(rc) || n < 1 || n > 8) return SHOAL_EREDIS;
    rc->sub_cb = cb;
    rc->sub_priv = priv;
    const char *argv[9] = {"SUBSCRIBE"};
    for (int i = 0; i < n; i++) argv[i + 1] = channels[i];
    return redisAsyncCommandArgv(rc->ac, sub_reply_cb, rc, n + 1, argv, NULL) == REDIS_OK
               ? 0
               : SHOAL_EREDIS;
}

int rconn_call(struct rconn *rc, const struct script_call *call, rconn_reply_cb cb, void *priv) {
    if (!rconn_is_up(rc)) return SHOAL_EREDIS;
    enum script_id id = call->id;
    int nkeys = call->nkeys, argc = call->argc;
    const char **argv = call->argv;
    const size_t *lens = call->lens;
    int n = argc + 3;
    struct pending *c = xcalloc(1, sizeof *c);
    c->rc = rc;
    c->cb = cb;
    c->priv = priv;
    c->script = id;
    c->argc = n;
    c->argv = xcalloc((size_t)n, sizeof *c->argv);
    c->lens = xcalloc((size_t)n, sizeof *c->lens);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    c->argv[0] = xstrdup("EVALSHA");
    c->lens[0] = 7;
    c->argv[1] = xstrdup(rc->sha[id]);
    c->lens[1] = strlen(rc->sha[id]);
    c->argv[2] = xstrdup(nk);
    c->lens[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        size_t l = lens ? lens[i] : strlen(argv[i]);
        c->argv[i + 3] = xstrndup(argv[i], l);
        c->lens[i + 3] = l;
    }
    if (redisAsyncCommandArgv(rc->ac, pending_reply_cb, c, n, (const char **)c->argv, c->lens) !=
        REDIS_OK) {
        pending_free(c);
        return SHOAL_EREDIS;
    }
    return 0;
}

void rconn_reset(struct rconn *rc, const char *why) {
    if (rc->state == CLOSING || rc->ac == NULL) return;
    report_down(rc, why);
    redisAsyncContext *ac = rc->ac;
    if (!(ac->c.flags & REDIS_CONNECTED)) {
        ac->data = NULL;
        rc->ac = NULL;
        redisAsyncFree(ac);
        drop_tls(rc);
        schedule_retry(rc);
        return;
    }
    redisAsyncFree(ac); /* disconnect_cb schedules the retry */
}

static void timer_closed_cb(uv_handle_t *h) {
    struct rconn *rc = h->data;
    if (++rc->closed_handles < 2) return;
    void (*done)(void *) = rc->done;
    void *arg = rc->done_arg;
    free(rc);
    if (done) done(arg);
}

void rconn_free(struct rconn *rc, void (*done)(void *arg), void *arg) {
    rc->state = CLOSING;
    rc->sub_cb = NULL;
    if (rc->sac) {
        redisAsyncContext *sac = rc->sac;
        rc->sac = NULL;
        redisAsyncFree(sac); /* its callback sees CLOSING and returns */
    }
    close_bridge(&rc->sac_tls);
    drop_watch(rc);
    drop_tls(rc);
    rc->done = done;
    rc->done_arg = arg;
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        rc->ac = NULL;
        ac->data = NULL;    /* disconnect_cb must not touch rc any more */
        redisAsyncFree(ac); /* pending callbacks run with NULL (they still see a valid rc) */
    }
    rc->retry.data = rc;
    rc->deadline.data = rc;
    uv_close((uv_handle_t *)&rc->retry, timer_closed_cb);
    uv_close((uv_handle_t *)&rc->deadline, timer_closed_cb);
}
