/* ping.h: what a load balancer and a kubelet call: GET /api/octopusservernodes/ping (200
 * online, 418 draining, 503 unavailable, with the node's JSON) and GET /healthz (200 while the
 * loop runs). Both answer from the node's view in memory, never from Redis, so they cost
 * microseconds whatever Redis and the tasks are doing. Handlers find the view in the site's
 * context (struct node_services, common/services.h). */
#ifndef SHOAL_PING_PING_H
#define SHOAL_PING_PING_H

#include <stddef.h>

#include "common/buf.h"
#include "common/node_view.h"
#include "http/http.h"

extern const struct http_route ping_routes[];
extern const size_t ping_nroutes;

/* Appends the node's JSON as GET /api/octopusservernodes/ping answers it and returns the
 * status (200, 418 or 503) that goes with it. */
int ping_node_json(const struct node_view *v, struct buf *out);

#endif
