/* keys.h: the Redis key layout, in one place. Every key of a namespace NS starts with the hash
 * tag {NS}, so every script touches a single slot (Redis Cluster safe).
 *
 *   {NS}:nodes              SET    names of known nodes
 *   {NS}:node:<name>        HASH   a node: cap, drain, instance, last_seen, ... (README lists fields)
 *   {NS}:alive:<name>       STRING instance id of the live process, PX = 3 heartbeats
 *   {NS}:running:<name>     ZSET   task id -> lease deadline (ms) of tasks executing on the node
 *   {NS}:control            pub/sub channel: "node <name> <cap> <drain>" after cap/drain changes
 *
 * If you change a key here, change the README's key table and the lua/ scripts' headers. */
#ifndef SHOAL_KEYS_H
#define SHOAL_KEYS_H

#include <stddef.h>

struct keys {
    char prefix[48];   /* "{NS}:" */
};

void keys_init(struct keys *k, const char *ns);
/* Each writes the key into buf (len >= 128 is always enough) and returns buf. */
char *keys_nodes(const struct keys *k, char *buf, size_t len);
char *keys_node(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_alive(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_running(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_control(const struct keys *k, char *buf, size_t len);

#endif
