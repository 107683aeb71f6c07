/* handlers.c: the registry of custom C handlers (type name -> function) and the job accessors
 * a handler calls from its thread-pool thread (handler.h). The registry is filled before the
 * node starts and only read afterwards, so it takes no lock; a job's log and failure reason
 * are written by the handler's thread and read by the loop thread after the handler returned,
 * under the job's mutex. The stopping flag is an atomic the loop thread sets. */
#include "worker/handlers_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const builtins[] = {"exec", "fail", "noop", "sleep"};

bool handler_builtin(const char *type) {
    for (size_t i = 0; i < ARRAY_SIZE(builtins); i++)
        if (strcmp(type, builtins[i]) == 0) return true;
    return false;
}

/* 1..63 of [A-Za-z0-9._:-]: readable in logs and Redis, and fits runner_task.type. */
static bool name_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > HANDLER_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != ':') return false;
    }
    return true;
}

struct shoal_handlers *shoal_handlers_new(void) {
    return xcalloc(1, sizeof(struct shoal_handlers));
}

/* Contract in handler.h: adds or replaces; built-in and malformed names give -EINVAL. */
int shoal_handlers_add(struct shoal_handlers *h, const char *type, shoal_handler_fn fn, void *arg) {
    if (!h || !type || !fn || !name_valid(type) || handler_builtin(type)) return -EINVAL;
    struct handler_entry *e = (struct handler_entry *)handlers_find(h, type);
    if (!e) {
        if (h->n == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 8;
            h->v = xrealloc(h->v, h->cap * sizeof *h->v);
        }
        e = &h->v[h->n++];
        snprintf(e->name, sizeof e->name, "%s", type);
    }
    e->fn = fn;
    e->arg = arg;
    return 0;
}

void shoal_handlers_free(struct shoal_handlers *h) {
    if (!h) return;
    free(h->v);
    free(h);
}

const struct handler_entry *handlers_find(const struct shoal_handlers *h, const char *type) {
    for (size_t i = 0; h && i < h->n; i++)
        if (strcmp(h->v[i].name, type) == 0) return &h->v[i];
    return NULL;
}

/* ---- jobs ---- */

void job_init(struct shoal_job *job, const char *id, const char *type, const char *args,
              size_t args_len, int64_t attempt, size_t log_cap) {
    memset(job, 0, sizeof *job);
    job->id = id;
    job->type = type;
    job->args = args;
    job->args_len = args_len;
    job->attempt = attempt;
    atomic_init(&job->stopping, false);
    pthread_mutex_init(&job->mu, NULL);
    buf_init(&job->log);
    job->log_cap = log_cap;
}

void job_close(struct shoal_job *job) {
    pthread_mutex_destroy(&job->mu);
    buf_free(&job->log);
}

void log_keep_tail(struct buf *b, size_t cap, bool *truncated, const void *p, size_t n) {
    if (n == 0) return;
    if (n >= cap) { /* the new bytes alone fill the log */
        if (b->len > 0 || n > cap) *truncated = true;
        buf_reset(b);
        buf_append(b, (const char *)p + (n - cap), cap);
        return;
    }
    if (b->len + n > cap) {
        buf_consume(b, b->len + n - cap);
        *truncated = true;
    }
    buf_append(b, p, n);
}

const char *shoal_job_id(const struct shoal_job *job) { return job->id; }
const char *shoal_job_type(const struct shoal_job *job) { return job->type; }
int64_t shoal_job_attempt(const struct shoal_job *job) { return job->attempt; }

const void *shoal_job_args(const struct shoal_job *job, size_t *len) {
    if (len) *len = job->args_len;
    return job->args;
}

bool shoal_job_stopping(const struct shoal_job *job) {
    return atomic_load((atomic_bool *)&job->stopping);
}

/* Formats outside the lock (it may be slow), appends under it. A line that does not end in a
 * newline gets one, so handler messages stay one per line in the task log. */
void shoal_job_log(struct shoal_job *job, const char *fmt, ...) {
    struct buf line;
    buf_init(&line);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&line, fmt, ap);
    va_end(ap);
    if (line.len == 0 || line.data[line.len - 1] != '\n') buf_append(&line, "\n", 1);
    pthread_mutex_lock(&job->mu);
    log_keep_tail(&job->log, job->log_cap, &job->log_truncated, line.data, line.len);
    pthread_mutex_unlock(&job->mu);
    buf_free(&line);
}

void shoal_job_fail(struct shoal_job *job, const char *fmt, ...) {
    char msg[sizeof job->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&job->mu);
    memcpy(job->error, msg, sizeof msg);
    pthread_mutex_unlock(&job->mu);
}
