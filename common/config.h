/* config.h: every setting shoal reads, in one table that drives parsing (flags and SHOAL_*
 * environment variables), validation, --help, and the start-up line with the effective values.
 *
 * Precedence: built-in default < environment variable < command-line flag. Secrets are masked
 * everywhere they are printed. To add a setting: add a field to struct shoal_config, then one
 * row to the table in config.c; help, env and logging follow from the row. */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Which commands a setting applies to (a bit mask). */
enum config_scope {
    SCOPE_REDIS = 1,  /* every command that talks to Redis */
    SCOPE_WORKER = 2, /* `shoal worker` only */
};

struct shoal_config {
    char *redis_url;               /* --redis / SHOAL_REDIS_URL */
    char *namespace;               /* --namespace / SHOAL_NAMESPACE */
    char *name;                    /* --name / SHOAL_NODE_NAME (default: host name) */
    int64_t cap;                   /* --cap / SHOAL_TASK_CAP */
    char *queues;                  /* --queues / SHOAL_QUEUES, comma list in priority order */
    char *listen;                  /* --listen / SHOAL_LISTEN */
    int64_t heartbeat_ms;          /* --heartbeat / SHOAL_HEARTBEAT */
    int64_t forget_after_ms;       /* --forget-after / SHOAL_FORGET_AFTER */
    int64_t grace_ms;              /* --grace / SHOAL_GRACE */
    int64_t http_idle_ms;          /* --http-idle-timeout / SHOAL_HTTP_IDLE_TIMEOUT */
    int64_t http_head_ms;          /* --http-head-timeout / SHOAL_HTTP_HEAD_TIMEOUT */
    int64_t http_body_ms;          /* --http-body-timeout / SHOAL_HTTP_BODY_TIMEOUT */
    int64_t http_max_conns;        /* --http-max-connections / SHOAL_HTTP_MAX_CONNECTIONS */
    int64_t http_max_conns_per_ip; /* --http-max-connections-per-ip / ..._PER_IP */
    int64_t http_max_uploads;      /* --http-max-uploads / SHOAL_HTTP_MAX_UPLOADS */
    char *log_level;               /* --log-level / SHOAL_LOG_LEVEL */
    char *allow_exec;              /* --allow-exec / SHOAL_ALLOW_EXEC: programs `exec` may run */
    int64_t task_log_cap;          /* --task-log-cap / SHOAL_TASK_LOG_CAP: bytes of output kept */
    int64_t kill_grace_ms;         /* --kill-grace / SHOAL_KILL_GRACE: SIGTERM -> SIGKILL */
    int64_t retention_ms;      /* --retention / SHOAL_RETENTION: finished tasks kept this long */
    bool balance;              /* --balance / --no-balance / SHOAL_BALANCE */
    int64_t handler_threads;   /* --handler-threads / SHOAL_HANDLER_THREADS */
    int64_t retry_backoff_ms;  /* --retry-backoff / SHOAL_RETRY_BACKOFF: first retry delay */
    char *api_key;             /* --api-key / SHOAL_API_KEY: HTTP API key(s), comma list; secret */
    int64_t auth_fail_limit;   /* --auth-fail-limit: wrong keys a minute per address; 0 off */
    char *trusted_proxies;     /* --trusted-proxies: peers whose X-Forwarded-For is believed */
    int64_t auth_lockout_ms;   /* --auth-lockout: how long a locked-out address is refused */
    char *api_key_file;        /* --api-key-file / SHOAL_API_KEY_FILE: file of keys, one a line */
    char *package_dir;         /* --package-dir / SHOAL_PACKAGE_DIR: uploaded packages */
    bool allow_redis_eviction; /* --allow-redis-eviction: run on a Redis that may evict keys */
    bool package_direct_io;    /* --package-direct-io / SHOAL_PACKAGE_DIRECT_IO: O_DIRECT writes */
    char *exec_env_allow;      /* --exec-env-allow / SHOAL_EXEC_ENV_ALLOW: node vars tasks get */
    char *task_env_allow;      /* --task-env-allow / SHOAL_TASK_ENV_ALLOW: names a task may set */
    char *exec_user;           /* --exec-user / SHOAL_EXEC_USER: USER[:GROUP] exec tasks run as */
    char *redis_password_file; /* --redis-password-file / SHOAL_REDIS_PASSWORD_FILE */
    char *redis_ca;            /* --redis-ca: CA file for rediss:// ("" = the system's store) */
    char *redis_cert;          /* --redis-cert: client certificate for rediss:// */
    char *redis_key;           /* --redis-key: its private key */
    char *redis_sni;           /* --redis-sni: the name sent and checked ("" = the URL's host) */
};

/* Fills cfg with defaults (the node name from the host name). Free with config_free(). */
void config_defaults(struct shoal_config *cfg);
void config_free(struct shoal_config *cfg);

/* Applies SHOAL_* variables then flags of the given scope from argv[1..]. Flags are `--flag
 * value` or `--flag=value`; parsing stops at "--" or at the first non-flag, whose index goes to
 * *rest (argc when none). Unknown flags, bad values and flags of another scope fail.
 * Returns 0, or SHOAL_ECONFIG with a one-line message in err. */
int config_parse(struct shoal_config *cfg, unsigned scope, int argc, char **argv, int *rest,
                 char *err, size_t errlen);

/* Checks cross-field rules (values each valid but not together). Same return as parse. */
int config_validate(const struct shoal_config *cfg, unsigned scope, char *err, size_t errlen);

/* Prints the settings of the scope as a help table: flag, env, default, meaning. */
void config_usage(FILE *out, unsigned scope);
/* Prints the whole table as Markdown (the README's configuration table). */
void config_markdown(FILE *out);
/* Appends the effective settings of the scope as ` key=value` pairs (secrets masked) to buf. */
void config_describe(const struct shoal_config *cfg, unsigned scope, char *buf, size_t len);

#endif
