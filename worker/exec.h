/* exec.h: worker-internal interface of the `exec` handler (exec.c): one program run through
 * libuv's process API, with the node's allowlist, a capped log of stdout+stderr, and a
 * TERM-then-KILL stop of its whole process group. The runner owns timing (timeouts) and the
 * task's outcome; exec.c owns the process, its pipes and its grace timer. */
#ifndef SHOAL_WORKER_EXEC_H
#define SHOAL_WORKER_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/buf.h"

struct exec_proc;

#define EXEC_MAX_GROUPS 64

/* The account exec tasks run as (--exec-user), resolved at start-up by exec_cred_resolve. */
struct exec_cred {
    uid_t uid;
    gid_t gid;
    int ngroups; /* supplementary groups (the user's, from /etc/group) */
    gid_t groups[EXEC_MAX_GROUPS];
    char name[64];  /* user name, for messages */
    char home[256]; /* its home directory: the task's HOME */
};

struct exec_opts {
    const char *allow_exec;       /* comma list (runner_config.allow_exec); borrowed for the call */
    size_t log_cap;               /* bytes of output kept (> 0) */
    int64_t kill_grace_ms;        /* SIGTERM -> SIGKILL delay after exec_stop */
    const char *package_dir;      /* where a task's "package" is looked up (SHOAL_PACKAGE_PATH) */
    const char *shim;             /* NULL, or a program run as `shim exec-child ... -- PATH ARGV...`
                               * that ties the child's life to the node (exec_child_main) */
    const char *exec_env_allow;   /* names/prefixes copied from the node's environment, or NULL */
    const char *task_env_allow;   /* names/prefixes a task's env may set ("" / NULL: any not
                                  * denied by common/task_env.h) */
    const char *node_name;        /* SHOAL_TASK_NODE */
    const char *task_id;          /* SHOAL_TASK_ID */
    int64_t attempt;              /* SHOAL_TASK_ATTEMPT */
    const struct exec_cred *cred; /* NULL, or the account to run as (needs shim) */
    int64_t orphan_grace_ms;      /* shim: when the node dies, SIGTERM to SIGKILL of the tree */
    int64_t lease_until_ms;       /* shim: the node's fencing deadline (monotonic ms) at start;
                                   * exec_extend moves it. 0: none */
};

/* `exec-child [--env-fd N] [--lease-fd N --lease-until-ms MS] [--orphan-grace-ms MS]
 * [--cred UID:GID:G1,G2] -- PATH ARGV...`: the
 * shim (exec_child.c). It stays resident beside the program as a child subreaper, so it is the
 * ancestor of everything the program starts (double forks, setsid and daemons included):
 * - it reads the task's environment from fd N, forks, and the child switches to the task
 *   account when --cred is given and execve()s PATH with ARGV and that environment;
 * - SIGTERM (from the node) -> SIGTERM to every descendant; SIGUSR1 (the node's grace ended)
 *   -> SIGKILL to every descendant until none is left;
 * - the node's death (its parent-death signal, SIGTERM) -> SIGTERM to every descendant, and
 *   SIGKILL MS later;
 * - the node's lease deadline (MS, then 8-byte extensions the node writes to fd N) passing
 *   without an extension -> the same as the node's death: the node is stopped or blocked;
 * - the program's exit -> what it left gets EXEC_DRAIN_MS, then SIGKILL;
 * and it exits the way the program did once nothing of the run is left. Without it a node
 * killed with SIGKILL would leave its tasks' programs running while recovery runs the tasks
 * again elsewhere. Returns the program's exit code (or re-raises its signal); 127 when the
 * program could not start. */
int exec_child_main(int argc, char **argv);

/* Resolves --exec-user USER[:GROUP] (names or numbers) with the user's supplementary groups.
 * Returns 0, or a negative errno with a message. */
int exec_cred_resolve(const char *spec, struct exec_cred *out, char *err, size_t errlen);
/* Tries the shim's exact credential switch in a forked child, then signals that child: 0 when
 * this process may switch to c AND signal processes running as c (a non-root node needs
 * CAP_KILL to stop its tasks), else -EPERM with a message naming what failed. Call at
 * start-up, before threads. */
int exec_cred_probe(const struct exec_cred *c, char *err, size_t errlen);
/* "UID:GID:G1,G2,...", the shim's --cred argument. */
void exec_cred_format(const struct exec_cred *c, char *buf, size_t len);

/* Task programs (through exec-child) and handler threads run this much nicer than the node, so
 * CPU-bound tasks cannot starve the event loop that answers ping and keeps the heartbeat. */
#define TASK_NICE 10

/* After a program exits, how long what it left behind may keep running (and holding its
 * output open) before it is killed: by the shim (exec_child.c), or by exec.c without one. */
#define EXEC_DRAIN_MS 500

struct exec_result {
    int spawn_err;        /* 0, or uv_spawn's error (the program never ran) */
    char spawn_what[300]; /* the program and cwd, for the spawn error message */
    bool exited;          /* the process was reaped */
    int64_t exit_status;  /* when exited */
    int term_signal;      /* when exited: the signal that killed it, or 0 */
    bool killed;          /* SIGKILL was sent after the grace */
    struct buf log;       /* last log_cap bytes of stdout+stderr; the callee may move it */
    bool log_truncated;
};

/* Called once, on the loop, after the process was reaped, both pipes reached EOF (or were
 * closed) and every handle of p closed. p is freed when the callback returns; res is borrowed
 * for the callback (move res->log out to keep it: copy the struct, then buf_init the source). */
typedef void (*exec_done_cb)(struct exec_proc *p, struct exec_result *res, void *arg);

/* Decodes the exec payload, applies the allowlist and spawns the program in a new session.
 * Returns 0 with *out set (done runs later, also when uv_spawn itself failed), or -EINVAL with
 * a message for a person in err when the payload is bad or the program is not allowed; then
 * nothing was created and done never runs. */
int exec_start(uv_loop_t *loop, const struct exec_opts *o, const char *args, size_t len,
               exec_done_cb done, void *arg, struct exec_proc **out, char *err, size_t errlen);

/* Asks the program to stop: SIGTERM to its process group now, SIGKILL after the grace. Once the
 * program exited, whatever is left of its group is killed and its pipes closed at once.
 * Idempotent; never calls done synchronously. */
void exec_stop(struct exec_proc *p);
/* The node's lease was renewed: the run may go on until until_ms (monotonic ms, the node's
 * fencing deadline). Through the shim only: the shim stops the run by itself (SIGTERM, SIGKILL
 * after the orphan grace) when that time passes without a newer one, also when the node cannot
 * act (stopped, its loop blocked). */
void exec_extend(struct exec_proc *p, int64_t until_ms);
/* The same with grace_ms instead of the configured kill grace when that is longer (fencing:
 * the program must be gone before the node's liveness TTL runs out). */
void exec_stop_within(struct exec_proc *p, int64_t grace_ms);

/* Applies the allowlist rule to argv0 (exposed for tests and `shoal worker` start-up checks):
 * writes the program's resolved absolute path (symlinks followed: the file that will run) to
 * path and returns 0, or -EINVAL/-ENOENT with a message. */
int exec_resolve(const char *allow_exec, const char *argv0, char *path, size_t pathlen, char *err,
                 size_t errlen);

#endif
