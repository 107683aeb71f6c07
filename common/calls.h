/* calls.h: one builder per lua/ script. A builder takes the call's arguments by name and lays
 * out the script's KEYS and ARGV in the one place that knows their order, into a struct
 * script_call that rconn_call() (async, the node and the HTTP API), rsync_call() (blocking, the
 * CLI, the C client, benches and tests) or api_call() (an HTTP handler) sends.
 *
 * The meaning of each KEYS and ARGV entry and the reply's shape are in the script's header
 * comment (lua/<name>.lua): that comment is the source of truth, and each builder below names
 * its script and lists its KEYS/ARGV in the script's order. Change both together;
 * tests/test_units.c checks that every builder sends as many KEYS as its script's header names.
 *
 * Ownership: a struct script_call lives where it is declared (usually the stack) and must not be
 * copied or moved once built (it points into itself). Keys, numbers and counts are written into
 * its own storage; strings passed in (names, tokens, payloads, queue names) are borrowed until the
 * call is sent. Every builder initialises the call; call_free() releases what it owns (always
 * call it, also after sending: the connection copies what it sends). Small calls need no heap
 * memory at all; batches (enqueue, complete, reconcile) take a count of items to make room for
 * at once, so a batch costs at most two allocations whatever its size. */
#ifndef SHOAL_CALLS_H
#define SHOAL_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/keys.h"
#include "common/package.h"
#include "common/script.h"

#define CALL_INLINE_ARGS 81   /* KEYS + ARGV held without allocating (a claim of 67 queues) */
#define CALL_INLINE_TEXT 2048 /* bytes of keys and numbers held without allocating */

struct call_block;
struct shoal_task_opts; /* common/client.h */

struct script_call {
    enum script_id id;
    int nkeys; /* argv[0..nkeys) are KEYS, argv[nkeys..argc) ARGV */
    int argc;
    const char **argv; /* argc strings: in this call's storage or borrowed */
    size_t *lens;      /* their lengths (binary arguments may hold NULs) */
    /* storage, owned */
    int cap;        /* room in argv and lens */
    int count_at;   /* a batch's item count in argv (enqueue, complete), or -1 */
    size_t items;   /* items added to a batch */
    char count[24]; /* that count's text */
    char *text;     /* where the next owned string goes */
    size_t text_left;
    struct call_block *blocks; /* heap text, newest first */
    void *heap_args;           /* argv and lens on the heap once CALL_INLINE_ARGS is passed */
    unsigned allocs;           /* heap allocations made while building (tests count them) */
    const char *inline_argv[CALL_INLINE_ARGS];
    size_t inline_lens[CALL_INLINE_ARGS];
    char inline_text[CALL_INLINE_TEXT];
};

/* Releases what c owns. c must be rebuilt before it is used again. */
void call_free(struct script_call *c);

/* The numeric part of a task id: "ServerTasks-12" -> "12" (borrowed from id); "12" -> "12". */
const char *call_task_number(const char *id);

/* --- nodes ---------------------------------------------------------------------------------- */

/* register.lua. KEYS node, alive, nodes, stats, layout; ARGV name, instance, now, ttl, cap,
 * version, host, pid, listen, queues, heartbeat, this build's layout (SHOAL_LAYOUT). */
struct call_register_args {
    const char *name;
    const char *instance; /* this process's id */
    int64_t now_ms;
    int64_t ttl_ms; /* the liveness key's TTL */
    int64_t cap;    /* the configured task cap */
    const char *version;
    const char *host;
    int64_t pid;
    const char *listen; /* the HTTP address */
    const char *queues; /* comma list */
    int64_t heartbeat_ms;
};
void call_register(struct script_call *c, const struct keys *k, const struct call_register_args *a);

/* heartbeat.lua. KEYS node, alive, running, stats; ARGV instance, now, ttl. */
void call_heartbeat(struct script_call *c, const struct keys *k, const char *name,
                    const char *instance, int64_t now_ms, int64_t ttl_ms);

/* deregister.lua. KEYS node, alive, stats; ARGV instance, now. */
void call_deregister(struct script_call *c, const struct keys *k, const char *name,
                     const char *instance, int64_t now_ms);

/* set_cap.lua and set_drain.lua. KEYS node, alive, stats; ARGV name, cap (or drain 0|1), control
 * channel. */
void call_set_cap(struct script_call *c, const struct keys *k, const char *name, int64_t cap);
void call_set_drain(struct script_call *c, const struct keys *k, const char *name, bool drain);

/* forget.lua. KEYS node, alive, nodes, running; ARGV name. */
void call_forget(struct script_call *c, const struct keys *k, const char *name);

/* cancelling.lua. KEYS running; ARGV prefix, first rank, count (the script looks at 1,000 at
 * most). */
void call_cancelling(struct script_call *c, const struct keys *k, const char *name, int64_t first,
                     int64_t count);

/* repair.lua (shoal check --repair). KEYS stats, nodes; ARGV prefix, op, task number or node
 * name, node name or "". */
void call_repair(struct script_call *c, const struct keys *k, const char *op, const char *a,
                 const char *b);

/* list_nodes.lua and node_summary.lua. KEYS nodes; ARGV prefix. */
void call_list_nodes(struct script_call *c, const struct keys *k);
void call_node_summary(struct script_call *c, const struct keys *k);

/* sweep.lua. KEYS nodes, stats, done; ARGV prefix, now, forget period, retention. */
void call_sweep(struct script_call *c, const struct keys *k, int64_t now_ms,
                int64_t forget_after_ms, int64_t retention_ms);

/* recover.lua. KEYS nodes, stats, done, recovery lock; ARGV prefix, now, wake channel, lock
 * token, lock TTL, node name for `only` mode (only NULL: fleet mode, ''). */
void call_recover(struct script_call *c, const struct keys *k, int64_t now_ms, const char *token,
                  int64_t lock_ttl_ms, const char *only);

/* --- tasks ---------------------------------------------------------------------------------- */

/* enqueue.lua. KEYS seq, stats, scheduled, queues; ARGV prefix, now, wake channel, count, then
 * per task (call_enqueue_add): queue, type, args, priority, queue time, expiry, timeout,
 * attempts, node-loss budget. Room is made at once for `tasks` tasks. The options are not
 * checked here (shoal_task_opts_check does; the script checks again); o's strings are
 * borrowed. */
void call_enqueue(struct script_call *c, const struct keys *k, int64_t now_ms, size_t tasks);
void call_enqueue_add(struct script_call *c, const struct shoal_task_opts *o);

/* claim.lua. KEYS node, alive, running, stats, scheduled, done; ARGV prefix, name, instance,
 * now, max, balance, lease margin, push, then the queues in order (call_claim_add_queue). */
struct call_claim_args {
    const char *name;
    const char *instance;
    int64_t now_ms;
    int64_t max;  /* tasks to claim at most */
    bool balance; /* Octopus's workload rule */
    int64_t lease_margin_ms;
    bool push; /* register the node idle when it is left room and nothing to take */
};
void call_claim(struct script_call *c, const struct keys *k, const struct call_claim_args *a);
void call_claim_add_queue(struct script_call *c, const char *queue);

/* complete.lua. KEYS running, stats, done, scheduled; ARGV prefix, now, retention, wake channel,
 * count, then per report (call_complete_add): id, lease, outcome, error, exit code, log, retry
 * delay. Room is made at once for `reports` reports. */
void call_complete(struct script_call *c, const struct keys *k, const char *name, int64_t now_ms,
                   int64_t retention_ms, size_t reports);
struct call_report {
    const char *task;    /* "ServerTasks-12" or "12" */
    int64_t lease;       /* the lease its claim handed out */
    const char *outcome; /* "Success", "Failed", "TimedOut", "Canceled", "Interrupted" */
    const char *error;   /* "" for none */
    int64_t exit_code;   /* -1 for none */
    const char *log;     /* log_len bytes (binary), may be NULL when log_len is 0 */
    size_t log_len;
    int64_t retry_delay_ms; /* before a failed task with attempts left runs again */
};
void call_complete_add(struct script_call *c, const struct call_report *r);

/* turn.lua: a node's reports and its next claim in one call (complete.lua, then claim.lua). KEYS
 * node, alive, running, stats, scheduled, done; ARGV prefix, name, instance, now, max, balance,
 * lease margin, push, retention, wake channel, the queue count and the queues in order, then the
 * report count and per report (call_complete_add) what complete.lua takes. Room is made at once
 * for `reports` reports. */
void call_turn(struct script_call *c, const struct keys *k, const struct call_claim_args *a,
               int64_t retention_ms, const char *const *queues, int nqueues, size_t reports);

/* reconcile.lua. KEYS running, stats, done; ARGV prefix, name, now, wake channel, then the task
 * numbers the node knows (call_reconcile_add takes an id, "ServerTasks-12" or "12"). Room is
 * made at once for `known` tasks. */
void call_reconcile(struct script_call *c, const struct keys *k, const char *name, int64_t now_ms,
                    size_t known);
void call_reconcile_add(struct script_call *c, const char *task);

/* owned.lua. KEYS running; ARGV prefix, name, then at most 1,000 task numbers the node runs
 * (call_owned_add, as call_reconcile_add: the string must live until the call is sent). */
void call_owned(struct script_call *c, const struct keys *k, const char *name, size_t runs);
void call_owned_add(struct script_call *c, const char *task);

/* unidle.lua: out of the idle sets, then "barrier <token>" on the node's push channel. KEYS
 * node; ARGV prefix, name, instance, token, then the node's queues. */
void call_unidle(struct script_call *c, const struct keys *k, const char *name,
                 const char *instance, const char *token, const char *const *queues, int nqueues);

/* cancel.lua. KEYS task, stats, scheduled, done; ARGV prefix, id, now, control channel. */
void call_cancel(struct script_call *c, const struct keys *k, int64_t id, int64_t now_ms);

/* expire.lua. KEYS queues, stats, done, scheduled, qseen; ARGV prefix, now, budget, cursor,
 * idle. One slice of a pass over the queue names: call again with the cursor it returns until
 * that is "0". */
void call_expire(struct script_call *c, const struct keys *k, int64_t now_ms, int64_t budget,
                 const char *cursor, int64_t idle_ms);

/* list_tasks.lua. KEYS nodes, queues, scheduled, done; ARGV prefix, node, states, skip, take,
 * scan limit. */
struct call_list_tasks_args {
    const char *node;   /* NULL or "": any node */
    const char *states; /* comma list; NULL or "": all */
    int64_t skip, take;
    int64_t scan_limit; /* the most candidate ids looked at */
};
void call_list_tasks(struct script_call *c, const struct keys *k,
                     const struct call_list_tasks_args *a);

/* queue_stats.lua. KEYS queues, stats, scheduled; ARGV prefix, cursor. One slice of the queue
 * names: call again with the cursor it returns until that is "0". */
void call_queue_stats(struct script_call *c, const struct keys *k, const char *cursor);

/* --- packages ------------------------------------------------------------------------------- */

/* package.lua. KEYS package hash, space index, spaces set, lock; ARGV op, lock token, key
 * (<PackageId>.<Version>), space, and for a commit: published (ms), then the hash's fields as
 * field, value, ... (nfields strings, borrowed). */
void call_package_commit(struct script_call *c, const struct keys *k, const char *space,
                         const struct package_name *n, const char *token, int64_t published_ms,
                         const char *const *fields, size_t nfields);
void call_package_delete(struct script_call *c, const struct keys *k, const char *space,
                         const struct package_name *n, const char *token);
void call_package_unlock(struct script_call *c, const struct keys *k, const char *space,
                         const struct package_name *n, const char *token);

/* package_list.lua. KEYS space index; ARGV package hash prefix, filter, skip, take,
 * nuGetPackageId, latest, scan limit. */
struct call_package_list_args {
    const char *filter;   /* substring of <PackageId>.<Version>, or NULL/"" */
    int64_t skip, take;   /* the page (take at most 1,000) */
    const char *nuget_id; /* only this PackageId, or NULL/"" */
    bool latest;          /* only the newest published version of each PackageId */
    int64_t scan_limit;   /* index entries looked at when filtering (0: 2,000) */
};
void call_package_list(struct script_call *c, const struct keys *k, const char *space,
                       const struct call_package_list_args *a);

/* --- access (common/access.h) ------------------------------------------------------------- */

/* access_write.lua. KEYS users, apikeys, access version, events; ARGV prefix, now, access
 * channel, event retention, event JSON, op, then the op's arguments (args, nargs: borrowed). */
void call_access_write(struct script_call *c, const struct keys *k, int64_t now_ms,
                       int64_t retention_ms, const char *event, const char *op,
                       const char *const *args, int nargs);
/* access_load.lua. KEYS users, apikeys, access version, lockouts, apikey_used; ARGV prefix,
 * now. */
void call_access_load(struct script_call *c, const struct keys *k, int64_t now_ms);
/* auth_fail.lua. KEYS authfail:<addr>, lockouts, events; ARGV addr, now, window, threshold,
 * lockout, access channel, event retention, event JSON. */
struct call_auth_fail_args {
    const char *addr;
    int64_t now_ms, window_ms, threshold, lockout_ms, retention_ms;
    const char *event;
};
void call_auth_fail(struct script_call *c, const struct keys *k,
                    const struct call_auth_fail_args *a);

#endif
