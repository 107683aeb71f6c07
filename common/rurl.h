/* rurl.h: Redis URLs: redis://[user:pass@]host[:port][/db], rediss://... (the same over TLS:
 * common/tls.h), unix:///path[?db=N], and
 * redis-sentinel://[user:pass@]host:port[,host:port...]/master-name[/db]: ask the sentinels
 * for the master's address (user and password are the master's), and
 * redis-cluster://[user:pass@]host:port[,host:port...]: a Redis Cluster's seed nodes.
 * rediss-sentinel:// and rediss-cluster:// are the same over TLS: every link (each sentinel or
 * seed node, and the master or slot owner they name) speaks TLS, with the same CA, client
 * certificate and server name (--redis-ca/--redis-cert/--redis-key/--redis-sni). */
#ifndef SHOAL_RURL_H
#define SHOAL_RURL_H

#include <stdbool.h>
#include <stddef.h>

#define RURL_MAX_SENTINELS 8

struct rurl_sentinel {
    char host[256];
    int port;
};

struct rurl {
    char host[256]; /* TCP host ("" for unix) */
    int port;       /* TCP port */
    char path[256]; /* unix socket path ("" for TCP) */
    char user[128]; /* ACL user ("" = none, AUTH with password only) */
    char pass[256]; /* password ("" = no AUTH) */
    int db;         /* SELECT this db when non-zero */
    int nsentinels; /* > 0: Sentinel mode (or, with cluster, the cluster's seed nodes);
                     * host/port are then found by asking them */
    struct rurl_sentinel sentinels[RURL_MAX_SENTINELS];
    bool cluster; /* redis-cluster://: the seeds are cluster nodes, asked for the slot's owner */
    int slot;     /* cluster: the namespace's hash slot (rurl_cluster_namespace) */
    char master[128]; /* the master's name in Sentinel */
    bool tls;         /* rediss://, rediss-sentinel://, rediss-cluster://: TLS on every link
                       * (common/tls.h) */
    char ca[256];     /* --redis-ca: CA file ("" = the system's store) */
    char cert[256];   /* --redis-cert: client certificate ("" = none) */
    char key[256];    /* --redis-key: its private key */
    char sni[256];    /* --redis-sni: the server's name for SNI and the certificate check ("" =
                       * host) */
};

/* Cluster mode: every key of namespace ns carries the hash tag {ns}, so the namespace lives in
 * one slot; sets u->slot to it (rurl_parse assumes "shoal"). */
void rurl_cluster_namespace(struct rurl *u, const char *ns);

/* Parses url into *u. Returns 0, or SHOAL_EURL with a one-line reason in err. */
int rurl_parse(const char *url, struct rurl *u, char *err, size_t errlen);

/* Reads the Redis password from file (--redis-password-file): its one line, a trailing "\n"
 * or "\r\n" dropped, replaces any password the URL carries (the URL may then name the user
 * only, or nobody). Keeps the secret out of the environment, flags and `ps`. Returns 0, or
 * SHOAL_ECONFIG with a message naming the file (never the password). */
int rurl_password_file(struct rurl *u, const char *file, char *err, size_t errlen);

/* Sets the TLS files (each may be NULL or ""). Returns 0, or SHOAL_ECONFIG when one is too long
 * or given for a URL without TLS. */
int rurl_tls_files(struct rurl *u, const char *ca, const char *cert, const char *key, char *err,
                   size_t errlen);

/* Sets the TLS server name (--redis-sni; NULL or "" leaves the URL's host). Returns 0, or
 * SHOAL_ECONFIG when it is too long or given for a URL without TLS. */
int rurl_tls_name(struct rurl *u, const char *name, char *err, size_t errlen);

/* rurl_parse, then rurl_password_file when file is set and non-empty. */
int rurl_parse_with_password(const char *url, const char *file, struct rurl *u, char *err,
                             size_t errlen);

#endif
