/* rsync.c: the CLI's blocking Redis connection. */
#include "common/rsync.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/err.h"
#include "common/tls.h"
#include "common/util.h"

static int lost(struct rsync *r, char *err, size_t errlen) {
    const char *why = r->c->errstr[0] ? r->c->errstr : "?";
    /* A TLS port answers plain text by closing the connection. */
    bool closed = strstr(why, "reset") || strstr(why, "closed") || strstr(why, "EOF");
    snprintf(err, errlen, "Redis connection failed: %s%s", why,
             closed && !r->tls ? " (if this port speaks TLS, use rediss://)" : "");
    return SHOAL_EREDIS;
}

/* Sentinel mode: asks each sentinel for the master's address until one answers. */
static int ask_sentinels(struct rurl *u, struct timeval tv, char *err, size_t errlen) {
    for (int i = 0; i < u->nsentinels; i++) {
        redisContext *s = redisConnectWithTimeout(u->sentinels[i].host, u->sentinels[i].port, tv);
        if (s == NULL) abort();
        redisReply *r =
            s->err ? NULL : redisCommand(s, "SENTINEL get-master-addr-by-name %s", u->master);
        bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        if (ok) {
            snprintf(u->host, sizeof u->host, "%s", r->element[0]->str);
            u->port = atoi(r->element[1]->str);
        }
        if (r) freeReplyObject(r);
        redisFree(s);
        if (ok) return 0;
    }
    snprintf(err, errlen, "no sentinel named master '%s' (asked %d sentinel%s)", u->master,
             u->nsentinels, u->nsentinels == 1 ? "" : "s");
    return SHOAL_EREDIS;
}

int rsync_open(struct rsync *r, const char *url, int timeout_ms, char *err, size_t errlen) {
    struct rurl u;
    int rc;
    memset(r, 0, sizeof *r);
    if ((rc = rurl_parse(url, &u, err, errlen)) != 0) return rc;
    /* The C client's rediss:// takes its files from the environment, as the CLI's flags do. */
    if (u.tls && (rc = rurl_tls_files(&u, getenv("SHOAL_REDIS_CA"), getenv("SHOAL_REDIS_CERT"),
                                      getenv("SHOAL_REDIS_KEY"), err, errlen)) != 0)
        return rc;
    return rsync_open_rurl(r, &u, timeout_ms, err, errlen);
}

int rsync_open_rurl(struct rsync *r, const struct rurl *url, int timeout_ms, char *err,
                    size_t errlen) {
    struct rurl u = *url; /* Sentinel mode fills in the master's address */
    int rc;
    memset(r, 0, sizeof *r);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (u.nsentinels > 0 && (rc = ask_sentinels(&u, tv, err, errlen)) != 0) return rc;
    r->tls = u.tls;
    if (u.tls) { /* TLS under hiredis: the bridge's local end (common/tls.h) */
        struct tls_opts o = {u.host, u.port, u.ca, u.cert, u.key, timeout_ms};
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
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!r->sha[id][0] && load(r, id, err, errlen) != 0) break;
        av[1] = r->sha[id];
        reply = redisCommandArgv(r->c, n, av, al);
        if (reply == NULL) {
            lost(r, err, errlen);
            break;
        }
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
            attempt == 0) {
            freeReplyObject(reply);
            reply = NULL;
            r->sha[id][0] = '\0';
            continue;
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
    redisReply *reply = redisvCommand(r->c, fmt, ap);
    va_end(ap);
    if (reply == NULL) lost(r, err, errlen);
    return reply;
}
