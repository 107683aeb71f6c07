/* page.h: the Nodes page, GET /nodes (page.c; the page itself is ping/nodes.html). */
#ifndef SHOAL_PING_PAGE_H
#define SHOAL_PING_PAGE_H

#include <stddef.h>

#include "ping/http.h"

/* The page's route table (routes.c joins it with the others). */
extern const struct http_route page_routes[];
extern const size_t page_nroutes;

#endif
