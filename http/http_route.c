/* http_route.c: from a request target to a route row. Owns path normalisation (absolute-form
 * targets, doubled and trailing slashes, the query split off) and pattern matching with
 * "{name}" segments. Tables are scanned in order: a handful of rows, no allocation beyond the
 * exchange's own head buffer. Percent-decoding is left to handlers (ids need none today), but
 * a target holding %00 is refused here, for every route: decoded, it would end a C string
 * early and the rest would be dropped without a word. */
#define _GNU_SOURCE /* memmem */
#include <string.h>
#include <strings.h>

#include "http/http_int.h"

/* Appends the normalised path and the query of the url at offset 0 of ex->head. */
static void normalise(struct http_exchange *ex) {
    struct buf *h = &ex->head;
    size_t url_len = ex->url_end ? ex->url_end - 1 : 0;
    buf_reserve(h, url_len + 3); /* path and query together fit: pointers below stay put */
    const char *u = h->data;
    const char *end = u + url_len;
    if (url_len >= 7 && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0)) {
        u = memchr(u, ':', url_len) + 3; /* skip the authority: the path starts at its '/' */
        while (u < end && *u != '/' && *u != '?' && *u != '#') u++;
    }
    const char *q = u;
    while (q < end && *q != '?' && *q != '#') q++;

    ex->path_off = h->len;
    if (u == q) buf_append(h, "/", 1); /* "http://host" or "?x": the root */
    for (const char *s = u; s < q; s++) {
        if (*s == '/' && h->len > ex->path_off && h->data[h->len - 1] == '/') continue;
        buf_append(h, s, 1);
    }
    if (h->len - ex->path_off > 1 && h->data[h->len - 1] == '/') h->len--;
    buf_append(h, "", 1);

    ex->query_off = h->len;
    if (q < end && *q == '?') {
        const char *f = ++q;
        while (f < end && *f != '#') f++;
        buf_append(h, q, (size_t)(f - q));
    }
    buf_append(h, "", 1);
}

/* Matches a normalised path against a pattern; records "{name}" segments as [offset, len]
 * pairs relative to path. Returns the number of captures, or -1 when it does not match. */
static int match(const char *pat, const char *path, size_t cap[][2]) {
    const char *s = path;
    int n = 0;
    while (*pat) {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            size_t len = strcspn(s, "/");
            if (!close || len == 0 || n == HTTP_MAX_PARAMS) return -1;
            cap[n][0] = (size_t)(s - path);
            cap[n][1] = len;
            n++;
            pat = close + 1;
            s += len;
        } else if (*pat++ != *s++) {
            return -1; /* a mismatch stops here: s never walks past its NUL */
        }
    }
    return *s ? -1 : n;
}

/* Collects the methods a path allows, in table order, HEAD after GET, for a 405's Allow. */
static void allow_add(struct buf *allow, uint64_t *seen, llhttp_method_t m) {
    if (m >= 64 || (*seen & (UINT64_C(1) << m))) return;
    *seen |= UINT64_C(1) << m;
    if (allow->len) buf_puts(allow, ", ");
    buf_puts(allow, llhttp_method_name(m));
    if (m == HTTP_GET) allow_add(allow, seen, HTTP_HEAD);
}

void http_route_lookup(const struct http_site *site, struct http_exchange *ex) {
    normalise(ex);
    size_t url_len = ex->url_end ? ex->url_end - 1 : 0;
    if (url_len >= 3 && memmem(ex->head.data, url_len, "%00", 3)) {
        ex->status = 400;
        ex->why = "the request target holds %00 (a NUL byte), which no path or parameter may hold";
        return;
    }
    const char *path = ex->head.data + ex->path_off;
    llhttp_method_t want = ex->method == HTTP_HEAD ? HTTP_GET : ex->method;
    struct buf allow;
    uint64_t seen = 0;
    size_t cap[HTTP_MAX_PARAMS][2];
    buf_init(&allow);
    /* The most specific routes win: a literal path ("/api/octopusservernodes/ping") shadows a
     * pattern that also matches it ("/api/octopusservernodes/{id}"), for every method. */
    int fewest = -1;
    for (size_t i = 0; i < site->nroutes; i++) {
        int n = match(site->routes[i].pattern, path, cap);
        if (n >= 0 && (fewest < 0 || n < fewest)) fewest = n;
    }
    for (size_t i = 0; i < site->nroutes && fewest >= 0; i++) {
        const struct http_route *r = &site->routes[i];
        int n = match(r->pattern, path, cap);
        if (n != fewest) continue;
        if (r->method != want) {
            allow_add(&allow, &seen, r->method);
            continue;
        }
        ex->route = r;
        ex->nparams = (unsigned)n;
        size_t base = ex->path_off;
        for (int k = 0; k < n; k++) {
            ex->param_off[k] = ex->head.len;
            buf_reserve(&ex->head, cap[k][1] + 1); /* so the source below cannot move */
            buf_append(&ex->head, ex->head.data + base + cap[k][0], cap[k][1]);
            buf_append(&ex->head, "", 1);
        }
        buf_free(&allow);
        return;
    }
    ex->status = allow.len ? 405 : 404;
    if (allow.len) http_add_header(ex, "Allow", allow.data);
    buf_free(&allow);
}
