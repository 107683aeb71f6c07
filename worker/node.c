/* node.c: registration, heartbeat, control channel and sweep for one node (see node.h). */
#include "worker/node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/reply.h"
#include "common/util.h"

/* Sweep (forget long-offline nodes) about once a minute, whatever the heartbeat period; expire
 * queued tasks nobody claims every few heartbeats. */
#define SWEEP_EVERY_MS 60000
#define EXPIRE_EVERY_BEATS 4
#define EXPIRE_BUDGET 256       /* expire.lua's work per call (its header: about 1 ms) */
#define QUEUE_IDLE_MS 3600000LL /* an empty queue's name is forgotten after an hour unused */

static void do_register(struct node *n);
static int recover(struct node *n, const char *only, rconn_reply_cb cb);
static bool recovery_answer(struct node *n, enum recovery_pass pass, const redisReply *r,
                            const char *what);

/* --- applying state ----------------------------------------------------------------------- */

static void emit(struct node *n, enum node_event ev, const char *arg) {
    if (n->event) n->event(n, ev, arg);
}

static void set_redis_ok(struct node *n, bool ok, const char *why);

int64_t node_fence_grace_ms(const struct node *n) {
    int64_t g = n->cfg->kill_grace_ms, third = n->ttl_ms / 3;
    return g < third ? g : third;
}

/* The fence falls at TTL - margin after an acknowledged heartbeat was sent, which must leave the
 * next heartbeat time to be answered: at the shortest heartbeat the settings accept (200 ms: TTL
 * 600, grace 200, slack 100) that is 100 ms; at 100 ms it was none (docs/design.md, "Fencing"). */
int64_t node_fence_margin_ms(const struct node *n) {
    int64_t slack = n->ttl_ms / 10 > 100 ? n->ttl_ms / 10 : 100;
    return node_fence_grace_ms(n) + slack;
}

/* No acknowledgement since lease_mono_ms for TTL - margin: another node may declare us dead
 * when the TTL runs out and run our tasks again, so ours must be gone by then. The tasks are
 * stopped (their results go back as Interrupted when Redis is back, fenced by their leases:
 * if recovery requeued them meanwhile, the reports are refused). */
static void fence_cb(uv_timer_t *t) {
    struct node *n = container_of(t, struct node, fence);
    if (n->stopped || n->fenced) return;
    n->fenced = true;
    int64_t grace = node_fence_grace_ms(n);
    log_warn("no heartbeat acknowledged for the liveness TTL less the margin: stopping every "
             "running task before another node may run it again",
             " since_ms=%llu ttl_ms=%lld grace_ms=%lld",
             (unsigned long long)(clock_mono_ms() - n->lease_mono_ms), (long long)n->ttl_ms,
             (long long)grace);
    set_redis_ok(n, false, "liveness unproven");
    char arg[24];
    snprintf(arg, sizeof arg, "%lld", (long long)grace);
    emit(n, NODE_FENCED, arg);
}

/* An acknowledged heartbeat or registration sent at sent_ms: the lease runs from there. */
static void lease_renewed(struct node *n, uint64_t sent_ms) {
    n->lease_mono_ms = sent_ms;
    n->fenced = false;
    int64_t at = (int64_t)sent_ms + n->ttl_ms - node_fence_margin_ms(n);
    int64_t wait = at - (int64_t)clock_mono_ms();
    uv_timer_start(&n->fence, fence_cb, wait > 0 ? (uint64_t)wait : 0, 0);
    char arg[24];
    snprintf(arg, sizeof arg, "%lld", (long long)at);
    emit(n, NODE_LEASE, arg); /* the shims stop their runs at the same time if we cannot */
}

/* Takes cap and drain as Redis holds them; logs only what changed. */
static void apply(struct node *n, int64_t cap, bool drain, const char *source) {
    bool changed = cap != n->view.cap || drain != n->view.drain;
    if (cap != n->view.cap) {
        log_info("task cap changed", " from=%lld to=%lld source=%s", (long long)n->view.cap,
                 (long long)cap, source);
        n->view.cap = cap;
    }
    if (drain != n->view.drain) {
        log_info(drain ? "drain on" : "drain off", " source=%s", source);
        n->view.drain = drain;
    }
    if (changed) emit(n, NODE_CAPACITY, NULL);
}

static void set_redis_ok(struct node *n, bool ok, const char *why) {
    if (n->view.redis_ok == ok) return;
    n->view.redis_ok = ok;
    if (ok)
        log_info("redis reachable; node online", NULL);
    else
        log_warn("redis unreachable; ping answers 503", " reason=\"%s\"", why);
}

/* --- registration -------------------------------------------------------------------------- */

/* Another instance holds our name. Decides between waiting (a crashed predecessor's TTL is
 * running out) and refusing (the holder refreshed its TTL, so it is alive). */
static void on_busy(struct node *n, const char *holder, int64_t pttl) {
    uint64_t now = clock_mono_ms();
    if (strcmp(n->busy_holder, holder) != 0) {
        if (n->busy_holder[0]) goto alive; /* a different instance took it meanwhile */
        snprintf(n->busy_holder, sizeof n->busy_holder, "%s", holder);
        n->busy_pttl = pttl;
        n->busy_since_ms = now;
        log_warn("node name held by another instance; waiting for its TTL to tell whether it "
                 "is alive",
                 " holder=%s ttl_ms=%lld", holder, (long long)pttl);
        return;
    }
    /* Expected remaining TTL if nobody refreshed it; allow scheduling slack. */
    int64_t expected = n->busy_pttl - (int64_t)(now - n->busy_since_ms);
    int64_t slack = n->cfg->heartbeat_ms / 2 > 250 ? n->cfg->heartbeat_ms / 2 : 250;
    if (pttl > expected + slack || pttl == -1) goto alive;
    log_info("waiting for the previous instance's TTL", " holder=%s ttl_ms=%lld", holder,
             (long long)pttl);
    return;
alive:;
    char msg[256];
    snprintf(msg, sizeof msg,
             "node name '%s' is in use by a live process (instance %s); stop it "
             "or start this one with another --name",
             n->view.name, holder);
    n->fatal(n, 2, msg);
}

static void own_recovery_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    if (r == NULL || n->stopped) return;
    /* At its bound with more left: the rest before we claim, call by call. */
    if (recovery_answer(n, RECOVERY_OWN, r,
                        "recovered tasks of this node's previous incarnation")) {
        recover(n, n->view.name, own_recovery_cb);
        return;
    }
    emit(n, NODE_READY, NULL);
}

static void register_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    n->beat_pending = false;
    if (r == NULL || n->stopped) return; /* link lost: we register again when it is back */
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("registration refused by Redis", " error=\"%s\"", r->str);
        return;
    }
    const char *verdict = reply_str(r, 0, NULL);
    if (strcmp(verdict, "layout") == 0) {
        char msg[320];
        snprintf(msg, sizeof msg,
                 "namespace %s is at Redis layout version %lld, newer than this build's (%lld, "
                 "shoal %s): newer nodes run on it and this one cannot run beside them; "
                 "upgrade this node",
                 n->cfg->namespace, (long long)reply_int(r, 1), (long long)reply_int(r, 2),
                 SHOAL_VERSION);
        n->fatal(n, 2, msg);
        return;
    }
    if (strcmp(verdict, "busy") == 0) {
        on_busy(n, reply_str(r, 1, NULL), reply_int(r, 2));
        return;
    }
    if (strcmp(verdict, "ok") != 0) {
        log_error("registration: unexpected reply", NULL);
        return;
    }
    const char *prev = reply_str(r, 1, NULL);
    bool takeover = prev[0] && strcmp(prev, n->view.instance) != 0;
    if (takeover) log_info("took over node name from previous instance", " previous=%s", prev);
    n->busy_holder[0] = '\0';
    if (!n->view.registered)
        log_info("registered", " instance=%s cap=%lld cap_by=%s drain=%s ttl_ms=%lld",
                 n->view.instance, (long long)reply_int(r, 2), reply_str(r, 4, NULL),
                 reply_int(r, 3) ? "on" : "off", (long long)n->ttl_ms);
    n->view.registered = true;
    lease_renewed(n, n->beat_sent_mono_ms);
    n->view.last_seen_ms = clock_wall_ms();
    apply(n, reply_int(r, 2), reply_int(r, 3) != 0, "redis");
    set_redis_ok(n, true, NULL);
    /* Taking over from a previous incarnation: what it left running is recovered before we
     * claim. Registering again (Redis came back) keeps our own running tasks, of course. */
    if (takeover)
        recover(n, n->view.name, own_recovery_cb);
    else
        emit(n, NODE_READY, NULL);
}

static void do_register(struct node *n) {
    struct call_register_args a = {.name = n->view.name,
                                   .instance = n->view.instance,
                                   .now_ms = clock_wall_ms(),
                                   .ttl_ms = n->ttl_ms,
                                   .cap = n->cfg->cap,
                                   .version = n->view.version,
                                   .host = n->host,
                                   .pid = (int64_t)getpid(),
                                   .listen = n->listen,
                                   .queues = n->cfg->queues,
                                   .heartbeat_ms = n->cfg->heartbeat_ms};
    struct script_call call;
    call_register(&call, &n->keys, &a);
    n->beat_sent_mono_ms = clock_mono_ms();
    if (rconn_call(n->cmd, &call, register_cb, n) == 0) n->beat_pending = true;
    call_free(&call);
}

/* --- heartbeat ----------------------------------------------------------------------------- */

static void sweep_cb(struct rconn *rc, redisReply *r, void *priv) {
    if (r == NULL) return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("sweep failed", " error=\"%s\"", r->str);
        return;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        log_info("forgot long-offline node", " forgotten=%s", reply_str(r, i, NULL));
}

static void sweep(struct node *n) {
    struct script_call call;
    call_sweep(&call, &n->keys, clock_wall_ms(), n->cfg->forget_after_ms, n->cfg->retention_ms);
    (void)rconn_call(n->cmd, &call, sweep_cb, n);
    call_free(&call);
}

static void expire_slice(struct node *n);

/* One slice of the expiry pass answered {expired, next cursor, more}: the next slice goes at
 * once (other clients are served between slices) until the cursor comes back "0" with no
 * budget-bound work left. */
static void expire_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    n->expiring = false;
    if (!r || n->stopped) return;
    if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        log_warn("expiry pass failed", " error=\"%s\"",
                 r->type == REDIS_REPLY_ERROR ? r->str : "reply shape");
        snprintf(n->expire_cursor, sizeof n->expire_cursor, "0");
        return;
    }
    if (reply_int(r, 0) > 0)
        log_info("queued tasks expired: nobody took them in time", " count=%lld",
                 (long long)reply_int(r, 0));
    snprintf(n->expire_cursor, sizeof n->expire_cursor, "%s", reply_str(r, 1, NULL));
    if (strcmp(n->expire_cursor, "0") != 0 || reply_int(r, 2)) expire_slice(n);
}

static void expire_slice(struct node *n) {
    if (n->expiring || !n->view.registered) return;
    struct script_call call;
    call_expire(&call, &n->keys, clock_wall_ms(), EXPIRE_BUDGET,
                n->expire_cursor[0] ? n->expire_cursor : "0", QUEUE_IDLE_MS);
    if (rconn_call(n->cmd, &call, expire_cb, n) == 0) n->expiring = true;
    call_free(&call);
}

static void expire(struct node *n) {
    if (n->expiring) return; /* the pass under way goes on */
    snprintf(n->expire_cursor, sizeof n->expire_cursor, "0");
    expire_slice(n);
}

/* Recovery (lua/recover.lua): in fleet mode (only == NULL) at most one node per heartbeat
 * period recovers dead nodes' tasks and times out stuck ones; with only == our name, the
 * tasks our previous incarnation left behind. cb may be NULL. */
static int recover(struct node *n, const char *only, rconn_reply_cb cb) {
    struct script_call call;
    call_recover(&call, &n->keys, clock_wall_ms(), n->view.instance, n->cfg->heartbeat_ms, only);
    int rc = rconn_call(n->cmd, &call, cb, n);
    call_free(&call);
    return rc;
}

/* Adds a recover.lua answer to its pass's counts; logs them (as `what`) when the pass ended.
 * True when recover.lua stopped at its bound with more to do: the caller calls again, after
 * this answer (a pass of a dead node of cap 10,000 is 79 calls of at most 128 tasks). */
static bool recovery_answer(struct node *n, enum recovery_pass pass, const redisReply *r,
                            const char *what) {
    long long *sum = n->recovered[pass];
    bool counts = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 5;
    if (r && r->type == REDIS_REPLY_ERROR) log_warn("recovery failed", " error=\"%s\"", r->str);
    if (counts) {
        for (int i = 0; i < 4; i++) sum[i] += reply_int(r, (size_t)i + 1);
        if (strcmp(reply_str(r, 0, NULL), "more") == 0) return true;
    }
    /* The pass ended (also cut short: the link went, or the lock passed to another node while
     * its TTL ran out mid-pass, which is harmless, each call being atomic): what it did. */
    if (sum[0] + sum[1] + sum[2] + sum[3] > 0)
        log_warn(what, " requeued=%lld failed=%lld canceled=%lld timed_out=%lld", sum[0], sum[1],
                 sum[2], sum[3]);
    memset(sum, 0, sizeof n->recovered[pass]);
    return false;
}

static void recover_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    n->recovering = recovery_answer(n, RECOVERY_FLEET, r, "recovered tasks of lost nodes") &&
                    !n->stopped &&
                    recover(n, NULL, recover_cb) == 0; /* not sent (link down): none under way */
}

static void heartbeat_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    n->beat_pending = false;
    if (r == NULL || n->stopped) return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("heartbeat failed", " error=\"%s\"", r->str);
        return;
    }
    const char *verdict = reply_str(r, 0, NULL);
    if (strcmp(verdict, "gone") == 0) {
        log_warn("node record missing in Redis (flushed or forgotten); registering again", NULL);
        n->view.registered = false;
        do_register(n);
        return;
    }
    if (strcmp(verdict, "taken") == 0) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "another instance (%s) took over node name '%s' after our TTL "
                 "expired",
                 reply_str(r, 1, NULL), n->view.name);
        n->view.registered = false;
        n->fatal(n, 3, msg);
        return;
    }
    if (reply_int(r, 4)) log_warn("heartbeat was late: the liveness TTL had expired", NULL);
    lease_renewed(n, n->beat_sent_mono_ms);
    n->view.last_seen_ms = clock_wall_ms();
    n->view.beat_ok_mono_ms = clock_mono_ms();
    apply(n, reply_int(r, 1), reply_int(r, 2) != 0, "heartbeat");
    set_redis_ok(n, true, NULL);
    char ready[24];
    snprintf(ready, sizeof ready, "%lld", (long long)reply_int(r, 5));
    emit(n, NODE_BEAT, ready);
}

static void beat_cb(uv_timer_t *t) {
    struct node *n = container_of(t, struct node, beat);
    if (n->stopped || !rconn_is_up(n->cmd)) return;
    if (n->beat_pending) {
        /* Sent between two ticks (the registration after a reconnect, or the beat a
         * re-subscription asks for at once): not a whole period yet. A tenth of a period is
         * left for a tick that fires a little early against the send time (the timer counts
         * from the loop's time, the send time is read after it). */
        uint64_t hb = (uint64_t)n->cfg->heartbeat_ms;
        if (clock_mono_ms() - n->beat_sent_mono_ms + hb / 10 < hb) return;
        /* No answer within a whole period: Redis is stalled or the link is half-dead. */
        set_redis_ok(n, false, "heartbeat unanswered");
        n->beat_pending = false;
        rconn_reset(n->cmd, "heartbeat unanswered for a whole period");
        return;
    }
    if (!n->view.registered) {
        do_register(n);
        return;
    }
    struct script_call call;
    call_heartbeat(&call, &n->keys, n->view.name, n->view.instance, clock_wall_ms(), n->ttl_ms);
    n->beat_sent_mono_ms = clock_mono_ms();
    if (rconn_call(n->cmd, &call, heartbeat_cb, n) == 0) n->beat_pending = true;
    call_free(&call);
    uint64_t every = (uint64_t)(SWEEP_EVERY_MS / n->cfg->heartbeat_ms);
    if (++n->beats % (every ? every : 1) == 0) sweep(n);
    if (n->beats % EXPIRE_EVERY_BEATS == 0) expire(n);
    if (!n->recovering) recover(n, NULL, recover_cb); /* a pass under way goes on */
}

/* --- Redis link events --------------------------------------------------------------------- */

/* INFO memory's maxmemory_policy. Anything but noeviction lets Redis drop keys under memory
 * pressure, a task's record among them: a lost task. The first reading after start-up refuses
 * (exit 2) unless --allow-redis-eviction; later ones (a reconnect, a failover) log an error. A
 * Redis that refuses INFO (an ACL, a managed service) gets a warning: we cannot tell. */
static void policy_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    if (r == NULL || n->stopped) return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("cannot read Redis's maxmemory-policy; make sure it is noeviction", " err=%s",
                 r->str);
        return;
    }
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "maxmemory_policy:") : NULL;
    if (!p) return;
    p += strlen("maxmemory_policy:");
    char policy[32];
    size_t len = strcspn(p, "\r\n");
    snprintf(policy, sizeof policy, "%.*s", (int)(len < sizeof policy ? len : sizeof policy - 1),
             p);
    bool first = !n->policy_seen;
    n->policy_seen = true;
    if (strcmp(policy, "noeviction") == 0) return;
    if (n->cfg->allow_redis_eviction) {
        log_warn("Redis may evict keys (--allow-redis-eviction): an evicted task is lost",
                 " maxmemory_policy=%s", policy);
        return;
    }
    char msg[320];
    snprintf(msg, sizeof msg,
             "Redis's maxmemory-policy is %s: under memory pressure it would "
             "evict keys, and an evicted task record is a lost task; set it to noeviction "
             "(CONFIG SET maxmemory-policy noeviction, or your provider's parameter), or start "
             "with --allow-redis-eviction to run anyway",
             policy);
    if (first)
        n->fatal(n, 2, msg);
    else
        log_error(msg, NULL);
}

static void cmd_up_cb(struct rconn *rc, void *arg) {
    struct node *n = arg;
    if (n->stopped) return;
    n->beat_pending = false;
    /* Before registering, on the same link: the answer comes first, so a refusing node has
     * claimed nothing. */
    const char *info[] = {"INFO", "memory"};
    (void)rconn_command(n->cmd, policy_cb, n, 2, info, NULL);
    do_register(n);
}

static void cmd_down_cb(struct rconn *rc, const char *why, void *arg) {
    struct node *n = arg;
    n->beat_pending = false;
    n->view.registered = false;
    set_redis_ok(n, false, why);
}

/* Messages: on the control channel "node <name> <cap> <drain>" and "cancel <node> <n>"; on
 * the wake channel a queue name; on this process's push channel what worker/claim.c reads. */
static void message_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    if (strcmp(reply_str(r, 0, NULL), "message") != 0) return;
    const char *channel = reply_str(r, 1, NULL), *msg = reply_str(r, 2, NULL);
    char wake[160], push[200], name[80], id[32];
    long long cap;
    int drain;
    if (strcmp(channel, keys_wake(&n->keys, wake, sizeof wake)) == 0) {
        emit(n, NODE_WAKE, msg);
    } else if (strcmp(channel, keys_push(&n->keys, n->view.name, n->view.instance, push,
                                         sizeof push)) == 0) {
        n->push_len = r->element[2]->type == REDIS_REPLY_STRING ? r->element[2]->len : 0;
        emit(n, NODE_PUSH, msg);
    } else if (sscanf(msg, "node %79s %lld %d", name, &cap, &drain) == 3) {
        if (strcmp(name, n->view.name) == 0) apply(n, cap, drain != 0, "control");
    } else if (sscanf(msg, "cancel %79s %31s", name, id) == 2) {
        if (strcmp(name, n->view.name) == 0) emit(n, NODE_CANCEL, id);
    }
}

static void sub_up_cb(struct rconn *rc, void *arg) {
    struct node *n = arg;
    char ctl[160], wake[160], push[200];
    const char *channels[] = {
        keys_control(&n->keys, ctl, sizeof ctl), keys_wake(&n->keys, wake, sizeof wake),
        keys_push(&n->keys, n->view.name, n->view.instance, push, sizeof push)};
    (void)rconn_subscribe(rc, channels, 3, message_cb, n);
    /* Messages may have been missed while the link was down: read the truth now. */
    if (n->view.registered && !n->beat_pending) beat_cb(&n->beat);
    emit(n, NODE_SUBSCRIBED, NULL);
}

/* --- life cycle ---------------------------------------------------------------------------- */

void node_init(struct node *n, uv_loop_t *loop, const struct shoal_config *cfg,
               const struct rurl *url, const char *listen, node_fatal_cb fatal,
               node_event_cb event) {
    memset(n, 0, sizeof *n);
    n->loop = loop;
    n->cfg = cfg;
    n->fatal = fatal;
    n->event = event;
    keys_init(&n->keys, cfg->namespace);
    snprintf(n->view.name, sizeof n->view.name, "%s", cfg->name);
    unsigned char rnd[16];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        uint64_t t = clock_mono_ns() ^ (uint64_t)getpid();
        memcpy(rnd, &t, sizeof t);
        memcpy(rnd + 8, &t, sizeof t);
    }
    for (size_t i = 0; i < sizeof rnd; i++) sprintf(n->view.instance + 2 * i, "%02x", rnd[i]);
    srand((unsigned)(rnd[0] | rnd[1] << 8 | rnd[2] << 16));
    n->view.version = SHOAL_VERSION;
    n->view.cap = cfg->cap;
    n->ttl_ms = cfg->heartbeat_ms * 3;
    snprintf(n->listen, sizeof n->listen, "%s", listen);
    gethostname(n->host, sizeof n->host - 1);
    struct rconn_events cmd_ev = {cmd_up_cb, cmd_down_cb, n};
    struct rconn_events sub_ev = {sub_up_cb, NULL, n};
    n->cmd = rconn_new(loop, url, "cmd", true, &cmd_ev);
    n->sub = rconn_new(loop, url, "sub", false, &sub_ev);
    uv_timer_init(loop, &n->beat);
    uv_timer_init(loop, &n->fence);
    uv_timer_init(loop, &n->stop_deadline);
}

void node_start(struct node *n) {
    rconn_start(n->cmd);
    rconn_start(n->sub);
    uv_timer_start(&n->beat, beat_cb, (uint64_t)n->cfg->heartbeat_ms,
                   (uint64_t)n->cfg->heartbeat_ms);
}

static void stop_finish(struct node *n) {
    uv_timer_stop(&n->stop_deadline);
    void (*done)(struct node *) = n->stop_done;
    n->stop_done = NULL;
    if (done) done(n);
}

static void deregister_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct node *n = priv;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
        log_info("deregistered: node is Offline", NULL);
    else if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("deregistration failed", " error=\"%s\"", r->str);
    n->view.registered = false;
    stop_finish(n);
}

static void stop_deadline_cb(uv_timer_t *t) {
    struct node *n = container_of(t, struct node, stop_deadline);
    log_warn("deregistration not answered; the TTL will mark the node Offline", NULL);
    stop_finish(n);
}

void node_stop(struct node *n, void (*done)(struct node *n)) {
    n->stopped = true;
    n->stop_done = done;
    uv_timer_stop(&n->beat);
    if (!n->view.registered) {
        stop_finish(n);
        return;
    }
    struct script_call call;
    call_deregister(&call, &n->keys, n->view.name, n->view.instance, clock_wall_ms());
    int rc = rconn_call(n->cmd, &call, deregister_cb, n);
    call_free(&call);
    if (rc != 0) {
        stop_finish(n);
        return;
    }
    uv_timer_start(&n->stop_deadline, stop_deadline_cb, 2000, 0);
}

static void part_closed(struct node *n) {
    if (--n->closing_handles > 0) return;
    if (n->close_done) n->close_done(n);
}
static void rconn_done_cb(void *arg) { part_closed(arg); }
static void timer_closed_cb(uv_handle_t *h) { part_closed(h->data); }

void node_close(struct node *n, void (*done)(struct node *n)) {
    n->stopped = true;
    n->close_done = done;
    n->closing_handles = 5;
    n->beat.data = n;
    n->fence.data = n;
    n->stop_deadline.data = n;
    uv_close((uv_handle_t *)&n->beat, timer_closed_cb);
    uv_close((uv_handle_t *)&n->fence, timer_closed_cb);
    uv_close((uv_handle_t *)&n->stop_deadline, timer_closed_cb);
    rconn_free(n->cmd, rconn_done_cb, n);
    rconn_free(n->sub, rconn_done_cb, n);
}
