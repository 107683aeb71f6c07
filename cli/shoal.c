/* shoal.c: the binary's entry point: dispatches to the node daemon or an admin command by
 * table. Each command explains itself with --help. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/config.h"
#include "worker/worker.h"

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv) {
    printf("shoal %s\n", SHOAL_VERSION);
    return 0;
}
static int cmd_settings(int argc, char **argv) {
    config_markdown(stdout);
    return 0;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"worker", worker_main, "run a node (registers, heartbeats, answers ping)"},
    {"nodes", cmd_nodes, "list nodes: name, status, last seen, task cap, tasks, drain"},
    {"drain", cmd_drain, "drain NODE on|off [--wait]: stop a node taking new tasks"},
    {"cap", cmd_cap, "cap NODE N: set a node's task cap"},
    {"forget", cmd_forget, "forget NODE: remove an offline node now"},
    {"enqueue", cmd_enqueue, "enqueue [flags] -- ARGV...: queue a task (default type exec)"},
    {"tasks", cmd_tasks, "tasks [--node N] [--state S] [--queue Q]: list tasks"},
    {"task", cmd_task, "task ID [--log]: one task, with its output"},
    {"cancel", cmd_cancel, "cancel ID: cancel a queued or executing task"},
    {"wait", cmd_wait, "wait ID [--timeout DUR]: wait for a task to finish"},
    {"packages", cmd_packages, "packages [--space S] [--json]: uploaded packages"},
    {"stats", cmd_stats, "the fleet at a glance: capacity, running, free slots, queues"},
    {"check", cmd_check, "check [--repair]: find (and fix) tasks and counters out of place"},
    {"user", cmd_user, "user add|list|remove: users of the HTTP API and their roles"},
    {"apikey", cmd_apikey, "apikey create|list|revoke: API keys (shown once at creation)"},
    {"events", cmd_events, "events [--take N] [--json]: the audit trail, newest first"},
    {"settings", cmd_settings, "print every setting (flag, environment variable, default)"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "this text"},
};

static int cmd_help(int argc, char **argv) {
    printf("shoal %s: a Redis-backed task queue worker fleet with Octopus-style node management\n\n"
           "Usage: shoal COMMAND [flags] [args]   (shoal COMMAND --help for details)\n\n",
           SHOAL_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-9s %s\n", commands[i].name, commands[i].summary);
    printf("\nEvery command takes --redis URL (SHOAL_REDIS_URL) and --namespace NS.\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        cmd_help(argc, argv);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0) return cmd_version(argc - 1, argv + 1);
    /* Not in help: how a node spawns exec tasks so they die with it (worker/exec.h). */
    if (strcmp(argv[1], "exec-child") == 0) return shoal_worker_main(argc - 1, argv + 1, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "shoal: unknown command '%s' (see shoal help)\n", argv[1]);
    return 2;
}
