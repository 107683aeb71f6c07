/* http.h: the HTTP/1.1 connection core, independent of any transport and of what it serves.
 *
 * A connection core (struct http_conn) is fed bytes and emits whole responses through the
 * function pointers of its struct http_conn_io; the libuv server (server.c), the tests and the
 * fuzzer each supply their own io. llhttp parses. Each request becomes an exchange, matched
 * against a route table (struct http_site) and handed to the route's handler, which answers
 * with http_respond() now or later (after a Redis round trip, say). Answers leave strictly in
 * request order; at most site->max_pending answers may be outstanding before parsing pauses.
 *
 * Lifetimes: a site is borrowed by every conn until http_conn_close(). An exchange belongs to
 * the core until its handler is called, then to the handler until http_respond(); if the
 * connection goes first the exchange is detached and http_respond() merely frees it.
 * Everything runs on the loop thread.
 *
 * Every answer carries the site's header lines (the node's Octopus-Node) and
 * X-Content-Type-Options: nosniff. A
 * route's admit function (if any) judges a request on its head before any "100 Continue" and
 * before its body is read. The core refuses with 400, itself: folded header lines (obs-fold, a
 * line starting with SP or HT) and a request target holding %00.
 *
 * Streaming, both ways, in constant memory: an HTTP_BODY_STREAM route's handler runs when the
 * request head is in and takes the body through a sink (struct http_sink) as it arrives, with
 * backpressure (the sink says "pause", the core stops reading the socket until
 * http_body_resume()); http_respond_stream() sends a body of known length that a source
 * (struct http_source) produces piece by piece, each piece pulled only while the transport
 * holds less than HTTP_STREAM_WINDOW unacknowledged bytes (http_conn_written()). */
#ifndef SHOAL_HTTP_HTTP_H
#define SHOAL_HTTP_HTTP_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"

struct http_exchange;
struct http_conn;

/* What a route does with a request body. */
enum http_body {
    HTTP_BODY_NONE,   /* read and discarded, up to site->max_discard_bytes; 413 above */
    HTTP_BODY_BUFFER, /* collected for http_body(), up to site->max_body_bytes; 413 above */
    HTTP_BODY_STREAM, /* no limit: the handler runs after the head and takes the body through
                        * http_body_start() as it arrives (see "streamed request bodies") */
};

/* Decides on a request from its head alone, before the core sends "100 Continue" or reads a
 * byte of its body, and before the handler runs. Returns 0 to admit ex, or the status to refuse
 * it with (401, 403, 503...) and a message in *why (static text); it may add headers to the
 * refusal (http_add_header) but must not answer ex. The core then answers with
 * http_respond_error(): at once, closing the connection after the answer when a body was
 * announced (it is never read), or after the (empty) message otherwise, keeping the connection.
 * The core knows nothing of what is checked: the API's key check is one such function. */
typedef int (*http_admit_fn)(struct http_exchange *ex, const char **why);

/* One row of a route table. A pattern is an absolute path whose "{name}" segments each match
 * one non-empty segment (read with http_param()); the row's GET also answers HEAD. */
struct http_route {
    llhttp_method_t method;                    /* HTTP_GET, HTTP_PUT, ... */
    const char *pattern;                       /* "/api/octopusservernodes/{id}" */
    void (*handler)(struct http_exchange *ex); /* must answer ex, now or later, exactly once */
    enum http_body body;
    http_admit_fn admit; /* NULL: open to every request */
};

/* A route table plus the limits and context shared by every connection of one server. */
struct http_site {
    const struct http_route *routes; /* borrowed; looked up in order, first match wins */
    size_t nroutes;
    const char *headers;            /* borrowed: header lines every answer carries, each
                                       * ended by CRLF ("Octopus-Node: n1\r\n"), or NULL */
    void *data;                     /* borrowed: handlers' context (http_site_of(ex)->data) */
    uv_loop_t *loop;                /* borrowed: the loop handlers run on (timers, file I/O);
                                       * NULL without a libuv transport (core tests, fuzzing) */
    size_t max_header_bytes;        /* request line + headers above this: 431 and close */
    size_t max_body_bytes;          /* HTTP_BODY_BUFFER limit */
    size_t max_discard_bytes;       /* HTTP_BODY_NONE limit */
    unsigned max_pending;           /* answers outstanding on one connection before pausing */
    const struct http_stats *stats; /* borrowed: the transport's connection counters (for
                                       * /metrics), or NULL without one */
};

/* A server's connection counters, kept by the transport (server.c) and read by /metrics. */
struct http_stats {
    uint64_t open;          /* connections being served now (refused ones not counted) */
    uint64_t refused_node;  /* closed at accept: the node's connection cap was reached */
    uint64_t refused_ip;    /* ... the peer address's connection cap was reached */
    uint64_t head_timeouts; /* closed: a request head (or a first request) came too slowly */
    uint64_t body_timeouts; /* closed: a request body delivered nothing for too long */
    uint64_t accept_errors; /* accept() failed (EMFILE, ENFILE, ENOMEM, ...) */
};

/* Fills site with the defaults (8 KiB headers, 1 MiB bodies, 64 KiB discard, 16 pending). */
void http_site_defaults(struct http_site *site);

/* The transport behind a connection core. Each is called on the loop thread, possibly from
 * inside http_conn_feed() or http_respond(); none may call back into the core. */
struct http_conn_io {
    /* Writes len bytes and takes ownership of data (free() it when written). */
    void (*write)(struct http_conn *c, char *data, size_t len);
    /* The core does (on) or does not (!on) want more input; input that still arrives while
     * off is held, not lost, but should stop soon (bounded memory). May be NULL. */
    void (*read_ctl)(struct http_conn *c, bool on);
    /* The core is done: close after what was written has been flushed. The core will write
     * no more; the transport calls http_conn_close() once it has let go of the connection. */
    void (*close)(struct http_conn *c);
    /* True when the transport calls http_conn_written() as writes complete (streamed answers
     * then pace themselves on it); false: every write counts as done at once. */
    bool acks_writes;
};

/* A streamed answer pulls its next piece only while fewer unacknowledged bytes than this are
 * with the transport (so a slow reader costs at most this plus one piece). */
#define HTTP_STREAM_WINDOW (512u << 10)

/* Which span of a request head the parser is in (http.c keeps spans NUL-separated). */
enum http_span {
    HTTP_SPAN_URL,
    HTTP_SPAN_LINE,
    HTTP_SPAN_FIELD,
    HTTP_SPAN_FIELD_DONE,
    HTTP_SPAN_VALUE
};

/* Where a connection is in its life; the core's other flags are orthogonal to it (eof: the
 * peer's side; lent_sink: a loan that outlives any state; feeding, flushing: re-entrancy).
 *
 *   READING    parses input as it arrives
 *   PAUSED     llhttp is paused: input is held (c->held) until answers drain below
 *              max_pending (or a pause before a step that needs no input is run on)
 *   BODY_WAIT  paused on a streamed body (cur): its handler has not taken it yet, or its sink
 *              pushed back; held until http_body_start() / http_body_resume()
 *   STOPPED    reads no more requests (Connection: close, a refusal, an error, an upgrade, a
 *              deadline); answers what it has, then closes
 *   CLOSED     io->close() was called or http_conn_close() ran: writes nothing more
 *
 * Transitions (anything else is a bug, asserted in http.c):
 *   READING   -> PAUSED     llhttp paused (answers outstanding) and the input is held
 *   READING   -> BODY_WAIT  a streamed body's head is in and no sink yet, or its sink said
 *                           "pause" (while llhttp runs: it pauses on return)
 *   BODY_WAIT -> READING    the body is taken (or resumed) while llhttp still runs
 *   BODY_WAIT -> PAUSED     ... once llhttp has paused: resume() runs it on
 *   PAUSED    -> READING    resume(): answers drained, the held input is parsed
 *   any open  -> STOPPED    a final answer, a refusal, an error, an upgrade, a deadline
 *   any       -> CLOSED     shut() (io->close) or http_conn_close()
 * STOPPED and CLOSED are never left; stopping a CLOSED connection leaves it CLOSED (a
 * handler may answer, and so close, while llhttp still runs over the rest of the input). */
enum http_conn_state {
    HTTP_CONN_READING,
    HTTP_CONN_PAUSED,
    HTTP_CONN_BODY_WAIT,
    HTTP_CONN_STOPPED,
    HTTP_CONN_CLOSED,
};

/* One connection's parsing and answering state: embedded by the transport (container_of). */
struct http_conn {
    llhttp_t parser;               /* parser->data unused: container_of finds us */
    const struct http_site *site;  /* borrowed */
    const struct http_conn_io *io; /* borrowed */
    enum http_conn_state state;    /* see above; only http.c's set_state() changes it */
    struct http_exchange *cur;     /* the request being parsed, or NULL */
    struct http_exchange *head;    /* dispatched requests in order, oldest first */
    struct http_exchange *tail;
    unsigned pending;      /* exchanges in the head..tail queue */
    struct buf held;       /* input received while paused, parsed on resume */
    size_t head_bytes;     /* request line + headers of cur, counted so far */
    uint64_t body_bytes;   /* body of cur, counted so far */
    uint64_t unacked;      /* written to io, not yet acknowledged (acks_writes only) */
    int fail_status;       /* set by a parser callback that refuses the request */
    const char *fail_text; /* ... and its message (static), or NULL: the default */
    const char *in_start;  /* the input llhttp_execute() is running over */
    char before;           /* the last byte other than SP/HT parsed before in_start */
    enum http_span span;   /* which span of cur's head is being received */
    bool head_done;        /* cur's head is complete: its body (if any) is being read
                                     * (a request's part, not the connection's state: chunked
                                     * trailers come after it and do not undo it) */
    bool eof;              /* the peer sent EOF: close once answered (any state) */
    bool read_off;         /* io->read_ctl(c, false) is in force */
    bool feeding;          /* inside llhttp_execute: no re-entry */
    bool flushing;         /* inside flush(): a nested call only asks for another pass */
    bool reflush;          /* ... which this records */
    uint64_t requests;     /* requests begun on this connection (deadlines tell them
                                     * apart) */
    char peer[48];         /* the peer's address as text ("127.0.0.1"), set by the transport
                                     * after http_conn_init; "" when unknown */
    /* A read off the loop: non-NULL while a sink's memory is lent (http_conn_read_buffer with
     * off_loop) until http_conn_lent_back(), whatever the state meanwhile (the connection
     * may stop or close while the read runs; the memory still comes back exactly once). */
    const struct http_sink *lent_sink; /* ... whose returned() http_conn_lent_back() calls */
    void *lent_arg;
};

/* Initialises c to serve site through io; both borrowed until http_conn_close(). */
void http_conn_init(struct http_conn *c, const struct http_site *site,
                    const struct http_conn_io *io);

/* Parses len bytes; handlers run and answers are written before it returns where they can.
 * data is borrowed for the call only. Returns 0, or UV_EPIPE when the connection no longer
 * reads (stopped or closed: the bytes are dropped). */
int http_conn_feed(struct http_conn *c, const char *data, size_t len);

/* Where the transport should read next: true with the body's sink's own memory (see
 * http_sink.buffer), false for the transport's own buffer. On entry *len is the most the
 * transport reads now; on return it is also at most what remains of the body, so no byte of a
 * next request lands there. off_loop: the transport will read into that memory on another
 * thread (only with a sink that has returned()); the memory is then lent until
 * http_conn_lent_back(), and the transport feeds what it read with http_conn_feed() first. */
bool http_conn_read_buffer(struct http_conn *c, bool off_loop, char **base, size_t *len);

/* On the reading thread, after reading n bytes into the lent memory at at: the sink's prepare
 * (when it has one). The only core call allowed off the loop. */
void http_conn_lent_prepare(struct http_conn *c, char *at, size_t n);

/* The read off the loop that http_conn_read_buffer(c, true, ...) lent memory for is over and
 * its bytes (if any) fed: the sink gets the memory back (http_sink.returned). Call it exactly
 * once per lending, before http_conn_close(); harmless when nothing is lent. */
void http_conn_lent_back(struct http_conn *c);

/* The peer will send no more: the connection closes once every request read is answered. */
void http_conn_eof(struct http_conn *c);

/* True while a dispatched request awaits its answer, or input is held (not idle). A streamed
 * body being read does not count: then the core waits on the peer, not on itself. */
bool http_conn_busy(const struct http_conn *c);

/* What the core waits for now, for the transport's deadlines: the peer's next request (idle
 * keep-alive, or a fresh connection when c->requests is 0), the rest of a request head, more
 * of a request body; or nothing from the peer: a handler is working, the answers pause
 * parsing, a sink pushed back or holds lent memory (WAIT_US: no deadline is the peer's
 * fault), or the core reads no more (WAIT_NONE: closing, or stopped with nothing to answer). */
enum http_wait {
    HTTP_WAIT_REQUEST,
    HTTP_WAIT_HEAD,
    HTTP_WAIT_BODY,
    HTTP_WAIT_US,
    HTTP_WAIT_NONE,
};
enum http_wait http_conn_waiting(const struct http_conn *c);

/* The transport's deadline for what http_conn_waiting() reports passed. A late head, or a late
 * buffered or discarded body, is answered 408 (Connection: close; the core then reads no more
 * and calls io->close once the answer is written); a late streamed body ends for its sink with
 * UV_ETIMEDOUT and its handler answers. Returns true when an answer will come (let the
 * connection be closed through io->close), false when there is nothing to answer (the
 * transport closes at once). */
bool http_conn_expire(struct http_conn *c);

/* The transport wrote len bytes it was given (io->acks_writes): streamed answers go on. Call
 * from the transport's write callback, never from inside an io function. */
void http_conn_written(struct http_conn *c, size_t len);

/* Frees what c owns. Exchanges still with their handler are detached, not freed. Call once,
 * from outside the core's callbacks (the transport's close callback); calls no io. */
void http_conn_close(struct http_conn *c);

/* --- for handlers: reading the request (valid until http_respond) --- */

llhttp_method_t http_method(const struct http_exchange *ex); /* HEAD is reported as HEAD */
const char *http_path(const struct http_exchange *ex);       /* normalised, no query */
const char *http_query(const struct http_exchange *ex);      /* after '?', "" if none */
/* The i-th "{name}" segment of the matched pattern, or NULL. */
const char *http_param(const struct http_exchange *ex, unsigned i);
/* First header of that name (case-insensitive), or NULL. */
const char *http_header(const struct http_exchange *ex, const char *name);
/* The body of an HTTP_BODY_BUFFER route (empty otherwise). */
const struct buf *http_body(const struct http_exchange *ex);
/* The peer's address as the transport recorded it ("" when unknown or detached). */
const char *http_peer(const struct http_exchange *ex);
/* The site, or NULL once the connection is gone (the answer would be dropped). */
const struct http_site *http_site_of(const struct http_exchange *ex);

/* --- for handlers: answering --- */

/* Adds a response header ("Allow", "GET, HEAD") to the coming answer. Copied. */
void http_add_header(struct http_exchange *ex, const char *name, const char *value);

/* Answers ex: status, Content-Type (used when len > 0) and body (copied; omitted for HEAD,
 * Content-Length kept). Gives ex back to the core (or frees it, if detached): ex must not be
 * used afterwards. Safe to call from inside the handler or any time later. */
void http_respond(struct http_exchange *ex, int status, const char *content_type, const char *body,
                  size_t len);

/* Answers with {"ErrorMessage":msg} as application/json. A 500 does not show msg: it is
 * logged at error level with a fresh error id ("E-" and 12 hex digits), and the answer gives a
 * short message holding that id, so internal text (Redis's errors, Lua line numbers) never
 * reaches a client while an operator can still find it. */
void http_respond_error(struct http_exchange *ex, int status, const char *msg);

/* --- streamed request bodies (HTTP_BODY_STREAM routes) ---
 * The handler runs as soon as the request head is in, before any body byte is read. It either
 * answers at once (the body is then never read and the connection closes after the answer), or
 * calls http_body_start(), now or later (nothing is read meanwhile), with a sink that gets the
 * body as it arrives. "100 Continue" is sent at that moment (when the client asked and no
 * earlier answer is outstanding), so a client that waits for it sends a body only to a handler
 * that takes it. The handler answers after sink->end, or earlier to refuse the body half-way
 * (the connection then closes after the answer, as the rest of the body is not read). */
struct http_sink {
    /* n bytes of body, borrowed for the call. Returns 0 for more, or 1 to stop reading until
     * http_body_resume(ex) (backpressure: the socket is not read meanwhile). May answer ex
     * (then no further sink calls; the return value is ignored). */
    int (*data)(struct http_exchange *ex, const char *at, size_t n, void *arg);
    /* The body is complete (err 0) or never will be: UV_EPROTO (malformed framing, such as bad
     * chunked encoding), UV_EOF (the peer closed its side first), UV_ECONNRESET (the connection
     * is gone: the answer will be dropped). Called once, unless the handler answered before.
     * The handler then answers ex, now or later, as always (that also frees it). */
    void (*end)(struct http_exchange *ex, int err, void *arg);
    /* Optional: memory of the sink's own where the next body bytes are to be read, so that
     * they arrive where the sink keeps them instead of being copied there. On entry *len is
     * the most the transport will read. Returns 0 with *base and *len (at least 1, at most
     * that), or -1: the transport's buffer as usual. Asked only while a Content-Length body
     * (not chunked) is being read and no input is held; the next data call then gets at most
     * *len bytes at *base. off_loop (only asked of a sink with returned): another thread will
     * write that memory, and it stays lent until returned() (see below). */
    int (*buffer)(struct http_exchange *ex, void *arg, bool off_loop, char **base, size_t *len);
    /* Optional, with buffer: the sink takes reads off the loop. Memory lent by buffer(ex, arg,
     * true, ...) comes back by this call, exactly once per lending, after the data call with
     * the bytes read there (if any) and even when the handler answered or end came meanwhile:
     * until then the sink keeps arg and that memory alive. */
    void (*returned)(void *arg);
    /* Optional, with returned: runs on the reading thread after a read into lent memory and
     * before the data call with those bytes on the loop (which still gets the span the
     * transport read). It may rework that memory in place (an upload strips multipart framing
     * there) and touch only what the loop leaves alone while the memory is lent. */
    void (*prepare)(void *arg, char *at, size_t n);
};

/* Starts delivering the body of a STREAM route's exchange to sink (sink and arg borrowed until
 * end or the handler's answer). Sink calls may happen before this returns. Returns 0, or
 * UV_ECONNRESET when the connection is already gone (no sink call will come; answer ex). */
int http_body_start(struct http_exchange *ex, const struct http_sink *sink, void *arg);

/* Reading goes on after sink->data returned 1. Harmless when not paused or ex is detached. */
void http_body_resume(struct http_exchange *ex);

/* --- streamed answers --- */
struct http_source {
    /* Wants the next piece: the handler calls http_stream_send() (or http_stream_fail()) once,
     * now or later. Never called again before that. */
    void (*pull)(struct http_exchange *ex, void *arg);
    /* The answer is over: err 0 when all len bytes were handed to the transport, negative when
     * the connection went away (UV_ECONNRESET) or http_stream_fail() gave up. ex is gone by
     * then: release arg. Called exactly once, possibly from inside http_respond_stream()
     * (HEAD, len 0, connection gone), http_stream_send() or http_stream_fail(). */
    void (*end)(void *arg, int err);
};

/* Answers ex with status, Content-Type and a body of exactly len bytes produced by src (src and
 * arg borrowed until src->end). HEAD answers carry the head only. Gives ex to the core. */
void http_respond_stream(struct http_exchange *ex, int status, const char *content_type,
                         uint64_t len, const struct http_source *src, void *arg);
/* The piece a pull asked for: n > 0 bytes, no more than what remains of len; takes ownership
 * of data (malloc'd). */
void http_stream_send(struct http_exchange *ex, char *data, size_t n);
/* The body cannot be completed (a read error): the connection is closed, so the client sees
 * fewer bytes than Content-Length promised; src->end gets err. Answers a pull. */
void http_stream_fail(struct http_exchange *ex, int err);

/* The reason phrase for a status ("Not Found"); "Unknown" for codes we never send. */
const char *http_reason(int status);

#endif
