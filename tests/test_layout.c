/* test_layout.c: the written layout and the code agree. (1) docs/redis.md's "Key layout" table
 * lists exactly the keys common/keys.c builds, with the types of keys.c's table; (2) every
 * common/calls.h builder sends as many KEYS as its lua/ script's header comment names. Pure:
 * no Redis; the docs are read from the source tree (SHOAL_SRC). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calls.h"
#include "common/client.h"
#include "common/keys.h"
#include "common/package.h"
#include "common/script.h"
#include "common/util.h"

#define MAX_ROWS 64

struct doc_row {
    char key[160];
    char type[64];
};

/* Reads the rows of docs/redis.md's table under "## Key layout": "| `key` | type | ... |". */
static size_t read_doc_rows(struct doc_row *rows, size_t max) {
    const char *src = getenv("SHOAL_SRC");
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/docs/redis.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s (SHOAL_SRC=%s)", path, src ? src : "unset");
    bool in_section = false;
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0) in_section = strncmp(line, "## Key layout", 13) == 0;
        if (!in_section || strncmp(line, "| `", 3) != 0) continue;
        const char *key = line + 3, *end = strchr(key, '`');
        cr_assert_not_null(end, "unterminated key in %s: %s", path, line);
        cr_assert(strncmp(end, "` | ", 4) == 0, "no type cell in %s: %s", path, line);
        const char *type = end + 4, *tend = strstr(type, " |");
        cr_assert_not_null(tend, "no type cell in %s: %s", path, line);
        cr_assert_lt(n, max);
        snprintf(rows[n].key, sizeof rows[n].key, "%.*s", (int)(end - key), key);
        snprintf(rows[n].type, sizeof rows[n].type, "%.*s", (int)(tend - type), type);
        n++;
    }
    fclose(f);
    cr_assert_gt(n, 0, "no key table under \"## Key layout\" in %s", path);
    return n;
}

static const struct doc_row *find_row(const struct doc_row *rows, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].key, key) == 0) return &rows[i];
    return NULL;
}

Test(key_layout, docs_table_matches_keys_c_table) {
    struct doc_row rows[MAX_ROWS];
    size_t n = read_doc_rows(rows, MAX_ROWS);
    for (size_t i = 0; i < keys_layout_count; i++) {
        const struct doc_row *r = find_row(rows, n, keys_layout[i].pattern);
        cr_assert_not_null(r, "docs/redis.md's key table lacks %s (common/keys.c builds it)",
                           keys_layout[i].pattern);
        cr_assert_str_eq(r->type, keys_layout[i].type, "%s: docs/redis.md says '%s', keys.c '%s'",
                         r->key, r->type, keys_layout[i].type);
    }
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < keys_layout_count; j++)
            found |= strcmp(rows[i].key, keys_layout[j].pattern) == 0;
        cr_assert(found, "docs/redis.md lists %s, which common/keys.c does not build", rows[i].key);
    }
    cr_assert_eq(n, keys_layout_count, "docs/redis.md lists a key twice");
}

/* Writes the doc pattern with "<n>" (a task number) as 7, the only numeric part. */
static void with_number(const char *pattern, char *out, size_t len) {
    const char *at = strstr(pattern, "<n>");
    if (at)
        snprintf(out, len, "%.*s7%.100s", (int)(at - pattern), pattern, at + 3);
    else
        snprintf(out, len, "%.200s", pattern);
}

/* The builders themselves, called with the placeholders as parts, produce the docs' names. */
Test(key_layout, builders_produce_the_documented_names) {
    struct keys k;
    keys_init(&k, "NS");
    struct package_name pn;
    memset(&pn, 0, sizeof pn);
    snprintf(pn.id, sizeof pn.id, "<PackageId>");
    snprintf(pn.version, sizeof pn.version, "<Version>");
    char b[34][320];
    const char *built[] = {
        keys_nodes(&k, b[0], sizeof b[0]),
        keys_node(&k, "<name>", b[1], sizeof b[1]),
        keys_alive(&k, "<name>", b[2], sizeof b[2]),
        keys_running(&k, "<name>", b[3], sizeof b[3]),
        keys_stats(&k, b[4], sizeof b[4]),
        keys_seq(&k, b[5], sizeof b[5]),
        keys_task(&k, 7, b[6], sizeof b[6]),
        keys_log(&k, 7, b[7], sizeof b[7]),
        keys_queue(&k, "<queue>", "<prio>", b[8], sizeof b[8]),
        keys_queue_prios(&k, "<queue>", b[9], sizeof b[9]),
        keys_queues(&k, b[10], sizeof b[10]),
        keys_scheduled(&k, b[11], sizeof b[11]),
        keys_done(&k, b[12], sizeof b[12]),
        keys_control(&k, b[13], sizeof b[13]),
        keys_wake(&k, b[14], sizeof b[14]),
        keys_recover_lock(&k, b[15], sizeof b[15]),
        keys_package(&k, "<space>", &pn, b[16], sizeof b[16]),
        keys_package_index(&k, "<space>", b[17], sizeof b[17]),
        keys_package_spaces(&k, b[18], sizeof b[18]),
        keys_package_lock(&k, "<space>", &pn, b[19], sizeof b[19]),
        keys_layout_version(&k, b[20], sizeof b[20]),
        keys_queue_seen(&k, b[21], sizeof b[21]),
        keys_users(&k, b[22], sizeof b[22]),
        keys_user(&k, "<name>", b[23], sizeof b[23]),
        keys_apikeys(&k, b[24], sizeof b[24]),
        keys_apikey(&k, "<id>", b[25], sizeof b[25]),
        keys_apikey_used(&k, b[26], sizeof b[26]),
        keys_access_version(&k, b[27], sizeof b[27]),
        keys_access(&k, b[28], sizeof b[28]),
        keys_authfail(&k, "<addr>", b[29], sizeof b[29]),
        keys_lockouts(&k, b[30], sizeof b[30]),
        keys_events(&k, b[31], sizeof b[31]),
        keys_idle(&k, "<queue>", b[32], sizeof b[32]),
        keys_push(&k, "<name>", "<instance>", b[33], sizeof b[33]),
    };
    struct doc_row rows[MAX_ROWS];
    size_t n = read_doc_rows(rows, MAX_ROWS);
    cr_assert_eq(ARRAY_SIZE(built), n, "keys.h has %zu key builders, docs/redis.md %zu rows",
                 ARRAY_SIZE(built), n);
    for (size_t i = 0; i < ARRAY_SIZE(built); i++) {
        bool found = false;
        char want[320];
        for (size_t j = 0; j < n && !found; j++) {
            with_number(rows[j].key, want, sizeof want);
            found = strcmp(built[i], want) == 0;
        }
        cr_assert(found, "common/keys.c builds %s, which docs/redis.md's key table lacks",
                  built[i]);
    }
    /* The package list's hash prefix is the package key cut before its <PackageId>. */
    cr_assert_str_eq(keys_package_prefix(&k, "<space>", b[20], sizeof b[20]), "{NS}:pkg:<space>:");
}

/* The largest n of "KEYS[n]" in a script's header comment (its leading "--" lines). */
static int header_keys(enum script_id id) {
    const struct script_src *s = script_get(id);
    int max = 0;
    for (const char *p = s->text; p && strncmp(p, "--", 2) == 0;
         p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *eol = strchr(p, '\n');
        for (const char *q = p; (q = strstr(q, "KEYS[")) && (!eol || q < eol); q += 5) {
            int n = atoi(q + 5);
            if (n > max) max = n;
        }
    }
    return max;
}

static void check_keys(struct script_call *c, bool *seen) {
    seen[c->id] = true;
    const char *name = script_get(c->id)->name;
    int want = header_keys(c->id);
    cr_assert_gt(want, 0, "lua/%s.lua's header names no KEYS[n]", name);
    cr_assert_eq(c->nkeys, want, "the %s builder sends %d KEYS, lua/%s.lua's header names %d", name,
                 c->nkeys, name, want);
    cr_assert_geq(c->argc, c->nkeys);
    for (int i = 0; i < c->nkeys; i++)
        cr_assert(strncmp(c->argv[i], "{NS}:", 5) == 0, "%s: KEYS[%d] '%s' is not a key", name,
                  i + 1, c->argv[i]);
    call_free(c);
}

Test(script_calls, keys_agree_with_script_headers) {
    struct keys k;
    keys_init(&k, "NS");
    struct script_call c;
    bool seen[SCRIPT_COUNT] = {false};
    struct package_name pn = {"App", "1.0.0", ".zip"};
    struct call_register_args reg = {"n", "i", 1, 2, 3, "v", "h", 4, "l", "q", 5};
    struct call_claim_args cl = {"n", "i", 1, 2, true, 3, true};
    struct call_list_tasks_args lt = {"n", "Queued", 0, 10, 100};
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    struct call_report rep = {"ServerTasks-3", 1, "Success", "", -1, NULL, 0, 0};
    const char *fields[] = {"id", "x"};
    call_register(&c, &k, &reg);
    check_keys(&c, seen);
    call_heartbeat(&c, &k, "n", "i", 1, 2);
    check_keys(&c, seen);
    call_deregister(&c, &k, "n", "i", 1);
    check_keys(&c, seen);
    call_set_cap(&c, &k, "n", 3);
    check_keys(&c, seen);
    call_set_drain(&c, &k, "n", true);
    check_keys(&c, seen);
    call_forget(&c, &k, "n");
    check_keys(&c, seen);
    call_list_nodes(&c, &k);
    check_keys(&c, seen);
    call_node_summary(&c, &k);
    check_keys(&c, seen);
    call_sweep(&c, &k, 1, 2, 3);
    check_keys(&c, seen);
    call_recover(&c, &k, 1, "t", 2, NULL);
    check_keys(&c, seen);
    call_enqueue(&c, &k, 1, 1);
    call_enqueue_add(&c, &o);
    check_keys(&c, seen);
    call_claim(&c, &k, &cl);
    call_claim_add_queue(&c, "default");
    check_keys(&c, seen);
    call_complete(&c, &k, "n", 1, 2, 1);
    call_complete_add(&c, &rep);
    check_keys(&c, seen);
    const char *tq[] = {"default"};
    call_turn(&c, &k, &cl, 2, tq, 1, 1);
    call_complete_add(&c, &rep);
    check_keys(&c, seen);
    call_unidle(&c, &k, "n", "i", "t", tq, 1);
    check_keys(&c, seen);
    call_reconcile(&c, &k, "n", 1, 1);
    call_reconcile_add(&c, "ServerTasks-3");
    check_keys(&c, seen);
    call_cancel(&c, &k, 3, 1);
    check_keys(&c, seen);
    call_expire(&c, &k, 1, 2, "0", 3);
    check_keys(&c, seen);
    call_list_tasks(&c, &k, &lt);
    check_keys(&c, seen);
    call_queue_stats(&c, &k, "0");
    check_keys(&c, seen);
    call_repair(&c, &k, "queued", "3", NULL);
    check_keys(&c, seen);
    call_cancelling(&c, &k, "n", 0, 5);
    check_keys(&c, seen);
    call_owned(&c, &k, "n", 1);
    call_owned_add(&c, "ServerTasks-3");
    check_keys(&c, seen);
    call_package_commit(&c, &k, "Spaces-1", &pn, "t", 1, fields, 2);
    check_keys(&c, seen);
    struct call_package_list_args pl = {"", 0, 10, "", false, 0};
    call_package_list(&c, &k, "Spaces-1", &pl);
    check_keys(&c, seen);
    const char *uargs[] = {"u", "viewer", "", "0"};
    call_access_write(&c, &k, 1, 2, "{}", "user_add", uargs, 4);
    check_keys(&c, seen);
    call_access_load(&c, &k, 1);
    check_keys(&c, seen);
    struct call_auth_fail_args af = {"127.0.0.1", 1, 2, 3, 4, 5, "{}"};
    call_auth_fail(&c, &k, &af);
    check_keys(&c, seen);
    for (int i = 0; i < SCRIPT_COUNT; i++)
        cr_assert(seen[i], "lua/%s.lua has no builder checked here", script_get(i)->name);
}

/* A batch keeps its count current and holds binary items; a large one leaves the inline room. */
Test(script_calls, batches_count_and_grow) {
    struct keys k;
    keys_init(&k, "NS");
    struct script_call c;
    call_complete(&c, &k, "n", 1, 2, 0);
    int head = c.argc;
    char ids[300][24];
    for (int i = 0; i < 300; i++) {
        snprintf(ids[i], sizeof ids[i], "ServerTasks-%d", i + 1);
        struct call_report r = {ids[i], i, "Failed", "boom", 1, "a\0b", 3, 500};
        call_complete_add(&c, &r);
    }
    cr_assert_eq(c.argc, head + 300 * 7);
    cr_assert_str_eq(c.argv[head - 1], "300", "the count follows the items");
    cr_assert_eq(c.lens[head - 1], 3);
    cr_assert_str_eq(c.argv[head + 7 * 299], "300", "the number of ServerTasks-300");
    cr_assert_eq(c.lens[head + 7 * 299 + 5], 3, "the log is binary, NUL included");
    cr_assert_str_eq(c.argv[head + 7 * 299 + 1], "299");
    cr_assert_str_eq(c.argv[0], "{NS}:running:n", "keys survive the growth");
    call_free(&c);
}

/* n reports of the longest id, lease and retry delay. */
static void add_longest_reports(struct script_call *c, int n) {
    struct call_report r = {
        "ServerTasks-9223372036854775807", INT64_MAX, "Failed", "error", -1, "log", 3, INT64_MAX};
    for (int i = 0; i < n; i++) call_complete_add(c, &r);
}

/* The hot path's calls: a claim naming as many queues as the claimer sends (67) is built
 * without touching the heap; a complete batch of 512 reports, and a turn of 256 reports with
 * 67 queues, with one allocation for its arguments and one for its text, whatever the batch
 * size. */
Test(script_calls, hot_path_allocations) {
    struct keys k;
    keys_init(&k, "a-namespace-of-forty-characters-at-most");
    struct script_call c;
    struct call_claim_args a = {"a-node-name-of-sixty-four-characters-which-is-the-most-allowed-x",
                                "0123456789abcdef0123456789abcdef",
                                1700000000000,
                                512,
                                true,
                                30000,
                                true};
    call_claim(&c, &k, &a);
    for (int i = 0; i < 67; i++) call_claim_add_queue(&c, "a-queue-name-of-some-length");
    cr_assert_eq(c.argc, 14 + 67);
    cr_assert_eq(c.allocs, 0, "a claim is built on the stack alone");
    call_free(&c);
    call_complete(&c, &k, a.name, 1700000000000, 604800000, 512);
    add_longest_reports(&c, 512);
    cr_assert_eq(c.allocs, 2, "one block for the arguments, one for the text");
    call_free(&c);
    /* A turn (reports and claim in one call) likewise, with all its queues. */
    const char *queues[67];
    for (int i = 0; i < 67; i++) queues[i] = "a-queue-name-of-some-length";
    call_turn(&c, &k, &a, 604800000, queues, 67, 256);
    add_longest_reports(&c, 256);
    cr_assert_eq(c.argc, 6 + 11 + 67 + 1 + 7 * 256);
    cr_assert_eq(c.allocs, 2, "one block for the arguments, one for the text");
    call_free(&c);
}
