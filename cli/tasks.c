/* tasks.c: the task commands: `shoal enqueue`, `tasks`, `task`, `cancel`, `wait`. They use the
 * task client (common/client.h), the same code other C programs link. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/client.h"
#include "common/err.h"
#include "common/task_codec.h"
#include "common/task_env.h"
#include "common/util.h"

/* wait's exit codes for how the task ended (besides 0 Success, 1 error, 2 usage, 3 timeout). */
enum { EXIT_TASK_FAILED = 10, EXIT_TASK_TIMEDOUT = 11, EXIT_TASK_CANCELED = 12 };

/* Opens the task client over the CLI's settings (the connection is the cli's). */
static void client_from_cli(struct shoal_client *tc, struct cli *c) {
    memset(tc, 0, sizeof *tc);
    tc->redis = c->redis;
    tc->keys = c->keys;
    snprintf(tc->ns, sizeof tc->ns, "%s", c->cfg.namespace);
}

/* "2026-11-28T10:00:00Z", "...T10:00:00.250Z", "...+00:00", or epoch milliseconds. */
static int parse_time(const char *s, int64_t *ms) {
    if (parse_int64(s, 0, INT64_MAX, ms) == 0) return 0;
    return parse_iso8601_ms(s, ms);
}

static const char enqueue_usage[] =
    "shoal enqueue [--type T] [--queue Q] [--priority N] [--at TIME | --delay DUR]\n"
    "              [--expiry DUR] [--timeout DUR] [--attempts N] [--lost-budget N]\n"
    "              [--count N] [--env K=V ...] [--cwd DIR] [--package SPACE/ID.VERSION]\n"
    "              [--json] -- ARGV...\n\n"
    "Queues a task and prints its id. Type exec (the default) runs ARGV on a node whose\n"
    "--allow-exec permits it; other types get ARGV as a list of strings (sleep: a duration,\n"
    "fail: a message). --at takes 2026-11-28T10:00:00Z or epoch ms; --expiry (default 1d) is\n"
    "how long it may wait for a node; --attempts > 1 retries failures with backoff;\n"
    "--lost-budget (default 1) is how often it is requeued after its node was lost;\n"
    "--priority (-1000..1000, default 0) runs higher first; --count queues N copies.";

enum {
    F_TYPE,
    F_QUEUE,
    F_PRIO,
    F_AT,
    F_DELAY,
    F_EXPIRY,
    F_TIMEOUT,
    F_ATTEMPTS,
    F_COUNT,
    F_ENV,
    F_CWD,
    F_JSON,
    F_LOST,
    F_PACKAGE,
    F_N
};

/* Fills o from the flags; returns 0 or prints why and returns EXIT_USAGE. */
static int opts_from_flags(struct cli *c, struct cli_flag *f, struct shoal_task_opts *o,
                           int64_t *count) {
    int64_t v;
    shoal_task_opts_init(o);
    *count = 1;
    if (f[F_TYPE].set) o->type = f[F_TYPE].value;
    if (f[F_QUEUE].set) o->queue = f[F_QUEUE].value;
    struct {
        int flag;
        int64_t *dst;
        int64_t lo, hi;
        bool dur;
    } nums[] = {
        {F_PRIO, &o->priority, -1000, 1000, false},
        {F_EXPIRY, &o->expiry_ms, 1, INT64_MAX, true},
        {F_TIMEOUT, &o->timeout_ms, 0, INT64_MAX, true},
        {F_ATTEMPTS, &o->attempts, 1, 1000, false},
        {F_COUNT, count, 1, 10000000, false},
        {F_LOST, &o->lost_budget, 0, 1000, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(nums); i++) {
        struct cli_flag *fl = &f[nums[i].flag];
        if (!fl->set) continue;
        int rc = nums[i].dur ? parse_duration_ms(fl->value, &v)
                             : parse_int64(fl->value, nums[i].lo, nums[i].hi, &v);
        if (rc != 0 || v < nums[i].lo || v > nums[i].hi)
            return cli_fail(c, EXIT_USAGE, "--%s '%s': expected %s", fl->name, fl->value,
                            nums[i].dur ? "a duration like 250ms, 30s, 10m, 1d"
                                        : "a whole number in range");
        *nums[i].dst = v;
    }
    if (f[F_AT].set && f[F_DELAY].set)
        return cli_fail(c, EXIT_USAGE, "--at and --delay exclude each other");
    if (f[F_AT].set && parse_time(f[F_AT].value, &o->at_ms) != 0)
        return cli_fail(c, EXIT_USAGE, "--at '%s': expected 2026-11-28T10:00:00Z or epoch ms",
                        f[F_AT].value);
    if (f[F_DELAY].set) {
        if (parse_duration_ms(f[F_DELAY].value, &v) != 0)
            return cli_fail(c, EXIT_USAGE, "--delay '%s': expected a duration", f[F_DELAY].value);
        o->at_ms = clock_wall_ms() + v;
    }
    return 0;
}

int cmd_enqueue(int argc, char **argv) {
    struct cli c;
    struct cli_flag f[F_N] = {
        [F_TYPE] = {.name = "type", .has_value = true},
        [F_QUEUE] = {.name = "queue", .has_value = true},
        [F_PRIO] = {.name = "priority", .has_value = true},
        [F_AT] = {.name = "at", .has_value = true},
        [F_DELAY] = {.name = "delay", .has_value = true},
        [F_EXPIRY] = {.name = "expiry", .has_value = true},
        [F_TIMEOUT] = {.name = "timeout", .has_value = true},
        [F_ATTEMPTS] = {.name = "attempts", .has_value = true},
        [F_COUNT] = {.name = "count", .has_value = true},
        [F_ENV] = {.name = "env", .has_value = true},
        [F_CWD] = {.name = "cwd", .has_value = true},
        [F_JSON] = {.name = "json"},
        [F_LOST] = {.name = "lost-budget", .has_value = true},
        [F_PACKAGE] = {.name = "package", .has_value = true},
    };
    int code;
    if (!cli_open(&c, argc, argv, f, F_N, 0, 1000, enqueue_usage, &code)) return code;
    struct shoal_task_opts o;
    int64_t count;
    struct buf args;
    buf_init(&args);
    if ((code = opts_from_flags(&c, f, &o, &count)) != 0) goto out;
    if (strcmp(o.type, "exec") == 0) {
        if (c.npos == 0) {
            code = cli_fail(&c, EXIT_USAGE,
                            "an exec task needs a program: shoal enqueue -- "
                            "/usr/bin/env echo hello");
            goto out;
        }
        for (int i = 0; i < f[F_ENV].nvalues; i++)
            if (!strchr(f[F_ENV].values[i], '=')) {
                code = cli_fail(&c, EXIT_USAGE, "--env '%s': expected K=V", f[F_ENV].values[i]);
                goto out;
            }
        char why[300];
        if (task_env_check(f[F_ENV].values, f[F_ENV].nvalues, NULL, why, sizeof why) != 0) {
            code = cli_fail(&c, EXIT_USAGE, "--env: %s", why);
            goto out;
        }
        task_args_exec_encode_package(&args, (const char *const *)c.pos, c.npos, f[F_ENV].values,
                                      f[F_ENV].nvalues, f[F_CWD].set ? f[F_CWD].value : NULL,
                                      f[F_PACKAGE].set ? f[F_PACKAGE].value : NULL);
    } else {
        if (f[F_ENV].set || f[F_CWD].set || f[F_PACKAGE].set) {
            code = cli_fail(&c, EXIT_USAGE, "--env, --cwd and --package apply to exec tasks only");
            goto out;
        }
        if (c.npos > 0) task_args_strings_encode(&args, (const char *const *)c.pos, c.npos);
    }
    o.args = args.data;
    o.args_len = args.len;
    struct shoal_client tc;
    client_from_cli(&tc, &c);
    struct shoal_task_opts *all = xmalloc((size_t)count * sizeof *all);
    int64_t *ids = xmalloc((size_t)count * sizeof *ids);
    for (int64_t i = 0; i < count; i++) all[i] = o;
    char err[512];
    if (shoal_enqueue(&tc, all, (size_t)count, ids, err, sizeof err) != 0) {
        code = cli_fail(&c, EXIT_FAIL, "%s", err);
    } else if (f[F_JSON].set) {
        printf("[");
        for (int64_t i = 0; i < count; i++)
            printf("%s\"ServerTasks-%lld\"", i ? "," : "", (long long)ids[i]);
        printf("]\n");
    } else {
        for (int64_t i = 0; i < count; i++) printf("ServerTasks-%lld\n", (long long)ids[i]);
    }
    free(all);
    free(ids);
out:
    buf_free(&args);
    cli_close(&c);
    return code;
}

/* --- reading tasks ------------------------------------------------------------------------- */

static void task_json(struct json *j, const struct shoal_task *t) {
    char id[40];
    snprintf(id, sizeof id, "ServerTasks-%lld", (long long)t->id);
    bool final = shoal_state_final(t->state);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "State");
    json_str(j, t->state);
    json_key(j, "Queue");
    json_str(j, t->queue);
    json_key(j, "Type");
    json_str(j, t->type);
    json_key(j, "ServerNode");
    if (t->node[0])
        json_str(j, t->node);
    else
        json_null_value(j);
    json_key(j, "Priority");
    json_int(j, t->priority);
    json_key(j, "QueueTime");
    json_time(j, t->queued_ms);
    json_key(j, "QueueTimeExpiry");
    json_time(j, t->expiry_ms);
    json_key(j, "StartTime");
    json_time(j, t->started_ms);
    json_key(j, "CompletedTime");
    json_time(j, final ? t->completed_ms : 0);
    json_key(j, "ErrorMessage");
    json_str(j, t->error ? t->error : "");
    json_key(j, "IsCompleted");
    json_bool(j, final);
    json_key(j, "FinishedSuccessfully");
    json_bool(j, strcmp(t->state, "Success") == 0);
    json_key(j, "Attempt");
    json_int(j, t->attempt);
    json_key(j, "Attempts");
    json_int(j, t->attempts);
    json_key(j, "TimeoutMs");
    json_int(j, t->timeout_ms);
    json_key(j, "ExitCode");
    if (t->has_exit)
        json_int(j, t->exit_code);
    else
        json_null_value(j);
    json_key(j, "DurationMs");
    if (final && t->started_ms)
        json_int(j, t->completed_ms - t->started_ms);
    else
        json_null_value(j);
    json_obj_close(j);
}

static void print_time(const char *label, int64_t ms) {
    char b[40];
    if (ms > 0) printf("%-14s %s\n", label, iso8601_ms(ms, b, sizeof b));
}

static const char task_usage[] =
    "shoal task ID [--log] [--json]\n\nShows a task (ServerTasks-N or N); --log adds its output.";

int cmd_task(int argc, char **argv) {
    struct cli c;
    struct cli_flag f[] = {{.name = "log"}, {.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, f, 2, 1, 1, task_usage, &code)) return code;
    int64_t id;
    struct shoal_client tc;
    struct shoal_task t;
    char err[512];
    client_from_cli(&tc, &c);
    if (shoal_task_parse_id(c.pos[0], &id) != 0) {
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a task id (ServerTasks-N)", c.pos[0]);
        goto out;
    }
    if (shoal_task_get(&tc, id, &t, err, sizeof err) != 0) {
        code = cli_fail(&c, EXIT_FAIL, "%s", err);
        goto out;
    }
    size_t loglen = 0;
    char *log = f[0].set ? shoal_task_log(&tc, id, &loglen, err, sizeof err) : NULL;
    if (f[1].set) {
        struct buf b;
        struct json j;
        buf_init(&b);
        json_init(&j, &b);
        task_json(&j, &t);
        if (f[0].set) {
            b.len--; /* reopen the object for the log */
            buf_puts(&b, ",\"Log\":");
            json_escape(&b, log ? log : "", loglen);
            buf_puts(&b, "}");
        }
        printf("%s\n", b.data);
        buf_free(&b);
    } else {
        printf("%-14s ServerTasks-%lld\n%-14s %s\n%-14s %s\n%-14s %s\n", "Id", (long long)id,
               "State", t.state, "Queue", t.queue, "Type", t.type);
        if (t.node[0]) printf("%-14s %s\n", "Node", t.node);
        if (t.priority) printf("%-14s %lld\n", "Priority", (long long)t.priority);
        print_time("Queued", t.queued_ms);
        print_time("Expires", shoal_state_final(t.state) ? 0 : t.expiry_ms);
        print_time("Started", t.started_ms);
        print_time("Completed", shoal_state_final(t.state) ? t.completed_ms : 0);
        printf("%-14s %lld of %lld\n", "Attempt", (long long)t.attempt, (long long)t.attempts);
        if (t.has_exit) printf("%-14s %lld\n", "Exit code", (long long)t.exit_code);
        if (t.error && t.error[0]) printf("%-14s %s\n", "Error", t.error);
        if (f[0].set) {
            printf("--- log ---\n");
            if (log) fwrite(log, 1, loglen, stdout);
            if (log && loglen && log[loglen - 1] != '\n') putchar('\n');
        }
    }
    free(log);
    shoal_task_free(&t);
out:
    cli_close(&c);
    return code;
}

static const char cancel_usage[] =
    "shoal cancel ID\n\nCancels a task: a queued one at once, an executing one on its node\n"
    "(SIGTERM, then SIGKILL after the node's --kill-grace), one on a node that is gone at once.";

int cmd_cancel(int argc, char **argv) {
    struct cli c;
    int code;
    if (!cli_open(&c, argc, argv, NULL, 0, 1, 1, cancel_usage, &code)) return code;
    int64_t id;
    struct shoal_client tc;
    char err[512], result[64];
    client_from_cli(&tc, &c);
    if (shoal_task_parse_id(c.pos[0], &id) != 0) {
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a task id (ServerTasks-N)", c.pos[0]);
    } else if (shoal_task_cancel(&tc, id, result, sizeof result, err, sizeof err) != 0) {
        code = cli_fail(&c, EXIT_FAIL, "%s", err);
    } else if (strncmp(result, "final:", 6) == 0) {
        printf("ServerTasks-%lld: already finished (%s)\n", (long long)id, result + 6);
    } else if (strcmp(result, "cancelling") == 0) {
        printf("ServerTasks-%lld: cancelling (its node stops it)\n", (long long)id);
    } else {
        printf("ServerTasks-%lld: canceled\n", (long long)id);
    }
    cli_close(&c);
    return code;
}

static const char wait_usage[] =
    "shoal wait ID [--timeout DUR]\n\n"
    "Waits until the task finishes and prints how it ended. Exit code: 0 Success, 10 Failed,\n"
    "11 TimedOut, 12 Canceled, 3 still running after --timeout (default: no limit), 1 error.";

int cmd_wait(int argc, char **argv) {
    struct cli c;
    struct cli_flag f[] = {{.name = "timeout", .has_value = true}};
    int code;
    if (!cli_open(&c, argc, argv, f, 1, 1, 1, wait_usage, &code)) return code;
    int64_t id, timeout = 0;
    struct shoal_client tc;
    char err[512];
    client_from_cli(&tc, &c);
    if (shoal_task_parse_id(c.pos[0], &id) != 0) {
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a task id (ServerTasks-N)", c.pos[0]);
        goto out;
    }
    if (f[0].set && parse_duration_ms(f[0].value, &timeout) != 0) {
        code = cli_fail(&c, EXIT_USAGE, "--timeout '%s': expected a duration", f[0].value);
        goto out;
    }
    uint64_t deadline = clock_mono_ms() + (uint64_t)timeout;
    for (;;) {
        struct shoal_task t;
        if (shoal_task_get(&tc, id, &t, err, sizeof err) != 0) {
            code = cli_fail(&c, EXIT_FAIL, "%s", err);
            break;
        }
        if (shoal_state_final(t.state)) {
            printf("ServerTasks-%lld: %s%s%s\n", (long long)id, t.state,
                   t.error && t.error[0] ? ": " : "", t.error ? t.error : "");
            code = strcmp(t.state, "Success") == 0    ? EXIT_OK
                   : strcmp(t.state, "Failed") == 0   ? EXIT_TASK_FAILED
                   : strcmp(t.state, "TimedOut") == 0 ? EXIT_TASK_TIMEDOUT
                                                      : EXIT_TASK_CANCELED;
            shoal_task_free(&t);
            break;
        }
        shoal_task_free(&t);
        if (timeout > 0 && clock_mono_ms() >= deadline) {
            code = cli_fail(&c, EXIT_TIMEOUT, "ServerTasks-%lld is still %s after %s",
                            (long long)id, t.state, f[0].value);
            break;
        }
        usleep(50 * 1000);
    }
out:
    cli_close(&c);
    return code;
}

/* --- listing ------------------------------------------------------------------------------- */

struct idlist {
    int64_t *v;
    size_t n, cap;
};

static void ids_add_reply(struct idlist *l, const redisReply *r) {
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 256;
            l->v = xrealloc(l->v, l->cap * sizeof *l->v);
        }
        l->v[l->n++] = strtoll(r->element[i]->str, NULL, 10);
    }
}

/* Runs a command and adds the ids it returns; returns -1 if Redis failed. */
static int gather(struct cli *c, struct idlist *l, const char *fmt, const char *a, const char *b,
                  long long lim) {
    char err[256];
    redisReply *r = rsync_cmd(&c->redis, err, sizeof err, fmt, a, b, lim);
    if (!r) {
        cli_fail(c, EXIT_FAIL, "%s", err);
        return -1;
    }
    ids_add_reply(l, r);
    freeReplyObject(r);
    return 0;
}

static bool group_wanted(const char *state, const char *const *group) {
    if (!state) return true;
    for (; *group; group++)
        if (strcmp(state, *group) == 0) return true;
    return false;
}

/* Collects candidate ids from the indexes the scripts keep, newest finished first. */
static int collect(struct cli *c, const char *node, const char *state, const char *queue,
                   long long scan, struct idlist *l) {
    static const char *const running[] = {"Executing", "Cancelling", NULL};
    static const char *const queued[] = {"Queued", NULL};
    static const char *const final[] = {"Success", "Failed", "Canceled", "TimedOut", NULL};
    char k1[200], k2[200], err[256];
    redisReply *names = NULL;
    if (group_wanted(state, running)) {
        names = node ? NULL
                     : rsync_cmd(&c->redis, err, sizeof err, "SMEMBERS %s",
                                 keys_nodes(&c->keys, k1, sizeof k1));
        size_t n = node ? 1 : (names && names->type == REDIS_REPLY_ARRAY ? names->elements : 0);
        for (size_t i = 0; i < n; i++) {
            const char *nm = node ? node : names->element[i]->str;
            if (gather(c, l, "ZRANGE %s %s %lld", keys_running(&c->keys, nm, k1, sizeof k1), "0",
                       scan - 1) != 0)
                goto fail;
        }
        if (names) freeReplyObject(names);
        names = NULL;
    }
    if (group_wanted(state, queued) && !node) {
        names = queue ? NULL
                      : rsync_cmd(&c->redis, err, sizeof err, "SMEMBERS %s",
                                  keys_queues(&c->keys, k1, sizeof k1));
        size_t n = queue ? 1 : (names && names->type == REDIS_REPLY_ARRAY ? names->elements : 0);
        for (size_t i = 0; i < n; i++) {
            const char *q = queue ? queue : names->element[i]->str;
            redisReply *lv = rsync_cmd(&c->redis, err, sizeof err, "ZREVRANGE %s 0 -1",
                                       keys_queue_prios(&c->keys, q, k1, sizeof k1));
            for (size_t j = 0; lv && lv->type == REDIS_REPLY_ARRAY && j < lv->elements; j++)
                if (gather(c, l, "LRANGE %s %s %lld",
                           keys_queue(&c->keys, q, lv->element[j]->str, k2, sizeof k2), "0",
                           scan - 1) != 0) {
                    freeReplyObject(lv);
                    goto fail;
                }
            if (lv) freeReplyObject(lv);
        }
        if (names) freeReplyObject(names);
        names = NULL;
        if (gather(c, l, "ZRANGE %s %s %lld", keys_scheduled(&c->keys, k1, sizeof k1), "0",
                   scan - 1) != 0)
            goto fail;
    }
    if (group_wanted(state, final) &&
        gather(c, l, "ZREVRANGE %s %s %lld", keys_done(&c->keys, k1, sizeof k1), "0", scan - 1) !=
            0)
        goto fail;
    return 0;
fail:
    if (names) freeReplyObject(names);
    return -1;
}

static const char tasks_usage[] =
    "shoal tasks [--node N] [--state S] [--queue Q] [--limit N] [--json]\n\n"
    "Lists tasks: executing ones (per node), queued ones (per queue, in the order they run), and\n"
    "finished ones, newest first. States: Queued, Executing, Cancelling, Success, Failed,\n"
    "Canceled, TimedOut. The Nodes page's \"active tasks\" for a node is\n"
    "shoal tasks --node N --state Executing.";

int cmd_tasks(int argc, char **argv) {
    struct cli c;
    struct cli_flag f[] = {{.name = "node", .has_value = true},
                           {.name = "state", .has_value = true},
                           {.name = "queue", .has_value = true},
                           {.name = "limit", .has_value = true},
                           {.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, f, 5, 0, 0, tasks_usage, &code)) return code;
    static const char *const states[] = {"Queued", "Executing", "Cancelling", "Success",
                                         "Failed", "Canceled",  "TimedOut",   NULL};
    const char *state = f[1].value;
    int64_t limit = 100;
    if (state && !group_wanted(state, states)) {
        code = cli_fail(&c, EXIT_USAGE,
                        "--state '%s': one of Queued, Executing, Cancelling, "
                        "Success, Failed, Canceled, TimedOut",
                        state);
        cli_close(&c);
        return code;
    }
    if (f[3].set && parse_int64(f[3].value, 1, 100000, &limit) != 0) {
        code =
            cli_fail(&c, EXIT_USAGE, "--limit '%s': a whole number from 1 to 100000", f[3].value);
        cli_close(&c);
        return code;
    }
    struct idlist l = {0};
    /* Filters on node or queue can skip many finished tasks: look further back for them. */
    long long scan = (f[0].set || f[2].set || state) ? limit * 20 : limit;
    if (collect(&c, f[0].value, state, f[2].value, scan, &l) != 0) {
        free(l.v);
        cli_close(&c);
        return EXIT_FAIL;
    }
    struct shoal_client tc;
    client_from_cli(&tc, &c);
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    json_arr_open(&j);
    int64_t shown = 0;
    int64_t now = clock_wall_ms();
    if (!f[4].set)
        printf("%-20s %-10s %-12s %-10s %-14s %-10s %s\n", "ID", "STATE", "QUEUE", "TYPE", "NODE",
               "AGE", "ERROR");
    for (size_t i = 0; i < l.n && shown < limit; i++) {
        struct shoal_task t;
        char err[256];
        if (shoal_task_get(&tc, l.v[i], &t, err, sizeof err) != 0) continue;
        bool keep = (!state || strcmp(t.state, state) == 0) &&
                    (!f[0].set || strcmp(t.node, f[0].value) == 0) &&
                    (!f[2].set || strcmp(t.queue, f[2].value) == 0);
        if (keep) {
            shown++;
            if (f[4].set) {
                task_json(&j, &t);
            } else {
                char id[32], age[24];
                snprintf(id, sizeof id, "ServerTasks-%lld", (long long)t.id);
                format_duration_ms(((now - t.queued_ms) / 1000) * 1000, age, sizeof age);
                printf("%-20s %-10s %-12s %-10s %-14s %-10s %.60s\n", id, t.state, t.queue, t.type,
                       t.node[0] ? t.node : "-", age, t.error ? t.error : "");
            }
        }
        shoal_task_free(&t);
    }
    json_arr_close(&j);
    if (f[4].set) printf("%s\n", b.data);
    buf_free(&b);
    free(l.v);
    cli_close(&c);
    return EXIT_OK;
}
