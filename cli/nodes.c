/* nodes.c: the node commands: `shoal nodes`, `drain`, `cap`, `forget`. They read and change the
 * same Redis records the nodes use, through the same lua/ scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/node_info.h"
#include "common/util.h"

/* Reads every node (list_nodes.lua). Returns the count and *out, or -1 after printing why. */
static int load_nodes(struct cli *c, struct node_info **out) {
    char err[256];
    struct script_call call;
    call_list_nodes(&call, &c->keys);
    redisReply *r = rsync_call(&c->redis, &call, err, sizeof err);
    call_free(&call);
    if (r == NULL) {
        cli_fail(c, EXIT_FAIL, "%s", err);
        return -1;
    }
    int n = r->type == REDIS_REPLY_ERROR ? -1 : node_info_parse_list(r, out);
    if (n < 0)
        cli_fail(c, EXIT_FAIL, "unexpected reply from Redis: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "wrong shape");
    freeReplyObject(r);
    return n;
}

static const struct node_info *find_node(const struct node_info *v, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) return &v[i];
    return NULL;
}

/* "just now", "42s ago", "5m ago", "3h ago", "2d ago". */
static void ago(int64_t ms, int64_t now, char *buf, size_t len) {
    if (ms <= 0) {
        snprintf(buf, len, "never");
        return;
    }
    int64_t s = (now - ms) / 1000;
    if (s < 2)
        snprintf(buf, len, "just now");
    else if (s < 120)
        snprintf(buf, len, "%llds ago", (long long)s);
    else if (s < 7200)
        snprintf(buf, len, "%lldm ago", (long long)(s / 60));
    else if (s < 172800)
        snprintf(buf, len, "%lldh ago", (long long)(s / 3600));
    else
        snprintf(buf, len, "%lldd ago", (long long)(s / 86400));
}

static void node_json(struct json *j, const struct node_info *n) {
    char id[96];
    snprintf(id, sizeof id, "OctopusServerNodes-%s", n->name);
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "Name");
    json_str(j, n->name);
    json_key(j, "Status");
    json_str(j, node_status_name(node_info_status(n)));
    json_key(j, "LastSeen");
    json_time(j, n->last_seen_ms);
    json_key(j, "IsOffline");
    json_bool(j, !n->alive);
    json_key(j, "MaxConcurrentTasks");
    json_int(j, n->cap);
    json_key(j, "RunningTaskCount");
    json_int(j, n->running);
    json_key(j, "IsInMaintenanceMode");
    json_bool(j, n->drain);
    json_key(j, "Version");
    json_str(j, n->version);
    json_key(j, "Instance");
    json_str(j, n->instance);
    json_key(j, "Host");
    json_str(j, n->host);
    json_key(j, "Listen");
    json_str(j, n->listen);
    json_key(j, "Queues");
    json_str(j, n->queues);
    json_key(j, "CapSetBy");
    json_str(j, n->cap_by);
    json_obj_close(j);
}

static const char nodes_usage[] =
    "shoal nodes [--json]\n\n"
    "The fleet as Octopus's Nodes page shows it: Name, Status (Running, Draining, Drained,\n"
    "Offline), Last seen, Task cap, Tasks (running now), Drain.";

int cmd_nodes(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 1, 0, 0, nodes_usage, &code)) return code;
    struct node_info *v = NULL;
    int n = load_nodes(&c, &v);
    if (n < 0) {
        cli_close(&c);
        return EXIT_FAIL;
    }
    int64_t now = clock_wall_ms();
    if (flags[0].set) {
        struct buf b;
        struct json j;
        buf_init(&b);
        json_init(&j, &b);
        json_arr_open(&j);
        for (int i = 0; i < n; i++) node_json(&j, &v[i]);
        json_arr_close(&j);
        printf("%s\n", b.data);
        buf_free(&b);
    } else if (n == 0) {
        printf("No nodes registered in namespace %s.\n", c.cfg.namespace);
    } else {
        int w = 4;
        for (int i = 0; i < n; i++)
            if ((int)strlen(v[i].name) > w) w = (int)strlen(v[i].name);
        printf("%-*s  %-8s  %-10s  %8s  %5s  %s\n", w, "NAME", "STATUS", "LAST SEEN", "TASK CAP",
               "TASKS", "DRAIN");
        for (int i = 0; i < n; i++) {
            char seen[32];
            ago(v[i].last_seen_ms, now, seen, sizeof seen);
            printf("%-*s  %-8s  %-10s  %8lld  %5lld  %s\n", w, v[i].name,
                   node_status_name(node_info_status(&v[i])), seen, (long long)v[i].cap,
                   (long long)v[i].running, v[i].drain ? "on" : "off");
        }
    }
    free(v);
    cli_close(&c);
    return EXIT_OK;
}

/* Runs a set_cap/set_drain call for node `name`; prints the script's error when refused. Frees
 * the call. */
static int set_node(struct cli *c, struct script_call *call, const char *name) {
    char err[256];
    redisReply *r = rsync_call(&c->redis, call, err, sizeof err);
    call_free(call);
    if (r == NULL) return cli_fail(c, EXIT_FAIL, "%s", err);
    int code = EXIT_OK;
    if (r->type == REDIS_REPLY_ERROR) code = cli_reply_error(c, name, r->str);
    freeReplyObject(r);
    return code;
}

static const char drain_usage[] =
    "shoal drain NODE on|off [--wait] [--timeout DUR]\n\n"
    "Drain on: the node finishes what it runs and takes nothing new; its ping answers 418.\n"
    "The drain persists across the node's restarts until turned off. --wait returns when the\n"
    "node is idle (no running tasks), or exits 3 after --timeout (default 10m).";

int cmd_drain(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "wait"}, {.name = "timeout", .has_value = true}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 2, 2, 2, drain_usage, &code)) return code;
    const char *name = c.pos[0], *mode = c.pos[1];
    int64_t timeout = 600000;
    if (strcmp(mode, "on") != 0 && strcmp(mode, "off") != 0)
        code = cli_fail(&c, EXIT_USAGE, "expected on or off, not '%s'", mode);
    else if (flags[1].set && parse_duration_ms(flags[1].value, &timeout) != 0)
        code = cli_fail(&c, EXIT_USAGE, "--timeout '%s': expected a duration like 30s or 10m",
                        flags[1].value);
    else if (!node_name_valid(name))
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a valid node name", name);
    else {
        struct script_call call;
        call_set_drain(&call, &c.keys, name, strcmp(mode, "on") == 0);
        code = set_node(&c, &call, name);
    }
    if (code != EXIT_OK) {
        cli_close(&c);
        return code;
    }
    printf("%s: drain %s\n", name, mode);
    char msg[120], id[96];
    snprintf(msg, sizeof msg, "Node %s: drain %s", name, mode);
    snprintf(id, sizeof id, "OctopusServerNodes-%s", name);
    cli_audit(&c, "Modified", msg, id, NULL,
              strcmp(mode, "on") == 0 ? "IsInMaintenanceMode=true" : "IsInMaintenanceMode=false");
    if (flags[0].set && strcmp(mode, "on") == 0) {
        /* Poll the running count; bounded by the timeout. */
        uint64_t deadline = clock_mono_ms() + (uint64_t)timeout;
        int64_t last = -1;
        for (;;) {
            struct node_info *v = NULL;
            int n = load_nodes(&c, &v);
            if (n < 0) {
                code = EXIT_FAIL;
                break;
            }
            const struct node_info *ni = find_node(v, n, name);
            int64_t running = ni ? ni->running : 0;
            free(v);
            if (running == 0) {
                printf("%s: idle\n", name);
                break;
            }
            if (running != last)
                printf("%s: waiting for %lld running task(s)\n", name, (long long)running);
            fflush(stdout);
            last = running;
            if (clock_mono_ms() >= deadline) {
                code = cli_fail(&c, EXIT_TIMEOUT, "%s still has %lld running task(s) after %s",
                                name, (long long)running, flags[1].value ? flags[1].value : "10m");
                break;
            }
            usleep(100 * 1000);
        }
    }
    cli_close(&c);
    return code;
}

static const char cap_usage[] =
    "shoal cap NODE N\n\n"
    "Sets the node's task cap (0..10000; 0 runs no tasks). Takes effect at once, never stops\n"
    "running tasks, and persists across the node's restarts (it overrides --cap).";

int cmd_cap(int argc, char **argv) {
    struct cli c;
    int code;
    if (!cli_open(&c, argc, argv, NULL, 0, 2, 2, cap_usage, &code)) return code;
    int64_t cap;
    if (!node_name_valid(c.pos[0])) {
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a valid node name", c.pos[0]);
    } else if (parse_int64(c.pos[1], 0, 10000, &cap) != 0) {
        code = cli_fail(&c, EXIT_USAGE, "task cap '%s': expected a whole number from 0 to 10000",
                        c.pos[1]);
    } else {
        struct script_call call;
        call_set_cap(&call, &c.keys, c.pos[0], cap);
        if ((code = set_node(&c, &call, c.pos[0])) == EXIT_OK) {
            char msg[120], id[96], after[48];
            printf("%s: task cap %lld\n", c.pos[0], (long long)cap);
            snprintf(msg, sizeof msg, "Node %s: task cap changed", c.pos[0]);
            snprintf(id, sizeof id, "OctopusServerNodes-%s", c.pos[0]);
            snprintf(after, sizeof after, "MaxConcurrentTasks=%lld", (long long)cap);
            cli_audit(&c, "Modified", msg, id, NULL, after);
        }
    }
    cli_close(&c);
    return code;
}

static const char forget_usage[] =
    "shoal forget NODE\n\n"
    "Removes an offline node from the registry now (nodes offline longer than --forget-after\n"
    "are forgotten automatically). Refused while the node is alive.";

int cmd_forget(int argc, char **argv) {
    struct cli c;
    int code;
    if (!cli_open(&c, argc, argv, NULL, 0, 1, 1, forget_usage, &code)) return code;
    const char *name = c.pos[0];
    char err[256];
    if (!node_name_valid(name)) {
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a valid node name", name);
        cli_close(&c);
        return code;
    }
    struct script_call call;
    call_forget(&call, &c.keys, name);
    redisReply *r = rsync_call(&c.redis, &call, err, sizeof err);
    call_free(&call);
    if (r == NULL)
        code = cli_fail(&c, EXIT_FAIL, "%s", err);
    else if (r->type == REDIS_REPLY_ERROR)
        code = cli_reply_error(&c, name, r->str);
    else {
        char msg[120], id[96];
        printf("%s: forgotten\n", name);
        snprintf(msg, sizeof msg, "Node %s forgotten", name);
        snprintf(id, sizeof id, "OctopusServerNodes-%s", name);
        cli_audit(&c, "Deleted", msg, id, name, NULL);
    }
    if (r) freeReplyObject(r);
    cli_close(&c);
    return code;
}
