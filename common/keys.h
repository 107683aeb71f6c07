/* keys.h: the Redis key layout, in one place. Every key of a namespace NS starts with the hash
 * tag {NS}, so every script touches a single slot (Redis Cluster safe).
 *
 * keys.c holds the layout as a table (pattern, type, meaning: keys_layout[]) and builds every
 * key name from that table's pattern, so the names and the table cannot drift apart; docs/redis.md
 * shows the same table, and tests/test_units.c fails when the two differ (a row missing, a key
 * renamed, a type changed). If you change a key: change its row in keys.c, the table in
 * docs/redis.md, and the lua/ scripts' headers. */
#ifndef SHOAL_KEYS_H
#define SHOAL_KEYS_H

#include <stddef.h>
#include <stdint.h>

struct package_name;

/* The layout version this build reads and writes ({NS}:layout). Raise it ONLY for a change old
 * builds cannot run beside (a key renamed or retyped, a field given a new meaning, a script
 * contract old nodes would break): register.lua then writes the new number and every node of an
 * older build is refused at its next registration with a message naming both numbers. An
 * additive change (a new key, a new field old builds ignore) keeps the number; test it with the
 * previous build beside the new one (tests/upgrade/). docs/redis.md, "Layout version". */
#define SHOAL_LAYOUT 1

struct keys {
    char prefix[48]; /* "{NS}:" */
};

/* One row of the layout: the key's pattern ("{NS}:node:<name>": each <...> is a part the
 * builder fills in, in order), its Redis type as docs/redis.md shows it, and what it holds. */
struct key_layout {
    const char *pattern;
    const char *type;
    const char *meaning;
};
extern const struct key_layout keys_layout[];
extern const size_t keys_layout_count;

void keys_init(struct keys *k, const char *ns);
/* Each writes the key into buf (len >= 128 is always enough, 320 for the package keys) and
 * returns buf. */
char *keys_nodes(const struct keys *k, char *buf, size_t len);
char *keys_node(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_alive(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_running(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_control(const struct keys *k, char *buf, size_t len);
char *keys_stats(const struct keys *k, char *buf, size_t len);
char *keys_seq(const struct keys *k, char *buf, size_t len);
char *keys_task(const struct keys *k, int64_t n, char *buf, size_t len);
char *keys_log(const struct keys *k, int64_t n, char *buf, size_t len);
char *keys_queue(const struct keys *k, const char *queue, const char *prio, char *buf, size_t len);
char *keys_queue_prios(const struct keys *k, const char *queue, char *buf, size_t len);
char *keys_queues(const struct keys *k, char *buf, size_t len);
char *keys_scheduled(const struct keys *k, char *buf, size_t len);
char *keys_done(const struct keys *k, char *buf, size_t len);
char *keys_wake(const struct keys *k, char *buf, size_t len);
/* Nodes waiting idle on a queue (claim.lua registers them, enqueue.lua claims for them). */
char *keys_idle(const struct keys *k, const char *queue, char *buf, size_t len);
/* A node process's own push channel (lua/enqueue.lua publishes what it claimed for it). */
char *keys_push(const struct keys *k, const char *name, const char *instance, char *buf,
                size_t len);
char *keys_recover_lock(const struct keys *k, char *buf, size_t len);
char *keys_layout_version(const struct keys *k, char *buf, size_t len);
char *keys_queue_seen(const struct keys *k, char *buf, size_t len);
/* The package feed (common/package.h): a package's hash, a space's index, the set of spaces,
 * a package's lock; and the hash keys' common prefix in a space ("{NS}:pkg:<space>:", which
 * lua/package_list.lua appends <PackageId>.<Version> to). */
char *keys_package(const struct keys *k, const char *space, const struct package_name *n, char *buf,
                   size_t len);
char *keys_package_prefix(const struct keys *k, const char *space, char *buf, size_t len);
char *keys_package_index(const struct keys *k, const char *space, char *buf, size_t len);
char *keys_package_spaces(const struct keys *k, char *buf, size_t len);
char *keys_package_lock(const struct keys *k, const char *space, const struct package_name *n,
                        char *buf, size_t len);
/* Access (api/access.h, cli/access.c): users, API keys, the access version and its channel,
 * failed checks per client address, lockouts, and the audit trail (common/access.h). */
char *keys_users(const struct keys *k, char *buf, size_t len);
char *keys_user(const struct keys *k, const char *name, char *buf, size_t len);
char *keys_apikeys(const struct keys *k, char *buf, size_t len);
char *keys_apikey(const struct keys *k, const char *id, char *buf, size_t len);
char *keys_apikey_used(const struct keys *k, char *buf, size_t len);
char *keys_access_version(const struct keys *k, char *buf, size_t len);
char *keys_access(const struct keys *k, char *buf, size_t len);
char *keys_authfail(const struct keys *k, const char *addr, char *buf, size_t len);
char *keys_lockouts(const struct keys *k, char *buf, size_t len);
char *keys_events(const struct keys *k, char *buf, size_t len);

#endif
