/* server.h: the HTTP/1.1 server on libuv: a TCP listener and one connection core
 * (http/http.h) per accepted stream, with the deadlines and caps that keep a node answering
 * whatever its clients do (see the top of server.c).
 *
 * It knows routes and limits, nothing of nodes: the caller (the worker, a test) hands it a
 * site (a route table, the handlers' context, the header lines every answer carries) and a
 * config. */
#ifndef SHOAL_HTTP_SERVER_H
#define SHOAL_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/http.h"

struct bgq;

struct http_server_config {
    const char *listen;        /* "ADDR:PORT", IPv4 or "[v6]:port"; port 0 picks a free one */
    uint64_t idle_timeout_ms;  /* an idle keep-alive connection is closed after this */
    size_t max_header_bytes;   /* request line + headers above this: 431 and close */
    uint64_t head_timeout_ms;  /* a request head must be in this long after its first byte
                                  * (after accept for the first): else 408/close. 0: the idle
                                  * timeout (not extended by the head's bytes either) */
    uint64_t body_timeout_ms;  /* a request body that sends nothing this long: 408/close.
                                  * 0: the idle timeout */
    unsigned max_conns;        /* connections served at once; more are reset. 0: no cap */
    unsigned max_conns_per_ip; /* ... from one peer address. 0: no cap */
    struct bgq *reader;        /* threads that read request bodies of known length off the
                                  * loop (borrowed), or NULL: the loop reads them */
};

struct http_server;

/* Binds and listens. site is copied (its limits left at 0 take http_site_defaults()'s, and
 * cfg's max_header_bytes wins when set); what it points to (routes, data, headers) and cfg's
 * reader are borrowed until http_server_close()'s callback has run. Returns 0 and *out, or a
 * negative libuv error (bad address, port in use); after an error, run the loop once before
 * uv_loop_close() (the listener closes asynchronously). */
int http_server_new(uv_loop_t *loop, const struct http_server_config *cfg,
                    const struct http_site *site, struct http_server **out);

/* The TCP port actually bound (useful with port 0). */
int http_server_port(const struct http_server *s);

/* Stops listening, closes every connection, then frees the server and calls done(arg) from a
 * close callback. Safe to call once; the server must not be used afterwards. */
void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg);

/* For tests: serves an already connected stream socket fd (a socketpair end, say) as if
 * accepted. Takes ownership of fd. Returns 0 or a negative libuv error (fd then closed). */
int http_server_adopt_fd(struct http_server *s, int fd);

/* Connections open now (accepted or adopted, not yet closed). */
unsigned http_server_conn_count(const struct http_server *s);

#endif
