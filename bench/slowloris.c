/* slowloris.c: the HTTP edge under a slow-client flood, while a load balancer pings.
 *
 * Usage: slowloris PORT NODE_PID [--hog N] [--hog-ip A] [--others M] [--other-ips K]
 *                  [--seconds S] [--ping-rate R] [--check]
 *
 * Attackers: N connections from --hog-ip (default 2,000 from 127.0.0.2) and M more (default
 * 300) spread over K addresses from 127.0.0.3 on (default 10). Each sends a request head one
 * byte a second and never finishes it; when the node closes one (without an answer: a reset
 * at a cap; or after a 408 at the head deadline), it connects again a second later, as a real
 * slowloris does. Meanwhile a pinger that is none of them (127.0.0.1) opens a new connection
 * per ping, as a load balancer's health check does, at R per second (default 100), and times
 * it from its scheduled start (no coordinated omission). Ping is also measured for a few
 * seconds before the flood (the floor), and the node's VmRSS (from /proc/NODE_PID/status)
 * before, at its highest during, and after the flood. Prints the figures and the node's
 * shoal_http_* metrics.
 *
 * --check (the functional test's mode: no timing asserted): exits 1 unless every ping was
 * answered 200, the node is alive at the end, and some connections over a cap were refused.
 * Raises its own open-file limit to the hard limit first. Every wait is bounded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PING_REQ "GET /api/octopusservernodes/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
/* What attackers trickle: a head that would take hours to finish at one byte a second. */
#define HEAD "GET /api/octopusservernodes/ping HTTP/1.1\r\nHost: x\r\nX-Slow: "
#define MAX_PINGS 200000

enum state { IDLE, CONNECTING, OPEN };

struct attacker {
    int fd;             /* -1 when not connected */
    struct in_addr src; /* its source address */
    enum state state;
    size_t sent;   /* head bytes sent on this connection */
    double next;   /* when it sends its next byte, or connects again */
    bool answered; /* the node sent something (a 408) */
};

struct pinger {
    int port;
    double start, end; /* the window (monotonic s) */
    double rate;
    double *lat; /* ms, per ping */
    size_t n, failed;
};

static int port;
static pid_t node;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t) {
    double d = t - now_s();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
}

static long rss_kb(void) {
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)node);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static int connect_from(const char *src, int port_, bool nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in s = {.sin_family = AF_INET}, d = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &s.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &d.sin_addr);
    d.sin_port = htons((uint16_t)port_);
    if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0 ||
        (connect(fd, (struct sockaddr *)&d, sizeof d) != 0 && errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One blocking request on a new connection from 127.0.0.1: the status, and the answer into
 * out (may be NULL). -1 when none came within 5 s. */
static int request(const char *req, char *out, size_t len) {
    int fd = connect_from("127.0.0.1", port, false);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char buf[65536];
    size_t got = 0;
    ssize_t r;
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) status = -1;
    if (out) snprintf(out, len, "%s", buf);
    return status;
}

static void *ping_main(void *arg) {
    struct pinger *p = arg;
    for (size_t i = 0; p->n < MAX_PINGS; i++) {
        double sched = p->start + (double)i / p->rate;
        if (sched >= p->end) break;
        sleep_until(sched);
        int status = request(PING_REQ, NULL, 0);
        p->lat[p->n++] = (now_s() - sched) * 1000.0;
        if (status != 200) p->failed++;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Pings at rate from now for seconds (on a thread, while the caller runs the flood). */
static void ping_start(struct pinger *p, pthread_t *t, double rate, double seconds) {
    p->port = port;
    p->rate = rate;
    p->start = now_s();
    p->end = p->start + seconds;
    p->n = p->failed = 0;
    if (!p->lat) p->lat = calloc(MAX_PINGS, sizeof *p->lat);
    pthread_create(t, NULL, ping_main, p);
}

static void ping_report(const char *what, struct pinger *p) {
    if (!p->n) {
        printf("%s: no pings\n", what);
        return;
    }
    qsort(p->lat, p->n, sizeof *p->lat, cmp_double);
    printf("%s: %zu pings, %zu not 200; p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", what, p->n,
           p->failed, p->lat[p->n / 2], p->lat[(size_t)((double)p->n * 0.99)], p->lat[p->n - 1]);
}

struct tally {
    unsigned long opened;
    unsigned long refused;   /* closed without an answer: a reset at a cap, mostly (the node's
                                * metrics count them exactly) */
    unsigned long timed_out; /* answered 408, then closed */
    unsigned long connect_failed;
};

static void attacker_close(struct attacker *a, int ep, struct tally *t) {
    epoll_ctl(ep, EPOLL_CTL_DEL, a->fd, NULL);
    close(a->fd);
    a->fd = -1;
    if (a->answered)
        t->timed_out++;
    else
        t->refused++;
    a->state = IDLE;
    a->next = now_s() + 1.0;
}

static void attacker_connect(struct attacker *a, int ep, struct tally *t) {
    char src[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->src, src, sizeof src);
    a->fd = connect_from(src, port, true);
    a->next = now_s() + 1.0;
    if (a->fd < 0) {
        t->connect_failed++;
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = a};
    epoll_ctl(ep, EPOLL_CTL_ADD, a->fd, &ev);
    a->state = CONNECTING;
    a->sent = 0;
    a->answered = false;
    t->opened++;
}

/* Something happened on a's socket: connected, an answer, or the node closed it. */
static void attacker_event(struct attacker *a, int ep, uint32_t events, struct tally *t) {
    char buf[4096];
    if (a->state == CONNECTING && (events & EPOLLOUT)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            attacker_close(a, ep, t);
            return;
        }
        a->state = OPEN;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = a};
        epoll_ctl(ep, EPOLL_CTL_MOD, a->fd, &ev);
        a->next = now_s(); /* its first byte at once */
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        ssize_t n = recv(a->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            if (!a->answered && strncmp(buf, "HTTP/1.1 408", 12) == 0) a->answered = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        attacker_close(a, ep, t);
        return;
    }
}

/* Sends due bytes and reconnects closed attackers. */
static void attackers_tick(struct attacker *as, size_t n, int ep, struct tally *t) {
    static const char head[] = HEAD;
    double now = now_s();
    for (size_t i = 0; i < n; i++) {
        struct attacker *a = &as[i];
        if (a->next > now) continue;
        if (a->state == IDLE) {
            attacker_connect(a, ep, t);
        } else if (a->state == OPEN) {
            char c = a->sent < sizeof head - 1 ? head[a->sent] : 'a';
            if (send(a->fd, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) a->sent++;
            a->next = now + 1.0;
        }
    }
}

static void run_flood(struct attacker *as, size_t n, int ep, struct tally *t, double until,
                      long *rss_max) {
    struct epoll_event evs[256];
    double next_rss = 0;
    while (now_s() < until) {
        int k = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < k; i++) attacker_event(evs[i].data.ptr, ep, evs[i].events, t);
        attackers_tick(as, n, ep, t);
        if (now_s() >= next_rss) {
            long r = rss_kb();
            if (r > *rss_max) *rss_max = r;
            next_rss = now_s() + 0.25;
        }
    }
}

static void print_metrics(void) {
    static char out[65536];
    if (request("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", out, sizeof out) !=
        200) {
        printf("metrics: no answer\n");
        return;
    }
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, "shoal_http_", 11) == 0) printf("  %s\n", line);
}

static void usage(void) {
    fprintf(stderr, "usage: slowloris PORT NODE_PID [--hog N] [--hog-ip A] [--others M] "
                    "[--other-ips K] [--seconds S] [--ping-rate R] [--check]\n");
    exit(2);
}

int main(int argc, char **argv) {
    size_t hog = 2000, others = 300, other_ips = 10;
    const char *hog_ip = "127.0.0.2";
    double seconds = 20, rate = 100;
    bool check = false;
    if (argc < 3) usage();
    port = atoi(argv[1]);
    node = (pid_t)atoi(argv[2]);
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--check")) {
            check = true;
            continue;
        }
        if (!v) usage();
        if (!strcmp(a, "--hog"))
            hog = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--hog-ip"))
            hog_ip = v;
        else if (!strcmp(a, "--others"))
            others = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--other-ips"))
            other_ips = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--ping-rate"))
            rate = atof(v);
        else
            usage();
        i++;
    }
    if (port <= 0 || node <= 0 || other_ips == 0 || other_ips > 200 || seconds <= 0 || rate <= 0)
        usage();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < hog + others + 64) {
        fprintf(stderr, "slowloris: open-file limit %llu is below %zu connections\n",
                (unsigned long long)rl.rlim_cur, hog + others);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    size_t n = hog + others;
    struct attacker *as = calloc(n ? n : 1, sizeof *as);
    for (size_t i = 0; i < n; i++) {
        char ip[32];
        if (i < hog)
            snprintf(ip, sizeof ip, "%s", hog_ip);
        else
            snprintf(ip, sizeof ip, "127.0.0.%zu", 3 + (i - hog) % other_ips);
        inet_pton(AF_INET, ip, &as[i].src);
        as[i].fd = -1;
        as[i].next = (double)i / (double)(n ? n : 1) * 0.5; /* relative: set below */
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct pinger p = {0};
    pthread_t t;
    struct tally tally = {0};

    double floor_s = seconds / 4 < 3 ? seconds / 4 : 3;
    long rss_before = rss_kb(), rss_max = rss_before;
    ping_start(&p, &t, rate, floor_s);
    pthread_join(t, NULL);
    ping_report("ping before the flood (floor)", &p);
    size_t failed = p.failed;

    double t0 = now_s();
    for (size_t i = 0; i < n; i++) as[i].next += t0; /* connects spread over half a second */
    ping_start(&p, &t, rate, seconds);
    run_flood(as, n, ep, &tally, t0 + seconds + 0.2, &rss_max);
    pthread_join(t, NULL);
    ping_report("ping during the flood", &p);
    failed += p.failed;
    size_t open_now = 0;
    for (size_t i = 0; i < n; i++) open_now += as[i].state == OPEN;
    printf("flood: %zu attackers (%zu from %s, %zu from %zu others) for %.0f s; %zu open at the "
           "end; connections opened %lu, closed without an answer (reset at a cap) %lu, "
           "answered 408 and closed %lu, connect failed %lu\n",
           n, hog, hog_ip, others, other_ips, seconds, open_now, tally.opened, tally.refused,
           tally.timed_out, tally.connect_failed);
    printf("node metrics at the end of the flood:\n");
    print_metrics();
    for (size_t i = 0; i < n; i++)
        if (as[i].fd >= 0) close(as[i].fd);
    close(ep);
    struct timespec settle = {2, 0};
    nanosleep(&settle, NULL);
    long rss_after = rss_kb();
    bool alive = kill(node, 0) == 0 && rss_after > 0;
    printf("node RSS: %.1f MB before, %.1f MB at most during, %.1f MB after (%s)\n",
           (double)rss_before / 1024, (double)rss_max / 1024, (double)rss_after / 1024,
           alive ? "alive" : "GONE");
    free(as);
    free(p.lat);
    if (!check) return 0;
    bool ok = failed == 0 && alive && tally.refused > 0;
    if (!ok)
        fprintf(stderr, "slowloris --check failed: %zu pings not 200, node %s, %lu refused\n",
                failed, alive ? "alive" : "gone", tally.refused);
    return ok ? 0 : 1;
}
