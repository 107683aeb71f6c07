/* bench_node.c: a shoal node with two measuring handlers, for scripts/bench-tasks.sh.
 *
 * Usage: bench_node worker [shoal worker flags]      (exactly `shoal worker`, plus the handlers)
 * Environment:
 *   SHOAL_BENCH_OUT    file or FIFO that receives one line per report (required by the handlers)
 *   SHOAL_BENCH_COUNT  for `count`: the call number that ends a drain (default 0: never)
 *   SHOAL_BENCH_WORK_US  for `count`: each call first sleeps this long (default 0: returns at
 *                      once), for tasks that take a little time
 *
 * Handlers (both run on the node's handler threads, as every C handler does, and do nothing
 * else):
 *   count  a no-op that notes the CLOCK_REALTIME of the first call and, at call number
 *          SHOAL_BENCH_COUNT, writes "drained <count> <first_ns> <last_ns>\n".
 *   lat    reads its payload, a msgpack unsigned int: the producer's CLOCK_REALTIME in µs taken
 *          just before its enqueue call, and writes "lat <now_us - that>\n", now taken at entry.
 * Each report is one write() of less than PIPE_BUF bytes, so lines from concurrent handler
 * threads never interleave; the output is opened O_RDWR so a FIFO never blocks the node. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <msgpack.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker/handler.h"

struct bench {
    int out;                      /* report fd, -1 when SHOAL_BENCH_OUT is unset */
    int64_t target;               /* count: the call that ends the drain */
    unsigned work_us;             /* count: sleep this long in each call */
    atomic_int_fast64_t calls;    /* count: calls so far */
    atomic_int_fast64_t first_ns; /* count: CLOCK_REALTIME of the first call */
};

static int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(const struct bench *b, const char *line, int len) {
    if (b->out >= 0 && write(b->out, line, (size_t)len) != len) perror("bench_node: report");
}

static int count_fn(struct shoal_job *job, void *arg) {
    struct bench *b = arg;
    if (b->work_us) usleep(b->work_us);
    int64_t now = realtime_ns();
    int64_t n = atomic_fetch_add(&b->calls, 1) + 1;
    if (n == 1) atomic_store(&b->first_ns, now);
    if (n == b->target) {
        /* The first call's store may lag on another thread: wait for it (bounded: it is the
         * next instruction of a call that already started). */
        int64_t first = 0;
        for (int i = 0; i < 1000000 && (first = atomic_load(&b->first_ns)) == 0; i++) {}
        char line[96];
        int len = snprintf(line, sizeof line, "drained %lld %lld %lld\n", (long long)n,
                           (long long)first, (long long)now);
        report(b, line, len);
    }
    return 0;
}

static int lat_fn(struct shoal_job *job, void *arg) {
    int64_t now_us = realtime_ns() / 1000;
    size_t len;
    const char *p = shoal_job_args(job, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = 1;
    if (p && msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        char line[48];
        int n = snprintf(line, sizeof line, "lat %lld\n",
                         (long long)(now_us - (int64_t)u.data.via.u64));
        report(arg, line, n);
        rc = 0;
    } else {
        shoal_job_fail(job, "lat: payload is not a msgpack unsigned integer");
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

int main(int argc, char **argv) {
    static struct bench b;
    const char *out = getenv("SHOAL_BENCH_OUT"), *target = getenv("SHOAL_BENCH_COUNT");
    b.out = -1;
    if (out && (b.out = open(out, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        perror(out);
        return 1;
    }
    b.target = target ? atoll(target) : 0;
    b.work_us = getenv("SHOAL_BENCH_WORK_US") ? (unsigned)atoi(getenv("SHOAL_BENCH_WORK_US")) : 0;
    struct shoal_handlers *h = shoal_handlers_new();
    shoal_handlers_add(h, "count", count_fn, &b);
    shoal_handlers_add(h, "lat", lat_fn, &b);
    int rc = argc >= 2 ? shoal_worker_main(argc - 1, argv + 1, h) : 2;
    if (argc < 2) fprintf(stderr, "usage: bench_node worker [shoal worker flags]\n");
    shoal_handlers_free(h);
    if (b.out >= 0) close(b.out);
    return rc;
}
