/* node.h: a node's membership in the fleet: registration under its name, the TTL heartbeat,
 * last seen, cap and drain as Redis holds them (pushed over pub/sub, re-read every heartbeat),
 * duplicate-name refusal and takeover after a crash, and forgetting long-offline nodes.
 *
 * Life: node_init -> node_start (connects; registers when Redis is up) -> ... -> node_stop
 * (deregisters: the node turns Offline at once) -> node_close (frees, asynchronously).
 * Everything runs on the loop thread; the view is what ping answers from. */
#ifndef SHOAL_WORKER_NODE_H
#define SHOAL_WORKER_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/node_view.h"
#include "common/rconn.h"
#include "common/rurl.h"

struct node;
/* Called when the node cannot go on (name taken by a live process): the owner shuts down and
 * exits with code. msg is borrowed for the call. */
typedef void (*node_fatal_cb)(struct node *n, int code, const char *msg);

/* What the node tells the task side (worker/claim.c), on the loop thread. */
enum node_event {
    NODE_READY,      /* registered (again): claims may go out */
    NODE_CAPACITY,   /* cap or drain changed */
    NODE_WAKE,       /* arg: a queue that has new work (wake channel) */
    NODE_CANCEL,     /* arg: number of a task of ours an operator canceled */
    NODE_BEAT,       /* heartbeat answered; arg: the fleet's ready task count */
    NODE_FENCED,     /* no heartbeat acknowledged for TTL - margin: arg: the grace (ms) in which
                    * every running task must be gone (docs/design.md, "Fencing") */
    NODE_LEASE,      /* lease renewed: arg: the new fencing deadline (monotonic ms) */
    NODE_PUSH,       /* a message on this process's push channel: arg, push_len bytes (binary) */
    NODE_SUBSCRIBED, /* the subscriber link is (re)subscribed: pushes may have been lost */
};
typedef void (*node_event_cb)(struct node *n, enum node_event ev, const char *arg);

/* The two kinds of recovery pass (worker/node.c): the fleet's, of dead nodes, and a node's own,
 * of what its previous incarnation left when it takes over its name. */
enum recovery_pass { RECOVERY_FLEET, RECOVERY_OWN };

struct node {
    uv_loop_t *loop;
    const struct shoal_config *cfg; /* borrowed for the node's life */
    struct keys keys;               /* key names for cfg->namespace */
    struct node_view view;          /* what ping answers from */
    char listen[80];                /* the HTTP address as registered (real port) */
    char host[128];                 /* host name, recorded for operators */
    int64_t ttl_ms;                 /* liveness TTL: three heartbeats */
    struct rconn *cmd;              /* commands and scripts */
    struct rconn *sub;              /* the control, wake and push channel subscriptions */
    size_t push_len;                /* NODE_PUSH's message length */
    uv_timer_t beat;                /* heartbeat period */
    bool beat_pending;              /* a heartbeat or registration is awaiting its reply */
    uint64_t beat_sent_mono_ms;     /* when the call in flight was sent */
    uint64_t lease_mono_ms;         /* when the last acknowledged heartbeat or registration was
                                     * sent: Redis set our liveness TTL no earlier than this */
    uv_timer_t fence;               /* fires at lease_mono_ms + TTL - margin (node_fence_margin) */
    bool fenced;                    /* it fired and no acknowledgement came since */
    unsigned beats;                 /* heartbeats sent, for the sweep cadence */
    bool expiring;                  /* an expiry pass is under way (expire.lua, slice by slice) */
    char expire_cursor[32];         /* where its next slice starts in {NS}:queues */
    bool recovering;                /* a recovery pass is under way (recover.lua said 'more') */
    long long recovered[2][4];      /* a pass's counts so far, by enum recovery_pass: requeued,
                                     * failed, canceled, timed out */
    bool policy_seen;               /* Redis's maxmemory-policy was read once (start-up check) */
    bool stopped;                   /* node_stop called: no re-registration */
    /* Duplicate-name detection: while another instance holds the name, watch its TTL. If it is
     * refreshed, that instance is alive and we refuse; if it runs out, we take over. */
    char busy_holder[33];   /* instance id seen holding the name, "" when none */
    int64_t busy_pttl;      /* its TTL when first seen */
    uint64_t busy_since_ms; /* monotonic time when first seen */
    node_fatal_cb fatal;
    node_event_cb event;               /* may be NULL */
    void (*stop_done)(struct node *n); /* node_stop's callback */
    uv_timer_t stop_deadline;          /* bounds the wait for deregistration */
    int closing_handles;               /* node_close bookkeeping */
    void (*close_done)(struct node *n);
};

/* Prepares the node (no I/O). cfg and url are borrowed/copied; listen is the bound address. */
void node_init(struct node *n, uv_loop_t *loop, const struct shoal_config *cfg,
               const struct rurl *url, const char *listen, node_fatal_cb fatal,
               node_event_cb event);
/* Connects both Redis links; registration follows when Redis answers. */
void node_start(struct node *n);

/* Fencing (issue 16): a node may run tasks only while it can prove, recently enough, that it is
 * still the live holder of its name. The grace for stopping them when it cannot, and the margin
 * before the liveness TTL by which they must be gone: grace = min(--kill-grace, TTL / 3),
 * margin = grace + max(TTL / 10, 100 ms) (the slack covers clock rates and scheduling). */
int64_t node_fence_grace_ms(const struct node *n);
int64_t node_fence_margin_ms(const struct node *n);
/* Deregisters (Offline at once) if Redis is up, bounded by 2 s, then calls done. */
void node_stop(struct node *n, void (*done)(struct node *n));
/* Closes the Redis links and timers; done runs when everything is closed. */
void node_close(struct node *n, void (*done)(struct node *n));

#endif
