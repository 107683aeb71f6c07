/* shutdown.c: how a node stops. SIGTERM or SIGINT: ping answers 418 at once (the load balancer
 * or readiness probe takes the node out), no new claims, running tasks get --grace to finish,
 * the node deregisters (Offline at once), every handle closes, exit 0. A second signal skips
 * the grace. A fatal condition (name taken) goes the same way with a non-zero code. */
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/worker.h"

static void part_closed(struct worker *w) {
    if (--w->open_parts == 0) log_info("stopped", " exit_code=%d", w->exit_code);
}
static void handle_closed_cb(uv_handle_t *h) { part_closed(h->data); }
static void http_closed_cb(void *arg) { part_closed(arg); }
static void node_closed_cb(struct node *n) {
    part_closed(container_of(n, struct worker, node));
}

/* Everything is finished: close all handles so uv_run returns. */
static void close_all(struct worker *w) {
    w->open_parts = 6;
    w->sigterm.data = w->sigint.data = w->grace.data = w;
    uv_close((uv_handle_t *)&w->sigterm, handle_closed_cb);
    uv_close((uv_handle_t *)&w->sigint, handle_closed_cb);
    uv_close((uv_handle_t *)&w->grace, handle_closed_cb);
    if (w->http) ping_server_close(w->http, http_closed_cb, w);
    else w->open_parts--;
    w->http = NULL;
    node_close(&w->node, node_closed_cb);
    part_closed(w);
}

static void stopped_cb(struct node *n) { close_all(container_of(n, struct worker, node)); }

/* Running tasks are done (or the grace ran out): leave the fleet. */
static void finish(struct worker *w) {
    uv_timer_stop(&w->grace);
    node_stop(&w->node, stopped_cb);
}

static void grace_cb(uv_timer_t *t) {
    struct worker *w = container_of(t, struct worker, grace);
    if (w->node.view.running > 0)
        log_warn("grace period over; stopping the remaining tasks",
                 " running=%lld", (long long)w->node.view.running);
    finish(w);
}

/* The node reports it is idle while we wait out the grace: leave now. */
static void idle_cb(struct node *n) {
    struct worker *w = container_of(n, struct worker, node);
    if (!n->stopped) {
        log_info("all tasks finished; leaving", NULL);
        finish(w);
    }
}

void shutdown_begin(struct worker *w, const char *why, int exit_code) {
    if (w->shutting_down) return;
    w->shutting_down = true;
    w->exit_code = exit_code;
    w->node.view.stopping = true;
    char q[200];
    log_info("shutting down: ping answers 418, no new tasks", " reason=%s grace_ms=%lld",
             log_q(q, sizeof q, why), (long long)w->cfg.grace_ms);
    /* Nothing running (or no Redis to report to): leave now; else wait up to the grace. */
    if (w->node.view.running <= 0 || !w->node.view.registered) {
        finish(w);
        return;
    }
    log_info("waiting for running tasks", " running=%lld", (long long)w->node.view.running);
    w->node.idle = idle_cb;
    uv_timer_start(&w->grace, grace_cb, (uint64_t)w->cfg.grace_ms, 0);
}

static void signal_cb(uv_signal_t *s, int signum) {
    struct worker *w = s->data;
    if (++w->signals == 1) {
        shutdown_begin(w, signum == SIGTERM ? "SIGTERM" : "SIGINT", 0);
        return;
    }
    log_warn("second signal: stopping at once", NULL);
    if (!w->node.stopped) finish(w);
}

void shutdown_init(struct worker *w) {
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    uv_timer_init(&w->loop, &w->grace);
    w->sigterm.data = w->sigint.data = w;
    uv_signal_start(&w->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&w->sigint, signal_cb, SIGINT);
}
