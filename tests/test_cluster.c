/* test_cluster.c: Redis Cluster cases scripts/cluster.py does not cover, on a small real
 * cluster of two primaries of Debian's redis-server on loopback (each started here on free
 * ports with --cluster-port, slots split in halves with CLUSTER ADDSLOTSRANGE, joined with
 * CLUSTER MEET; h_cluster_form). The slot of namespace "shoal" (3374) and of "alpha" (865) are
 * in the first half, the slot of "beta" (15419) in the second.
 *
 * - A slot migration caught in the middle (CLUSTER SETSLOT IMPORTING/MIGRATING and MIGRATE of
 *   every key, then held there): the old owner answers ASK. The CLI follows it with ASKING on
 *   the importing node and gets its answer at once; a node does not (its call failed, its caller
 *   tries again at its next turn): a task whose end falls in the window is finished once, after
 *   the migration is completed (SETSLOT NODE) and the node has followed MOVED.
 * - Two namespaces on the two primaries, served by two fleets at once, each through its own
 *   Redis ACL user made from docs/operations.md's ACL line (created on every primary: ACL users
 *   are per node): every task final, on its own fleet, no key of one namespace on the other's
 *   primary, and nothing in ACL LOG. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/client.h"
#include "common/rurl.h"
#include "tests/harness.h"

static struct h_redis nodes[2];
static int bus[2];

static void start_cluster(void) {
    static char bus_s[2][16];
    for (int i = 0; i < 2; i++) {
        bus[i] = h_free_port();
        snprintf(bus_s[i], sizeof bus_s[i], "%d", bus[i]);
        const char *extra[H_CLUSTER_ARGS];
        h_cluster_node_args(bus_s[i], false, extra);
        cr_assert_eq(h_redis_start(&nodes[i], extra), 0, "cluster node %d did not start", i);
    }
    struct h_redis *np[2] = {&nodes[0], &nodes[1]};
    int ports[2] = {nodes[0].port, nodes[1].port};
    cr_assert_eq(h_cluster_form(np, ports, bus, 2), 0, "the cluster did not form");
}

static void stop_cluster(void) {
    for (int i = 0; i < 2; i++)
        if (nodes[i].pid) h_redis_stop(&nodes[i], false);
}

TestSuite(cluster, .fini = stop_cluster, .timeout = 120);

static redisReply *on(int i, const char *fmt, const char *a, const char *b) {
    redisContext *c = h_redis_connect(&nodes[i]);
    redisReply *r = redisCommand(c, fmt, a, b);
    redisFree(c);
    cr_assert_not_null(r);
    return r;
}

static void stop_clean(struct h_worker *w) {
    char *log;
    int code = h_worker_stop_log(w, &log);
    cr_assert_eq(code, 0, "the node exited %d; log:\n%s", code, log ? log : "");
}

/* docs/operations.md's ACL line, for namespace ns and user name user: its words after
 * `redis-cli`, quotes dropped, {shoal} made {ns}, >PASSWORD made >pw. Returns argc. */
static int acl_line(const char *ns, const char *user, const char *pw, char words[128][96]) {
    const char *src = getenv("SHOAL_SRC");
    char path[512];
    snprintf(path, sizeof path, "%s/docs/operations.md", src ? src : ".");
    char *doc = h_read_file(path);
    cr_assert_not_null(doc, "cannot read %s", path);
    char *line = strstr(doc, "\nredis-cli ACL SETUSER shoal ");
    cr_assert_not_null(line, "no ACL line in %s", path);
    line += strlen("\nredis-cli ");
    char *end = strchr(line, '\n');
    *end = '\0';
    int n = 0;
    for (char *tok = strtok(line, " "); tok && n < 128; tok = strtok(NULL, " ")) {
        char w[96], *o = w;
        for (const char *p = tok; *p && o < w + sizeof w - 1; p++)
            if (*p != '\'') *o++ = *p;
        *o = '\0';
        char *tag = strstr(w, "{shoal}");
        if (n == 2)
            snprintf(words[n], 96, "%s", user);
        else if (strcmp(w, ">PASSWORD") == 0)
            snprintf(words[n], 96, ">%s", pw);
        else if (tag)
            snprintf(words[n], 96, "%.*s{%s}%s", (int)(tag - w), w, ns, tag + 7);
        else
            snprintf(words[n], 96, "%s", w);
        n++;
    }
    free(doc);
    return n;
}

static void acl_user(int i, const char *ns, const char *user, const char *pw) {
    static char words[128][96];
    int n = acl_line(ns, user, pw, words);
    const char *argv[128];
    for (int k = 0; k < n; k++) argv[k] = words[k];
    redisContext *c = h_redis_connect(&nodes[i]);
    redisReply *r = redisCommandArgv(c, n, argv, NULL);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER: %s", r && r->str ? r->str : "");
    freeReplyObject(r);
    redisFree(c);
}

/* The node's log says the held task finished, and a call of the node met ASK after that. */
static char held_line[128], *held_log;
static bool ended_then_ask(void *arg) {
    (void)arg;
    char *log = h_read_file(held_log);
    char *end = log ? strstr(log, held_line) : NULL;
    bool ok = end && strstr(end, "reply=\"ASK ");
    free(log);
    return ok;
}

/* The slot of "shoal" moves from primary 0 to primary 1 and is held half-way (MIGRATING on 0,
 * IMPORTING on 1, every key already on 1): primary 0 answers ASK for it. */
Test(cluster, ask_during_a_slot_migration) {
    start_cluster();
    /* through the ACL user of docs/operations.md: it must allow ASKING */
    for (int i = 0; i < 2; i++) acl_user(i, "shoal", "shoal", "pw-for-the-test");
    char seed[96];
    snprintf(seed, sizeof seed, "redis-cluster://shoal:pw-for-the-test@127.0.0.1:%d",
             nodes[1].port);
    struct h_worker w;
    const char *extra[] = {"--redis", seed, "--log-level", "debug", "--heartbeat", "500ms", NULL};
    h_worker_start(&w, &nodes[0], "asked", extra);
    cr_assert(h_ping_is(&w, 200, 10000), "the node did not come up through the cluster");
    struct shoal_client c;
    char err[256];
    cr_assert_eq(shoal_client_open(&c, seed, "shoal", err, sizeof err), 0, "%s", err);
    int64_t warm = h_enqueue_sleep(&c, "10ms", err, sizeof err);
    cr_assert(h_task_reaches(&c, warm, "Success", 10000), "no task ran before the migration");
    /* ends while the slot is held half-way: its completion meets ASK */
    int64_t held = h_enqueue_sleep(&c, "1500ms", err, sizeof err);
    cr_assert(h_task_reaches(&c, held, "Executing", 10000));
    shoal_client_close(&c);

    struct h_redis *np[2] = {&nodes[0], &nodes[1]};
    cr_assert_gt(h_cluster_migrate_keys(&nodes[0], &nodes[1], nodes[1].port, 3374), 0);

    /* The CLI: `shoal nodes` (one script call) meets ASK and follows it at once. */
    uint64_t t0 = h_now_ms();
    char *out = NULL, *e = NULL;
    const char *nodes_cmd[] = {"nodes", "--redis", seed, NULL};
    int rc = h_shoal(&out, &e, nodes_cmd);
    uint64_t took = h_now_ms() - t0;
    cr_assert_eq(rc, 0, "`shoal nodes` during the migration: %s", e ? e : "");
    cr_assert(out && strstr(out, "asked"), "%s", out ? out : "");
    cr_assert_lt(took, 3000, "ASK was waited out (%llu ms), not followed",
                 (unsigned long long)took);
    cr_log_info("shoal nodes through ASK + ASKING: %llu ms (process start included)",
                (unsigned long long)took);
    free(out);
    free(e);

    /* The C client: a plain command (HGETALL of a task) meets ASK and follows it too. */
    cr_assert_eq(shoal_client_open(&c, seed, "shoal", err, sizeof err), 0, "%s", err);
    struct shoal_task t;
    cr_assert_eq(shoal_task_get(&c, warm, &t, err, sizeof err), 0, "task get through ASK: %s", err);
    cr_assert_str_eq(t.state, "Success");
    shoal_task_free(&t);
    shoal_client_close(&c);

    /* The node: its calls meet ASK too (the held task's report among them), and are tried
     * again at its next turn, after the migration is completed. */
    snprintf(held_line, sizeof held_line, "msg=\"task finished\" task=ServerTasks-%lld ",
             (long long)held);
    held_log = w.log;
    cr_assert(h_eventually(ended_then_ask, NULL, 10000),
              "the held task did not end inside the migration, or its report met no ASK");
    cr_assert_eq(h_cluster_slot_owner(np, 2, &nodes[1], 3374), 0);
    cr_assert_eq(shoal_client_open(&c, seed, "shoal", err, sizeof err), 0, "%s", err);
    cr_assert(h_task_reaches(&c, held, "Success", 15000), "the held task never finished");
    cr_assert_eq(shoal_task_get(&c, held, &t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(t.attempt, 1, "it ran once");
    shoal_task_free(&t);
    int64_t after = h_enqueue_sleep(&c, "10ms", err, sizeof err);
    cr_assert(h_task_reaches(&c, after, "Success", 10000), "no task ran after the migration");
    shoal_client_close(&c);
    char *log = h_read_file(w.log);
    cr_assert(log && strstr(log, "slot moved to another cluster node"), "MOVED not followed");
    free(log);
    char *report = NULL;
    struct h_redis owner = nodes[1];
    cr_assert(h_check_namespace(&owner, NULL, &report), "%s", report ? report : "");
    free(report);
    stop_clean(&w);
}

static long long keys_in_slot(int i, int slot) {
    char s[8];
    snprintf(s, sizeof s, "%d", slot);
    redisReply *r = on(i, "CLUSTER COUNTKEYSINSLOT %s", s, NULL);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

#define PER_NS 40

/* Namespaces are the unit of scale: "alpha" lives on primary 0, "beta" on primary 1; a fleet
 * of one node per namespace, each with its own ACL user (only its namespace's keys and
 * channels), seeded with the OTHER primary's address. */
Test(cluster, two_namespaces_on_two_primaries_two_fleets) {
    start_cluster();
    const char *ns[2] = {"alpha", "beta"};
    int slot[2];
    struct rurl u;
    for (int k = 0; k < 2; k++) {
        rurl_cluster_namespace(&u, ns[k]);
        slot[k] = u.slot;
        for (int i = 0; i < 2; i++) acl_user(i, ns[k], ns[k], "pw-for-the-test");
    }
    cr_assert(slot[0] < 8192 && slot[1] >= 8192, "slots %d and %d", slot[0], slot[1]);
    struct h_worker w[2];
    char url[2][128];
    for (int k = 0; k < 2; k++) {
        /* seeded with the primary that does not hold its slot */
        snprintf(url[k], sizeof url[k], "redis-cluster://%s:pw-for-the-test@127.0.0.1:%d", ns[k],
                 nodes[1 - k].port);
        char name[32];
        snprintf(name, sizeof name, "fleet-%s", ns[k]);
        const char *extra[] = {"--redis", url[k], "--namespace", ns[k], "--cap", "8", NULL};
        h_worker_start(&w[k], &nodes[0], name, extra);
    }
    for (int k = 0; k < 2; k++)
        cr_assert(h_ping_is(&w[k], 200, 10000), "the %s fleet did not come up", ns[k]);
    struct shoal_client c[2];
    int64_t ids[2][PER_NS];
    char err[256];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(shoal_client_open(&c[k], url[k], ns[k], err, sizeof err), 0, "%s", err);
        struct shoal_task_opts t[PER_NS];
        for (int i = 0; i < PER_NS; i++) {
            shoal_task_opts_init(&t[i]);
            t[i].type = "noop";
        }
        cr_assert_eq(shoal_enqueue(&c[k], t, PER_NS, ids[k], err, sizeof err), 0, "%s", err);
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PER_NS; i++) {
            cr_assert(h_task_reaches(&c[k], ids[k][i], "Success", 20000), "%s task %lld", ns[k],
                      (long long)ids[k][i]);
            struct shoal_task t;
            cr_assert_eq(shoal_task_get(&c[k], ids[k][i], &t, err, sizeof err), 0, "%s", err);
            char want[32];
            snprintf(want, sizeof want, "fleet-%s", ns[k]);
            cr_assert_str_eq(t.node, want, "a %s task ran on %s", ns[k], t.node);
            shoal_task_free(&t);
        }
    for (int k = 0; k < 2; k++) shoal_client_close(&c[k]);
    /* each namespace's keys on its own primary only; ACL LOG empty everywhere */
    for (int k = 0; k < 2; k++) {
        cr_assert_gt(keys_in_slot(k, slot[k]), 0, "%s has no keys on its primary", ns[k]);
        cr_assert_eq(keys_in_slot(1 - k, slot[k]), 0, "%s has keys on the other primary", ns[k]);
    }
    for (int i = 0; i < 2; i++) {
        redisReply *r = on(i, "ACL LOG", NULL, NULL);
        cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 0,
                  "ACL LOG of primary %d has %zu entries", i, r->elements);
        freeReplyObject(r);
    }
    for (int k = 0; k < 2; k++) stop_clean(&w[k]);
}
