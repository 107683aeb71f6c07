/* services.h: what the node hands its HTTP modules (ping/, api/, packages/) as their context
 * (http_site.data). All of it is common/ types or opaque: the modules never include worker
 * headers, and the HTTP core (http/) never sees this struct. */
#ifndef SHOAL_COMMON_SERVICES_H
#define SHOAL_COMMON_SERVICES_H

#include "common/config.h"
#include "common/keys.h"
#include "common/node_view.h"
#include "common/rconn.h"

struct api_state;
struct bgq;

struct node_services {
    const struct node_view *view;   /* the node as ping shows it (read on the loop) */
    struct rconn *redis;            /* the node's command connection (may be down), or NULL */
    const struct keys *keys;        /* key names of the namespace */
    const struct shoal_config *cfg; /* settings (API keys, package dir, retention, ...) */
    struct api_state *api;          /* API keys and the /metrics cache (api/api.h), or NULL:
                                        * keyed routes then answer 503 */
    struct bgq *bg_cpu;             /* threads below the loop: reading and hashing uploads
                                        * (BGQ_IDLE) */
    struct bgq *bg_io;              /* ... writing them (nice 19); either NULL: uploads
                                        * then answer 503 */
};

#endif
