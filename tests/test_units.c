/* test_units.c: pure unit tests: durations, numbers, settings table, Redis URLs, JSON writer,
 * node status and health, the background queue (bgq), short slices for the loop. */
#define _GNU_SOURCE /* gettid */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <uv.h>

#include "common/bgq.h"
#include "common/buf.h"
#include "common/config.h"
#include "common/err.h"
#include "common/node_info.h"
#include "common/node_view.h"
#include "common/rurl.h"
#include "common/util.h"

Test(duration, parses_units) {
    int64_t ms;
    cr_assert_eq(parse_duration_ms("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(parse_duration_ms("30s", &ms), 0);
    cr_assert_eq(ms, 30000);
    cr_assert_eq(parse_duration_ms("10m", &ms), 0);
    cr_assert_eq(ms, 600000);
    cr_assert_eq(parse_duration_ms("2h", &ms), 0);
    cr_assert_eq(ms, 7200000);
    cr_assert_eq(parse_duration_ms("1d", &ms), 0);
    cr_assert_eq(ms, 86400000);
    cr_assert_eq(parse_duration_ms("1m30s", &ms), 0);
    cr_assert_eq(ms, 90000);
    cr_assert_eq(parse_duration_ms("0", &ms), 0);
    cr_assert_eq(ms, 0);
}

Test(duration, refuses_bad_input) {
    int64_t ms;
    const char *bad[] = {"", "5", "-5s", "5x", "s", "1.5s", " 5s", "5s ", "99999999999999999999d"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        cr_assert_neq(parse_duration_ms(bad[i], &ms), 0, "accepted '%s'", bad[i]);
}

Test(duration, formats_back) {
    char b[32];
    cr_assert_str_eq(format_duration_ms(86400000, b, sizeof b), "1d");
    cr_assert_str_eq(format_duration_ms(90000, b, sizeof b), "90s");
    cr_assert_str_eq(format_duration_ms(250, b, sizeof b), "250ms");
    cr_assert_str_eq(format_duration_ms(0, b, sizeof b), "0");
}

Test(numbers, int_range) {
    int64_t v;
    cr_assert_eq(parse_int64("42", 0, 100, &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_neq(parse_int64("101", 0, 100, &v), 0);
    cr_assert_neq(parse_int64("-1", 0, 100, &v), 0);
    cr_assert_neq(parse_int64("4x", 0, 100, &v), 0);
    cr_assert_neq(parse_int64("", 0, 100, &v), 0);
}

Test(names, node_names) {
    cr_assert(node_name_valid("worker-7f9c.pod_1"));
    cr_assert_not(node_name_valid(""));
    cr_assert_not(node_name_valid("-x"));
    cr_assert_not(node_name_valid("a:b"));
    cr_assert_not(node_name_valid("a b"));
    char long_name[70];
    memset(long_name, 'a', 65);
    long_name[65] = 0;
    cr_assert_not(node_name_valid(long_name));
}

Test(time, iso8601) {
    char b[40];
    cr_assert_str_eq(iso8601_ms(1795838855123LL, b, sizeof b), "2026-11-28T04:07:35.123+00:00");
}

Test(config, defaults_env_then_flags) {
    struct shoal_config c;
    char err[256];
    int rest;
    setenv("SHOAL_TASK_CAP", "9", 1);
    setenv("SHOAL_HEARTBEAT", "2s", 1);
    config_defaults(&c);
    cr_assert_eq(c.cap, 5);
    char *argv[] = {"worker", "--cap", "12", "--name=node-a", "extra"};
    cr_assert_eq(config_parse(&c, SCOPE_WORKER, 5, argv, &rest, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.cap, 12);            /* the flag beats the environment */
    cr_assert_eq(c.heartbeat_ms, 2000); /* the environment beats the default */
    cr_assert_str_eq(c.name, "node-a");
    cr_assert_eq(rest, 4);
    config_free(&c);
    unsetenv("SHOAL_TASK_CAP");
    unsetenv("SHOAL_HEARTBEAT");
}

Test(config, clear_errors) {
    struct shoal_config c;
    char err[256];
    int rest;
    struct {
        char *argv[3];
        const char *want;
    } cases[] = {
        {{"worker", "--cap", "-1"}, "--cap '-1': expected a whole number from 0 to 10000"},
        {{"worker", "--heartbeat", "5"}, "--heartbeat '5': expected a duration"},
        {{"worker", "--bogus", "1"}, "unknown flag --bogus"},
        {{"worker", "--name", "a b"}, "--name 'a b': a node name"},
        {{"worker", "--queues", "a,,b"}, "--queues 'a,,b'"},
        {{"worker", "--log-level", "loud"}, "one of debug, info, warn, error"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        config_defaults(&c);
        cr_assert_eq(config_parse(&c, SCOPE_WORKER, 3, cases[i].argv, &rest, err, sizeof err),
                     SHOAL_ECONFIG, "case %zu passed", i);
        cr_assert(strstr(err, cases[i].want) != NULL, "case %zu: '%s'", i, err);
        config_free(&c);
    }
    /* A worker-only flag is refused by an admin command. */
    config_defaults(&c);
    char *argv[] = {"nodes", "--cap", "3"};
    cr_assert_eq(config_parse(&c, SCOPE_REDIS, 3, argv, &rest, err, sizeof err), SHOAL_ECONFIG);
    config_free(&c);
}

Test(config, env_error_names_variable) {
    struct shoal_config c;
    char err[256];
    int rest;
    setenv("SHOAL_TASK_CAP", "lots", 1);
    config_defaults(&c);
    char *argv[] = {"worker"};
    cr_assert_eq(config_parse(&c, SCOPE_WORKER, 1, argv, &rest, err, sizeof err), SHOAL_ECONFIG);
    cr_assert(strstr(err, "SHOAL_TASK_CAP 'lots'") != NULL, "%s", err);
    config_free(&c);
    unsetenv("SHOAL_TASK_CAP");
}

Test(config, describe_masks_secrets) {
    struct shoal_config c;
    char err[256], desc[1024];
    int rest;
    config_defaults(&c);
    char *argv[] = {"worker", "--redis", "redis://app:s3cret@10.0.0.1:6380/2"};
    cr_assert_eq(config_parse(&c, SCOPE_WORKER, 3, argv, &rest, err, sizeof err), 0);
    config_describe(&c, SCOPE_WORKER, desc, sizeof desc);
    cr_assert(strstr(desc, "s3cret") == NULL, "%s", desc);
    cr_assert(strstr(desc, "redis=redis://app:***@10.0.0.1:6380/2") != NULL, "%s", desc);
    cr_assert(strstr(desc, "heartbeat=5s") != NULL, "%s", desc);
    config_free(&c);
}

Test(rurl, forms) {
    struct rurl u;
    char err[256];
    cr_assert_eq(rurl_parse("redis://127.0.0.1:6380/3", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.host, "127.0.0.1");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 3);
    cr_assert_eq(rurl_parse("redis://user:p%40ss@host", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.user, "user");
    cr_assert_str_eq(u.pass, "p@ss");
    cr_assert_eq(u.port, 6379);
    cr_assert_eq(rurl_parse("redis://secret@host:1", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.user, "");
    cr_assert_str_eq(u.pass, "secret");
    cr_assert_eq(rurl_parse("redis://[::1]:7000", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 7000);
    cr_assert_eq(rurl_parse("unix:///run/redis.sock?db=2", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.path, "/run/redis.sock");
    cr_assert_eq(u.db, 2);
    cr_assert_eq(rurl_parse("redis-sentinel://app:pw@10.0.0.1:26379,[::1]:26380/mymaster/2", &u,
                            err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(u.nsentinels, 2);
    cr_assert_str_eq(u.sentinels[0].host, "10.0.0.1");
    cr_assert_eq(u.sentinels[1].port, 26380);
    cr_assert_str_eq(u.sentinels[1].host, "::1");
    cr_assert_str_eq(u.master, "mymaster");
    cr_assert_eq(u.db, 2);
    cr_assert_str_eq(u.pass, "pw");
    const char *bad[] = {
        "http://x",           "redis://",  "redis://h:99999",      "redis://h/x",
        "unix://rel",         "rediss://", "redis-sentinel://h:1", "redis-sentinel://h/m",
        "redis-sentinel:///m"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        cr_assert_eq(rurl_parse(bad[i], &u, err, sizeof err), SHOAL_EURL, "accepted %s", bad[i]);
    /* rediss://: the same URL, over TLS; the TLS files only with it */
    cr_assert_eq(rurl_parse("rediss://:pw@cache.example.com:6380/3", &u, err, sizeof err), 0, "%s",
                 err);
    cr_assert(u.tls);
    cr_assert_str_eq(u.host, "cache.example.com");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 3);
    cr_assert_eq(rurl_tls_files(&u, "/etc/ca.pem", NULL, "", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.ca, "/etc/ca.pem");
    cr_assert_eq(rurl_parse("redis://h", &u, err, sizeof err), 0);
    cr_assert_not(u.tls);
    cr_assert_eq(rurl_tls_files(&u, "/etc/ca.pem", NULL, NULL, err, sizeof err), SHOAL_ECONFIG);
    cr_assert(strstr(err, "rediss://"), "%s", err);
    /* redis-cluster://: seed nodes; the namespace's slot is CRC16(tag) mod 16384, as Redis's
     * CLUSTER KEYSLOT ("123456789" is CRC16/XMODEM's check string: 0x31C3) */
    cr_assert_eq(rurl_parse("redis-cluster://:pw@10.0.0.1:7000,[::1]:7001", &u, err, sizeof err), 0,
                 "%s", err);
    cr_assert(u.cluster);
    cr_assert_eq(u.nsentinels, 2);
    cr_assert_str_eq(u.sentinels[1].host, "::1");
    cr_assert_str_eq(u.pass, "pw");
    cr_assert_eq(u.slot, 3374, "{shoal}"); /* what the cluster run's nodes found in Redis */
    rurl_cluster_namespace(&u, "123456789");
    cr_assert_eq(u.slot, 0x31C3 % 16384);
    cr_assert_eq(rurl_parse("redis-cluster://h:1/2", &u, err, sizeof err), SHOAL_EURL);
    cr_assert(strstr(err, "database 0"), "%s", err);
    cr_assert_eq(rurl_parse("redis-cluster://", &u, err, sizeof err), SHOAL_EURL);
    /* rediss-sentinel:// and rediss-cluster://: the same over TLS (every link); the TLS files
     * and --redis-sni are accepted with them */
    cr_assert_eq(
        rurl_parse("rediss-sentinel://:pw@s1:26379,s2:26380/mymaster/1", &u, err, sizeof err), 0,
        "%s", err);
    cr_assert(u.tls && !u.cluster);
    cr_assert_eq(u.nsentinels, 2);
    cr_assert_str_eq(u.master, "mymaster");
    cr_assert_eq(u.db, 1);
    cr_assert_eq(rurl_tls_files(&u, "/etc/ca.pem", NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rurl_tls_name(&u, "redis.example", err, sizeof err), 0, "%s", err);
    cr_assert_eq(rurl_parse("rediss-cluster://c1:7000,c2:7001", &u, err, sizeof err), 0, "%s", err);
    cr_assert(u.tls && u.cluster);
    cr_assert_eq(u.nsentinels, 2);
    cr_assert_eq(u.slot, 3374);
    cr_assert_eq(rurl_tls_files(&u, "/etc/ca.pem", NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rurl_parse("redis-cluster://c1:7000", &u, err, sizeof err), 0, "%s", err);
    cr_assert_not(u.tls);
    cr_assert_eq(rurl_tls_files(&u, "/etc/ca.pem", NULL, NULL, err, sizeof err), SHOAL_ECONFIG);
    cr_assert(strstr(err, "rediss-cluster://"), "%s", err);
    const char *bad_tls[] = {"rediss-sentinel://h:1", "rediss-sentinel://h/m", "rediss-cluster://",
                             "rediss-cluster://h:1/2", "rediss-other://h:1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_tls); i++)
        cr_assert_eq(rurl_parse(bad_tls[i], &u, err, sizeof err), SHOAL_EURL, "accepted %s",
                     bad_tls[i]);
    cr_assert_eq(rurl_parse("rediss-sentinel://h:1", &u, err, sizeof err), SHOAL_EURL);
    cr_assert(strstr(err, "rediss-sentinel://host:port"), "%s", err);
}

Test(json, writer_and_escaping) {
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    json_obj_open(&j);
    json_key(&j, "a");
    json_str(&j, "q\"\\\n\x01");
    json_key(&j, "n");
    json_int(&j, -5);
    json_key(&j, "l");
    json_arr_open(&j);
    json_bool(&j, true);
    json_null_value(&j);
    json_arr_close(&j);
    json_key(&j, "t");
    json_time(&j, 0);
    json_obj_close(&j);
    cr_assert_str_eq(b.data,
                     "{\"a\":\"q\\\"\\\\\\n\\u0001\",\"n\":-5,\"l\":[true,null],\"t\":null}");
    buf_free(&b);
}

Test(status, node_status_and_health) {
    struct node_info n = {.alive = true};
    cr_assert_eq(node_info_status(&n), NODE_RUNNING);
    n.drain = true;
    n.running = 2;
    cr_assert_eq(node_info_status(&n), NODE_DRAINING_STATUS);
    n.running = 0;
    cr_assert_eq(node_info_status(&n), NODE_DRAINED);
    n.alive = false;
    cr_assert_str_eq(node_status_name(node_info_status(&n)), "Offline");

    struct node_view v = {.redis_ok = true, .registered = true};
    cr_assert_eq(node_view_health(&v, NULL), NODE_ONLINE);
    v.drain = true;
    cr_assert_eq(node_view_health(&v, NULL), NODE_DRAINING);
    v.drain = false;
    v.stopping = true;
    cr_assert_eq(node_view_health(&v, NULL), NODE_DRAINING);
    v.redis_ok = false;
    cr_assert_eq(node_view_health(&v, NULL), NODE_UNAVAILABLE);
    v.redis_ok = true;
    v.registered = false;
    cr_assert_eq(node_view_health(&v, NULL), NODE_UNAVAILABLE);
}

/* ---- bgq: background threads, results back on the loop ---- */

struct bg_item {
    struct bgq_job job;
    int index;
    pthread_t loop_thread; /* the test's thread, where done must run */
    bool ran_elsewhere;    /* work ran on another thread */
    int nice, policy;      /* of the thread that ran work */
    int *done_order, *ndone;
    bool done_on_loop;
    struct bgq *q;
    int resubmit; /* submit again from done this many times */
};

static void bg_work(struct bgq_job *job) {
    struct bg_item *it = container_of(job, struct bg_item, job);
    it->ran_elsewhere = !pthread_equal(pthread_self(), it->loop_thread);
    errno = 0;
    it->nice = getpriority(PRIO_PROCESS, (id_t)gettid());
    it->policy = sched_getscheduler(0);
    usleep(200);
}

static void bg_done(struct bgq_job *job) {
    struct bg_item *it = container_of(job, struct bg_item, job);
    it->done_on_loop = pthread_equal(pthread_self(), it->loop_thread);
    if (it->resubmit-- > 0) {
        bgq_submit(it->q, &it->job); /* the loop must stay alive for this one too */
        return;
    }
    it->done_order[(*it->ndone)++] = it->index;
}

/* Submits job i of a run whose done callbacks record their order in order[]. */
static void bg_submit_item(struct bg_item *it, int i, struct bgq *q, int *order, int *ndone,
                           int resubmit) {
    *it = (struct bg_item){.job = {bg_work, bg_done, NULL},
                           .index = i,
                           .loop_thread = pthread_self(),
                           .done_order = order,
                           .ndone = ndone,
                           .q = q,
                           .resubmit = resubmit};
    bgq_submit(q, &it->job);
}

/* Runs 50 jobs (some submitted again from their done callback) on a queue of 3 threads at
 * nice (or BGQ_IDLE) and checks where and how everything ran. */
static void bgq_check(int nice) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bgq *q;
    cr_assert_eq(bgq_new(&loop, 3, nice, &q), 0);
    enum { N = 50 };
    static struct bg_item items[N];
    int order[N], ndone = 0;
    for (int i = 0; i < N; i++) bg_submit_item(&items[i], i, q, order, &ndone, i % 7 == 0 ? 2 : 0);
    /* uv_run returns only when every job is done: the queue holds the loop while any is out. */
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(ndone, N, "every done callback ran before the loop ended (%d of %d)", ndone, N);
    bool seen[N] = {0};
    for (int i = 0; i < N; i++) {
        cr_assert(!seen[order[i]], "job %d done twice", order[i]);
        seen[order[i]] = true;
        cr_assert(items[i].ran_elsewhere, "job %d ran on the loop's thread", i);
        cr_assert(items[i].done_on_loop, "job %d's done ran off the loop's thread", i);
        if (nice == BGQ_IDLE)
            cr_assert_eq(items[i].policy, SCHED_IDLE, "job %d ran under policy %d", i,
                         items[i].policy);
        else
            cr_assert_eq(items[i].nice, nice, "job %d ran at nice %d", i, items[i].nice);
    }
    /* An idle queue does not keep the loop alive. */
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    bgq_close(q);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "the queue's handle is closed");
}

/* One thread: jobs run in submission order, and done callbacks come in that order too (the
 * queues are stacks underneath, turned round when taken). Submissions from a done callback
 * queue behind those already waiting. */
Test(bgq, one_thread_keeps_submission_order) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bgq *q;
    cr_assert_eq(bgq_new(&loop, 1, 19, &q), 0);
    enum { N = 300 };
    static struct bg_item items[N];
    int order[N], ndone = 0;
    for (int i = 0; i < N; i++) {
        bg_submit_item(&items[i], i, q, order, &ndone, 0);
        if (i == N / 2) uv_run(&loop, UV_RUN_NOWAIT); /* some finish while more come */
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(ndone, N);
    for (int i = 0; i < N; i++) cr_assert_eq(order[i], i, "done %d came as %d", i, order[i]);
    bgq_close(q);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* Wake-ups (bgq.c, "Waking"): 3,000 bursts of 1 to 12 jobs of 0 to 40 us on 4 threads, each
 * burst submitted while the threads are asleep, searching or working, and waited for with a
 * watchdog: a job left behind (no thread woken for it) fails the burst instead of hanging. */
struct burst {
    struct bgq_job job;
    int us;
    int *left;
};
static void burst_work(struct bgq_job *job) {
    struct burst *b = container_of(job, struct burst, job);
    if (b->us) usleep((useconds_t)b->us);
}
static void burst_done(struct bgq_job *job) { (*container_of(job, struct burst, job)->left)--; }
static void watchdog_cb(uv_timer_t *t) { uv_stop(t->loop); }

Test(bgq, no_job_is_left_behind) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bgq *q;
    cr_assert_eq(bgq_new(&loop, 4, 19, &q), 0);
    uv_timer_t watchdog;
    uv_timer_init(&loop, &watchdog);
    uv_unref((uv_handle_t *)&watchdog);
    static struct burst jobs[12];
    unsigned seed = 7;
    for (int round = 0; round < 3000; round++) {
        int n = 1 + (int)(rand_r(&seed) % 12), left = n;
        for (int i = 0; i < n; i++) {
            jobs[i] =
                (struct burst){{burst_work, burst_done, NULL}, (int)(rand_r(&seed) % 41), &left};
            bgq_submit(q, &jobs[i].job);
            if (rand_r(&seed) % 4 == 0) usleep(rand_r(&seed) % 30); /* threads mid-search */
        }
        uv_timer_start(&watchdog, watchdog_cb, 5000, 0);
        uv_run(&loop, UV_RUN_DEFAULT); /* ends when every job is done, or at the watchdog */
        uv_timer_stop(&watchdog);
        cr_assert_eq(left, 0, "round %d: %d of %d jobs never ran", round, left, n);
        if (rand_r(&seed) % 8 == 0) usleep(200); /* let every thread fall asleep */
    }
    uv_close((uv_handle_t *)&watchdog, NULL);
    bgq_close(q);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* Jobs that block get a thread each, also when the threads exist and sleep: a thread that
 * takes a job with more queued wakes the next (bgq.c, "Waking"). Four jobs that each wait (at
 * most 2 s) until all four have started, twice: the second time the four threads exist and
 * are asleep. */
static atomic_int gathered;
struct gather {
    struct bgq_job job;
    int want;
    bool all;
    int *left;
};
static void gather_work(struct bgq_job *job) {
    struct gather *g = container_of(job, struct gather, job);
    atomic_fetch_add(&gathered, 1);
    for (int i = 0; i < 2000 && atomic_load(&gathered) < g->want; i++) usleep(1000);
    g->all = atomic_load(&gathered) >= g->want;
}
static void gather_done(struct bgq_job *job) { (*container_of(job, struct gather, job)->left)--; }

Test(bgq, sleeping_threads_are_woken_one_after_another_for_jobs_that_block) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bgq *q;
    cr_assert_eq(bgq_new(&loop, 4, 19, &q), 0);
    atomic_store(&gathered, 0);
    for (int round = 1; round <= 2; round++) {
        struct gather g[4];
        int left = 4;
        for (int i = 0; i < 4; i++) {
            g[i] = (struct gather){{gather_work, gather_done, NULL}, 4 * round, false, &left};
            bgq_submit(q, &g[i].job);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        cr_assert_eq(left, 0);
        for (int i = 0; i < 4; i++) cr_assert(g[i].all, "round %d: job %d ran alone", round, i);
        usleep(2000); /* every thread asleep */
    }
    bgq_close(q);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(bgq, runs_below_the_loop_and_answers_on_it) { bgq_check(19); }
Test(bgq, idle_policy) { bgq_check(BGQ_IDLE); }

/* ---- short time slices for the loop's thread ---- */

static long sched_slice(const char *path) {
    char *text = NULL;
    size_t cap = 0;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    ssize_t n;
    while ((n = getline(&text, &cap, f)) > 0)
        if (strncmp(text, "se.slice", 8) == 0) v = atol(strchr(text, ':') + 1);
    free(text);
    fclose(f);
    return v;
}

static void *child_slice(void *arg) {
    *(long *)arg = sched_slice("/proc/thread-self/sched");
    return NULL;
}

static void *short_slices_thread(void *arg) {
    int *rc = arg;
    rc[0] = thread_short_slices();
    rc[1] = (int)sched_slice("/proc/thread-self/sched");
    long inherited = 0;
    pthread_t t;
    pthread_create(&t, NULL, child_slice, &inherited);
    pthread_join(t, NULL);
    rc[2] = (int)inherited;
    return NULL;
}

/* Linux 6.12+ takes the 0.1 ms slice; threads started afterwards get the default back. Older
 * kernels accept the call and keep their slices (nothing to check there). */
Test(sched, loop_thread_short_slices) {
    int rc[3] = {0};
    pthread_t t;
    pthread_create(&t, NULL, short_slices_thread, rc); /* not the test's own thread */
    pthread_join(t, NULL);
    cr_assert_eq(rc[0], 0, "sched_setattr: %s", strerror(-rc[0]));
    struct utsname u;
    int major = 0, minor = 0;
    cr_assert_eq(uname(&u), 0);
    sscanf(u.release, "%d.%d", &major, &minor);
    if (major > 6 || (major == 6 && minor >= 12)) {
        cr_assert_eq(rc[1], 100000, "the thread's slice (ns)");
        cr_assert_gt(rc[2], 100000, "a thread it starts has the default slice, not %d", rc[2]);
    }
}

/* ---- task environment rules (common/task_env.c) ---- */

#include "common/task_env.h"

Test(task_env, deny_list_names_and_allow_lists) {
    static const char *const denied[] = {
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_CHECK_",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "DOTNET_STARTUP_HOOKS",
        "CORECLR_PROFILER",
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
        "SHOAL_TASK_ID",
        "SHOAL_API_KEY",
        "SHOAL_PACKAGE_PATH",
    };
    for (size_t i = 0; i < ARRAY_SIZE(denied); i++)
        cr_assert_not_null(task_env_denied(denied[i], strlen(denied[i])), "%s allowed", denied[i]);
    static const char *const fine[] = {"PATH",   "HOME",     "LANG", "TZ",
                                       "TMPDIR", "APP_MODE", "LDX",  "ENVIRONMENT",
                                       "SHOAL",  "PYTHO",    "_x1"};
    for (size_t i = 0; i < ARRAY_SIZE(fine); i++)
        cr_assert_null(task_env_denied(fine[i], strlen(fine[i])), "%s denied", fine[i]);
    cr_assert(task_env_name_valid("A_1", 3));
    cr_assert_not(task_env_name_valid("1A", 2));
    cr_assert_not(task_env_name_valid("A-B", 3));
    cr_assert_not(task_env_name_valid("", 0));
    cr_assert(task_env_list_match(" AWS_* , MODE", "AWS_REGION", 10));
    cr_assert(task_env_list_match("AWS_*,MODE", "MODE", 4));
    cr_assert_not(task_env_list_match("AWS_*,MODE", "MODES", 5));
    cr_assert_not(task_env_list_match("", "MODE", 4));
    char err[256];
    cr_assert_eq(task_env_list_check("A,B_*, C", "--x", err, sizeof err), 0);
    cr_assert_eq(task_env_list_check("A,,B", "--x", err, sizeof err), -EINVAL);
    cr_assert_eq(task_env_list_check("A-B", "--x", err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "'A-B' is not a variable name"), "%s", err);
    const char *dup[] = {"A=1", "A=2"};
    cr_assert_eq(task_env_check(dup, 2, NULL, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "env A is given twice"), "%s", err);
    const char *bad[] = {"OK=1", "LD_PRELOAD=/x.so"};
    cr_assert_eq(task_env_check(bad, 2, NULL, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "env LD_PRELOAD is refused: it changes how programs are loaded"), "%s",
              err);
}

Test(task_env, env_block_round_trip_and_bad_blocks) {
    const char *env[] = {"A=1", "B=x=y", "C=", NULL};
    struct buf b;
    buf_init(&b);
    task_env_block_encode(&b, env);
    char **v, err[128];
    cr_assert_eq(task_env_block_parse(b.data, b.len, &v, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 3; i++) cr_assert_str_eq(v[i], env[i]);
    cr_assert_null(v[3]);
    free(v);
    cr_assert_eq(task_env_block_parse("", 0, &v, err, sizeof err), 0);
    cr_assert_null(v[0]);
    free(v);
    cr_assert_eq(task_env_block_parse("A=1", 3, &v, err, sizeof err), -EINVAL); /* no NUL */
    cr_assert_eq(task_env_block_parse("A\0", 2, &v, err, sizeof err), -EINVAL); /* no '=' */
    cr_assert_eq(task_env_block_parse("=1\0", 3, &v, err, sizeof err), -EINVAL);
    cr_assert_null(v);
    buf_free(&b);
}
