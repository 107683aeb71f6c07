/* routes.h: ping's route table, the rows the node's HTTP server dispatches on. The handlers
 * expect http_site.view to be the node's view; they answer from memory, at once. */
#ifndef SHOAL_PING_ROUTES_H
#define SHOAL_PING_ROUTES_H

#include <stddef.h>

#include "ping/http.h"

extern const struct http_route ping_routes[];
extern const size_t ping_nroutes;

/* Appends the node's JSON as GET /api/octopusservernodes/ping answers it and returns the
 * status (200, 418 or 503) that goes with it. */
int ping_node_json(const struct node_view *v, struct buf *out);

#endif
