/* handlers_int.h: worker-internal view of the handler registry and of a job (handler.h keeps
 * both opaque for handler authors). Used by runner.c (runs jobs) and exec.c (capped log). */
#ifndef SHOAL_WORKER_HANDLERS_INT_H
#define SHOAL_WORKER_HANDLERS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "worker/handler.h"

#define HANDLER_NAME_MAX 63 /* fits runner_task.type[64] with its NUL */

struct handler_entry {
    char name[HANDLER_NAME_MAX + 1]; /* type name, valid per handler_name_valid() */
    shoal_handler_fn fn;             /* runs on a thread-pool thread */
    void *arg;                       /* the registrant's, passed to fn */
};

struct shoal_handlers {
    struct handler_entry *v; /* registration order; owned */
    size_t n;                /* entries used */
    size_t cap;              /* entries allocated */
};

/* The entry for type, or NULL. h may be NULL. */
const struct handler_entry *handlers_find(const struct shoal_handlers *h, const char *type);
/* True for exec, fail, noop and sleep. */
bool handler_builtin(const char *type);

/* One run of a C handler. Fields above the mutex are fixed for the run (borrowed from the
 * task), so the handler's thread reads them without a lock. */
struct shoal_job {
    const char *id;   /* borrowed from the task */
    const char *type; /* borrowed from the task */
    const char *args; /* msgpack payload, borrowed; may be NULL */
    size_t args_len;
    int64_t attempt;
    atomic_bool stopping; /* set by the loop thread on timeout, cancel or stop */
    pthread_mutex_t mu;   /* guards everything below */
    struct buf log;       /* last log_cap bytes written through shoal_job_log */
    size_t log_cap;
    bool log_truncated;
    char error[512]; /* shoal_job_fail's reason; "" when none */
};

/* Embedded job: job_init borrows the strings and args until job_close. */
void job_init(struct shoal_job *job, const char *id, const char *type, const char *args,
              size_t args_len, int64_t attempt, size_t log_cap);
/* Destroys the mutex and frees the log (move it out first to keep it). */
void job_close(struct shoal_job *job);

/* Appends p[0..n) to b keeping only its last cap bytes; sets *truncated when bytes are dropped.
 * Not locked: the caller serialises. */
void log_keep_tail(struct buf *b, size_t cap, bool *truncated, const void *p, size_t n);

#endif
