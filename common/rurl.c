/* rurl.c: Redis URL parsing, with percent-decoding of user and password. */
#include "common/rurl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"

static int decode(const char *s, size_t n, char *out, size_t outlen) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 1 >= outlen) return -1;
        if (s[i] == '%' && i + 2 < n &&
            isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
            char hx[3] = {s[i + 1], s[i + 2], 0};
            out[o++] = (char)strtol(hx, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return 0;
}

static int fail(char *err, size_t errlen, const char *url, const char *why) {
    snprintf(err, errlen, "Redis URL '%s': %s", url, why);
    return SHOAL_EURL;
}

int rurl_parse(const char *url, struct rurl *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/' || n >= sizeof u->path)
            return fail(err, errlen, url, "expected unix:///absolute/path");
        memcpy(u->path, p, n);
        if (q && strncmp(q, "?db=", 4) == 0) {
            int64_t db;
            if (parse_int64(q + 4, 0, 100000, &db)) return fail(err, errlen, url, "bad db number");
            u->db = (int)db;
        } else if (q) {
            return fail(err, errlen, url, "only ?db=N is understood after a socket path");
        }
        return 0;
    }
    if (strncmp(url, "redis-sentinel://", 17) == 0)
        return fail(err, errlen, url, "Sentinel is not supported by this version yet; "
                                      "use redis:// to the master");
    if (strncmp(url, "rediss://", 9) == 0)
        return fail(err, errlen, url, "TLS (rediss://) is not supported: Debian's hiredis 0.14 "
                                      "has no TLS");
    if (strncmp(url, "redis://", 8) != 0)
        return fail(err, errlen, url, "expected redis://host:port/db or unix:///path");
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *at = NULL;
    for (const char *c = p; c < end; c++) if (*c == '@') at = c;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *uend = colon ? colon : at;
        if (decode(p, (size_t)(uend - p), u->user, sizeof u->user) ||
            (colon && decode(colon + 1, (size_t)(at - colon - 1), u->pass, sizeof u->pass)))
            return fail(err, errlen, url, "user or password too long");
        if (!colon) { /* redis://password@host is a common shorthand */
            snprintf(u->pass, sizeof u->pass, "%s", u->user);
            u->user[0] = '\0';
        }
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) return fail(err, errlen, url, "unclosed [ in IPv6 host");
        if ((size_t)(rb - p - 1) >= sizeof u->host) return fail(err, errlen, url, "host too long");
        memcpy(u->host, p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (!hend) hend = end;
        if ((size_t)(hend - p) >= sizeof u->host) return fail(err, errlen, url, "host too long");
        memcpy(u->host, p, (size_t)(hend - p));
    }
    if (u->host[0] == '\0') return fail(err, errlen, url, "no host");
    if (hend < end && *hend == ':') {
        char port[16] = {0};
        int64_t v;
        if ((size_t)(end - hend - 1) >= sizeof port) return fail(err, errlen, url, "bad port");
        memcpy(port, hend + 1, (size_t)(end - hend - 1));
        if (parse_int64(port, 1, 65535, &v)) return fail(err, errlen, url, "bad port");
        u->port = (int)v;
    } else if (hend != end) {
        return fail(err, errlen, url, "unexpected text after host");
    }
    if (slash && slash[1]) {
        int64_t db;
        if (parse_int64(slash + 1, 0, 100000, &db)) return fail(err, errlen, url, "bad db number");
        u->db = (int)db;
    }
    return 0;
}
