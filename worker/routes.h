/* routes.h: the node's HTTP routes, joined from each module's table (ping/, api/, packages/):
 * the one place that decides what a node serves and in which order routes are matched. */
#ifndef SHOAL_WORKER_ROUTES_H
#define SHOAL_WORKER_ROUTES_H

#include <stddef.h>

#include "http/http.h"

/* Every module's routes in one array, in lookup order (malloc'd: the caller frees it once the
 * server that uses it has closed). */
struct http_route *node_routes_build(size_t *n);

#endif
