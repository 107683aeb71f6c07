/* calls.c: the builders of the lua/ scripts' KEYS and ARGV, and the call's storage (calls.h). */
#include "common/calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/client.h"
#include "common/util.h"

#define KEY_ROOM 320   /* the longest key (a package's) fits; see keys.h */
#define NUM_ROOM 24    /* an int64 in decimal, with its NUL */
#define BLOCK_MIN 4096 /* heap text comes in blocks of at least this */

struct call_block {
    struct call_block *next;
    char data[];
};

/* --- storage -------------------------------------------------------------------------------- */

static void init(struct script_call *c, enum script_id id) {
    c->id = id;
    c->nkeys = 0;
    c->argc = 0;
    c->argv = c->inline_argv;
    c->lens = c->inline_lens;
    c->cap = CALL_INLINE_ARGS;
    c->count_at = -1;
    c->items = 0;
    c->count[0] = '\0';
    c->text = c->inline_text;
    c->text_left = sizeof c->inline_text;
    c->blocks = NULL;
    c->heap_args = NULL;
    c->allocs = 0;
}

void call_free(struct script_call *c) {
    while (c->blocks) {
        struct call_block *b = c->blocks;
        c->blocks = b->next;
        free(b);
    }
    free(c->heap_args);
    c->heap_args = NULL;
    c->argv = c->inline_argv;
    c->lens = c->inline_lens;
    c->argc = c->nkeys = 0;
}

/* Room for `more` arguments: argv and lens move to one heap block when the inline room is
 * passed (one allocation per growth; batches reserve their size up front). */
static void reserve_args(struct script_call *c, size_t more) {
    size_t need = (size_t)c->argc + more;
    if (need <= (size_t)c->cap) return;
    size_t cap = (size_t)c->cap * 2 > need ? (size_t)c->cap * 2 : need;
    char *m = xmalloc(cap * (sizeof *c->argv + sizeof *c->lens));
    c->allocs++;
    const char **argv = (const char **)m;
    size_t *lens = (size_t *)(m + cap * sizeof *c->argv);
    memcpy(argv, c->argv, (size_t)c->argc * sizeof *argv);
    memcpy(lens, c->lens, (size_t)c->argc * sizeof *lens);
    free(c->heap_args);
    c->heap_args = m;
    c->argv = argv;
    c->lens = lens;
    c->cap = (int)cap;
}

/* At least n contiguous bytes of owned text at c->text (strings already written never move). */
static char *reserve_text(struct script_call *c, size_t n) {
    if (c->text_left >= n) return c->text;
    size_t size = n > BLOCK_MIN ? n : BLOCK_MIN;
    struct call_block *b = xmalloc(sizeof *b + size);
    c->allocs++;
    b->next = c->blocks;
    c->blocks = b;
    c->text = b->data;
    c->text_left = size;
    return c->text;
}

static void push_bin(struct script_call *c, const char *s, size_t len) {
    reserve_args(c, 1);
    c->argv[c->argc] = s;
    c->lens[c->argc] = len;
    c->argc++;
}

/* A borrowed string. */
static void push(struct script_call *c, const char *s) { push_bin(c, s, strlen(s)); }

/* A string just written at c->text: it becomes owned text. */
static void push_text(struct script_call *c, const char *s) {
    size_t len = strlen(s);
    push_bin(c, s, len);
    c->text += len + 1;
    c->text_left -= len + 1;
}

static void push_int(struct script_call *c, int64_t v) {
    char *b = reserve_text(c, NUM_ROOM);
    snprintf(b, NUM_ROOM, "%lld", (long long)v);
    push_text(c, b);
}

/* Where a key builder writes (then push_text). */
static char *key_room(struct script_call *c) { return reserve_text(c, KEY_ROOM); }

/* The KEYS are all pushed: what follows is ARGV. */
static void keys_end(struct script_call *c) { c->nkeys = c->argc; }

/* A batch's count: its slot now, its value kept current by item_added. */
static void push_count(struct script_call *c) {
    snprintf(c->count, sizeof c->count, "0");
    c->count_at = c->argc;
    push(c, c->count);
}

static void item_added(struct script_call *c) {
    c->items++;
    snprintf(c->count, sizeof c->count, "%zu", c->items);
    c->lens[c->count_at] = strlen(c->count);
}

/* Room for a batch's head (at most HEAD_ARGS arguments, HEAD_KEYS keys and a few numbers)
 * and n items of `args` arguments and `text` bytes of owned text each, in at most one
 * allocation for each. */
enum { HEAD_ARGS = 16, HEAD_KEYS = 6 };
static void reserve_items(struct script_call *c, size_t n, size_t args, size_t text) {
    reserve_args(c, HEAD_ARGS + n * args);
    reserve_text(c, HEAD_KEYS * KEY_ROOM + n * text);
}

const char *call_task_number(const char *id) {
    const char *dash = strrchr(id, '-');
    return dash ? dash + 1 : id;
}

/* Pushes a key (or channel) built by keys.h's function fn: of the namespace, or of one name (a
 * node's, a space's). */
typedef char *(*key_fn)(const struct keys *k, char *buf, size_t len);
typedef char *(*named_key_fn)(const struct keys *k, const char *name, char *buf, size_t len);
static void key(struct script_call *c, key_fn fn, const struct keys *k) {
    push_text(c, fn(k, key_room(c), KEY_ROOM));
}
static void named_key(struct script_call *c, named_key_fn fn, const struct keys *k,
                      const char *name) {
    push_text(c, fn(k, name, key_room(c), KEY_ROOM));
}

/* --- nodes ---------------------------------------------------------------------------------- */

void call_register(struct script_call *c, const struct keys *k,
                   const struct call_register_args *a) {
    init(c, SCRIPT_REGISTER);
    named_key(c, keys_node, k, a->name);
    named_key(c, keys_alive, k, a->name);
    key(c, keys_nodes, k);
    key(c, keys_stats, k);
    key(c, keys_layout_version, k);
    keys_end(c);
    push(c, a->name);
    push(c, a->instance);
    push_int(c, a->now_ms);
    push_int(c, a->ttl_ms);
    push_int(c, a->cap);
    push(c, a->version);
    push(c, a->host);
    push_int(c, a->pid);
    push(c, a->listen);
    push(c, a->queues);
    push_int(c, a->heartbeat_ms);
    push_int(c, SHOAL_LAYOUT);
}

void call_heartbeat(struct script_call *c, const struct keys *k, const char *name,
                    const char *instance, int64_t now_ms, int64_t ttl_ms) {
    init(c, SCRIPT_HEARTBEAT);
    named_key(c, keys_node, k, name);
    named_key(c, keys_alive, k, name);
    named_key(c, keys_running, k, name);
    key(c, keys_stats, k);
    keys_end(c);
    push(c, instance);
    push_int(c, now_ms);
    push_int(c, ttl_ms);
}

void call_deregister(struct script_call *c, const struct keys *k, const char *name,
                     const char *instance, int64_t now_ms) {
    init(c, SCRIPT_DEREGISTER);
    named_key(c, keys_node, k, name);
    named_key(c, keys_alive, k, name);
    key(c, keys_stats, k);
    keys_end(c);
    push(c, instance);
    push_int(c, now_ms);
}

static void node_set(struct script_call *c, enum script_id id, const struct keys *k,
                     const char *name, int64_t value) {
    init(c, id);
    named_key(c, keys_node, k, name);
    named_key(c, keys_alive, k, name);
    key(c, keys_stats, k);
    keys_end(c);
    push(c, name);
    push_int(c, value);
    key(c, keys_control, k);
}

void call_set_cap(struct script_call *c, const struct keys *k, const char *name, int64_t cap) {
    node_set(c, SCRIPT_SET_CAP, k, name, cap);
}

void call_set_drain(struct script_call *c, const struct keys *k, const char *name, bool drain) {
    node_set(c, SCRIPT_SET_DRAIN, k, name, drain ? 1 : 0);
}

void call_forget(struct script_call *c, const struct keys *k, const char *name) {
    init(c, SCRIPT_FORGET);
    named_key(c, keys_node, k, name);
    named_key(c, keys_alive, k, name);
    key(c, keys_nodes, k);
    named_key(c, keys_running, k, name);
    keys_end(c);
    push(c, name);
}

static void node_list(struct script_call *c, enum script_id id, const struct keys *k) {
    init(c, id);
    key(c, keys_nodes, k);
    keys_end(c);
    push(c, k->prefix);
}

void call_cancelling(struct script_call *c, const struct keys *k, const char *name, int64_t first,
                     int64_t count) {
    init(c, SCRIPT_CANCELLING);
    named_key(c, keys_running, k, name);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, first > 0 ? first : 0);
    push_int(c, count > 0 ? count : 1);
}

void call_repair(struct script_call *c, const struct keys *k, const char *op, const char *a,
                 const char *b) {
    init(c, SCRIPT_REPAIR);
    key(c, keys_stats, k);
    key(c, keys_nodes, k);
    keys_end(c);
    push(c, k->prefix);
    push(c, op);
    push(c, a);
    push(c, b ? b : "");
}

void call_list_nodes(struct script_call *c, const struct keys *k) {
    node_list(c, SCRIPT_LIST_NODES, k);
}

void call_node_summary(struct script_call *c, const struct keys *k) {
    node_list(c, SCRIPT_NODE_SUMMARY, k);
}

void call_sweep(struct script_call *c, const struct keys *k, int64_t now_ms,
                int64_t forget_after_ms, int64_t retention_ms) {
    init(c, SCRIPT_SWEEP);
    key(c, keys_nodes, k);
    key(c, keys_stats, k);
    key(c, keys_done, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
    push_int(c, forget_after_ms);
    push_int(c, retention_ms);
}

void call_recover(struct script_call *c, const struct keys *k, int64_t now_ms, const char *token,
                  int64_t lock_ttl_ms, const char *only) {
    init(c, SCRIPT_RECOVER);
    key(c, keys_nodes, k);
    key(c, keys_stats, k);
    key(c, keys_done, k);
    key(c, keys_recover_lock, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
    key(c, keys_wake, k);
    push(c, token);
    push_int(c, lock_ttl_ms);
    push(c, only ? only : "");
}

/* --- tasks ---------------------------------------------------------------------------------- */

enum { ENQUEUE_PER = 9, ENQUEUE_NUMS = 6, COMPLETE_PER = 7, COMPLETE_NUMS = 3 };

void call_enqueue(struct script_call *c, const struct keys *k, int64_t now_ms, size_t tasks) {
    init(c, SCRIPT_ENQUEUE);
    reserve_items(c, tasks, ENQUEUE_PER, ENQUEUE_NUMS * NUM_ROOM);
    key(c, keys_seq, k);
    key(c, keys_stats, k);
    key(c, keys_scheduled, k);
    key(c, keys_queues, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
    key(c, keys_wake, k);
    push_count(c);
}

void call_enqueue_add(struct script_call *c, const struct shoal_task_opts *o) {
    push(c, o->queue);
    push(c, o->type);
    push_bin(c, o->args ? o->args : "", o->args ? o->args_len : 0);
    push_int(c, o->priority);
    push_int(c, o->at_ms);
    push_int(c, o->expiry_ms);
    push_int(c, o->timeout_ms);
    push_int(c, o->attempts);
    push_int(c, o->lost_budget);
    item_added(c);
}

void call_claim(struct script_call *c, const struct keys *k, const struct call_claim_args *a) {
    init(c, SCRIPT_CLAIM);
    named_key(c, keys_node, k, a->name);
    named_key(c, keys_alive, k, a->name);
    named_key(c, keys_running, k, a->name);
    key(c, keys_stats, k);
    key(c, keys_scheduled, k);
    key(c, keys_done, k);
    keys_end(c);
    push(c, k->prefix);
    push(c, a->name);
    push(c, a->instance);
    push_int(c, a->now_ms);
    push_int(c, a->max);
    push(c, a->balance ? "1" : "0");
    push_int(c, a->lease_margin_ms);
    push(c, a->push ? "1" : "0");
}

void call_claim_add_queue(struct script_call *c, const char *queue) { push(c, queue); }

void call_complete(struct script_call *c, const struct keys *k, const char *name, int64_t now_ms,
                   int64_t retention_ms, size_t reports) {
    init(c, SCRIPT_COMPLETE);
    reserve_items(c, reports, COMPLETE_PER, COMPLETE_NUMS * NUM_ROOM);
    named_key(c, keys_running, k, name);
    key(c, keys_stats, k);
    key(c, keys_done, k);
    key(c, keys_scheduled, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
    push_int(c, retention_ms);
    key(c, keys_wake, k);
    push_count(c);
}

void call_complete_add(struct script_call *c, const struct call_report *r) {
    push(c, call_task_number(r->task));
    push_int(c, r->lease);
    push(c, r->outcome);
    push(c, r->error);
    push_int(c, r->exit_code);
    push_bin(c, r->log ? r->log : "", r->log ? r->log_len : 0);
    push_int(c, r->retry_delay_ms);
    item_added(c);
}

void call_turn(struct script_call *c, const struct keys *k, const struct call_claim_args *a,
               int64_t retention_ms, const char *const *queues, int nqueues, size_t reports) {
    call_claim(c, k, a);
    c->id = SCRIPT_TURN;
    reserve_items(c, reports + (size_t)nqueues, COMPLETE_PER, COMPLETE_NUMS * NUM_ROOM);
    push_int(c, retention_ms);
    key(c, keys_wake, k);
    push_int(c, nqueues);
    for (int i = 0; i < nqueues; i++) push(c, queues[i]);
    push_count(c);
}

void call_reconcile(struct script_call *c, const struct keys *k, const char *name, int64_t now_ms,
                    size_t known) {
    init(c, SCRIPT_RECONCILE);
    reserve_args(c, HEAD_ARGS + known);
    named_key(c, keys_running, k, name);
    key(c, keys_stats, k);
    key(c, keys_done, k);
    keys_end(c);
    push(c, k->prefix);
    push(c, name);
    push_int(c, now_ms);
    key(c, keys_wake, k);
}

void call_reconcile_add(struct script_call *c, const char *task) {
    push(c, call_task_number(task));
}

void call_owned(struct script_call *c, const struct keys *k, const char *name, size_t runs) {
    init(c, SCRIPT_OWNED);
    reserve_args(c, HEAD_ARGS + runs);
    named_key(c, keys_running, k, name);
    keys_end(c);
    push(c, k->prefix);
    push(c, name);
}

void call_owned_add(struct script_call *c, const char *task) { push(c, call_task_number(task)); }

void call_unidle(struct script_call *c, const struct keys *k, const char *name,
                 const char *instance, const char *token, const char *const *queues, int nqueues) {
    init(c, SCRIPT_UNIDLE);
    reserve_args(c, HEAD_ARGS + (size_t)nqueues);
    named_key(c, keys_node, k, name);
    keys_end(c);
    push(c, k->prefix);
    push(c, name);
    push(c, instance);
    push(c, token);
    for (int i = 0; i < nqueues; i++) push(c, queues[i]);
}

void call_cancel(struct script_call *c, const struct keys *k, int64_t id, int64_t now_ms) {
    init(c, SCRIPT_CANCEL);
    push_text(c, keys_task(k, id, key_room(c), KEY_ROOM));
    key(c, keys_stats, k);
    key(c, keys_scheduled, k);
    key(c, keys_done, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, id);
    push_int(c, now_ms);
    key(c, keys_control, k);
}

void call_expire(struct script_call *c, const struct keys *k, int64_t now_ms, int64_t budget,
                 const char *cursor, int64_t idle_ms) {
    init(c, SCRIPT_EXPIRE);
    key(c, keys_queues, k);
    key(c, keys_stats, k);
    key(c, keys_done, k);
    key(c, keys_scheduled, k);
    key(c, keys_queue_seen, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
    push_int(c, budget);
    push(c, cursor && *cursor ? cursor : "0");
    push_int(c, idle_ms);
}

void call_list_tasks(struct script_call *c, const struct keys *k,
                     const struct call_list_tasks_args *a) {
    init(c, SCRIPT_LIST_TASKS);
    key(c, keys_nodes, k);
    key(c, keys_queues, k);
    key(c, keys_scheduled, k);
    key(c, keys_done, k);
    keys_end(c);
    push(c, k->prefix);
    push(c, a->node ? a->node : "");
    push(c, a->states ? a->states : "");
    push_int(c, a->skip);
    push_int(c, a->take);
    push_int(c, a->scan_limit);
}

void call_queue_stats(struct script_call *c, const struct keys *k, const char *cursor) {
    init(c, SCRIPT_QUEUE_STATS);
    key(c, keys_queues, k);
    key(c, keys_stats, k);
    key(c, keys_scheduled, k);
    keys_end(c);
    push(c, k->prefix);
    push(c, cursor && *cursor ? cursor : "0");
}

/* --- packages ------------------------------------------------------------------------------- */

static void package(struct script_call *c, const struct keys *k, const char *op, const char *space,
                    const struct package_name *n, const char *token) {
    init(c, SCRIPT_PACKAGE);
    push_text(c, keys_package(k, space, n, key_room(c), KEY_ROOM));
    named_key(c, keys_package_index, k, space);
    key(c, keys_package_spaces, k);
    push_text(c, keys_package_lock(k, space, n, key_room(c), KEY_ROOM));
    keys_end(c);
    push(c, op);
    push(c, token);
    char *key = reserve_text(c, PACKAGE_ID_MAX + PACKAGE_VERSION_MAX + 2);
    package_key(n, key, PACKAGE_ID_MAX + PACKAGE_VERSION_MAX + 2);
    push_text(c, key);
    push(c, space);
}

void call_package_commit(struct script_call *c, const struct keys *k, const char *space,
                         const struct package_name *n, const char *token, int64_t published_ms,
                         const char *const *fields, size_t nfields) {
    package(c, k, "commit", space, n, token);
    push_int(c, published_ms);
    for (size_t i = 0; i < nfields; i++) push(c, fields[i]);
}

void call_package_delete(struct script_call *c, const struct keys *k, const char *space,
                         const struct package_name *n, const char *token) {
    package(c, k, "delete", space, n, token);
}

void call_package_unlock(struct script_call *c, const struct keys *k, const char *space,
                         const struct package_name *n, const char *token) {
    package(c, k, "unlock", space, n, token);
}

void call_package_list(struct script_call *c, const struct keys *k, const char *space,
                       const struct call_package_list_args *a) {
    init(c, SCRIPT_PACKAGE_LIST);
    named_key(c, keys_package_index, k, space);
    keys_end(c);
    named_key(c, keys_package_prefix, k, space);
    push(c, a->filter ? a->filter : "");
    push_int(c, a->skip);
    push_int(c, a->take);
    push(c, a->nuget_id ? a->nuget_id : "");
    push(c, a->latest ? "1" : "0");
    push_int(c, a->scan_limit > 0 ? a->scan_limit : 2000);
}

/* --- access --------------------------------------------------------------------------------- */

void call_access_write(struct script_call *c, const struct keys *k, int64_t now_ms,
                       int64_t retention_ms, const char *event, const char *op,
                       const char *const *args, int nargs) {
    init(c, SCRIPT_ACCESS_WRITE);
    key(c, keys_users, k);
    key(c, keys_apikeys, k);
    key(c, keys_access_version, k);
    key(c, keys_events, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
    key(c, keys_access, k);
    push_int(c, retention_ms);
    push(c, event ? event : "");
    push(c, op);
    reserve_args(c, (size_t)nargs);
    for (int i = 0; i < nargs; i++) push(c, args[i]);
}

void call_access_load(struct script_call *c, const struct keys *k, int64_t now_ms) {
    init(c, SCRIPT_ACCESS_LOAD);
    key(c, keys_users, k);
    key(c, keys_apikeys, k);
    key(c, keys_access_version, k);
    key(c, keys_lockouts, k);
    key(c, keys_apikey_used, k);
    keys_end(c);
    push(c, k->prefix);
    push_int(c, now_ms);
}

void call_auth_fail(struct script_call *c, const struct keys *k,
                    const struct call_auth_fail_args *a) {
    init(c, SCRIPT_AUTH_FAIL);
    named_key(c, keys_authfail, k, a->addr);
    key(c, keys_lockouts, k);
    key(c, keys_events, k);
    keys_end(c);
    push(c, a->addr);
    push_int(c, a->now_ms);
    push_int(c, a->window_ms);
    push_int(c, a->threshold);
    push_int(c, a->lockout_ms);
    key(c, keys_access, k);
    push_int(c, a->retention_ms);
    push(c, a->event ? a->event : "");
}
