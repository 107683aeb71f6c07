/* ping.h: the node's HTTP server (libuv TCP + llhttp), as the worker sees it.
 *
 * The server never includes worker headers: the worker hands it a node_view (borrowed, read on
 * the loop thread for every request) and nothing else. All answers are computed from memory. */
#ifndef SHOAL_PING_H
#define SHOAL_PING_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/node_view.h"
#include "common/rconn.h"

struct ping_config {
    const char *listen;          /* "ADDR:PORT", IPv4 or "[v6]:port"; port 0 picks a free one */
    uint64_t idle_timeout_ms;    /* an idle keep-alive connection is closed after this */
    size_t max_header_bytes;     /* request line + headers above this: 431 and close */
    uint64_t head_timeout_ms;    /* a request head must be in this long after its first byte
                                  * (after accept for the first): else 408/close. 0: the idle
                                  * timeout (not extended by the head's bytes either) */
    uint64_t body_timeout_ms;    /* a request body that sends nothing this long: 408/close.
                                  * 0: the idle timeout */
    unsigned max_conns;          /* connections served at once; more are reset. 0: no cap */
    unsigned max_conns_per_ip;   /* ... from one peer address. 0: no cap */
};

struct api_state;

/* What routes beyond ping and healthz use, all of it common/ types: the worker fills it. */
struct ping_services {
    struct rconn *redis;               /* the node's command connection (may be down) */
    const struct keys *keys;           /* key names of the namespace */
    const struct shoal_config *cfg;    /* settings (API keys, package dir, retention, ...) */
    struct api_state *api;             /* API keys and the /metrics cache (ping/api.h), or NULL:
                                        * keyed routes then answer 503 */
    struct bgq *bg_cpu;                /* threads below the loop: hashing uploads (BGQ_IDLE) */
    struct bgq *bg_io;                 /* ... writing them (nice 19); either NULL: uploads
                                        * then answer 503 */
};

struct ping_server;

/* Binds and listens. view and svc (may be NULL: ping and healthz only) are borrowed until
 * ping_server_close()'s callback has run. Returns 0 and *out, or a negative libuv error (bad
 * address, port in use); after an error, run the loop once before uv_loop_close() (the
 * listener closes asynchronously). */
int ping_server_new(uv_loop_t *loop, const struct ping_config *cfg, const struct node_view *view,
                    const struct ping_services *svc, struct ping_server **out);

/* The TCP port actually bound (useful with port 0). */
int ping_server_port(const struct ping_server *s);

/* Stops listening, closes every connection, then frees the server and calls done(arg) from a
 * close callback. Safe to call once; the server must not be used afterwards. */
void ping_server_close(struct ping_server *s, void (*done)(void *arg), void *arg);

#endif
