/* keys.c: the key layout as a table, and every key name built from it (see keys.h). */
#include "common/keys.h"

#include <stdio.h>
#include <string.h>

#include "common/package.h"

enum key_id {
    KEY_NODES,
    KEY_NODE,
    KEY_ALIVE,
    KEY_RUNNING,
    KEY_STATS,
    KEY_SEQ,
    KEY_TASK,
    KEY_LOG,
    KEY_QUEUE,
    KEY_QUEUE_PRIOS,
    KEY_QUEUES,
    KEY_SCHEDULED,
    KEY_DONE,
    KEY_CONTROL,
    KEY_WAKE,
    KEY_RECOVER_LOCK,
    KEY_PACKAGE,
    KEY_PACKAGE_INDEX,
    KEY_PACKAGE_SPACES,
    KEY_PACKAGE_LOCK,
    KEY_LAYOUT,
    KEY_QUEUE_SEEN,
    KEY_USERS,
    KEY_USER,
    KEY_APIKEYS,
    KEY_APIKEY,
    KEY_APIKEY_USED,
    KEY_ACCESS_VER,
    KEY_ACCESS,
    KEY_AUTHFAIL,
    KEY_LOCKOUTS,
    KEY_EVENTS,
    KEY_IDLE,
    KEY_PUSH,
    KEY_COUNT
};

/* The types are written as docs/redis.md's "Key layout" table writes them (a test compares). */
const struct key_layout keys_layout[KEY_COUNT] = {
    [KEY_NODES] = {"{NS}:nodes", "set", "names of known nodes"},
    [KEY_NODE] = {"{NS}:node:<name>", "hash", "a node: cap, drain, instance, last_seen, ..."},
    [KEY_ALIVE] = {"{NS}:alive:<name>", "string, PX TTL",
                   "instance id of the live process, PX = 3 heartbeats"},
    [KEY_RUNNING] = {"{NS}:running:<name>", "sorted set",
                     "task id -> lease deadline (ms) of tasks executing on the node"},
    [KEY_STATS] = {"{NS}:stats", "hash", "fleet counters: avail_cap, ready, running, lease"},
    [KEY_SEQ] = {"{NS}:seq", "string", "last task number (task id = ServerTasks-<n>)"},
    [KEY_TASK] = {"{NS}:task:<n>", "hash", "a task: state, queue, type, queued, expiry, args, ..."},
    [KEY_LOG] = {"{NS}:log:<n>", "string", "a finished task's output (last bytes), PX = retention"},
    [KEY_QUEUE] = {"{NS}:q:<queue>:<prio>", "list",
                   "ready task numbers of one queue and priority, oldest first"},
    [KEY_QUEUE_PRIOS] = {"{NS}:qp:<queue>", "sorted set",
                         "priority levels that have ready tasks in the queue"},
    [KEY_QUEUES] = {"{NS}:queues", "set", "queue names ever used"},
    [KEY_SCHEDULED] = {"{NS}:scheduled", "sorted set",
                       "task number -> due time (future queue time, retry backoff)"},
    [KEY_DONE] = {"{NS}:done", "sorted set",
                  "task number -> completion time, for the retention period"},
    [KEY_CONTROL] = {"{NS}:control", "pub/sub channel",
                     "\"node <name> <cap> <drain>\" after cap/drain changes, "
                     "\"cancel <node> <n>\" to stop an executing task"},
    [KEY_WAKE] = {"{NS}:wake", "pub/sub channel", "a queue name when it has new work"},
    [KEY_RECOVER_LOCK] = {"{NS}:lock:recover", "string, PX one heartbeat",
                          "the node running the recovery pass"},
    [KEY_PACKAGE] = {"{NS}:pkg:<space>:<PackageId>.<Version>", "hash", "a package's metadata"},
    [KEY_PACKAGE_INDEX] = {"{NS}:pkgs:<space>", "sorted set",
                           "<PackageId>.<Version> -> published (ms)"},
    [KEY_PACKAGE_SPACES] = {"{NS}:pkgspaces", "set", "spaces that have packages"},
    [KEY_PACKAGE_LOCK] = {"{NS}:pkglock:<space>:<PackageId>.<Version>", "string, PX 60 s",
                          "token of the upload commit or delete changing the package"},
    [KEY_LAYOUT] = {"{NS}:layout", "string",
                    "the namespace's layout version; a node whose build writes an older one is "
                    "refused at registration"},
    [KEY_QUEUE_SEEN] = {"{NS}:qseen", "sorted set",
                        "queue name -> last enqueue (ms): idle empty queues are forgotten"},
    [KEY_USERS] = {"{NS}:users", "set", "user names"},
    [KEY_USER] = {"{NS}:user:<name>", "hash", "a user: role, display name, is_service, created"},
    [KEY_APIKEYS] = {"{NS}:apikeys", "set", "API key ids"},
    [KEY_APIKEY] = {"{NS}:apikey:<id>", "hash",
                    "an API key: SHA-256 of the key (never the key), user, purpose, created, "
                    "expires, access, hint"},
    [KEY_APIKEY_USED] = {"{NS}:apikey_used", "hash",
                         "API key id -> last used (ms), written at most once a minute per key"},
    [KEY_ACCESS_VER] = {"{NS}:access_ver", "string",
                        "the access version: raised by every user or key change"},
    [KEY_ACCESS] = {"{NS}:access", "pub/sub channel",
                    "\"v <version>\" after every user or key change, \"lock <addr> <until>\" "
                    "after a lockout"},
    [KEY_AUTHFAIL] = {"{NS}:authfail:<addr>", "string, PX window",
                      "failed key checks from one client address in the window"},
    [KEY_LOCKOUTS] = {"{NS}:lockouts", "sorted set", "client address -> end of its lockout (ms)"},
    [KEY_EVENTS] = {"{NS}:events", "stream", "the audit trail: one event a change, JSON"},
    [KEY_IDLE] = {"{NS}:idle:<queue>", "sorted set",
                  "node name -> since (ms): nodes with free slots waiting for the queue's work "
                  "(enqueue.lua claims for them: push)"},
    [KEY_PUSH] = {"{NS}:push:<name>:<instance>", "pub/sub channel",
                  "a claim answer (RESP) of tasks enqueue.lua claimed for the idle node, "
                  "\"barrier <token>\" after unidle.lua"},
};
const size_t keys_layout_count = KEY_COUNT;

void keys_init(struct keys *k, const char *ns) {
    snprintf(k->prefix, sizeof k->prefix, "{%s}:", ns);
}

/* Appends s[0..n) to buf (len bytes, o used so far), truncating like snprintf. */
static void put(char *buf, size_t len, size_t *o, const char *s, size_t n) {
    if (n > len - 1 - *o) n = len - 1 - *o;
    memcpy(buf + *o, s, n);
    *o += n;
}

/* Writes keys_layout[id]'s pattern into buf with "{NS}:" replaced by the prefix and each <...>
 * by the next of parts[0..nparts); stops at a placeholder with no part left (a prefix of the
 * key). Truncates to len - 1 bytes like snprintf. */
static char *build(const struct keys *k, enum key_id id, const char *const *parts, size_t nparts,
                   char *buf, size_t len) {
    const char *p = keys_layout[id].pattern;
    size_t o = 0, used = 0;
    if (len == 0) return buf;
    if (strncmp(p, "{NS}:", 5) == 0) {
        put(buf, len, &o, k->prefix, strlen(k->prefix));
        p += 5;
    }
    while (*p) {
        if (*p == '<') {
            const char *end = strchr(p, '>');
            if (used == nparts || !end) break;
            put(buf, len, &o, parts[used], strlen(parts[used]));
            used++;
            p = end + 1;
            continue;
        }
        const char *next = strchr(p, '<');
        size_t n = next ? (size_t)(next - p) : strlen(p);
        put(buf, len, &o, p, n);
        p += n;
    }
    buf[o] = '\0';
    return buf;
}

static char *build0(const struct keys *k, enum key_id id, char *buf, size_t len) {
    return build(k, id, NULL, 0, buf, len);
}
static char *build1(const struct keys *k, enum key_id id, const char *a, char *buf, size_t len) {
    return build(k, id, &a, 1, buf, len);
}
static char *build_n(const struct keys *k, enum key_id id, int64_t n, char *buf, size_t len) {
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)n);
    return build1(k, id, num, buf, len);
}

char *keys_nodes(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_NODES, buf, len);
}
char *keys_node(const struct keys *k, const char *name, char *buf, size_t len) {
    return build1(k, KEY_NODE, name, buf, len);
}
char *keys_alive(const struct keys *k, const char *name, char *buf, size_t len) {
    return build1(k, KEY_ALIVE, name, buf, len);
}
char *keys_running(const struct keys *k, const char *name, char *buf, size_t len) {
    return build1(k, KEY_RUNNING, name, buf, len);
}
char *keys_stats(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_STATS, buf, len);
}
char *keys_control(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_CONTROL, buf, len);
}
char *keys_seq(const struct keys *k, char *buf, size_t len) { return build0(k, KEY_SEQ, buf, len); }
char *keys_queues(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_QUEUES, buf, len);
}
char *keys_scheduled(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_SCHEDULED, buf, len);
}
char *keys_done(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_DONE, buf, len);
}
char *keys_wake(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_WAKE, buf, len);
}
char *keys_idle(const struct keys *k, const char *queue, char *buf, size_t len) {
    return build1(k, KEY_IDLE, queue, buf, len);
}
char *keys_push(const struct keys *k, const char *name, const char *instance, char *buf,
                size_t len) {
    const char *parts[] = {name, instance};
    return build(k, KEY_PUSH, parts, 2, buf, len);
}
char *keys_queue_seen(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_QUEUE_SEEN, buf, len);
}
char *keys_layout_version(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_LAYOUT, buf, len);
}
char *keys_recover_lock(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_RECOVER_LOCK, buf, len);
}
char *keys_task(const struct keys *k, int64_t n, char *buf, size_t len) {
    return build_n(k, KEY_TASK, n, buf, len);
}
char *keys_log(const struct keys *k, int64_t n, char *buf, size_t len) {
    return build_n(k, KEY_LOG, n, buf, len);
}
char *keys_queue(const struct keys *k, const char *queue, const char *prio, char *buf, size_t len) {
    const char *parts[] = {queue, prio};
    return build(k, KEY_QUEUE, parts, 2, buf, len);
}
char *keys_queue_prios(const struct keys *k, const char *queue, char *buf, size_t len) {
    return build1(k, KEY_QUEUE_PRIOS, queue, buf, len);
}

char *keys_package(const struct keys *k, const char *space, const struct package_name *n, char *buf,
                   size_t len) {
    const char *parts[] = {space, n->id, n->version};
    return build(k, KEY_PACKAGE, parts, 3, buf, len);
}
char *keys_package_prefix(const struct keys *k, const char *space, char *buf, size_t len) {
    return build1(k, KEY_PACKAGE, space, buf, len); /* stops before <PackageId> */
}
char *keys_package_index(const struct keys *k, const char *space, char *buf, size_t len) {
    return build1(k, KEY_PACKAGE_INDEX, space, buf, len);
}
char *keys_package_spaces(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_PACKAGE_SPACES, buf, len);
}
char *keys_package_lock(const struct keys *k, const char *space, const struct package_name *n,
                        char *buf, size_t len) {
    const char *parts[] = {space, n->id, n->version};
    return build(k, KEY_PACKAGE_LOCK, parts, 3, buf, len);
}

char *keys_users(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_USERS, buf, len);
}
char *keys_user(const struct keys *k, const char *name, char *buf, size_t len) {
    return build1(k, KEY_USER, name, buf, len);
}
char *keys_apikeys(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_APIKEYS, buf, len);
}
char *keys_apikey(const struct keys *k, const char *id, char *buf, size_t len) {
    return build1(k, KEY_APIKEY, id, buf, len);
}
char *keys_apikey_used(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_APIKEY_USED, buf, len);
}
char *keys_access_version(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_ACCESS_VER, buf, len);
}
char *keys_access(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_ACCESS, buf, len);
}
char *keys_authfail(const struct keys *k, const char *addr, char *buf, size_t len) {
    return build1(k, KEY_AUTHFAIL, addr, buf, len);
}
char *keys_lockouts(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_LOCKOUTS, buf, len);
}
char *keys_events(const struct keys *k, char *buf, size_t len) {
    return build0(k, KEY_EVENTS, buf, len);
}
