/* node_ops.h: the argument lists of the scripts that change a node (set_cap.lua,
 * set_drain.lua), built in one place for every caller (CLI, HTTP API, benchmarks, tests). */
#ifndef SHOAL_NODE_OPS_H
#define SHOAL_NODE_OPS_H

#include "common/keys.h"

#define NODE_SET_NKEYS 3
#define NODE_SET_ARGC 6

struct node_set_args {
    char node_k[160], alive_k[160], stats_k[160], channel[160];
    const char *argv[NODE_SET_ARGC];   /* keys, then name, value, channel; borrowed strings */
};

/* Fills a for node `name` and the new value ("0".."10000" for a cap, "0"/"1" for a drain).
 * name and value are borrowed while a is used. */
void node_set_args_init(struct node_set_args *a, const struct keys *k, const char *name,
                        const char *value);

#endif
