/* access.h: a node's cache of who may do what (users, API keys, permissions, lockouts), read
 * from Redis and kept coherent with every other node's; and the check every keyed route runs.
 *
 * The cache is the whole of lua/access_load.lua's answer (at most ACCESS_MAX_USERS users and
 * ACCESS_MAX_KEYS keys), so a check never calls Redis: it hashes the presented key (SHA-256)
 * and looks the digest up (O(log keys)). Coherence (docs/design.md, "Access"):
 *   - every change raises {NS}:access_ver and publishes "v <version>" on {NS}:access; this
 *     node's own subscriber link reloads at once on a newer version;
 *   - at every heartbeat period the node reads the version (GET) and reloads when it differs,
 *     so a missed message leaves a stale grant for at most one heartbeat;
 *   - on every reconnect (of the subscriber, or of the command link) the cache is dropped and
 *     reloaded: until then Redis-held keys answer 503;
 *   - when no version check has succeeded for one liveness TTL (three heartbeats), Redis-held
 *     keys answer 503 (fail closed); --api-key / --api-key-file keys (the bootstrap
 *     administrator, break-glass) keep working;
 *   - an expired key is refused from its expiry time on, by the clock, with no message needed.
 * Brute force: a wrong key from an address is counted in Redis (lua/auth_fail.lua, after the
 * answer, off the request's path); at --auth-fail-limit within ACCESS_FAIL_WINDOW_MS the
 * address is locked out for --auth-lockout on every node (published; also in the cache's
 * load), answered 429 with Retry-After. Last use of a key is written at most once a minute per
 * key, from the heartbeat timer. Everything runs on the loop thread. */
#ifndef SHOAL_API_ACCESS_H
#define SHOAL_API_ACCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api/auth.h"
#include "common/access.h"
#include "common/config.h"
#include "common/keys.h"
#include "common/rconn.h"
#include "http/http.h"

#define ACCESS_FAIL_WINDOW_MS 60000
#define ACCESS_USED_EVERY_MS 60000
#define ACCESS_MAX_LOCKS 1024 /* lockouts held in memory; more: the oldest ends first */

struct access_cache;

/* Creates the cache (no I/O): its own subscriber link to url, the node's command link cmd
 * (borrowed: loads, version checks, last-use writes, failure counts), keys and cfg borrowed for
 * its life. */
struct access_cache *access_cache_new(uv_loop_t *loop, const struct rurl *url,
                                      const struct keys *keys, const struct shoal_config *cfg,
                                      struct rconn *cmd);
/* Connects the subscriber and starts the heartbeat-period checks. */
void access_cache_start(struct access_cache *a);
/* Closes the link and timer; done(arg) runs once everything is closed. Free afterwards. */
void access_cache_close(struct access_cache *a, void (*done)(void *arg), void *arg);
void access_cache_free(struct access_cache *a);

/* The verdict on ex for a route needing perm (PERM_NONE: any valid key). file_keys: the
 * --api-key / --api-key-file set (may be NULL). a may be NULL (no Redis-held keys). Returns 0
 * with *who filled (may be NULL), or the status to answer with a static message in *why: 401 no
 * key, 403 wrong or expired key or a missing permission (the message names it), 429 a locked-out
 * address (Retry-After added to ex), 503 access unknown (Redis away longer than the TTL, or the
 * cache reloading after a reconnect). A wrong key is counted for its address. */
int access_check(struct access_cache *a, const struct auth_keys *file_keys,
                 struct http_exchange *ex, enum access_perm perm, struct access_actor *who,
                 const char **why);

/* The version the cache holds (-1: none loaded), and whether it is in force now. */
int64_t access_cache_version(const struct access_cache *a);
/* The snapshot in force (borrowed until the next load: use it at once), or NULL. */
const struct access_snapshot *access_cache_snapshot(const struct access_cache *a);
/* Forces a reload now (after this node changed something: its own answer then agrees). */
void access_cache_reload(struct access_cache *a);

#endif
