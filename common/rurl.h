/* rurl.h: Redis URLs. redis://[user:pass@]host[:port][/db] and unix:///path[?db=N].
 * (redis-sentinel:// is recognised and refused with a clear message until Sentinel lands.) */
#ifndef SHOAL_RURL_H
#define SHOAL_RURL_H

#include <stddef.h>

struct rurl {
    char host[256];      /* TCP host ("" for unix) */
    int port;            /* TCP port */
    char path[256];      /* unix socket path ("" for TCP) */
    char user[128];      /* ACL user ("" = none, AUTH with password only) */
    char pass[256];      /* password ("" = no AUTH) */
    int db;              /* SELECT this db when non-zero */
};

/* Parses url into *u. Returns 0, or SHOAL_EURL with a one-line reason in err. */
int rurl_parse(const char *url, struct rurl *u, char *err, size_t errlen);

#endif
