/* http_int.h: the exchange record, shared by http.c (parsing, answering) and http_route.c
 * (path normalisation and route lookup). Not for handlers: they use http.h's accessors. */
#ifndef SHOAL_HTTP_HTTP_INT_H
#define SHOAL_HTTP_HTTP_INT_H

#include "http/http.h"

#define HTTP_MAX_PARAMS 4

/* One request and, once answered, its serialised response. The head buffer holds the request's
 * strings NUL-terminated, in order: url, then name/value pairs, then (after routing) the
 * normalised path, the query and each captured parameter. Offsets, not pointers, because head
 * grows while parsing. */
struct http_exchange {
    struct http_exchange *next;        /* the connection's answer queue, request order */
    struct http_conn *conn;            /* NULL once detached: the connection is gone */
    const struct http_route *route;    /* the matched row; NULL when answered by the core */
    struct buf head;                   /* url, headers, path, query, params (see above) */
    struct buf body;                   /* HTTP_BODY_BUFFER routes only */
    struct buf extra;                  /* response headers added by http_add_header() */
    struct buf out;                    /* the whole answer, once done */
    size_t url_end;                    /* offset just past the url's NUL: headers start */
    size_t headers_end;                /* offset just past the last header's NUL */
    size_t path_off;                   /* normalised path */
    size_t query_off;                  /* query string, "" if none */
    size_t param_off[HTTP_MAX_PARAMS]; /* captured "{name}" segments */
    unsigned nparams;
    int status;             /* 404/405/400 decided by routing, or a refusal by
                                        * the route's admit; 0 = dispatch to route */
    const char *why;        /* status's message (static), or NULL: the default */
    llhttp_method_t method; /* as requested; HEAD answers carry no body */
    bool close;             /* close the connection after this answer */
    bool done;              /* out holds the answer (a streamed one: its head) */
    /* A streamed request body (HTTP_BODY_STREAM): queued when its head was in; the body is
     * read while it is the conn's cur. */
    bool streaming;               /* queued at its head; its body goes to sink */
    bool want_continue;           /* "Expect: 100-continue" not yet answered */
    const struct http_sink *sink; /* borrowed, set by http_body_start() */
    void *sink_arg;
    /* A streamed answer (http_respond_stream). */
    const struct http_source *src; /* borrowed; NULL for an answer held in out */
    void *src_arg;
    uint64_t remaining; /* body bytes still to pull */
    bool pulling;       /* src->pull asked, no http_stream_send() yet */
    bool failed;        /* http_stream_fail(): close instead of finishing */
    int fail_err;
};

/* Normalises ex's url (doubled slashes, trailing slash, absolute form, query), finds the route
 * for ex->method and sets ex->route and params, or ex->status 404, or 405 plus an Allow header,
 * or 400 with ex->why when the url holds %00 (decoded anywhere, it would cut a string short).
 * ex->head must hold the url and headers, headers_end set. */
void http_route_lookup(const struct http_site *site, struct http_exchange *ex);

#endif
