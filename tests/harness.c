/* harness.c: real servers and processes for tests (see harness.h). */
#define _GNU_SOURCE
#include "tests/harness.h"

#include "common/client.h"
#include "common/task_codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t h_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether port is free to listen on at 127.0.0.1 now. */
static bool port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A port below the kernel's ephemeral range (ip_local_port_range), picked at random and found
 * free: between our check and the server's bind, the kernel hands ephemeral ports to the
 * outgoing connections of every suite running beside us, so a port from that range can be
 * taken in the gap; ours are only ever taken by another test's random pick. At most 64 tries,
 * then the kernel's pick. */
int h_free_port(void) {
    static pid_t seeded; /* per process: criterion's forked workers must not share a sequence */
    if (seeded != getpid()) {
        seeded = getpid();
        srand48((long)seeded * 7919 ^ (long)h_now_ms());
    }
    int low = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &low) != 1) low = 32768;
        fclose(f);
    }
    for (int i = 0; low > 20000 + 1000 && i < 64; i++) {
        int port = 20000 + (int)(lrand48() % (low - 20000));
        if (port_free(port)) return port;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

bool h_eventually(bool (*cond)(void *arg), void *arg, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (cond(arg)) return true;
        if (h_now_ms() >= end) return false;
        usleep(10 * 1000);
    }
}

pid_t h_spawn(const char *const *argv, const char *const *env, const char *log_path) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* Dies with the test process: a failed assertion ends the test before it can stop what it
     * started, and nothing may outlive the suite. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    int fd = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0) {
        dup2(in, 0);
        close(in);
    }
    for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int h_wait(pid_t pid, int timeout_ms) {
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0) return -1;
        if (h_now_ms() >= end) return -1;
        usleep(5 * 1000);
    }
}

int h_stop(pid_t pid, int sig, int timeout_ms) {
    if (pid <= 0) return -1;
    kill(pid, sig);
    int rc = h_wait(pid, timeout_ms);
    if (rc == -1) {
        kill(pid, SIGKILL);
        rc = h_wait(pid, 5000);
    }
    return rc;
}

static bool redis_answers(void *arg) {
    struct h_redis *r = arg;
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        /* With --requirepass it answers NOAUTH: up all the same. */
        ok = rep && (rep->type == REDIS_REPLY_STATUS ||
                     (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOAUTH", 6) == 0));
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return ok;
}

static const char *const *saved_extra;

static int launch(struct h_redis *r, const char *const *extra) {
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    const char *argv[64] = {
        "redis-server", "--port", port,    "--bind", "127.0.0.1",   "--save", "",
        "--appendonly", "no",     "--dir", r->dir,   "--daemonize", "no",     "--protected-mode",
        "yes"};
    int n = 15;
    for (int i = 0; extra && extra[i] && n < 62; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    char log[200];
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    r->pid = h_spawn(argv, NULL, log);
    if (!h_eventually(redis_answers, r, 10000)) {
        h_stop(r->pid, SIGKILL, 2000);
        r->pid = 0;
        return -1;
    }
    return 0;
}

int h_redis_start(struct h_redis *r, const char *const *extra) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/shoal-test-redis-XXXXXX");
    if (mkdtemp(r->dir) == NULL) return -1;
    saved_extra = extra;
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = h_free_port();
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d/0", r->port);
        if (launch(r, extra) == 0) return 0;
    }
    return -1;
}

int h_redis_restart(struct h_redis *r) {
    if (r->pid) h_redis_stop(r, true);
    return launch(r, saved_extra);
}

void h_redis_stop(struct h_redis *r, bool keep_dir) {
    if (r->pid > 0) h_stop(r->pid, SIGTERM, 5000);
    r->pid = 0;
    if (!keep_dir && r->dir[0]) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0) fprintf(stderr, "harness: could not remove %s\n", r->dir);
    }
}

redisContext *h_redis_connect(const struct h_redis *r) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "harness: cannot connect to redis on %d\n", r->port);
        abort();
    }
    redisSetTimeout(c, tv);
    return c;
}

struct cluster_wait {
    struct h_redis *const *nodes;
    int n;
};

static bool cluster_ok(void *arg) {
    struct cluster_wait *w = arg;
    for (int i = 0; i < w->n; i++) {
        redisContext *c = h_redis_connect(w->nodes[i]);
        redisReply *r = redisCommand(c, "CLUSTER INFO");
        char want[64];
        snprintf(want, sizeof want, "cluster_known_nodes:%d", w->n);
        bool ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") &&
                  strstr(r->str, want);
        if (r) freeReplyObject(r);
        redisFree(c);
        if (!ok) return false;
    }
    return true;
}

void h_cluster_node_args(const char *bus, bool tls, const char **out) {
    const char *args[] = {"--cluster-enabled", "yes", "--cluster-config-file",  "nodes.conf",
                          "--cluster-port",    bus,   "--cluster-node-timeout", "2000"};
    int n = 0;
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) out[n++] = args[i];
    if (tls) {
        out[n++] = "--tls-cluster";
        out[n++] = "yes";
    }
    out[n] = NULL;
}

int h_cluster_form(struct h_redis *const *nodes, const int *meet_ports, const int *bus_ports,
                   int n) {
    for (int i = 0; i < n; i++) {
        redisContext *c = h_redis_connect(nodes[i]);
        redisReply *r =
            redisCommand(c, "CLUSTER ADDSLOTSRANGE %d %d", 16384 * i / n, 16384 * (i + 1) / n - 1);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        if (ok && i > 0) {
            r = redisCommand(c, "CLUSTER MEET 127.0.0.1 %d %d", meet_ports[0], bus_ports[0]);
            ok = r && r->type == REDIS_REPLY_STATUS;
            if (r) freeReplyObject(r);
        }
        redisFree(c);
        if (!ok) return -1;
    }
    struct cluster_wait w = {nodes, n};
    return h_eventually(cluster_ok, &w, 20000) ? 0 : -1;
}

static int myid(struct h_redis *r, char *out, size_t len) {
    redisContext *c = h_redis_connect(r);
    redisReply *rep = redisCommand(c, "CLUSTER MYID");
    int rc = rep && rep->type == REDIS_REPLY_STRING ? 0 : -1;
    if (rc == 0) snprintf(out, len, "%s", rep->str);
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return rc;
}

static int status_ok(redisContext *c, redisReply *r) {
    (void)c;
    int rc = r && r->type == REDIS_REPLY_STATUS ? 0 : -1;
    if (r) freeReplyObject(r);
    return rc;
}

int h_cluster_migrate_keys(struct h_redis *src, struct h_redis *dst, int dst_port, int slot) {
    char sid[64], did[64];
    if (myid(src, sid, sizeof sid) || myid(dst, did, sizeof did)) return -1;
    redisContext *d = h_redis_connect(dst), *s = h_redis_connect(src);
    int moved = -1;
    if (status_ok(d, redisCommand(d, "CLUSTER SETSLOT %d IMPORTING %s", slot, sid)) ||
        status_ok(s, redisCommand(s, "CLUSTER SETSLOT %d MIGRATING %s", slot, did)))
        goto out;
    moved = 0;
    for (int round = 0; round < 1000; round++) { /* bounded: at most 100,000 keys */
        redisReply *keys = redisCommand(s, "CLUSTER GETKEYSINSLOT %d 100", slot);
        if (!keys || keys->type != REDIS_REPLY_ARRAY || keys->elements == 0) {
            if (!keys || keys->type != REDIS_REPLY_ARRAY) moved = -1;
            if (keys) freeReplyObject(keys);
            break;
        }
        char port[16];
        snprintf(port, sizeof port, "%d", dst_port);
        const char *argv[110] = {"MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS"};
        int n = 7;
        for (size_t k = 0; k < keys->elements && n < 110; k++) argv[n++] = keys->element[k]->str;
        int rc = status_ok(s, redisCommandArgv(s, n, argv, NULL));
        moved += (int)keys->elements;
        freeReplyObject(keys);
        if (rc) {
            moved = -1;
            break;
        }
    }
out:
    redisFree(d);
    redisFree(s);
    return moved;
}

int h_cluster_slot_owner(struct h_redis *const *nodes, int n, struct h_redis *owner, int slot) {
    char id[64];
    if (myid(owner, id, sizeof id)) return -1;
    for (int i = 0; i < n; i++) {
        redisContext *c = h_redis_connect(nodes[i]);
        int rc = status_ok(c, redisCommand(c, "CLUSTER SETSLOT %d NODE %s", slot, id));
        redisFree(c);
        if (rc) return -1;
    }
    return 0;
}

const char *h_shoal_bin(void) {
    const char *b = getenv("SHOAL_BIN");
    return b ? b : "build/shoal";
}

char *h_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 1024) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

int h_shoal(char **out, char **err, const char *const *args) {
    char outp[] = "/tmp/shoal-test-out-XXXXXX", errp[] = "/tmp/shoal-test-err-XXXXXX";
    int fo = mkstemp(outp), fe = mkstemp(errp);
    const char *argv[32] = {h_shoal_bin()};
    int n = 1;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fo);
    close(fe);
    int rc = h_wait(pid, 30000);
    if (rc == -1) rc = h_stop(pid, SIGKILL, 2000);
    if (out) *out = h_read_file(outp);
    if (err) *err = h_read_file(errp);
    unlink(outp);
    unlink(errp);
    return rc;
}

bool h_check_namespace(const struct h_redis *r, const char *ns, char **report) {
    const char *args[] = {"check", "--redis", r->url, "--namespace", ns ? ns : "shoal", NULL};
    char *out = NULL, *err = NULL;
    int rc = h_shoal(&out, &err, args);
    size_t n = strlen(out ? out : "") + strlen(err ? err : "") + 64;
    *report = malloc(n);
    snprintf(*report, n, "shoal check exited %d:\n%s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    return rc == 0;
}

void h_resp_free(struct h_resp *r) {
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

int h_req(int port, const char *method, const char *path, const char *hdrs, const char *body,
          struct h_resp *r) {
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return r->status = -1;
    }
    char *msg = NULL;
    size_t mlen = 0;
    FILE *f = open_memstream(&msg, &mlen);
    fprintf(f, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s", method, path,
            hdrs ? hdrs : "");
    if (body)
        fprintf(f, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
    else
        fprintf(f, "\r\n");
    fclose(f);
    ssize_t w = write(fd, msg, mlen);
    free(msg);
    if (w != (ssize_t)mlen) {
        close(fd);
        return r->status = -1;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = read(fd, buf + got, cap - got - 1)) > 0) {
        got += (size_t)n;
        if (cap - got < 1024) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[got] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) {
        free(buf);
        return r->status = -1;
    }
    snprintf(r->head, sizeof r->head, "%.*s", (int)(sep - buf), buf);
    r->body = strdup(sep + 4);
    free(buf);
    r->json = json_loads(r->body, JSON_DECODE_ANY, NULL);
    return r->status;
}

int h_http(int port, const char *method, const char *path, char *body, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[512];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                 method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char resp[16384];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    resp[got] = '\0';
    int status = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) return -1;
    if (body && len) {
        const char *b = strstr(resp, "\r\n\r\n");
        snprintf(body, len, "%s", b ? b + 4 : "");
    }
    return status;
}

void h_worker_start(struct h_worker *w, const struct h_redis *r, const char *name,
                    const char *const *extra) {
    char listen[40];
    w->port = h_free_port();
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", w->port);
    snprintf(w->log, sizeof w->log, "%s/%s-%d.log", r->dir, name, w->port);
    const char *argv[40] = {h_shoal_bin(), "worker",   "--redis", r->url,        "--name",
                            name,          "--listen", listen,    "--heartbeat", "200ms"};
    int n = 10;
    for (int i = 0; extra && extra[i] && n < 39; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    w->pid = h_spawn(argv, NULL, w->log);
}

int h_worker_stop(struct h_worker *w) {
    if (w->pid <= 0) return -1;
    int code = h_stop(w->pid, SIGTERM, 10000);
    w->pid = 0;
    return code;
}

int h_worker_stop_log(struct h_worker *w, char **log) {
    char path[sizeof w->log];
    snprintf(path, sizeof path, "%s", w->log);
    int code = h_worker_stop(w);
    *log = code != 0 ? h_read_file(path) : NULL;
    return code;
}

struct ping_want {
    const struct h_worker *w;
    int status;
};
static bool ping_is(void *arg) {
    struct ping_want *p = arg;
    return h_http(p->w->port, "GET", "/api/octopusservernodes/ping", NULL, 0) == p->status;
}
bool h_ping_is(const struct h_worker *w, int status, int timeout_ms) {
    struct ping_want p = {w, status};
    return h_eventually(ping_is, &p, timeout_ms);
}

struct task_want {
    struct shoal_client *c;
    int64_t id;
    const char *state;
};

static bool task_in_state(void *arg) {
    struct task_want *w = arg;
    struct shoal_task t;
    char err[256];
    if (shoal_task_get(w->c, w->id, &t, err, sizeof err) != 0) return false;
    bool ok = strcmp(t.state, w->state) == 0;
    shoal_task_free(&t);
    return ok;
}

bool h_task_reaches(struct shoal_client *c, int64_t id, const char *state, int timeout_ms) {
    struct task_want w = {c, id, state};
    return h_eventually(task_in_state, &w, timeout_ms);
}

int64_t h_enqueue_sleep(struct shoal_client *c, const char *dur, char *err, size_t errlen) {
    struct buf b;
    buf_init(&b);
    const char *args[] = {dur};
    task_args_strings_encode(&b, args, 1);
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    o.type = "sleep";
    o.args = b.data;
    o.args_len = b.len;
    int64_t id = -1;
    if (shoal_enqueue(c, &o, 1, &id, err, errlen) != 0) id = -1;
    buf_free(&b);
    return id;
}
