/* api.h: what the keyed HTTP API's handlers share (api_nodes.c, api_tasks.c, the Nodes page):
 * the API's per-server state, the gate every keyed handler passes first, query parsing, Redis
 * reply checks, and the Octopus-shaped JSON of nodes, tasks and collections.
 *
 * Every handler is asynchronous: it checks the request, sends one or more pipelined Redis
 * commands (rconn_call/rconn_command: Redis runs them in order on the one connection), and
 * answers from the last reply callback. A reply of NULL means the connection was lost: 503.
 * JSON shapes follow Octopus.Client's resources (OctopusServerNodeResource,
 * OctopusServerNodeSummaryResource, OctopusServerNodeDetailsResource, TaskResource,
 * ResourceCollection); the README's "HTTP API" section lists them. */
#ifndef SHOAL_API_API_H
#define SHOAL_API_API_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/access.h"
#include "api/auth.h"
#include "common/access.h"
#include "common/buf.h"
#include "common/client.h"
#include "common/config.h"
#include "common/node_info.h"
#include "common/services.h"
#include "http/http.h"

#define API_NODE_PREFIX "OctopusServerNodes-"
#define API_TASK_PREFIX "ServerTasks-"
#define API_TAKE_DEFAULT 30 /* Octopus's page size */
#define API_TAKE_MAX 1000
#define API_DEFAULT_SPACE "Spaces-1" /* the namespace as an Octopus space (named Default) */

struct metrics_cache;

/* The API's state for one server: its keys and the /metrics cache. Built once at start-up by
 * the worker and put in node_services.api; freed after the loop has stopped. */
/* /summary answers from this for SUMMARY_FRESH_MS: monitoring and scale-in scripts poll it,
 * and building it is O(nodes) of work on the loop that would otherwise delay ping. A change
 * made through this node's API clears it; one made elsewhere shows within that time. */
#define SUMMARY_FRESH_MS 100

struct api_state {
    struct auth_keys *keys;        /* owned: --api-key / --api-key-file (bootstrap
                                     * administrator); may hold no key */
    struct access_cache *access;   /* owned: Redis-held users and keys (api/access.h), or
                                     * NULL (only the keys above) */
    struct metrics_cache *metrics; /* owned */
    struct buf summary;            /* the last /summary body */
    uint64_t summary_at_ms;        /* monotonic ms it was built; 0: none */
    char **spaces;                 /* the spaces, sorted, Spaces-1 first (owned); NULL: none yet */
    size_t nspaces;
    uint64_t spaces_at_ms;    /* monotonic ms they were read; 0: never */
    unsigned uploads;         /* package uploads holding their buffers now */
    uint64_t uploads_refused; /* uploads answered 429 (--http-max-uploads reached) */
};

/* Reads the keys of cfg (--api-key, --api-key-file). Returns 0 and *out, or SHOAL_ECONFIG with
 * a one-line message in err (never a key): an unreadable or empty key file. */
int api_state_new(const struct shoal_config *cfg, struct api_state **out, char *err, size_t errlen);
void api_state_free(struct api_state *a);
/* Puts k in force (takes ownership) and frees the keys it replaces. Loop thread only. */
void api_state_set_keys(struct api_state *a, struct auth_keys *k);

/* The admit functions (http_admit_fn) of the keyed routes, one per permission a route needs
 * (api_admit: any valid key, no permission): the core calls it on the request head, before any
 * "100 Continue" and before a body byte is read. Returns 0, or 503 when the server has no Redis
 * services or cannot confirm access now, 401 without a key (adding WWW-Authenticate: Bearer),
 * 403 with a wrong or expired key, none configured, or a missing permission (named), 429 for a
 * locked-out address (with Retry-After), with the message in *why (access_check). */
int api_admit(struct http_exchange *ex, const char **why);
int api_admit_admin(struct http_exchange *ex, const char **why);         /* AdministerSystem */
int api_admit_task_view(struct http_exchange *ex, const char **why);     /* TaskView */
int api_admit_task_create(struct http_exchange *ex, const char **why);   /* TaskCreate */
int api_admit_task_cancel(struct http_exchange *ex, const char **why);   /* TaskCancel */
int api_admit_event_view(struct http_exchange *ex, const char **why);    /* EventView */
int api_admit_feed_view(struct http_exchange *ex, const char **why);     /* FeedView */
int api_admit_feed_push(struct http_exchange *ex, const char **why);     /* BuiltInFeedPush */
int api_admit_feed_download(struct http_exchange *ex, const char **why); /* ...Download */
int api_admit_feed_admin(struct http_exchange *ex, const char **why);    /* ...Administer */

/* The gate of every keyed handler: returns the services when ex may proceed with perm
 * (PERM_NONE: any valid key). Otherwise answers ex as the admit function decides and returns
 * NULL; ex must then not be used. The core has admitted ex already on a keyed row; checking
 * again keeps a row added without its admit function closed, and judges a buffered body's
 * request with the access in force when its body is in. api_begin_who also says who it is
 * (for the audit trail). */
const struct node_services *api_begin(struct http_exchange *ex, enum access_perm perm);
const struct node_services *api_begin_who(struct http_exchange *ex, enum access_perm perm,
                                          struct access_actor *who);

/* Appends an event to the audit trail ({NS}:events, trimmed to the retention), after the
 * change it records was made; fire and forget (a lost event is logged at warn). */
void api_audit(const struct node_services *svc, const struct access_actor *who,
               const char *category, const char *message, const char *related, const char *before,
               const char *after);

/* Answers with b as application/json. */
void api_respond_json(struct http_exchange *ex, int status, const struct buf *b);

/* For a reply callback: when r is NULL (503, connection lost) or an error reply (500, or the
 * status of its code in codes: {"NONODE", 404}, ... terminated by {NULL, 0}), answers ex and
 * returns true. The message is the error's text after its code word. */
struct api_error_code {
    const char *code;
    int status;
};
bool api_reply_failed(struct http_exchange *ex, const redisReply *r,
                      const struct api_error_code *codes);

/* Sends a command or script and answers 503 when the connection is down. Returns 0 when cb
 * will run, -1 when ex was answered (cb will not run; free what priv owns). */
int api_send(struct http_exchange *ex, const struct node_services *svc, rconn_reply_cb cb,
             void *priv, int argc, const char **argv, const size_t *lens);
int api_call(struct http_exchange *ex, const struct node_services *svc,
             const struct script_call *call, rconn_reply_cb cb, void *priv);

/* --- query strings ("a=1&b=x%2Cy") --- */

/* The first value of name, percent-decoded (and '+' as space) into out. False when absent. */
bool api_query_get(const char *query, const char *name, char *out, size_t len);
/* An integer parameter in [min, max], def when absent. Returns 0, or answers 400 naming the
 * parameter and returns -1 (ex must then not be used). */
int api_query_int(struct http_exchange *ex, const char *name, int64_t def, int64_t min, int64_t max,
                  int64_t *out);

/* --- nodes --- */

/* "OctopusServerNodes-vm" or "vm" -> "vm". False (name untouched) when it is no valid name. */
bool api_node_name(const char *id, char *name, size_t len);
/* A node as Octopus shows it: Id, Name, LastSeen, IsOffline, MaxConcurrentTasks,
 * IsInMaintenanceMode, RunningTaskCount, plus shoal's Status and Version, and Links (Self,
 * Node, Details). The same object serves the collection, /all, /{id} and /summary. */
void api_node_json(struct json *j, const struct node_info *n);

/* --- tasks --- */

/* A task as Octopus's TaskResource shows it (Id, State, ServerNode, QueueTime, ...). now_ms
 * gives a running task's Duration. */
void api_task_json(struct json *j, const struct shoal_task *t, int64_t now_ms);

/* The most candidate tasks one list_tasks.lua call looks at (its scan limit): 2,000 is about
 * 2.6 ms of Redis when none match (10,000 was 14.6 ms; the bound of a call is 5 ms). */
#define API_SCAN_LIMIT 2000
/* Checks list_tasks.lua's reply shape: {total, truncated, {id, field, value...}...}. */
bool api_list_reply_ok(const redisReply *r);

/* --- collections (Octopus's ResourceCollection) --- */

/* Opens {"ItemType":type, "TotalResults", "ItemsPerPage", "NumberOfPages", "LastPageNumber",
 * "Items": [ ; the caller writes the items, then api_collection_close. */
void api_collection_open(struct json *j, const char *type, int64_t total, int64_t take);
/* Closes Items and writes Links (Self, Template, Page.All, Page.Current, Page.Last, and
 * Page.Next when there is one) for path ("/api/octopusservernodes") and the page. */
void api_collection_close(struct json *j, const char *path, const char *template_q, int64_t skip,
                          int64_t take, int64_t total);

/* --- spaces (api_octopus.c) --- */

/* A space as Octopus's SpaceResource shows it (Spaces-1 is "Default"). */
void api_space_json(struct json *j, const char *id);
/* Answers 404 in Octopus's shape: no such space. */
void api_unknown_space(struct http_exchange *ex, const char *id);
/* For routes served both as /api/tasks... and /api/{space}/tasks...: true with *first the index
 * of the route's first own parameter (0 unscoped, 1 scoped); false when the space is not
 * Spaces-1 (ex answered 404, must not be used). */
bool api_space_scope(struct http_exchange *ex, unsigned *first);

/* Route tables of the API modules (routes.c joins them). */
extern const struct http_route api_node_routes[];
extern const size_t api_node_nroutes;
extern const struct http_route api_task_routes[];
extern const size_t api_task_nroutes;
extern const struct http_route api_octopus_routes[];
extern const size_t api_octopus_nroutes;
extern const struct http_route api_user_routes[];
extern const size_t api_user_nroutes;
extern const struct http_route metrics_routes[];
extern const size_t metrics_nroutes;

/* The metrics cache (metrics.c). */
struct metrics_cache *metrics_cache_new(void);
void metrics_cache_free(struct metrics_cache *m);

#endif
