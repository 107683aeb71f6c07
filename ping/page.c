/* page.c: the Nodes page, Octopus's Nodes tab for shoal. GET /nodes answers ping/nodes.html,
 * embedded in the binary at build time (cmake/embed_file.cmake), so page and binary cannot
 * drift. The route is open: the page holds no data. It asks for the API key in the browser and
 * sends it as X-Octopus-ApiKey on its calls to the keyed API (/api/octopusservernodes/...,
 * /api/tasks), which does the checking. No Redis, no file I/O: one copy from memory. */
#include "ping/page.h"

#include "common/util.h"

/* Generated (nodes_page_gen.c): the bytes of ping/nodes.html, NUL-terminated. */
extern const char page_nodes_html[];
extern const size_t page_nodes_html_len;

/* The page loads nothing from elsewhere and runs only its own inline script and style; it may
 * talk to this node only. no-store: a new binary's page shows at the next load. */
#define PAGE_CSP "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " \
                 "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "   \
                 "frame-ancestors 'none'"

/* GET|HEAD /nodes */
static void nodes_cb(struct http_exchange *ex) {
    http_add_header(ex, "Content-Security-Policy", PAGE_CSP);
    http_add_header(ex, "Referrer-Policy", "no-referrer");
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond(ex, 200, "text/html; charset=utf-8", page_nodes_html, page_nodes_html_len);
}

const struct http_route page_routes[] = {
    {HTTP_GET, "/nodes", nodes_cb, HTTP_BODY_NONE, NULL},
};
const size_t page_nroutes = ARRAY_SIZE(page_routes);
