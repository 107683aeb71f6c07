/* tls.c: the TLS bridge under hiredis (see tls.h). One thread per connection copies bytes
 * between a local socket (hiredis's side, plain RESP) and the TLS connection to Redis. The
 * thread blocks in poll() on both sides (and, for the loop's bridges, a wake pipe that
 * tls_bridge_close() writes); each turn copies one read's worth (at most 16 KiB) one way. */
#define _GNU_SOURCE
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define COPY_BUF 16384

/* Bridge threads still running, for tls_bridges_wait(). */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t live_cv = PTHREAD_COND_INITIALIZER;
static int live;

static void live_add(int d) {
    pthread_mutex_lock(&live_mu);
    live += d;
    if (live == 0) pthread_cond_broadcast(&live_cv);
    pthread_mutex_unlock(&live_mu);
}

/* The end of a bridge thread: OpenSSL's per-thread state, then the count. */
static void thread_done(void) {
    OPENSSL_thread_stop();
    live_add(-1);
}

void tls_bridges_wait(int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&live_mu);
    while (live > 0 && pthread_cond_timedwait(&live_cv, &live_mu, &until) == 0) {}
    pthread_mutex_unlock(&live_mu);
}

/* ---- OpenSSL: context, connect, handshake ---- */

static void ssl_errors(char *out, size_t len) {
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(out, len, "%s", errno ? strerror(errno) : "the connection was closed");
        return;
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(out, len, "%s", buf);
    ERR_clear_error();
}

static SSL_CTX *make_ctx(const struct tls_opts *o, char *err, size_t errlen) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[256];
    if (!ctx) {
        ssl_errors(why, sizeof why);
        snprintf(err, errlen, "TLS: cannot create a context: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = o->ca && *o->ca ? SSL_CTX_load_verify_locations(ctx, o->ca, NULL)
                             : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        ssl_errors(why, sizeof why);
        snprintf(err, errlen, "TLS: cannot load the CA %s%s: %s", o->ca && *o->ca ? "file " : "",
                 o->ca && *o->ca ? o->ca : "store of the system", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    bool cert = o->cert && *o->cert, key = o->key && *o->key;
    if (cert != key) {
        snprintf(err, errlen,
                 "TLS: a client certificate needs its key and a key its certificate "
                 "(--redis-cert and --redis-key together)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (cert && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_check_private_key(ctx) != 1)) {
        ssl_errors(why, sizeof why);
        snprintf(err, errlen, "TLS: cannot use the client certificate %s with key %s: %s", o->cert,
                 o->key, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void set_timeouts(int fd, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A blocking TCP connection to host:port within ms, or -1 with a message. */
static int tcp_connect(const char *host, int port, int ms, char *err, size_t errlen) {
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, p, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EINPROGRESS) {
            struct pollfd pf = {fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (poll(&pf, 1, ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
                soerr != 0) {
                last = soerr ? soerr : ETIMEDOUT;
                close(fd);
                fd = -1;
            }
        } else if (errno != 0 && errno != EINPROGRESS) {
            last = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port,
                 strerror(last ? last : ECONNREFUSED));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_timeouts(fd, ms);
    return fd;
}

static bool is_ip(const char *h) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* TCP connect and handshake. Returns the SSL (its fd inside, blocking, no timeouts left), or
 * NULL with a message in words. */
static SSL *tls_open(const struct tls_opts *o, char *err, size_t errlen) {
    SSL_CTX *ctx = make_ctx(o, err, errlen);
    if (!ctx) return NULL;
    int fd = tcp_connect(o->host, o->port, o->timeout_ms, err, errlen);
    if (fd < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    if (!ssl) {
        snprintf(err, errlen, "TLS: out of memory");
        close(fd);
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    /* --redis-sni: the name to send and check when the URL's host is not the certificate's
     * (an address, a tunnel, a proxy). */
    const char *name = o->name && *o->name ? o->name : o->host;
    if (is_ip(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, name);
    } else {
        SSL_set_tlsext_host_name(ssl, name);
        SSL_set1_host(ssl, name);
    }
    errno = 0;
    int rc = SSL_connect(ssl);
    if (rc != 1) {
        long v = SSL_get_verify_result(ssl);
        char why[256];
        if (v != X509_V_OK) {
            const char *hint =
                v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH
                    ? " (the certificate does not name this host)"
                : v == X509_V_ERR_CERT_HAS_EXPIRED ? " (renew the server's certificate)"
                : v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                        v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                        v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
                    ? " (wrong CA? give the server's CA with --redis-ca)"
                    : "";
            snprintf(err, errlen, "TLS: the certificate of %s:%d is not trusted: %s%s", o->host,
                     o->port, X509_verify_cert_error_string(v), hint);
            ERR_clear_error();
            size_t n = strlen(err);
            if (name != o->host && n < errlen)
                snprintf(err + n, errlen - n, " (the name checked: %s, from --redis-sni)", name);
        } else {
            bool timed_out = errno == EAGAIN || errno == EWOULDBLOCK;
            ssl_errors(why, sizeof why);
            if (timed_out)
                snprintf(why, sizeof why, "no answer to the TLS handshake within %d ms",
                         o->timeout_ms);
            bool plain = timed_out || strstr(why, "wrong version number") ||
                         strstr(why, "packet length") || strstr(why, "record layer failure") ||
                         strstr(why, "unexpected eof");
            snprintf(err, errlen, "TLS handshake with %s:%d failed: %s%s", o->host, o->port, why,
                     plain ? " (does this port speak TLS? a plain Redis port needs redis://)" : "");
        }
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    set_timeouts(fd, 0); /* from now on a quiet link is fine */
    return ssl;
}

static void ssl_close(SSL *ssl) {
    int fd = SSL_get_fd(ssl);
    SSL_free(ssl);
    if (fd >= 0) close(fd);
}

/* Copies both ways until either side closes or wake (>= 0) becomes readable. Both sockets are
 * non-blocking and each direction holds at most one buffer (COPY_BUF) in flight, so neither
 * direction waits on the other: TLS 1.3 servers send session tickets after the handshake, and a
 * blocking SSL_read would wait for application data hiredis has not asked for yet; and a
 * pipelining client (hiredis writes every command before it reads a reply) must have its
 * commands taken while a reply waits for it to read, as a plain TCP connection to Redis does.
 * Each turn: TLS -> hiredis until TLS has nothing more or hiredis's socket is full, hiredis ->
 * TLS until hiredis has nothing more or TLS would block, then poll for what unblocks either. */
static void copy(SSL *ssl, int local, int wake) {
    int net = SSL_get_fd(ssl);
    fcntl(net, F_SETFL, fcntl(net, F_GETFL) | O_NONBLOCK);
    fcntl(local, F_SETFL, fcntl(local, F_GETFL) | O_NONBLOCK);
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    char *in = xmalloc(COPY_BUF), *out = xmalloc(COPY_BUF);
    size_t in_len = 0, in_off = 0, out_len = 0, out_off = 0;
    for (;;) {
        bool want_write = false, want_read = false;
        for (;;) { /* TLS -> hiredis */
            if (in_off < in_len) {
                ssize_t w = send(local, in + in_off, in_len - in_off, MSG_NOSIGNAL);
                if (w > 0) {
                    in_off += (size_t)w;
                    continue;
                }
                if (w < 0 && errno == EINTR) continue;
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* poll POLLOUT */
                goto done;
            }
            in_off = in_len = 0;
            int r = SSL_read(ssl, in, COPY_BUF);
            if (r > 0) {
                in_len = (size_t)r;
                continue;
            }
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                want_read = true;
                break;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                want_write = true;
                break;
            }
            goto done; /* closed by the server, or an error */
        }
        for (;;) { /* hiredis -> TLS */
            if (out_off < out_len) {
                int w = SSL_write(ssl, out + out_off, (int)(out_len - out_off));
                if (w > 0) {
                    out_off += (size_t)w;
                    continue;
                }
                int e = SSL_get_error(ssl, w);
                if (e == SSL_ERROR_WANT_WRITE)
                    want_write = true;
                else if (e == SSL_ERROR_WANT_READ)
                    want_read = true;
                else
                    goto done;
                break;
            }
            out_off = out_len = 0;
            ssize_t r = read(local, out, COPY_BUF);
            if (r > 0) {
                out_len = (size_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* poll POLLIN */
            goto done; /* hiredis closed its side, or an error */
        }
        struct pollfd p[3] = {
            {local, (short)((in_off < in_len ? POLLOUT : 0) | (out_len ? 0 : POLLIN)), 0},
            {net, (short)((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0)), 0},
            {wake, POLLIN, 0}};
        int n = poll(p, wake >= 0 ? 3 : 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (wake >= 0 && p[2].revents)) break;
    }
done:
    free(in);
    free(out);
    ERR_clear_error();
}

/* ---- blocking callers ---- */

struct tls_fd_bridge {
    SSL *ssl;
    int local;
    pthread_t thread;
};

static void *fd_thread(void *arg) {
    struct tls_fd_bridge *b = arg;
    copy(b->ssl, b->local, -1);
    ssl_close(b->ssl);
    b->ssl = NULL;
    close(b->local);
    thread_done();
    return NULL;
}

int tls_connect_fd(const struct tls_opts *o, struct tls_fd_bridge **out, char *err, size_t errlen) {
    SSL *ssl = tls_open(o, err, errlen);
    if (!ssl) return -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "TLS: socketpair: %s", strerror(errno));
        ssl_close(ssl);
        return -1;
    }
    struct tls_fd_bridge *b = xmalloc(sizeof *b);
    b->ssl = ssl;
    b->local = sv[1];
    live_add(1);
    if (pthread_create(&b->thread, NULL, fd_thread, b) != 0) {
        live_add(-1);
        snprintf(err, errlen, "TLS: cannot start the bridge thread");
        ssl_close(ssl);
        close(sv[0]);
        close(sv[1]);
        free(b);
        return -1;
    }
    *out = b;
    return sv[0];
}

void tls_fd_bridge_join(struct tls_fd_bridge *b) {
    if (!b) return;
    pthread_join(b->thread, NULL);
    free(b);
}

/* ---- the loop's bridges ---- */

/* The thread tells the loop through an eventfd the loop polls, and shares only atomics with it:
 * the loop never takes a lock a thread holds, nor waits on one (docs/design.md, "Threads"). */
struct tls_bridge {
    uv_poll_t poll;     /* the loop watches done_fd */
    int done_fd;        /* eventfd: the thread -> the loop, "listening" or "failed"; closed by
                        * the last unref, so the thread never writes to a closed descriptor */
    atomic_int refs;    /* the loop's (until its poll handle closed) and the thread's */
    atomic_bool closed; /* tls_bridge_close was called: no ready, the thread stops */
    atomic_int state;   /* BRIDGE_PENDING, then BRIDGE_LISTENING (path) or BRIDGE_FAILED (err) */
    bool told;          /* ready ran (the loop's only) */
    int wake[2];        /* tls_bridge_close -> the thread */
    tls_ready_cb ready;
    void *arg;
    char host[256], ca[512], cert[512], key[512], name[256];
    struct tls_opts opts;
    char dir[64], path[108]; /* the private directory and the socket in it */
    char err[512];           /* set when the TLS connection failed */
};

enum { BRIDGE_PENDING, BRIDGE_LISTENING, BRIDGE_FAILED };

static void unref(struct tls_bridge *b) {
    if (atomic_fetch_sub(&b->refs, 1) != 1) return;
    if (b->wake[0] >= 0) close(b->wake[0]);
    if (b->wake[1] >= 0) close(b->wake[1]);
    close(b->done_fd);
    free(b);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    struct tls_bridge *b = container_of(h, struct tls_bridge, poll);
    int st = atomic_load_explicit(&b->state, memory_order_acquire);
    if (st == BRIDGE_PENDING) return;
    uv_poll_stop(h);
    if (atomic_load(&b->closed) || b->told) return;
    b->told = true;
    b->ready(b, st == BRIDGE_LISTENING ? b->path : NULL, st == BRIDGE_FAILED ? b->err : NULL,
             b->arg);
}

/* Publishes the outcome (path or err written before) and wakes the loop. */
static void notify(struct tls_bridge *b, int state) {
    atomic_store_explicit(&b->state, state, memory_order_release);
    uint64_t one = 1;
    if (write(b->done_fd, &one, sizeof one) < 0) { /* an eventfd counter cannot overflow here */
    }
}

static bool is_closed(struct tls_bridge *b) { return atomic_load(&b->closed); }

/* A listening unix socket in a new private directory (0700: only this account may connect). */
static int listen_private(struct tls_bridge *b) {
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/shoal-tls-XXXXXX",
             tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(b->dir)) {
        snprintf(b->err, sizeof b->err, "TLS: cannot create a private directory in %s: %s",
                 tmp && *tmp ? tmp : "/tmp", strerror(errno));
        b->dir[0] = '\0';
        return -1;
    }
    snprintf(b->path, sizeof b->path, "%s/s", b->dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", b->path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1) != 0) {
        snprintf(b->err, sizeof b->err, "TLS: cannot listen on %s: %s", b->path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void remove_private(struct tls_bridge *b) {
    if (!b->dir[0]) return;
    unlink(b->path);
    rmdir(b->dir);
    b->dir[0] = '\0';
}

static void *bridge_thread(void *arg) {
    struct tls_bridge *b = arg;
    int lfd = -1, local = -1;
    SSL *ssl = tls_open(&b->opts, b->err, sizeof b->err);
    if (ssl && !is_closed(b)) lfd = listen_private(b);
    notify(b, lfd >= 0 ? BRIDGE_LISTENING : BRIDGE_FAILED);
    if (lfd >= 0) { /* hiredis connects within the connect timeout, or never */
        struct pollfd p[2] = {{lfd, POLLIN, 0}, {b->wake[0], POLLIN, 0}};
        int n;
        do n = poll(p, 2, b->opts.timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n > 0 && (p[0].revents & POLLIN) && !p[1].revents)
            local = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        close(lfd);
        remove_private(b);
    } else {
        remove_private(b);
    }
    if (local >= 0) copy(ssl, local, b->wake[0]);
    if (local >= 0) close(local);
    if (ssl) ssl_close(ssl);
    unref(b);
    thread_done();
    return NULL;
}

static void poll_closed_cb(uv_handle_t *h) {
    unref(container_of((uv_poll_t *)h, struct tls_bridge, poll));
}

struct tls_bridge *tls_bridge_start(uv_loop_t *loop, const struct tls_opts *o, tls_ready_cb ready,
                                    void *arg) {
    struct tls_bridge *b = xcalloc(1, sizeof *b);
    atomic_init(&b->refs, 2);
    atomic_init(&b->closed, false);
    atomic_init(&b->state, BRIDGE_PENDING);
    b->wake[0] = b->wake[1] = -1;
    b->ready = ready;
    b->arg = arg;
    snprintf(b->host, sizeof b->host, "%s", o->host);
    snprintf(b->ca, sizeof b->ca, "%s", o->ca ? o->ca : "");
    snprintf(b->cert, sizeof b->cert, "%s", o->cert ? o->cert : "");
    snprintf(b->key, sizeof b->key, "%s", o->key ? o->key : "");
    snprintf(b->name, sizeof b->name, "%s", o->name ? o->name : "");
    b->opts = (struct tls_opts){b->host, o->port, b->ca, b->cert, b->key, o->timeout_ms, b->name};
    b->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->done_fd < 0 || uv_poll_init(loop, &b->poll, b->done_fd) != 0) abort(); /* no fds */
    uv_poll_start(&b->poll, UV_READABLE, poll_cb);
    pthread_t t;
    live_add(1);
    if (pipe2(b->wake, O_CLOEXEC) != 0 || pthread_create(&t, NULL, bridge_thread, b) != 0) {
        live_add(-1);
        snprintf(b->err, sizeof b->err, "TLS: cannot start the bridge thread");
        atomic_store(&b->refs, 1); /* no thread: only the loop's reference */
        notify(b, BRIDGE_FAILED);
        return b;
    }
    pthread_detach(t);
    return b;
}

void tls_bridge_close(struct tls_bridge *b) {
    atomic_store(&b->closed, true);
    if (b->wake[1] >= 0 && write(b->wake[1], "x", 1) < 0) { /* the thread may be gone */
    }
    uv_close((uv_handle_t *)&b->poll, poll_closed_cb);
}
