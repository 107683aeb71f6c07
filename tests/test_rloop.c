/* test_rloop.c: hiredis on the loop through common/rloop.c, against a real redis-server.
 * Commands are written just before the loop polls, whatever queued them: an I/O callback (a
 * reply), a timer, or several in one iteration (one write). A command larger than the socket
 * buffer takes several writes, polling for write readiness in between. Replies come back
 * complete and in order. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/rconn.h"
#include "common/rurl.h"
#include "tests/harness.h"

#define BIG (32u << 20) /* a SET this size cannot go in one write */
#define INCRS 200

struct run {
    uv_loop_t loop;
    struct rconn *rc;
    uv_timer_t timer, guard;
    char *big;
    int incr_seen;     /* INCR replies, each checked to be the next number */
    long long strlen_; /* STRLEN's answer */
    bool set_ok, done, timed_out;
};

static void stop_cb(void *arg) { (void)arg; }

static void finish(struct run *r) {
    r->done = true;
    uv_timer_stop(&r->guard);
    uv_timer_stop(&r->timer);
    rconn_free(r->rc, stop_cb, NULL);
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_close((uv_handle_t *)&r->guard, NULL);
}

static void strlen_cb(struct rconn *rc, redisReply *reply, void *priv) {
    struct run *r = priv;
    r->strlen_ = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    finish(r);
}

static void incr_cb(struct rconn *rc, redisReply *reply, void *priv) {
    struct run *r = priv;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == r->incr_seen + 1)
        r->incr_seen++;
    if (r->incr_seen == INCRS) { /* queued from a reply: written before the loop polls again */
        const char *argv[] = {"STRLEN", "big"};
        cr_assert_eq(rconn_command(rc, strlen_cb, r, 2, argv, NULL), 0);
    }
}

/* From a timer: nothing else wakes the loop, so these go only if the flush runs before it
 * waits. */
static void timer_cb(uv_timer_t *t) {
    struct run *r = t->data;
    const char *argv[] = {"INCR", "n"};
    for (int i = 0; i < INCRS; i++)
        cr_assert_eq(rconn_command(r->rc, incr_cb, r, 2, argv, NULL), 0);
}

static void set_cb(struct rconn *rc, redisReply *reply, void *priv) {
    struct run *r = priv;
    r->set_ok = reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0;
    uv_timer_start(&r->timer, timer_cb, 10, 0);
}

static void up_cb(struct rconn *rc, void *arg) {
    struct run *r = arg;
    const char *argv[] = {"SET", "big", r->big};
    size_t lens[] = {3, 3, BIG};
    cr_assert_eq(rconn_command(rc, set_cb, r, 3, argv, lens), 0);
}

static void guard_cb(uv_timer_t *t) {
    struct run *r = t->data;
    r->timed_out = true;
    finish(r);
}

Test(rloop, commands_from_any_callback_go_out_whole_and_in_order, .timeout = 60) {
    struct h_redis redis;
    cr_assert_eq(h_redis_start(&redis, NULL), 0);
    struct rurl url;
    char err[256];
    cr_assert_eq(rurl_parse(redis.url, &url, err, sizeof err), 0, "%s", err);
    struct run r;
    memset(&r, 0, sizeof r);
    r.big = malloc(BIG);
    memset(r.big, 'x', BIG);
    uv_loop_init(&r.loop);
    struct rconn_events ev = {up_cb, NULL, &r};
    r.rc = rconn_new(&r.loop, &url, "test", false, &ev);
    uv_timer_init(&r.loop, &r.timer);
    uv_timer_init(&r.loop, &r.guard);
    r.timer.data = r.guard.data = &r;
    uv_timer_start(&r.guard, guard_cb, 30000, 0);
    rconn_start(r.rc);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    cr_assert(!r.timed_out, "stalled: SET %s, %d of %d INCR replies",
              r.set_ok ? "ok" : "not answered", r.incr_seen, INCRS);
    cr_assert(r.set_ok);
    cr_assert_eq(r.incr_seen, INCRS);
    cr_assert_eq(r.strlen_, (long long)BIG);
    uv_loop_close(&r.loop);
    free(r.big);
    h_redis_stop(&redis, false);
}
