/* config.c: the settings table and the code it drives (parse, validate, help, describe). */
#include "common/config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/task_env.h"
#include "common/util.h"

enum setting_type { T_STR, T_INT, T_DUR, T_BOOL };

struct setting;
typedef int (*validator)(const struct setting *s, const void *value, char *err, size_t errlen);

struct setting {
    const char *flag; /* without the leading "--" */
    const char *env;  /* SHOAL_* variable */
    enum setting_type type;
    const char *def; /* default as text; NULL: computed (name) or unset */
    unsigned scope;
    bool secret;      /* masked when printed */
    size_t offset;    /* into struct shoal_config */
    int64_t min, max; /* for T_INT and T_DUR (ms) */
    validator check;  /* extra check, may be NULL */
    const char *help;
};

static int check_name(const struct setting *s, const void *v, char *err, size_t n) {
    const char *name = *(char *const *)v;
    if (node_name_valid(name)) return 0;
    snprintf(err, n, "--%s '%s': a node name is 1 to 64 of A-Z a-z 0-9 . _ - (not starting with -)",
             s->flag, name);
    return SHOAL_ECONFIG;
}

static int check_namespace(const struct setting *s, const void *v, char *err, size_t n) {
    const char *ns = *(char *const *)v;
    if (node_name_valid(ns) && strlen(ns) <= 32) return 0;
    snprintf(err, n, "--%s '%s': a namespace is 1 to 32 of A-Z a-z 0-9 . _ -", s->flag, ns);
    return SHOAL_ECONFIG;
}

static int check_queues(const struct setting *s, const void *v, char *err, size_t n) {
    const char *q = *(char *const *)v;
    char *copy = xstrdup(q), *save = NULL;
    int rc = 0, count = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), count++)
        if (!node_name_valid(t)) rc = SHOAL_ECONFIG;
    free(copy);
    if (rc == 0 && count > 0 && q[strlen(q) - 1] != ',' && q[0] != ',' && !strstr(q, ",,"))
        return 0;
    snprintf(err, n, "--%s '%s': a comma list of queue names (A-Z a-z 0-9 . _ -)", s->flag, q);
    return SHOAL_ECONFIG;
}

static int check_allow(const struct setting *s, const void *v, char *err, size_t n) {
    const char *a = *(char *const *)v;
    char *copy = xstrdup(a), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (t[0] != '/') {
            snprintf(err, n, "--%s: '%s' is not an absolute path", s->flag, t);
            rc = SHOAL_ECONFIG;
            break;
        }
    free(copy);
    return rc;
}

static int check_env_list(const struct setting *s, const void *v, char *err, size_t n) {
    const char *l = *(char *const *)v;
    char what[64];
    snprintf(what, sizeof what, "--%s", s->flag);
    if (task_env_list_check(l, what, err, n) != 0) return SHOAL_ECONFIG;
    return 0;
}

/* --exec-env-allow: the node's SHOAL_* variables (its Redis URL, its API keys) never reach a
 * task, so naming one is a mistake worth stopping for. */
static int check_exec_env(const struct setting *s, const void *v, char *err, size_t n) {
    int rc = check_env_list(s, v, err, n);
    char *copy = xstrdup(*(char *const *)v), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); rc == 0 && t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t') t++;
        if (strncmp(t, "SHOAL", 5) == 0) { /* "S*" or "*" are fine: SHOAL_* is skipped anyway */
            snprintf(err, n,
                     "--%s: '%s': SHOAL_* variables are the node's own (its Redis URL, "
                     "its API keys) and never reach a task",
                     s->flag, t);
            rc = SHOAL_ECONFIG;
        }
    }
    free(copy);
    return rc;
}

static int parse_bool(const char *t, bool *out) {
    static const char *const yes[] = {"on", "true", "yes", "1"}, *const no[] = {"off", "false",
                                                                                "no", "0"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcmp(t, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(t, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int check_level(const struct setting *s, const void *v, char *err, size_t n) {
    const char *l = *(char *const *)v;
    enum log_level saved = log_min_level;
    int rc = log_set_level(l);
    log_min_level = saved;
    if (rc == 0) return 0;
    snprintf(err, n, "--%s '%s': one of debug, info, warn, error", s->flag, l);
    return SHOAL_ECONFIG;
}

#define OFF(f) offsetof(struct shoal_config, f)
#define DAY (86400000LL)
static const struct setting table[] = {
    {"redis", "SHOAL_REDIS_URL", T_STR, "redis://127.0.0.1:6379/0", SCOPE_REDIS | SCOPE_WORKER,
     true, OFF(redis_url), 0, 0, NULL,
     "Redis URL: redis://[user:pass@]host:port/db, unix:///path, "
     "redis-sentinel://h:p[,h:p]/master, redis-cluster://h:p[,h:p]; over TLS rediss://, "
     "rediss-sentinel://, rediss-cluster:// (password masked in logs)"},
    {"namespace", "SHOAL_NAMESPACE", T_STR, "shoal", SCOPE_REDIS | SCOPE_WORKER, false,
     OFF(namespace), 0, 0, check_namespace, "key prefix and hash tag: keys are {NS}:..."},
    {"name", "SHOAL_NODE_NAME", T_STR, NULL, SCOPE_WORKER, false, OFF(name), 0, 0, check_name,
     "node name (default: the host name; in Kubernetes the pod name)"},
    {"cap", "SHOAL_TASK_CAP", T_INT, "5", SCOPE_WORKER, false, OFF(cap), 0, 10000, NULL,
     "task cap on first registration; 0 serves HTTP and runs no tasks. `shoal cap` overrides it"},
    {"queues", "SHOAL_QUEUES", T_STR, "default", SCOPE_WORKER, false, OFF(queues), 0, 0,
     check_queues, "queues this node takes work from, in priority order"},
    {"listen", "SHOAL_LISTEN", T_STR, "0.0.0.0:8080", SCOPE_WORKER, false, OFF(listen), 0, 0, NULL,
     "HTTP address for ping, healthz and the API (ADDR:PORT, [v6]:PORT)"},
    {"heartbeat", "SHOAL_HEARTBEAT", T_DUR, "5s", SCOPE_WORKER, false, OFF(heartbeat_ms), 200,
     600000, NULL, "heartbeat period (at least 200ms); the liveness TTL is three heartbeats"},
    {"forget-after", "SHOAL_FORGET_AFTER", T_DUR, "1d", SCOPE_WORKER, false, OFF(forget_after_ms),
     60000, 365 * DAY, NULL, "offline nodes are forgotten after this long"},
    {"grace", "SHOAL_GRACE", T_DUR, "25s", SCOPE_WORKER, false, OFF(grace_ms), 0, DAY, NULL,
     "on SIGTERM, how long running tasks get to finish before they are stopped and requeued"},
    {"http-idle-timeout", "SHOAL_HTTP_IDLE_TIMEOUT", T_DUR, "60s", SCOPE_WORKER, false,
     OFF(http_idle_ms), 100, DAY, NULL, "idle keep-alive HTTP connections are closed after this"},
    {"http-head-timeout", "SHOAL_HTTP_HEAD_TIMEOUT", T_DUR, "10s", SCOPE_WORKER, false,
     OFF(http_head_ms), 100, DAY, NULL,
     "a request's head (line and headers) must arrive within "
     "this of its first byte (of accept, for a connection's first request): else 408 and close"},
    {"http-body-timeout", "SHOAL_HTTP_BODY_TIMEOUT", T_DUR, "30s", SCOPE_WORKER, false,
     OFF(http_body_ms), 100, DAY, NULL,
     "a request body (uploads included) that sends no byte "
     "for this long is cut off (time the node itself holds the body back does not count)"},
    {"http-max-connections", "SHOAL_HTTP_MAX_CONNECTIONS", T_INT, "4096", SCOPE_WORKER, false,
     OFF(http_max_conns), 1, 1000000, NULL,
     "HTTP connections served at once; more are reset at "
     "accept (lowered at start-up to fit the open-file limit)"},
    {"http-max-connections-per-ip", "SHOAL_HTTP_MAX_CONNECTIONS_PER_IP", T_INT, "256", SCOPE_WORKER,
     false, OFF(http_max_conns_per_ip), 1, 1000000, NULL,
     "HTTP connections from "
     "one client address; more are reset at accept. Behind a load balancer every client has "
     "its address: keep this above the connections it opens"},
    {"http-max-uploads", "SHOAL_HTTP_MAX_UPLOADS", T_INT, "4", SCOPE_WORKER, false,
     OFF(http_max_uploads), 1, 1024, NULL,
     "package uploads at once (12 MiB of buffers each); "
     "more are answered 429 with Retry-After before their body is read"},
    {"log-level", "SHOAL_LOG_LEVEL", T_STR, "info", SCOPE_REDIS | SCOPE_WORKER, false,
     OFF(log_level), 0, 0, check_level, "debug, info, warn or error"},
    {"allow-exec", "SHOAL_ALLOW_EXEC", T_STR, "", SCOPE_WORKER, false, OFF(allow_exec), 0, 0,
     check_allow,
     "programs `exec` tasks may run: comma list of absolute paths, or directories "
     "ending in / (empty: none)"},
    {"task-log-cap", "SHOAL_TASK_LOG_CAP", T_INT, "65536", SCOPE_WORKER, false, OFF(task_log_cap),
     0, 16777216, NULL, "bytes of a task's output kept (the last ones)"},
    {"kill-grace", "SHOAL_KILL_GRACE", T_DUR, "5s", SCOPE_WORKER, false, OFF(kill_grace_ms), 0,
     600000, NULL, "a timed-out or canceled process gets SIGTERM, then SIGKILL after this"},
    {"retention", "SHOAL_RETENTION", T_DUR, "7d", SCOPE_REDIS | SCOPE_WORKER, false,
     OFF(retention_ms), 60000, 365 * DAY, NULL,
     "finished tasks (and their logs) are kept this long"},
    {"balance", "SHOAL_BALANCE", T_BOOL, "on", SCOPE_WORKER, false, OFF(balance), 0, 0, NULL,
     "Octopus's workload balancing: take a task only while running/cap <= the fleet's "
     "(running + queued) / capacity (--no-balance: fill up to the cap)"},
    {"handler-threads", "SHOAL_HANDLER_THREADS", T_INT, "16", SCOPE_WORKER, false,
     OFF(handler_threads), 1, 1024, NULL, "threads for C handlers (noop, fail, custom)"},
    {"retry-backoff", "SHOAL_RETRY_BACKOFF", T_DUR, "1s", SCOPE_WORKER, false,
     OFF(retry_backoff_ms), 0, DAY, NULL,
     "delay before a failed task's first retry; doubles "
     "per attempt (at most 1h), with jitter"},
    {"api-key", "SHOAL_API_KEY", T_STR, "", SCOPE_WORKER, true, OFF(api_key), 0, 0, NULL,
     "key(s) for the HTTP API (X-Octopus-ApiKey or Authorization: Bearer), comma list, each "
     "at least 16 characters; masked in logs. Prefer --api-key-file: flags show in ps"},
    {"api-key-file", "SHOAL_API_KEY_FILE", T_STR, "", SCOPE_WORKER, false, OFF(api_key_file), 0, 0,
     NULL,
     "file of API keys, one a line (# comments), each at least 16 characters; read at "
     "start-up and again on SIGHUP (a file that fails to load keeps the keys in force)"},
    {"auth-fail-limit", "SHOAL_AUTH_FAIL_LIMIT", T_INT, "20", SCOPE_WORKER, false,
     OFF(auth_fail_limit), 0, 1000000, NULL,
     "wrong API keys from one client address within a minute, counted fleet-wide, before "
     "the address is locked out on every node (429 with Retry-After); 0: never"},
    {"trusted-proxies", "SHOAL_TRUSTED_PROXIES", T_STR, "", SCOPE_WORKER, false,
     OFF(trusted_proxies), 0, 0, NULL,
     "comma list of proxy addresses (exact IPs, e.g. the load balancer's) whose "
     "X-Forwarded-For names the client: its last entry is then the address that lockouts "
     "count and events record"},
    {"auth-lockout", "SHOAL_AUTH_LOCKOUT", T_DUR, "5m", SCOPE_WORKER, false, OFF(auth_lockout_ms),
     1000, DAY, NULL, "how long a locked-out client address is refused"},
    {"package-dir", "SHOAL_PACKAGE_DIR", T_STR, "packages", SCOPE_WORKER, false, OFF(package_dir),
     0, 0, NULL,
     "where uploaded packages are stored (relative to the working directory; in "
     "HA, a volume every node shares)"},
    {"allow-redis-eviction", "SHOAL_ALLOW_REDIS_EVICTION", T_BOOL, "off", SCOPE_WORKER, false,
     OFF(allow_redis_eviction), 0, 0, NULL,
     "run although Redis's maxmemory-policy may evict keys (anything but noeviction), where an "
     "evicted task record is a lost task; off: refuse to start on such a Redis, and log an "
     "error after a reconnect to one"},
    {"package-direct-io", "SHOAL_PACKAGE_DIRECT_IO", T_BOOL, "on", SCOPE_WORKER, false,
     OFF(package_direct_io), 0, 0, NULL,
     "write uploads with O_DIRECT where the file system takes it, bypassing the page cache "
     "(--no-package-direct-io: through the cache, e.g. for a network file system that is "
     "slow with it)"},
    {"exec-env-allow", "SHOAL_EXEC_ENV_ALLOW", T_STR, "", SCOPE_WORKER, false, OFF(exec_env_allow),
     0, 0, check_exec_env,
     "variables of the node's environment that "
     "exec tasks get besides PATH, HOME, LANG, TZ: comma list of names or prefixes ending in * "
     "(never SHOAL_*)"},
    {"task-env-allow", "SHOAL_TASK_ENV_ALLOW", T_STR, "", SCOPE_WORKER, false, OFF(task_env_allow),
     0, 0, check_env_list,
     "names a task's env may set: comma list of "
     "names or prefixes ending in * (empty: any name not on the deny list: LD_*, PYTHON*, "
     "SHOAL_*, ...)"},
    {"exec-user", "SHOAL_EXEC_USER", T_STR, "", SCOPE_WORKER, false, OFF(exec_user), 0, 0, NULL,
     "USER[:GROUP] exec tasks run as (empty: the node's own account); the node needs "
     "root or CAP_SETUID+CAP_SETGID"},
    {"redis-password-file", "SHOAL_REDIS_PASSWORD_FILE", T_STR, "", SCOPE_REDIS | SCOPE_WORKER,
     false, OFF(redis_password_file), 0, 0, NULL,
     "file holding the Redis password (one "
     "line), used for AUTH instead of a password in the URL; read at start-up"},
    {"redis-ca", "SHOAL_REDIS_CA", T_STR, "", SCOPE_REDIS | SCOPE_WORKER, false, OFF(redis_ca), 0,
     0, NULL,
     "CA file (PEM) the Redis servers' certificates must chain to, for rediss:// and "
     "rediss-sentinel:// or rediss-cluster:// (empty: the system's store)"},
    {"redis-cert", "SHOAL_REDIS_CERT", T_STR, "", SCOPE_REDIS | SCOPE_WORKER, false,
     OFF(redis_cert), 0, 0, NULL, "client certificate (PEM) for rediss:// with mutual TLS"},
    {"redis-key", "SHOAL_REDIS_KEY", T_STR, "", SCOPE_REDIS | SCOPE_WORKER, false, OFF(redis_key),
     0, 0, NULL, "private key (PEM) of --redis-cert"},
    {"redis-sni", "SHOAL_REDIS_SNI", T_STR, "", SCOPE_REDIS | SCOPE_WORKER, false, OFF(redis_sni),
     0, 0, NULL,
     "server name for TLS (as redis-cli's --sni): sent as SNI and checked in the "
     "certificate instead of the host connected to (empty: that host)"},
};

static void *field(struct shoal_config *cfg, const struct setting *s) {
    return (char *)cfg + s->offset;
}
static const void *cfield(const struct shoal_config *cfg, const struct setting *s) {
    return (const char *)cfg + s->offset;
}

/* Sets one value from text. origin says where it came from, for the error message. */
static int set_value(struct shoal_config *cfg, const struct setting *s, const char *text,
                     const char *origin, char *err, size_t errlen) {
    void *f = field(cfg, s);
    int64_t v;
    int rc = 0;
    switch (s->type) {
    case T_STR:
        free(*(char **)f);
        *(char **)f = xstrdup(text);
        break;
    case T_INT:
        rc = parse_int64(text, s->min, s->max, &v);
        if (rc) {
            snprintf(err, errlen, "%s '%s': expected a whole number from %lld to %lld", origin,
                     text, (long long)s->min, (long long)s->max);
            return SHOAL_ECONFIG;
        }
        *(int64_t *)f = v;
        break;
    case T_BOOL:
        if (parse_bool(text, (bool *)f) != 0) {
            snprintf(err, errlen, "%s '%s': expected on or off", origin, text);
            return SHOAL_ECONFIG;
        }
        break;
    case T_DUR:
        rc = parse_duration_ms(text, &v);
        if (rc || v < s->min || v > s->max) {
            char a[32], b[32];
            snprintf(err, errlen,
                     "%s '%s': expected a duration from %s to %s, like 250ms, 30s, "
                     "10m, 1d",
                     origin, text, format_duration_ms(s->min, a, sizeof a),
                     format_duration_ms(s->max, b, sizeof b));
            return SHOAL_ECONFIG;
        }
        *(int64_t *)f = v;
        break;
    }
    if (s->check && (rc = s->check(s, f, err, errlen)) != 0) {
        /* Prefix with the origin when it was an environment variable. */
        if (strncmp(origin, "--", 2) != 0) {
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s: %s", origin, err);
            snprintf(err, errlen, "%s", tmp);
        }
        return rc;
    }
    return 0;
}

void config_defaults(struct shoal_config *cfg) {
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (table[i].def) (void)set_value(cfg, &table[i], table[i].def, "default", err, sizeof err);
    char host[256] = "shoal";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot) *dot = '\0';
    cfg->name = xstrdup(node_name_valid(host) ? host : "shoal");
}

void config_free(struct shoal_config *cfg) {
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (table[i].type == T_STR) {
            free(*(char **)field(cfg, &table[i]));
            *(char **)field(cfg, &table[i]) = NULL;
        }
}

static const struct setting *find_flag(const char *name, size_t len) {
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (strlen(table[i].flag) == len && strncmp(table[i].flag, name, len) == 0)
            return &table[i];
    return NULL;
}

int config_parse(struct shoal_config *cfg, unsigned scope, int argc, char **argv, int *rest,
                 char *err, size_t errlen) {
    int rc;
    for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
        const char *e = getenv(table[i].env);
        if (!(table[i].scope & scope) || e == NULL || *e == '\0') continue;
        if ((rc = set_value(cfg, &table[i], e, table[i].env, err, errlen)) != 0) return rc;
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0) break;
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct setting *s = find_flag(name, len);
        /* Booleans: --flag alone is on, --no-flag is off. */
        if (s == NULL && !eq && len > 3 && strncmp(name, "no-", 3) == 0) {
            s = find_flag(name + 3, len - 3);
            if (s && s->type == T_BOOL && (s->scope & scope)) {
                *(bool *)field(cfg, s) = false;
                continue;
            }
            s = NULL;
        }
        if (s && s->type == T_BOOL && !eq && (s->scope & scope)) {
            *(bool *)field(cfg, s) = true;
            continue;
        }
        if (s == NULL || !(s->scope & scope)) {
            snprintf(err, errlen, "unknown flag --%.*s (see --help)", (int)len, name);
            return SHOAL_ECONFIG;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (val == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", s->flag);
                return SHOAL_ECONFIG;
            }
            val = argv[++i];
        }
        char origin[64];
        snprintf(origin, sizeof origin, "--%s", s->flag);
        if ((rc = set_value(cfg, s, val, origin, err, errlen)) != 0) return rc;
    }
    if (rest) *rest = i;
    return config_validate(cfg, scope, err, errlen);
}

int config_validate(const struct shoal_config *cfg, unsigned scope, char *err, size_t errlen) {
    if ((scope & SCOPE_WORKER) && cfg->forget_after_ms < 3 * cfg->heartbeat_ms) {
        snprintf(err, errlen,
                 "--forget-after must be at least three heartbeats (the liveness TTL)");
        return SHOAL_ECONFIG;
    }
    return 0;
}

/* Masks the password of a URL: redis://user:secret@host -> redis://user:***@host. */
static void mask_url(const char *url, char *out, size_t len) {
    const char *scheme = strstr(url, "://");
    const char *at = strrchr(url, '@');
    if (!scheme || !at || at < scheme) {
        snprintf(out, len, "%s", url);
        return;
    }
    const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
    const char *cut = colon ? colon + 1 : scheme + 3;
    snprintf(out, len, "%.*s***%s", (int)(cut - url), url, at);
}

static void value_text(const struct shoal_config *cfg, const struct setting *s, char *out,
                       size_t len) {
    const void *f = cfield(cfg, s);
    switch (s->type) {
    case T_STR: {
        const char *v = *(char *const *)f;
        if (v == NULL)
            snprintf(out, len, "%s", "");
        else if (s->secret && strstr(v, "://"))
            mask_url(v, out, len);
        else if (s->secret)
            snprintf(out, len, "%s", *v ? "***" : "");
        else
            snprintf(out, len, "%s", v);
        break;
    }
    case T_INT: snprintf(out, len, "%lld", (long long)*(const int64_t *)f); break;
    case T_BOOL: snprintf(out, len, "%s", *(const bool *)f ? "on" : "off"); break;
    case T_DUR: format_duration_ms(*(const int64_t *)f, out, len); break;
    }
}

void config_usage(FILE *out, unsigned scope) {
    fprintf(out, "Settings (flag, environment variable, default):\n");
    for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
        const struct setting *s = &table[i];
        if (!(s->scope & scope)) continue;
        fprintf(out, "  --%-18s %-24s %s\n      %s\n", s->flag, s->env,
                s->def ? s->def : "(see text)", s->help);
    }
}

void config_markdown(FILE *out) {
    fprintf(out, "| flag | environment | default | commands | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
        const struct setting *s = &table[i];
        fprintf(out, "| `--%s` | `%s` | %s%s%s | %s | %s |\n", s->flag, s->env, s->def ? "`" : "",
                s->def ? s->def : "host name", s->def ? "`" : "",
                (s->scope & SCOPE_REDIS) ? "all" : "worker", s->help);
    }
}

void config_describe(const struct shoal_config *cfg, unsigned scope, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(table) && off < len; i++) {
        const struct setting *s = &table[i];
        if (!(s->scope & scope)) continue;
        char v[256], q[300];
        value_text(cfg, s, v, sizeof v);
        off += (size_t)snprintf(buf + off, len - off, " %s=%s", s->flag, log_q(q, sizeof q, v));
    }
}
