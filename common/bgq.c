/* bgq.c: background threads below the loop; results back through an eventfd (see bgq.h). */
#define _GNU_SOURCE  /* gettid, SCHED_IDLE */
#include "common/bgq.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/util.h"

#define BGQ_MAX_THREADS 16

struct bgq {
    uv_loop_t *loop;
    uv_poll_t poll;                      /* the eventfd: results are waiting */
    int efd;
    pthread_mutex_t mu;
    pthread_cond_t cv;                   /* work was queued, or stop */
    struct bgq_job *todo, *todo_tail;    /* FIFO, under mu */
    struct bgq_job *done, *done_tail;    /* FIFO, under mu */
    bool stop;                           /* under mu */
    unsigned outstanding;                /* submitted, done callback not yet run (loop only) */
    int nice;                            /* of the threads, or BGQ_IDLE */
    unsigned nthreads;
    pthread_t threads[BGQ_MAX_THREADS];
};

static void push(struct bgq_job **head, struct bgq_job **tail, struct bgq_job *job) {
    job->next = NULL;
    if (*tail) (*tail)->next = job;
    else *head = job;
    *tail = job;
}

static void *thread_main(void *arg) {
    struct bgq *q = arg;
    if (q->nice == BGQ_IDLE) {
        struct sched_param none = {0};
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &none) != 0) { /* run as we are */ }
    } else if (setpriority(PRIO_PROCESS, (id_t)gettid(), q->nice) != 0) { /* run as we are */ }
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->todo && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
        if (!q->todo) break;  /* stopping, and nothing left */
        struct bgq_job *job = q->todo;
        q->todo = job->next;
        if (!q->todo) q->todo_tail = NULL;
        pthread_mutex_unlock(&q->mu);
        job->work(job);
        pthread_mutex_lock(&q->mu);
        push(&q->done, &q->done_tail, job);
        pthread_mutex_unlock(&q->mu);
        /* After the unlock: if this write wakes the loop and the loop preempts us, it finds
         * the mutex free. */
        uint64_t one = 1;
        while (write(q->efd, &one, sizeof one) < 0 && errno == EINTR) {}
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    struct bgq *q = h->data;
    uint64_t v;
    while (read(q->efd, &v, sizeof v) < 0 && errno == EINTR) {}  /* EAGAIN: nothing new */
    pthread_mutex_lock(&q->mu);
    struct bgq_job *job = q->done;
    q->done = q->done_tail = NULL;
    pthread_mutex_unlock(&q->mu);
    while (job) {
        struct bgq_job *next = job->next;
        if (--q->outstanding == 0) uv_unref((uv_handle_t *)&q->poll);
        job->done(job);  /* may submit more, or free job */
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
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (threads < 1) threads = 1;
    if (threads > BGQ_MAX_THREADS) threads = BGQ_MAX_THREADS;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, thread_main, q) != 0) break;
        q->nthreads++;
    }
    if (!q->nthreads) {
        q->stop = true;
        bgq_close(q);
        return UV_EAGAIN;
    }
    *out = q;
    return 0;
}

void bgq_submit(struct bgq *q, struct bgq_job *job) {
    if (q->outstanding++ == 0) uv_ref((uv_handle_t *)&q->poll);
    pthread_mutex_lock(&q->mu);
    push(&q->todo, &q->todo_tail, job);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void closed_cb(uv_handle_t *h) {
    struct bgq *q = h->data;
    close(q->efd);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

void bgq_close(struct bgq *q) {
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->nthreads; i++) pthread_join(q->threads[i], NULL);
    uv_close((uv_handle_t *)&q->poll, closed_cb);
}
