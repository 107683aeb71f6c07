/* script.c: maps script ids to the embedded lua/ sources. */
#include "common/script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const names[SCRIPT_COUNT] = {
    [SCRIPT_REGISTER] = "register",
    [SCRIPT_HEARTBEAT] = "heartbeat",
    [SCRIPT_DEREGISTER] = "deregister",
    [SCRIPT_SET_CAP] = "set_cap",
    [SCRIPT_SET_DRAIN] = "set_drain",
    [SCRIPT_FORGET] = "forget",
    [SCRIPT_LIST_NODES] = "list_nodes",
    [SCRIPT_SWEEP] = "sweep",
    [SCRIPT_ENQUEUE] = "enqueue",
    [SCRIPT_CLAIM] = "claim",
    [SCRIPT_COMPLETE] = "complete",
    [SCRIPT_CANCEL] = "cancel",
    [SCRIPT_EXPIRE] = "expire",
    [SCRIPT_RECOVER] = "recover",
    [SCRIPT_RECONCILE] = "reconcile",
    [SCRIPT_LIST_TASKS] = "list_tasks",
    [SCRIPT_QUEUE_STATS] = "queue_stats",
    [SCRIPT_NODE_SUMMARY] = "node_summary",
    [SCRIPT_PACKAGE] = "package",
    [SCRIPT_PACKAGE_LIST] = "package_list",
    [SCRIPT_CANCELLING] = "cancelling",
    [SCRIPT_OWNED] = "owned",
    [SCRIPT_REPAIR] = "repair",
    [SCRIPT_ACCESS_WRITE] = "access_write",
    [SCRIPT_ACCESS_LOAD] = "access_load",
    [SCRIPT_AUTH_FAIL] = "auth_fail",
    [SCRIPT_TURN] = "turn",
    [SCRIPT_UNIDLE] = "unidle",
};

const struct script_src *script_get(enum script_id id) {
    for (size_t i = 0; i < script_source_count; i++)
        if (strcmp(script_sources[i].name, names[id]) == 0) return &script_sources[i];
    fprintf(stderr, "shoal: script lua/%s.lua is not embedded in this build\n", names[id]);
    abort();
}
