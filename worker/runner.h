/* runner.h: runs claimed tasks on a node, never on the loop thread's time: `exec` through
 * libuv's process API, `sleep` on a loop timer, C handlers (noop, fail, custom) on libuv's
 * thread pool. It knows nothing of Redis: the claim side hands it a task and gets the result
 * back through done_cb; what happens between is the runner's.
 *
 * Ownership: runner_start takes the task (malloc'd, args too); done_cb gets it back with the
 * result (also malloc'd) and owns both from then on: free them with runner_task_free and
 * runner_result_free. done_cb always runs on the loop thread, exactly once per started task,
 * never from inside runner_start, runner_cancel or runner_stop_all. */
#ifndef SHOAL_WORKER_RUNNER_H
#define SHOAL_WORKER_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "worker/handler.h"

struct exec_cred; /* worker/exec.h */

/* A claimed task, as the claim script hands it out. */
struct runner_task {
    char id[40];   /* "ServerTasks-123" */
    char type[64]; /* handler name */
    char *args;    /* msgpack payload, owned (may be NULL with args_len 0) */
    size_t args_len;
    int64_t timeout_ms;  /* execution timeout; 0 = none */
    int64_t attempt;     /* 1 for the first run */
    int64_t lease;       /* fencing token of this claim (opaque to the runner) */
    uint64_t started_ns; /* monotonic time the runner started it (set by runner_start) */
    void *user;          /* for the caller */
};

enum runner_outcome {
    RUN_SUCCESS,     /* handler reported success / exit code 0 */
    RUN_FAILED,      /* handler failed, non-zero exit, unknown type, bad payload, refused exec */
    RUN_TIMEDOUT,    /* execution timeout hit; the work was stopped */
    RUN_CANCELED,    /* runner_cancel stopped it */
    RUN_INTERRUPTED, /* runner_stop_all stopped it (shutdown): the caller requeues it */
};

struct runner_result {
    enum runner_outcome outcome;
    char error[512];    /* for a person: why it failed / was stopped ("" on success) */
    int exit_code;      /* exec: exit status, or 128+signal; others: -1 */
    struct buf log;     /* last log_cap bytes of output (exec stdout+stderr, handler logs) */
    bool log_truncated; /* earlier output was dropped */
    int64_t duration_ms;
};

struct runner_config {
    const char *allow_exec; /* comma list of absolute paths, or prefixes ending in '/';
                                 * "" or NULL: exec refused for everything */
    size_t log_cap;         /* bytes of output kept per task (default 65536) */
    int64_t kill_grace_ms;  /* SIGTERM -> SIGKILL delay on timeout/cancel/stop */
    const struct shoal_handlers *handlers; /* custom C handlers (may be NULL); borrowed */
    const char *package_dir;               /* uploaded packages, for exec tasks naming one */
    const char *exec_shim;                 /* the node's own binary, to spawn exec tasks through
                                 * `exec-child` (see worker/exec.h); NULL: spawn directly */
    const char *exec_env_allow; /* node variables exec tasks get (--exec-env-allow), or NULL */
    const char *task_env_allow; /* names a task's env may set (--task-env-allow); ""/NULL: any
                                 * name common/task_env.h does not deny */
    const char *node_name;      /* SHOAL_TASK_NODE */
    const struct exec_cred *exec_cred; /* --exec-user, resolved; NULL: the node's account */
    int64_t orphan_grace_ms;  /* exec through the shim: when the node dies, SIGTERM to SIGKILL
                              * of the run's processes (0: kill_grace_ms) */
    unsigned handler_threads; /* C handlers running at once at most (0: 4) */
};

struct runner;
typedef void (*runner_done_cb)(struct runner *r, struct runner_task *t, struct runner_result *res,
                               void *arg);

/* Creates a runner on loop. cfg is copied (strings too). */
struct runner *runner_new(uv_loop_t *loop, const struct runner_config *cfg, runner_done_cb done,
                          void *arg);
/* Starts t (takes ownership). Unknown types, undecodable payloads and refused programs still
 * "start": they complete through done_cb with RUN_FAILED and a message. */
void runner_start(struct runner *r, struct runner_task *t);
/* Stops the task with this id (exec: SIGTERM, SIGKILL after kill_grace; C handler: its cancel
 * flag; sleep: at once). It completes with RUN_CANCELED. Returns 0, or UV_ENOENT if unknown. */
int runner_cancel(struct runner *r, const char *id);
/* True while the task with this id runs and is being stopped already (cancel, timeout,
 * shutdown). */
bool runner_stopping(const struct runner *r, const char *id);
/* Stops every running task like runner_cancel, completing them with RUN_INTERRUPTED. */
void runner_stop_all(struct runner *r);
/* Fencing: stops every task like runner_stop_all, exec programs with at most grace_ms between
 * SIGTERM and SIGKILL (C handlers see their stop flag). Returns how many were running. Until
 * the next runner_extend, tasks started complete with RUN_INTERRUPTED without running. */
unsigned runner_fence(struct runner *r, int64_t grace_ms);
/* The node's lease was renewed: until_ms (monotonic ms) is its new fencing deadline. Exec runs
 * (through the shim) are told, and stop by themselves if it passes without a newer one: the
 * node's fencing holds even while the node cannot act. New runs start with it. */
void runner_extend(struct runner *r, int64_t until_ms);
/* Stops the run of task id like runner_fence stops every run (within grace_ms, completing with
 * RUN_INTERRUPTED): Redis no longer records it as this node's. 0, or UV_ENOENT when no run of
 * id is going on (or it is being stopped already). */
int runner_disown(struct runner *r, const char *id, int64_t grace_ms);
/* Tasks started and not yet completed. */
unsigned runner_running(const struct runner *r);
/* Calls fn for every task started and not yet completed (fn must not start or stop tasks). */
void runner_foreach(const struct runner *r, void (*fn)(const struct runner_task *t, void *arg),
                    void *arg);
/* Frees the runner once no task runs (call after the last done_cb) and its handles closed;
 * done(arg) then runs, always from a later loop callback. Tasks still running are first
 * stopped as by runner_stop_all (their done_cb still runs); runner_start after this completes
 * the task with RUN_INTERRUPTED. */
void runner_close(struct runner *r, void (*done)(void *arg), void *arg);

void runner_task_free(struct runner_task *t);
void runner_result_free(struct runner_result *res);

#endif
