/* stats.c: `shoal stats`: the fleet at a glance, for people and autoscalers: nodes by status,
 * capacity (caps of live, undrained nodes), tasks running, free slots, tasks ready and
 * scheduled, and per queue its depth and the age of its oldest queued task. Two scripts:
 * list_nodes.lua and queue_stats.lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/node_info.h"
#include "common/util.h"

struct fleet {
    int64_t nodes[4];   /* by enum node_status */
    int64_t capacity;   /* caps of live, undrained nodes */
    int64_t running;    /* tasks running on live nodes */
    int64_t free_slots; /* sum over live, undrained nodes of cap - running (>= 0 each) */
};

static int read_fleet(struct cli *c, struct fleet *f) {
    char err[256];
    struct script_call call;
    call_list_nodes(&call, &c->keys);
    redisReply *r = rsync_call(&c->redis, &call, err, sizeof err);
    call_free(&call);
    if (!r) return cli_fail(c, EXIT_FAIL, "%s", err);
    struct node_info *v = NULL;
    int n = r->type == REDIS_REPLY_ERROR ? -1 : node_info_parse_list(r, &v);
    freeReplyObject(r);
    if (n < 0) return cli_fail(c, EXIT_FAIL, "unexpected reply from Redis");
    memset(f, 0, sizeof *f);
    for (int i = 0; i < n; i++) {
        enum node_status s = node_info_status(&v[i]);
        f->nodes[s]++;
        if (!v[i].alive) continue;
        f->running += v[i].running;
        if (v[i].drain) continue;
        f->capacity += v[i].cap;
        if (v[i].cap > v[i].running) f->free_slots += v[i].cap - v[i].running;
    }
    free(v);
    return 0;
}

struct queue_row {
    char name[72];
    int64_t depth, oldest;
};

static int row_by_name(const void *a, const void *b) {
    return strcmp(((const struct queue_row *)a)->name, ((const struct queue_row *)b)->name);
}

/* Every queue, slice by slice (queue_stats.lua reads 64 names a call), sorted by name; the fleet
 * counters from the last slice. At most QUEUE_SLICES_MAX calls. */
#define QUEUE_SLICES_MAX 100000
static int read_queues(struct cli *c, struct queue_row **rows, size_t *nrows, int64_t *ready,
                       int64_t *scheduled) {
    char cursor[32] = "0", err[256];
    size_t cap = 0;
    for (int slice = 0; slice < QUEUE_SLICES_MAX; slice++) {
        struct script_call call;
        call_queue_stats(&call, &c->keys, cursor);
        redisReply *r = rsync_call(&c->redis, &call, err, sizeof err);
        call_free(&call);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 5 || (r->elements - 5) % 3) {
            int code =
                cli_fail(c, EXIT_FAIL, "%s",
                         r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : err);
            if (r) freeReplyObject(r);
            return code;
        }
        *ready = r->element[0]->integer;
        *scheduled = r->element[3]->integer;
        snprintf(cursor, sizeof cursor, "%s", r->element[4]->str ? r->element[4]->str : "0");
        for (size_t i = 5; i + 2 < r->elements; i += 3) {
            if (*nrows == cap) {
                cap = cap ? cap * 2 : 64;
                *rows = xrealloc(*rows, cap * sizeof **rows);
            }
            struct queue_row *q = &(*rows)[(*nrows)++];
            snprintf(q->name, sizeof q->name, "%s", r->element[i]->str ? r->element[i]->str : "");
            q->depth = r->element[i + 1]->integer;
            q->oldest = r->element[i + 2]->integer;
        }
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0) break;
    }
    /* SSCAN may return a name twice in one pass: keep one. */
    if (*nrows) qsort(*rows, *nrows, sizeof **rows, row_by_name);
    size_t w = 0;
    for (size_t i = 0; i < *nrows; i++)
        if (w == 0 || strcmp((*rows)[w - 1].name, (*rows)[i].name) != 0) (*rows)[w++] = (*rows)[i];
    *nrows = w;
    return 0;
}

static const char stats_usage[] =
    "shoal stats [--json]\n\n"
    "The fleet at a glance: nodes by status, capacity (task caps of live, undrained nodes),\n"
    "tasks running, free slots, tasks ready and scheduled, and per queue its depth and the age\n"
    "of its oldest queued task. Exact figures an autoscaler can act on.";

int cmd_stats(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 1, 0, 0, stats_usage, &code)) return code;
    struct fleet f;
    if ((code = read_fleet(&c, &f)) != 0) {
        cli_close(&c);
        return code;
    }
    struct queue_row *rows = NULL;
    size_t nrows = 0;
    int64_t ready = 0, scheduled = 0;
    if ((code = read_queues(&c, &rows, &nrows, &ready, &scheduled)) != 0) {
        cli_close(&c);
        return code;
    }
    int64_t now = clock_wall_ms();
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    if (flags[0].set) {
        json_obj_open(&j);
        json_key(&j, "Nodes");
        json_obj_open(&j);
        for (int s = 0; s < 4; s++) {
            json_key(&j, node_status_name((enum node_status)s));
            json_int(&j, f.nodes[s]);
        }
        json_obj_close(&j);
        json_key(&j, "Capacity");
        json_int(&j, f.capacity);
        json_key(&j, "Running");
        json_int(&j, f.running);
        json_key(&j, "FreeSlots");
        json_int(&j, f.free_slots);
        json_key(&j, "Ready");
        json_int(&j, ready);
        json_key(&j, "Scheduled");
        json_int(&j, scheduled);
        json_key(&j, "Queues");
        json_arr_open(&j);
    } else {
        printf("Nodes      %lld running, %lld draining, %lld drained, %lld offline\n",
               (long long)f.nodes[NODE_RUNNING], (long long)f.nodes[NODE_DRAINING_STATUS],
               (long long)f.nodes[NODE_DRAINED], (long long)f.nodes[NODE_OFFLINE]);
        printf("Capacity   %lld task slots on live, undrained nodes\n", (long long)f.capacity);
        printf("Running    %lld tasks\nFree       %lld slots\nReady      %lld tasks\n"
               "Scheduled  %lld tasks (future queue time or retry backoff)\n",
               (long long)f.running, (long long)f.free_slots, (long long)ready,
               (long long)scheduled);
        if (nrows) printf("\n%-24s %8s  %s\n", "QUEUE", "READY", "OLDEST QUEUED");
    }
    for (size_t i = 0; i < nrows; i++) {
        const char *name = rows[i].name;
        int64_t depth = rows[i].depth, oldest = rows[i].oldest;
        int64_t age_s = oldest > 0 ? (now - oldest) / 1000 : 0;
        if (flags[0].set) {
            json_obj_open(&j);
            json_key(&j, "Name");
            json_str(&j, name);
            json_key(&j, "Ready");
            json_int(&j, depth);
            json_key(&j, "OldestQueuedAgeSeconds");
            json_int(&j, age_s);
            json_obj_close(&j);
        } else {
            char age[32];
            snprintf(age, sizeof age, "%llds", (long long)age_s);
            printf("%-24s %8lld  %s\n", name, (long long)depth, oldest > 0 ? age : "-");
        }
    }
    if (flags[0].set) {
        json_arr_close(&j);
        json_obj_close(&j);
        printf("%s\n", b.data);
    }
    buf_free(&b);
    free(rows);
    cli_close(&c);
    return code;
}
