/* node_view.h: what a running node knows about itself, in memory, on the loop thread.
 *
 * The worker owns and updates one node_view; the HTTP modules (ping/, api/) borrow it read-only and
 * answers ping from it without a Redis round trip. Both run on the same libuv loop thread, so
 * no locking: a field is always read whole between two loop iterations. */
#ifndef SHOAL_NODE_VIEW_H
#define SHOAL_NODE_VIEW_H

#include <stdbool.h>
#include <stdint.h>

/* Counters the worker keeps for /metrics (loop thread only). */
#define NODE_LATENCY_BUCKETS 12
extern const double node_latency_bounds[NODE_LATENCY_BUCKETS]; /* seconds, ascending */
struct node_metrics {
    uint64_t claimed;     /* tasks claimed by this node */
    uint64_t pushed;      /* of those, claimed for it by an enqueue (push) */
    uint64_t finished[5]; /* by outcome: Success, Failed, TimedOut, Canceled,
                                            * Interrupted (requeued at shutdown) */
    uint64_t latency_counts[NODE_LATENCY_BUCKETS + 1]; /* enqueue-to-start, last = +Inf */
    double latency_sum;                                /* seconds */
    uint64_t latency_n;
    uint64_t reports_refused; /* results refused: lease lost */
    uint64_t fenced;          /* runs stopped because the node could not prove its liveness */
};

struct node_view {
    char name[65];            /* node name, validated by node_name_valid() */
    char instance[33];        /* this process's random instance id (hex) */
    const char *version;      /* shoal version string, static */
    int64_t last_seen_ms;     /* wall ms of the last heartbeat Redis accepted; 0 = never */
    int64_t cap;              /* task cap as last read from Redis (or the configured one before) */
    int64_t running;          /* tasks running on this node now */
    bool drain;               /* operator drain, as last read from Redis (persists) */
    bool stopping;            /* SIGTERM/SIGINT received: draining to exit (not persisted) */
    bool registered;          /* Redis holds our liveness key with our instance id */
    bool redis_ok;            /* command connection up and last heartbeat answered in time */
    uint64_t beat_ok_mono_ms; /* monotonic ms of the last heartbeat Redis accepted */
    struct node_metrics metrics;
};

enum node_health {
    NODE_ONLINE,      /* ping 200 */
    NODE_DRAINING,    /* ping 418: operator drain or shutting down */
    NODE_UNAVAILABLE, /* ping 503: Redis unreachable or not registered */
};

/* Classifies the view for ping. *why (may be NULL) gets a short reason for logs and bodies. */
enum node_health node_view_health(const struct node_view *v, const char **why);

#endif
