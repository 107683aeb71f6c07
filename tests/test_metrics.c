/* test_metrics.c: GET /metrics of a real `shoal worker`: open without a key, valid Prometheus
 * text (promtool check metrics, Debian's prometheus package), the node's counters moving with
 * the tasks it runs, and the fleet's queue figures (depth, oldest queued age) arriving from the
 * cache within a refresh period, never slowing a scrape. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

static struct h_redis redis;

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
}
static void teardown(void) { h_redis_stop(&redis, false); }

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

static char body[65536];

static int scrape(const struct h_worker *w) {
    return h_http(w->port, "GET", "/metrics", body, sizeof body);
}

/* The value of the sample line starting with "name " (or name{labels} ), or -1. */
static double sample(const char *line_start) {
    for (const char *p = body; (p = strstr(p, line_start)); p++)
        if (p == body || p[-1] == '\n') return atof(p + strlen(line_start));
    return -1;
}

/* `shoal enqueue ...` against the test's Redis. */
static void enqueue(const char *type, const char *queue, const char *arg) {
    const char *args[] = {"enqueue", "--redis", redis.url, "--type", type,
                          "--queue", queue,     "--",      arg,      NULL};
    cr_assert_eq(h_shoal(NULL, NULL, args), 0);
}

struct want {
    const struct h_worker *w;
    const char *line;
    double min;
};
static bool sample_at_least(void *arg) {
    struct want *x = arg;
    return scrape(x->w) == 200 && sample(x->line) >= x->min;
}

Test(metrics, prometheus_text_with_node_and_queue_figures) {
    struct h_worker w;
    const char *extra[] = {"--api-key", "k-0123456789abcdef", NULL};
    h_worker_start(&w, &redis, "metered", extra);
    cr_assert(h_ping_is(&w, 200, 10000));
    enqueue("noop", "default", "x");
    struct want claimed = {&w, "shoal_tasks_finished_total{outcome=\"Success\"} ", 1};
    cr_assert(h_eventually(sample_at_least, &claimed, 5000), "%s", body);
    cr_assert_geq(sample("shoal_tasks_claimed_total "), 1);
    cr_assert_geq(sample("shoal_task_start_latency_seconds_count "), 1);
    cr_assert_eq(sample("shoal_task_start_latency_seconds_bucket{le=\"+Inf\"} "),
                 sample("shoal_task_start_latency_seconds_count "));
    cr_assert_eq(sample("shoal_node_task_cap "), 5);
    cr_assert_eq(sample("shoal_node_drain "), 0);
    cr_assert_eq(sample("shoal_node_up "), 1);
    struct want beat = {&w, "shoal_heartbeat_age_seconds ", 0}; /* after the first beat */
    cr_assert(h_eventually(sample_at_least, &beat, 5000), "%s", body);
    cr_assert_lt(sample("shoal_heartbeat_age_seconds "), 5);
    cr_assert_eq(sample("shoal_redis_reconnects_total "), 0);

    /* Nobody serves queue "other": its tasks wait, and the cached figures show them. */
    for (int i = 0; i < 3; i++) enqueue("noop", "other", "x");
    struct want depth = {&w, "shoal_queue_depth{queue=\"other\"} ", 3};
    cr_assert(h_eventually(sample_at_least, &depth, 6000), "%s", body);
    cr_assert_geq(sample("shoal_queue_oldest_age_seconds{queue=\"other\"} "), 0);
    cr_assert_eq(sample("shoal_queue_depth{queue=\"default\"} "), 0);
    cr_assert_geq(sample("shoal_fleet_ready_tasks "), 3);
    cr_assert_eq(sample("shoal_fleet_task_capacity "), 5);

    /* promtool validates the whole exposition. */
    char path[256], log[300];
    snprintf(path, sizeof path, "%s/metrics.txt", redis.dir);
    snprintf(log, sizeof log, "%s/promtool.out", redis.dir);
    FILE *f = fopen(path, "w");
    fputs(body, f);
    fclose(f);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    int rc = h_wait(h_spawn(argv, NULL, log), 20000);
    char *out = h_read_file(log);
    cr_assert_eq(rc, 0,
                 "promtool check metrics failed (is Debian's prometheus installed? "
                 "scripts/deps.sh): %s",
                 out ? out : "");
    free(out);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* `shoal enqueue --count n --queue q`, a noop nobody serves (the node takes only "default"). */
static void enqueue_n(const char *queue, const char *n) {
    const char *args[] = {"enqueue", "--redis", redis.url, "--type", "noop", "--queue",
                          queue,     "--count", n,         "--",     "x",    NULL};
    cr_assert_eq(h_shoal(NULL, NULL, args), 0);
}

static bool other_is(void *arg) {
    struct want *x = arg;
    return scrape(x->w) == 200 && sample(x->line) == x->min;
}

/* Label sets stay bounded whatever the number of queues: the 50 deepest by name, the rest
 * summed as queue="(other)"; the refresh reads the names in slices (more than one here).
 * Before, every queue ever enqueued to was a label: 20,000 one-off queues made a 1.9 MB
 * answer. */
Test(metrics, queue_labels_are_the_deepest_fifty_and_other) {
    struct h_worker w;
    h_worker_start(&w, &redis, "metered", NULL);
    cr_assert(h_ping_is(&w, 200, 10000));
    char q[32];
    for (int i = 0; i < 60; i++) { /* 60 queues two deep, 70 one deep */
        snprintf(q, sizeof q, "deep-%02d", i);
        enqueue_n(q, "2");
    }
    for (int i = 0; i < 70; i++) {
        snprintf(q, sizeof q, "shallow-%02d", i);
        enqueue_n(q, "1");
    }
    struct want other = {&w, "shoal_queue_depth{queue=\"(other)\"} ", 10 * 2 + 70};
    cr_assert(h_eventually(other_is, &other, 8000), "%s", body);
    int named = 0, deep = 0;
    for (const char *p = body; (p = strstr(p, "\nshoal_queue_depth{queue=\"")); p++) {
        named++;
        deep += strncmp(p + strlen("\nshoal_queue_depth{queue=\""), "deep-", 5) == 0;
    }
    cr_assert_eq(named, 51, "50 queues and (other): %d", named);
    cr_assert_eq(deep, 50, "the deepest are named");
    cr_assert_eq(sample("shoal_fleet_ready_tasks "), 190);
    cr_assert_eq(h_worker_stop(&w), 0);
}
