/* drain_latency.c: how long a drain (or undrain) made in Redis takes to reach a node's ping.
 *
 * Usage: drain_latency REDIS_URL NAMESPACE NODE PING_PORT ROUNDS
 * Each round flips the node's drain with set_drain.lua (exactly what `shoal drain` runs) and
 * then polls ping over one keep-alive connection until it answers the new status (418 or 200).
 * The clock starts when Redis acknowledges the change. Prints p50, p99 and max in ms. Every
 * wait is bounded (2 s per round). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/rsync.h"
#include "common/util.h"

static int ping_status(int fd) {
    static const char req[] = "GET /api/octopusservernodes/ping HTTP/1.1\r\nHost: x\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) return -1;
    char buf[4096];
    size_t got = 0;
    /* Read headers and the Content-Length body. */
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "Content-Length:");
        if (end && cl && got >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)) break;
    }
    int status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);
    return status;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: drain_latency REDIS_URL NAMESPACE NODE PING_PORT ROUNDS\n");
        return 2;
    }
    struct rsync rs;
    char err[256];
    if (rsync_open(&rs, argv[1], 2000, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct keys k;
    keys_init(&k, argv[2]);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[4])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        return 1;
    }
    int rounds = atoi(argv[5]);
    double *ms = xcalloc((size_t)rounds, sizeof *ms);
    int n = 0;
    for (int i = 0; i < rounds; i++) {
        bool drain = i % 2 == 0;
        int want = i % 2 == 0 ? 418 : 200;
        struct script_call call;
        call_set_drain(&call, &k, argv[3], drain);
        redisReply *r = rsync_call(&rs, &call, err, sizeof err);
        call_free(&call);
        uint64_t t0 = clock_mono_ns();
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "set_drain failed: %s\n", r ? r->str : err);
            return 1;
        }
        freeReplyObject(r);
        int st = -1;
        while ((st = ping_status(fd)) != want && clock_mono_ns() - t0 < 2000000000ULL)
            if (st < 0) {
                fprintf(stderr, "ping connection failed\n");
                return 1;
            }
        if (st != want) {
            fprintf(stderr, "round %d: ping never turned %d\n", i, want);
            return 1;
        }
        ms[n++] = (double)(clock_mono_ns() - t0) / 1e6;
        usleep(2000);
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp);
    printf("drain propagation over %d changes: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", n,
           ms[n / 2], ms[(n * 99) / 100 >= n ? n - 1 : (n * 99) / 100], ms[n - 1]);
    free(ms);
    close(fd);
    rsync_close(&rs);
    return 0;
}
