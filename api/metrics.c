/* metrics.c: GET /metrics in Prometheus's text format (version 0.0.4), open like ping.
 *
 * The node's own figures come from memory (node_view and its counters, the Redis connection's
 * reconnect count). The fleet's queue figures (depth and oldest queued task per queue, ready,
 * running, capacity, scheduled) come from a cache refreshed when a scrape finds it older than
 * METRICS_REFRESH_MS: that scrape answers from the previous figures and the next one sees the
 * new ones, so a scrape never waits on Redis and Redis sees one refresh per period, whatever
 * the number of scrapers. A refresh is queue_stats.lua slice after slice (64 queue names a
 * call, each call bounded), and the answer names at most METRICS_QUEUES_MAX queues, the
 * deepest, with the rest summed under queue="(other)": label sets stay bounded whatever the
 * number of queues. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/rconn.h"
#include "common/reply.h"
#include "common/util.h"

#define METRICS_REFRESH_MS 2000
#define METRICS_QUEUES_MAX 50    /* queues named in the answer; the rest are "(other)" */
#define METRICS_SLICES_MAX 10000 /* queue_stats.lua calls per refresh at most */

struct queue_stat {
    char name[72];
    int64_t depth;     /* ready list entries */
    int64_t oldest_ms; /* queue time of the oldest ready task, 0 when none */
};

struct metrics_cache {
    uint64_t fetched_mono_ms;                     /* when the figures below arrived; 0 = never */
    uint64_t asked_mono_ms;                       /* when the last refresh was sent */
    bool in_flight;                               /* a refresh awaits its reply */
    int64_t ready, running, avail_cap, scheduled; /* fleet counters */
    struct queue_stat *queues; /* owned, deepest first; the last may be "(other)" */
    size_t nqueues;
    struct queue_stat *next; /* the refresh under way: slices so far (owned) */
    size_t nnext, capnext;
    unsigned slices;                 /* calls of the refresh under way */
    const struct node_services *svc; /* borrowed: for the next slice */
};

struct metrics_cache *metrics_cache_new(void) {
    return xcalloc(1, sizeof(struct metrics_cache));
}

void metrics_cache_free(struct metrics_cache *m) {
    if (!m) return;
    free(m->next);
    free(m->queues);
    free(m);
}

static void send_slice(struct metrics_cache *m, const char *cursor);

static int deepest_first(const void *a, const void *b) {
    const struct queue_stat *x = a, *y = b;
    if (x->depth != y->depth) return x->depth < y->depth ? 1 : -1;
    return strcmp(x->name, y->name);
}
static int by_name(const void *a, const void *b) {
    return strcmp(((const struct queue_stat *)a)->name, ((const struct queue_stat *)b)->name);
}

/* The refresh's slices are all in: one row per queue (SSCAN may repeat a name), the deepest
 * METRICS_QUEUES_MAX kept by name and the rest summed as "(other)" (its oldest: the oldest of
 * them). */
static void publish(struct metrics_cache *m) {
    struct queue_stat *q = m->next;
    size_t n = m->nnext;
    if (n) qsort(q, n, sizeof *q, by_name);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || strcmp(q[w - 1].name, q[i].name) != 0) q[w++] = q[i];
    n = w;
    if (n) qsort(q, n, sizeof *q, deepest_first);
    if (n > METRICS_QUEUES_MAX) {
        struct queue_stat other = {.name = "(other)"};
        for (size_t i = METRICS_QUEUES_MAX; i < n; i++) {
            other.depth += q[i].depth;
            if (q[i].oldest_ms && (!other.oldest_ms || q[i].oldest_ms < other.oldest_ms))
                other.oldest_ms = q[i].oldest_ms;
        }
        q[METRICS_QUEUES_MAX] = other;
        n = METRICS_QUEUES_MAX + 1;
    }
    free(m->queues);
    m->queues = q;
    m->nqueues = n;
    m->next = NULL;
    m->nnext = m->capnext = 0;
    m->fetched_mono_ms = clock_mono_ms();
}

/* One slice of queue_stats.lua: {ready, running, avail_cap, scheduled, cursor, queue, depth,
 * oldest, ...}. A failed slice ends the refresh and keeps the previous figures (their age
 * shows it). */
static void refresh_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct metrics_cache *m = priv;
    m->in_flight = false;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 5 || (r->elements - 5) % 3 != 0 ||
        r->element[4]->type != REDIS_REPLY_STRING) {
        free(m->next);
        m->next = NULL;
        m->nnext = m->capnext = 0;
        return;
    }
    size_t n = (r->elements - 5) / 3;
    if (m->nnext + n > m->capnext) {
        m->capnext = (m->nnext + n) * 2;
        m->next = xrealloc(m->next, m->capnext * sizeof *m->next);
    }
    for (size_t i = 0; i < n; i++) {
        struct queue_stat *q = &m->next[m->nnext++];
        memset(q, 0, sizeof *q);
        const redisReply *name = r->element[5 + 3 * i];
        if (name->type == REDIS_REPLY_STRING)
            snprintf(q->name, sizeof q->name, "%.*s", (int)name->len, name->str);
        q->depth = reply_num(r->element[6 + 3 * i]);
        q->oldest_ms = reply_num(r->element[7 + 3 * i]);
    }
    m->ready = reply_num(r->element[0]);
    m->running = reply_num(r->element[1]);
    m->avail_cap = reply_num(r->element[2]);
    m->scheduled = reply_num(r->element[3]);
    if (strcmp(r->element[4]->str, "0") == 0 || ++m->slices >= METRICS_SLICES_MAX)
        publish(m);
    else
        send_slice(m, r->element[4]->str);
}

static void send_slice(struct metrics_cache *m, const char *cursor) {
    struct script_call call;
    call_queue_stats(&call, m->svc->keys, cursor);
    if (rconn_call(m->svc->redis, &call, refresh_cb, m) == 0) m->in_flight = true;
    call_free(&call);
}

/* Starts a refresh when the figures are stale and none is under way. */
static void maybe_refresh(struct metrics_cache *m, const struct node_services *svc) {
    uint64_t now = clock_mono_ms();
    if (m->in_flight || m->nnext ||
        (m->asked_mono_ms && now - m->asked_mono_ms < METRICS_REFRESH_MS))
        return;
    m->svc = svc;
    m->asked_mono_ms = now;
    m->slices = 0;
    send_slice(m, "0");
}

/* One metric family: HELP and TYPE lines. */
static void family(struct buf *b, const char *name, const char *type, const char *help) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void node_metrics(struct buf *b, const struct node_view *v, const struct rconn *redis) {
    static const char *const outcomes[] = {"Success", "Failed", "TimedOut", "Canceled",
                                           "Interrupted"};
    const struct node_metrics *m = &v->metrics;
    family(b, "shoal_node_info", "gauge", "This node: name and version (always 1).");
    buf_printf(b, "shoal_node_info{node=\"%s\",version=\"%s\"} 1\n", v->name,
               v->version ? v->version : "");
    family(b, "shoal_node_up", "gauge", "1 while registered with Redis reachable (ping not 503).");
    buf_printf(b, "shoal_node_up %d\n", v->registered && v->redis_ok);
    family(b, "shoal_node_task_cap", "gauge", "The node's task cap (MaxConcurrentTasks).");
    buf_printf(b, "shoal_node_task_cap %lld\n", (long long)v->cap);
    family(b, "shoal_node_drain", "gauge", "1 while an operator drain is on.");
    buf_printf(b, "shoal_node_drain %d\n", v->drain);
    family(b, "shoal_node_stopping", "gauge", "1 once SIGTERM/SIGINT started the shutdown drain.");
    buf_printf(b, "shoal_node_stopping %d\n", v->stopping);
    family(b, "shoal_tasks_running", "gauge", "Tasks running on this node now.");
    buf_printf(b, "shoal_tasks_running %lld\n", (long long)v->running);
    family(b, "shoal_tasks_claimed_total", "counter", "Tasks this node has claimed.");
    buf_printf(b, "shoal_tasks_claimed_total %llu\n", (unsigned long long)m->claimed);
    family(b, "shoal_tasks_pushed_total", "counter",
           "Of the tasks claimed, those an enqueue claimed for this idle node (push).");
    buf_printf(b, "shoal_tasks_pushed_total %llu\n", (unsigned long long)m->pushed);
    family(b, "shoal_tasks_finished_total", "counter",
           "Tasks this node finished, by outcome (Interrupted: requeued at shutdown).");
    for (size_t i = 0; i < ARRAY_SIZE(outcomes); i++)
        buf_printf(b, "shoal_tasks_finished_total{outcome=\"%s\"} %llu\n", outcomes[i],
                   (unsigned long long)m->finished[i]);
    family(b, "shoal_task_start_latency_seconds", "histogram",
           "Time from a task's queue time to its start on this node.");
    uint64_t cum = 0;
    for (int i = 0; i < NODE_LATENCY_BUCKETS; i++) {
        cum += m->latency_counts[i];
        buf_printf(b, "shoal_task_start_latency_seconds_bucket{le=\"%g\"} %llu\n",
                   node_latency_bounds[i], (unsigned long long)cum);
    }
    cum += m->latency_counts[NODE_LATENCY_BUCKETS];
    buf_printf(b, "shoal_task_start_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
               (unsigned long long)cum);
    buf_printf(b, "shoal_task_start_latency_seconds_sum %.6f\n", m->latency_sum);
    buf_printf(b, "shoal_task_start_latency_seconds_count %llu\n", (unsigned long long)cum);
    family(b, "shoal_tasks_fenced_total", "counter",
           "Runs this node stopped because no heartbeat was acknowledged for the liveness TTL "
           "less the margin (another node may run them again).");
    buf_printf(b, "shoal_tasks_fenced_total %llu\n", (unsigned long long)m->fenced);
    family(b, "shoal_reports_refused_total", "counter",
           "Task results Redis refused because the claim's lease was no longer current.");
    buf_printf(b, "shoal_reports_refused_total %llu\n", (unsigned long long)m->reports_refused);
    if (redis) {
        family(b, "shoal_redis_reconnects_total", "counter",
               "Times the node's Redis command connection was re-established.");
        buf_printf(b, "shoal_redis_reconnects_total %lu\n", rconn_reconnects(redis));
    }
    if (v->beat_ok_mono_ms) {
        family(b, "shoal_heartbeat_age_seconds", "gauge",
               "Seconds since Redis last accepted this node's heartbeat.");
        buf_printf(b, "shoal_heartbeat_age_seconds %.3f\n",
                   (double)(clock_mono_ms() - v->beat_ok_mono_ms) / 1000.0);
    }
}

static void fleet_metrics(struct buf *b, const struct metrics_cache *m) {
    if (!m->fetched_mono_ms) return; /* first scrape: the refresh is on its way */
    int64_t now = clock_wall_ms();
    family(b, "shoal_fleet_stats_age_seconds", "gauge",
           "Age of the fleet and queue figures below (cached, refreshed every 2s at most).");
    buf_printf(b, "shoal_fleet_stats_age_seconds %.3f\n",
               (double)(clock_mono_ms() - m->fetched_mono_ms) / 1000.0);
    family(b, "shoal_fleet_ready_tasks", "gauge", "Tasks ready to run, all queues.");
    buf_printf(b, "shoal_fleet_ready_tasks %lld\n", (long long)m->ready);
    family(b, "shoal_fleet_running_tasks", "gauge", "Tasks running, all nodes.");
    buf_printf(b, "shoal_fleet_running_tasks %lld\n", (long long)m->running);
    family(b, "shoal_fleet_task_capacity", "gauge", "Sum of the caps of live, undrained nodes.");
    buf_printf(b, "shoal_fleet_task_capacity %lld\n", (long long)m->avail_cap);
    family(b, "shoal_fleet_scheduled_tasks", "gauge",
           "Tasks waiting for a future queue time or a retry's backoff.");
    buf_printf(b, "shoal_fleet_scheduled_tasks %lld\n", (long long)m->scheduled);
    if (m->nqueues == 0) return;
    family(b, "shoal_queue_depth", "gauge",
           "Ready tasks per queue: the 50 deepest, the rest summed as queue=\"(other)\".");
    for (size_t i = 0; i < m->nqueues; i++)
        buf_printf(b, "shoal_queue_depth{queue=\"%s\"} %lld\n", m->queues[i].name,
                   (long long)m->queues[i].depth);
    family(b, "shoal_queue_oldest_age_seconds", "gauge",
           "Age of the oldest ready task per queue (0 when empty).");
    for (size_t i = 0; i < m->nqueues; i++) {
        int64_t o = m->queues[i].oldest_ms;
        buf_printf(b, "shoal_queue_oldest_age_seconds{queue=\"%s\"} %.3f\n", m->queues[i].name,
                   o > 0 && now > o ? (double)(now - o) / 1000.0 : 0.0);
    }
}

/* The HTTP edge: connections (server.c's counters) and uploads (package_upload.c's). */
static void http_metrics(struct buf *b, const struct http_stats *st, const struct api_state *api) {
    if (st) {
        family(b, "shoal_http_connections_open", "gauge", "HTTP connections being served now.");
        buf_printf(b, "shoal_http_connections_open %llu\n", (unsigned long long)st->open);
        family(b, "shoal_http_connections_refused_total", "counter",
               "HTTP connections reset at accept: the node's cap (--http-max-connections) or "
               "the client address's (--http-max-connections-per-ip) was reached.");
        buf_printf(b, "shoal_http_connections_refused_total{reason=\"node_cap\"} %llu\n",
                   (unsigned long long)st->refused_node);
        buf_printf(b, "shoal_http_connections_refused_total{reason=\"ip_cap\"} %llu\n",
                   (unsigned long long)st->refused_ip);
        family(b, "shoal_http_connections_timed_out_total", "counter",
               "HTTP connections closed because a request's head (--http-head-timeout) or body "
               "(--http-body-timeout) came too slowly.");
        buf_printf(b, "shoal_http_connections_timed_out_total{deadline=\"head\"} %llu\n",
                   (unsigned long long)st->head_timeouts);
        buf_printf(b, "shoal_http_connections_timed_out_total{deadline=\"body\"} %llu\n",
                   (unsigned long long)st->body_timeouts);
        family(b, "shoal_http_accept_errors_total", "counter",
               "Failed accepts (out of file descriptors, say).");
        buf_printf(b, "shoal_http_accept_errors_total %llu\n",
                   (unsigned long long)st->accept_errors);
    }
    if (api) {
        family(b, "shoal_package_uploads_active", "gauge", "Package uploads in progress.");
        buf_printf(b, "shoal_package_uploads_active %u\n", api->uploads);
        family(b, "shoal_package_uploads_refused_total", "counter",
               "Package uploads answered 429 because --http-max-uploads were in progress.");
        buf_printf(b, "shoal_package_uploads_refused_total %llu\n",
                   (unsigned long long)api->uploads_refused);
    }
}

/* GET /metrics */
static void metrics_cb(struct http_exchange *ex) {
    const struct http_site *site = http_site_of(ex);
    const struct node_services *svc = site->data;
    struct buf b;
    buf_init(&b);
    node_metrics(&b, svc->view, svc->redis);
    http_metrics(&b, site->stats, svc->api);
    if (svc->api) {
        maybe_refresh(svc->api->metrics, svc);
        fleet_metrics(&b, svc->api->metrics);
    }
    http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

const struct http_route metrics_routes[] = {
    {HTTP_GET, "/metrics", metrics_cb, HTTP_BODY_NONE, NULL},
};
const size_t metrics_nroutes = ARRAY_SIZE(metrics_routes);
