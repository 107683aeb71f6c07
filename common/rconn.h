/* rconn.h: one asynchronous Redis connection on a libuv loop (hiredis async + its libuv
 * adapter) that reconnects by itself.
 *
 * Life cycle: rconn_new() -> rconn_start() -> up callback (connected, AUTH and SELECT done, every
 * lua/ script loaded with SCRIPT LOAD) -> commands -> down callback when the link drops (then it
 * reconnects with capped exponential backoff and jitter, and calls up again) -> rconn_free().
 *
 * Ownership: replies handed to callbacks are borrowed for the callback only. A reply callback
 * runs exactly once per accepted command, with reply == NULL when the connection dropped before
 * the answer: every callback handles NULL first. Never call hiredis on rc's context directly. */
#ifndef SHOAL_RCONN_H
#define SHOAL_RCONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/calls.h"
#include "common/rurl.h"

struct rconn;

struct rconn_events {
    void (*up_cb)(struct rconn *rc, void *arg);                    /* ready for commands */
    void (*down_cb)(struct rconn *rc, const char *why, void *arg); /* link lost; reconnecting */
    void *arg;
};

/* A reply callback: reply borrowed, NULL when the connection dropped. */
typedef void (*rconn_reply_cb)(struct rconn *rc, redisReply *reply, void *priv);

/* Creates a connection (not yet connecting). url is copied. name labels log lines ("cmd",
 * "sub"). load_scripts: SCRIPT LOAD every script on each connect (not for a subscriber). */
struct rconn *rconn_new(uv_loop_t *loop, const struct rurl *url, const char *name,
                        bool load_scripts, const struct rconn_events *ev);

/* Starts connecting. Returns at once; up_cb reports success. */
void rconn_start(struct rconn *rc);

/* True between up_cb and down_cb. */
bool rconn_is_up(const struct rconn *rc);

/* Sends a command. Returns 0, or SHOAL_EREDIS when the connection is not up (cb is not called).
 * argv/lens are copied by hiredis before returning. */
int rconn_command(struct rconn *rc, rconn_reply_cb cb, void *priv, int argc, const char **argv,
                  const size_t *lens);

/* Subscribes to n channels; cb runs for every pub/sub reply (["message", channel, payload], and
 * the subscribe confirmations), with NULL when the link drops. Subscribe again after each
 * up_cb. One callback per connection. Same return as rconn_command. */
int rconn_subscribe(struct rconn *rc, const char *const *channels, int n, rconn_reply_cb cb,
                    void *priv);

/* Runs a script call (built by common/calls.h) with EVALSHA. On NOSCRIPT it retries once with
 * EVAL (which also caches the script). The call's strings are copied before this returns (free
 * the call then). Same return as rconn_command. */
int rconn_call(struct rconn *rc, const struct script_call *call, rconn_reply_cb cb, void *priv);

/* Drops the link now (e.g. a heartbeat went unanswered) and reconnects after backoff. Pending
 * callbacks run with NULL. Safe inside a reply callback (the free is deferred by hiredis). */
void rconn_reset(struct rconn *rc, const char *why);

/* Disconnects (pending callbacks run with NULL), stops reconnecting, and frees rc once every
 * handle has closed; then done(arg) runs (may be NULL). rc must not be used afterwards. */
void rconn_free(struct rconn *rc, void (*done)(void *arg), void *arg);

/* Reconnects so far (for metrics). */
unsigned long rconn_reconnects(const struct rconn *rc);

#endif
