/* rsync.h: a blocking Redis connection for the admin CLI (never used on an event loop).
 * Connect with a timeout, AUTH, SELECT; scripts run with EVALSHA and are loaded on NOSCRIPT. */
#ifndef SHOAL_RSYNC_H
#define SHOAL_RSYNC_H

#include <hiredis/hiredis.h>

#include "common/calls.h"
#include "common/rurl.h"

struct rsync {
    redisContext *c;              /* owned */
    char sha[SCRIPT_COUNT][41];   /* "" until loaded */
    bool tls;                     /* through the TLS bridge (common/tls.h) */
    struct tls_fd_bridge *bridge; /* its thread, joined at close */
    struct rurl url; /* where it is connected (its cluster flag decides redirections) */
    int timeout_ms;  /* the connect timeout, for an ASK redirection's own connection */
};

/* Connects to the URL within timeout_ms. Returns 0, or SHOAL_EREDIS/SHOAL_EURL with a one-line
 * message in err ("cannot reach Redis at 127.0.0.1:6379: Connection refused"). */
int rsync_open(struct rsync *r, const char *url, int timeout_ms, char *err, size_t errlen);
/* The same for namespace ns: with a redis-cluster:// URL, the connection goes to the primary
 * that holds ns's slot (rsync_open assumes "shoal"). */
int rsync_open_ns(struct rsync *r, const char *url, const char *ns, int timeout_ms, char *err,
                  size_t errlen);
/* The same with a parsed URL (e.g. with its password from rurl_password_file). */
int rsync_open_rurl(struct rsync *r, const struct rurl *url, int timeout_ms, char *err,
                    size_t errlen);
void rsync_close(struct rsync *r);

/* Runs a script call (built by common/calls.h; free it afterwards). Returns the reply (caller
 * frees with freeReplyObject), or NULL with err set when the connection failed. An error reply
 * is returned as a reply. */
redisReply *rsync_call(struct rsync *r, const struct script_call *call, char *err, size_t errlen);

/* The same with a hand-made argument list (nkeys of argv are keys; lens may be NULL for
 * NUL-terminated strings). Only for tests that send a script a deliberately malformed list:
 * everything else builds its call with common/calls.h, the one place that knows the order. */
redisReply *rsync_eval(struct rsync *r, enum script_id id, int nkeys, int argc, const char **argv,
                       const size_t *lens, char *err, size_t errlen);

/* Runs a plain command (printf-style, hiredis formatting). Same return as rsync_call. In
 * cluster mode an ASK reply (the key moved with a slot migration in progress) is followed once:
 * ASKING and the command on the node named. */
redisReply *rsync_cmd(struct rsync *r, char *err, size_t errlen, const char *fmt, ...);

#endif
