/* ping_latency.c: latency of an HTTP endpoint under a fixed request rate over many keep-alive
 * connections (what wrk cannot do: wrk runs closed-loop at saturation, where latency is queueing).
 * An optional request header (the API key, for keyed endpoints) and room for large answers
 * (/summary of a 100-node fleet is ~40 KB).
 *
 * Usage: ping_latency PORT PATH CONNECTIONS RATE SECONDS ["Header: value"]
 * Requests are scheduled at RATE per second in total, spread round-robin over CONNECTIONS, each
 * connection with at most one request in flight. Latency runs from the *scheduled* send time to
 * the end of the response, so a stalled server is not hidden (no coordinated omission). Prints
 * sent, answered, p50, p99, p99.9, max. Bounded: stops after SECONDS plus 2 s to drain. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (1u << 20)

struct conn {
    int fd;
    int busy;     /* a request is in flight */
    double sched; /* its scheduled send time (s) */
    char *buf;    /* BUFSZ bytes */
    size_t got;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A full response is in c->buf: headers and Content-Length bytes of body. */
static int complete(struct conn *c) {
    c->buf[c->got] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return 0;
    char *cl = strcasestr(c->buf, "Content-Length:");
    size_t body = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
    return c->got >= (size_t)(end + 4 - c->buf) + body;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: ping_latency PORT PATH CONNECTIONS RATE SECONDS [HEADER]\n");
        return 2;
    }
    int port = atoi(argv[1]), nc = atoi(argv[3]);
    double rate = atof(argv[4]), secs = atof(argv[5]);
    char req[1024];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s\r\n",
                          argv[2], argc == 7 ? argv[6] : "", argc == 7 ? "\r\n" : "");
    struct conn *cs = calloc((size_t)nc, sizeof *cs);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake on time (the default slack is 50 us) */
    int ep = epoll_create1(0);
    for (int i = 0; i < nc; i++) {
        int one = 1;
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cs[i].buf = malloc(BUFSZ);
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(cs[i].fd, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    size_t total = (size_t)(rate * secs);
    double *lat = calloc(total + 1, sizeof *lat);
    size_t sent = 0, done = 0, skipped = 0, errors = 0, non200 = 0;
    double start = now() + 0.05, deadline = start + secs + 2.0;
    int next = 0;
    while (done + skipped + errors < total && now() < deadline) {
        double t = now();
        /* Send everything whose time has come. */
        while (sent < total && start + (double)sent / rate <= t) {
            struct conn *c = &cs[next];
            next = (next + 1) % nc;
            if (c->busy) {
                skipped++;
                sent++;
                continue;
            } /* all connections busy: counted */
            c->sched = start + (double)sent / rate;
            c->busy = 1;
            c->got = 0;
            if (write(c->fd, req, (size_t)reqlen) != reqlen) {
                errors++;
                c->busy = 0;
            }
            sent++;
        }
        /* Sleep until the next send is due, to the microsecond: a millisecond timeout would
         * round the wait down to 0 and spin, and a probe spinning on one of two cores takes
         * the CPU from the server it measures. */
        double wait_s = sent < total ? start + (double)sent / rate - now() : 0.01;
        if (wait_s < 0) wait_s = 0;
        struct timespec timeout = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
        struct epoll_event evs[64];
        int n = epoll_pwait2(ep, evs, 64, &timeout, NULL);
        for (int i = 0; i < n; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            ssize_t r = read(c->fd, c->buf + c->got, BUFSZ - 1 - c->got);
            if (r <= 0) {
                errors++;
                c->busy = 0;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->got += (size_t)r;
            if (c->busy && complete(c)) {
                if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0) non200++;
                lat[done++] = (now() - c->sched) * 1e3;
                c->busy = 0;
            }
        }
    }
    qsort(lat, done, sizeof *lat, cmp);
    if (done == 0) {
        fprintf(stderr, "no answers\n");
        return 1;
    }
    printf("%zu sent at %.0f/s over %d connections: %zu answered, %zu skipped (all busy), %zu "
           "errors, %zu not 200; "
           "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
           sent, rate, nc, done, skipped, errors, non200, lat[done / 2], lat[done * 99 / 100],
           lat[done * 999 / 1000], lat[done - 1]);
    return 0;
}
