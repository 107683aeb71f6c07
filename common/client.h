/* client.h: the task client: enqueue, inspect, cancel, with a blocking Redis connection. The CLI
 * uses it, and other C programs can link libshoal_common and use it the same way:
 *
 *   struct shoal_client c;  char err[256];
 *   if (shoal_client_open(&c, "redis://127.0.0.1:6379/0", "shoal", err, sizeof err)) ...
 *   struct shoal_task_opts t;  shoal_task_opts_init(&t);
 *   t.type = "noop";
 *   int64_t id;  shoal_enqueue(&c, &t, 1, &id, err, sizeof err);    // "ServerTasks-<id>"
 *
 * Not for an event loop (it blocks); the node never uses it. */
#ifndef SHOAL_CLIENT_H
#define SHOAL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/keys.h"
#include "common/rsync.h"

#define SHOAL_DEFAULT_EXPIRY_MS (24LL * 3600 * 1000)

struct shoal_task_opts {
    const char *queue; /* default "default" */
    const char *type;  /* handler name, default "exec" */
    const char *args;  /* msgpack payload (borrowed), may be NULL */
    size_t args_len;
    int64_t priority;    /* -1000..1000, higher first; default 0 */
    int64_t at_ms;       /* queue time (epoch ms); 0 = now */
    int64_t expiry_ms;   /* how long it may wait after its queue time; default 24 h */
    int64_t timeout_ms;  /* execution timeout; 0 = none */
    int64_t attempts;    /* runs on failure, 1 = no retry; default 1 */
    int64_t lost_budget; /* requeues after its node dies; default 1 */
};

struct shoal_client {
    struct rsync redis;
    struct keys keys;
    char ns[40];
};

/* A task as Redis holds it (strings empty and numbers 0 when absent). */
struct shoal_task {
    int64_t id;
    char state[16], queue[72], type[72], node[72];
    char *error; /* owned */
    char *args;  /* owned msgpack payload, args_len bytes */
    size_t args_len;
    int64_t priority, queued_ms, expiry_ms, started_ms, completed_ms, timeout_ms;
    int64_t attempt, attempts, exit_code;
    bool has_exit;
};

void shoal_task_opts_init(struct shoal_task_opts *o);
/* Checks one task's options; returns 0 or -EINVAL with a message naming the field. An exec
 * task whose env sets a variable common/task_env.h denies (LD_PRELOAD, SHOAL_*, ...) is
 * refused here, naming the variable, so it never enters the queue. */
int shoal_task_opts_check(const struct shoal_task_opts *o, char *err, size_t errlen);

int shoal_client_open(struct shoal_client *c, const char *url, const char *ns, char *err,
                      size_t errlen);
void shoal_client_close(struct shoal_client *c);

/* Enqueues n tasks: every task is checked first (nothing is sent if one is invalid), then they
 * go in calls of up to 500, each atomic (all or none) and each a few milliseconds of Redis at
 * most, so a large enqueue never holds Redis up. ids receives the numeric ids. Returns 0 or a
 * negative code with err (tasks of the calls before the failing one are queued). */
int shoal_enqueue(struct shoal_client *c, const struct shoal_task_opts *tasks, size_t n,
                  int64_t *ids, char *err, size_t errlen);

/* "ServerTasks-12" or "12" -> 12. Returns 0 or -EINVAL. */
int shoal_task_parse_id(const char *s, int64_t *id);

/* Fills t from a task hash's field/value pairs in reply elements [from, ...) (HGETALL shape);
 * unknown fields are ignored. Free with shoal_task_free. */
void shoal_task_from_reply(const redisReply *r, size_t from, int64_t id, struct shoal_task *t);

/* Reads a task. Returns 0, SHOAL_ENOTASK (unknown or expired), or another negative code. */
int shoal_task_get(struct shoal_client *c, int64_t id, struct shoal_task *t, char *err,
                   size_t errlen);
void shoal_task_free(struct shoal_task *t);
/* Its log (malloc'd, *len bytes), or NULL when it has none. */
char *shoal_task_log(struct shoal_client *c, int64_t id, size_t *len, char *err, size_t errlen);

/* Cancels (see lua/cancel.lua). *result gets "canceled", "cancelling" or "final:<State>".
 * Returns 0, SHOAL_ENOTASK, or another negative code. */
int shoal_task_cancel(struct shoal_client *c, int64_t id, char *result, size_t rlen, char *err,
                      size_t errlen);

/* True for Success, Failed, Canceled, TimedOut. */
bool shoal_state_final(const char *state);

#endif
