/* rurl.c: Redis URL parsing, with percent-decoding of user and password. */
#include "common/rurl.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"

static int decode(const char *s, size_t n, char *out, size_t outlen) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 1 >= outlen) return -1;
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
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

/* Splits "host:port" (or "[v6]:port") of length n into h/port. Returns 0 or -1. */
static int host_port(const char *s, size_t n, char *h, size_t hlen, int *port) {
    const char *colon = NULL;
    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb || (size_t)(rb - s - 1) >= hlen || rb + 1 >= s + n || rb[1] != ':') return -1;
        memcpy(h, s + 1, (size_t)(rb - s - 1));
        h[rb - s - 1] = '\0';
        colon = rb + 1;
    } else {
        for (const char *c = s; c < s + n; c++)
            if (*c == ':') colon = c;
        if (!colon || (size_t)(colon - s) >= hlen || colon == s) return -1;
        memcpy(h, s, (size_t)(colon - s));
        h[colon - s] = '\0';
    }
    char p[16] = {0};
    int64_t v;
    size_t plen = (size_t)(s + n - colon - 1);
    if (plen == 0 || plen >= sizeof p) return -1;
    memcpy(p, colon + 1, plen);
    if (parse_int64(p, 1, 65535, &v)) return -1;
    *port = (int)v;
    return 0;
}

/* Takes "[user[:pass]@]" off the front of p (which ends before end) into u; "pass@" alone
 * is a password (redis://secret@host is a common shorthand). Returns 0, or -1 when too long. */
static int userinfo(const char **p, const char *end, struct rurl *u) {
    const char *at = NULL;
    for (const char *c = *p; c < end; c++)
        if (*c == '@') at = c;
    if (!at) return 0;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    const char *uend = colon ? colon : at;
    if (decode(*p, (size_t)(uend - *p), u->user, sizeof u->user) ||
        (colon && decode(colon + 1, (size_t)(at - colon - 1), u->pass, sizeof u->pass)))
        return -1;
    if (!colon) {
        snprintf(u->pass, sizeof u->pass, "%s", u->user);
        u->user[0] = '\0';
    }
    *p = at + 1;
    return 0;
}

/* "h:p[,h:p...]" from p to end into u's list (sentinels, or a cluster's seed nodes); what names
 * them in messages. Returns NULL, or why not. */
static const char *host_list(const char *p, const char *end, struct rurl *u, const char *what) {
    static char why[64];
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (u->nsentinels == RURL_MAX_SENTINELS) {
            snprintf(why, sizeof why, "at most %d %ss", RURL_MAX_SENTINELS, what);
            return why;
        }
        struct rurl_sentinel *s = &u->sentinels[u->nsentinels++];
        if (host_port(p, (size_t)(e - p), s->host, sizeof s->host, &s->port) != 0) {
            snprintf(why, sizeof why, "each %s is host:port", what);
            return why;
        }
        p = comma ? comma + 1 : end;
    }
    if (u->nsentinels > 0) return NULL;
    snprintf(why, sizeof why, "no %s given", what);
    return why;
}

/* redis-cluster://[user:pass@]h:p[,h:p...][/] (rediss-cluster:// over TLS): seed nodes of a Redis Cluster (in the seed
 * list); the namespace's slot owner is found by asking them (CLUSTER SLOTS). Cluster mode has
 * database 0 only. */
static int parse_cluster(const char *url, size_t skip, struct rurl *u, char *err, size_t errlen) {
    const char *p = url + skip;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    if (slash && slash[1] && strcmp(slash + 1, "0") != 0)
        return fail(err, errlen, url, "a Redis Cluster has database 0 only");
    if (userinfo(&p, end, u) != 0) return fail(err, errlen, url, "user or password too long");
    const char *why = host_list(p, end, u, "seed node");
    if (why) return fail(err, errlen, url, why);
    u->cluster = true;
    u->port = 0;
    rurl_cluster_namespace(u, "shoal");
    return 0;
}

/* CRC16-CCITT (XMODEM), Redis Cluster's key hash: slot = crc16(tag) mod 16384. */
static unsigned crc16(const char *s, size_t n) {
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (int b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) : crc << 1;
        crc &= 0xffff;
    }
    return crc;
}

void rurl_cluster_namespace(struct rurl *u, const char *ns) {
    u->slot = (int)(crc16(ns, strlen(ns)) & 16383);
}

/* redis-sentinel://[user:pass@]h:p[,h:p...]/master[/db] (rediss-sentinel:// over TLS) */
static int parse_sentinel(const char *url, size_t skip, struct rurl *u, char *err, size_t errlen) {
    const char *p = url + skip;
    const char *slash = strchr(p, '/');
    if (!slash || !slash[1])
        return fail(err, errlen, url,
                    u->tls ? "expected rediss-sentinel://host:port[,host:port]/master-name"
                           : "expected redis-sentinel://host:port[,host:port]/master-name");
    if (userinfo(&p, slash, u) != 0) return fail(err, errlen, url, "user or password too long");
    const char *why = host_list(p, slash, u, "sentinel");
    if (why) return fail(err, errlen, url, why);
    const char *name = slash + 1, *db = strchr(name, '/');
    size_t nlen = db ? (size_t)(db - name) : strlen(name);
    if (nlen == 0 || nlen >= sizeof u->master) return fail(err, errlen, url, "bad master name");
    memcpy(u->master, name, nlen);
    if (db && db[1]) {
        int64_t v;
        if (parse_int64(db + 1, 0, 100000, &v)) return fail(err, errlen, url, "bad db number");
        u->db = (int)v;
    }
    /* host/port are filled in by asking the sentinels. */
    u->port = 0;
    return 0;
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
    /* The TLS forms of Sentinel and Cluster: every link (each sentinel or seed node, and the
     * master or slot owner they name) speaks TLS. rediss-sentinel:// is Lettuce's name for it;
     * rediss-cluster:// follows by analogy. */
    u->tls = strncmp(url, "rediss-", 7) == 0;
    size_t t = u->tls ? 1 : 0;
    if (strncmp(url, u->tls ? "rediss-sentinel://" : "redis-sentinel://", 17 + t) == 0)
        return parse_sentinel(url, 17 + t, u, err, errlen);
    if (strncmp(url, u->tls ? "rediss-cluster://" : "redis-cluster://", 16 + t) == 0)
        return parse_cluster(url, 16 + t, u, err, errlen);
    bool tls = strncmp(url, "rediss://", 9) == 0;
    if (!tls && strncmp(url, "redis://", 8) != 0)
        return fail(err, errlen, url,
                    "expected redis://host:port/db, rediss://host:port/db (TLS), unix:///path, "
                    "redis-sentinel://h:p[,h:p]/master, redis-cluster://h:p[,h:p] (or "
                    "rediss-sentinel://, rediss-cluster:// over TLS)");
    u->tls = tls;
    const char *p = url + (tls ? 9 : 8);
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    if (userinfo(&p, end, u) != 0) return fail(err, errlen, url, "user or password too long");
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

int rurl_password_file(struct rurl *u, const char *file, char *err, size_t errlen) {
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "--redis-password-file %s: %s", file, strerror(errno));
        return SHOAL_ECONFIG;
    }
    char buf[sizeof u->pass + 2];
    size_t n = fread(buf, 1, sizeof buf, f);
    bool more = n == sizeof buf, bad = ferror(f);
    fclose(f);
    const char *why = NULL;
    if (bad)
        why = "cannot be read";
    else if (n > 0 && buf[n - 1] == '\n')
        n -= 1 + (n > 1 && buf[n - 2] == '\r');
    if (why) {
    } else if (more)
        why = "holds more than 255 bytes (a password of one line is expected)";
    else if (n == 0)
        why = "is empty";
    else if (memchr(buf, '\n', n) || memchr(buf, '\0', n))
        why = "holds more than one line (or a NUL byte); put the password alone on one line";
    if (why) {
        snprintf(err, errlen, "--redis-password-file %s %s", file, why);
        return SHOAL_ECONFIG;
    }
    memcpy(u->pass, buf, n);
    u->pass[n] = '\0';
    explicit_bzero(buf, sizeof buf);
    return 0;
}

int rurl_parse_with_password(const char *url, const char *file, struct rurl *u, char *err,
                             size_t errlen) {
    int rc = rurl_parse(url, u, err, errlen);
    if (rc == 0 && file && *file) rc = rurl_password_file(u, file, err, errlen);
    return rc;
}

int rurl_tls_files(struct rurl *u, const char *ca, const char *cert, const char *key, char *err,
                   size_t errlen) {
    const char *v[3] = {ca, cert, key}, *names[3] = {"--redis-ca", "--redis-cert", "--redis-key"};
    char *dst[3] = {u->ca, u->cert, u->key};
    for (int i = 0; i < 3; i++) {
        if (!v[i] || !*v[i]) continue;
        if (!u->tls) {
            snprintf(err, errlen,
                     "%s is for TLS: the Redis URL must start with rediss:// (or "
                     "rediss-sentinel://, rediss-cluster://)",
                     names[i]);
            return SHOAL_ECONFIG;
        }
        if (strlen(v[i]) >= sizeof u->ca) {
            snprintf(err, errlen, "%s: path too long", names[i]);
            return SHOAL_ECONFIG;
        }
        snprintf(dst[i], sizeof u->ca, "%s", v[i]);
    }
    return 0;
}

int rurl_tls_name(struct rurl *u, const char *name, char *err, size_t errlen) {
    if (!name || !*name) return 0;
    if (!u->tls) {
        snprintf(err, errlen,
                 "--redis-sni is for TLS: the Redis URL must start with rediss:// (or "
                 "rediss-sentinel://, rediss-cluster://)");
        return SHOAL_ECONFIG;
    }
    if (strlen(name) >= sizeof u->sni) {
        snprintf(err, errlen, "--redis-sni: name too long");
        return SHOAL_ECONFIG;
    }
    snprintf(u->sni, sizeof u->sni, "%s", name);
    return 0;
}
