/* http.c: the HTTP/1.1 connection core. Owns parsing (llhttp callbacks), the per-connection
 * queue of exchanges that keeps answers in request order, pausing when too many answers are
 * outstanding, the limits (431, 413) and the serialisation of every response. It knows no
 * sockets: bytes come in through http_conn_feed() and leave through c->io.
 *
 * Flow: on_message_begin creates c->cur; spans fill its head; on_headers_complete routes it;
 * on_message_complete queues and dispatches it. A handler answers with http_respond(), which
 * marks the exchange done and flushes every done exchange at the queue's head. A refused or
 * malformed request is answered by the core, with Connection: close, behind earlier answers.
 *
 * Admission: once a head is in and routed, the route's admit function (the API's key check)
 * judges it before anything else happens: no "100 Continue" and no body byte read for a
 * refused request. A refusal of a request that announced a body is answered at once and the
 * connection closed after it (the body is never read, so the next request's start is unknown);
 * one without a body is answered like a 404, and the connection lives on.
 *
 * Header hygiene: obs-fold (a header line starting with SP or HT, which continues the line
 * before) is accepted by llhttp 8 and would be glued onto the previous value; the core refuses
 * it with 400 instead (see on_header_value). Every answer says X-Content-Type-Options: nosniff.
 *
 * Streaming (HTTP_BODY_STREAM routes, http_respond_stream): a streamed-body exchange is queued
 * and dispatched at on_headers_complete and stays c->cur while its body is read; on_body hands
 * the bytes to its sink, and a sink that says "pause" pauses llhttp (the rest of the input is
 * held and the transport told to stop reading) until http_body_resume(). A streamed answer
 * stays at the head of the queue after its head is written; flush() pulls its pieces one at a
 * time while less than HTTP_STREAM_WINDOW is unacknowledged, then pops it. flush() is not
 * re-entered: a nested call (a source answering its pull at once, a handler answering while
 * parsing resumes) asks the running one for another pass, so a synchronous source loops
 * instead of recursing.
 *
 * State: where the connection is in its life (reading, paused on answers, waiting on a
 * streamed body's handler or sink, stopped, closed) is one enum, c->state (the table of its
 * transitions is in http.h), changed only through set_state(), which asserts the transition
 * exists. The rest is orthogonal: eof (the peer's side), lent_sink (a loan to a read off the
 * loop, returned exactly once whatever the state does meanwhile), head_done (the current
 * request's part), and the re-entrancy guards feeding and flushing. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "http/http_int.h"

/* Bytes of a request line not seen by span callbacks (spaces, version, CRLF), and of each
 * header line (": ", CRLF): counted so the limit means what a client sends. */
#define LINE_OVERHEAD 12
#define HEADER_OVERHEAD 4

static void flush(struct http_conn *c);

static struct http_conn *conn_of(llhttp_t *p) { return container_of(p, struct http_conn, parser); }

/* The states each state may be entered from (http.h has the table with the reasons). */
#define FROM(s) (1u << (s))
static const unsigned entered_from[] = {
    [HTTP_CONN_READING] = FROM(HTTP_CONN_PAUSED) | FROM(HTTP_CONN_BODY_WAIT),
    [HTTP_CONN_PAUSED] = FROM(HTTP_CONN_READING) | FROM(HTTP_CONN_BODY_WAIT),
    [HTTP_CONN_BODY_WAIT] = FROM(HTTP_CONN_READING),
    [HTTP_CONN_STOPPED] =
        FROM(HTTP_CONN_READING) | FROM(HTTP_CONN_PAUSED) | FROM(HTTP_CONN_BODY_WAIT),
    [HTTP_CONN_CLOSED] = FROM(HTTP_CONN_READING) | FROM(HTTP_CONN_PAUSED) |
                         FROM(HTTP_CONN_BODY_WAIT) | FROM(HTTP_CONN_STOPPED) |
                         FROM(HTTP_CONN_CLOSED),
};
#undef FROM

static void set_state(struct http_conn *c, enum http_conn_state to) {
    assert(entered_from[to] & (1u << c->state));
    (void)entered_from; /* read by the assert only */
    c->state = to;
}

/* No more requests are read: STOPPED, or CLOSED already. */
static bool stopped(const struct http_conn *c) { return c->state >= HTTP_CONN_STOPPED; }

/* Reads no more requests; a CLOSED connection stays so. */
static void stop(struct http_conn *c) {
    if (!stopped(c)) set_state(c, HTTP_CONN_STOPPED);
}

/* llhttp is paused (input is held): PAUSED or BODY_WAIT, outside llhttp_execute(). */
static bool paused(const struct http_conn *c) {
    return (c->state == HTTP_CONN_PAUSED || c->state == HTTP_CONN_BODY_WAIT) && !c->feeding;
}

/* A streamed body's wait is over (taken or resumed): llhttp goes on at once when it is still
 * running (the callback that waited has not returned yet), else after resume(). */
static void body_go(struct http_conn *c) {
    set_state(c, c->feeding ? HTTP_CONN_READING : HTTP_CONN_PAUSED);
}

/* True when cur is a streamed-body exchange whose body is being read. */
static bool body_open(const struct http_conn *c) { return c->cur && c->cur->streaming; }

/* True when parsing must wait for answers; a limit of 0 is taken as 1, never as a deadlock. A
 * streamed body being read is not waited for: its own exchange does not count. */
static bool too_many_pending(const struct http_conn *c) {
    unsigned max = c->site->max_pending ? c->site->max_pending : 1;
    return c->pending - (body_open(c) ? 1 : 0) >= max;
}

/* Every write goes through here, counted while the transport has not acknowledged it. */
static void out_write(struct http_conn *c, char *data, size_t len) {
    if (c->io->acks_writes) c->unacked += len;
    c->io->write(c, data, len);
}

static struct http_exchange *exchange_new(struct http_conn *c) {
    struct http_exchange *ex = xcalloc(1, sizeof *ex);
    ex->conn = c;
    ex->method = HTTP_GET;
    return ex;
}

static void exchange_free(struct http_exchange *ex) {
    buf_free(&ex->head);
    buf_free(&ex->body);
    buf_free(&ex->extra);
    buf_free(&ex->out);
    free(ex);
}

static void enqueue(struct http_conn *c, struct http_exchange *ex) {
    ex->next = NULL;
    if (c->tail)
        c->tail->next = ex;
    else
        c->head = ex;
    c->tail = ex;
    c->pending++;
}

static void set_reading(struct http_conn *c, bool on) {
    if (c->read_off == !on) return;
    c->read_off = !on;
    if (c->io->read_ctl) c->io->read_ctl(c, on);
}

/* Marks a parser callback's refusal; the caller returns HPE_USER so llhttp stops. */
static int refuse(struct http_conn *c, int status) {
    c->fail_status = status;
    return HPE_USER;
}

static const char *refusal_text(const struct http_conn *c, int status, const llhttp_t *p) {
    if (c->fail_text) return c->fail_text;
    switch (status) {
    case 413: return "Request body too large";
    case 431: return "Request header fields too large";
    case 408: return "The request did not arrive in time: the connection is closed";
    default: {
        const char *r = llhttp_get_error_reason(p); /* llhttp's own refusals */
        return r && *r ? r : "Malformed request";
    }
    }
}

/* A streamed body will not complete (err): its handler hears it and answers; nothing more is
 * read. Its exchange is already queued and with the handler. */
static void body_abort(struct http_conn *c, int err) {
    struct http_exchange *ex = c->cur;
    c->cur = NULL;
    stop(c);
    ex->close = true;
    if (ex->sink) ex->sink->end(ex, err, ex->sink_arg);
}

/* Answers the request being parsed (or a new one) with status, and reads no more. A streamed
 * body's handler answers instead (it owns that exchange). */
static void refuse_now(struct http_conn *c, int status) {
    if (body_open(c)) {
        body_abort(c, UV_EPROTO);
        return;
    }
    struct http_exchange *ex = c->cur ? c->cur : exchange_new(c);
    c->cur = NULL;
    stop(c);
    ex->close = true;
    ex->route = NULL;
    buf_reset(&ex->extra);
    enqueue(c, ex);
    http_respond_error(ex, status, refusal_text(c, status, &c->parser));
}

/* Adds n bytes of request head, enforcing max_header_bytes. */
static int head_add(struct http_conn *c, size_t overhead, const char *at, size_t n) {
    c->head_bytes += overhead + n;
    if (c->head_bytes > c->site->max_header_bytes) return refuse(c, 431);
    buf_append(&c->cur->head, at, n);
    return 0;
}

static void nul(struct http_conn *c) { buf_append(&c->cur->head, "", 1); }

static int on_message_begin(llhttp_t *p) {
    struct http_conn *c = conn_of(p);
    if (!c->cur) c->cur = exchange_new(c);
    c->requests++;
    c->head_done = false;
    c->head_bytes = LINE_OVERHEAD;
    c->body_bytes = 0;
    c->fail_status = 0;
    c->fail_text = NULL;
    c->span = HTTP_SPAN_URL;
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n) {
    struct http_conn *c = conn_of(p);
    c->head_bytes += n;
    return c->head_bytes > c->site->max_header_bytes ? refuse(c, 431) : 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
    struct http_conn *c = conn_of(p);
    c->cur->method = p->method; /* parsed by now: a refusal to HEAD carries no body */
    return head_add(c, 0, at, n);
}

static int on_url_complete(llhttp_t *p) {
    struct http_conn *c = conn_of(p);
    nul(c);
    c->cur->url_end = c->cur->head.len;
    c->span = HTTP_SPAN_LINE;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
    struct http_conn *c = conn_of(p);
    size_t overhead = 0;
    if (c->span == HTTP_SPAN_FIELD_DONE) nul(c); /* the previous header's empty value */
    if (c->span != HTTP_SPAN_FIELD) overhead = HEADER_OVERHEAD;
    c->span = HTTP_SPAN_FIELD;
    return head_add(c, overhead, at, n);
}

static int on_header_field_complete(llhttp_t *p) {
    struct http_conn *c = conn_of(p);
    nul(c);
    c->span = HTTP_SPAN_FIELD_DONE;
    return 0;
}

/* The byte before at, SP and HT skipped, across earlier input. */
static char byte_before(const struct http_conn *c, const char *at) {
    const char *s = at;
    while (s > c->in_start && (s[-1] == ' ' || s[-1] == '\t')) s--;
    return s > c->in_start ? s[-1] : c->before;
}

/* A value's bytes, whole or in pieces (llhttp reports a value cut by the end of the input in
 * two calls). llhttp 8 also calls here for an obs-fold line ("X: a\r\n b": " b" after "a",
 * or "b" alone when the first line was empty), which would glue the lines into one value: a
 * split key would authenticate, and a proxy in front may read the header otherwise. Such a
 * piece is the only one with bytes that is preceded (blanks skipped) by the end of a line:
 * refused. (An empty value comes as an empty piece after the next line's CRLF; a folded line
 * of blanks only under an empty value is not reported at all, and adds nothing.) */
static int on_header_value(llhttp_t *p, const char *at, size_t n) {
    struct http_conn *c = conn_of(p);
    char b = n > 0 ? byte_before(c, at) : 0;
    if (b == '\n' || b == '\r') {
        c->fail_text = "folded header line: a header line may not start with a space or tab "
                       "(obs-fold); send each header on one line";
        return refuse(c, 400);
    }
    c->span = HTTP_SPAN_VALUE;
    return head_add(c, 0, at, n);
}

static int on_header_value_complete(llhttp_t *p) {
    struct http_conn *c = conn_of(p);
    if (c->span == HTTP_SPAN_FIELD_DONE || c->span == HTTP_SPAN_VALUE) nul(c);
    c->span = HTTP_SPAN_LINE;
    return 0;
}

/* A client that sent "Expect: 100-continue" (curl, for large bodies) waits for this before
 * sending a body we will read. Sent only when no earlier answer is outstanding: an interim
 * answer must not overtake a final one. Otherwise the client sends after its own timeout. */
static void expect_continue(struct http_conn *c, struct http_exchange *ex) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    const char *expect = http_header(ex, "expect");
    if (!expect || strcasecmp(expect, "100-continue") != 0 || c->head) return;
    if (c->parser.http_major != 1 || c->parser.http_minor < 1) return;
    out_write(c, xstrdup(cont), sizeof cont - 1);
}

/* The same for a streamed body, whose exchange is queued: sent once its handler has taken the
 * body and every earlier answer has left (flush() calls this again as they do). */
static void stream_continue(struct http_conn *c) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct http_exchange *ex = c->cur;
    if (!body_open(c) || !ex->want_continue || !ex->sink || c->head != ex ||
        c->state == HTTP_CONN_CLOSED)
        return;
    ex->want_continue = false;
    out_write(c, xstrdup(cont), sizeof cont - 1);
}

/* A STREAM route's request head is in: queue its exchange now and let the handler decide.
 * Parsing pauses until the handler takes the body (http_body_start), unless it did at once. */
static int stream_begin(struct http_conn *c, struct http_exchange *ex) {
    const char *expect = http_header(ex, "expect");
    ex->streaming = true;
    ex->want_continue = expect && strcasecmp(expect, "100-continue") == 0 &&
                        c->parser.http_major == 1 && c->parser.http_minor >= 1;
    enqueue(c, ex);
    if (!stopped(c)) set_state(c, HTTP_CONN_BODY_WAIT); /* closed meanwhile: stays so */
    ex->route->handler(ex);                             /* may answer, and so free ex */
    return c->state == HTTP_CONN_READING ? 0 : HPE_PAUSED;
}

/* The request announced a body: Content-Length above 0, or chunked. */
static bool body_announced(const llhttp_t *p) {
    return (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
}

/* ex was refused on its head (ex->status, ex->why) and announced a body: answer now, read no
 * more (the body's end, so the next request's start, is unknown), close after the answer. */
static int refuse_head(struct http_conn *c, struct http_exchange *ex) {
    c->cur = NULL;
    stop(c);
    ex->close = true;
    enqueue(c, ex);
    http_respond_error(ex, ex->status, ex->why); /* may free ex */
    return HPE_PAUSED;
}

static int on_headers_complete(llhttp_t *p) {
    struct http_conn *c = conn_of(p);
    struct http_exchange *ex = c->cur;
    if (c->span == HTTP_SPAN_URL) { /* never completed: keep the layout anyway */
        nul(c);
        ex->url_end = ex->head.len;
    } else if (c->span == HTTP_SPAN_FIELD_DONE || c->span == HTTP_SPAN_VALUE) {
        nul(c);
    }
    c->span = HTTP_SPAN_LINE;
    c->head_done = true;
    ex->headers_end = ex->head.len;
    ex->method = p->method;
    http_route_lookup(c->site, ex);
    if (ex->route && ex->route->admit) {
        const char *why = NULL;
        int status = ex->route->admit(ex, &why);
        if (status) {
            ex->status = status;
            ex->why = why ? why : http_reason(status);
        }
    }
    /* No route: 404 (405). A body too large to discard, or of unknown length, is not read
     * at all: the answer goes now and the connection closes. */
    if (!ex->route && ex->status && body_announced(p) &&
        !((p->flags & F_CONTENT_LENGTH) && p->content_length <= c->site->max_discard_bytes) &&
        !ex->why)
        ex->why = ex->status == 404 ? "Not found" : "Method not allowed";
    if (ex->status && ex->why) { /* refused on its head: no 100 Continue, no body read */
        if (body_announced(p)) return refuse_head(c, ex);
        return 0; /* answered at on_message_complete, right after this */
    }
    if (ex->route && ex->route->body == HTTP_BODY_STREAM) return stream_begin(c, ex);
    bool buffered = ex->route && ex->route->body == HTTP_BODY_BUFFER;
    uint64_t limit = buffered ? c->site->max_body_bytes : c->site->max_discard_bytes;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > limit) return refuse(c, 413);
    if (buffered) expect_continue(c, ex);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    struct http_conn *c = conn_of(p);
    struct http_exchange *ex = c->cur;
    if (body_open(c)) {
        int more = ex->sink->data(ex, at, n, ex->sink_arg); /* may answer and free ex */
        if (stopped(c)) return HPE_PAUSED;
        if (more == 0) return 0;
        set_state(c, HTTP_CONN_BODY_WAIT);
        return HPE_PAUSED;
    }
    bool buffered = ex->route && ex->route->body == HTTP_BODY_BUFFER;
    uint64_t limit = buffered ? c->site->max_body_bytes : c->site->max_discard_bytes;
    c->body_bytes += n;
    if (c->body_bytes > limit) return refuse(c, 413);
    if (buffered) buf_append(&ex->body, at, n);
    return 0;
}

/* Queues and dispatches the request (a streamed body's: tells its sink the body is in). Pauses the parser when the connection will close after
 * this answer (stopped for good) or when max_pending answers are outstanding (resumed by
 * flush()). ex may be freed by a handler that answers at once: not touched after dispatch. */
static int on_message_complete(llhttp_t *p) {
    struct http_conn *c = conn_of(p);
    struct http_exchange *ex = c->cur;
    c->cur = NULL;
    bool http10 = p->http_major == 1 && p->http_minor == 0;
    ex->close = !llhttp_should_keep_alive(p) || http10 || p->upgrade;
    bool last = ex->close; /* the connection closes after this answer */
    if (ex->streaming) {   /* queued and dispatched at its head already: the body is all in */
        ex->sink->end(ex, 0, ex->sink_arg);
    } else {
        enqueue(c, ex);
        if (ex->status)
            http_respond_error(ex, ex->status,
                               ex->why             ? ex->why
                               : ex->status == 404 ? "Not found"
                                                   : "Method not allowed");
        else
            ex->route->handler(ex);
    }
    if (last) {
        stop(c);
        return HPE_PAUSED;
    }
    return too_many_pending(c) ? HPE_PAUSED : 0;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Runs llhttp over data and acts on how it stopped: paused (keep the rest in c->held),
 * upgrade (not supported: stop reading), or an error (answer 400/413/431 and close). */
static void execute(struct http_conn *c, const char *data, size_t len) {
    c->feeding = true;
    c->in_start = data;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    c->feeding = false;
    /* What the next input's first header value is preceded by (see on_header_value). */
    const char *end = data + len, *pos = llhttp_get_error_pos(&c->parser);
    if (err == HPE_PAUSED && pos && pos >= data && pos < end) end = pos;
    for (const char *s = end; s > data; s--)
        if (s[-1] != ' ' && s[-1] != '\t') {
            c->before = s[-1];
            break;
        }
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED) {
        if (stopped(c)) return;
        if (end < data + len) buf_append(&c->held, end, (size_t)(data + len - end));
        if (c->state == HTTP_CONN_READING) set_state(c, HTTP_CONN_PAUSED); /* or BODY_WAIT */
        set_reading(c, false);
        return;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        stop(c);
        return;
    }
    if (!stopped(c)) refuse_now(c, c->fail_status ? c->fail_status : 400);
}

/* The peer sent EOF and every byte before it is parsed, yet a streamed body is incomplete. */
static void body_eof(struct http_conn *c) {
    if (c->eof && body_open(c) && c->state == HTTP_CONN_READING && !c->feeding && !c->held.len)
        body_abort(c, UV_EOF);
}

/* Parses held input once answers have drained below max_pending and a streamed body's sink
 * takes more; never re-entered. */
static void resume(struct http_conn *c) {
    while (c->state == HTTP_CONN_PAUSED && !c->feeding && !too_many_pending(c)) {
        struct buf in = c->held;
        buf_init(&c->held);
        set_state(c, HTTP_CONN_READING);
        llhttp_resume(&c->parser);
        /* Even with nothing held: a pause can sit before a step that needs no input (the
         * end of a body that paused on its last byte, a bodiless message after its head). */
        execute(c, in.len ? in.data : "", in.len);
        buf_free(&in);
    }
    if (c->state == HTTP_CONN_READING) set_reading(c, true);
    body_eof(c);
}

static void shut(struct http_conn *c) {
    set_state(c, HTTP_CONN_CLOSED);
    c->io->close(c);
}

/* Writes every answered exchange at the head of the queue, in order. A streamed answer stays
 * at the head, pulling pieces while the window allows, until its body is all out. */
static void write_answered(struct http_conn *c) {
    while (c->state != HTTP_CONN_CLOSED && c->head && c->head->done) {
        struct http_exchange *ex = c->head;
        if (ex->out.len) { /* the whole answer, or a streamed answer's head */
            char *data = ex->out.data;
            size_t len = ex->out.len;
            buf_init(&ex->out);
            out_write(c, data, len);
        }
        if (ex->src && ex->remaining > 0 && !ex->failed) {
            if (ex->pulling || c->unacked >= HTTP_STREAM_WINDOW) return;
            ex->pulling = true;
            ex->src->pull(ex, ex->src_arg); /* may send at once: then loop, not recurse */
            continue;
        }
        c->head = ex->next;
        if (!c->head) c->tail = NULL;
        c->pending--;
        bool close = ex->close || ex->failed;
        const struct http_source *src = ex->src;
        void *arg = ex->src_arg;
        int err = ex->failed ? ex->fail_err : 0;
        exchange_free(ex);
        if (src) src->end(arg, err);
        if (close) {
            shut(c);
            return;
        }
    }
    stream_continue(c);
}

static void flush(struct http_conn *c) {
    if (c->flushing) {
        c->reflush = true;
        return;
    }
    c->flushing = true;
    do {
        c->reflush = false;
        write_answered(c);
        if (c->state != HTTP_CONN_CLOSED) resume(c);
    } while (c->reflush && c->state != HTTP_CONN_CLOSED);
    c->flushing = false;
    if (c->eof && !c->head && !paused(c) && !c->feeding && c->state != HTTP_CONN_CLOSED) shut(c);
}

void http_site_defaults(struct http_site *site) {
    memset(site, 0, sizeof *site);
    site->max_header_bytes = 8192;
    site->max_body_bytes = 1 << 20;
    site->max_discard_bytes = 64 << 10;
    site->max_pending = 16;
}

void http_conn_init(struct http_conn *c, const struct http_site *site,
                    const struct http_conn_io *io) {
    memset(c, 0, sizeof *c);
    c->site = site;
    c->io = io;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
}

int http_conn_feed(struct http_conn *c, const char *data, size_t len) {
    if (stopped(c) || c->eof) return UV_EPIPE;
    if (len == 0) return 0;
    if (paused(c)) {
        buf_append(&c->held, data, len);
        return 0;
    }
    execute(c, data, len);
    resume(c);
    return 0;
}

bool http_conn_read_buffer(struct http_conn *c, bool off_loop, char **base, size_t *len) {
    if (!body_open(c) || c->state != HTTP_CONN_READING || c->feeding || c->held.len ||
        c->lent_sink || *len == 0)
        return false;
    struct http_exchange *ex = c->cur;
    const llhttp_t *p = &c->parser;
    const struct http_sink *sink = ex->sink;
    if (!sink || !sink->buffer || (off_loop && !sink->returned) || (p->flags & F_CHUNKED) ||
        !(p->flags & F_CONTENT_LENGTH) || p->content_length == 0)
        return false;
    size_t most = *len;
    if (sink->buffer(ex, ex->sink_arg, off_loop, base, len) != 0 || *len == 0) return false;
    if (*len > most) *len = most;
    if (*len > p->content_length) *len = (size_t)p->content_length;
    if (off_loop) {
        c->lent_sink = sink;
        c->lent_arg = ex->sink_arg;
    }
    return true;
}

void http_conn_lent_prepare(struct http_conn *c, char *at, size_t n) {
    if (c->lent_sink && n && c->lent_sink->prepare) c->lent_sink->prepare(c->lent_arg, at, n);
}

void http_conn_lent_back(struct http_conn *c) {
    const struct http_sink *sink = c->lent_sink;
    if (!sink) return;
    c->lent_sink = NULL;
    sink->returned(c->lent_arg);
}

void http_conn_eof(struct http_conn *c) {
    if (c->state == HTTP_CONN_CLOSED || c->eof) return;
    c->eof = true;
    if (!c->head && !paused(c) && !c->feeding)
        shut(c);
    else
        body_eof(c);
}

bool http_conn_busy(const struct http_conn *c) {
    unsigned waiting = c->pending;
    if (body_open(c) && c->cur->sink && c->state != HTTP_CONN_BODY_WAIT)
        waiting--; /* on the peer's body */
    return waiting > 0 || c->held.len > 0;
}

enum http_wait http_conn_waiting(const struct http_conn *c) {
    if (c->state == HTTP_CONN_CLOSED) return HTTP_WAIT_NONE;
    if (http_conn_busy(c) || c->state == HTTP_CONN_PAUSED || c->state == HTTP_CONN_BODY_WAIT ||
        c->lent_sink || c->feeding)
        return HTTP_WAIT_US;
    if (c->state == HTTP_CONN_STOPPED) return HTTP_WAIT_NONE;
    if (!c->cur) return HTTP_WAIT_REQUEST;
    return c->head_done ? HTTP_WAIT_BODY : HTTP_WAIT_HEAD;
}

bool http_conn_expire(struct http_conn *c) {
    enum http_wait w = http_conn_waiting(c);
    if (w != HTTP_WAIT_HEAD && w != HTTP_WAIT_BODY) return false;
    set_reading(c, false);
    if (body_open(c)) {
        body_abort(c, UV_ETIMEDOUT); /* the handler answers, now or after its cleanup */
        return true;
    }
    refuse_now(c, 408);
    return true;
}

void http_conn_written(struct http_conn *c, size_t len) {
    if (c->state == HTTP_CONN_CLOSED) return;
    c->unacked -= len < c->unacked ? len : c->unacked;
    struct http_exchange *ex = c->head;
    if (ex && ex->done && ex->src && !ex->pulling && c->unacked < HTTP_STREAM_WINDOW) flush(c);
}

void http_conn_close(struct http_conn *c) {
    struct http_exchange *body = body_open(c) ? c->cur : NULL; /* queued: detached below */
    if (c->cur && !body) exchange_free(c->cur);
    c->cur = NULL;
    for (struct http_exchange *ex = c->head, *next; ex; ex = next) {
        next = ex->next;
        ex->next = NULL;
        if (ex->done && !(ex->src && ex->pulling)) {
            const struct http_source *src = ex->src;
            void *arg = ex->src_arg;
            exchange_free(ex);
            if (src) src->end(arg, UV_ECONNRESET);
        } else { /* with its handler (or a pull): freed by its answer */
            ex->conn = NULL;
        }
    }
    c->head = c->tail = NULL;
    c->pending = 0;
    buf_free(&c->held);
    set_state(c, HTTP_CONN_CLOSED);
    if (body && body->sink) body->sink->end(body, UV_ECONNRESET, body->sink_arg);
}

llhttp_method_t http_method(const struct http_exchange *ex) { return ex->method; }
const char *http_path(const struct http_exchange *ex) { return ex->head.data + ex->path_off; }
const char *http_query(const struct http_exchange *ex) { return ex->head.data + ex->query_off; }
const struct buf *http_body(const struct http_exchange *ex) { return &ex->body; }

const char *http_param(const struct http_exchange *ex, unsigned i) {
    return i < ex->nparams ? ex->head.data + ex->param_off[i] : NULL;
}

const char *http_header(const struct http_exchange *ex, const char *name) {
    const char *d = ex->head.data;
    size_t off = ex->url_end;
    while (d && off < ex->headers_end) {
        const char *n = d + off;
        off += strlen(n) + 1;
        if (off >= ex->headers_end) break; /* every name has a value: never taken */
        const char *v = d + off;
        off += strlen(v) + 1;
        if (strcasecmp(n, name) == 0) return v;
    }
    return NULL;
}

const char *http_peer(const struct http_exchange *ex) { return ex->conn ? ex->conn->peer : ""; }

const struct http_site *http_site_of(const struct http_exchange *ex) {
    return ex->conn ? ex->conn->site : NULL;
}

void http_add_header(struct http_exchange *ex, const char *name, const char *value) {
    buf_printf(&ex->extra, "%s: %s\r\n", name, value);
}

const char *http_reason(int status) {
    static const struct {
        int status;
        const char *text;
    } reasons[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Payload Too Large"},
        {415, "Unsupported Media Type"},
        {418, "I'm a teapot"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
        {507, "Insufficient Storage"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        if (reasons[i].status == status) return reasons[i].text;
    return "Unknown";
}

/* Writes ex's answer head into ex->out; returns false when the status takes no body. An
 * answer given while ex's streamed body is still coming ends reading: the rest is not read, so
 * the connection closes after the answer. */
static bool answer_head(struct http_exchange *ex, int status, const char *content_type,
                        uint64_t len) {
    struct http_conn *c = ex->conn;
    if (c->cur == ex) {
        c->cur = NULL;
        stop(c);
        ex->close = true;
    }
    bool bodiless = status < 200 || status == 204 || status == 304;
    const char *headers = c->site->headers ? c->site->headers : "";
    struct buf *o = &ex->out;
    buf_reserve(o, 160 + strlen(headers) + ex->extra.len +
                       (bodiless ? 0 : (size_t)(len < 65536 ? len : 0)));
    buf_printf(o, "HTTP/1.1 %d %s\r\n%sX-Content-Type-Options: nosniff\r\n", status,
               http_reason(status), headers);
    if (!bodiless) {
        if (len > 0 && content_type) buf_printf(o, "Content-Type: %s\r\n", content_type);
        buf_printf(o, "Content-Length: %llu\r\n", (unsigned long long)len);
    }
    buf_append(o, ex->extra.data, ex->extra.len);
    if (ex->close) buf_puts(o, "Connection: close\r\n");
    buf_puts(o, "\r\n");
    return !bodiless;
}

void http_respond(struct http_exchange *ex, int status, const char *content_type, const char *body,
                  size_t len) {
    assert(!ex->done);
    struct http_conn *c = ex->conn;
    if (!c) { /* detached: nobody to answer */
        exchange_free(ex);
        return;
    }
    if (answer_head(ex, status, content_type, len) && ex->method != HTTP_HEAD)
        buf_append(&ex->out, body, len);
    ex->done = true;
    flush(c);
}

void http_respond_stream(struct http_exchange *ex, int status, const char *content_type,
                         uint64_t len, const struct http_source *src, void *arg) {
    assert(!ex->done);
    struct http_conn *c = ex->conn;
    if (!c) {
        exchange_free(ex);
        src->end(arg, UV_ECONNRESET);
        return;
    }
    bool body = answer_head(ex, status, content_type, len);
    ex->src = src;
    ex->src_arg = arg;
    ex->remaining = body && ex->method != HTTP_HEAD ? len : 0;
    ex->done = true;
    flush(c);
}

void http_stream_send(struct http_exchange *ex, char *data, size_t n) {
    assert(ex->pulling && n > 0 && n <= ex->remaining);
    ex->pulling = false;
    struct http_conn *c = ex->conn;
    if (!c) { /* the connection went while the piece was being made */
        const struct http_source *src = ex->src;
        void *arg = ex->src_arg;
        free(data);
        exchange_free(ex);
        src->end(arg, UV_ECONNRESET);
        return;
    }
    ex->remaining -= n;
    out_write(c, data, n);
    flush(c);
}

void http_stream_fail(struct http_exchange *ex, int err) {
    assert(ex->pulling);
    ex->pulling = false;
    struct http_conn *c = ex->conn;
    if (!c) {
        const struct http_source *src = ex->src;
        void *arg = ex->src_arg;
        exchange_free(ex);
        src->end(arg, err);
        return;
    }
    ex->failed = true;
    ex->fail_err = err;
    flush(c);
}

int http_body_start(struct http_exchange *ex, const struct http_sink *sink, void *arg) {
    struct http_conn *c = ex->conn;
    if (!c) return UV_ECONNRESET;
    assert(ex->streaming && !ex->sink && c->cur == ex);
    ex->sink = sink;
    ex->sink_arg = arg;
    if (c->state == HTTP_CONN_BODY_WAIT) body_go(c);
    stream_continue(c);
    if (!c->feeding) resume(c); /* inside the handler's first call, parsing just goes on */
    return 0;
}

void http_body_resume(struct http_exchange *ex) {
    struct http_conn *c = ex->conn;
    if (!c || c->cur != ex || c->state != HTTP_CONN_BODY_WAIT || !ex->sink) return;
    body_go(c);
    resume(c);
}

/* A 500's message goes to the log under a fresh id; the client gets the id only. */
static const char *internal_error(const struct http_exchange *ex, const char *msg, char *out,
                                  size_t len) {
    uint8_t r[6] = {0};
    char id[16], q[600], pq[300];
    if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) { /* no entropy: a counter */
        static uint64_t seq;
        uint64_t n = ++seq;
        memcpy(r, &n, sizeof r);
    }
    snprintf(id, sizeof id, "E-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
    const char *path = ex->head.data && ex->path_off ? http_path(ex) : "";
    log_error("internal error answered 500", " error_id=%s method=%s path=%s detail=%s", id,
              llhttp_method_name(ex->method), log_q(pq, sizeof pq, path),
              log_q(q, sizeof q, msg ? msg : ""));
    snprintf(out, len,
             "internal error on this node (error id %s); the node's log has the "
             "details under that id",
             id);
    return out;
}

void http_respond_error(struct http_exchange *ex, int status, const char *msg) {
    struct buf b;
    struct json j;
    char shown[160];
    if (status == 500) msg = internal_error(ex, msg, shown, sizeof shown);
    buf_init(&b);
    json_init(&j, &b);
    json_obj_open(&j);
    json_key(&j, "ErrorMessage");
    json_str(&j, msg);
    json_key(&j, "Errors"); /* Octopus's shape: the details, here the message again */
    json_arr_open(&j);
    json_str(&j, msg);
    json_arr_close(&j);
    json_obj_close(&j);
    http_respond(ex, status, "application/json", b.data, b.len);
    buf_free(&b);
}
