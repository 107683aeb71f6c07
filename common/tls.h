/* tls.h: TLS to Redis (rediss://) under hiredis. Debian 12's hiredis 0.14 has no TLS layer, so
 * hiredis keeps its reply parser, command formatter and async machinery, and talks plain text to
 * a local socket whose other end is a bridge: a thread that holds the TLS connection (OpenSSL)
 * and copies bytes both ways. One bridge per connection; it ends when either side closes.
 *
 * Verification: the server's certificate must chain to the CA file given (--redis-ca) or, when
 * none is, to the system's store; its name must match the URL's host (an IP address in the URL
 * is checked as one); SNI carries the host name; TLS 1.2 or later only. A client certificate and
 * key (--redis-cert/--redis-key) are sent when given (mutual TLS). Errors come in words: wrong
 * CA, name mismatch, expired certificate, a server that does not speak TLS.
 *
 * - Blocking callers (the CLI, the C client): tls_connect_fd() does the TCP connect and the
 *   handshake in the calling thread, then hands back one end of a socketpair for
 *   redisConnectFd().
 * - The node's event loop: tls_bridge_start() does both in the bridge's thread, then listens on
 *   a unix socket in a private directory (mode 0700) and reports its path on the loop (an
 *   eventfd the loop polls, and atomics: the loop takes no lock); hiredis connects there with redisAsyncConnectUnix(); the bridge accepts one
 *   connection, removes the socket and its directory, and copies. tls_bridge_close() from the
 *   loop ends it at any point. */
#ifndef SHOAL_TLS_H
#define SHOAL_TLS_H

#include <stddef.h>
#include <uv.h>

struct tls_opts {
    const char *host; /* server name: SNI and the name the certificate must carry */
    int port;
    const char *ca;   /* CA file (PEM), or NULL/"" for the system store */
    const char *cert; /* client certificate chain (PEM), or NULL/"" */
    const char *key;  /* its private key (PEM), or NULL/"" */
    int timeout_ms;   /* TCP connect + handshake */
    const char *name; /* --redis-sni: the name sent and checked instead of host (NULL/"": host) */
};

struct tls_fd_bridge;
/* Blocking: connects and completes the handshake, then starts the copying thread. Returns the
 * local end (for redisConnectFd) with *out set, or -1 with a message in err. */
int tls_connect_fd(const struct tls_opts *o, struct tls_fd_bridge **out, char *err, size_t errlen);
/* After the local end was closed: waits for the thread (it ends at that EOF) and frees all. */
void tls_fd_bridge_join(struct tls_fd_bridge *b);

struct tls_bridge;
/* Called once on the loop: path set when hiredis may connect (err NULL), or err says why the
 * TLS connection failed (path NULL). The bridge stays the caller's to close either way. */
typedef void (*tls_ready_cb)(struct tls_bridge *b, const char *path, const char *err, void *arg);

/* Starts a bridge on loop. Returns at once; ready runs later on the loop. Never NULL. */
struct tls_bridge *tls_bridge_start(uv_loop_t *loop, const struct tls_opts *o, tls_ready_cb ready,
                                    void *arg);
/* Ends the bridge (idempotent with respect to the thread; call once): ready will not run after
 * this; its memory goes once the thread and the loop's handle are both done with it. */
void tls_bridge_close(struct tls_bridge *b);

/* Waits (at most timeout_ms) until every bridge thread has ended: at exit, after the loop's
 * connections were closed, so nothing of theirs is left behind. */
void tls_bridges_wait(int timeout_ms);

#endif
