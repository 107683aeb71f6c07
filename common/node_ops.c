/* node_ops.c: argument lists for the node-changing scripts. */
#include "common/node_ops.h"

void node_set_args_init(struct node_set_args *a, const struct keys *k, const char *name,
                        const char *value) {
    keys_node(k, name, a->node_k, sizeof a->node_k);
    keys_alive(k, name, a->alive_k, sizeof a->alive_k);
    keys_stats(k, a->stats_k, sizeof a->stats_k);
    keys_control(k, a->channel, sizeof a->channel);
    a->argv[0] = a->node_k;
    a->argv[1] = a->alive_k;
    a->argv[2] = a->stats_k;
    a->argv[3] = name;
    a->argv[4] = value;
    a->argv[5] = a->channel;
}
