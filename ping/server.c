/* server.c: the libuv side of ping. Owns the TCP listener, one struct conn per accepted (or
 * adopted) stream, each conn's idle timer, reading into one buffer shared by the whole server
 * (the core consumes input synchronously, so an idle connection costs well under 1 KiB),
 * writing with flow control (stop reading a peer that does not read its answers), graceful
 * close (shutdown, then drain input briefly so the peer gets the last answer, not a reset),
 * and teardown: a conn is freed only after both its handles' close callbacks have run, and
 * the server only after every conn and the listener.
 *
 * Bulk bodies are read off the loop. When a body's sink takes reads into its own memory off
 * the loop (an upload's body with a Content-Length, raw or multipart), the socket is read by a
 * background thread (the services' bg_cpu queue, SCHED_IDLE) instead of by libuv on the loop:
 * libuv's alloc callback gets an empty buffer, which it answers with UV_ENOBUFS in the read
 * callback; reading stops there, a job reads what the socket holds (up to the sink's buffer,
 * never waiting) and lets the sink work on it there (http_sink.prepare: multipart parsing), and
 * its done callback feeds it to the core on the loop and starts reading again. At 1 GB/s the loop's
 * share of an upload falls from 0.7 to under 0.05 CPU-seconds per GiB, and the copying runs
 * on CPU nothing else wants. While a job reads, the conn's handles stay open (a close is
 * deferred to the job's done callback), so the socket cannot be closed and reused under it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bgq.h"
#include "common/log.h"
#include "common/util.h"
#include "ping/http.h"
#include "ping/ping.h"
#include "ping/routes.h"

#define READ_BUF_SIZE (64 << 10)
/* Off the loop, bytes per recv(): on a kernel without forced preemption (Debian's default is
 * voluntary, cloud kernels often none) a thread in the kernel keeps its CPU until the call
 * returns, whatever its priority; 64 KiB takes ~20 us to copy. */
#define OFF_READ_PIECE (64u << 10)
#define OFF_READ_MAX (8u << 20)   /* asked of the sink per job (it gives what it has room for) */
#define OUT_HIGH (256 << 10)  /* unacknowledged output above which a peer's input is not read */
#define OUT_LOW (64 << 10)    /* ... until it falls back to this */
#define LINGER_MS 2000        /* after our final answer, wait this long at most for EOF */
#define BACKLOG 511

struct ping_server {
    uv_loop_t *loop;                 /* borrowed */
    uv_tcp_t listener;
    struct http_site site;           /* routes, the view, the services, the limits */
    struct http_route *routes;       /* owned: every module's routes (routes_build) */
    uint64_t idle_timeout_ms;        /* 0: never */
    struct conn *conns;              /* every open conn, newest first */
    unsigned nconns;
    int port;
    bool listener_open;              /* until the listener's close callback */
    bool closing;                    /* ping_server_close() called (or new failed) */
    void (*done)(void *arg);         /* called once everything is closed */
    void *done_arg;
    char rbuf[READ_BUF_SIZE];        /* every conn reads here; consumed within read_cb */
};

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;                /* accepted */
        uv_pipe_t pipe;              /* adopted (tests: a socketpair end) */
    } h;
    uv_timer_t timer;                /* idle timeout, then linger timeout */
    struct http_conn http;           /* the protocol state */
    struct ping_server *srv;
    struct conn *prev, *next;        /* srv->conns */
    size_t out_bytes;                /* written but not yet acknowledged by a write callback */
    int open_handles;                /* handles initialised and not yet closed */
    bool has_timer;                  /* timer initialised */
    bool want_read;                  /* the core accepts input */
    bool reading;                    /* uv_read_start in force */
    bool eof;                        /* the peer sent EOF */
    bool lingering;                  /* our side shut down: input is drained and dropped */
    bool closing;                    /* closed, or to be closed once the read job is done */
    bool handles_closing;            /* uv_close called */
    struct off_read {                /* a read off the loop (see the top of the file) */
        struct bgq_job job;
        int fd;
        char *base;                  /* the sink's memory, lent (http_conn_read_buffer) */
        size_t len;                  /* its room; 0: none asked for */
        size_t got;                  /* bytes read into it */
        int err;                     /* 0, or the read's negative errno */
        bool eof;                    /* the peer closed its side */
        bool running;                /* the job is queued or running */
    } off;
};

struct write_req {
    uv_write_t req;
    char *data;                      /* owned: the answer, freed in write_cb */
    size_t len;
};

static void conn_abort(struct conn *c);
static void timer_cb(uv_timer_t *t);
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void maybe_done(struct ping_server *s) {
    if (!s->closing || s->listener_open || s->nconns) return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s->routes);
    free(s);
    if (done) done(arg);
}

/* (Re)starts c's timer: ms from now, timer_cb decides what expiry means. 0 disarms. */
static void arm(struct conn *c, uint64_t ms) {
    if (!c->has_timer || c->closing) return;
    if (ms) uv_timer_start(&c->timer, timer_cb, ms, 0);
    else uv_timer_stop(&c->timer);
}

static struct bgq *off_queue(const struct conn *c) {
    const struct ping_services *svc = c->srv->site.data;
    return svc ? svc->bg_cpu : NULL;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    struct conn *c = h->data;
    char *base;
    size_t len = OFF_READ_MAX;
    if (off_queue(c) && !c->lingering && http_conn_read_buffer(&c->http, true, &base, &len)) {
        c->off.base = base;  /* read_cb gets UV_ENOBUFS: the job reads, not libuv */
        c->off.len = len;
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    len = sizeof c->srv->rbuf;
    if (http_conn_read_buffer(&c->http, false, &base, &len)) {  /* a body where it goes */
        buf->base = base;
        buf->len = len;
        return;
    }
    buf->base = c->srv->rbuf;
    buf->len = sizeof c->srv->rbuf;
}

/* Reads when the core wants input and the peer keeps up with its answers, or while lingering
 * (input then is only drained). */
static void update_reading(struct conn *c) {
    if (c->closing || c->eof || c->off.running) return;
    size_t limit = c->reading ? OUT_HIGH : OUT_LOW;
    bool on = c->lingering || (c->want_read && c->out_bytes <= limit);
    if (on == c->reading) return;
    int err = on ? uv_read_start(&c->h.stream, alloc_cb, read_cb) : uv_read_stop(&c->h.stream);
    if (err) {
        log_debug("http read control failed", " err=%s", uv_strerror(err));
        conn_abort(c);
        return;
    }
    c->reading = on;
}

static void conn_close_cb(uv_handle_t *h) {
    struct conn *c = h->data;
    if (--c->open_handles > 0) return;
    struct ping_server *s = c->srv;
    http_conn_close(&c->http);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    free(c);
    maybe_done(s);
}

static void close_handles(struct conn *c) {
    if (c->handles_closing) return;
    c->handles_closing = true;
    uv_close(&c->h.handle, conn_close_cb);
    if (c->has_timer) uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

/* Closes c at once (unsent output is dropped), or as soon as its read job is done; c is freed
 * in conn_close_cb. Idempotent. */
static void conn_abort(struct conn *c) {
    if (c->closing) return;
    c->closing = true;
    if (!c->off.running) close_handles(c);
}

static void timer_cb(uv_timer_t *t) {
    struct conn *c = t->data;
    bool waiting_on_us = c->off.running ||  /* bytes read, not yet taken in */
                         (!c->http.closed && c->out_bytes == 0 && http_conn_busy(&c->http));
    if (!c->lingering && waiting_on_us) {  /* a handler is still working: not idle */
        arm(c, c->srv->idle_timeout_ms);
        return;
    }
    conn_abort(c);
}

static void off_read_recv(struct off_read *o) {
    while (o->got < o->len) {
        size_t want = o->len - o->got;
        ssize_t n = recv(o->fd, o->base + o->got, want < OFF_READ_PIECE ? want : OFF_READ_PIECE,
                         MSG_DONTWAIT);
        if (n > 0) {
            o->got += (size_t)n;
        } else if (n == 0) {
            o->eof = true;
            return;
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) o->err = -errno;
            return;
        }
    }
}

/* On a bg_cpu thread: what the socket holds, up to the lent room, without waiting; then the
 * sink's own work on those bytes (http_sink.prepare). */
static void off_read_work(struct bgq_job *job) {
    struct conn *c = container_of(job, struct conn, off.job);
    off_read_recv(&c->off);
    http_conn_lent_prepare(&c->http, c->off.base, c->off.got);
}

/* Back on the loop: the bytes to the core, the memory back to the sink, then as read_cb. */
static void off_read_done(struct bgq_job *job) {
    struct conn *c = container_of(job, struct conn, off.job);
    struct off_read *o = &c->off;
    o->running = false;
    o->len = 0;
    if (c->closing) {  /* aborted meanwhile: the bytes do not matter */
        http_conn_lent_back(&c->http);
        close_handles(c);
        return;
    }
    if (o->got) {
        arm(c, c->srv->idle_timeout_ms);
        http_conn_feed(&c->http, o->base, o->got);
    }
    http_conn_lent_back(&c->http);
    if (c->closing) return;
    if (o->err) {
        log_debug("http read failed", " err=%s", uv_strerror(o->err));
        conn_abort(c);
    } else if (o->eof) {
        c->eof = true;
        http_conn_eof(&c->http);  /* may call io_close at once */
    } else {
        update_reading(c);
    }
}

/* The socket is readable and the core lent memory (alloc_cb): a job reads it. */
static void off_read_start(struct conn *c) {
    struct off_read *o = &c->off;
    uv_os_fd_t fd;
    int err = uv_read_stop(&c->h.stream);
    c->reading = false;
    if (!err) err = uv_fileno(&c->h.handle, &fd);
    if (err) {
        o->len = 0;
        http_conn_lent_back(&c->http);
        log_debug("http read control failed", " err=%s", uv_strerror(err));
        conn_abort(c);
        return;
    }
    o->fd = fd;
    o->got = 0;
    o->err = 0;
    o->eof = false;
    o->running = true;
    o->job.work = off_read_work;
    o->job.done = off_read_done;
    bgq_submit(off_queue(c), &o->job);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    struct conn *c = stream->data;
    if (nread == UV_ENOBUFS && c->off.len && !c->closing) {
        off_read_start(c);
        return;
    }
    if (c->off.len) {  /* lent but not used (a read error came instead) */
        c->off.len = 0;
        http_conn_lent_back(&c->http);
    }
    if (nread == 0 || c->closing) return;
    if (nread > 0) {
        if (c->lingering) return;  /* after our last answer: dropped */
        arm(c, c->srv->idle_timeout_ms);
        http_conn_feed(&c->http, buf->base, (size_t)nread);
        return;
    }
    if (nread != UV_EOF || c->lingering) {
        if (nread != UV_EOF) log_debug("http read failed", " err=%s", uv_strerror((int)nread));
        conn_abort(c);
        return;
    }
    uv_read_stop(stream);
    c->reading = false;
    c->eof = true;
    http_conn_eof(&c->http);  /* may call io_close at once */
}

static void write_cb(uv_write_t *req, int status) {
    struct write_req *wr = container_of(req, struct write_req, req);
    struct conn *c = req->handle->data;
    size_t len = wr->len;
    c->out_bytes -= len;
    free(wr->data);
    free(wr);
    if (c->closing) return;
    if (status < 0) {
        log_debug("http write failed", " err=%s", uv_strerror(status));
        conn_abort(c);
        return;
    }
    if (!c->lingering && !c->http.closed) arm(c, c->srv->idle_timeout_ms);
    http_conn_written(&c->http, len);  /* a streamed answer may write its next piece */
    update_reading(c);
}

static void io_write(struct http_conn *hc, char *data, size_t len) {
    struct conn *c = container_of(hc, struct conn, http);
    if (c->closing) {
        free(data);
        return;
    }
    struct write_req *wr = xmalloc(sizeof *wr);
    wr->data = data;
    wr->len = len;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int err = uv_write(&wr->req, &c->h.stream, &b, 1, write_cb);
    if (err) {
        free(data);
        free(wr);
        conn_abort(c);
        return;
    }
    c->out_bytes += len;
    update_reading(c);
}

static void io_read_ctl(struct http_conn *hc, bool on) {
    struct conn *c = container_of(hc, struct conn, http);
    c->want_read = on;
    update_reading(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
    struct conn *c = req->handle->data;
    free(req);
    if (c->closing) return;
    if (status < 0 || c->eof) conn_abort(c);
    /* else lingering: read_cb closes on EOF, timer_cb after LINGER_MS */
}

/* The core's last answer is written: shut down our side once it is flushed, then drain the
 * peer's input until EOF (bounded by LINGER_MS) so that closing does not reset the answer. */
static void io_close(struct http_conn *hc) {
    struct conn *c = container_of(hc, struct conn, http);
    if (c->closing) return;
    uv_shutdown_t *req = xmalloc(sizeof *req);
    int err = uv_shutdown(req, &c->h.stream, shutdown_cb);
    if (err) {
        free(req);
        conn_abort(c);
        return;
    }
    c->want_read = false;
    c->lingering = !c->eof;
    update_reading(c);
    uint64_t idle = c->srv->idle_timeout_ms;
    arm(c, idle && idle < LINGER_MS ? idle : LINGER_MS);
}

static const struct http_conn_io conn_io = {
    .write = io_write,
    .read_ctl = io_read_ctl,
    .close = io_close,
    .acks_writes = true,
};

static struct conn *conn_new(struct ping_server *s) {
    struct conn *c = xcalloc(1, sizeof *c);
    c->srv = s;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    return c;
}

/* Starts serving c, whose stream handle is initialised and connected. */
static int conn_start(struct conn *c) {
    struct ping_server *s = c->srv;
    int err = uv_timer_init(s->loop, &c->timer);
    if (err) return err;
    c->timer.data = c;
    c->has_timer = true;
    c->open_handles++;
    http_conn_init(&c->http, &s->site, &conn_io);
    c->want_read = true;
    arm(c, s->idle_timeout_ms);
    update_reading(c);
    return c->closing ? UV_EIO : 0;
}

static void connection_cb(uv_stream_t *listener, int status) {
    struct ping_server *s = container_of(listener, struct ping_server, listener);
    if (status < 0) {
        log_warn("http accept failed", " err=%s", uv_strerror(status));
        return;
    }
    struct conn *c = conn_new(s);
    int err = uv_tcp_init(s->loop, &c->h.tcp);
    if (err) {  /* no handle to close: undo by hand */
        c->h.handle.data = c;
        c->open_handles = 1;
        c->closing = true;
        conn_close_cb(&c->h.handle);
        return;
    }
    c->h.handle.data = c;
    c->open_handles = 1;
    err = uv_accept(listener, &c->h.stream);
    if (!err) err = uv_tcp_nodelay(&c->h.tcp, 1);
    if (!err) err = conn_start(c);
    if (err) {
        log_debug("http accept failed", " err=%s", uv_strerror(err));
        conn_abort(c);
    }
}

int ping_server_adopt_fd(struct ping_server *s, int fd) {
    struct conn *c = conn_new(s);
    int err = uv_pipe_init(s->loop, &c->h.pipe, 0);
    if (err) {
        close(fd);
        c->h.handle.data = c;
        c->open_handles = 1;
        c->closing = true;
        conn_close_cb(&c->h.handle);
        return err;
    }
    c->h.handle.data = c;
    c->open_handles = 1;
    err = uv_pipe_open(&c->h.pipe, fd);
    if (err) close(fd);  /* not adopted by the handle */
    else err = conn_start(c);
    if (err) conn_abort(c);
    return err;
}

unsigned ping_server_conn_count(const struct ping_server *s) { return s->nconns; }

/* "0.0.0.0:8080", ":8080" (any IPv4), "[::1]:8080". Returns 0 or UV_EINVAL. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss) {
    char host[64];
    const char *port;
    bool v6 = false;
    if (!spec) return UV_EINVAL;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host) return UV_EINVAL;
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        host[end - spec - 1] = '\0';
        port = end + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host) return UV_EINVAL;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        if (!host[0]) strcpy(host, "0.0.0.0");
        port = colon + 1;
    }
    int64_t p;
    if (parse_int64(port, 0, 65535, &p) < 0) return UV_EINVAL;
    memset(ss, 0, sizeof *ss);
    if (v6) return uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss);
    return uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss);
}

static void listener_close_cb(uv_handle_t *h) {
    struct ping_server *s = h->data;
    s->listener_open = false;
    maybe_done(s);
}

static int bound_port(struct ping_server *s) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int err = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    if (err) return err;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int ping_server_new(uv_loop_t *loop, const struct ping_config *cfg, const struct node_view *view,
                    const struct ping_services *svc, struct ping_server **out) {
    struct sockaddr_storage addr;
    int err = parse_listen(cfg->listen, &addr);
    if (err) return err;
    struct ping_server *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    http_site_defaults(&s->site);
    s->routes = routes_build(&s->site.nroutes);
    s->site.routes = s->routes;
    s->site.view = view;
    s->site.data = (void *)svc;
    s->site.loop = loop;
    if (cfg->max_header_bytes) s->site.max_header_bytes = cfg->max_header_bytes;
    s->idle_timeout_ms = cfg->idle_timeout_ms;
    err = uv_tcp_init(loop, &s->listener);
    if (err) {
        free(s->routes);
        free(s);
        return err;
    }
    s->listener.data = s;
    s->listener_open = true;
    err = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (!err) err = uv_listen((uv_stream_t *)&s->listener, BACKLOG, connection_cb);
    if (!err && (err = bound_port(s)) >= 0) {
        s->port = err;
        err = 0;
    }
    if (err) {  /* freed by the listener's close callback, on the caller's next loop turn */
        s->closing = true;
        uv_close((uv_handle_t *)&s->listener, listener_close_cb);
        return err;
    }
    log_info("http listening", " listen=%s port=%d", cfg->listen, s->port);
    *out = s;
    return 0;
}

int ping_server_port(const struct ping_server *s) { return s->port; }

void ping_server_close(struct ping_server *s, void (*done)(void *arg), void *arg) {
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    for (struct conn *c = s->conns; c; c = c->next) conn_abort(c);
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
}
