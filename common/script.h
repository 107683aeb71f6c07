/* script.h: the Lua scripts compiled into the binary from lua/ (one .lua file each) (cmake/embed_lua.cmake).
 *
 * Callers name a script by id; the text is found by file name at first use. Connections load
 * every script with SCRIPT LOAD and run them with EVALSHA (rconn.c, rsync.c). */
#ifndef SHOAL_SCRIPT_H
#define SHOAL_SCRIPT_H

#include <stddef.h>

struct script_src {
    const char *name; /* file name without .lua */
    const char *text; /* NUL-terminated source */
    size_t len;
};
/* Generated (scripts_gen.c). */
extern const struct script_src script_sources[];
extern const size_t script_source_count;

enum script_id {
    SCRIPT_REGISTER,
    SCRIPT_HEARTBEAT,
    SCRIPT_DEREGISTER,
    SCRIPT_SET_CAP,
    SCRIPT_SET_DRAIN,
    SCRIPT_FORGET,
    SCRIPT_LIST_NODES,
    SCRIPT_SWEEP,
    SCRIPT_ENQUEUE,
    SCRIPT_CLAIM,
    SCRIPT_COMPLETE,
    SCRIPT_CANCEL,
    SCRIPT_EXPIRE,
    SCRIPT_RECOVER,
    SCRIPT_RECONCILE,
    SCRIPT_LIST_TASKS,
    SCRIPT_QUEUE_STATS,
    SCRIPT_NODE_SUMMARY,
    SCRIPT_PACKAGE,
    SCRIPT_PACKAGE_LIST,
    SCRIPT_CANCELLING,
    SCRIPT_REPAIR,
    SCRIPT_ACCESS_WRITE,
    SCRIPT_ACCESS_LOAD,
    SCRIPT_AUTH_FAIL,
    SCRIPT_TURN,
    SCRIPT_UNIDLE,
    SCRIPT_OWNED,
    SCRIPT_COUNT
};

/* The source of a script. Aborts if lua/<name>.lua was not embedded (a build error). */
const struct script_src *script_get(enum script_id id);

#endif
