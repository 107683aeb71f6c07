/* server.c: the libuv side of the HTTP server. Owns the TCP listener, one struct conn per
 * accepted (or adopted) stream, each conn's timer (its deadlines, below), reading into one
 * buffer shared by the whole server (the core consumes input synchronously, so an idle
 * connection costs well under 1 KiB), writing with flow control (stop reading a peer that does
 * not read its answers), graceful close (shutdown, then drain input briefly so the peer gets
 * the last answer, not a reset), and teardown: a conn is freed only after both its handles'
 * close callbacks have run, and the server only after every conn and the listener.
 *
 * Bulk bodies are read off the loop. When a body's sink takes reads into its own memory off
 * the loop (an upload's body with a Content-Length, raw or multipart), the socket is read by a
 * background thread (the config's reader queue, SCHED_IDLE) instead of by libuv on the loop:
 * libuv's alloc callback gets an empty buffer, which it answers with UV_ENOBUFS in the read
 * callback; reading stops there, a job reads what the socket holds (up to the sink's buffer,
 * never waiting) and lets the sink work on it there (http_sink.prepare: multipart parsing), and
 * its done callback feeds it to the core on the loop and starts reading again. The loop then
 * only takes note of an upload's bytes (docs/benchmarks.md, "What shaped the upload path"), and
 * the copying runs on CPU nothing else wants. While a job reads, the conn's handles stay open
 * (a close is deferred to the job's done callback), so the socket cannot be closed and reused
 * under it.
 *
 * Deadlines (one timer per conn; conn_update() sets it from what the core waits for):
 *   fresh      accepted, no byte yet: --http-head-timeout from accept, then closed silently
 *   head       a request head begun: --http-head-timeout from its first byte (from accept for
 *              the first request), never extended by its bytes; then 408 and close
 *   body       a request body being read: --http-body-timeout since its last byte; then 408
 *              (a streamed body: its handler answers) and close
 *   idle       keep-alive, between requests: --http-idle-timeout since the last answer
 *   writing    an answer not yet taken by the peer: --http-idle-timeout since the last write
 *              completed (reads do not extend it)
 *   us         a handler works, answers pause parsing, a sink pushes back (the disk, the
 *              hashing thread), a read runs off the loop: no deadline (the timer only looks
 *              again every idle timeout, in case a transition went unnoticed)
 *   linger     after the last answer: LINGER_MS at most
 * Caps: a connection over --http-max-connections, or over --http-max-connections-per-ip for
 * its peer's address, is accepted and reset at once (no answer), and counted (struct
 * http_stats, shown by /metrics). When accept() itself fails for want of descriptors, libuv
 * closes its reserve descriptor, accepts and closes what is queued, and reopens it
 * (uv__emfile_trick), so the listener never spins on a full queue; we count and log it. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bgq.h"
#include "common/log.h"
#include "common/util.h"
#include "http/http.h"
#include "http/server.h"

#define READ_BUF_SIZE (64 << 10)
/* Off the loop, bytes per recv(): on a kernel without forced preemption (Debian's default is
 * voluntary, cloud kernels often none) a thread in the kernel keeps its CPU until the call
 * returns, whatever its priority; 64 KiB takes ~20 us to copy. */
#define OFF_READ_PIECE (64u << 10)
#define OFF_READ_MAX (8u << 20) /* asked of the sink per job (it gives what it has room for) */
#define OUT_HIGH (256 << 10)    /* unacknowledged output above which a peer's input is not read */
#define OUT_LOW (64 << 10)      /* ... until it falls back to this */
#define LINGER_MS 2000          /* after our final answer, wait this long at most for EOF */
#define BACKLOG 511
#define IP_BUCKETS 1024     /* per-address connection counts (chained) */
#define ACCEPT_LOG_MS 10000 /* accept failures are logged at most this often */

/* How many connections one peer address holds (only with a per-address cap). */
struct ip_count {
    struct ip_count *next;  /* the bucket's chain */
    unsigned char addr[16]; /* IPv4 in the first 4 bytes, or IPv6 */
    unsigned char len;      /* 4 or 16 */
    unsigned n;             /* open connections from it */
};

/* Where a conn is in its life. Only OPEN has phases (below) and deadlines.
 *   OPEN             serving: the core reads and answers
 *   LINGERING        the core's last answer is written and our side shut down before the
 *                    peer's EOF: its input is drained and dropped until EOF or LINGER_MS
 *   CLOSING          aborted while a read job runs off the loop: the handles are closed when
 *                    it is done (the socket must not be closed and reused under it)
 *   HANDLES_CLOSING  uv_close() called: freed in conn_close_cb once both handles are closed
 * Transitions (asserted in set_state):
 *   OPEN      -> LINGERING        io_close(), the peer's EOF not seen yet (after EOF the shut
 *                                 down conn stays OPEN until shutdown_cb aborts it)
 *   OPEN, LINGERING -> CLOSING    conn_abort() while off.running
 *   OPEN, LINGERING, CLOSING -> HANDLES_CLOSING
 *                                 close_handles() (conn_abort, or the read job's end),
 *                                 conn_refuse(), a handle that failed to initialise
 * The flags beside it are not phases of this life: eof (the peer's side), reading and
 * want_read (read control), has_timer and served (set up once), off.running (a job). */
enum conn_state { CONN_OPEN, CONN_LINGERING, CONN_CLOSING, CONN_HANDLES_CLOSING };

/* What a conn waits for, and so which deadline runs (see the top of the file). */
enum conn_phase { PH_NEW, PH_FRESH, PH_IDLE, PH_HEAD, PH_BODY, PH_WRITING, PH_US, PH_DONE };
/* What just happened, for conn_update(): a read extends a body's deadline, a completed write
 * a slow reader's. */
enum conn_event { EV_NONE, EV_READ, EV_WROTE };

struct http_server {
    uv_loop_t *loop; /* borrowed */
    uv_tcp_t listener;
    struct http_site site;            /* routes, handlers' context, headers, limits (a copy) */
    struct bgq *reader;               /* borrowed: reads bodies off the loop, or NULL */
    uint64_t idle_timeout_ms;         /* 0: never */
    uint64_t head_timeout_ms;         /* 0: never (with no idle timeout either) */
    uint64_t body_timeout_ms;         /* 0: never (likewise) */
    unsigned max_conns;               /* connections served at once; 0: no cap */
    unsigned max_conns_per_ip;        /* ... from one peer address; 0: no cap */
    struct http_stats stats;          /* site.stats points here; stats.open counts served conns */
    uint64_t accept_logged_ms;        /* loop time of the last accept failure logged */
    struct ip_count *ips[IP_BUCKETS]; /* with max_conns_per_ip: counts per peer address */
    struct conn *conns;               /* every open conn, newest first (refused ones too) */
    unsigned nconns;
    int port;
    bool listener_open;      /* until the listener's close callback */
    bool closing;            /* http_server_close() called (or new failed) */
    void (*done)(void *arg); /* called once everything is closed */
    void *done_arg;
    char rbuf[READ_BUF_SIZE]; /* every conn reads here; consumed within read_cb */
};

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;   /* accepted */
        uv_pipe_t pipe; /* adopted (tests: a socketpair end) */
    } h;
    uv_timer_t timer;      /* idle timeout, then linger timeout */
    struct http_conn http; /* the protocol state */
    struct http_server *srv;
    struct conn *prev, *next; /* srv->conns */
    size_t out_bytes;         /* written but not yet acknowledged by a write callback */
    int open_handles;         /* handles initialised and not yet closed */
    bool has_timer;           /* timer initialised */
    bool want_read;           /* the core accepts input */
    bool reading;             /* uv_read_start in force */
    bool eof;                 /* the peer sent EOF */
    enum conn_state state;    /* OPEN ... HANDLES_CLOSING (see enum conn_state) */
    bool served;              /* counted in stats.open (not a refused connection) */
    enum conn_phase phase;    /* what the timer is set for */
    uint64_t deadline;        /* loop ms when the phase's time is up; 0: none */
    uint64_t accepted_ms;     /* loop ms at accept: a fresh conn's head deadline */
    uint64_t head_req;        /* the request (http.requests) head_deadline is for */
    uint64_t head_deadline;   /* ... from its first byte (from accept for the first) */
    struct ip_count *ip;      /* its address's count, or NULL */
    struct off_read {         /* a read off the loop (see the top of the file) */
        struct bgq_job job;
        int fd;
        char *base;   /* the sink's memory, lent (http_conn_read_buffer) */
        size_t len;   /* its room; 0: none asked for */
        size_t got;   /* bytes read into it */
        int err;      /* 0, or the read's negative errno */
        bool eof;     /* the peer closed its side */
        bool running; /* the job is queued or running */
    } off;
};

struct write_req {
    uv_write_t req;
    char *data; /* owned: the answer, freed in write_cb */
    size_t len;
};

static void conn_abort(struct conn *c);
static void conn_update(struct conn *c, enum conn_event ev);
static void timer_cb(uv_timer_t *t);
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* The states each state may be entered from (see enum conn_state). */
static const unsigned conn_entered_from[] = {
    [CONN_OPEN] = 0,
    [CONN_LINGERING] = 1u << CONN_OPEN,
    [CONN_CLOSING] = 1u << CONN_OPEN | 1u << CONN_LINGERING,
    [CONN_HANDLES_CLOSING] = 1u << CONN_OPEN | 1u << CONN_LINGERING | 1u << CONN_CLOSING,
};

static void set_state(struct conn *c, enum conn_state to) {
    assert(conn_entered_from[to] & (1u << c->state));
    (void)conn_entered_from; /* read by the assert only */
    c->state = to;
}

/* Closed, or to be closed once the read job is done: nothing more is done with it. */
static bool closing(const struct conn *c) { return c->state >= CONN_CLOSING; }

static void maybe_done(struct http_server *s) {
    if (!s->closing || s->listener_open || s->nconns) return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s);
    if (done) done(arg);
}

/* (Re)starts c's timer: ms from now, timer_cb decides what expiry means. 0 disarms. */
static void arm(struct conn *c, uint64_t ms) {
    if (!c->has_timer || closing(c)) return;
    if (ms)
        uv_timer_start(&c->timer, timer_cb, ms, 0);
    else
        uv_timer_stop(&c->timer);
}

static struct bgq *off_queue(const struct conn *c) { return c->srv->reader; }

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    struct conn *c = h->data;
    char *base;
    size_t len = OFF_READ_MAX;
    if (off_queue(c) && c->state == CONN_OPEN &&
        http_conn_read_buffer(&c->http, true, &base, &len)) {
        c->off.base = base; /* read_cb gets UV_ENOBUFS: the job reads, not libuv */
        c->off.len = len;
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    len = sizeof c->srv->rbuf;
    if (http_conn_read_buffer(&c->http, false, &base, &len)) { /* a body where it goes */
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
    if (closing(c) || c->eof || c->off.running) return;
    size_t limit = c->reading ? OUT_HIGH : OUT_LOW;
    bool on = c->state == CONN_LINGERING || (c->want_read && c->out_bytes <= limit);
    if (on == c->reading) return;
    int err = on ? uv_read_start(&c->h.stream, alloc_cb, read_cb) : uv_read_stop(&c->h.stream);
    if (err) {
        log_debug("http read control failed", " err=%s", uv_strerror(err));
        conn_abort(c);
        return;
    }
    c->reading = on;
}

/* ---- connections per peer address ---- */

static unsigned ip_hash(const unsigned char *a, unsigned len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (unsigned i = 0; i < len; i++) h = (h ^ a[i]) * 16777619u;
    return h % IP_BUCKETS;
}

/* The peer address of an accepted tcp handle into a (4 or 16 bytes); 0 when unknown. */
static unsigned peer_addr(uv_tcp_t *tcp, unsigned char a[16]) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
    if (ss.ss_family == AF_INET) {
        memcpy(a, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        return 4;
    }
    if (ss.ss_family == AF_INET6) {
        memcpy(a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

/* The peer's address as text into out ("" when unknown: a unix socket, an error). */
static void peer_name(uv_tcp_t *tcp, char *out, size_t len) {
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    out[0] = '\0';
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl) != 0) return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, out, len);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, out, len);
}

/* Counts one more connection from the address a; NULL (and nothing counted) when that
 * address already holds the cap. */
static struct ip_count *ip_take(struct http_server *s, const unsigned char *a, unsigned len) {
    struct ip_count **b = &s->ips[ip_hash(a, len)], *e;
    for (e = *b; e; e = e->next)
        if (e->len == len && memcmp(e->addr, a, len) == 0) break;
    if (e && e->n >= s->max_conns_per_ip) return NULL;
    if (!e) {
        e = xcalloc(1, sizeof *e);
        memcpy(e->addr, a, len);
        e->len = (unsigned char)len;
        e->next = *b;
        *b = e;
    }
    e->n++;
    return e;
}

static void ip_release(struct http_server *s, struct ip_count *e) {
    if (!e || --e->n > 0) return;
    for (struct ip_count **p = &s->ips[ip_hash(e->addr, e->len)]; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            free(e);
            return;
        }
}

static void conn_close_cb(uv_handle_t *h) {
    struct conn *c = h->data;
    if (--c->open_handles > 0) return;
    struct http_server *s = c->srv;
    http_conn_close(&c->http);
    if (c->served) s->stats.open--;
    ip_release(s, c->ip);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    free(c);
    maybe_done(s);
}

static void close_handles(struct conn *c) {
    if (c->state == CONN_HANDLES_CLOSING) return;
    set_state(c, CONN_HANDLES_CLOSING);
    uv_close(&c->h.handle, conn_close_cb);
    if (c->has_timer) uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

/* Closes c at once (unsent output is dropped), or as soon as its read job is done; c is freed
 * in conn_close_cb. Idempotent. */
static void conn_abort(struct conn *c) {
    if (closing(c)) return;
    if (c->off.running)
        set_state(c, CONN_CLOSING);
    else
        close_handles(c);
}

/* What c waits for now (see the top of the file). */
static enum conn_phase phase_of(const struct conn *c) {
    if (c->off.running) return PH_US; /* bytes read, not yet taken in */
    if (c->out_bytes) return PH_WRITING;
    switch (http_conn_waiting(&c->http)) {
    case HTTP_WAIT_REQUEST: return c->http.requests ? PH_IDLE : PH_FRESH;
    case HTTP_WAIT_HEAD: return PH_HEAD;
    case HTTP_WAIT_BODY: return PH_BODY;
    case HTTP_WAIT_US: return PH_US;
    case HTTP_WAIT_NONE: break;
    }
    return PH_DONE;
}

static uint64_t after(uint64_t now, uint64_t ms) { return ms ? now + ms : 0; }

/* Sets c's deadline from its phase, after anything that may have changed it (ev: what just
 * happened). A head's deadline stays with its request whatever comes between (answers being
 * written, parsing paused); a body's moves with every read, a slow reader's with every write
 * completed; the others start when their phase does. Lingering has its own (io_close). */
static void conn_update(struct conn *c, enum conn_event ev) {
    if (c->state != CONN_OPEN || !c->has_timer) return;
    const struct http_server *s = c->srv;
    uint64_t now = uv_now(s->loop), deadline = c->deadline;
    enum conn_phase ph = phase_of(c);
    bool moved = (ph == PH_BODY && ev == EV_READ) || (ph == PH_WRITING && ev == EV_WROTE);
    if (ph == PH_HEAD && c->head_req != c->http.requests) {
        c->head_req = c->http.requests;
        c->head_deadline = after(c->http.requests == 1 ? c->accepted_ms : now, s->head_timeout_ms);
    }
    if (ph != c->phase || moved) {
        switch (ph) {
        case PH_FRESH: deadline = after(c->accepted_ms, s->head_timeout_ms); break;
        case PH_HEAD: deadline = c->head_deadline; break;
        case PH_BODY: deadline = after(now, s->body_timeout_ms); break;
        default: deadline = after(now, s->idle_timeout_ms); break;
        }
    }
    c->phase = ph;
    if (deadline == c->deadline && uv_is_active((uv_handle_t *)&c->timer)) return;
    c->deadline = deadline;
    arm(c, deadline ? (deadline > now ? deadline - now : 1) : 0);
}

static void timer_cb(uv_timer_t *t) {
    struct conn *c = t->data;
    struct http_server *s = c->srv;
    if (c->state == CONN_LINGERING) { /* the peer had its time to read our last answer */
        conn_abort(c);
        return;
    }
    conn_update(c, EV_NONE); /* a transition may have gone unnoticed */
    if (closing(c) || !c->deadline || uv_now(s->loop) < c->deadline) return;
    switch (c->phase) {
    case PH_US: /* not the peer's doing: look again later */
        c->deadline = after(uv_now(s->loop), s->idle_timeout_ms);
        arm(c, s->idle_timeout_ms);
        return;
    case PH_FRESH:
        s->stats.head_timeouts++;
        log_debug("http connection closed: no request in time", NULL);
        conn_abort(c);
        return;
    case PH_HEAD:
    case PH_BODY:
        if (c->phase == PH_HEAD)
            s->stats.head_timeouts++;
        else
            s->stats.body_timeouts++;
        log_debug("http connection closed: request too slow", " part=%s",
                  c->phase == PH_HEAD ? "head" : "body");
        if (!http_conn_expire(&c->http))
            conn_abort(c); /* else io_close follows the answer */
        else
            conn_update(c, EV_NONE);
        return;
    default: /* idle keep-alive, a reader that takes nothing, a core done reading */
        conn_abort(c);
        return;
    }
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

/* On a reader thread (cfg->reader): what the socket holds, up to the lent room, without
 * waiting; then the sink's own work on those bytes (http_sink.prepare). */
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
    if (closing(c)) { /* aborted meanwhile: the bytes do not matter */
        http_conn_lent_back(&c->http);
        close_handles(c);
        return;
    }
    if (o->got) http_conn_feed(&c->http, o->base, o->got);
    http_conn_lent_back(&c->http);
    if (closing(c)) return;
    conn_update(c, o->got ? EV_READ : EV_NONE);
    if (o->err) {
        log_debug("http read failed", " err=%s", uv_strerror(o->err));
        conn_abort(c);
    } else if (o->eof) {
        c->eof = true;
        http_conn_eof(&c->http); /* may call io_close at once */
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
    if (nread == UV_ENOBUFS && c->off.len && !closing(c)) {
        off_read_start(c);
        return;
    }
    if (c->off.len) { /* lent but not used (a read error came instead) */
        c->off.len = 0;
        http_conn_lent_back(&c->http);
    }
    if (nread == 0 || closing(c)) return;
    if (nread > 0) {
        if (c->state == CONN_LINGERING) return; /* after our last answer: dropped */
        http_conn_feed(&c->http, buf->base, (size_t)nread);
        conn_update(c, EV_READ);
        return;
    }
    if (nread != UV_EOF || c->state == CONN_LINGERING) {
        if (nread != UV_EOF) log_debug("http read failed", " err=%s", uv_strerror((int)nread));
        conn_abort(c);
        return;
    }
    uv_read_stop(stream);
    c->reading = false;
    c->eof = true;
    http_conn_eof(&c->http); /* may call io_close at once */
}

static void write_cb(uv_write_t *req, int status) {
    struct write_req *wr = container_of(req, struct write_req, req);
    struct conn *c = req->handle->data;
    size_t len = wr->len;
    c->out_bytes -= len;
    free(wr->data);
    free(wr);
    if (closing(c)) return;
    if (status < 0) {
        log_debug("http write failed", " err=%s", uv_strerror(status));
        conn_abort(c);
        return;
    }
    http_conn_written(&c->http, len); /* a streamed answer may write its next piece */
    update_reading(c);
    conn_update(c, EV_WROTE);
}

static void io_write(struct http_conn *hc, char *data, size_t len) {
    struct conn *c = container_of(hc, struct conn, http);
    if (closing(c)) {
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
    conn_update(c, EV_NONE);
}

static void io_read_ctl(struct http_conn *hc, bool on) {
    struct conn *c = container_of(hc, struct conn, http);
    c->want_read = on;
    update_reading(c);
    conn_update(c, EV_NONE);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
    struct conn *c = req->handle->data;
    free(req);
    if (closing(c)) return;
    if (status < 0 || c->eof) conn_abort(c);
    /* else lingering: read_cb closes on EOF, timer_cb after LINGER_MS */
}

/* The core's last answer is written: shut down our side once it is flushed, then drain the
 * peer's input until EOF (bounded by LINGER_MS) so that closing does not reset the answer. */
static void io_close(struct http_conn *hc) {
    struct conn *c = container_of(hc, struct conn, http);
    if (closing(c)) return;
    uv_shutdown_t *req = xmalloc(sizeof *req);
    int err = uv_shutdown(req, &c->h.stream, shutdown_cb);
    if (err) {
        free(req);
        conn_abort(c);
        return;
    }
    c->want_read = false;
    if (!c->eof) set_state(c, CONN_LINGERING);
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

static struct conn *conn_new(struct http_server *s) {
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
    struct http_server *s = c->srv;
    int err = uv_timer_init(s->loop, &c->timer);
    if (err) return err;
    c->timer.data = c;
    c->has_timer = true;
    c->open_handles++;
    http_conn_init(&c->http, &s->site, &conn_io);
    if (c->h.handle.type == UV_TCP) peer_name(&c->h.tcp, c->http.peer, sizeof c->http.peer);
    c->want_read = true;
    c->accepted_ms = uv_now(s->loop);
    c->served = true;
    s->stats.open++;
    conn_update(c, EV_NONE);
    update_reading(c);
    return closing(c) ? UV_EIO : 0;
}

/* Over a cap: c (accepted) is reset at once, without an answer; its close callback frees it. */
static void conn_refuse(struct conn *c, uint64_t *counter) {
    (*counter)++;
    set_state(c, CONN_HANDLES_CLOSING);
    if (uv_tcp_close_reset(&c->h.tcp, conn_close_cb) != 0) uv_close(&c->h.handle, conn_close_cb);
}

static void connection_cb(uv_stream_t *listener, int status) {
    struct http_server *s = container_of(listener, struct http_server, listener);
    if (status < 0) { /* libuv has drained the queue already when descriptors ran out */
        s->stats.accept_errors++;
        uint64_t now = uv_now(s->loop);
        if (!s->accept_logged_ms || now - s->accept_logged_ms >= ACCEPT_LOG_MS) {
            s->accept_logged_ms = now;
            log_warn("http accept failed", " err=%s failures=%llu", uv_strerror(status),
                     (unsigned long long)s->stats.accept_errors);
        }
        return;
    }
    struct conn *c = conn_new(s);
    int err = uv_tcp_init(s->loop, &c->h.tcp);
    if (err) { /* no handle to close: undo by hand */
        c->h.handle.data = c;
        c->open_handles = 1;
        set_state(c, CONN_HANDLES_CLOSING);
        conn_close_cb(&c->h.handle);
        return;
    }
    c->h.handle.data = c;
    c->open_handles = 1;
    err = uv_accept(listener, &c->h.stream);
    if (!err && s->max_conns && s->stats.open >= s->max_conns) {
        conn_refuse(c, &s->stats.refused_node);
        return;
    }
    if (!err && s->max_conns_per_ip) {
        unsigned char a[16];
        unsigned len = peer_addr(&c->h.tcp, a);
        if (len && !(c->ip = ip_take(s, a, len))) {
            conn_refuse(c, &s->stats.refused_ip);
            return;
        }
    }
    if (!err) err = uv_tcp_nodelay(&c->h.tcp, 1);
    if (!err) err = conn_start(c);
    if (err) {
        log_debug("http accept failed", " err=%s", uv_strerror(err));
        conn_abort(c);
    }
}

int http_server_adopt_fd(struct http_server *s, int fd) {
    struct conn *c = conn_new(s);
    int err = uv_pipe_init(s->loop, &c->h.pipe, 0);
    if (err) {
        close(fd);
        c->h.handle.data = c;
        c->open_handles = 1;
        set_state(c, CONN_HANDLES_CLOSING);
        conn_close_cb(&c->h.handle);
        return err;
    }
    c->h.handle.data = c;
    c->open_handles = 1;
    err = uv_pipe_open(&c->h.pipe, fd);
    if (err)
        close(fd); /* not adopted by the handle */
    else
        err = conn_start(c);
    if (err) conn_abort(c);
    return err;
}

unsigned http_server_conn_count(const struct http_server *s) { return s->nconns; }

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
    struct http_server *s = h->data;
    s->listener_open = false;
    maybe_done(s);
}

static int bound_port(struct http_server *s) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int err = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    if (err) return err;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int http_server_new(uv_loop_t *loop, const struct http_server_config *cfg,
                    const struct http_site *site, struct http_server **out) {
    struct sockaddr_storage addr;
    int err = parse_listen(cfg->listen, &addr);
    if (err) return err;
    struct http_server *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    http_site_defaults(&s->site);
    s->site.routes = site->routes;
    s->site.nroutes = site->nroutes;
    s->site.data = site->data;
    s->site.headers = site->headers;
    if (site->max_body_bytes) s->site.max_body_bytes = site->max_body_bytes;
    if (site->max_discard_bytes) s->site.max_discard_bytes = site->max_discard_bytes;
    if (site->max_pending) s->site.max_pending = site->max_pending;
    if (site->max_header_bytes) s->site.max_header_bytes = site->max_header_bytes;
    s->reader = cfg->reader;
    s->site.loop = loop;
    s->site.stats = &s->stats;
    if (cfg->max_header_bytes) s->site.max_header_bytes = cfg->max_header_bytes;
    s->idle_timeout_ms = cfg->idle_timeout_ms;
    /* Without their own, a head and a body get the idle timeout (still not extended by a
     * head's bytes). */
    s->head_timeout_ms = cfg->head_timeout_ms ? cfg->head_timeout_ms : cfg->idle_timeout_ms;
    s->body_timeout_ms = cfg->body_timeout_ms ? cfg->body_timeout_ms : cfg->idle_timeout_ms;
    s->max_conns = cfg->max_conns;
    s->max_conns_per_ip = cfg->max_conns_per_ip;
    err = uv_tcp_init(loop, &s->listener);
    if (err) {
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
    if (err) { /* freed by the listener's close callback, on the caller's next loop turn */
        s->closing = true;
        uv_close((uv_handle_t *)&s->listener, listener_close_cb);
        return err;
    }
    log_info("http listening", " listen=%s port=%d", cfg->listen, s->port);
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg) {
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    for (struct conn *c = s->conns; c; c = c->next) conn_abort(c);
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
}
