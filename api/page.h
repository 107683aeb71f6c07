/* page.h: the Nodes page, GET /nodes, /nodes.js, /nodes.css (page.c; the files themselves are
 * api/nodes.html, nodes.js, nodes.css). */
#ifndef SHOAL_API_PAGE_H
#define SHOAL_API_PAGE_H

#include <stddef.h>

#include "http/http.h"

/* The page's route table (routes.c joins it with the others). */
extern const struct http_route page_routes[];
extern const size_t page_nroutes;

#endif
