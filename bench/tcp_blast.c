/* tcp_blast.c: a plain TCP transfer over loopback, no shoal in the path: the control for the
 * ping-during-uploads figure (scripts/bench-packages.sh). On a small machine the probe shares
 * the cores with the sending client and the kernel's TCP work on the bytes; this shows what that
 * costs a probe of an idle node with the same bytes per second going to a receiver that does
 * nothing else (reads 64 KiB at a time and drops them).
 *
 * Usage: tcp_blast SECONDS RATE_MB_S
 * A receiver process and a sender (this one, 64 KiB writes, paced to RATE_MB_S, MB = 10^6 B) on
 * a fresh 127.0.0.1 port. Bounded: the sender stops after SECONDS and the receiver at EOF.
 * Prints "sent <MB> MB in <s> s: <MB/s> MB/s". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIECE (64u << 10)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t) {
    struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

int main(int argc, char **argv) {
    double secs = argc == 3 ? atof(argv[1]) : 0, rate = argc == 3 ? atof(argv[2]) : 0;
    if (secs <= 0 || secs > 3600 || rate <= 0) {
        fprintf(stderr, "usage: tcp_blast SECONDS RATE_MB_S (SECONDS at most 3600)\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
        perror("tcp_blast: listen");
        return 1;
    }
    static char buf[PIECE];
    pid_t rx = fork();
    if (rx < 0) {
        perror("tcp_blast: fork");
        return 1;
    }
    if (rx == 0) { /* the receiver: read and drop until EOF */
        int s = accept(ls, NULL, NULL);
        ssize_t n;
        while (s >= 0 && ((n = read(s, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))) {}
        _exit(s >= 0 ? 0 : 1);
    }
    close(ls);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("tcp_blast: connect");
        return 1;
    }
    memset(buf, 0x5a, sizeof buf);
    double t0 = now(), end = t0 + secs, per = PIECE / (rate * 1e6);
    unsigned long long sent = 0, pieces = 0;
    while (now() < end) {
        ssize_t n = write(c, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            perror("tcp_blast: write");
            break;
        }
        sent += (unsigned long long)n;
        if (++pieces % 16 == 0) sleep_until(t0 + (double)pieces * per); /* each 1 MiB */
    }
    double took = now() - t0;
    close(c);
    int st = 0;
    waitpid(rx, &st, 0);
    printf("sent %.0f MB in %.1f s: %.0f MB/s\n", (double)sent / 1e6, took,
           (double)sent / 1e6 / took);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
