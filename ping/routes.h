/* routes.h: the node's route tables. Each module (ping and healthz here; the API, metrics, the
 * Nodes page, packages in their own files) exports one table; routes_build() joins them in the
 * order of the list in routes.c. Handlers find the node's view in http_site.view and the
 * services (Redis, keys, settings; may be NULL in tests) in http_site.data. */
#ifndef SHOAL_PING_ROUTES_H
#define SHOAL_PING_ROUTES_H

#include <stddef.h>

#include "ping/http.h"

extern const struct http_route ping_routes[];
extern const size_t ping_nroutes;

/* Every module's routes in one array (malloc'd; the server frees it). */
struct http_route *routes_build(size_t *n);

/* Appends the node's JSON as GET /api/octopusservernodes/ping answers it and returns the
 * status (200, 418 or 503) that goes with it. */
int ping_node_json(const struct node_view *v, struct buf *out);

#endif
