/* rsync.c: the CLI's blocking Redis connection. */
#include "common/rsync.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/err.h"
#include "common/rurl.h"
#include "common/tls.h"
#include "common/util.h"

#define CLUSTER_TRIES 200 /* redirections followed per call: 5 s of 25 ms waits */

static int lost(struct rsync *r, char *err, size_t errlen) {
    const char *why = r->c->errstr[0] ? r->c->errstr : "?";
    /* A TLS port answers plain text by closing the connection. */
    bool closed = strstr(why, "reset") || strstr(why, "closed") || strstr(why, "EOF");
    snprintf(err, errlen, "Redis connection failed: %s%s", why,
             closed && !r->tls ? " (if this port speaks TLS, use rediss://)" : "");
    return SHOAL_EREDIS;
}

/* A short-lived blocking connection to a sentinel or a cluster seed node s: over TLS when the
 * URL says so (rediss-sentinel://, rediss-cluster://), with the same CA, certificate and name as
 * the master's. Returns the context (s->err may be set; its bridge in *b, joined by aux_close),
 * or NULL with why set (a TLS failure, in words). */
static redisContext *aux_open(const struct rurl *u, const struct rurl_sentinel *s,
                              struct timeval tv, struct tls_fd_bridge **b, char *why,
                              size_t whylen) {
    *b = NULL;
    if (!u->tls) {
        redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
        if (c == NULL) abort();
        if (c->err) snprintf(why, whylen, "%s:%d: %s", s->host, s->port, c->errstr);
        return c;
    }
    int ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    struct tls_opts o = {s->host, s->port, u->ca, u->cert, u->key, ms, u->sni};
    int fd = tls_connect_fd(&o, b, why, whylen);
    if (fd < 0) return NULL;
    redisContext *c = redisConnectFd(fd);
    if (c == NULL) abort();
    redisSetTimeout(c, tv);
    return c;
}

static void aux_close(redisContext *c, struct tls_fd_bridge *b) {
    if (c) redisFree(c); /* closes the bridge's local end: its thread ends */
    tls_fd_bridge_join(b);
}

/* Cluster mode: asks each seed node (CLUSTER SLOTS) which primary holds the namespace's slot.
 */
static int ask_cluster(struct rurl *u, struct timeval tv, char *err, size_t errlen) {
    char why[512] = "";
    for (int i = 0; i < u->nsentinels; i++) {
        struct tls_fd_bridge *b;
        redisContext *s = aux_open(u, &u->sentinels[i], tv, &b, why, sizeof why);
        if (s && !s->err && u->pass[0]) {
            redisReply *a = u->user[0] ? redisCommand(s, "AUTH %s %s", u->user, u->pass)
                                       : redisCommand(s, "AUTH %s", u->pass);
            if (a) freeReplyObject(a);
        }
        redisReply *r = !s || s->err ? NULL : redisCommand(s, "CLUSTER SLOTS");
        bool ok = false;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements && !ok; k++) {
            const redisReply *e = r->element[k];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
                e->element[0]->type != REDIS_REPLY_INTEGER ||
                e->element[1]->type != REDIS_REPLY_INTEGER ||
                e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
                u->slot < e->element[0]->integer || u->slot > e->element[1]->integer)
                continue;
            const redisReply *ip = e->element[2]->element[0], *port = e->element[2]->element[1];
            if (ip->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER) break;
            snprintf(u->host, sizeof u->host, "%s", ip->len ? ip->str : u->sentinels[i].host);
            u->port = (int)port->integer;
            ok = true;
        }
        if (r) freeReplyObject(r);
        aux_close(s, b);
        if (ok) return 0;
    }
    snprintf(err, errlen, "no Redis Cluster node named the owner of slot %d (asked %d node%s%s%s)",
             u->slot, u->nsentinels, u->nsentinels == 1 ? "" : "s", why[0] ? "; last: " : "", why);
    return SHOAL_EREDIS;
}

/* Sentinel mode: asks each sentinel for the master's address until one answers. */
static int ask_sentinels(struct rurl *u, struct timeval tv, char *err, size_t errlen) {
    char why[512] = "";
    for (int i = 0; i < u->nsentinels; i++) {
        struct tls_fd_bridge *b;
        redisContext *s = aux_open(u, &u->sentinels[i], tv, &b, why, sizeof why);
        redisReply *r =
            !s || s->err ? NULL : redisCommand(s, "SENTINEL get-master-addr-by-name %s", u->master);
        bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        if (ok) {
            snprintf(u->host, sizeof u->host, "%s", r->element[0]->str);
            u->port = atoi(r->element[1]->str);
        }
        if (r) freeReplyObject(r);
        aux_close(s, b);
        if (ok) return 0;
    }
    snprintf(err, errlen, "no sentinel named master '%s' (asked %d sentinel%s%s%s)", u->master,
             u->nsentinels, u->nsentinels == 1 ? "" : "s", why[0] ? "; last: " : "", why);
    return SHOAL_EREDIS;
}

int rsync_open(struct rsync *r, const char *url, int timeout_ms, char *err, size_t errlen) {
    return rsync_open_ns(r, url, "shoal", timeout_ms, err, errlen);
}

int rsync_open_ns(struct rsync *r, const char *url, const char *ns, int timeout_ms, char *err,
                  size_t errlen) {
    struct rurl u;
    int rc;
    memset(r, 0, sizeof *r);
    if ((rc = rurl_parse(url, &u, err, errlen)) != 0) return rc;
    if (u.cluster) rurl_cluster_namespace(&u, ns);
    /* The C client's rediss:// takes its files from the environment, as the CLI's flags do. */
    if (u.tls && (rc = rurl_tls_files(&u, getenv("SHOAL_REDIS_CA"), getenv("SHOAL_REDIS_CERT"),
                                      getenv("SHOAL_REDIS_KEY"), err, errlen)) != 0)
        return rc;
    if (u.tls && (rc = rurl_tls_name(&u, getenv("SHOAL_REDIS_SNI"), err, errlen)) != 0) return rc;
    return rsync_open_rurl(r, &u, timeout_ms, err, errlen);
}

int rsync_open_rurl(struct rsync *r, const struct rurl *url, int timeout_ms, char *err,
                    size_t errlen) {
    struct rurl u = *url; /* Sentinel or cluster mode fills in the master's address */
    int rc;
    memset(r, 0, sizeof *r);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (u.cluster && (rc = ask_cluster(&u, tv, err, errlen)) != 0) return rc;
    if (!u.cluster && u.nsentinels > 0 && (rc = ask_sentinels(&u, tv, err, errlen)) != 0) return rc;
    r->url = u;
    r->tls = u.tls;
    r->timeout_ms = timeout_ms;
    if (u.tls) { /* TLS under hiredis: the bridge's local end (common/tls.h) */
        struct tls_opts o = {u.host, u.port, u.ca, u.cert, u.key, timeout_ms, u.sni};
        int fd = tls_connect_fd(&o, &r->bridge, err, errlen);
        if (fd < 0) return SHOAL_EREDIS;
        r->c = redisConnectFd(fd);
    } else {
        r->c = u.path[0] ? redisConnectUnixWithTimeout(u.path, tv)
                         : redisConnectWithTimeout(u.host, u.port, tv);
    }
    if (r->c == NULL) abort();
    if (r->c->err) {
        if (u.path[0])
            snprintf(err, errlen, "cannot reach Redis at %s: %s", u.path, r->c->errstr);
        else
            snprintf(err, errlen, "cannot reach Redis at %s:%d: %s", u.host, u.port, r->c->errstr);
        goto fail_connected;
    }
    redisSetTimeout(r->c, tv);
    redisReply *reply = NULL;
    if (u.pass[0]) {
        reply = u.user[0] ? redisCommand(r->c, "AUTH %s %s", u.user, u.pass)
                          : redisCommand(r->c, "AUTH %s", u.pass);
        if (reply == NULL) {
            lost(r, err, errlen);
            goto fail_connected;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis refused AUTH: %s", reply->str);
            goto fail_reply;
        }
        freeReplyObject(reply);
    }
    if (u.db) {
        reply = redisCommand(r->c, "SELECT %d", u.db);
        if (reply == NULL) {
            lost(r, err, errlen);
            goto fail_connected;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis refused SELECT %d: %s", u.db, reply->str);
            goto fail_reply;
        }
        freeReplyObject(reply);
    }
    return 0;
fail_reply:
    freeReplyObject(reply);
fail_connected:
    redisFree(r->c);
    r->c = NULL;
    tls_fd_bridge_join(r->bridge);
    r->bridge = NULL;
    return SHOAL_EREDIS;
}

void rsync_close(struct rsync *r) {
    if (r->c) redisFree(r->c); /* closes the bridge's local end: its thread ends */
    r->c = NULL;
    tls_fd_bridge_join(r->bridge);
    r->bridge = NULL;
}

static int load(struct rsync *r, enum script_id id, char *err, size_t errlen) {
    const struct script_src *s = script_get(id);
    redisReply *reply = redisCommand(r->c, "SCRIPT LOAD %b", s->text, s->len);
    if (reply == NULL) return lost(r, err, errlen);
    int rc = 0;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(r->sha[id], reply->str, 41);
    } else {
        snprintf(err, errlen, "Redis refused SCRIPT LOAD of %s: %s", s->name,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        rc = SHOAL_EREPLY;
    }
    freeReplyObject(reply);
    return rc;
}

/* ASK <slot> <host:port>: the namespace's slot is migrating and the command's keys are no
 * longer on the node asked. Runs cmd (formatted RESP, len bytes) once on host:port after
 * ASKING, which lets the importing node serve the slot for the next command only: on a
 * connection of its own (TLS and AUTH as the URL says, closed afterwards), ASKING and cmd
 * pipelined. Returns the reply (an error reply too: TRYAGAIN while some of a script's keys have
 * not arrived yet), or NULL with err set when that node could not be reached or refused
 * ASKING. */
static redisReply *ask_run(struct rsync *r, const char *ask, const char *cmd, int len, char *err,
                           size_t errlen) {
    const char *addr = strchr(ask + 4, ' '), *colon = addr ? strrchr(addr, ':') : NULL;
    struct rurl t = r->url;
    t.cluster = false;
    t.nsentinels = 0;
    t.path[0] = '\0';
    if (!colon || (size_t)(colon - addr - 1) >= sizeof t.host) {
        snprintf(err, errlen, "Redis Cluster: cannot read the redirection '%s'", ask);
        return NULL;
    }
    memcpy(t.host, addr + 1, (size_t)(colon - addr - 1));
    t.host[colon - addr - 1] = '\0';
    t.port = atoi(colon + 1);
    struct rsync to;
    if (rsync_open_rurl(&to, &t, r->timeout_ms, err, errlen) != 0) return NULL;
    redisReply *asking = NULL, *reply = NULL;
    redisAppendCommand(to.c, "ASKING");
    redisAppendFormattedCommand(to.c, cmd, (size_t)len);
    if (redisGetReply(to.c, (void **)&asking) != REDIS_OK ||
        redisGetReply(to.c, (void **)&reply) != REDIS_OK) {
        snprintf(err, errlen, "Redis Cluster: the ASK redirection to %s:%d failed: %s", t.host,
                 t.port, to.c->errstr[0] ? to.c->errstr : "connection lost");
        if (reply) freeReplyObject(reply);
        reply = NULL;
    } else if (asking->type == REDIS_REPLY_ERROR) { /* e.g. an ACL user without +asking */
        snprintf(err, errlen, "Redis Cluster: %s:%d refused ASKING: %s", t.host, t.port,
                 asking->str);
        freeReplyObject(reply);
        reply = NULL;
    }
    if (asking) freeReplyObject(asking);
    rsync_close(&to);
    return reply;
}

/* ask_run for a script call: EVAL of the script's text (the importing node may not have it
 * cached, and a SCRIPT LOAD in between would use up the ASKING). av/al: the EVALSHA call. */
static redisReply *ask_redirect(struct rsync *r, const char *ask, enum script_id id, int n,
                                const char **av, const size_t *al, char *err, size_t errlen) {
    const struct script_src *src = script_get(id);
    const char **av2 = xcalloc((size_t)n, sizeof *av2);
    size_t *al2 = xcalloc((size_t)n, sizeof *al2);
    memcpy(av2, av, (size_t)n * sizeof *av2);
    memcpy(al2, al, (size_t)n * sizeof *al2);
    av2[0] = "EVAL";
    al2[0] = 4;
    av2[1] = src->text;
    al2[1] = src->len;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, n, av2, al2);
    free(av2);
    free(al2);
    if (len < 0) abort(); /* out of memory */
    redisReply *reply = ask_run(r, ask, cmd, len, err, errlen);
    redisFreeCommand(cmd);
    return reply;
}

redisReply *rsync_eval(struct rsync *r, enum script_id id, int nkeys, int argc, const char **argv,
                       const size_t *lens, char *err, size_t errlen) {
    int n = argc + 3;
    const char **av = xcalloc((size_t)n, sizeof *av);
    size_t *al = xcalloc((size_t)n, sizeof *al);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    al[1] = 40;
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    redisReply *reply = NULL;
    bool noscript_retried = false;
    /* Bound: one NOSCRIPT reload, and in cluster mode CLUSTER_TRIES turns of TRYAGAIN or
     * CLUSTERDOWN (the slot is migrating: wait 25 ms), or of ASK (the call's keys have moved to
     * the importing node: one ASKING call there per turn, ask_redirect; TRYAGAIN from it, while
     * some keys are still on their way, waits as above). MOVED ends the call: the connection was
     * opened to the slot's owner, which has changed since (callers may share this struct by
     * value, so it is not reconnected in place). */
    for (int attempt = 0; attempt < CLUSTER_TRIES; attempt++) {
        if (!r->sha[id][0] && load(r, id, err, errlen) != 0) break;
        av[1] = r->sha[id];
        reply = redisCommandArgv(r->c, n, av, al);
        if (reply == NULL) {
            lost(r, err, errlen);
            break;
        }
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
            !noscript_retried) {
            noscript_retried = true;
            freeReplyObject(reply);
            reply = NULL;
            r->sha[id][0] = '\0';
            continue;
        }
        if (r->url.cluster && reply->type == REDIS_REPLY_ERROR && attempt + 1 < CLUSTER_TRIES) {
            int moved = strncmp(reply->str, "MOVED ", 6) == 0;
            if (moved || strncmp(reply->str, "ASK ", 4) == 0 ||
                strncmp(reply->str, "TRYAGAIN", 8) == 0 ||
                strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
                if (moved) { /* the slot moved during this command: say so; run it again */
                    snprintf(err, errlen,
                             "the namespace's slot moved to another cluster node (%s); nothing "
                             "was done, run the command again",
                             reply->str);
                    freeReplyObject(reply);
                    reply = NULL;
                    break;
                }
                if (strncmp(reply->str, "ASK ", 4) == 0) {
                    redisReply *there = ask_redirect(r, reply->str, id, n, av, al, err, errlen);
                    freeReplyObject(reply);
                    reply = there;
                    if (reply == NULL) break;
                    bool again = reply->type == REDIS_REPLY_ERROR &&
                                 (strncmp(reply->str, "TRYAGAIN", 8) == 0 ||
                                  strncmp(reply->str, "ASK ", 4) == 0 ||
                                  strncmp(reply->str, "CLUSTERDOWN", 11) == 0);
                    if (!again) break;
                }
                freeReplyObject(reply);
                reply = NULL;
                nanosleep(&(struct timespec){0, 25000000}, NULL);
                continue;
            }
        }
        break;
    }
    free(av);
    free(al);
    return reply;
}

redisReply *rsync_call(struct rsync *r, const struct script_call *call, char *err, size_t errlen) {
    return rsync_eval(r, call->id, call->nkeys, call->argc, call->argv, call->lens, err, errlen);
}

redisReply *rsync_cmd(struct rsync *r, char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) abort(); /* out of memory (the formats are ours) */
    redisReply *reply = NULL;
    if (redisAppendFormattedCommand(r->c, cmd, (size_t)len) != REDIS_OK ||
        redisGetReply(r->c, (void **)&reply) != REDIS_OK) {
        reply = NULL;
        lost(r, err, errlen);
    } else if (r->url.cluster && reply->type == REDIS_REPLY_ERROR &&
               strncmp(reply->str, "ASK ", 4) == 0) {
        /* A plain command's key moved with a slot migration: once to the importing node. */
        redisReply *there = ask_run(r, reply->str, cmd, len, err, errlen);
        freeReplyObject(reply);
        reply = there;
    }
    redisFreeCommand(cmd);
    return reply;
}
