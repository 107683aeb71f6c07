/* worker.h: the node process (`shoal worker`): its parts and how they are wired. main.c builds
 * one struct worker; shutdown.c takes it down on SIGTERM/SIGINT or a fatal condition; reload.c
 * re-reads the API key file on SIGHUP. */
#ifndef SHOAL_WORKER_H
#define SHOAL_WORKER_H

#include <stdbool.h>
#include <uv.h>

#include "common/config.h"
#include "common/services.h"
#include "http/server.h"
#include "worker/claim.h"
#include "worker/handler.h"
#include "worker/node.h"

struct worker {
    uv_loop_t loop;
    struct shoal_config cfg;       /* owned; freed at exit */
    struct node node;              /* membership, heartbeat, cap and drain */
    struct http_server *http;      /* ping, healthz, the API */
    struct http_route *routes;     /* owned: the server's route table (worker/routes.c) */
    char http_headers[96];         /* "Octopus-Node: <name>\r\n", on every answer */
    struct node_services services; /* what the HTTP routes use (filled before the loop runs) */
    struct claimer *claimer;       /* claims, runs and reports tasks */
    const struct shoal_handlers *handlers; /* custom C handlers, borrowed (may be NULL) */
    uv_signal_t sigterm, sigint;           /* shutdown triggers */
    struct {                               /* SIGHUP: re-reading the API key file (reload.c) */
        uv_signal_t sighup;
        uv_work_t work;         /* reads the file on the thread pool */
        struct auth_keys *next; /* owned while running: the set being loaded */
        int rc;                 /* its result, and the message when not 0 */
        char err[512];
        bool running; /* work queued, its done callback not yet run */
        bool again;   /* a SIGHUP came meanwhile: reload once more */
    } reload;
    uv_timer_t grace;   /* running tasks' time to finish after SIGTERM, then the
                                   * bound on reporting the interrupted ones */
    int signals;        /* shutdown signals received */
    bool interrupted;   /* running tasks were stopped (grace over or second signal) */
    bool shutting_down; /* shutdown begun */
    int exit_code;      /* process exit code */
    int open_parts;     /* parts still closing at exit */
};

/* Entry point of `shoal worker`: argv[0] is "worker". Returns the exit code. */
int worker_main(int argc, char **argv);

/* Installs the signal handlers (shutdown.c). */
void shutdown_init(struct worker *w);
/* Installs the SIGHUP handler that reloads the API key file (reload.c); shutdown closes it. */
void reload_init(struct worker *w);
/* Begins a shutdown: ping turns 418 at once, no new work, running tasks get the grace period,
 * the node deregisters, everything closes, and uv_run returns. exit_code is recorded. */
void shutdown_begin(struct worker *w, const char *why, int exit_code);

#endif
