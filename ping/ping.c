/* ping.c: ping and healthz (see ping.h). Handlers answer from the borrowed node_view,
 * synchronously, without Redis: ping must cost microseconds even when Redis is slow. */
#include "ping/ping.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/services.h"
#include "common/util.h"

int ping_node_json(const struct node_view *v, struct buf *out) {
    static const int status_of[] = {
        [NODE_ONLINE] = 200, [NODE_DRAINING] = 418, [NODE_UNAVAILABLE] = 503};
    const char *why;
    enum node_health h = node_view_health(v, &why);
    struct json j;
    char id[96], self[160];
    snprintf(id, sizeof id, "OctopusServerNodes-%s", v->name);
    snprintf(self, sizeof self, "/api/octopusservernodes/%s", id);
    json_init(&j, out);
    json_obj_open(&j);
    json_key(&j, "Id");
    json_str(&j, id);
    json_key(&j, "Name");
    json_str(&j, v->name);
    json_key(&j, "LastSeen");
    json_time(&j, v->last_seen_ms);
    json_key(&j, "IsOffline");
    json_bool(&j, h == NODE_UNAVAILABLE);
    json_key(&j, "MaxConcurrentTasks");
    json_int(&j, v->cap);
    json_key(&j, "IsInMaintenanceMode");
    json_bool(&j, v->drain || v->stopping);
    json_key(&j, "Version");
    json_str(&j, v->version ? v->version : "");
    json_key(&j, "Links");
    json_obj_open(&j);
    json_key(&j, "Self");
    json_str(&j, self);
    json_key(&j, "Node");
    json_str(&j, self);
    json_obj_close(&j);
    json_key(&j, "Status");
    json_str(&j, why);
    json_obj_close(&j);
    return status_of[h];
}

/* GET|HEAD /api/octopusservernodes/ping: 200 online, 418 draining, 503 unavailable. */
static void ping_cb(struct http_exchange *ex) {
    struct buf b;
    buf_init(&b);
    const struct node_services *svc = http_site_of(ex)->data;
    int status = ping_node_json(svc->view, &b);
    http_respond(ex, status, "application/json", b.data, b.len);
    buf_free(&b);
}

/* GET|HEAD /healthz: the loop answers, so the process is alive, drained or not. */
static void healthz_cb(struct http_exchange *ex) {
    static const char body[] = "{\"status\":\"ok\"}";
    http_respond(ex, 200, "application/json", body, sizeof body - 1);
}

const struct http_route ping_routes[] = {
    {HTTP_GET, "/api/octopusservernodes/ping", ping_cb, HTTP_BODY_NONE, NULL},
    {HTTP_GET, "/healthz", healthz_cb, HTTP_BODY_NONE, NULL},
};
const size_t ping_nroutes = ARRAY_SIZE(ping_routes);
