/* node_view.c: the one place that turns a node's in-memory state into ping's verdict. */
#include "common/node_view.h"

#include <stddef.h>

const double node_latency_bounds[NODE_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 10, 60,
};

enum node_health node_view_health(const struct node_view *v, const char **why) {
    const char *r;
    enum node_health h;
    if (!v->redis_ok) {
        h = NODE_UNAVAILABLE;
        r = "redis unreachable";
    } else if (!v->registered) {
        h = NODE_UNAVAILABLE;
        r = "not registered";
    } else if (v->stopping) {
        h = NODE_DRAINING;
        r = "shutting down";
    } else if (v->drain) {
        h = NODE_DRAINING;
        r = "draining";
    } else {
        h = NODE_ONLINE;
        r = "online";
    }
    if (why) *why = r;
    return h;
}
