/* node_info.h: a node as Redis records it (list_nodes.lua), and its status as shown everywhere:
 * Running (alive, not draining), Draining (drain on, tasks running), Drained (drain on, idle),
 * Offline (liveness TTL expired, or shut down cleanly). */
#ifndef SHOAL_NODE_INFO_H
#define SHOAL_NODE_INFO_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

struct node_info {
    char name[65];
    char instance[33];
    char version[32];
    char host[128];
    char listen[64];
    char queues[256];
    char cap_by[16]; /* "config" or "operator" */
    bool alive;      /* liveness key present */
    int64_t ttl_ms;  /* its remaining TTL, or -2 */
    int64_t running; /* tasks recorded as running on the node */
    int64_t cap;
    bool drain;
    int64_t last_seen_ms;
    int64_t started_ms;
    int64_t offline_at_ms; /* clean shutdown time, 0 if none */
    int64_t pid;
};

enum node_status { NODE_RUNNING, NODE_DRAINING_STATUS, NODE_DRAINED, NODE_OFFLINE };

/* Parses list_nodes.lua's reply. Returns the count and *out (free() it), or -1 when the reply
 * has another shape. */
int node_info_parse_list(const redisReply *reply, struct node_info **out);

enum node_status node_info_status(const struct node_info *n);
const char *node_status_name(enum node_status s); /* "Running", "Draining", ... */

#endif
