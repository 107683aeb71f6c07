/* fuzz_http.c: libFuzzer on the HTTP connection core (http/http.c) with ping's routes plus two
 * test routes: /later (answered only between chunks or at the end, so pausing, queueing and
 * detaching are exercised) and /echo/{id} (a buffered body).
 *
 * Admission: /keyed/{id} (buffered) and /keyed-stream/{id} (streamed) admit only "X-Key: k";
 * the corpus also holds folded header lines and %00 targets, which the core refuses.
 *
 * Streaming: /stream/{id} takes its body through a sink that pauses every other piece (resumed
 * between chunks), /blob/{n} answers with a streamed body pulled in 7-byte pieces.
 *
 * Input: byte 0 is flags, bytes 1..3 choose where the rest is cut into 4 chunks; the rest is
 * fed to one connection through a fake writer. After a chunk whose cut byte is odd the
 * transport's deadline passes (http_conn_waiting, then http_conn_expire: a late head or body
 * is answered 408, a streamed body's sink hears UV_ETIMEDOUT). Invariants checked (abort on violation):
 * every write is a whole response ("HTTP/1.1 ", a head ended by CRLFCRLF, Octopus-Node,
 * nosniff);
 * nothing is written after close; close happens once; at the end every exchange is answered
 * and freed (LeakSanitizer). */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/services.h"
#include "common/util.h"
#include "http/http.h"
#include "ping/ping.h"

enum {
    F_EOF = 1,      /* the peer sends EOF after the last chunk */
    F_BETWEEN = 2,  /* answer /later between chunks */
    F_SMALL = 4,    /* tiny limits: 431, 413 and pausing are reached easily */
    F_DETACH = 8,   /* close the connection before answering what is left */
    F_REVERSE = 16, /* answer /later newest first */
    F_DRAIN = 32,   /* the node is draining */
    F_DIRECT = 64,  /* without F_SMALL: read bodies into the sink's memory when offered */
    F_LEND = 128,   /* ... as a read off the loop: the memory lent, then handed back */
};

struct fuzz {
    struct node_services svc; /* first: ping's handlers read the site's data as this */
    struct http_conn c;
    bool closed;
    struct http_exchange *later[64];
    unsigned nlater;
    struct http_exchange *paused; /* a streamed body whose sink said "pause" */
    struct http_exchange *ended;  /* a streamed body that ended, to answer between chunks */
    size_t streamed;              /* body bytes the sinks took */
    unsigned calls;
    char room[37];       /* the sink's own memory (http_sink.buffer) */
    const char *offered; /* where the last read went, or NULL */
    size_t offered_len;
    bool lent; /* room is lent for a read off the loop */
};

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static void fuzz_write(struct http_conn *c, char *data, size_t len) {
    struct fuzz *f = container_of(c, struct fuzz, c);
    check(!f->closed, "write after close");
    size_t bs = 0;
    while (bs < len && data[bs] == 'b') bs++;
    if (len > 0 && len <= 7 && bs == len) { /* a piece of a /blob body */
        free(data);
        return;
    }
    check(len >= 9 && memcmp(data, "HTTP/1.1 ", 9) == 0, "response starts with HTTP/1.1");
    if (len == 25 && memcmp(data, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0) {
        free(data); /* the one interim answer */
        return;
    }
    check(memmem(data, len, "\r\n\r\n", 4) != NULL, "response head ends with CRLFCRLF");
    check(memmem(data, len, "\r\nOctopus-Node: ", 16) != NULL, "Octopus-Node header");
    static const char nosniff[] = "\r\nX-Content-Type-Options: nosniff\r\n";
    check(memmem(data, len, nosniff, sizeof nosniff - 1) != NULL, "nosniff header");
    free(data);
}

static void fuzz_read_ctl(struct http_conn *c, bool on) {}

static void fuzz_close(struct http_conn *c) {
    struct fuzz *f = container_of(c, struct fuzz, c);
    check(!f->closed, "closed once");
    f->closed = true;
}

static const struct http_conn_io fuzz_io = {fuzz_write, fuzz_read_ctl, fuzz_close, false};

static void later_cb(struct http_exchange *ex) {
    struct fuzz *f = http_site_of(ex)->data;
    if (f->nlater == ARRAY_SIZE(f->later)) { /* full: answer at once instead */
        http_respond(ex, 200, "text/plain", "full", 4);
        return;
    }
    f->later[f->nlater++] = ex;
}

static void echo_cb(struct http_exchange *ex) {
    const struct buf *b = http_body(ex);
    const char *h = http_header(ex, "x-key");
    struct buf out;
    buf_init(&out);
    buf_printf(&out, "%s|%s|%s|", http_param(ex, 0), http_query(ex), h ? h : "");
    buf_append(&out, b->data, b->len);
    http_respond(ex, 201, "text/plain", out.data, out.len);
    buf_free(&out);
}

/* POST /stream/{id}: a streamed body. id "no" is refused before its body; "early" is answered
 * half-way; otherwise the sink pauses every other piece (resumed between chunks) and the
 * answer comes between chunks after the end. */
static int stream_data(struct http_exchange *ex, const char *at, size_t n, void *arg) {
    struct fuzz *f = arg;
    if (f->offered) {
        check(at == f->offered && n == f->offered_len, "a body read into the sink's memory "
                                                       "arrives there whole: no byte past its end");
        f->offered = NULL;
    }
    f->streamed += n;
    if (++f->calls % 2 == 0) {
        f->paused = ex;
        return 1;
    }
    if (strcmp(http_param(ex, 0), "early") == 0 && f->streamed > 4) {
        http_respond(ex, 413, "text/plain", "enough", 6);
        return 1;
    }
    return 0;
}

static void stream_end(struct http_exchange *ex, int err, void *arg) {
    struct fuzz *f = arg;
    if (f->paused == ex) f->paused = NULL;
    if (err)
        http_respond(ex, 400, "text/plain", "cut", 3);
    else if (f->ended)
        http_respond(ex, 201, "text/plain", "now", 3);
    else
        f->ended = ex;
}

static int stream_buffer(struct http_exchange *ex, void *arg, bool off_loop, char **base,
                         size_t *len) {
    struct fuzz *f = arg;
    check(!f->lent, "no memory asked for while some is lent");
    *base = f->room;
    if (*len > 1 + f->calls % sizeof f->room) *len = 1 + f->calls % sizeof f->room;
    f->lent = off_loop;
    return 0;
}

static void stream_returned(void *arg) {
    struct fuzz *f = arg;
    check(f->lent, "memory handed back once per lending");
    f->lent = false;
}

static void stream_prepare(void *arg, char *at, size_t n) {
    struct fuzz *f = arg;
    check(f->lent && at == f->room && n <= sizeof f->room, "prepare: on lent memory only");
}

static const struct http_sink stream_sink = {stream_data, stream_end, stream_buffer,
                                             stream_returned, stream_prepare};

/* Feeds n bytes as a transport would: into the sink's memory while the core offers it (lent:
 * as the server's read off the loop, which hands the memory back after feeding). */
static void feed(struct fuzz *f, const char *in, size_t n, bool direct, bool lend) {
    char *base;
    size_t len = 1 + n % 50;
    size_t most = len;
    while (n && direct && http_conn_read_buffer(&f->c, lend, &base, &len)) {
        check(len >= 1 && len <= most, "no more memory than the transport reads");
        size_t k = len < n ? len : n;
        memcpy(base, in, k);
        http_conn_lent_prepare(&f->c, base, k);
        f->offered = base;
        f->offered_len = k;
        http_conn_feed(&f->c, base, k);
        f->offered = NULL;
        check(f->lent == lend, "lent memory stays lent until handed back");
        http_conn_lent_back(&f->c);
        check(!f->lent, "handed back");
        in += k;
        n -= k;
        most = len = 1 + n % 50;
    }
    if (n) http_conn_feed(&f->c, in, n);
}

static void stream_cb(struct http_exchange *ex) {
    struct fuzz *f = http_site_of(ex)->data;
    if (strcmp(http_param(ex, 0), "no") == 0) {
        http_respond(ex, 409, "text/plain", "no", 2);
        return;
    }
    if (http_body_start(ex, &stream_sink, f) != 0) http_respond(ex, 400, "text/plain", "gone", 4);
}

/* The admit function of /keyed/{id} and /keyed-stream/{id}: "X-Key: k" admits; anything
 * else is refused on the head (401 plus a header), before any 100 Continue or body byte. */
static int key_admit(struct http_exchange *ex, const char **why) {
    const char *k = http_header(ex, "x-key");
    if (k && strcmp(k, "k") == 0) return 0;
    http_add_header(ex, "WWW-Authenticate", "Bearer");
    *why = "no key";
    return 401;
}

/* GET /blob/{n}: a streamed answer of n bytes (at most 4096) in pieces of 7. */
struct blob {
    size_t left;
};
static void blob_pull(struct http_exchange *ex, void *arg) {
    struct blob *b = arg;
    size_t n = b->left < 7 ? b->left : 7;
    char *p = malloc(n);
    memset(p, 'b', n);
    b->left -= n;
    http_stream_send(ex, p, n);
}
static void blob_end(void *arg, int err) { free(arg); }
static const struct http_source blob_source = {blob_pull, blob_end};

static void blob_cb(struct http_exchange *ex) {
    struct blob *b = malloc(sizeof *b);
    b->left = (size_t)strtoul(http_param(ex, 0), NULL, 10) % 4097;
    http_respond_stream(ex, 200, "text/plain", b->left, &blob_source, b);
}

/* Between chunks: resume a paused streamed body, answer an ended one. */
static void stream_step(struct fuzz *f) {
    struct http_exchange *p = f->paused, *e = f->ended;
    f->paused = NULL;
    f->ended = NULL;
    if (p) http_body_resume(p);
    if (e) http_respond(e, 201, "text/plain", "done", 4);
}

/* Answers every held /later exchange; answering may resume parsing and hold more. */
static void answer_later(struct fuzz *f, bool reverse) {
    while (f->nlater) {
        unsigned n = f->nlater;
        struct http_exchange *batch[64];
        memcpy(batch, f->later, n * sizeof *batch);
        f->nlater = 0;
        for (unsigned i = 0; i < n; i++) {
            struct http_exchange *ex = batch[reverse ? n - 1 - i : i];
            http_respond(ex, 200, "text/plain", "later", 5);
        }
    }
}

/* The transport's deadline for what the core waits on passes: only a late head or body is
 * answered, and then nothing more is read. */
static void deadline(struct fuzz *f) {
    enum http_wait w = http_conn_waiting(&f->c);
    check(!f->closed || w == HTTP_WAIT_NONE, "a closed core waits for nothing");
    bool answered = http_conn_expire(&f->c);
    check(answered == (w == HTTP_WAIT_HEAD || w == HTTP_WAIT_BODY),
          "a deadline answers a late head or body, nothing else");
    enum http_wait after = http_conn_waiting(&f->c);
    check(!answered || after == HTTP_WAIT_US || after == HTTP_WAIT_NONE,
          "nothing is read after a deadline");
    check(!answered || http_conn_feed(&f->c, "x", 1) == UV_EPIPE, "late input is dropped");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct http_route routes[16];
    static size_t nroutes;
    if (!nroutes) {
        memcpy(routes, ping_routes, ping_nroutes * sizeof *routes);
        nroutes = ping_nroutes;
        static const struct http_route more[] = {
            {HTTP_GET, "/later", later_cb, HTTP_BODY_NONE, NULL},
            {HTTP_POST, "/echo/{id}", echo_cb, HTTP_BODY_BUFFER, NULL},
            {HTTP_PUT, "/echo/{id}", echo_cb, HTTP_BODY_BUFFER, NULL},
            {HTTP_POST, "/stream/{id}", stream_cb, HTTP_BODY_STREAM, NULL},
            {HTTP_GET, "/blob/{n}", blob_cb, HTTP_BODY_NONE, NULL},
            {HTTP_POST, "/keyed/{id}", echo_cb, HTTP_BODY_BUFFER, key_admit},
            {HTTP_POST, "/keyed-stream/{id}", stream_cb, HTTP_BODY_STREAM, key_admit},
        };
        for (size_t i = 0; i < ARRAY_SIZE(more); i++) routes[nroutes++] = more[i];
    }
    if (size < 4) return 0;
    uint8_t flags = data[0];
    const char *in = (const char *)data + 4;
    size_t len = size - 4;
    size_t cut[5] = {0, 0, 0, 0, len};
    for (int i = 1; i <= 3; i++) cut[i] = len * data[i] / 256;
    for (int i = 1; i <= 3; i++) /* sorted, so chunks are contiguous */
        for (int k = i + 1; k <= 3; k++)
            if (cut[k] < cut[i]) {
                size_t t = cut[i];
                cut[i] = cut[k];
                cut[k] = t;
            }

    struct node_view view = {.version = "0.0.0",
                             .cap = 3,
                             .last_seen_ms = 1,
                             .redis_ok = true,
                             .registered = true,
                             .drain = (flags & F_DRAIN) != 0};
    snprintf(view.name, sizeof view.name, "fuzz");
    struct http_site site;
    http_site_defaults(&site);
    site.routes = routes;
    site.nroutes = nroutes;
    site.headers = "Octopus-Node: fuzz\r\n";
    struct fuzz f = {.svc = {.view = &view}, .closed = false};
    site.data = &f;
    if (flags & F_SMALL) {
        site.max_header_bytes = 128;
        site.max_body_bytes = 16;
        site.max_discard_bytes = 8;
        site.max_pending = flags >> 6; /* 0..3: 0 must behave as 1 */
    }
    http_conn_init(&f.c, &site, &fuzz_io);
    for (int i = 0; i < 4; i++) {
        if (cut[i + 1] > cut[i])
            feed(&f, in + cut[i], cut[i + 1] - cut[i], !(flags & F_SMALL) && (flags & F_DIRECT),
                 flags & F_LEND);
        if (i < 3 && (data[1 + i] & 1)) deadline(&f);
        if (flags & F_BETWEEN) answer_later(&f, flags & F_REVERSE);
        stream_step(&f);
    }
    if (flags & F_EOF) http_conn_eof(&f.c);
    for (int i = 0; i < 64 && (f.paused || f.ended); i++) stream_step(&f);
    if (flags & F_DETACH) {
        http_conn_close(&f.c); /* a streamed body still open hears UV_ECONNRESET and answers */
        answer_later(&f, flags & F_REVERSE); /* detached: freed without writing */
        if (f.ended) http_respond(f.ended, 201, "text/plain", "late", 4);
    } else { /* answering may resume parsing, which may dispatch more: until all are done */
        for (int i = 0; i < 64 && (f.nlater || f.paused || f.ended); i++) {
            answer_later(&f, flags & F_REVERSE);
            stream_step(&f);
        }
        check(f.closed || !http_conn_busy(&f.c), "all answered once handlers are done");
        http_conn_close(&f.c);
    }
    return 0;
}
