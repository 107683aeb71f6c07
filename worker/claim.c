/* claim.c: claims tasks, runs them through the runner, reports results (see claim.h). */
#include "worker/claim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "common/log.h"
#include "common/reply.h"
#include "common/util.h"

#define CLAIM_MAX 256               /* tasks per claim call: about 2.5 ms of Redis at most */
#define REPORT_MAX 256              /* reports per complete call, and at most: */
#define REPORT_BYTES_MAX (8u << 20) /* bytes of logs and error texts per complete call */
#define LEASE_MARGIN_MS 30000       /* lease deadline = timeout + this (recovery, after a crash) */
#define RETRY_MAX_MS 3600000        /* backoff ceiling */
#define RECONCILE_EVERY_BEATS 12    /* and after every (re)registration: see lua/reconcile.lua */
#define CLAIM_QUEUES_MAX 67         /* queues a claim names at most (CALL_INLINE_ARGS - 14) */
/* Report calls in flight at most, and claims (turns) in flight at most: one is answered while
 * the next is sent, so Redis is not left idle for a round trip between them. */
#define REPORT_CALLS_MAX 2
#define CLAIMS_MAX 2
/* Reports of a wave (tasks started on a node that ran none) wait at most this long from its start
 * for half the cap to finish: short tasks go back in turns of half the cap, not one call per
 * finisher or two (see hold_reports). */
#define WAVE_NS 100000ull
#define MIN_BATCH_MAX                                                                              \
    64 /* while tasks run, claim only once this many slots are free
                                  * (or a quarter of the cap, if smaller): batches, not trickles */

struct report {
    struct runner_task *task;
    struct runner_result *res;
};

struct batch { /* reports in one call in flight */
    struct report *r;
    size_t n;
};

struct claimer {
    uv_loop_t *loop;
    struct node *node;              /* borrowed */
    const struct shoal_config *cfg; /* borrowed */
    struct runner *runner;          /* owned */
    char **queues;                  /* cfg->queues split, owned */
    int nqueues;
    unsigned claiming;      /* claims in flight (CLAIMS_MAX): a claim alone only when none is */
    bool claim_again;       /* something happened meanwhile: claim again after it */
    struct report *pending; /* finished, not yet sent */
    size_t npending, cap_pending;
    struct batch sent[REPORT_CALLS_MAX]; /* in the calls in flight, oldest first (one connection
                                          * answers in order) */
    size_t nsent_calls;
    uv_timer_t due;     /* earliest scheduled task */
    uv_check_t batch;   /* after this loop iteration: report and claim once */
    uv_timer_t hold;    /* the end of a wave's hold, if its tasks outlast WAVE_NS */
    uint64_t wave_ns;   /* uv_hrtime() when tasks last started on a node running none */
    int64_t due_at;     /* its time (wall ms), 0 when none armed */
    bool stopped;       /* claimer_stop called */
    bool reconcile_due; /* reconcile as soon as no claim is in flight */
    unsigned beats;     /* heartbeats seen, for the reconcile cadence */
    bool cancelling;    /* a cancelling.lua pass is under way: its next call starts at */
    int64_t cancelling_from, cancelling_most; /* this rank, until this many were looked at */
    char (*owned)[40];          /* an owned.lua pass: the ids of the runs when it began (NULL: */
    size_t owned_n, owned_from; /* none), how many, and where its next call starts */
    bool owned_again;           /* a reconcile answered during the pass: another pass after it */
    /* Push (docs/design.md, "Push to an idle node"): the node's claims register it idle, and
     * enqueue.lua claims for it and publishes the answer on its push channel. A reconcile (and
     * a stop) first takes it out of the idle sets and waits for its barrier on that channel,
     * so no push is still on its way when Redis's record is compared with what runs here. */
    enum { QUIET_NONE, QUIET_UNIDLE, QUIET_BARRIER, QUIET_DONE } quiet;
    unsigned long long token;        /* of the barrier awaited (a new one for every unidle.lua) */
    unsigned long long barrier_seen; /* the last token read: it may come before the answer */
    unsigned quiet_beats;            /* heartbeats spent waiting for the barrier */
    bool push_closed;                /* stopped, and no push can be on its way any more */
    bool interrupted;                /* claimer_interrupt called: pushed runs stop at once too */
    bool idle_told;
    void (*idle)(struct claimer *c, void *arg);
    void *idle_arg;
    void (*close_done)(void *arg);
    void *close_arg;
    int closing;
};

static void kick(struct claimer *c);
static void reconcile_poll(struct claimer *c);
static void flush(struct claimer *c);
static void step(struct claimer *c);
static void complete_cb(struct rconn *rc, redisReply *r, void *priv);

static const char *outcome_names[] = {
    [RUN_SUCCESS] = "Success",   [RUN_FAILED] = "Failed",           [RUN_TIMEDOUT] = "TimedOut",
    [RUN_CANCELED] = "Canceled", [RUN_INTERRUPTED] = "Interrupted",
};

static void update_view(struct claimer *c) { c->node->view.running = runner_running(c->runner); }

static void check_idle(struct claimer *c) {
    if (!c->stopped || c->idle_told || runner_running(c->runner) > 0 || c->npending > 0 ||
        c->nsent_calls > 0 || !c->push_closed)
        return;
    c->idle_told = true;
    if (c->idle) c->idle(c, c->idle_arg);
}

/* --- reporting ----------------------------------------------------------------------------- */

static void report_free(struct report *r) {
    runner_task_free(r->task);
    runner_result_free(r->res);
}

/* Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5..1.0. */
static int64_t retry_delay(const struct claimer *c, int64_t attempt) {
    int64_t d = c->cfg->retry_backoff_ms;
    for (int64_t i = 1; i < attempt && d < RETRY_MAX_MS; i++) d *= 2;
    if (d > RETRY_MAX_MS) d = RETRY_MAX_MS;
    return d / 2 + (d > 1 ? rand() % (d / 2 + 1) : 0);
}

/* complete.lua's answer (alone, or as turn.lua's first half) to the oldest report call in
 * flight: its reports are done, or kept for the next try. */
static void reported(struct claimer *c, redisReply *r) {
    struct batch b = c->sent[0];
    c->nsent_calls--;
    memmove(c->sent, c->sent + 1, c->nsent_calls * sizeof *c->sent);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        /* Not applied (or unknown): keep them for the next try; a resend is harmless. */
        if (r) log_error("reporting results failed", " error=\"%s\"", r->str);
        size_t need = c->npending + b.n;
        if (need > c->cap_pending) {
            c->cap_pending = need;
            c->pending = xrealloc(c->pending, need * sizeof *c->pending);
        }
        memmove(c->pending + b.n, c->pending, c->npending * sizeof *c->pending);
        memcpy(c->pending, b.r, b.n * sizeof *b.r);
        c->npending = need;
        free(b.r);
        return; /* resent when the node is ready again */
    }
    c->node->view.metrics.reports_refused += r->elements > 3 ? r->elements - 3 : 0;
    for (size_t i = 3; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        log_warn("result refused: the task's lease is no longer ours (it was recovered "
                 "elsewhere or already finished)",
                 " task=ServerTasks-%s", r->element[i]->str);
    for (size_t i = 0; i < b.n; i++) report_free(&b.r[i]);
    free(b.r);
}

static void complete_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    reported(c, r);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) return;
    step(c);
    check_idle(c);
}

/* How many pending reports the next call carries: at most REPORT_MAX and REPORT_BYTES_MAX of
 * logs and error texts (always at least one). */
static size_t report_batch(const struct claimer *c) {
    size_t n = c->npending < REPORT_MAX ? c->npending : REPORT_MAX, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const struct runner_result *res = c->pending[i].res;
        bytes += res->log.len + strlen(res->error) + 128;
        if (i > 0 && bytes > REPORT_BYTES_MAX) return i;
    }
    return n;
}

static void add_reports(struct claimer *c, struct script_call *call, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const struct report *rp = &c->pending[i];
        struct call_report r = {.task = rp->task->id,
                                .lease = rp->task->lease,
                                .outcome = outcome_names[rp->res->outcome],
                                .error = rp->res->error,
                                .exit_code = rp->res->exit_code,
                                .log = rp->res->log.data,
                                .log_len = rp->res->log.len,
                                .retry_delay_ms = retry_delay(c, rp->task->attempt)};
        call_complete_add(call, &r);
    }
}

/* The first n pending reports are in the call just sent. */
static void reports_sent(struct claimer *c, size_t n) {
    struct batch *b = &c->sent[c->nsent_calls++];
    b->r = xmalloc(n * sizeof *b->r);
    memcpy(b->r, c->pending, n * sizeof *b->r);
    b->n = n;
    memmove(c->pending, c->pending + n, (c->npending - n) * sizeof *c->pending);
    c->npending -= n;
}

/* Sends pending reports alone (complete.lua) unless REPORT_CALLS_MAX calls are in flight. */
static void flush(struct claimer *c) {
    if (c->nsent_calls == REPORT_CALLS_MAX || c->npending == 0 || !rconn_is_up(c->node->cmd))
        return;
    size_t n = report_batch(c);
    struct script_call call;
    call_complete(&call, &c->node->keys, c->node->view.name, clock_wall_ms(), c->cfg->retention_ms,
                  n);
    add_reports(c, &call, n);
    if (rconn_call(c->node->cmd, &call, complete_cb, c) == 0) reports_sent(c, n);
    call_free(&call);
}

static void batch_cb(uv_check_t *h) {
    struct claimer *c = container_of(h, struct claimer, batch);
    uv_check_stop(h);
    step(c);
}

static void done_cb(struct runner *r, struct runner_task *t, struct runner_result *res, void *arg) {
    struct claimer *c = arg;
    update_view(c);
    c->node->view.metrics.finished[res->outcome]++;
    char q[300];
    log_debug("task finished", " task=%s type=%s outcome=%s duration_ms=%lld error=%s", t->id,
              t->type, outcome_names[res->outcome], (long long)res->duration_ms,
              log_q(q, sizeof q, res->error));
    if (c->npending == c->cap_pending) {
        c->cap_pending = c->cap_pending ? c->cap_pending * 2 : 64;
        c->pending = xrealloc(c->pending, c->cap_pending * sizeof *c->pending);
    }
    c->pending[c->npending++] = (struct report){t, res};
    /* Many tasks finish in one loop iteration: report and claim once, after it. */
    uv_check_start(&c->batch, batch_cb);
    check_idle(c);
}

/* --- reconciling -------------------------------------------------------------------------- */

static void add_running_cb(const struct runner_task *t, void *arg) {
    call_reconcile_add(arg, t->id);
}

/* A heartbeat's look for tasks of ours an operator canceled whose control message this node
 * may have missed (its subscriber was away): its running set, 1,000 entries a call
 * (cancelling.lua's bound), the next call after each answer. */
#define CANCELLING_PER 1000

static void cancelling_send(struct claimer *c);

static void cancelling_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY || c->stopped) {
        c->cancelling = false;
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        char id[48];
        snprintf(id, sizeof id, "ServerTasks-%s", reply_str(r, i, NULL));
        if (!runner_stopping(c->runner, id) && runner_cancel(c->runner, id) == 0)
            log_info("canceling task", " task=%s source=heartbeat", id);
    }
    c->cancelling_from += CANCELLING_PER;
    if (c->cancelling_from < c->cancelling_most)
        cancelling_send(c);
    else
        c->cancelling = false;
}

static void cancelling_send(struct claimer *c) {
    struct script_call call;
    call_cancelling(&call, &c->node->keys, c->node->view.name, c->cancelling_from, CANCELLING_PER);
    c->cancelling = rconn_call(c->node->cmd, &call, cancelling_cb, c) == 0;
    call_free(&call);
}

/* One pass per heartbeat while tasks run (none while idle): bounded by what this node may run
 * (its cap, or more while it runs more after the cap was lowered). A pass under way goes on. */
static void check_cancelling(struct claimer *c) {
    unsigned running = runner_running(c->runner);
    if (running == 0 || c->stopped || c->cancelling) return;
    c->cancelling_most =
        c->node->view.cap > (int64_t)running ? c->node->view.cap : (int64_t)running;
    c->cancelling_from = 0;
    cancelling_send(c);
}

/* After each reconcile, the other way round (owned.lua): runs this node has that Redis no longer
 * records as its own are stopped at once, as fencing stops runs (their reports would be refused
 * anyway): a claim lost in a failover (the task may already run elsewhere), a task recovered
 * elsewhere or timed out. 1,000 runs a call, the next call after each answer, over the runs
 * there were when the pass began (a run finished meanwhile is no longer there to stop). */
#define OWNED_PER 1000

static void owned_begin(struct claimer *c);

/* The pass ended (or cannot go on: the link went); one more when a reconcile asked meanwhile, so
 * the runs started since this pass began are checked too. */
static void owned_end(struct claimer *c) {
    free(c->owned);
    c->owned = NULL;
    if (c->owned_again) {
        c->owned_again = false;
        owned_begin(c);
    }
}

static void owned_cb(struct rconn *rc, redisReply *r, void *priv);

static void owned_send(struct claimer *c) {
    size_t n = c->owned_n - c->owned_from < OWNED_PER ? c->owned_n - c->owned_from : OWNED_PER;
    struct script_call call;
    call_owned(&call, &c->node->keys, c->node->view.name, n);
    for (size_t i = 0; i < n; i++) call_owned_add(&call, c->owned[c->owned_from + i]);
    c->owned_from += n;
    int rc = rconn_call(c->node->cmd, &call, owned_cb, c); /* copies the ids */
    call_free(&call);
    if (rc != 0) owned_end(c);
}

static void owned_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    if (r && r->type == REDIS_REPLY_ERROR) log_warn("reconcile failed", " error=\"%s\"", r->str);
    if (!r || r->type != REDIS_REPLY_ARRAY || c->stopped) {
        owned_end(c);
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        char id[48];
        snprintf(id, sizeof id, "ServerTasks-%s", reply_str(r, i, NULL));
        if (runner_stopping(c->runner, id) ||
            runner_disown(c->runner, id, node_fence_grace_ms(c->node)) != 0)
            continue;
        c->node->view.metrics.fenced++;
        log_warn("stopping a run Redis no longer records as this node's (its claim was lost in a "
                 "Redis failover, or the task was recovered elsewhere)",
                 " task=%s", id);
    }
    if (c->owned_from < c->owned_n)
        owned_send(c);
    else
        owned_end(c);
}

static void owned_add_cb(const struct runner_task *t, void *arg) {
    struct claimer *c = arg;
    snprintf(c->owned[c->owned_n++], sizeof c->owned[0], "%s", t->id);
}

static void owned_begin(struct claimer *c) {
    unsigned running = runner_running(c->runner);
    if (running == 0 || c->stopped) return;
    if (c->owned) { /* a pass under way goes on; another follows it */
        c->owned_again = true;
        return;
    }
    c->owned = xcalloc(running, sizeof c->owned[0]);
    c->owned_n = c->owned_from = 0;
    runner_foreach(c->runner, owned_add_cb, c);
    owned_send(c);
}

/* reconcile.lua's answer: {tasks requeued or finalised}; then the runs go through owned.lua. */
static void reconcile_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    if (r && r->type == REDIS_REPLY_ERROR) {
        log_warn("reconcile failed", " error=\"%s\"", r->str);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return;
    long long fixed = reply_int(r, 0);
    if (fixed > 0)
        log_warn("requeued tasks Redis recorded as running here that this node does not run "
                 "(lost in a Redis failover or restart)",
                 " count=%lld", fixed);
    owned_begin(c);
}

/* --- quiet: no push on its way ------------------------------------------------------------- */

static void quiet_done(struct claimer *c) {
    c->quiet = QUIET_DONE;
    if (c->stopped) c->push_closed = true;
    reconcile_poll(c);
    check_idle(c);
}

static void unidle_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    if (c->quiet != QUIET_UNIDLE) return; /* superseded (the subscriber link came back) */
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        if (r) log_warn("leaving the idle sets failed", " error=\"%s\"", r->str ? r->str : "shape");
        c->quiet = QUIET_NONE; /* tried again when the link is back, or at the next reconcile */
        /* A stop does not wait on it: without the link no push reaches us (enqueue.lua pushes
         * only to a subscribed node), and an error would come again. */
        if (c->stopped) c->push_closed = true;
        check_idle(c);
        return;
    }
    /* 0: not subscribed on this server, so nothing can be on its way. The barrier is on the
     * other link, so it may have been read before this answer. */
    if (r->integer == 0 || c->barrier_seen == c->token) {
        quiet_done(c);
        return;
    }
    c->quiet = QUIET_BARRIER;
    c->quiet_beats = 0;
}

/* Takes the node out of the idle sets (no push after this) and asks for its barrier. */
static void quiet_begin(struct claimer *c) {
    if (!rconn_is_up(c->node->cmd)) {
        if (c->stopped) c->push_closed = true; /* as in unidle_cb */
        return;
    }
    char token[24];
    snprintf(token, sizeof token, "%llu", ++c->token);
    struct script_call call;
    call_unidle(&call, &c->node->keys, c->node->view.name, c->node->view.instance, token,
                (const char *const *)c->queues,
                c->nqueues < CLAIM_QUEUES_MAX ? c->nqueues : CLAIM_QUEUES_MAX);
    if (rconn_call(c->node->cmd, &call, unidle_cb, c) == 0) c->quiet = QUIET_UNIDLE;
    call_free(&call);
}

/* A claim answer pushed by enqueue.lua, or a barrier. */
static bool start_claimed(struct claimer *c, redisReply *r, const char *source);
static void on_push(struct claimer *c, const char *msg, size_t len) {
    if (len > 8 && memcmp(msg, "barrier ", 8) == 0) {
        if (strtoull(msg + 8, NULL, 10) != c->token) return; /* an older one */
        c->barrier_seen = c->token;
        if (c->quiet == QUIET_BARRIER) quiet_done(c);
        return;
    }
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;
    if (len == 0 || msg[0] != '*' || redisReaderFeed(rd, msg, len) != REDIS_OK ||
        redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL) {
        log_error("unreadable message on the push channel", " bytes=%zu", len);
    } else {
        (void)start_claimed(c, reply, "push");
        if (c->interrupted) runner_stop_all(c->runner);
    }
    if (reply) freeReplyObject(reply);
    redisReaderFree(rd);
}

/* Sends reconcile.lua with every task this node runs or still has to report. First the quiet
 * (no push on its way), then only while no claim is in flight: a claim Redis already ran but
 * whose answer we have not read would look like tasks we do not run. */
static void reconcile(struct claimer *c) {
    c->reconcile_due = true;
    reconcile_poll(c);
}

static void reconcile_poll(struct claimer *c) {
    if (!c->reconcile_due || !c->node->view.registered || !rconn_is_up(c->node->cmd)) return;
    if (c->quiet == QUIET_NONE) quiet_begin(c);
    if (c->quiet != QUIET_DONE || c->claiming > 0)
        return; /* its end, or the claim's, polls again */
    c->reconcile_due = false;
    /* Claims sent from here on run after the reconcile: they may register the node again. */
    if (!c->stopped) c->quiet = QUIET_NONE;
    size_t known = runner_running(c->runner) + claimer_unreported(c);
    struct script_call call;
    call_reconcile(&call, &c->node->keys, c->node->view.name, clock_wall_ms(), known);
    runner_foreach(c->runner, add_running_cb, &call);
    for (size_t i = 0; i < c->npending; i++) call_reconcile_add(&call, c->pending[i].task->id);
    for (size_t b = 0; b < c->nsent_calls; b++)
        for (size_t i = 0; i < c->sent[b].n; i++)
            call_reconcile_add(&call, c->sent[b].r[i].task->id);
    (void)rconn_call(c->node->cmd, &call, reconcile_cb, c);
    call_free(&call);
    /* Claims during the quiet did not register the node idle: one that may, now. */
    kick(c);
}

/* --- claiming ------------------------------------------------------------------------------ */

static void due_cb(uv_timer_t *t) {
    struct claimer *c = container_of(t, struct claimer, due);
    c->due_at = 0;
    kick(c);
}

static void arm_due(struct claimer *c, int64_t at) {
    if (at <= 0 || (c->due_at && c->due_at <= at)) return;
    int64_t wait = at - clock_wall_ms();
    c->due_at = at;
    uv_timer_start(&c->due, due_cb, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* A claim answer (claim.lua's, alone or as turn.lua's second half, or pushed by enqueue.lua):
 * starts what it handed us. True when it stopped at a bound (more may be waiting) or was full. */
static bool start_claimed(struct claimer *c, redisReply *r, const char *source) {
    if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        log_error("claim failed", " source=%s error=\"%s\"", source,
                  r->type == REDIS_REPLY_ERROR ? r->str : "shape");
        return false;
    }
    const char *verdict = reply_str(r, 0, NULL);
    arm_due(c, reply_int(r, 1));
    if (reply_int(r, 2) > 0)
        log_info("queued tasks expired", " count=%lld", (long long)reply_int(r, 2));
    /* 'more': claim.lua stopped at its bound (a backlog of expired or canceled tasks, or of
     * scheduled tasks come due) with work possibly left; what it claimed is ours all the same. */
    bool more = strcmp(verdict, "more") == 0;
    size_t claimed = more || strcmp(verdict, "ok") == 0 ? (r->elements - 3) / 7 : 0;
    struct node_metrics *m = &c->node->view.metrics;
    int64_t now = clock_wall_ms();
    m->claimed += claimed;
    if (claimed > 0 && runner_running(c->runner) == 0) c->wave_ns = uv_hrtime(); /* a new wave */
    if (strcmp(source, "push") == 0) m->pushed += claimed;
    for (size_t i = 0; i < claimed; i++) {
        size_t b = 3 + 7 * i, alen;
        int64_t queued = reply_int(r, b + 6); /* a number, or the text the task holds */
        double wait = (double)(now - (queued > 0 ? queued : now)) / 1000.0;
        size_t bucket = 0;
        while (bucket < NODE_LATENCY_BUCKETS && wait > node_latency_bounds[bucket]) bucket++;
        m->latency_counts[bucket]++;
        m->latency_sum += wait > 0 ? wait : 0;
        m->latency_n++;
        struct runner_task *t = xcalloc(1, sizeof *t);
        snprintf(t->id, sizeof t->id, "ServerTasks-%s", reply_str(r, b, NULL));
        t->lease = reply_int(r, b + 1);
        snprintf(t->type, sizeof t->type, "%s", reply_str(r, b + 2, NULL));
        const char *args = reply_str(r, b + 3, &alen);
        if (alen) {
            t->args = xmalloc(alen);
            memcpy(t->args, args, alen);
            t->args_len = alen;
        }
        t->timeout_ms = reply_int(r, b + 4);
        t->attempt = reply_int(r, b + 5);
        log_debug("task claimed", " task=%s type=%s attempt=%lld source=%s", t->id, t->type,
                  (long long)t->attempt, source);
        /* Claimed again while an earlier run of it still goes on here (its claim was lost in a
         * failover, and the task came back to us): the new claim holds, the old run stops. */
        if (runner_disown(c->runner, t->id, node_fence_grace_ms(c->node)) == 0) {
            m->fenced++;
            log_warn("stopping an earlier run of a task claimed again (its first claim was lost "
                     "in a Redis failover)",
                     " task=%s", t->id);
        }
        runner_start(c->runner, t);
    }
    update_view(c);
    return more || (claimed > 0 && claimed == CLAIM_MAX);
}

/* The node's own claim answered. True when the node should claim again at once (more may be
 * waiting, or something happened meanwhile). */
static bool claimed(struct claimer *c, redisReply *r) {
    c->claiming--;
    if (r == NULL) return false;
    bool full = start_claimed(c, r, "claim");
    return c->claim_again || full;
}

static void claim_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    bool again = claimed(c, r);
    if (r == NULL) return;
    reconcile_poll(c);
    if (again) kick(c);
}

/* How many tasks a claim sent now may ask for; 0 when the node cannot take work now. Alone, a
 * claim waits while tasks run until min_batch slots are free (batches, not trickles); riding
 * on a report (turn.lua) it costs no call of its own, so one free slot is enough. */
static int64_t claim_room(const struct claimer *c, bool riding) {
    const struct node_view *v = &c->node->view;
    if (c->stopped || v->stopping || v->drain || !v->registered || !rconn_is_up(c->node->cmd))
        return 0;
    unsigned running = runner_running(c->runner);
    int64_t free_slots = v->cap - (int64_t)running;
    int64_t min_batch = v->cap / 4 < MIN_BATCH_MAX ? v->cap / 4 : MIN_BATCH_MAX;
    if (free_slots <= 0 || (!riding && running > 0 && free_slots < min_batch)) return 0;
    return free_slots < CLAIM_MAX ? free_slots : CLAIM_MAX;
}

static struct call_claim_args claim_args(const struct claimer *c, int64_t max) {
    return (struct call_claim_args){.name = c->node->view.name,
                                    .instance = c->node->view.instance,
                                    .now_ms = clock_wall_ms(),
                                    .max = max,
                                    .balance = c->cfg->balance,
                                    .lease_margin_ms = LEASE_MARGIN_MS,
                                    .push = c->quiet == QUIET_NONE && !c->stopped};
}

/* Claims if the node can take work now; otherwise remembers to try after the call in flight.
 * one_is_enough: claim for a single free slot too (see claim_room). */
static void kick_with(struct claimer *c, bool one_is_enough) {
    int64_t max = claim_room(c, one_is_enough);
    if (max == 0) return;
    if (c->claiming > 0) {
        c->claim_again = true;
        return;
    }
    c->claim_again = false;
    struct call_claim_args a = claim_args(c, max);
    struct script_call call; /* on the stack: no allocation for up to CLAIM_QUEUES_MAX queues */
    call_claim(&call, &c->node->keys, &a);
    for (int i = 0; i < c->nqueues && i < CLAIM_QUEUES_MAX; i++)
        call_claim_add_queue(&call, c->queues[i]);
    if (rconn_call(c->node->cmd, &call, claim_cb, c) == 0) c->claiming++;
    call_free(&call);
}

static void kick(struct claimer *c) { kick_with(c, false); }

/* turn.lua's answer: {complete.lua's, claim.lua's}. Whether more may be waiting needs no
 * note: step() claims again whenever the node has room. */
static void turn_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct claimer *c = priv;
    bool whole = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
    reported(c, whole ? r->element[0] : r);
    (void)claimed(c, whole ? r->element[1] : NULL);
    if (!whole && r && r->type != REDIS_REPLY_ERROR) log_error("turn failed", " error=\"shape\"");
    if (!whole) return; /* the reports are kept: resent when the node is ready again */
    reconcile_poll(c);
    step(c);
    check_idle(c);
}

static void hold_cb(uv_timer_t *h) {
    struct claimer *c = container_of(h, struct claimer, hold);
    c->wave_ns = 0; /* the wave's hold is over */
    step(c);
}

/* Whether the pending reports wait rather than go now: while tasks of a wave (started on a node
 * that ran none) still run, for WAVE_NS from its start, until half the cap has finished, and
 * only while the node could claim. Each finisher calls step() again, so a wave of short tasks
 * goes back in two turns of half the cap each, the second sent while the first is in flight;
 * from then on the two halves take turns, each answered while the other runs. A task that
 * outlasts WAVE_NS ends the hold at the next finisher, or the timer does (libuv's 1 ms: a report
 * waits 2 ms at most). Without it, short tasks at a small cap went back one or two a call, each
 * call paying the whole fixed cost in Redis (docs/benchmarks.md, "Reports of a wave, in halves").
 * Tasks started while others run (their starts spread out) are never held: holding them would
 * leave slots idle. */
static bool hold_reports(struct claimer *c) {
    if (c->npending == 0 || c->npending >= REPORT_MAX || claim_room(c, true) == 0 ||
        (int64_t)c->npending * 2 >= c->node->view.cap)
        return false;
    if (runner_running(c->runner) == 0 || uv_hrtime() - c->wave_ns >= WAVE_NS) return false;
    if (!uv_is_active((uv_handle_t *)&c->hold)) uv_timer_start(&c->hold, hold_cb, 1, 0);
    return true;
}

/* One turn of the loop after tasks finished: the pending reports and, when the node can take
 * work, its next claim in one call (turn.lua); otherwise the reports alone and a claim if one is
 * due. */
static void step(struct claimer *c) {
    if (hold_reports(c)) return;
    uv_timer_stop(&c->hold);
    /* A second turn while one is in flight, but none while a reconcile waits for no claim to be
     * in flight (reconcile_poll), or it could wait for as long as tasks keep finishing. */
    bool can_turn = c->claiming == 0 || (c->claiming < CLAIMS_MAX && !c->reconcile_due);
    int64_t max =
        c->npending > 0 && c->nsent_calls < REPORT_CALLS_MAX && can_turn ? claim_room(c, true) : 0;
    if (max == 0) {
        flush(c);
        kick(c);
        return;
    }
    size_t n = report_batch(c);
    c->claim_again = false;
    struct call_claim_args a = claim_args(c, max);
    struct script_call call;
    call_turn(&call, &c->node->keys, &a, c->cfg->retention_ms, (const char *const *)c->queues,
              c->nqueues < CLAIM_QUEUES_MAX ? c->nqueues : CLAIM_QUEUES_MAX, n);
    add_reports(c, &call, n);
    if (rconn_call(c->node->cmd, &call, turn_cb, c) == 0) {
        reports_sent(c, n);
        c->claiming++;
    }
    call_free(&call);
}

void claimer_on_event(struct claimer *c, enum node_event ev, const char *arg) {
    switch (ev) {
    case NODE_READY:
        flush(c);
        reconcile(c);
        kick(c);
        break;
    case NODE_CAPACITY:
    case NODE_WAKE: kick(c); break;
    case NODE_BEAT:
        flush(c);
        check_cancelling(c);
        if (c->quiet == QUIET_BARRIER && ++c->quiet_beats >= 3) { /* never came: start over */
            log_warn("the push channel's barrier did not come; asking again", NULL);
            c->quiet = QUIET_NONE;
            if (c->stopped)
                quiet_begin(c);
            else
                reconcile(c);
        }
        if (++c->beats % RECONCILE_EVERY_BEATS == 0) reconcile(c);
        /* Tasks wait and slots are free: claim them even when fewer slots are free than a
         * batch. Without this, with long tasks (none finishing, so no report to ride on) up to
         * a quarter of the cap stayed free while tasks waited: 24 of 600 for a minute in a
         * test. One claim a heartbeat at most. */
        if (arg && strtoll(arg, NULL, 10) > 0) kick_with(c, true);
        break;
    case NODE_LEASE: runner_extend(c->runner, strtoll(arg, NULL, 10)); break;
    case NODE_PUSH: on_push(c, arg, c->node->push_len); break;
    case NODE_SUBSCRIBED:
        /* Pushes sent while the link was down are lost: their tasks are recorded as ours and
         * nothing runs them. A barrier awaited on the old link will not come: start over. */
        if (c->quiet == QUIET_UNIDLE || c->quiet == QUIET_BARRIER) c->quiet = QUIET_NONE;
        reconcile(c);
        break;
    case NODE_FENCED: {
        unsigned n = runner_fence(c->runner, strtoll(arg, NULL, 10));
        c->node->view.metrics.fenced += n;
        if (n) log_warn("stopped running tasks: this node's liveness is unproven", " tasks=%u", n);
        break;
    }
    case NODE_CANCEL: {
        char id[48];
        snprintf(id, sizeof id, "ServerTasks-%s", arg);
        if (runner_cancel(c->runner, id) == 0) log_info("canceling task", " task=%s", id);
        break;
    }
    }
}

/* --- life cycle ---------------------------------------------------------------------------- */

struct claimer *claimer_new(uv_loop_t *loop, struct node *n, const struct shoal_config *cfg,
                            const struct shoal_handlers *handlers, const char *exec_shim,
                            const struct exec_cred *exec_cred) {
    struct claimer *c = xcalloc(1, sizeof *c);
    c->loop = loop;
    c->node = n;
    c->cfg = cfg;
    struct runner_config rc = {cfg->allow_exec,
                               (size_t)cfg->task_log_cap,
                               cfg->kill_grace_ms,
                               handlers,
                               cfg->package_dir,
                               exec_shim,
                               cfg->exec_env_allow,
                               cfg->task_env_allow,
                               cfg->name,
                               exec_cred,
                               node_fence_grace_ms(n),
                               (unsigned)cfg->handler_threads};
    c->runner = runner_new(loop, &rc, done_cb, c);
    char *copy = xstrdup(cfg->queues), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        c->queues = xrealloc(c->queues, (size_t)(c->nqueues + 1) * sizeof *c->queues);
        c->queues[c->nqueues++] = xstrdup(t);
    }
    free(copy);
    uv_timer_init(loop, &c->due);
    uv_timer_init(loop, &c->hold);
    uv_check_init(loop, &c->batch);
    return c;
}

unsigned claimer_running(const struct claimer *c) { return runner_running(c->runner); }
unsigned claimer_unreported(const struct claimer *c) {
    size_t n = c->npending;
    for (size_t b = 0; b < c->nsent_calls; b++) n += c->sent[b].n;
    return (unsigned)n;
}

void claimer_stop(struct claimer *c, void (*idle)(struct claimer *c, void *arg), void *arg) {
    c->stopped = true;
    c->idle = idle;
    c->idle_arg = arg;
    /* No push may reach a node that told it was idle: leave the idle sets and wait for the
     * barrier first (a quiet under way, or already passed, does as well). */
    if (c->quiet == QUIET_DONE || !c->node->view.registered)
        c->push_closed = true;
    else if (c->quiet == QUIET_NONE)
        quiet_begin(c);
    uv_timer_stop(&c->due);
    uv_timer_stop(&c->hold);
    check_idle(c);
}

void claimer_interrupt(struct claimer *c) {
    c->interrupted = true;
    runner_stop_all(c->runner);
}

static void part_closed(struct claimer *c) {
    if (--c->closing > 0) return;
    void (*done)(void *) = c->close_done;
    void *arg = c->close_arg;
    for (size_t i = 0; i < c->npending; i++) report_free(&c->pending[i]);
    for (size_t b = 0; b < c->nsent_calls; b++) {
        for (size_t i = 0; i < c->sent[b].n; i++) report_free(&c->sent[b].r[i]);
        free(c->sent[b].r);
    }
    free(c->pending);
    free(c->owned);
    for (int i = 0; i < c->nqueues; i++) free(c->queues[i]);
    free(c->queues);
    free(c);
    if (done) done(arg);
}
static void runner_closed_cb(void *arg) { part_closed(arg); }
static void timer_closed_cb(uv_handle_t *h) { part_closed(h->data); }

void claimer_close(struct claimer *c, void (*done)(void *arg), void *arg) {
    c->close_done = done;
    c->close_arg = arg;
    c->closing = 4;
    c->due.data = c;
    c->hold.data = c;
    c->batch.data = c;
    uv_close((uv_handle_t *)&c->due, timer_closed_cb);
    uv_close((uv_handle_t *)&c->hold, timer_closed_cb);
    uv_close((uv_handle_t *)&c->batch, timer_closed_cb);
    runner_close(c->runner, runner_closed_cb, c);
}
