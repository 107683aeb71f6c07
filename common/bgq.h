/* bgq.h: background threads for CPU-heavy work, running below the event loop, with their
 * results handed back to the loop.
 *
 * Why not uv_queue_work: libuv 1.44 (Debian 12) hands a finished job back with uv_async_send,
 * and the loop thread spins (uv__async_spin) while a pool thread is between claiming the
 * async handle and writing its eventfd. A thread that runs below the loop (nicer than it)
 * is preempted in exactly that window, by the loop thread its write just woke, and the loop
 * then burns its CPU waiting for a thread that cannot run, for whole loop turns during uploads
 * (every buffer hashed or written is one such hand-back; docs/benchmarks.md, "What shaped the
 * upload path"). Here a thread pushes the
 * finished job onto a lock-free stack and then writes an eventfd the loop polls, and jobs go in
 * the same way (plus a semaphore post when no thread is searching for work): the loop never
 * takes a lock or waits for a thread below it (bgq.c says why not a shared mutex, and when a
 * thread is woken).
 *
 * Jobs run in submission order as threads free up; several run at once with several threads.
 * A job's done callback runs on the loop, in the order jobs finished.
 *
 * Threads can only be made nicer, never less nice (that needs CAP_SYS_NICE), so a queue's
 * threads keep their priority for life; libuv's pool threads may run C handlers at
 * TASK_NICE and would pass that on to anything else they run later. */
#ifndef SHOAL_BGQ_H
#define SHOAL_BGQ_H

#include <uv.h>

struct bgq_job {
    void (*work)(struct bgq_job *job); /* on a background thread */
    void (*done)(struct bgq_job *job); /* then on the loop */
    struct bgq_job *next;              /* the queue's */
};

struct bgq;

/* SCHED_IDLE instead of a nice value: the threads run only on CPU nothing else wants, and a
 * waking thread of any normal priority preempts them at once (Linux's EEVDF otherwise lets a
 * thread at any nice value finish its slice, up to 1.5 ms on 2 CPUs, before the loop gets the
 * CPU back). For pure CPU work: a thread starved while it holds a kernel lock would hold up
 * others, so work that enters the file system belongs at nice 19. */
#define BGQ_IDLE 20

/* Starts threads at nice (worker/exec.h's TASK_NICE, or nicer; or BGQ_IDLE) and watches
 * their results on loop: one at once, then one more whenever a job is submitted while every
 * thread has one, up to `threads` (at most 1,024). The loop is kept alive only while jobs are
 * outstanding. Returns 0 and *out, or a negative libuv error. */
int bgq_new(uv_loop_t *loop, unsigned threads, int nice, struct bgq **out);

/* Queues job; its done callback will run on the loop. */
void bgq_submit(struct bgq *q, struct bgq_job *job);

/* Once no job is outstanding (after uv_run has returned): stops and joins the threads and
 * closes the loop's handle; run the loop once more before uv_loop_close() to free it. */
void bgq_close(struct bgq *q);

#endif
