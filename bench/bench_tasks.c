/* bench_tasks.c: the task-queue figures of scripts/bench-tasks.sh, measured the way
 * ../shared/bench-peers measures its peers, so the numbers compare.
 *
 * Usage: bench_tasks REDIS_URL NAMESPACE WORKDIR COMMAND ARGS...
 *   enqueue single|bulk N i|none      FLUSHDB, then N tasks, one per call (awaited) or in
 *                                     calls of 1,000: type `count` with payload msgpack
 *                                     {"i": i} (like the peers' {i}), or `noop` with none
 *   floor N                           N awaited calls of a script that only returns 1, on
 *                                     the same client: the floor under "enqueue single"
 *   drain LABEL COUNT CAP NODE_BIN    starts NODE_BIN (bench_node) at that cap on the queued
 *                                     tasks, waits for its COUNT-th handler call, stops it
 *   latency K CAP NODE_BIN            FLUSHDB; an idle node; K tasks, each sent 10 ms after the
 *                                     previous one was handled, carrying the send time;
 *                                     p50/p99 nearest rank
 *   claimcost BACKLOG BATCH PER NODES FLUSHALL; then claims BATCH tasks in claims of PER
 *                                     with claim.lua, completing each claim with complete.lua
 *                                     as a node at cap PER does, in two pairs of databases
 *                                     run call by call in turn: 1,000 vs BACKLOG tasks queued
 *                                     behind the batch (the latter in the URL's database 0,
 *                                     left there), and 1 vs NODES nodes registered. Server
 *                                     time of each call from INFO commandstats (EVALSHA
 *                                     usec); medians
 * Prints one JSON line per figure on stdout, in bench-peers' raw format
 * ({"peer":"shoal","metric":...,"value":...,"n":...,"run":BENCH_RUN}); errors go to stderr
 * with exit status 1. Nodes it starts are its children, stopped by PID (SIGTERM, then SIGKILL
 * after 30 s) and die with it (PR_SET_PDEATHSIG). Every wait has a deadline. Reports from a
 * node come through the FIFO WORKDIR/report.fifo (see bench_node.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/calls.h"
#include "common/client.h"
#include "common/reply.h"
#include "common/util.h"

#define BULK 1000                /* tasks per bulk enqueue call, as the peers' bulk */
#define RETENTION_MS 604800000LL /* 7 d, the node's default */
/* claim.lua's reply: verdict, next_due, expired, then per task: id, lease, type, args, timeout,
 * attempt, queued. claim_and_complete() builds its claim.lua and complete.lua calls with the
 * builders worker/claim.c uses (common/calls.h): if the reply changes, change this too. */
#define CLAIM_FIELDS 7

struct bench {
    const char *url, *ns;
    struct shoal_client cl;
    char fifo[512]; /* report FIFO */
    int fd;         /* its read end (opened O_RDWR: never EOF) */
    char buf[4096]; /* bytes read from it, not yet returned as lines */
    size_t len;
    int run;    /* BENCH_RUN, for the raw lines */
    pid_t node; /* the node we started, 0 when none (or reaped) */
};

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_tasks: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void emit(const struct bench *b, const char *metric, double value, long long n) {
    printf("{\"peer\":\"shoal\",\"metric\":\"%s\",\"value\":%.4f,\"n\":%lld,\"run\":%d}\n", metric,
           value, n, b->run);
    fflush(stdout);
}

static int64_t realtime_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* --- Redis ----------------------------------------------------------------------------------- */

/* Runs a command; dies on a connection failure or an error reply. Caller frees the reply. */
static redisReply *cmd(struct bench *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(b->cl.redis.c, fmt, ap);
    va_end(ap);
    if (!r) die("redis: %s", b->cl.redis.c->errstr);
    if (r->type == REDIS_REPLY_ERROR) die("redis: %s", r->str);
    return r;
}

static void cmd0(struct bench *b, const char *fmt, const char *arg) {
    freeReplyObject(cmd(b, fmt, arg));
}

static long long cmd_int(struct bench *b, const char *fmt, const char *arg) {
    redisReply *r = cmd(b, fmt, arg);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : 0;
    freeReplyObject(r);
    return v;
}

/* A numeric INFO field, e.g. info(b, "memory", "used_memory"). */
static double info(struct bench *b, const char *section, const char *field) {
    redisReply *r = cmd(b, "INFO %s", section);
    size_t flen = strlen(field);
    double v = -1;
    for (const char *p = r->str; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, field, flen) == 0 && p[flen] == ':') {
            v = atof(p + flen + 1);
            break;
        }
    freeReplyObject(r);
    if (v < 0) die("INFO %s has no %s", section, field);
    return v;
}

static double redis_cpu_s(struct bench *b) {
    return info(b, "cpu", "used_cpu_user") + info(b, "cpu", "used_cpu_sys");
}

/* Runs a script call and frees it; dies when it fails or is refused. */
static redisReply *run_call(struct shoal_client *cl, struct script_call *call) {
    char err[256];
    redisReply *r = rsync_call(&cl->redis, call, err, sizeof err);
    if (!r) die("redis: %s", err);
    if (r->type == REDIS_REPLY_ERROR) die("script %d refused: %s", (int)call->id, r->str);
    call_free(call);
    return r;
}

/* --- enqueueing ------------------------------------------------------------------------------ */

/* A task payload: msgpack {"i": i}, or a bare unsigned integer when map is false. */
struct payload {
    char data[16];
    size_t len;
};

static void pack(struct payload *p, bool map, uint64_t v) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (map) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str(&pk, 1);
        msgpack_pack_str_body(&pk, "i", 1);
    }
    msgpack_pack_uint64(&pk, v);
    memcpy(p->data, sb.data, sb.size); /* at most 12 bytes */
    p->len = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

/* Enqueues n tasks of type `type` in calls of `per` (1 = one call each, awaited), numbered from
 * `from` in their payload when with_args. */
static void enqueue_n(struct shoal_client *cl, const char *type, long long from, long long n,
                      size_t per, bool with_args) {
    struct shoal_task_opts *t = xcalloc(per, sizeof *t);
    struct payload *p = xcalloc(per, sizeof *p);
    int64_t *ids = xcalloc(per, sizeof *ids);
    char err[256];
    for (long long done = 0; done < n;) {
        size_t m = (size_t)(n - done) < per ? (size_t)(n - done) : per;
        for (size_t j = 0; j < m; j++) {
            shoal_task_opts_init(&t[j]);
            t[j].type = type;
            if (with_args) {
                pack(&p[j], true, (uint64_t)(from + done + (long long)j));
                t[j].args = p[j].data;
                t[j].args_len = p[j].len;
            }
        }
        if (shoal_enqueue(cl, t, m, ids, err, sizeof err) != 0) die("enqueue: %s", err);
        done += (long long)m;
    }
    free(ids);
    free(p);
    free(t);
}

static long long ready_count(struct bench *b) {
    char stats[160];
    return cmd_int(b, "HGET %s ready", keys_stats(&b->cl.keys, stats, sizeof stats));
}

/* enqueue single|bulk N i|none: the peers' enqueue step (FLUSHDB first, client warm). */
static int cmd_enqueue(struct bench *b, int argc, char **argv) {
    if (argc != 3) die("usage: enqueue single|bulk N i|none");
    bool bulk = strcmp(argv[0], "bulk") == 0, with_args = strcmp(argv[2], "i") == 0;
    long long n = atoll(argv[1]);
    if (n < 1) die("N must be positive");
    cmd0(b, "FLUSHDB", NULL);
    const char *type = with_args ? "count" : "noop";
    enqueue_n(&b->cl, type, 0, 1, 1, with_args); /* connection and script warm, then clean */
    cmd0(b, "FLUSHDB", NULL);
    double m0 = info(b, "memory", "used_memory"), c0 = redis_cpu_s(b);
    uint64_t t0 = clock_mono_ns();
    enqueue_n(&b->cl, type, 0, n, bulk ? BULK : 1, with_args);
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    double c1 = redis_cpu_s(b), m1 = info(b, "memory", "used_memory");
    if (ready_count(b) != n) die("expected %lld ready tasks, Redis counts %lld", n, ready_count(b));
    const char *suffix = with_args ? "" : "_noargs";
    char m[64];
    snprintf(m, sizeof m, "enqueue_%s%s", argv[0], suffix);
    emit(b, m, (double)n / secs, n);
    snprintf(m, sizeof m, "bytes_per_job_%s%s", argv[0], suffix);
    emit(b, m, (m1 - m0) / (double)n, n);
    snprintf(m, sizeof m, "redis_cpu_us_enqueue_%s%s", argv[0], suffix);
    emit(b, m, (c1 - c0) * 1e6 / (double)n, n);
    return 0;
}

/* floor N: Redis's own floor for one awaited script call on this client and machine (the
 * socket both ways, the event loop, the call): what "enqueue single" can never go below. */
static int cmd_floor(struct bench *b, int argc, char **argv) {
    if (argc != 1) die("usage: floor N");
    long long n = atoll(argv[0]);
    if (n < 1) die("N must be positive");
    redisReply *r = cmd(b, "SCRIPT LOAD %s", "return 1");
    char sha[64];
    snprintf(sha, sizeof sha, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(cmd(b, "EVALSHA %s 0", sha)); /* warm */
    double c0 = redis_cpu_s(b);
    uint64_t t0 = clock_mono_ns();
    for (long long i = 0; i < n; i++) freeReplyObject(cmd(b, "EVALSHA %s 0", sha));
    double secs = (double)(clock_mono_ns() - t0) / 1e9, c1 = redis_cpu_s(b);
    emit(b, "awaited_floor", (double)n / secs, n);
    emit(b, "redis_cpu_us_awaited_floor", (c1 - c0) * 1e6 / (double)n, n);
    return 0;
}

/* --- nodes and their reports ----------------------------------------------------------------- */

/* Starts bench_node as b->node, a child that dies with us. count: SHOAL_BENCH_COUNT, or NULL. */
static void node_start(struct bench *b, const char *bin, const char *name, const char *cap,
                       const char *count) {
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid > 0) {
        b->node = pid;
        return;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1); /* we lost the race with our parent's death */
    setenv("SHOAL_BENCH_OUT", b->fifo, 1);
    if (count) setenv("SHOAL_BENCH_COUNT", count, 1);
    execl(bin, bin, "worker", "--redis", b->url, "--namespace", b->ns, "--name", name, "--cap", cap,
          "--queues", "default", "--listen", "127.0.0.1:0", "--log-level", "warn", (char *)NULL);
    fprintf(stderr, "bench_tasks: cannot run %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* Stops b->node: SIGTERM, up to 30 s for a clean exit (its tasks are done), then SIGKILL. */
static void node_stop(struct bench *b) {
    pid_t pid = b->node;
    int st;
    b->node = 0;
    if (pid == 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fprintf(stderr, "bench_tasks: node %d ended with status 0x%x\n", (int)pid, st);
            return;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "bench_tasks: node %d ignored SIGTERM for 30 s; killing it\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

/* True (and reaped, with a message) when our node exited on its own. */
static bool node_exited(struct bench *b) {
    int st;
    if (!b->node || waitpid(b->node, &st, WNOHANG) != b->node) return false;
    fprintf(stderr, "bench_tasks: node %d exited (status 0x%x)\n", (int)b->node, st);
    b->node = 0;
    return true;
}

/* Next report line (without '\n') within timeout_ms: 0, -ETIMEDOUT, or -ECHILD when our node
 * exited first (it is reaped then). */
static int report_line(struct bench *b, char *out, size_t outlen, int timeout_ms) {
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = memchr(b->buf, '\n', b->len);
        if (nl) {
            size_t n = (size_t)(nl - b->buf);
            snprintf(out, outlen, "%.*s", (int)n, b->buf);
            memmove(b->buf, nl + 1, b->len - n - 1);
            b->len -= n + 1;
            return 0;
        }
        uint64_t now = clock_mono_ms();
        if (now >= end) return -ETIMEDOUT;
        if (node_exited(b)) return -ECHILD;
        struct pollfd pfd = {b->fd, POLLIN, 0};
        if (poll(&pfd, 1, end - now < 200 ? (int)(end - now) : 200) > 0) {
            ssize_t r = read(b->fd, b->buf + b->len, sizeof b->buf - b->len);
            if (r > 0) b->len += (size_t)r;
            if (b->len == sizeof b->buf) b->len = 0; /* a runaway line: drop it */
        }
    }
}

/* drain LABEL COUNT CAP NODE_BIN: the peers' process step, on whatever is queued. */
static int cmd_drain(struct bench *b, int argc, char **argv) {
    if (argc != 4) die("usage: drain LABEL COUNT CAP NODE_BIN");
    long long n = atoll(argv[1]);
    if (n < 2) die("COUNT must be at least 2");
    double c0 = redis_cpu_s(b);
    node_start(b, argv[3], "bench-drain", argv[2], argv[1]);
    char line[128];
    long long got = 0, first = 0, last = 0;
    int limit_ms = 60000 + (int)(n / 2); /* 2,000 tasks/s at worst */
    int rc = report_line(b, line, sizeof line, limit_ms);
    double c1 = redis_cpu_s(b);
    node_stop(b);
    if (rc != 0 || sscanf(line, "drained %lld %lld %lld", &got, &first, &last) != 3 ||
        last <= first)
        die("drain %s: no report of the %lld-th call within %d ms", argv[0], n, limit_ms);
    char m[80];
    emit(b, argv[0], (double)(n - 1) / ((double)(last - first) / 1e9), n);
    snprintf(m, sizeof m, "redis_cpu_us_%s", argv[0]);
    emit(b, m, (c1 - c0) * 1e6 / (double)n, n);
    return 0;
}

static int cmp_ll(const void *x, const void *y) {
    long long a = *(const long long *)x, c = *(const long long *)y;
    return a < c ? -1 : a > c;
}

/* Nearest rank, as bench-peers' pct(): the ceil(p% * n)-th smallest. */
static long long pct(const long long *sorted, size_t n, int p) {
    long long rank = ((long long)p * (long long)n + 99) / 100;
    if (rank < 1) rank = 1;
    return sorted[rank - 1];
}

/* Waits (10 s at most) until the node is alive and subscribed to the wake channel: idle. */
static void wait_idle_node(struct bench *b, const char *name) {
    char alive[160], wake[160];
    keys_alive(&b->cl.keys, name, alive, sizeof alive);
    keys_wake(&b->cl.keys, wake, sizeof wake);
    for (int i = 0; i < 1000; i++) {
        redisReply *r = cmd(b, "PUBSUB NUMSUB %s", wake);
        long long subs = r->elements == 2 ? r->element[1]->integer : 0;
        freeReplyObject(r);
        if (subs > 0 && cmd_int(b, "EXISTS %s", alive) == 1) return;
        if (node_exited(b)) break;
        sleep_ms(10);
    }
    die("node %s did not come up within 10 s", name);
}

/* latency K CAP NODE_BIN: enqueue-to-handler latency on an idle node. */
static int cmd_latency(struct bench *b, int argc, char **argv) {
    if (argc != 3) die("usage: latency K CAP NODE_BIN");
    int k = atoi(argv[0]);
    if (k < 1) die("K must be positive");
    cmd0(b, "FLUSHDB", NULL);
    node_start(b, argv[2], "bench-lat", argv[1], NULL);
    wait_idle_node(b, "bench-lat");
    long long *us = xcalloc((size_t)k, sizeof *us);
    size_t n = 0;
    char err[256], line[128];
    /* SHOAL_BENCH_LAT_SAMPLES=FILE: every sample as "<enqueue CLOCK_REALTIME us> <latency us>"
     * (scripts/bench-latency.py lines them up with Redis's MONITOR for a breakdown). */
    const char *samples_path = getenv("SHOAL_BENCH_LAT_SAMPLES");
    FILE *samples = samples_path ? fopen(samples_path, "w") : NULL;
    if (samples_path && !samples) die("%s: %s", samples_path, strerror(errno));
    for (int i = 0; i < k; i++) {
        struct shoal_task_opts t;
        struct payload p;
        int64_t id;
        shoal_task_opts_init(&t);
        t.type = "lat";
        uint64_t t0 = (uint64_t)realtime_us();
        pack(&p, false, t0); /* just before the enqueue call */
        t.args = p.data;
        t.args_len = p.len;
        if (shoal_enqueue(&b->cl, &t, 1, &id, err, sizeof err) != 0) die("enqueue: %s", err);
        /* As the peers: wait up to 2 s for the handler, then 10 ms before the next one. */
        int rc = report_line(b, line, sizeof line, 2000);
        if (rc == -ECHILD) die("latency: the node exited");
        if (rc == 0 && sscanf(line, "lat %lld", &us[n]) == 1) {
            if (samples) fprintf(samples, "%llu %lld\n", (unsigned long long)t0, us[n]);
            n++;
        }
        sleep_ms(10);
    }
    node_stop(b);
    if (samples) fclose(samples);
    if (n == 0) die("latency: no task reached the handler");
    qsort(us, n, sizeof *us, cmp_ll);
    emit(b, "lat_p50_ms", (double)pct(us, n, 50) / 1000, (long long)n);
    emit(b, "lat_p99_ms", (double)pct(us, n, 99) / 1000, (long long)n);
    emit(b, "lat_max_ms", (double)us[n - 1] / 1000, (long long)n);
    free(us);
    return 0;
}

/* --- claim cost ------------------------------------------------------------------------------ */

/* One side of a comparison: its own namespace in the same Redis, so the two sides run
 * interleaved, call by call, under the same machine conditions. */
struct lane {
    struct shoal_client cl; /* its own connection, on its own database */
    char what[80];          /* "database 1" */
    long long *us[2];       /* server µs of each claim call [0] and complete call [1] */
    size_t calls;
    long long claimed;
};

/* Registers node `name` with register.lua, as a node process does (TTL 10 min). */
static void register_node(struct shoal_client *cl, const char *name, const char *cap) {
    struct call_register_args a = {.name = name,
                                   .instance = name,
                                   .now_ms = clock_wall_ms(),
                                   .ttl_ms = 600000,
                                   .cap = atoll(cap),
                                   .version = "bench",
                                   .host = "bench",
                                   .pid = 0,
                                   .listen = "-",
                                   .queues = "default",
                                   .heartbeat_ms = 5000};
    struct script_call call;
    call_register(&call, &cl->keys, &a);
    freeReplyObject(run_call(cl, &call));
}

/* Server time spent in EVALSHA so far (INFO commandstats usec; only we talk to Redis now). */
static long long evalsha_usec(struct bench *b) {
    redisReply *r = cmd(b, "INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_evalsha:");
    const char *u = p ? strstr(p, ",usec=") : NULL;
    long long v = u ? atoll(u + 6) : 0;
    freeReplyObject(r);
    return v;
}

/* One claim.lua call for the lane's node bench-claim-0 (max `per`), then one complete.lua call
 * reporting every claimed task Success, exactly as worker/claim.c sends them; records their
 * server time. Returns the number claimed. */
static size_t claim_and_complete(struct bench *b, struct lane *l, const char *per) {
    const char *name = "bench-claim-0";
    int64_t now = clock_wall_ms();
    struct call_claim_args a = {.name = name,
                                .instance = name,
                                .now_ms = now,
                                .max = atoll(per),
                                .balance = true,
                                .lease_margin_ms = 30000};
    struct script_call call;
    call_claim(&call, &l->cl.keys, &a);
    call_claim_add_queue(&call, "default");
    long long t0 = evalsha_usec(b);
    redisReply *r = run_call(&l->cl, &call);
    long long t1 = evalsha_usec(b);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        (strcmp(r->element[0]->str, "ok") != 0 && strcmp(r->element[0]->str, "more") != 0))
        die("claim: verdict %s", r->type == REDIS_REPLY_ARRAY ? r->element[0]->str : "?");
    if ((r->elements - 3) % CLAIM_FIELDS != 0)
        die("claim.lua's reply has %zu elements: not 3 + %d per task (see CLAIM_FIELDS)",
            r->elements, CLAIM_FIELDS);
    size_t n = (r->elements - 3) / CLAIM_FIELDS;
    call_complete(&call, &l->cl.keys, name, now, RETENTION_MS, n);
    for (size_t i = 0; i < n; i++) {
        struct call_report rep = {.task = reply_str(r, 3 + CLAIM_FIELDS * i, NULL),
                                  .lease = reply_int(r, 3 + CLAIM_FIELDS * i + 1),
                                  .outcome = "Success",
                                  .error = "",
                                  .exit_code = -1,
                                  .retry_delay_ms = 0};
        call_complete_add(&call, &rep);
    }
    redisReply *c = run_call(&l->cl, &call);
    long long t2 = evalsha_usec(b);
    if (c->type != REDIS_REPLY_ARRAY || c->elements < 1 || c->element[0]->integer != (long long)n)
        die("complete: %zu reported, not all finalised", n);
    l->us[0][l->calls] = t1 - t0;
    l->us[1][l->calls] = t2 - t1;
    l->calls++;
    l->claimed += (long long)n;
    freeReplyObject(c);
    freeReplyObject(r);
    return n;
}

/* Fills a lane: database db of our Redis (its own keyspace, as another Redis would be), depth +
 * batch queued no-op tasks in our namespace, `nodes` nodes registered at cap `per`. */
static void lane_init(struct bench *b, struct lane *l, int db, long long depth, long long batch,
                      int nodes, const char *per) {
    char url[512], err[256];
    memset(l, 0, sizeof *l);
    const char *host = strncmp(b->url, "redis://", 8) == 0 ? b->url + 8 : NULL;
    const char *slash = host ? strchr(host, '/') : NULL;
    if (!host) die("claimcost needs a redis://host:port[/db] URL");
    snprintf(url, sizeof url, "%.*s/%d", slash ? (int)(slash - b->url) : (int)strlen(b->url),
             b->url, db);
    if (shoal_client_open(&l->cl, url, b->ns, err, sizeof err) != 0) die("%s", err);
    snprintf(l->what, sizeof l->what, "database %d", db);
    enqueue_n(&l->cl, "count", 0, depth + batch, BULK, false); /* no-op (bench_node) */
    for (int i = 0; i < nodes; i++) {
        char name[32];
        snprintf(name, sizeof name, "bench-claim-%d", i);
        register_node(&l->cl, name, per);
    }
    l->us[0] = xcalloc((size_t)batch, sizeof(long long));
    l->us[1] = xcalloc((size_t)batch, sizeof(long long));
}

/* Claims and completes batch tasks in each lane, alternating call by call; emits the median
 * server µs per claim and per complete call of each lane, named <what>_<label>. */
static void compare(struct bench *b, struct lane *x, struct lane *y, const char *lx, const char *ly,
                    long long batch, const char *per) {
    struct lane *lanes[2] = {x, y};
    const char *labels[2] = {lx, ly};
    while ((x->claimed < batch || y->claimed < batch) && x->calls < (size_t)batch &&
           y->calls < (size_t)batch)
        for (int i = 0; i < 2; i++)
            if (lanes[i]->claimed < batch && claim_and_complete(b, lanes[i], per) == 0)
                die("%s: claim returned nothing", lanes[i]->what);
    for (int i = 0; i < 2; i++) {
        struct lane *l = lanes[i];
        char m[96];
        qsort(l->us[0], l->calls, sizeof(long long), cmp_ll);
        qsort(l->us[1], l->calls, sizeof(long long), cmp_ll);
        fprintf(stderr, "claimcost %s (%s): %zu claims, %lld tasks\n", labels[i], l->what, l->calls,
                l->claimed);
        snprintf(m, sizeof m, "claim_us_call_%s", labels[i]);
        emit(b, m, (double)pct(l->us[0], l->calls, 50), l->claimed);
        snprintf(m, sizeof m, "complete_us_call_%s", labels[i]);
        emit(b, m, (double)pct(l->us[1], l->calls, 50), l->claimed);
        free(l->us[0]);
        free(l->us[1]);
        shoal_client_close(&l->cl);
    }
}

/* claimcost BACKLOG BATCH PER NODES: claim cost against the queue depth and the fleet size. */
static int cmd_claimcost(struct bench *b, int argc, char **argv) {
    if (argc != 4) die("usage: claimcost BACKLOG BATCH PER NODES");
    long long backlog = atoll(argv[0]), batch = atoll(argv[1]);
    int nodes = atoi(argv[3]);
    const char *per = argv[2];
    if (backlog < 1 || batch < 1 || atoi(per) < 1 || nodes < 1) die("bad claimcost arguments");
    cmd0(b, "FLUSHALL", NULL);
    struct lane shallow, deep, one, many;
    /* Depth: 1,000 vs BACKLOG queued behind the batch, in databases 1 and 0 (the deep queue is
     * left in database 0 for a real node to process afterwards). */
    lane_init(b, &shallow, 1, 1000, batch, 1, per);
    lane_init(b, &deep, 0, backlog, batch, 1, per);
    compare(b, &shallow, &deep, "shallow", "deep", batch, per);
    /* Fleet: 1 vs NODES registered nodes, 100 * PER queued behind the batch in both, so that
     * balancing (running/cap <= (running + queued) / fleet cap) never limits a claim. */
    lane_init(b, &one, 2, 100LL * atoi(per), batch, 1, per);
    lane_init(b, &many, 3, 100LL * atoi(per), batch, nodes, per);
    compare(b, &one, &many, "nodes1", "nodesN", batch, per);
    return 0;
}

/* --- main ------------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int (*run)(struct bench *b, int argc, char **argv);
} commands[] = {
    {"enqueue", cmd_enqueue}, {"floor", cmd_floor},         {"drain", cmd_drain},
    {"latency", cmd_latency}, {"claimcost", cmd_claimcost},
};

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_tasks REDIS_URL NAMESPACE WORKDIR "
                        "enqueue|floor|drain|latency|claimcost ARGS...\n");
        return 2;
    }
    static struct bench b;
    char err[256];
    b.url = argv[1];
    b.ns = argv[2];
    b.run = getenv("BENCH_RUN") ? atoi(getenv("BENCH_RUN")) : 1;
    snprintf(b.fifo, sizeof b.fifo, "%s/report.fifo", argv[3]);
    unlink(b.fifo);
    if (mkfifo(b.fifo, 0600) != 0) die("mkfifo %s: %s", b.fifo, strerror(errno));
    if ((b.fd = open(b.fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0)
        die("%s: %s", b.fifo, strerror(errno));
    if (shoal_client_open(&b.cl, b.url, b.ns, err, sizeof err) != 0) die("%s", err);
    int rc = -1;
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (strcmp(argv[4], commands[i].name) == 0) rc = commands[i].run(&b, argc - 5, argv + 5);
    if (rc < 0) fprintf(stderr, "bench_tasks: unknown command '%s'\n", argv[4]);
    shoal_client_close(&b.cl);
    close(b.fd);
    unlink(b.fifo);
    return rc < 0 ? 2 : rc;
}
