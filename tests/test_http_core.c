/* test_http_core.c: the HTTP connection core without sockets, through a fake io that records
 * what the core writes and asks. Covers what sockets make awkward to provoke: answers given
 * later and out of order, pausing at max_pending and resuming, detached exchanges, route
 * parameters and buffered bodies, byte-at-a-time input, EOF with answers outstanding, a streamed
 * body read straight into its sink's memory, admission before 100 Continue, obs-fold and %00. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/util.h"
#include "http/http.h"

struct fake {
    struct http_conn c;
    struct http_site site;
    struct buf out; /* everything written, concatenated */
    unsigned writes;
    bool reading;                    /* as last set by read_ctl */
    bool closed;                     /* io->close called */
    struct http_exchange *later[64]; /* exchanges held by later_cb, in arrival order */
    unsigned nlater;
};

static void fake_write(struct http_conn *c, char *data, size_t len) {
    struct fake *f = container_of(c, struct fake, c);
    cr_assert_not(f->closed, "write after close");
    cr_assert(len >= 9 && memcmp(data, "HTTP/1.1 ", 9) == 0);
    buf_append(&f->out, data, len);
    f->writes++;
    free(data);
}

static void fake_read_ctl(struct http_conn *c, bool on) {
    container_of(c, struct fake, c)->reading = on;
}

static void fake_close(struct http_conn *c) {
    struct fake *f = container_of(c, struct fake, c);
    cr_assert_not(f->closed, "closed twice");
    f->closed = true;
}

static const struct http_conn_io fake_io = {fake_write, fake_read_ctl, fake_close, false};

static void now_cb(struct http_exchange *ex) { http_respond(ex, 200, "text/plain", "now", 3); }

static void later_cb(struct http_exchange *ex) {
    struct fake *f = http_site_of(ex)->data;
    cr_assert_lt(f->nlater, ARRAY_SIZE(f->later));
    f->later[f->nlater++] = ex;
}

/* Answers "<a>,<b>,<body>,<query>,<x-key header>". */
static void echo_cb(struct http_exchange *ex) {
    char out[256];
    const char *key = http_header(ex, "x-key");
    const struct buf *b = http_body(ex);
    int n = snprintf(out, sizeof out, "%s,%s,%.*s,%s,%s", http_param(ex, 0),
                     http_param(ex, 1) ? http_param(ex, 1) : "-", (int)b->len,
                     b->data ? b->data : "", http_query(ex), key ? key : "-");
    http_respond(ex, 201, "text/plain", out, (size_t)n);
}

/* A streamed body's sink with memory of its own (http_sink.buffer). */
struct zsink {
    char mem[64];
    size_t used;
    unsigned direct, copied; /* data calls whose bytes were there already / not */
    bool ended;
    struct http_exchange *ex;       /* the last exchange whose memory was asked for */
    unsigned asked, lent, returned; /* buffer calls; off the loop; returned calls */
    unsigned data_calls_at_return;  /* data calls (direct + copied) when last returned */
    unsigned prepared;              /* prepare calls (off the loop, before the data call) */
};
static struct zsink zs;

static int z_data(struct http_exchange *ex, const char *at, size_t n, void *arg) {
    struct zsink *z = arg;
    cr_assert_leq(z->used + n, sizeof z->mem);
    if (at == z->mem + z->used)
        z->direct++;
    else {
        memcpy(z->mem + z->used, at, n);
        z->copied++;
    }
    z->used += n;
    return 0;
}

static void z_end(struct http_exchange *ex, int err, void *arg) {
    struct zsink *z = arg;
    z->ended = true;
    http_respond(ex, 201, "text/plain", z->mem, z->used);
}

static int z_buffer(struct http_exchange *ex, void *arg, bool off_loop, char **base, size_t *len) {
    struct zsink *z = arg;
    z->ex = ex;
    z->asked++;
    z->lent += off_loop;
    *base = z->mem + z->used;
    if (*len > sizeof z->mem - z->used) *len = sizeof z->mem - z->used;
    return 0;
}

static void z_returned(void *arg) {
    struct zsink *z = arg;
    z->returned++;
    z->data_calls_at_return = z->direct + z->copied;
}

static void z_prepare(void *arg, char *at, size_t n) {
    struct zsink *z = arg;
    cr_assert_eq(at, z->mem + z->used, "the lent memory");
    z->prepared++;
}

static const struct http_sink zsink = {z_data, z_end, z_buffer, z_returned, z_prepare};
static const struct http_sink zsink_on_loop = {z_data, z_end, z_buffer, NULL, NULL};
static void stream_cb(struct http_exchange *ex) { http_body_start(ex, &zsink, &zs); }
static void stream_loop_cb(struct http_exchange *ex) { http_body_start(ex, &zsink_on_loop, &zs); }

/* Admits a request that presents "X-Key: k"; refuses others with 401 and a header. */
static unsigned admit_calls;
static int key_admit(struct http_exchange *ex, const char **why) {
    const char *k = http_header(ex, "x-key");
    admit_calls++;
    if (k && strcmp(k, "k") == 0) return 0;
    http_add_header(ex, "WWW-Authenticate", "Bearer");
    *why = "no key";
    return 401;
}

static const struct http_route routes[] = {
    {HTTP_POST, "/keyed/{a}", echo_cb, HTTP_BODY_BUFFER, key_admit},
    {HTTP_POST, "/keyed-stream", stream_cb, HTTP_BODY_STREAM, key_admit},
    {HTTP_POST, "/stream", stream_cb, HTTP_BODY_STREAM, NULL},
    {HTTP_POST, "/stream-loop", stream_loop_cb, HTTP_BODY_STREAM, NULL},
    {HTTP_GET, "/now", now_cb, HTTP_BODY_NONE, NULL},
    {HTTP_GET, "/later", later_cb, HTTP_BODY_NONE, NULL},
    {HTTP_POST, "/echo/{a}", echo_cb, HTTP_BODY_BUFFER, NULL},
    {HTTP_PUT, "/echo/{a}/and/{b}", echo_cb, HTTP_BODY_BUFFER, NULL},
    {HTTP_DELETE, "/now", now_cb, HTTP_BODY_NONE, NULL},
};

static void fake_init(struct fake *f) {
    memset(f, 0, sizeof *f);
    http_site_defaults(&f->site);
    f->site.routes = routes;
    f->site.nroutes = ARRAY_SIZE(routes);
    f->site.headers = "Octopus-Node: n1\r\n";
    f->site.data = f;
    f->reading = true;
    http_conn_init(&f->c, &f->site, &fake_io);
}

static void fake_free(struct fake *f) {
    http_conn_close(&f->c);
    buf_free(&f->out);
}

static void feed(struct fake *f, const char *s) { http_conn_feed(&f->c, s, strlen(s)); }

#define HEAD_START(status)                                                                         \
    "HTTP/1.1 " status "\r\nOctopus-Node: n1\r\n"                                                  \
    "X-Content-Type-Options: nosniff\r\n"

static const char *answer(const char *status, const char *body, bool close) {
    static char out[512];
    snprintf(out, sizeof out, HEAD_START("%s") "%sContent-Length: %zu\r\n%s\r\n%s", status,
             *body ? "Content-Type: text/plain\r\n" : "", strlen(body),
             close ? "Connection: close\r\n" : "", body);
    return out;
}

/* The core's JSON error answer. */
static const char *error_answer(const char *status, const char *extra, const char *msg,
                                bool close) {
    static char out[768];
    char body[400];
    snprintf(body, sizeof body, "{\"ErrorMessage\":\"%s\",\"Errors\":[\"%s\"]}", msg, msg);
    snprintf(out, sizeof out,
             HEAD_START("%s") "Content-Type: application/json\r\n"
                              "Content-Length: %zu\r\n%s%s\r\n%s",
             status, strlen(body), extra, close ? "Connection: close\r\n" : "", body);
    return out;
}

static void take(struct fake *f, const char *want) {
    size_t n = strlen(want);
    cr_assert_geq(f->out.len, n, "have:\n%s\nwant:\n%s", f->out.data ? f->out.data : "", want);
    cr_assert(memcmp(f->out.data, want, n) == 0, "have:\n%s\nwant:\n%s", f->out.data, want);
    buf_consume(&f->out, n);
}

static void respond_later(struct fake *f, unsigned i, const char *body) {
    http_respond(f->later[i], 200, "text/plain", body, strlen(body));
    f->later[i] = NULL;
}

Test(http_core, later_answers_leave_in_request_order) {
    struct fake f;
    fake_init(&f);
    feed(&f, "GET /later HTTP/1.1\r\n\r\nGET /now HTTP/1.1\r\n\r\nGET /later HTTP/1.1\r\n\r\n");
    cr_assert_eq(f.nlater, 2);
    cr_assert_eq(f.out.len, 0, "the second answer must wait for the first");
    cr_assert(http_conn_busy(&f.c));
    respond_later(&f, 1, "third");
    cr_assert_eq(f.out.len, 0);
    respond_later(&f, 0, "first");
    take(&f, answer("200 OK", "first", false));
    take(&f, answer("200 OK", "now", false));
    take(&f, answer("200 OK", "third", false));
    cr_assert_not(http_conn_busy(&f.c));
    fake_free(&f);
}

Test(http_core, pauses_at_max_pending_and_resumes) {
    struct fake f;
    struct buf in;
    char body[16];
    fake_init(&f);
    buf_init(&in);
    for (int i = 0; i < 40; i++) buf_puts(&in, "GET /later HTTP/1.1\r\n\r\n");
    http_conn_feed(&f.c, in.data, in.len);
    cr_assert_eq(f.nlater, 16, "parsing must pause at max_pending");
    cr_assert_not(f.reading, "the transport is told to stop reading");
    http_conn_feed(&f.c, "GET /now HTTP/1.1\r\n\r\n", 21); /* a read already in flight: held */
    cr_assert_eq(f.nlater, 16);
    unsigned answered = 0;
    while (answered < 40) {
        unsigned upto = f.nlater;
        cr_assert_gt(upto, answered, "stalled at %u", answered);
        for (unsigned i = upto; i-- > answered;) { /* newest first: order must still hold */
            snprintf(body, sizeof body, "%u", i);
            respond_later(&f, i, body);
        }
        for (unsigned i = answered; i < upto; i++) {
            snprintf(body, sizeof body, "%u", i);
            take(&f, answer("200 OK", body, false));
        }
        answered = upto;
    }
    cr_assert_eq(f.nlater, 40);
    take(&f, answer("200 OK", "now", false));
    cr_assert_eq(f.out.len, 0);
    cr_assert(f.reading, "reading resumes once drained");
    buf_free(&in);
    fake_free(&f);
}

Test(http_core, detached_exchange_freed_by_its_answer) {
    struct fake f;
    fake_init(&f);
    feed(&f, "GET /later HTTP/1.1\r\n\r\n");
    cr_assert_eq(f.nlater, 1);
    struct http_exchange *ex = f.later[0];
    fake_free(&f); /* the connection goes first */
    cr_assert_null(http_site_of(ex));
    http_respond(ex, 200, "text/plain", "late", 4); /* dropped, freed: ASan checks */
    cr_assert_eq(f.writes, 0);
}

Test(http_core, params_query_headers_and_buffered_body) {
    struct fake f;
    fake_init(&f);
    feed(&f, "POST //echo/abc/?q=1 HTTP/1.1\r\nX-Key: k1\r\nContent-Length: 5\r\n\r\nhello");
    take(&f, answer("201 Created", "abc,-,hello,q=1,k1", false));
    feed(&f, "PUT /echo/a1/and/b2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nEmpty:\r\n\r\n"
             "2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n");
    take(&f, answer("201 Created", "a1,b2,hello,,-", false));
    feed(&f, "POST /echo/ HTTP/1.1\r\n\r\n"); /* an empty segment matches no {param} */
    take(&f, "HTTP/1.1 404 Not Found\r\n");
    buf_reset(&f.out);
    feed(&f, "GET /echo/x HTTP/1.1\r\n\r\n");
    take(&f, HEAD_START("405 Method Not Allowed") "Content-Type: application/json\r\n"
                                                  "Content-Length: 69\r\nAllow: POST\r\n\r\n");
    buf_reset(&f.out);
    feed(&f, "PATCH /now HTTP/1.1\r\n\r\n");
    take(&f,
         HEAD_START(
             "405 Method Not Allowed") "Content-Type: application/json\r\n"
                                       "Content-Length: 69\r\nAllow: GET, HEAD, DELETE\r\n\r\n");
    buf_reset(&f.out);
    fake_free(&f);
}

Test(http_core, expect_100_continue_only_for_bodies_we_read) {
    struct fake f;
    fake_init(&f);
    feed(&f, "POST /echo/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    take(&f, "HTTP/1.1 100 Continue\r\n\r\n");
    cr_assert_eq(f.out.len, 0);
    feed(&f, "ok");
    take(&f, answer("201 Created", "e,-,ok,,-", false));
    feed(&f, "GET /now HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nxx");
    take(&f, answer("200 OK", "now", false));
    feed(&f, "GET /later HTTP/1.1\r\n\r\n"
             "POST /echo/f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    cr_assert_eq(f.out.len, 0, "no interim answer ahead of an outstanding one");
    feed(&f, "!");
    respond_later(&f, 0, "l");
    take(&f, answer("200 OK", "l", false));
    take(&f, answer("201 Created", "f,-,!,,-", false));
    fake_free(&f);
}

Test(http_core, buffered_body_over_limit_413) {
    struct fake f;
    fake_init(&f);
    f.site.max_body_bytes = 4;
    feed(&f, "POST /echo/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    take(&f, "HTTP/1.1 413 Payload Too Large\r\n");
    cr_assert(f.closed);
    cr_assert_eq(http_conn_feed(&f.c, "GET /now HTTP/1.1\r\n\r\n", 21), UV_EPIPE);
    buf_reset(&f.out);
    fake_free(&f);
}

Test(http_core, byte_at_a_time_equals_all_at_once) {
    static const char in[] = "GET /now HTTP/1.1\r\nA: b\r\n\r\nPOST /echo/z?x HTTP/1.1\r\n"
                             "Content-Length: 3\r\nX-Key: v\r\n\r\nabcGET /nope HTTP/1.1\r\n\r\n"
                             "HEAD /now HTTP/1.1\r\n\r\n";
    struct fake a, b;
    fake_init(&a);
    fake_init(&b);
    feed(&a, in);
    for (size_t i = 0; i < sizeof in - 1; i++) http_conn_feed(&b.c, in + i, 1);
    cr_assert_eq(a.writes, 4);
    cr_assert_eq(a.out.len, b.out.len);
    cr_assert(memcmp(a.out.data, b.out.data, a.out.len) == 0);
    fake_free(&a);
    fake_free(&b);
}

/* A refused head gets no 100 Continue and no body read: answered at once, then closed. */
Test(http_core, admit_refuses_before_continue_and_body) {
    struct fake f;
    fake_init(&f);
    admit_calls = 0;
    feed(&f, "POST /keyed/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 900000\r\n\r\n");
    cr_assert_eq(admit_calls, 1);
    take(&f, error_answer("401 Unauthorized", "WWW-Authenticate: Bearer\r\n", "no key", true));
    cr_assert_eq(f.out.len, 0, "nothing but the refusal");
    cr_assert(f.closed, "closed after the refusal: the body is never read");
    cr_assert_eq(http_conn_feed(&f.c, "body", 4), UV_EPIPE);
    fake_free(&f);

    /* Chunked, and a streamed route: the same; the stream handler never runs. */
    fake_init(&f);
    memset(&zs, 0, sizeof zs);
    feed(&f, "POST /keyed-stream HTTP/1.1\r\nExpect: 100-continue\r\n"
             "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    take(&f, error_answer("401 Unauthorized", "WWW-Authenticate: Bearer\r\n", "no key", true));
    cr_assert_eq(f.out.len, 0);
    cr_assert(f.closed);
    cr_assert_eq(zs.used + zs.asked, 0, "the stream's sink saw nothing");
    fake_free(&f);

    /* Without a body the connection lives on; later requests are served. */
    fake_init(&f);
    feed(&f, "POST /keyed/a HTTP/1.1\r\n\r\nGET /now HTTP/1.1\r\n\r\n");
    take(&f, error_answer("401 Unauthorized", "WWW-Authenticate: Bearer\r\n", "no key", false));
    take(&f, answer("200 OK", "now", false));
    cr_assert_not(f.closed);
    fake_free(&f);

    /* Admitted: 100 Continue, then the handler with the body. */
    fake_init(&f);
    feed(&f, "POST /keyed/b HTTP/1.1\r\nX-Key: k\r\nExpect: 100-continue\r\n"
             "Content-Length: 2\r\n\r\n");
    take(&f, "HTTP/1.1 100 Continue\r\n\r\n");
    feed(&f, "ok");
    take(&f, answer("201 Created", "b,-,ok,,k", false));
    fake_free(&f);
}

/* obs-fold is refused wherever the input is cut; so is %00 in a path or query. */
Test(http_core, folded_headers_and_percent_00_are_refused) {
    static const char *const folded[] = {
        "GET /now HTTP/1.1\r\nX-Key: a\r\n b\r\n\r\n",
        "GET /now HTTP/1.1\r\nX-Key:\r\n b\r\n\r\n",
        "GET /now HTTP/1.1\r\nX-Key: a\r\n\t\r\n\r\n",
        "GET /now HTTP/1.1\r\nA: b\r\nX-Key: a\r\n \tc\r\nB: d\r\n\r\n",
    };
    const char *fold_msg = "folded header line: a header line may not start with a space or tab "
                           "(obs-fold); send each header on one line";
    for (size_t i = 0; i < ARRAY_SIZE(folded); i++)
        for (size_t cut = 0; cut <= strlen(folded[i]); cut++) {
            struct fake f;
            fake_init(&f);
            http_conn_feed(&f.c, folded[i], cut);
            http_conn_feed(&f.c, folded[i] + cut, strlen(folded[i]) - cut);
            take(&f, error_answer("400 Bad Request", "", fold_msg, true));
            cr_assert(f.closed, "case %zu cut %zu", i, cut);
            fake_free(&f);
        }
    /* Empty values, blanks around values, values cut anywhere: fine. */
    static const char ok[] = "GET /now HTTP/1.1\r\nEmpty:\r\nX-Key:  v w \r\nB: \r\n\r\n";
    for (size_t cut = 0; cut <= sizeof ok - 1; cut++) {
        struct fake f;
        fake_init(&f);
        http_conn_feed(&f.c, ok, cut);
        http_conn_feed(&f.c, ok + cut, sizeof ok - 1 - cut);
        take(&f, answer("200 OK", "now", false));
        fake_free(&f);
    }
    static const char *const nul[] = {"GET /now?x=%00 HTTP/1.1\r\n\r\n",
                                      "POST /echo/a%00b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"};
    for (size_t i = 0; i < ARRAY_SIZE(nul); i++) {
        struct fake f;
        fake_init(&f);
        feed(&f, nul[i]);
        take(&f, error_answer("400 Bad Request", "",
                              "the request target holds %00 (a NUL byte), "
                              "which no path or parameter may hold",
                              i == 1));
        cr_assert_eq(f.out.len, 0);
        fake_free(&f);
    }
}

Test(http_core, eof_waits_for_outstanding_answers) {
    struct fake f;
    fake_init(&f);
    feed(&f, "GET /later HTTP/1.1\r\n\r\nGET /now HTTP/1.1\r\n\r\n");
    http_conn_eof(&f.c);
    cr_assert_not(f.closed);
    respond_later(&f, 0, "x");
    take(&f, answer("200 OK", "x", false));
    take(&f, answer("200 OK", "now", false));
    cr_assert(f.closed);
    fake_free(&f);
}

Test(http_core, error_waits_behind_outstanding_answers) {
    struct fake f;
    fake_init(&f);
    feed(&f, "GET /later HTTP/1.1\r\n\r\n\x01\x02garbage");
    cr_assert_eq(f.out.len, 0);
    cr_assert_not(f.closed);
    respond_later(&f, 0, "x");
    take(&f, answer("200 OK", "x", false));
    take(&f, "HTTP/1.1 400 Bad Request\r\n");
    cr_assert(f.closed);
    buf_reset(&f.out);
    fake_free(&f);
}

Test(http_core, upgrade_and_connect_are_answered_then_closed) {
    struct fake f;
    fake_init(&f);
    feed(&f, "GET /now HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0\r\n");
    take(&f, answer("200 OK", "now", true));
    cr_assert(f.closed);
    fake_free(&f);
    fake_init(&f);
    feed(&f, "CONNECT example.com:443 HTTP/1.1\r\n\r\n");
    take(&f, "HTTP/1.1 404 Not Found\r\n");
    cr_assert(f.closed);
    buf_reset(&f.out);
    fake_free(&f);
}

Test(http_core, header_limit_counts_many_small_headers) {
    struct fake f;
    struct buf in;
    fake_init(&f);
    f.site.max_header_bytes = 512;
    buf_init(&in);
    buf_puts(&in, "GET /now HTTP/1.1\r\n");
    for (int i = 0; i < 200; i++) buf_puts(&in, "a:\r\n");
    buf_puts(&in, "\r\n");
    http_conn_feed(&f.c, in.data, in.len);
    take(&f, "HTTP/1.1 431 Request Header Fields Too Large\r\n");
    cr_assert(f.closed);
    buf_reset(&f.out);
    buf_free(&in);
    fake_free(&f);
}

/* http_conn_read_buffer: a Content-Length body is read into the sink's own memory, never past
 * the body's end (a pipelined request behind it goes through the transport's buffer); chunked
 * bodies and connections without a body open say no. */
Test(http_core, body_read_into_the_sinks_memory) {
    struct fake f;
    char *base;
    size_t len;
    fake_init(&f);
    memset(&zs, 0, sizeof zs);
    len = 1000;
    cr_assert_not(http_conn_read_buffer(&f.c, false, &base, &len), "no body open yet");
    feed(&f, "POST /stream HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    cr_assert_eq(zs.copied, 1, "bytes that came with the head are copied");
    cr_assert(http_conn_read_buffer(&f.c, false, &base, &len));
    cr_assert_eq(base, zs.mem + 3);
    cr_assert_eq(len, 7, "at most what remains of the body (7), not the sink's room (61)");
    memcpy(base, "defghij", 7); /* what the transport's read does */
    http_conn_feed(&f.c, base, 7);
    cr_assert_eq(zs.direct, 1, "read in place: the sink copies nothing");
    cr_assert(zs.ended);
    take(&f, answer("201 Created", "abcdefghij", false));
    len = 1000;
    cr_assert_not(http_conn_read_buffer(&f.c, false, &base, &len), "the body is complete");
    feed(&f, "GET /now HTTP/1.1\r\n\r\n");
    take(&f, answer("200 OK", "now", false));

    memset(&zs, 0, sizeof zs);
    feed(&f, "POST /stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    len = 1000;
    cr_assert_not(http_conn_read_buffer(&f.c, false, &base, &len),
                  "chunk framing must be parsed out");
    feed(&f, "3\r\nxyz\r\n0\r\n\r\n");
    cr_assert(zs.ended);
    take(&f, answer("201 Created", "xyz", false));
    fake_free(&f);
}

/* A read off the loop (http/server.c): the sink's memory is lent, no more is asked for until it
 * comes back, the transport's limit is kept, and it comes back exactly once, after the data
 * call with its bytes, even when the handler answered while it was out. A sink without
 * returned() is only read into on the loop. */
Test(http_core, body_memory_lent_off_loop_comes_back_once) {
    struct fake f;
    char *base;
    size_t len = 4;
    fake_init(&f);
    memset(&zs, 0, sizeof zs);
    feed(&f, "POST /stream HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
    cr_assert(http_conn_read_buffer(&f.c, true, &base, &len));
    cr_assert_eq(base, zs.mem);
    cr_assert_eq(len, 4, "no more than the transport reads");
    cr_assert_eq(zs.lent, 1);
    len = 4;
    cr_assert_not(http_conn_read_buffer(&f.c, true, &base, &len), "lent: not asked again");
    cr_assert_not(http_conn_read_buffer(&f.c, false, &base, &len));
    cr_assert_eq(zs.asked, 1);
    memcpy(zs.mem, "abcd", 4); /* the background thread's read, then the sink's work there */
    http_conn_lent_prepare(&f.c, zs.mem, 4);
    cr_assert_eq(zs.prepared, 1);
    http_conn_feed(&f.c, zs.mem, 4);
    cr_assert_eq(zs.direct, 1);
    cr_assert_eq(zs.returned, 0, "handed back by the transport, not by the data call");
    http_conn_lent_back(&f.c);
    cr_assert_eq(zs.returned, 1);
    cr_assert_eq(zs.data_calls_at_return, 1, "after the data call with its bytes");
    http_conn_lent_back(&f.c);
    cr_assert_eq(zs.returned, 1, "once");

    len = 100;
    cr_assert(http_conn_read_buffer(&f.c, true, &base, &len));
    cr_assert_eq(len, 6, "what remains of the body");
    http_respond(zs.ex, 409, "text/plain", "no", 2); /* answered while the memory is out */
    take(&f, "HTTP/1.1 409 Conflict\r\n");
    cr_assert_eq(zs.returned, 1);
    http_conn_lent_prepare(&f.c, base, 0);
    cr_assert_eq(zs.prepared, 1, "nothing read: nothing to prepare");
    http_conn_feed(&f.c, base, 3); /* what the read got: dropped, the body is no longer read */
    cr_assert_eq(zs.direct + zs.copied, 1);
    http_conn_lent_back(&f.c);
    cr_assert_eq(zs.returned, 2, "back although the exchange was answered");
    buf_reset(&f.out);
    fake_free(&f);

    fake_init(&f);
    memset(&zs, 0, sizeof zs);
    feed(&f, "POST /stream-loop HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
    len = 100;
    cr_assert_not(http_conn_read_buffer(&f.c, true, &base, &len), "no returned(): loop only");
    cr_assert(http_conn_read_buffer(&f.c, false, &base, &len));
    cr_assert_eq(zs.lent, 0);
    memcpy(base, "0123456789", 10);
    http_conn_feed(&f.c, base, 10);
    take(&f, answer("201 Created", "0123456789", false));
    fake_free(&f);
}
