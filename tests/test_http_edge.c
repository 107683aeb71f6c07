/* test_http_edge.c: the HTTP edge against slow and greedy clients, on a real `shoal worker`
 * and redis-server over loopback sockets: the cap on concurrent package uploads (429 with
 * Retry-After before the body is read, the node's RSS bounded by the cap), an upload whose
 * body stalls cut at the body deadline (nothing left behind), an upload the node itself holds
 * back not cut, and the connection cap fitted under a low open-file limit. The server's own
 * deadline and cap tests (in-process) are in test_http.c; the slowloris flood is
 * scripts/bench-slowloris.sh (--short runs as a CTest). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/pkg_client.h"
#include "tests/harness.h"

#define KEY "edge-test-key-0123456789"
#define SPACE "Spaces-1"
#define MiB (1024ull * 1024)

static struct h_redis redis;
static struct h_worker node;
static char pkgdir[160];

static void start_node(const char *const *more) {
    const char *extra[24] = {"--api-key", KEY, "--package-dir", pkgdir, "--cap", "0"};
    int n = 6;
    for (int i = 0; more && more[i] && n < 23; i++) extra[n++] = more[i];
    extra[n] = NULL;
    h_worker_start(&node, &redis, "edgenode", extra);
    cr_assert(h_ping_is(&node, 200, 10000), "the node did not come up");
}

static void setup(void) {
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
    snprintf(pkgdir, sizeof pkgdir, "%s/packages", redis.dir);
}

static void teardown(void) {
    if (node.pid > 0) cr_expect_eq(h_worker_stop(&node), 0, "the node must exit 0 on SIGTERM");
    h_redis_stop(&redis, false);
}

TestSuite(edge, .init = setup, .fini = teardown, .timeout = 120);

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static bool no_temp_files(void *arg) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/" SPACE, pkgdir);
    DIR *d = opendir(dir);
    bool none = true;
    if (!d) return true;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".upload-")) none = false;
    closedir(d);
    return none;
}

/* Bytes in the space's temporary upload files (what the node has written of bodies). */
static long long temp_bytes(void) {
    char dir[256], path[600];
    long long sum = 0;
    snprintf(dir, sizeof dir, "%s/" SPACE, pkgdir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strstr(e->d_name, ".upload-") && stat(path, &st) == 0) sum += st.st_size;
    }
    closedir(d);
    return sum;
}

static bool temp_bytes_are(void *arg) { return temp_bytes() == *(long long *)arg; }

/* Sends an upload's head: raw body of size bytes, Expect: 100-continue. */
static int upload_head(const char *name, uint64_t size) {
    char req[512];
    int fd = pc_connect(node.port);
    cr_assert_geq(fd, 0, "cannot connect");
    int n = snprintf(req, sizeof req,
                     "POST /api/" SPACE "/packages/raw?filename=%s HTTP/1.1\r\nHost: x\r\n"
                     "X-Octopus-ApiKey: " KEY "\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %llu\r\nExpect: 100-continue\r\n\r\n",
                     name, (unsigned long long)size);
    cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    return fd;
}

/* What fd receives within ms, or until out holds until (NULL: to EOF), appended to out
 * (NUL-terminated). True at EOF. */
static bool read_until(int fd, char *out, size_t len, int ms, const char *until) {
    uint64_t end = h_now_ms() + (uint64_t)ms;
    size_t got = strlen(out);
    while (got < len - 1 && !(until && strstr(out, until))) {
        int left = (int)(end - h_now_ms());
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        ssize_t r = recv(fd, out + got, len - 1 - got, MSG_DONTWAIT);
        if (r <= 0) {
            out[got] = '\0';
            return true;
        }
        got += (size_t)r;
        out[got] = '\0';
    }
    return false;
}

static bool read_for(int fd, char *out, size_t len, int ms) {
    return read_until(fd, out, len, ms, NULL);
}

static void send_body(int fd, uint64_t n, char fill) {
    static char block[256 << 10];
    memset(block, fill, sizeof block);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (n) {
        size_t k = n < sizeof block ? (size_t)n : sizeof block;
        ssize_t w = send(fd, block, k, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "the node stopped taking a body");
        n -= (uint64_t)w;
    }
}

static long long metric(const char *name) {
    char body[16384];
    cr_assert_eq(h_http(node.port, "GET", "/metrics", body, sizeof body), 200);
    char line[200];
    snprintf(line, sizeof line, "\n%s ", name);
    const char *p = strstr(body, line);
    cr_assert(p, "no %s in /metrics", name);
    return atoll(p + strlen(line));
}

struct metric_want {
    const char *name;
    long long value;
};
static bool metric_is(void *arg) {
    struct metric_want *m = arg;
    return metric(m->name) == m->value;
}

/* Ten uploads stall after their head and 6 MiB of body each. With --http-max-uploads 2, two
 * are taken (100 Continue), eight answered 429 with Retry-After and an Octopus error, without
 * a 100 Continue (their bodies are never read), and the node grows by the two it took, not by
 * ten (it used to take every one, 12 MiB of buffers each). */
Test(edge, ten_stalled_uploads_two_taken_rest_429) {
    enum { N = 10 };
    const char *more[] = {"--http-max-uploads", "2", NULL};
    start_node(more);
    long before = rss_kb(node.pid);
    int fd[N];
    static char got[N][2048];
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof name, "Stall%d.1.0.0.zip", i);
        fd[i] = upload_head(name, 100 * MiB);
        got[i][0] = '\0';
        read_until(fd[i], got[i], sizeof got[i], 3000, "\r\n\r\n"); /* 100 or 429 */
    }
    int taken = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        if (!strncmp(got[i], "HTTP/1.1 100 Continue\r\n\r\n", 25) && !got[i][25]) {
            taken++;
            send_body(fd[i], 6 * MiB, (char)('a' + i));
            continue;
        }
        read_for(fd[i], got[i], sizeof got[i], 3000); /* to its end (the node closes) */
        refused++;
    }
    long long written = (long long)taken * 6 * (long long)MiB; /* the node has read them */
    cr_assert(h_eventually(temp_bytes_are, &written, 10000), "%lld of %lld bytes written",
              temp_bytes(), written);
    long during = rss_kb(node.pid);
    fprintf(stderr, "edge: node RSS %.1f MB before, %.1f MB with %d stalled uploads taken of %d\n",
            (double)before / 1024, (double)during / 1024, taken, N);
    cr_assert_eq(taken, 2, "uploads taken: %d, refused: %d", taken, refused);
    cr_assert_eq(refused, N - 2);
    for (int i = 0; i < N; i++) {
        if (!strncmp(got[i], "HTTP/1.1 100 Continue\r\n\r\n", 25)) continue;
        cr_assert(!strncmp(got[i], "HTTP/1.1 429 Too Many Requests\r\n", 32), "upload %d: %s", i,
                  got[i]);
        cr_assert(strstr(got[i], "\r\nRetry-After: 5\r\n"), "%s", got[i]);
        cr_assert(strstr(got[i], "\r\nConnection: close\r\n"), "%s", got[i]);
        cr_assert(strstr(got[i], "{\"ErrorMessage\":\"Too many package uploads in progress\","
                                 "\"Errors\":[\"this node is taking 2 package uploads"),
                  "%s", got[i]);
    }
    struct metric_want active = {"shoal_package_uploads_active", 2};
    cr_assert(h_eventually(metric_is, &active, 3000));
    cr_assert_eq(metric("shoal_package_uploads_refused_total"), N - 2);
    cr_assert_lt(during - before, 3 * 12 * 1024, "RSS grew from %ld to %ld kB", before, during);
    for (int i = 0; i < N; i++) close(fd[i]);
    active.value = 0;
    cr_assert(h_eventually(metric_is, &active, 5000), "the stalled uploads never ended");
    cr_assert(h_eventually(no_temp_files, NULL, 5000));
    struct pc_upload o = {.space = SPACE,
                          .query = "?filename=After.1.0.0.zip",
                          .key = KEY,
                          .size = 3 * MiB,
                          .seed = 7};
    struct pc_result r;
    cr_assert_eq(pc_upload(node.port, &o, &r), 0);
    cr_assert_eq(r.status, 201, "a slot came back: %d %s", r.status, r.body);
}

/* An upload whose body stops arriving is cut at the body deadline: answered 408 and closed,
 * its temporary file removed. */
Test(edge, stalled_upload_cut_at_body_deadline) {
    const char *more[] = {"--http-body-timeout", "1s", NULL};
    start_node(more);
    int fd = upload_head("Stalled.1.0.0.zip", 64 * MiB);
    char got[4096] = "";
    read_until(fd, got, sizeof got, 3000, "\r\n\r\n");
    cr_assert(!strcmp(got, "HTTP/1.1 100 Continue\r\n\r\n"), "%s", got);
    send_body(fd, 3 * MiB, 's');
    uint64_t t0 = h_now_ms();
    got[0] = '\0';
    bool eof = read_for(fd, got, sizeof got, 5000);
    uint64_t waited = h_now_ms() - t0;
    close(fd);
    cr_assert(eof, "a stalled upload is still open after 5 s: %s", got);
    cr_assert(!strncmp(got, "HTTP/1.1 408 Request Timeout\r\n", 30), "%s", got);
    cr_assert(strstr(got, "the body stopped arriving"), "%s", got);
    cr_assert_geq(waited, 800, "cut after %llu ms", (unsigned long long)waited);
    cr_assert(h_eventually(no_temp_files, NULL, 5000), "the temporary file was left");
    cr_assert_eq(metric("shoal_http_connections_timed_out_total{deadline=\"body\"}"), 1);
    cr_assert_eq(metric("shoal_package_uploads_active"), 0);
}

/* Time the node holds a body back is not the client's: with a 1 s body deadline, an upload
 * whose name check waits 1.8 s on Redis (CLIENT PAUSE) before the node reads a byte of its
 * body, then 32 MiB paced by the node's own hashing and writing, completes. (A heartbeat of 3 s
 * so that the pause does not count as a stalled link.) */
Test(edge, upload_held_back_by_the_node_is_not_cut) {
    const char *more[] = {"--http-body-timeout", "1s", "--heartbeat", "3s", NULL};
    start_node(more);
    redisContext *c = h_redis_connect(&redis);
    redisReply *r = redisCommand(c, "CLIENT PAUSE 1800 ALL");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "CLIENT PAUSE refused");
    freeReplyObject(r);
    redisFree(c);
    uint64_t t0 = h_now_ms();
    struct pc_upload o = {.space = SPACE,
                          .query = "?filename=Held.1.0.0.zip",
                          .key = KEY,
                          .size = 32 * MiB,
                          .seed = 9};
    struct pc_result res;
    cr_assert_eq(pc_upload(node.port, &o, &res), 0);
    cr_assert_eq(res.status, 201, "%d %s", res.status, res.body);
    cr_assert_geq(h_now_ms() - t0, 1500, "Redis was not paused long enough to test anything");
    cr_assert(strstr(res.body, res.sha), "%s", res.body);
}

/* Under an open-file limit of 256 the node lowers its connection cap (4,096 by default) to fit,
 * so connections over it are refused at accept rather than accept() failing; a kept-alive
 * ping client is answered throughout, and nothing fails to accept. */
Test(edge, connection_cap_fits_a_low_file_limit) {
    enum { N = 300 };
    char listen[40];
    node.port = h_free_port();
    snprintf(node.name, sizeof node.name, "edgenode");
    snprintf(listen, sizeof listen, "127.0.0.1:%d", node.port);
    snprintf(node.log, sizeof node.log, "%s/edge-nofile.log", redis.dir);
    const char *argv[] = {"/usr/bin/prlimit",
                          "--nofile=256:256",
                          h_shoal_bin(),
                          "worker",
                          "--redis",
                          redis.url,
                          "--name",
                          "edgenode",
                          "--listen",
                          listen,
                          "--heartbeat",
                          "200ms",
                          "--cap",
                          "0",
                          NULL};
    node.pid = h_spawn(argv, NULL, node.log);
    cr_assert(h_ping_is(&node, 200, 10000), "the node did not come up");
    char *log = h_read_file(node.log);
    cr_assert(log && strstr(log, "http connection cap lowered to fit the open-file limit"), "%s",
              log ? log : "");
    free(log);
    int keep = pc_connect(node.port);
    cr_assert_geq(keep, 0);
    int fds[N], opened = 0;
    for (int i = 0; i < N; i++)
        if ((fds[i] = pc_connect(node.port)) >= 0) opened++;
    cr_assert_eq(opened, N);
    for (int round = 0; round < 3; round++) {
        static const char ping[] = "GET /api/octopusservernodes/ping HTTP/1.1\r\nHost: x\r\n\r\n";
        char got[4096] = "";
        cr_assert_eq(send(keep, ping, sizeof ping - 1, MSG_NOSIGNAL), (ssize_t)sizeof ping - 1);
        read_for(keep, got, sizeof got, 300);
        cr_assert(!strncmp(got, "HTTP/1.1 200 OK\r\n", 17), "round %d: %s", round, got);
    }
    int reset = 0;
    for (int i = 0; i < N; i++) {
        char got[64] = "";
        if (read_for(fds[i], got, sizeof got, i < N - 1 ? 1 : 200)) reset++;
        close(fds[i]);
    }
    cr_assert_gt(reset, 0, "no connection was refused");
    close(keep);
    cr_assert_gt(metric("shoal_http_connections_refused_total{reason=\"node_cap\"}"), 0);
    cr_assert_eq(metric("shoal_http_accept_errors_total"), 0);
}
