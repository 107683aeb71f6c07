/* routes.c: the node's route table (see routes.h). A new endpoint is a row in its module's
 * table; a new module is a line here. */
#include "worker/routes.h"

#include "api/api.h"
#include "api/page.h"
#include "common/util.h"
#include "packages/packages.h"
#include "ping/ping.h"

/* The modules, in lookup order (first match wins; specific paths before patterns). */
static const struct {
    const struct http_route *routes;
    const size_t *n;
} modules[] = {
    {ping_routes, &ping_nroutes},         {metrics_routes, &metrics_nroutes},
    {api_node_routes, &api_node_nroutes}, {api_task_routes, &api_task_nroutes},
    {api_user_routes, &api_user_nroutes}, {package_routes, &package_nroutes},
    {page_routes, &page_nroutes},         {api_octopus_routes, &api_octopus_nroutes},
};

struct http_route *node_routes_build(size_t *n) {
    size_t total = 0, at = 0;
    for (size_t i = 0; i < ARRAY_SIZE(modules); i++) total += *modules[i].n;
    struct http_route *all = xcalloc(total, sizeof *all);
    for (size_t i = 0; i < ARRAY_SIZE(modules); i++)
        for (size_t j = 0; j < *modules[i].n; j++) all[at++] = modules[i].routes[j];
    *n = total;
    return all;
}
