/* page.c: the Nodes page, Octopus's Nodes tab for shoal. GET /nodes answers api/nodes.html,
 * GET /nodes.js and /nodes.css its script and style, each embedded in the binary at build time
 * (cmake/embed_file.cmake), so page and binary cannot drift. The routes are open: the page
 * holds no data. It asks for the API key in the browser and sends it as X-Octopus-ApiKey on its
 * calls to the keyed API (/api/octopusservernodes/..., /api/tasks), which does the checking. No
 * Redis, no file I/O: one copy from memory. */
#include "api/page.h"

#include <string.h>

#include "common/util.h"

/* Generated (nodes_*_gen.c): the bytes of api/nodes.*, NUL-terminated, and their ETags. */
extern const char page_nodes_html[], page_nodes_html_etag[];
extern const size_t page_nodes_html_len;
extern const char page_nodes_js[], page_nodes_js_etag[];
extern const size_t page_nodes_js_len;
extern const char page_nodes_css[], page_nodes_css_etag[];
extern const size_t page_nodes_css_len;

/* The page loads nothing from elsewhere and runs only its own script file, styled by its own
 * style file (no inline script or style: an injected one would not run); it may talk to this
 * node only. */
#define PAGE_CSP                                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; "                                    \
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "                     \
    "frame-ancestors 'none'"

/* GET|HEAD /nodes. no-store: a new binary's page shows at the next load. */
static void nodes_cb(struct http_exchange *ex) {
    http_add_header(ex, "Content-Security-Policy", PAGE_CSP);
    http_add_header(ex, "Referrer-Policy", "no-referrer");
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond(ex, 200, "text/html; charset=utf-8", page_nodes_html, page_nodes_html_len);
}

/* A file the page loads: cached, but revalidated at every use (no-cache), by its ETag (a hash
 * of its bytes): 304 while the binary is the same, the new file as soon as it is not. */
static void asset(struct http_exchange *ex, const char *type, const char *data, size_t len,
                  const char *etag) {
    const char *inm = http_header(ex, "if-none-match");
    http_add_header(ex, "Cache-Control", "no-cache");
    http_add_header(ex, "ETag", etag);
    if (inm && (strstr(inm, etag) || strcmp(inm, "*") == 0)) {
        http_respond(ex, 304, NULL, NULL, 0);
        return;
    }
    http_respond(ex, 200, type, data, len);
}

/* GET|HEAD /nodes.js */
static void script_cb(struct http_exchange *ex) {
    asset(ex, "text/javascript; charset=utf-8", page_nodes_js, page_nodes_js_len,
          page_nodes_js_etag);
}

/* GET|HEAD /nodes.css */
static void style_cb(struct http_exchange *ex) {
    asset(ex, "text/css; charset=utf-8", page_nodes_css, page_nodes_css_len, page_nodes_css_etag);
}

const struct http_route page_routes[] = {
    {HTTP_GET, "/nodes", nodes_cb, HTTP_BODY_NONE, NULL},
    {HTTP_GET, "/nodes.js", script_cb, HTTP_BODY_NONE, NULL},
    {HTTP_GET, "/nodes.css", style_cb, HTTP_BODY_NONE, NULL},
};
const size_t page_nroutes = ARRAY_SIZE(page_routes);
