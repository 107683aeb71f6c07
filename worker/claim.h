/* claim.h: the task pipeline between Redis and the runner. Claims work with claim.lua when the
 * node has free slots (woken by the wake channel, a finished task, a cap or drain change, a
 * scheduled task coming due, or a heartbeat that saw ready work: never by polling), starts what
 * an enqueue claimed for it while it waited idle (its push channel; docs/design.md, "Push to an
 * idle node"), hands the tasks to the runner, and reports results with complete.lua in
 * batches. Reports survive a
 * Redis outage: they are held and sent when Redis is back (complete.lua's lease check makes a
 * resend harmless). A claim and a report each have at most one call in flight, so under load
 * they batch themselves.
 *
 * Everything runs on the loop thread. */
#ifndef SHOAL_WORKER_CLAIM_H
#define SHOAL_WORKER_CLAIM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "worker/node.h"
#include "worker/runner.h"

struct claimer;

/* Creates the pipeline for node n (borrowed) with a runner of its own, configured from cfg.
 * exec_shim and exec_cred (may be NULL) are copied: see struct runner_config. */
struct claimer *claimer_new(uv_loop_t *loop, struct node *n, const struct shoal_config *cfg,
                            const struct shoal_handlers *handlers, const char *exec_shim,
                            const struct exec_cred *exec_cred);
/* Node events (node.h) drive it. */
void claimer_on_event(struct claimer *c, enum node_event ev, const char *arg);
/* Tasks running now. */
unsigned claimer_running(const struct claimer *c);
/* No more claims. When nothing runs and every report is acknowledged, idle(c, arg) runs once. */
void claimer_stop(struct claimer *c, void (*idle)(struct claimer *c, void *arg), void *arg);
/* Stops every running task now; they are reported Interrupted (requeued, no attempt used). */
void claimer_interrupt(struct claimer *c);
/* Reports not yet acknowledged by Redis (tasks finished or interrupted). */
unsigned claimer_unreported(const struct claimer *c);
/* Frees it after its handles closed; done(arg) then runs. Call once nothing runs. */
void claimer_close(struct claimer *c, void (*done)(void *arg), void *arg);

#endif
