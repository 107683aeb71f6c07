/* rloop.c: hiredis's async contexts on libuv, writes flushed before the loop polls (see
 * rloop.h). */
#include "common/rloop.h"

#include <stdbool.h>
#include <stdlib.h>

#include "common/util.h"

struct rloop_ev {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;    /* polled now: UV_READABLE, UV_WRITABLE */
    bool flushing; /* inside flush_cb: a write that must wait polls for writability */
    int open;      /* handles not yet closed */
};

static void poll_cb(uv_poll_t *h, int status, int events) {
    struct rloop_ev *p = h->data;
    if (status != 0 || p->ac == NULL) return;
    if (events & UV_READABLE) redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

/* uv_poll_start only when the interest changes: each call is an epoll_ctl (two, when libuv
 * re-adds the descriptor) at the next poll. */
static void set_events(struct rloop_ev *p, int events) {
    if (events == p->events) return;
    p->events = events;
    if (events)
        uv_poll_start(&p->poll, events, poll_cb);
    else
        uv_poll_stop(&p->poll);
}

static void flush_cb(uv_prepare_t *h) {
    struct rloop_ev *p = h->data;
    uv_prepare_stop(h);
    if (p->ac == NULL) return;
    p->flushing = true;
    redisAsyncHandleWrite(p->ac); /* may disconnect: cleanup() then runs, p stays valid */
    p->flushing = false;
}

static void add_read(void *d) {
    struct rloop_ev *p = d;
    set_events(p, p->events | UV_READABLE);
}
static void del_read(void *d) {
    struct rloop_ev *p = d;
    set_events(p, p->events & ~UV_READABLE);
}

/* hiredis calls this for every command queued. Connected, the write waits for the prepare
 * (every command of this iteration in one write); connecting, or when a write could not
 * finish, the kernel says when the socket takes more. */
static void add_write(void *d) {
    struct rloop_ev *p = d;
    if (!p->flushing && (p->ac->c.flags & REDIS_CONNECTED) && !(p->events & UV_WRITABLE)) {
        uv_prepare_start(&p->flush, flush_cb);
        return;
    }
    set_events(p, p->events | UV_WRITABLE);
}
static void del_write(void *d) {
    struct rloop_ev *p = d;
    uv_prepare_stop(&p->flush);
    set_events(p, p->events & ~UV_WRITABLE);
}

static void closed_cb(uv_handle_t *h) {
    struct rloop_ev *p = h->data;
    if (--p->open == 0) free(p);
}

static void cleanup(void *d) {
    struct rloop_ev *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, closed_cb);
    uv_close((uv_handle_t *)&p->flush, closed_cb);
}

int rloop_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data != NULL) return REDIS_ERR;
    struct rloop_ev *p = xcalloc(1, sizeof *p);
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &p->flush);
    p->poll.data = p;
    p->flush.data = p;
    p->open = 2;
    p->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}
