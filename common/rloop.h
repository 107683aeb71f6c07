/* rloop.h: hiredis's async contexts on our libuv loop, in place of hiredis's own adapter
 * (hiredis/adapters/libuv.h). The difference: a command is written to its socket just before
 * the loop next waits for I/O (a uv_prepare), not after an extra poll for writability. That
 * adapter asks the kernel for write readiness for every command and drops it after each write
 * (uv_poll_start each time: about 3.5 epoll_ctl calls per command measured on a node), and the
 * command leaves one loop iteration later. Write readiness is polled only while a write could
 * not finish (a full socket buffer) and while connecting.
 *
 * Loop thread only, as hiredis's contexts are. */
#ifndef SHOAL_COMMON_RLOOP_H
#define SHOAL_COMMON_RLOOP_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop (as redisLibuvAttach). REDIS_OK or REDIS_ERR (ac already attached, or
 * the poll handle could not be set up). */
int rloop_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
