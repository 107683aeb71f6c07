/* bgq.c: background threads below the loop; results back through an eventfd (see bgq.h). */
#define _GNU_SOURCE /* gettid, SCHED_IDLE */
#include "common/bgq.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/util.h"

#define BGQ_MAX_THREADS 1024

/* The loop never takes a lock a background thread may hold: such a thread runs below the loop
 * (nicer, or SCHED_IDLE), and one preempted inside a critical section can wait a long time for
 * a CPU on a busy node, with the loop stuck behind it (docs/benchmarks.md, "What shaped the
 * upload path", has what a shared mutex cost). Jobs go in and results come out through lock-free
 * stacks; only the threads share a mutex, for the queue they take jobs from, and a semaphore
 * (whose post never blocks) wakes them.
 *
 * Waking: a thread is searching (taking jobs), working, or asleep on the semaphore. A job
 * submitted while no thread searches wakes one, unless a wake is already on its way; a thread
 * that takes a job and leaves others queued with no thread searching wakes one more before it
 * works. So a batch of short jobs is worked off by the one or two threads awake (a post, a wake
 * and a sleep per job cost more than the jobs: docs/benchmarks.md, "Handler wake-ups"), and
 * jobs that block still get a thread each, woken one after another. No job is left behind: a
 * submitter raises `queued` and then reads `searching`; a thread stops searching and then reads
 * `queued` (both sequentially consistent, so one of the two sees the other). */
struct bgq {
    uv_loop_t *loop;
    uv_poll_t poll; /* the eventfd: results are waiting */
    int efd;
    _Atomic(struct bgq_job *) incoming; /* submitted, newest first: loop pushes, threads take all */
    _Atomic(struct bgq_job *) finished; /* done, newest first: threads push, the loop takes all */
    sem_t ready;                        /* wakes a sleeping thread (one per wake; stops) */
    atomic_int queued;                  /* jobs submitted and not yet taken by a thread */
    atomic_uint searching;              /* threads awake and not working */
    atomic_bool waking;                 /* a post made, its thread not yet searching */
    atomic_bool stopping;               /* bgq_close: a thread that finds no job ends */
    pthread_mutex_t mu;                 /* threads only: */
    struct bgq_job *todo, *todo_tail;   /* ... taken from incoming, oldest first */
    unsigned outstanding;               /* submitted, done callback not yet run (loop only) */
    int nice;                           /* of the threads, or BGQ_IDLE */
    unsigned nthreads, max_threads;     /* started (on demand), at most (loop only) */
    pthread_t *threads;
};

/* Pushes job; true when the stack was empty (whoever empties it next has not seen it yet). */
static bool stack_push(_Atomic(struct bgq_job *) *top, struct bgq_job *job) {
    struct bgq_job *old = atomic_load_explicit(top, memory_order_relaxed);
    do {
        job->next = old;
    } while (!atomic_compare_exchange_weak_explicit(top, &old, job, memory_order_release,
                                                    memory_order_relaxed));
    return old == NULL;
}

/* Everything on the stack, oldest first. */
static struct bgq_job *stack_take_all(_Atomic(struct bgq_job *) *top) {
    struct bgq_job *job = atomic_exchange_explicit(top, NULL, memory_order_acquire), *fifo = NULL;
    while (job) {
        struct bgq_job *next = job->next;
        job->next = fifo;
        fifo = job;
        job = next;
    }
    return fifo;
}

/* The next job, oldest first, or NULL (a stop post). */
static struct bgq_job *take(struct bgq *q) {
    pthread_mutex_lock(&q->mu);
    if (!q->todo) {
        q->todo = stack_take_all(&q->incoming);
        for (q->todo_tail = q->todo; q->todo_tail && q->todo_tail->next;)
            q->todo_tail = q->todo_tail->next;
    }
    struct bgq_job *job = q->todo;
    if (job && !(q->todo = job->next)) q->todo_tail = NULL;
    if (job) atomic_fetch_sub(&q->queued, 1);
    pthread_mutex_unlock(&q->mu);
    return job;
}

/* Wakes a sleeping thread, unless a wake is on its way already (its thread will search). */
static void wake(struct bgq *q) {
    if (!atomic_exchange(&q->waking, true)) sem_post(&q->ready);
}

static void *thread_main(void *arg) {
    struct bgq *q = arg;
    if (q->nice == BGQ_IDLE) {
        struct sched_param none = {0};
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &none) != 0) { /* run as we are */
        }
    } else if (setpriority(PRIO_PROCESS, (id_t)gettid(), q->nice) != 0) { /* run as we are */
    }
    /* Searching from the start: the loop started this thread for a job. */
    for (;;) {
        struct bgq_job *job = take(q);
        if (!job) {
            atomic_fetch_sub(&q->searching, 1);
            if (atomic_load(&q->queued) > 0) { /* submitted after take() looked: search again */
                atomic_fetch_add(&q->searching, 1);
                continue;
            }
            if (atomic_load(&q->stopping)) break;
            while (sem_wait(&q->ready) != 0) {} /* EINTR */
            atomic_fetch_add(&q->searching, 1);
            atomic_store(&q->waking, false);
            continue;
        }
        atomic_fetch_sub(&q->searching, 1);
        if (atomic_load(&q->queued) > 0 && atomic_load(&q->searching) == 0) wake(q);
        job->work(job);
        /* One write per batch of results: a job pushed onto a non-empty stack is taken with
         * the one under it, whose pusher writes (or wrote) the eventfd after its push, and the
         * loop takes the whole stack only after reading the eventfd. */
        atomic_fetch_add(&q->searching, 1);
        if (!stack_push(&q->finished, job)) continue;
        uint64_t one = 1;
        while (write(q->efd, &one, sizeof one) < 0 && errno == EINTR) {}
    }
    return NULL;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    struct bgq *q = h->data;
    uint64_t v;
    while (read(q->efd, &v, sizeof v) < 0 && errno == EINTR) {} /* EAGAIN: nothing new */
    struct bgq_job *job = stack_take_all(&q->finished);
    while (job) {
        struct bgq_job *next = job->next;
        if (--q->outstanding == 0) uv_unref((uv_handle_t *)&q->poll);
        job->done(job); /* may submit more, or free job */
        job = next;
    }
}

int bgq_new(uv_loop_t *loop, unsigned threads, int nice, struct bgq **out) {
    struct bgq *q = xcalloc(1, sizeof *q);
    q->loop = loop;
    q->nice = nice;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        int err = -errno;
        free(q);
        return err;
    }
    int err = uv_poll_init(loop, &q->poll, q->efd);
    if (err) {
        close(q->efd);
        free(q);
        return err;
    }
    q->poll.data = q;
    uv_poll_start(&q->poll, UV_READABLE, poll_cb);
    uv_unref((uv_handle_t *)&q->poll);
    atomic_init(&q->incoming, NULL);
    atomic_init(&q->finished, NULL);
    atomic_init(&q->queued, 0);
    atomic_init(&q->searching, 1); /* the first thread, started below */
    atomic_init(&q->waking, false);
    atomic_init(&q->stopping, false);
    pthread_mutex_init(&q->mu, NULL);
    sem_init(&q->ready, 0, 0);
    if (threads < 1) threads = 1;
    if (threads > BGQ_MAX_THREADS) threads = BGQ_MAX_THREADS;
    q->max_threads = threads;
    q->threads = xcalloc(threads, sizeof *q->threads);
    if (pthread_create(&q->threads[0], NULL, thread_main, q) == 0)
        q->nthreads = 1;
    else
        atomic_store(&q->searching, 0);
    if (!q->nthreads) {
        bgq_close(q);
        return UV_EAGAIN;
    }
    *out = q;
    return 0;
}

void bgq_submit(struct bgq *q, struct bgq_job *job) {
    if (q->outstanding++ == 0) uv_ref((uv_handle_t *)&q->poll);
    /* A thread for every job not done yet, up to the most: started when first needed. (A
     * thread whose job is done but not yet handed back counts as busy: at worst one more.) */
    if (q->outstanding > q->nthreads && q->nthreads < q->max_threads) {
        atomic_fetch_add(&q->searching, 1); /* it searches from its start */
        if (pthread_create(&q->threads[q->nthreads], NULL, thread_main, q) == 0)
            q->nthreads++;
        else
            atomic_fetch_sub(&q->searching, 1);
    }
    stack_push(&q->incoming, job);
    atomic_fetch_add(&q->queued, 1);
    if (atomic_load(&q->searching) == 0) wake(q);
}

static void closed_cb(uv_handle_t *h) {
    struct bgq *q = h->data;
    close(q->efd);
    free(q->threads);
    pthread_mutex_destroy(&q->mu);
    sem_destroy(&q->ready);
    free(q);
}

void bgq_close(struct bgq *q) {
    atomic_store(&q->stopping, true);
    for (unsigned i = 0; i < q->nthreads; i++) sem_post(&q->ready); /* each finds no job: stops */
    for (unsigned i = 0; i < q->nthreads; i++) pthread_join(q->threads[i], NULL);
    uv_close((uv_handle_t *)&q->poll, closed_cb);
}
