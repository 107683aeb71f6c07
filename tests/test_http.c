/* test_http.c: the node's HTTP server through real sockets. Most tests hand the server one end
 * of a socketpair (http_server_adopt_fd) and speak on the other through a uv_pipe in the same
 * loop: exact request bytes in, exact response bytes out. Others use loopback TCP on port 0
 * (one connection, 2,000 at once, a forked blocking client). Every wait is bounded by a guard
 * timer; every test ends with uv_loop_close() == 0. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/services.h"
#include "common/util.h"
#include "http/http.h"
#include "http/server.h"
#include "worker/routes.h"

#define NODE "node-a"
#define SELF "/api/octopusservernodes/OctopusServerNodes-" NODE
#define PING_REQ "GET /api/octopusservernodes/ping HTTP/1.1\r\nHost: x\r\n\r\n"
#define HEALTHZ_BODY "{\"status\":\"ok\"}"
#define MAX_CLIENTS 8

struct client;

struct fx {
    uv_loop_t loop;
    struct node_view view;
    struct node_services svc; /* the view only: keyed routes answer 503 */
    struct http_site site;    /* the node's routes (worker/routes.c) */
    struct http_server *srv;
    uv_timer_t guard; /* bounds every spin() */
    bool expired;
    bool srv_closed;
    struct client *clients[MAX_CLIENTS];
    unsigned nclients;
};

struct client {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } h;
    uv_connect_t creq;
    struct buf in; /* everything received */
    bool connected, eof, closed;
    int err; /* first read/connect error */
};

struct send_req {
    uv_write_t req;
    char data[];
};

static char rbuf[64 << 10];

/* --- the loop --- */

static void guard_cb(uv_timer_t *t) { ((struct fx *)t->data)->expired = true; }

/* Runs the loop until pred(arg) holds or ms pass. Returns pred(arg). */
static bool spin(struct fx *f, bool (*pred)(void *), void *arg, uint64_t ms) {
    f->expired = false;
    uv_timer_start(&f->guard, guard_cb, ms, 0);
    while (!pred(arg) && !f->expired) uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    return pred(arg);
}

/* Starts the fixture's server with cfg (its listen address is replaced by 127.0.0.1:0). */
static void fx_start_conf(struct fx *f, struct http_server_config cfg) {
    memset(f, 0, sizeof *f);
    log_set_level("warn");
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    snprintf(f->view.name, sizeof f->view.name, "%s", NODE);
    f->view.version = "0.1.0";
    f->view.last_seen_ms = INT64_C(1700000000123); /* 2023-11-14T22:13:20.123+00:00 */
    f->view.cap = 4;
    f->view.redis_ok = true;
    f->view.registered = true;
    cfg.listen = "127.0.0.1:0";
    f->svc.view = &f->view;
    f->site.data = &f->svc;
    f->site.headers = "Octopus-Node: " NODE "\r\n";
    f->site.routes = node_routes_build(&f->site.nroutes);
    cr_assert_eq(http_server_new(&f->loop, &cfg, &f->site, &f->srv), 0);
    cr_assert_gt(http_server_port(f->srv), 0);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
}

static void fx_start_cfg(struct fx *f, uint64_t idle_ms, size_t max_header) {
    fx_start_conf(
        f, (struct http_server_config){.idle_timeout_ms = idle_ms, .max_header_bytes = max_header});
}

static void fx_start(struct fx *f) { fx_start_cfg(f, 5000, 8192); }

static void client_close_cb(uv_handle_t *h) {
    struct client *cl = h->data;
    cl->closed = true;
}

static void client_close(struct client *cl) {
    if (!uv_is_closing(&cl->h.handle)) uv_close(&cl->h.handle, client_close_cb);
}

static bool client_closed(void *arg) { return ((struct client *)arg)->closed; }
static bool srv_closed(void *arg) { return ((struct fx *)arg)->srv_closed; }
static void srv_done_cb(void *arg) { ((struct fx *)arg)->srv_closed = true; }

/* Closes clients and server, and proves nothing was left open. */
static void fx_finish(struct fx *f) {
    for (unsigned i = 0; i < f->nclients; i++) {
        cr_assert_eq(f->clients[i]->in.len, 0, "unexpected bytes: %s", f->clients[i]->in.data);
        client_close(f->clients[i]);
        cr_assert(spin(f, client_closed, f->clients[i], 2000));
        buf_free(&f->clients[i]->in);
    }
    http_server_close(f->srv, srv_done_cb, f);
    cr_assert(spin(f, srv_closed, f, 2000), "server did not finish closing");
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&f->loop), 0, "a handle was left open");
    free((void *)f->site.routes);
}

/* --- clients --- */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
    b->base = rbuf;
    b->len = sizeof rbuf;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    struct client *cl = s->data;
    if (n > 0)
        buf_append(&cl->in, b->base, (size_t)n);
    else if (n == UV_EOF)
        cl->eof = true;
    else if (n < 0) {
        cl->eof = true;
        if (!cl->err) cl->err = (int)n;
    }
}

static void send_cb(uv_write_t *req, int status) { free(container_of(req, struct send_req, req)); }

static void client_send(struct client *cl, const char *data, size_t n) {
    struct send_req *r = xmalloc(sizeof *r + n);
    memcpy(r->data, data, n);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)n);
    cr_assert_eq(uv_write(&r->req, &cl->h.stream, &b, 1, send_cb), 0);
}

static void client_sends(struct client *cl, const char *s) { client_send(cl, s, strlen(s)); }

/* A client on a socketpair whose other end the server adopts. */
static void client_pair(struct fx *f, struct client *cl) {
    int sv[2];
    memset(cl, 0, sizeof *cl);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(uv_pipe_init(&f->loop, &cl->h.pipe, 0), 0);
    cl->h.handle.data = cl;
    cr_assert_eq(uv_pipe_open(&cl->h.pipe, sv[1]), 0);
    cr_assert_eq(http_server_adopt_fd(f->srv, sv[0]), 0);
    cr_assert_eq(uv_read_start(&cl->h.stream, alloc_cb, read_cb), 0);
    cl->connected = true;
    cr_assert_lt(f->nclients, MAX_CLIENTS);
    f->clients[f->nclients++] = cl;
}

static void connect_cb(uv_connect_t *req, int status) {
    struct client *cl = req->handle->data;
    if (status < 0) {
        cl->err = status;
        cl->eof = true;
        return;
    }
    cl->connected = true;
    uv_read_start(&cl->h.stream, alloc_cb, read_cb);
}

/* A loopback TCP client of the fixture's server from the address from (127.x.y.z); not
 * registered with the fixture. */
static void client_tcp_from(struct fx *f, struct client *cl, const char *from) {
    struct sockaddr_in a, src;
    memset(cl, 0, sizeof *cl);
    uv_ip4_addr("127.0.0.1", http_server_port(f->srv), &a);
    uv_ip4_addr(from, 0, &src);
    cr_assert_eq(uv_tcp_init(&f->loop, &cl->h.tcp), 0);
    cl->h.handle.data = cl;
    cr_assert_eq(uv_tcp_bind(&cl->h.tcp, (struct sockaddr *)&src, 0), 0);
    cr_assert_eq(uv_tcp_connect(&cl->creq, &cl->h.tcp, (struct sockaddr *)&a, connect_cb), 0);
}

/* A loopback TCP client of the fixture's server; not registered with the fixture. */
static void client_tcp(struct fx *f, struct client *cl) {
    struct sockaddr_in a;
    memset(cl, 0, sizeof *cl);
    uv_ip4_addr("127.0.0.1", http_server_port(f->srv), &a);
    cr_assert_eq(uv_tcp_init(&f->loop, &cl->h.tcp), 0);
    cl->h.handle.data = cl;
    cr_assert_eq(uv_tcp_connect(&cl->creq, &cl->h.tcp, (struct sockaddr *)&a, connect_cb), 0);
}

struct want {
    struct client *cl;
    size_t n;
};

static bool got_n(void *arg) {
    struct want *w = arg;
    return w->cl->in.len >= w->n || w->cl->eof;
}

static bool got_eof(void *arg) { return ((struct client *)arg)->eof; }

/* Waits for the bytes of want, checks they come first, then forgets them. Extra bytes are
 * kept for the next expect(); fx_finish() insists that none are left over. */
static void expect(struct fx *f, struct client *cl, const char *want) {
    struct want w = {cl, strlen(want)};
    spin(f, got_n, &w, 3000);
    cr_assert_geq(cl->in.len, w.n, "got %zu bytes, wanted %zu:\n%s\nwanted:\n%s", cl->in.len, w.n,
                  cl->in.data ? cl->in.data : "", want);
    cr_assert(memcmp(cl->in.data, want, w.n) == 0, "got:\n%s\nwanted:\n%s", cl->in.data, want);
    buf_consume(&cl->in, w.n);
}

static void expect_eof(struct fx *f, struct client *cl) {
    cr_assert(spin(f, got_eof, cl, 3000), "connection not closed");
    cr_assert_eq(cl->in.len, 0, "unexpected bytes: %s", cl->in.data);
}

/* The exact answer: status line, fixed headers, extra headers, body (omitted if head). */
static const char *resp(const char *status, const char *extra, const char *body, bool head) {
    static char out[4096];
    size_t n = strlen(body);
    snprintf(out, sizeof out,
             "HTTP/1.1 %s\r\nOctopus-Node: " NODE "\r\n"
             "X-Content-Type-Options: nosniff\r\n%sContent-Length: %zu\r\n%s\r\n%s",
             status, n ? "Content-Type: application/json\r\n" : "", n, extra ? extra : "",
             head ? "" : body);
    return out;
}

static const char *node_json(const char *last_seen, bool offline, bool maint, const char *why) {
    static char out[1024];
    snprintf(out, sizeof out,
             "{\"Id\":\"OctopusServerNodes-" NODE "\",\"Name\":\"" NODE "\",\"LastSeen\":%s,"
             "\"IsOffline\":%s,\"MaxConcurrentTasks\":4,\"IsInMaintenanceMode\":%s,"
             "\"Version\":\"0.1.0\",\"Links\":{\"Self\":\"" SELF "\",\"Node\":\"" SELF "\"},"
             "\"Status\":\"%s\"}",
             last_seen, offline ? "true" : "false", maint ? "true" : "false", why);
    return out;
}

#define ONLINE_JSON node_json("\"2023-11-14T22:13:20.123+00:00\"", false, false, "online")

/* --- ping and healthz --- */

Test(http, ping_online_200) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, PING_REQ);
    expect(&f, &cl, resp("200 OK", NULL, ONLINE_JSON, false));
    fx_finish(&f);
}

Test(http, ping_draining_418) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    f.view.drain = true;
    client_pair(&f, &cl);
    client_sends(&cl, PING_REQ);
    expect(&f, &cl,
           resp("418 I'm a teapot", NULL,
                node_json("\"2023-11-14T22:13:20.123+00:00\"", false, true, "draining"), false));
    f.view.drain = false;
    f.view.stopping = true; /* read per request: no restart needed */
    client_sends(&cl, PING_REQ);
    expect(&f, &cl,
           resp("418 I'm a teapot", NULL,
                node_json("\"2023-11-14T22:13:20.123+00:00\"", false, true, "shutting down"),
                false));
    fx_finish(&f);
}

Test(http, ping_unavailable_503) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    f.view.redis_ok = false;
    f.view.last_seen_ms = 0;
    client_pair(&f, &cl);
    client_sends(&cl, PING_REQ);
    expect(&f, &cl,
           resp("503 Service Unavailable", NULL,
                node_json("null", true, false, "redis unreachable"), false));
    f.view.redis_ok = true;
    f.view.registered = false;
    client_sends(&cl, PING_REQ);
    expect(&f, &cl,
           resp("503 Service Unavailable", NULL, node_json("null", true, false, "not registered"),
                false));
    fx_finish(&f);
}

Test(http, head_has_get_headers_and_no_body) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "HEAD /api/octopusservernodes/ping HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, ONLINE_JSON, true));
    client_sends(&cl, "HEAD /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, true));
    fx_finish(&f);
}

Test(http, healthz_ok_whatever_the_drain) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    f.view.drain = true;
    f.view.redis_ok = false;
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    fx_finish(&f);
}

/* --- routing --- */

Test(http, unknown_path_404) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "GET /api/nothing HTTP/1.1\r\n\r\n");
    expect(&f, &cl,
           resp("404 Not Found", NULL,
                "{\"ErrorMessage\":\"Not found\",\"Errors\":[\"Not found\"]}", false));
    client_sends(&cl, "HEAD /api/nothing HTTP/1.1\r\n\r\n");
    expect(&f, &cl,
           resp("404 Not Found", NULL,
                "{\"ErrorMessage\":\"Not found\",\"Errors\":[\"Not found\"]}", true));
    fx_finish(&f);
}

Test(http, wrong_method_405_with_allow) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "POST /api/octopusservernodes/ping HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    expect(&f, &cl,
           resp("405 Method Not Allowed", "Allow: GET, HEAD\r\n",
                "{\"ErrorMessage\":\"Method not allowed\",\"Errors\":[\"Method not allowed\"]}",
                false));
    client_sends(&cl, "DELETE /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl,
           resp("405 Method Not Allowed", "Allow: GET, HEAD\r\n",
                "{\"ErrorMessage\":\"Method not allowed\",\"Errors\":[\"Method not allowed\"]}",
                false));
    fx_finish(&f);
}

Test(http, doubled_slashes_and_query_route_like_clean_path) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "GET //api///octopusservernodes/ping HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, ONLINE_JSON, false));
    client_sends(&cl, "GET /api/octopusservernodes//ping/?skip=1&take=2 HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, ONLINE_JSON, false));
    client_sends(&cl, "GET http://example.com//healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    fx_finish(&f);
}

/* --- connection handling --- */

Test(http, pipelined_three_in_one_write_answered_in_order) {
    struct fx f;
    struct client cl;
    char want[8192];
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, PING_REQ "GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n");
    snprintf(want, sizeof want, "%s", resp("200 OK", NULL, ONLINE_JSON, false));
    strcat(want, resp("200 OK", NULL, HEALTHZ_BODY, false));
    strcat(want, resp("404 Not Found", NULL,
                      "{\"ErrorMessage\":\"Not found\",\"Errors\":[\"Not found\"]}", false));
    expect(&f, &cl, want);
    cr_assert_not(cl.eof);
    fx_finish(&f);
}

Test(http, keep_alive_two_sequential_requests) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, PING_REQ);
    expect(&f, &cl, resp("200 OK", NULL, ONLINE_JSON, false));
    cr_assert_not(cl.eof);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    cr_assert_not(cl.eof);
    cr_assert_eq(http_server_conn_count(f.srv), 1);
    fx_finish(&f);
}

Test(http, http10_closes_after_answer) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.0\r\n\r\n");
    expect(&f, &cl, resp("200 OK", "Connection: close\r\n", HEALTHZ_BODY, false));
    expect_eof(&f, &cl);
    fx_finish(&f);
}

Test(http, connection_close_closes_and_ignores_the_rest) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl,
                 "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", "Connection: close\r\n", HEALTHZ_BODY, false));
    expect_eof(&f, &cl);
    fx_finish(&f);
}

Test(http, malformed_400_then_close_after_earlier_answers) {
    struct fx f;
    struct client cl;
    char want[8192];
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\nG@T / HTTP/1.1\r\n\r\n");
    snprintf(want, sizeof want, "%s", resp("200 OK", NULL, HEALTHZ_BODY, false));
    strcat(want, resp("400 Bad Request", "Connection: close\r\n",
                      "{\"ErrorMessage\":\"Invalid method encountered\",\"Errors\":[\"Invalid "
                      "method encountered\"]}",
                      false));
    expect(&f, &cl, want);
    expect_eof(&f, &cl);
    fx_finish(&f);
}

Test(http, header_section_over_limit_431) {
    struct fx f;
    struct client cl;
    char req[4096];
    char pad[2001];
    fx_start_cfg(&f, 5000, 1024);
    client_pair(&f, &cl);
    memset(pad, 'a', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nX-Pad: %s\r\n\r\n", pad);
    client_sends(&cl, req);
    expect(&f, &cl,
           resp("431 Request Header Fields Too Large", "Connection: close\r\n",
                "{\"ErrorMessage\":\"Request header fields too large\",\"Errors\":[\"Request "
                "header fields too large\"]}",
                false));
    expect_eof(&f, &cl);
    fx_finish(&f);
}

Test(http, header_section_just_under_limit_is_fine) {
    struct fx f;
    struct client cl;
    char req[2048];
    char pad[901];
    fx_start_cfg(&f, 5000, 1024);
    client_pair(&f, &cl);
    memset(pad, 'a', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nX-Pad: %s\r\n\r\n", pad);
    client_sends(&cl, req);
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    fx_finish(&f);
}

Test(http, body_on_bodiless_route_discarded_or_413) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl,
                 "GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    client_sends(&cl, "GET /healthz HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\nxx");
    expect(
        &f, &cl,
        resp(
            "413 Payload Too Large", "Connection: close\r\n",
            "{\"ErrorMessage\":\"Request body too large\",\"Errors\":[\"Request body too large\"]}",
            false));
    expect_eof(&f, &cl);
    fx_finish(&f);
}

/* A body on a path no route serves is answered 404 (405 for a known path) before any of it is
 * read, whatever its size: an uploader that got the path wrong (Octopus's legacy
 * POST /api/packages/raw, say) must hear "not found", never "too large". A small body is
 * discarded and the connection kept, as for any other answer. */
Test(http, body_on_an_unknown_route_is_404_not_413) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "POST /api/nothing HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    expect(&f, &cl,
           resp("404 Not Found", NULL,
                "{\"ErrorMessage\":\"Not found\",\"Errors\":[\"Not found\"]}", false));
    client_sends(&cl, "POST /api/nothing HTTP/1.1\r\nContent-Length: 2000000000\r\n"
                      "Expect: 100-continue\r\n\r\n");
    expect(&f, &cl,
           resp("404 Not Found", "Connection: close\r\n",
                "{\"ErrorMessage\":\"Not found\",\"Errors\":[\"Not found\"]}", false));
    expect_eof(&f, &cl);
    fx_finish(&f);
}

Test(http, idle_keep_alive_connection_times_out) {
    struct fx f;
    struct client cl;
    fx_start_cfg(&f, 100, 8192);
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    uint64_t t0 = clock_mono_ms();
    expect_eof(&f, &cl);
    uint64_t waited = clock_mono_ms() - t0;
    cr_assert_geq(waited, 80, "closed after %llu ms", (unsigned long long)waited);
    cr_assert_lt(waited, 2000);
    cr_assert_eq(http_server_conn_count(f.srv), 0);
    fx_finish(&f);
}

Test(http, peer_eof_after_request_still_answered) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    uv_shutdown_t sh;
    cr_assert_eq(uv_shutdown(&sh, &cl.h.stream, NULL), 0);
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    expect_eof(&f, &cl);
    fx_finish(&f);
}

Test(http, server_close_with_open_connections) {
    struct fx f;
    struct client a, b;
    fx_start(&f);
    client_pair(&f, &a);
    client_pair(&f, &b);
    client_sends(&a, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &a, resp("200 OK", NULL, HEALTHZ_BODY, false));
    client_sends(&b, "GET /heal"); /* half a request */
    http_server_close(f.srv, srv_done_cb, &f);
    cr_assert(spin(&f, srv_closed, &f, 2000));
    cr_assert(spin(&f, got_eof, &a, 2000));
    cr_assert(spin(&f, got_eof, &b, 2000));
    for (unsigned i = 0; i < f.nclients; i++) {
        client_close(f.clients[i]);
        cr_assert(spin(&f, client_closed, f.clients[i], 2000));
        buf_free(&f.clients[i]->in);
    }
    uv_close((uv_handle_t *)&f.guard, NULL);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&f.loop), 0);
    free((void *)f.site.routes); /* as fx_finish does */
}

Test(http, bad_listen_address_rejected) {
    uv_loop_t loop;
    struct http_site site = {.headers = "Octopus-Node: " NODE "\r\n"};
    struct http_server *s = NULL;
    static const char *bad[] = {"nohost", "1.2.3.4:99999", "[::1:80", "300.1.1.1:80", "1.2.3.4:x"};
    uv_loop_init(&loop);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct http_server_config cfg = {
            .listen = bad[i], .idle_timeout_ms = 1000, .max_header_bytes = 8192};
        cr_assert_eq(http_server_new(&loop, &cfg, &site, &s), UV_EINVAL, "%s", bad[i]);
    }
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(http, port_in_use_reported) {
    struct fx f;
    struct http_server *s2 = NULL;
    char listen[32];
    fx_start(&f);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", http_server_port(f.srv));
    struct http_server_config cfg = {
        .listen = listen, .idle_timeout_ms = 1000, .max_header_bytes = 8192};
    cr_assert_eq(http_server_new(&f.loop, &cfg, &f.site, &s2), UV_EADDRINUSE);
    uv_run(&f.loop, UV_RUN_NOWAIT); /* the failed listener's close callback frees it */
    fx_finish(&f);
}

static bool client_backlogged(void *arg) {
    struct client *cl = arg;
    uv_os_fd_t fd;
    int queued = 0;
    uv_fileno(&cl->h.handle, &fd);
    ioctl(fd, FIONREAD, &queued);
    return queued >= 64 << 10;
}

/* A peer that pipelines thousands of requests before reading: the server stops reading from it
 * while its answers pile up, then catches up once it reads; nothing lost, order kept. */
Test(http, slow_reader_gets_every_answer_in_order) {
    enum { N = 5000 };
    struct fx f;
    struct client cl;
    struct buf reqs, want;
    fx_start(&f);
    client_pair(&f, &cl);
    uv_read_stop(&cl.h.stream);
    buf_init(&reqs);
    buf_init(&want);
    for (int i = 0; i < N; i++) {
        buf_puts(&reqs, PING_REQ);
        buf_puts(&want, resp("200 OK", NULL, ONLINE_JSON, false));
    }
    client_send(&cl, reqs.data, reqs.len);
    cr_assert(spin(&f, client_backlogged, &cl, 5000), "the server never filled the socket");
    cr_assert_eq(uv_read_start(&cl.h.stream, alloc_cb, read_cb), 0);
    struct want w = {&cl, want.len};
    cr_assert(spin(&f, got_n, &w, 20000), "got %zu of %zu bytes", cl.in.len, want.len);
    cr_assert_eq(cl.in.len, want.len);
    cr_assert(memcmp(cl.in.data, want.data, want.len) == 0);
    buf_reset(&cl.in);
    buf_free(&reqs);
    buf_free(&want);
    fx_finish(&f);
}

/* --- loopback TCP --- */

Test(http, loopback_tcp_ping) {
    struct fx f;
    struct client cl;
    fx_start(&f);
    client_tcp(&f, &cl);
    client_sends(&cl, PING_REQ); /* queued by libuv until connected */
    const char *want = resp("200 OK", NULL, ONLINE_JSON, false);
    struct want w = {&cl, strlen(want)};
    cr_assert(spin(&f, got_n, &w, 3000));
    cr_assert_eq(cl.in.len, w.n);
    cr_assert(memcmp(cl.in.data, want, w.n) == 0);
    client_close(&cl);
    cr_assert(spin(&f, client_closed, &cl, 2000));
    buf_free(&cl.in);
    fx_finish(&f);
}

struct crowd {
    struct fx *f;
    struct client *cl;
    size_t n;
    size_t want;
};

static bool crowd_answered(void *arg) {
    struct crowd *c = arg;
    for (size_t i = 0; i < c->n; i++)
        if (c->cl[i].in.len < c->want && !c->cl[i].eof) return false;
    return true;
}

static bool crowd_closed(void *arg) {
    struct crowd *c = arg;
    for (size_t i = 0; i < c->n; i++)
        if (!c->cl[i].closed) return false;
    return true;
}

Test(http, two_thousand_concurrent_connections, .timeout = 90) {
    enum { N = 2000 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * N + 64) {
        rl.rlim_cur = rl.rlim_max < 2 * N + 64 ? rl.rlim_max : 2 * N + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 2 * N + 64)
        cr_skip_test("RLIMIT_NOFILE too low: %llu", (unsigned long long)rl.rlim_cur);
    struct fx f;
    fx_start_cfg(&f, 60000, 8192); /* connecting 2,000 can outlast a short idle timeout */
    struct client *cl = xcalloc(N, sizeof *cl);
    const char *want = resp("200 OK", NULL, ONLINE_JSON, false);
    struct crowd c = {&f, cl, N, strlen(want)};
    for (size_t i = 0; i < N; i++) {
        client_tcp(&f, &cl[i]);
        client_sends(&cl[i], PING_REQ); /* queued by libuv until connected */
    }
    bool ok = spin(&f, crowd_answered, &c, 40000);
    size_t nerr = 0, nconn = 0;
    int err = 0;
    for (size_t i = 0; i < N; i++) {
        nconn += cl[i].connected;
        if (cl[i].err) nerr++, err = cl[i].err;
    }
    cr_assert(ok && nerr == 0, "server has %u connections; clients: %zu connected, %zu failed (%s)",
              http_server_conn_count(f.srv), nconn, nerr, err ? uv_strerror(err) : "-");
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(cl[i].in.len, c.want, "client %zu", i);
        cr_assert(memcmp(cl[i].in.data, want, c.want) == 0, "client %zu", i);
    }
    cr_assert_eq(http_server_conn_count(f.srv), N, "all open at once");
    for (size_t i = 0; i < N; i++) client_close(&cl[i]);
    cr_assert(spin(&f, crowd_closed, &c, 10000));
    for (size_t i = 0; i < N; i++) buf_free(&cl[i].in);
    free(cl);
    fx_finish(&f);
}

/* A forked client with blocking sockets, as an outside program would talk to the node: two
 * keep-alive requests on one connection; it reports through a pipe read by the loop. */
static int child_client(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    char got[8192];
    size_t n = 0;
    uv_ip4_addr("127.0.0.1", port, &a);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return 2;
    const char req[] = PING_REQ "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) return 3;
    for (;;) {
        ssize_t r = read(fd, got + n, sizeof got - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    got[n] = '\0';
    close(fd);
    if (!strstr(got, "HTTP/1.1 200 OK\r\n")) return 4;
    if (!strstr(got, "\"Status\":\"online\"}HTTP/1.1 200 OK\r\n")) return 5;
    if (!strstr(got, "Connection: close\r\n\r\n" HEALTHZ_BODY)) return 6;
    return 0;
}

Test(http, forked_blocking_client) {
    struct fx f;
    struct client result;
    int p[2];
    fx_start(&f);
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        char code = (char)child_client(http_server_port(f.srv));
        if (write(p[1], &code, 1) != 1) _exit(1);
        _exit(0);
    }
    close(p[1]);
    memset(&result, 0, sizeof result);
    uv_pipe_init(&f.loop, &result.h.pipe, 0);
    result.h.handle.data = &result;
    uv_pipe_open(&result.h.pipe, p[0]);
    uv_read_start(&result.h.stream, alloc_cb, read_cb);
    f.clients[f.nclients++] = &result;
    struct want w = {&result, 1};
    bool ok = spin(&f, got_n, &w, 10000);
    if (!ok) kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(ok && result.in.len == 1, "child did not report");
    cr_assert_eq(result.in.data[0], 0, "child failed with %d", result.in.data[0]);
    buf_reset(&result.in);
    fx_finish(&f);
}

/* --- slow and greedy clients: deadlines and connection caps --- */

/* Sends data to a client's peer one byte per tick. */
struct trickle {
    uv_timer_t timer;
    struct client *cl;
    const char *data;
    size_t pos, len;
    bool closed;
};

static void trickle_cb(uv_timer_t *t) {
    struct trickle *tr = t->data;
    if (tr->cl->eof || tr->pos >= tr->len) {
        uv_timer_stop(t);
        return;
    }
    client_send(tr->cl, tr->data + tr->pos++, 1);
}

static void trickle_start(struct fx *f, struct trickle *tr, struct client *cl, const char *data,
                          uint64_t every_ms) {
    memset(tr, 0, sizeof *tr);
    tr->cl = cl;
    tr->data = data;
    tr->len = strlen(data);
    uv_timer_init(&f->loop, &tr->timer);
    tr->timer.data = tr;
    uv_timer_start(&tr->timer, trickle_cb, 0, every_ms);
}

static void trickle_closed_cb(uv_handle_t *h) { ((struct trickle *)h->data)->closed = true; }
static bool trickle_closed(void *arg) { return ((struct trickle *)arg)->closed; }

static void trickle_stop(struct fx *f, struct trickle *tr) {
    uv_close((uv_handle_t *)&tr->timer, trickle_closed_cb);
    cr_assert(spin(f, trickle_closed, tr, 1000));
}

static bool never(void *arg) { return false; }

#define TIMEOUT_408                                                                                \
    resp(                                                                                          \
        "408 Request Timeout", "Connection: close\r\n",                                            \
        "{\"ErrorMessage\":\"The request did not arrive in time: the connection is "               \
        "closed\",\"Errors\":[\"The request did not arrive in time: the connection is closed\"]}", \
        false)

/* Slowloris: every byte of the head used to re-arm the idle timer, so a head trickled in
 * never ended. Its deadline now runs from the first byte (here from accept) and bytes do not
 * extend it: 408, then close. */
Test(http, head_trickled_closed_at_head_deadline) {
    struct fx f;
    struct client cl;
    struct trickle tr;
    fx_start_conf(&f, (struct http_server_config){.idle_timeout_ms = 5000,
                                                  .max_header_bytes = 8192,
                                                  .head_timeout_ms = 1000});
    client_pair(&f, &cl);
    uint64_t t0 = clock_mono_ms();
    trickle_start(&f, &tr, &cl, PING_REQ, 250);
    cr_assert(spin(&f, got_eof, &cl, 4000), "a head trickled for 4 s is still open");
    uint64_t waited = clock_mono_ms() - t0;
    cr_assert_geq(waited, 900, "closed after %llu ms", (unsigned long long)waited);
    cr_assert_lt(waited, 2500, "closed after %llu ms", (unsigned long long)waited);
    cr_assert_geq(tr.pos, 3, "bytes kept coming until the deadline: %zu", tr.pos);
    expect(&f, &cl, TIMEOUT_408);
    trickle_stop(&f, &tr);
    fx_finish(&f);
}

/* A connection that never sends a byte lives until the head deadline, not the idle timeout;
 * it gets no answer. */
Test(http, connection_that_sends_nothing_closed_at_head_deadline) {
    struct fx f;
    struct client cl;
    fx_start_conf(&f, (struct http_server_config){.idle_timeout_ms = 5000,
                                                  .max_header_bytes = 8192,
                                                  .head_timeout_ms = 500});
    client_pair(&f, &cl);
    uint64_t t0 = clock_mono_ms();
    cr_assert(spin(&f, got_eof, &cl, 3000), "an empty connection is still open after 3 s");
    uint64_t waited = clock_mono_ms() - t0;
    cr_assert_geq(waited, 400, "closed after %llu ms", (unsigned long long)waited);
    cr_assert_lt(waited, 2000, "closed after %llu ms", (unsigned long long)waited);
    cr_assert_eq(cl.in.len, 0);
    fx_finish(&f);
}

/* A body's deadline runs from its last byte: bytes 400 ms apart keep it going for longer than
 * both deadlines, then a stall ends it (408, close) one body deadline later. */
Test(http, stalled_body_closed_at_body_deadline) {
    struct fx f;
    struct client cl;
    struct trickle tr;
    fx_start_conf(&f, (struct http_server_config){.idle_timeout_ms = 5000,
                                                  .max_header_bytes = 8192,
                                                  .head_timeout_ms = 1000,
                                                  .body_timeout_ms = 1000});
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\nContent-Length: 8\r\n\r\n");
    uint64_t t0 = clock_mono_ms();
    trickle_start(&f, &tr, &cl, "abcd", 400);
    cr_assert(spin(&f, got_eof, &cl, 4500), "a stalled body is still open after 4.5 s");
    uint64_t waited = clock_mono_ms() - t0;
    cr_assert_eq(tr.pos, 4, "closed before the body stalled (%zu bytes)", tr.pos);
    cr_assert_geq(waited, 2000, "closed after %llu ms", (unsigned long long)waited);
    cr_assert_lt(waited, 3800, "closed after %llu ms", (unsigned long long)waited);
    expect(&f, &cl, TIMEOUT_408);
    trickle_stop(&f, &tr);
    fx_finish(&f);
}

/* Between requests a kept-alive connection is idle, not late: it outlives the head and body
 * deadlines and is served again. */
Test(http, keep_alive_idle_outlives_head_deadline) {
    struct fx f;
    struct client cl;
    fx_start_conf(&f, (struct http_server_config){.idle_timeout_ms = 3000,
                                                  .max_header_bytes = 8192,
                                                  .head_timeout_ms = 300,
                                                  .body_timeout_ms = 300});
    client_pair(&f, &cl);
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    spin(&f, never, NULL, 1000);
    cr_assert(!cl.eof, "closed while idle for less than the idle timeout");
    client_sends(&cl, "GET /healthz HTTP/1.1\r\n\r\n");
    expect(&f, &cl, resp("200 OK", NULL, HEALTHZ_BODY, false));
    fx_finish(&f);
}

static bool client_connected(void *arg) {
    struct client *cl = arg;
    return cl->connected || cl->eof;
}

/* A TCP client from the address from that is answered a ping (kept alive). */
static void tcp_pinged(struct fx *f, struct client *cl, const char *from) {
    client_tcp_from(f, cl, from);
    cr_assert(spin(f, client_connected, cl, 3000) && cl->connected, "%s did not connect", from);
    client_sends(cl, PING_REQ);
    expect(f, cl, resp("200 OK", NULL, ONLINE_JSON, false));
}

/* A TCP client from the address from that the server resets at once: no answer to its ping. */
static void tcp_refused(struct fx *f, struct client *cl, const char *from) {
    client_tcp_from(f, cl, from);
    client_sends(cl, PING_REQ); /* queued by libuv until connected */
    cr_assert(spin(f, got_eof, cl, 3000), "a connection over the cap was not closed");
    cr_assert_eq(cl->in.len, 0, "a connection over the cap was answered: %s", cl->in.data);
}

static void tcp_close(struct fx *f, struct client *cl) {
    client_close(cl);
    cr_assert(spin(f, client_closed, cl, 2000));
    buf_free(&cl->in);
}

/* GET /metrics on a new connection from 127.0.0.1; the body, into out. */
static void tcp_metrics(struct fx *f, char *out, size_t len) {
    struct client cl;
    client_tcp(f, &cl);
    client_sends(&cl, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    cr_assert(spin(f, got_eof, &cl, 3000));
    const char *body = cl.in.data ? strstr(cl.in.data, "\r\n\r\n") : NULL;
    cr_assert(body && strncmp(cl.in.data, "HTTP/1.1 200", 12) == 0, "%s", cl.in.data);
    snprintf(out, len, "%s", body + 4);
    tcp_close(f, &cl);
}

static bool conns_are(void *arg) {
    struct fx *f = ((void **)arg)[0];
    return http_server_conn_count(f->srv) == *(unsigned *)((void **)arg)[1];
}

/* With --http-max-connections-per-ip 3, 127.0.0.2's fourth connection is reset at once, with
 * no answer; other addresses are served; /metrics counts the refusal. */
Test(http, per_ip_cap_resets_the_next_connection_from_that_address) {
    struct fx f;
    struct client a[4], b;
    char m[16384];
    fx_start_conf(&f, (struct http_server_config){.idle_timeout_ms = 5000,
                                                  .max_header_bytes = 8192,
                                                  .max_conns_per_ip = 3});
    for (int i = 0; i < 3; i++) tcp_pinged(&f, &a[i], "127.0.0.2");
    tcp_refused(&f, &a[3], "127.0.0.2");
    tcp_pinged(&f, &b, "127.0.0.1");
    client_sends(&a[0], PING_REQ); /* the ones admitted are served still */
    expect(&f, &a[0], resp("200 OK", NULL, ONLINE_JSON, false));
    tcp_metrics(&f, m, sizeof m);
    cr_assert(strstr(m, "shoal_http_connections_refused_total{reason=\"ip_cap\"} 1\n"), "%s", m);
    cr_assert(strstr(m, "shoal_http_connections_refused_total{reason=\"node_cap\"} 0\n"), "%s", m);
    cr_assert(strstr(m, "shoal_http_connections_open 5\n"), "%s", m); /* 3 + b + metrics */
    tcp_close(&f, &a[0]);                                             /* a slot frees up */
    unsigned want = 3;
    void *arg[2] = {&f, &want};
    cr_assert(spin(&f, conns_are, arg, 3000));
    tcp_pinged(&f, &a[0], "127.0.0.2");
    for (int i = 0; i < 4; i++) tcp_close(&f, &a[i]);
    tcp_close(&f, &b);
    fx_finish(&f);
}

/* With --http-max-connections 4, a fifth connection is reset at once while the four open ones
 * (a kept-alive ping client among them) are still answered. */
Test(http, node_cap_resets_new_connections_while_open_ones_answer) {
    static const char *const from[] = {"127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    struct fx f;
    struct client a[4], extra;
    char m[16384];
    fx_start_conf(&f, (struct http_server_config){.idle_timeout_ms = 5000,
                                                  .max_header_bytes = 8192,
                                                  .max_conns = 4,
                                                  .max_conns_per_ip = 100});
    for (int i = 0; i < 4; i++) tcp_pinged(&f, &a[i], from[i]);
    tcp_refused(&f, &extra, "127.0.0.6");
    tcp_close(&f, &extra);
    for (int r = 0; r < 3; r++) {
        client_sends(&a[0], PING_REQ);
        expect(&f, &a[0], resp("200 OK", NULL, ONLINE_JSON, false));
    }
    tcp_close(&f, &a[3]);
    unsigned want = 3;
    void *arg[2] = {&f, &want};
    cr_assert(spin(&f, conns_are, arg, 3000));
    tcp_metrics(&f, m, sizeof m);
    cr_assert(strstr(m, "shoal_http_connections_refused_total{reason=\"node_cap\"} 1\n"), "%s", m);
    cr_assert(strstr(m, "shoal_http_connections_open 4\n"), "%s", m);
    for (int i = 0; i < 3; i++) tcp_close(&f, &a[i]);
    fx_finish(&f);
}
