/* shutdown.c: how a node stops. SIGTERM or SIGINT: ping answers 418 at once (the load balancer
 * or readiness probe takes the node out), no new claims, running tasks get --grace to finish;
 * those still running then are stopped and reported Interrupted (requeued without using an
 * attempt); once every report is acknowledged (or REPORT_WAIT_MS passed, when Redis is away)
 * the node deregisters (Offline at once), every handle closes, exit 0. A second signal skips
 * the grace. A fatal condition (name taken) goes the same way with a non-zero code. */
#include <stdlib.h>

#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/worker.h"

/* After the tasks are stopped, how long their reports may take to reach Redis. */
#define REPORT_WAIT_MS 5000

static void part_closed(struct worker *w) {
    if (--w->open_parts == 0) log_info("stopped", " exit_code=%d", w->exit_code);
}
static void handle_closed_cb(uv_handle_t *h) { part_closed(h->data); }
static void http_closed_cb(void *arg) { part_closed(arg); }
static void claimer_closed_cb(void *arg) { part_closed(arg); }
static void node_closed_cb(struct node *n) { part_closed(container_of(n, struct worker, node)); }
static void access_closed_cb(void *arg) { part_closed(arg); }

/* Everything is finished: close all handles so uv_run returns. */
static void close_all(struct worker *w) {
    w->open_parts = 9;
    w->sigterm.data = w->sigint.data = w->grace.data = w->reload.sighup.data = w;
    uv_close((uv_handle_t *)&w->reload.sighup, handle_closed_cb);
    uv_close((uv_handle_t *)&w->sigterm, handle_closed_cb);
    uv_close((uv_handle_t *)&w->sigint, handle_closed_cb);
    uv_close((uv_handle_t *)&w->grace, handle_closed_cb);
    if (w->http)
        http_server_close(w->http, http_closed_cb, w);
    else
        w->open_parts--;
    w->http = NULL;
    claimer_close(w->claimer, claimer_closed_cb, w);
    node_close(&w->node, node_closed_cb);
    if (w->services.api && w->services.api->access)
        access_cache_close(w->services.api->access, access_closed_cb, w);
    else
        w->open_parts--;
    part_closed(w);
}

static void stopped_cb(struct node *n) { close_all(container_of(n, struct worker, node)); }

/* Nothing runs and every report is in Redis (or we gave up waiting): leave the fleet. */
static void finish(struct worker *w) {
    if (w->node.stopped) return;
    uv_timer_stop(&w->grace);
    unsigned lost = claimer_unreported(w->claimer);
    if (lost > 0)
        log_warn("leaving with results Redis never acknowledged; recovery requeues those tasks",
                 " unreported=%u", lost);
    node_stop(&w->node, stopped_cb);
}

static void idle_cb(struct claimer *c, void *arg) {
    struct worker *w = arg;
    log_info("all tasks finished and reported; leaving", NULL);
    finish(w);
}

static void report_wait_cb(uv_timer_t *t) { finish(container_of(t, struct worker, grace)); }

/* Stops what still runs; bounded wait for the reports, then leave. */
static void interrupt(struct worker *w) {
    if (w->interrupted) return;
    w->interrupted = true;
    unsigned running = claimer_running(w->claimer);
    if (running > 0)
        log_warn("stopping the remaining tasks; they are requeued", " running=%u", running);
    claimer_interrupt(w->claimer);
    uv_timer_stop(&w->grace);
    uv_timer_start(&w->grace, report_wait_cb, REPORT_WAIT_MS, 0);
}

static void grace_cb(uv_timer_t *t) {
    struct worker *w = container_of(t, struct worker, grace);
    log_info("grace period over", NULL);
    interrupt(w);
}

void shutdown_begin(struct worker *w, const char *why, int exit_code) {
    if (w->shutting_down) return;
    w->shutting_down = true;
    w->exit_code = exit_code;
    w->node.view.stopping = true;
    char q[200];
    log_info("shutting down: ping answers 418, no new tasks", " reason=%s grace_ms=%lld running=%u",
             log_q(q, sizeof q, why), (long long)w->cfg.grace_ms, claimer_running(w->claimer));
    uv_timer_start(&w->grace, grace_cb, (uint64_t)w->cfg.grace_ms, 0);
    claimer_stop(w->claimer, idle_cb, w);
}

static void signal_cb(uv_signal_t *s, int signum) {
    struct worker *w = s->data;
    if (++w->signals == 1) {
        shutdown_begin(w, signum == SIGTERM ? "SIGTERM" : "SIGINT", 0);
        return;
    }
    log_warn("second signal: stopping at once", NULL);
    interrupt(w);
}

void shutdown_init(struct worker *w) {
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    uv_timer_init(&w->loop, &w->grace);
    w->sigterm.data = w->sigint.data = w;
    uv_signal_start(&w->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&w->sigint, signal_cb, SIGINT);
}
