/* check.c: `shoal check [--repair]`: walks a namespace and reports what breaks the invariants
 * the scripts keep (docs/design.md, "Task lifecycle"):
 *   - a task in no structure: Queued but in no ready list and not scheduled; Executing or
 *     Cancelling but in no running set (recovery would never find it);
 *   - a task in two: in the ready lists twice, or ready and scheduled, or in two running sets;
 *   - a running-set entry whose task is not Executing/Cancelling on that node;
 *   - a running set of a node the node set does not know;
 *   - counters ({NS}:stats ready, running, avail_cap) that differ from what they count;
 *   - a task record that is not a hash.
 * --repair fixes what can be fixed safely (lua/repair.lua re-checks each finding atomically
 * first) and says what it did; counters are corrected only when they did not move during the
 * walk (a busy fleet: run it again). The walk reads in bounded steps (SCAN COUNT 1000, ranges
 * of 1,000, pipelines of 1,000 HMGETs): it never holds Redis for long, and on a busy fleet it may
 * report a transient difference, which a second run does not repeat.
 * Exit 0: nothing found (or everything found repaired); 1: findings remain or Redis failed. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"

#define STEP 1000              /* entries per SCAN/range/pipeline step */
#define TASKS_MAX (64LL << 20) /* task numbers the walk can hold (64 Mi: 256 MiB of flags) */
#define REPORT_LINES 50        /* findings printed per kind; the rest counted */
#define RUNNING_MANY 0xFFFF    /* in two running sets or more */

struct walk {
    struct cli *c;
    long long seq;      /* highest task number when the walk began */
    uint8_t *listed;    /* per task number: ready-list appearances (saturating) */
    uint8_t *scheduled; /* in {NS}:scheduled */
    uint16_t *run;      /* 1 + index into nodes[] of its running set, RUNNING_MANY, 0 none */
    char **nodes;       /* names of running sets found (owned) */
    size_t nnodes;
    bool *known;           /* nodes[i] is in {NS}:nodes */
    long long run_entries; /* entries of running sets whose task is running there */
    long long ready_tasks; /* distinct Queued tasks in ready lists */
    long long avail;       /* sum of the caps the node hashes say are counted */
    long long findings, repaired;
    int shown[8];
    bool repair;
};

enum kind { K_NONE, K_TWO, K_STALE, K_UNKNOWN, K_COUNTER, K_BAD, K_NODE };

static void finding(struct walk *w, enum kind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finding(struct walk *w, enum kind k, const char *fmt, ...) {
    w->findings++;
    if (w->shown[k]++ >= REPORT_LINES) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Runs one repair; prints the outcome. Returns true when it was made. */
static bool repair(struct walk *w, const char *op, const char *a, const char *b) {
    if (!w->repair) return false;
    bool done = false;
    char err[256];
    struct script_call call;
    call_repair(&call, &w->c->keys, op, a, b);
    redisReply *r = rsync_call(&w->c->redis, &call, err, sizeof err);
    call_free(&call);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        w->repaired++;
        done = true;
        printf("  repaired (%s %s%s%s)\n", op, a, b ? " " : "", b ? b : "");
    } else if (r && r->type == REDIS_REPLY_INTEGER) {
        w->findings--; /* it no longer held: transient */
        printf("  no longer so: left alone\n");
    } else {
        printf("  repair failed: %s\n", r ? (r->str ? r->str : "reply") : err);
    }
    if (r) freeReplyObject(r);
    return done;
}

/* "{NS}:" with the glob characters of SCAN's MATCH escaped, then `rest`. */
static void pattern(const struct walk *w, const char *rest, char *out, size_t len) {
    size_t o = 0;
    for (const char *p = w->c->keys.prefix; *p && o + 3 < len; p++) {
        if (strchr("*?[]\\", *p)) out[o++] = '\\';
        out[o++] = *p;
    }
    snprintf(out + o, len - o, "%s", rest);
}

/* Calls fn(key) for every key matching {NS}:<rest>, SCAN COUNT STEP at a time. */
static int scan(struct walk *w, const char *rest, int (*fn)(struct walk *, const char *)) {
    char pat[256], cursor[32] = "0", err[256];
    pattern(w, rest, pat, sizeof pat);
    do {
        redisReply *r = rsync_cmd(&w->c->redis, err, sizeof err, "SCAN %s MATCH %s COUNT %d",
                                  cursor, pat, STEP);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            int code = cli_fail(w->c, EXIT_FAIL, "SCAN: %s", r && r->str ? r->str : err);
            if (r) freeReplyObject(r);
            return code;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            int rc = fn(w, r->element[1]->element[i]->str);
            if (rc) {
                freeReplyObject(r);
                return rc;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* Task number of a list/set member, or 0 when it is not one the walk holds. */
static long long number(const struct walk *w, const char *s) {
    char *end;
    long long n = strtoll(s, &end, 10);
    return *end == '\0' && n > 0 && n <= w->seq ? n : 0;
}

/* Reads a list or sorted set in ranges of STEP; calls fn for each member. */
static int each_member(struct walk *w, const char *key, bool zset,
                       void (*fn)(struct walk *, long long, void *), void *arg) {
    char err[256];
    for (long long at = 0;; at += STEP) {
        redisReply *r = rsync_cmd(&w->c->redis, err, sizeof err, "%s %s %lld %lld",
                                  zset ? "ZRANGE" : "LRANGE", key, at, at + STEP - 1);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            finding(w, K_BAD, "%s: not a %s (%s)", key, zset ? "sorted set" : "list",
                    r && r->str ? r->str : err);
            if (r) freeReplyObject(r);
            return r ? 0 : EXIT_FAIL;
        }
        for (size_t i = 0; i < r->elements; i++) fn(w, number(w, r->element[i]->str), arg);
        size_t n = r->elements;
        freeReplyObject(r);
        if (n < STEP) return 0;
    }
}

static void mark_listed(struct walk *w, long long n, void *arg) {
    (void)arg;
    if (n && w->listed[n] < 255) w->listed[n]++;
}
static void mark_scheduled(struct walk *w, long long n, void *arg) {
    (void)arg;
    if (n) w->scheduled[n] = 1;
}
static void mark_running(struct walk *w, long long n, void *arg) {
    uint16_t idx = (uint16_t)(uintptr_t)arg;
    if (n) w->run[n] = w->run[n] ? RUNNING_MANY : idx;
}

static int on_list(struct walk *w, const char *key) {
    return each_member(w, key, false, mark_listed, NULL);
}

static int on_running(struct walk *w, const char *key) {
    const char *name = key + strlen(w->c->keys.prefix) + strlen("running:");
    if (w->nnodes >= RUNNING_MANY - 1) return 0;
    w->nodes = xrealloc(w->nodes, (w->nnodes + 1) * sizeof *w->nodes);
    w->nodes[w->nnodes++] = xstrdup(name);
    return each_member(w, key, true, mark_running, (void *)(uintptr_t)w->nnodes);
}

/* The node hashes: which names are known, and what avail_cap should be. */
static int read_nodes(struct walk *w) {
    char err[256], key[160];
    redisReply *r = rsync_cmd(&w->c->redis, err, sizeof err, "SMEMBERS %s",
                              keys_nodes(&w->c->keys, key, sizeof key));
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        int code = cli_fail(w->c, EXIT_FAIL, "SMEMBERS nodes: %s", r && r->str ? r->str : err);
        if (r) freeReplyObject(r);
        return code;
    }
    w->known = xcalloc(w->nnodes ? w->nnodes : 1, sizeof *w->known);
    for (size_t i = 0; i < r->elements; i++) {
        const char *name = r->element[i]->str;
        for (size_t j = 0; j < w->nnodes; j++)
            if (strcmp(w->nodes[j], name) == 0) w->known[j] = true;
        redisReply *h = rsync_cmd(&w->c->redis, err, sizeof err, "HMGET %s cap drain contrib",
                                  keys_node(&w->c->keys, name, key, sizeof key));
        redisReply *a = rsync_cmd(&w->c->redis, err, sizeof err, "EXISTS %s",
                                  keys_alive(&w->c->keys, name, key, sizeof key));
        if (h && h->type == REDIS_REPLY_ARRAY && h->elements == 3 && a &&
            a->type == REDIS_REPLY_INTEGER) {
            long long cap = h->element[0]->str ? atoll(h->element[0]->str) : 0;
            bool drain = h->element[1]->str && strcmp(h->element[1]->str, "1") == 0;
            long long contrib = h->element[2]->str ? atoll(h->element[2]->str) : 0;
            long long want = a->integer && !drain ? cap : 0;
            w->avail += contrib;
            /* A node that died keeps its contribution until recovery or the sweep sees it. */
            if (contrib != want && !(contrib == cap && !a->integer))
                finding(w, K_COUNTER, "node %s: counts %lld in avail_cap, should count %lld", name,
                        contrib, want);
        }
        if (h) freeReplyObject(h);
        if (a) freeReplyObject(a);
    }
    freeReplyObject(r);
    for (size_t j = 0; j < w->nnodes; j++)
        if (!w->known[j]) {
            finding(w, K_NODE, "running set of node %s, which the node set does not know",
                    w->nodes[j]);
            repair(w, "node", w->nodes[j], NULL);
        }
    return 0;
}

static const char *node_of(const struct walk *w, long long n) {
    uint16_t r = w->run[n];
    return r == 0 ? NULL : r == RUNNING_MANY ? "(several)" : w->nodes[r - 1];
}

/* One task's record against the structures. */
static void check_task(struct walk *w, long long n, const redisReply *f) {
    char id[24];
    snprintf(id, sizeof id, "%lld", n);
    if (f->type == REDIS_REPLY_ERROR) {
        finding(w, K_BAD, "ServerTasks-%lld: its record is not a hash (%s)", n, f->str);
        return;
    }
    const char *state = f->element[0]->str, *node = f->element[1]->str;
    bool listed = w->listed[n] > 0, sched = w->scheduled[n];
    const char *in = node_of(w, n);
    if (!state) { /* gone (retention) or never written */
        if (in) {
            finding(w, K_STALE, "ServerTasks-%lld: in the running set of %s, but no task", n, in);
            if (w->run[n] != RUNNING_MANY) repair(w, "stale", id, in);
        }
        return;
    }
    bool running = strcmp(state, "Executing") == 0 || strcmp(state, "Cancelling") == 0;
    if (strcmp(state, "Queued") == 0) {
        if (listed) w->ready_tasks++;
        if (!listed && !sched) {
            finding(w, K_NONE, "ServerTasks-%lld: Queued but in no ready list and not scheduled",
                    n);
            if (repair(w, "queued", id, NULL)) w->ready_tasks++; /* counted from now on */
        } else if (w->listed[n] > 1 || (listed && sched)) {
            finding(w, K_TWO, "ServerTasks-%lld: Queued and %s", n,
                    w->listed[n] > 1 ? "in the ready lists twice" : "both ready and scheduled");
        }
    }
    if (running) {
        if (!in) {
            finding(w, K_NONE, "ServerTasks-%lld: %s on %s but in no running set", n, state,
                    node ? node : "(no node)");
            if (node && repair(w, "running", id, node)) w->run_entries++;
        } else if (w->run[n] == RUNNING_MANY) {
            finding(w, K_TWO, "ServerTasks-%lld: in two running sets", n);
        } else if (!node || strcmp(node, in) != 0) {
            finding(w, K_STALE, "ServerTasks-%lld: %s on %s, but in the running set of %s", n,
                    state, node ? node : "(no node)", in);
            repair(w, "stale", id, in);
        } else {
            w->run_entries++;
        }
    } else if (in && w->run[n] != RUNNING_MANY) {
        finding(w, K_STALE, "ServerTasks-%lld: %s, but still in the running set of %s", n, state,
                in);
        repair(w, "stale", id, in);
    }
}

/* Every task number 1..seq, HMGETs pipelined STEP at a time. */
static int walk_tasks(struct walk *w) {
    redisContext *rc = w->c->redis.c;
    char key[160];
    for (long long from = 1; from <= w->seq; from += STEP) {
        long long to = from + STEP - 1 < w->seq ? from + STEP - 1 : w->seq;
        for (long long n = from; n <= to; n++)
            redisAppendCommand(rc, "HMGET %s state node",
                               keys_task(&w->c->keys, n, key, sizeof key));
        redisReply **rs = xcalloc((size_t)(to - from + 1), sizeof *rs);
        int failed = 0;
        for (long long n = from; n <= to; n++) {
            void *r = NULL;
            if (redisGetReply(rc, &r) != REDIS_OK) {
                failed = 1;
                break;
            }
            rs[n - from] = r;
        }
        /* Checked only after the whole pipeline is read: a repair is a command of its own. */
        for (long long n = from; n <= to && !failed; n++) check_task(w, n, rs[n - from]);
        for (long long n = from; n <= to; n++)
            if (rs[n - from]) freeReplyObject(rs[n - from]);
        free(rs);
        if (failed) return cli_fail(w->c, EXIT_FAIL, "reading tasks: %s", rc->errstr);
    }
    return 0;
}

/* {NS}:seq and the counters, as a snapshot to compare before and after the walk. */
static int snapshot(struct walk *w, long long v[4]) {
    char err[256], key[160], key2[160];
    redisReply *r =
        rsync_cmd(&w->c->redis, err, sizeof err, "GET %s", keys_seq(&w->c->keys, key, sizeof key));
    redisReply *s = rsync_cmd(&w->c->redis, err, sizeof err, "HMGET %s ready running avail_cap",
                              keys_stats(&w->c->keys, key2, sizeof key2));
    int code = 0;
    if (!r || !s || s->type != REDIS_REPLY_ARRAY || s->elements != 3)
        code = cli_fail(w->c, EXIT_FAIL, "reading {NS}:seq and {NS}:stats: %s", err);
    else {
        v[0] = r->str ? atoll(r->str) : 0;
        for (int i = 0; i < 3; i++) v[1 + i] = s->element[i]->str ? atoll(s->element[i]->str) : 0;
    }
    if (r) freeReplyObject(r);
    if (s) freeReplyObject(s);
    return code;
}

static const char check_usage[] =
    "shoal check [--repair]\n\n"
    "Walks the namespace and reports any task in no structure or in two, running-set entries\n"
    "of tasks not running there, running sets of unknown nodes, and counters ({NS}:stats)\n"
    "that differ from what they count. --repair fixes what it can (each fix re-checked\n"
    "atomically) and says what. Reads in bounded steps; on a busy fleet a finding may be\n"
    "transient: run it again. Exit 0: nothing found, or all of it repaired.";

int cmd_check(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "repair"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 1, 0, 0, check_usage, &code)) return code;
    struct walk w = {.c = &c, .repair = flags[0].set};
    long long before[4], after[4];
    if ((code = snapshot(&w, before)) != 0) goto out;
    w.seq = before[0];
    if (w.seq > TASKS_MAX) {
        code = cli_fail(&c, EXIT_FAIL, "%lld task numbers: more than this walk holds (%lld)", w.seq,
                        TASKS_MAX);
        goto out;
    }
    w.listed = xcalloc((size_t)w.seq + 1, 1);
    w.scheduled = xcalloc((size_t)w.seq + 1, 1);
    w.run = xcalloc((size_t)w.seq + 1, sizeof *w.run);
    char key[160];
    if ((code = scan(&w, "running:*", on_running)) != 0 || (code = read_nodes(&w)) != 0 ||
        (code = scan(&w, "q:*", on_list)) != 0 ||
        (code = each_member(&w, keys_scheduled(&c.keys, key, sizeof key), true, mark_scheduled,
                            NULL)) != 0 ||
        (code = walk_tasks(&w)) != 0 || (code = snapshot(&w, after)) != 0)
        goto out;
    bool still = memcmp(before + 1, after + 1, 3 * sizeof *before) == 0 && before[0] == after[0];
    const char *names[] = {"ready", "running", "avail_cap"};
    long long want[] = {w.ready_tasks, w.run_entries, w.avail};
    for (int i = 0; i < 3; i++) {
        if (after[1 + i] == want[i]) continue;
        finding(&w, K_COUNTER, "{NS}:stats %s is %lld, counts %lld%s", names[i], after[1 + i],
                want[i], still ? "" : " (the fleet moved during the walk: run again to be sure)");
        if (w.repair && still) {
            char err[256];
            redisReply *r =
                rsync_cmd(&c.redis, err, sizeof err, "HINCRBY %s %s %lld",
                          keys_stats(&c.keys, key, sizeof key), names[i], want[i] - after[1 + i]);
            if (r && r->type == REDIS_REPLY_INTEGER) {
                w.repaired++;
                printf("  repaired (%s set to %lld)\n", names[i], want[i]);
            }
            if (r) freeReplyObject(r);
        } else if (w.repair) {
            printf("  not repaired: the counters moved during the walk\n");
        }
    }
    printf("checked %lld task numbers, %zu running sets: %lld finding%s", w.seq, w.nnodes,
           w.findings, w.findings == 1 ? "" : "s");
    if (w.repair) printf(", %lld repaired", w.repaired);
    printf("\n");
    code = w.findings > w.repaired ? EXIT_FAIL : EXIT_OK;
out:
    free(w.listed);
    free(w.scheduled);
    free(w.run);
    for (size_t i = 0; i < w.nnodes; i++) free(w.nodes[i]);
    free(w.nodes);
    free(w.known);
    cli_close(&c);
    return code;
}
