/* handler.h: the C API for custom task handlers.
 *
 * A handler runs on one of the node's handler threads (--handler-threads, started as runs need
 * them, at nice 10), never on the event loop: it may block, compute, or sleep. It reads its
 * job's payload (msgpack), may append to the job's log, should poll shoal_job_stopping() in
 * long loops (timeout or cancel), and returns 0 for Success or non-zero for Failed (with
 * shoal_job_fail() giving the reason a person will read).
 *
 *   static int resize(struct shoal_job *job, void *arg) { ...; return 0; }
 *   int main(int argc, char **argv) {
 *       struct shoal_handlers *h = shoal_handlers_new();
 *       shoal_handlers_add(h, "resize", resize, NULL);
 *       return shoal_worker_main(argc, argv, h);   // `myworker worker --cap 8 ...`
 *   }
 *
 * Every function on a job is safe from the handler's thread while the handler runs. */
#ifndef SHOAL_WORKER_HANDLER_H
#define SHOAL_WORKER_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shoal_job;
struct shoal_handlers;

typedef int (*shoal_handler_fn)(struct shoal_job *job, void *arg);

/* A registry of handlers (type name -> function). Free with shoal_handlers_free. */
struct shoal_handlers *shoal_handlers_new(void);
/* Adds or replaces a handler; type is copied. Built-in names (exec, sleep, noop, fail) cannot
 * be replaced. Returns 0, or -EINVAL for a bad name / built-in. */
int shoal_handlers_add(struct shoal_handlers *h, const char *type, shoal_handler_fn fn, void *arg);
void shoal_handlers_free(struct shoal_handlers *h);

const char *shoal_job_id(const struct shoal_job *job);
const char *shoal_job_type(const struct shoal_job *job);
/* The msgpack payload (borrowed for the handler's run), and its length. */
const void *shoal_job_args(const struct shoal_job *job, size_t *len);
int64_t shoal_job_attempt(const struct shoal_job *job);
/* True once the job's timeout passed or it was canceled or the node is stopping it. */
bool shoal_job_stopping(const struct shoal_job *job);
/* Appends to the job's capped log (the newest bytes are kept). */
void shoal_job_log(struct shoal_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sets the failure reason (when the handler then returns non-zero). */
void shoal_job_fail(struct shoal_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs `worker` (or an admin command) with these handlers available besides the built-ins.
 * Returns the exit code. h is borrowed for the call. */
int shoal_worker_main(int argc, char **argv, const struct shoal_handlers *h);

#endif
