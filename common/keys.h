/* keys.h: the Redis key layout, in one place. Every key of a namespace NS starts with the hash
 * tag {NS}, so every script touches a single slot (Redis Cluster safe).
 *
 *   {NS}:nodes              SET    names of known nodes
 *   {NS}:node:<name>        HASH   a node: cap, drain, instance, last_seen, ... (README lists fields)
 *   {NS}:alive:<name>       STRING instance id of the live process, PX = 3 heartbeats
 *   {NS}:running:<name>     ZSET   task id -> lease deadline (ms) of tasks executing on the node
 *   {NS}:stats              HASH   fleet counters: avail_cap, ready, running, lease
 *   {NS}:seq                STRING last task number (task id = ServerTasks-<n>)
 *   {NS}:task:<n>           HASH   a task: state, queue, type, queued, expiry, args, ... (README)
 *   {NS}:log:<n>            STRING a finished task's output (last bytes), PX = retention
 *   {NS}:q:<queue>:<prio>   LIST   ready task numbers of one queue and priority, oldest first
 *   {NS}:qp:<queue>         ZSET   priority levels that have ready tasks in the queue
 *   {NS}:queues             SET    queue names ever used
 *   {NS}:scheduled          ZSET   task number -> due time (future queue time, retry backoff)
 *   {NS}:done               ZSET   task number -> completion time, for the retention period
 *   {NS}:control            pub/sub channel: "node <name> <cap> <drain>" after cap/drain
 *                           changes, "cancel <node> <n>" to stop an executing task
 *   {NS}:lock:recover       STRING the node running the recovery pass, PX = one heartbeat
 *   {NS}:wake               pub/sub channel: a queue name when it has new work
 *
 * If you change a key here, change the README's key table and the lua/ scripts' headers. */
#ifndef SHOAL_KEYS_H
#define SHOAL_KEYS_H

#include <stddef.h>
#include <stdint.h>

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
char *keys_recover_lock(const struct keys *k, char *buf, size_t len);

#endif
