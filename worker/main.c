/* main.c: `shoal worker`: wires settings, the node, the HTTP server and shutdown together.
 * Start-up errors (bad settings, address in use) exit here with a clear line; afterwards the
 * process only exits through shutdown.c. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/api.h"
#include "common/bgq.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rurl.h"
#include "common/tls.h"
#include "common/util.h"
#include "packages/packages.h"
#include "worker/exec.h"
#include "worker/routes.h"
#include "worker/worker.h"

/* Background threads for uploads (per upload at most one hashing, two writing). Hashing, the
 * CPU an upload costs, runs under SCHED_IDLE: it takes only what the loop and the tasks leave
 * (a slower upload while tasks fill every core). Writes enter the file system and may hold its
 * locks, so they run at the lowest normal priority instead (docs/benchmarks.md, "What shaped
 * the upload path", compares the priorities). */
#define BG_CPU_THREADS 2
#define BG_IO_THREADS 3
#define BG_IO_NICE 19

/* Descriptors kept free of HTTP connections: Redis links, the loop's own, logs, the
 * background queues, plus per task (its pipes and process handle) and per upload (its file). */
#define FD_RESERVE_BASE 64
#define FD_RESERVE_PER_TASK 4
#define FD_RESERVE_PER_UPLOAD 4

/* Every HTTP connection holds a descriptor: raises the soft open-file limit to the hard one,
 * then lowers --http-max-connections (in cfg, so the start-up line shows it) when it and the
 * reserve would not fit, so that refusing at the cap happens before accept() runs out. */
static void fit_file_limit(struct shoal_config *cfg) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            log_info("open-file limit not raised", " soft=%llu hard=%llu err=\"%s\"",
                     (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = was;
        }
    }
    if (rl.rlim_cur == RLIM_INFINITY) return;
    uint64_t reserve = FD_RESERVE_BASE + FD_RESERVE_PER_TASK * (uint64_t)cfg->cap +
                       FD_RESERVE_PER_UPLOAD * (uint64_t)cfg->http_max_uploads;
    uint64_t limit = rl.rlim_cur;
    if ((uint64_t)cfg->http_max_conns + reserve <= limit) return;
    int64_t fit = limit > reserve + 16 ? (int64_t)(limit - reserve) : 16;
    log_warn("http connection cap lowered to fit the open-file limit",
             " max_connections=%lld was=%lld nofile=%llu reserve=%llu", (long long)fit,
             (long long)cfg->http_max_conns, (unsigned long long)limit,
             (unsigned long long)reserve);
    cfg->http_max_conns = fit;
}

static void usage(FILE *out) {
    fprintf(out,
            "Usage: shoal worker [flags]\n\n"
            "Runs a node: registers it in Redis under its name, keeps its heartbeat, applies its\n"
            "task cap and drain as they change, and answers ping on --listen.\n"
            "SIGTERM/SIGINT drain the node and exit 0; a second signal stops at once.\n"
            "SIGHUP re-reads --api-key-file (the node keeps running).\n\n");
    config_usage(out, SCOPE_WORKER);
}

static void event_cb(struct node *n, enum node_event ev, const char *arg) {
    struct worker *w = container_of(n, struct worker, node);
    claimer_on_event(w->claimer, ev, arg);
}

static void fatal_cb(struct node *n, int code, const char *msg) {
    struct worker *w = container_of(n, struct worker, node);
    log_error(msg, NULL);
    shutdown_begin(w, msg, code);
}

int worker_main(int argc, char **argv) { return shoal_worker_main(argc, argv, NULL); }

/* libuv's thread pool (the package feed's file calls, the key file's reads) keeps the size it
 * had when it also ran C handlers (they have their own threads now: worker/runner.c), sized
 * once before its first use. */
static void size_thread_pool(int64_t threads) {
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)threads);
    setenv("UV_THREADPOOL_SIZE", v, 1);
}

static int run_worker(int argc, char **argv, const struct shoal_handlers *handlers) {
    /* A write to a peer that went away (a Redis socket reset, a task's shim killed while we
     * extend its lease) must be an EPIPE error, not a signal that ends the node. libuv resets
     * the disposition in every child it spawns, so programs still get the default. */
    signal(SIGPIPE, SIG_IGN);
    struct worker *w = xcalloc(1, sizeof *w);
    w->handlers = handlers;
    char err[512];
    int rc, rest, code = 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            free(w);
            return 0;
        }
    config_defaults(&w->cfg);
    if (config_parse(&w->cfg, SCOPE_WORKER, argc, argv, &rest, err, sizeof err) != 0)
        goto fail_config;
    if (rest < argc) {
        snprintf(err, sizeof err, "unexpected argument '%s' (see shoal worker --help)", argv[rest]);
        goto fail_config;
    }
    struct rurl url;
    if (rurl_parse_with_password(w->cfg.redis_url, w->cfg.redis_password_file, &url, err,
                                 sizeof err) != 0 ||
        rurl_tls_files(&url, w->cfg.redis_ca, w->cfg.redis_cert, w->cfg.redis_key, err,
                       sizeof err) != 0 ||
        rurl_tls_name(&url, w->cfg.redis_sni, err, sizeof err) != 0)
        goto fail_config;
    if (url.cluster) rurl_cluster_namespace(&url, w->cfg.namespace);
    /* exec tasks go through our own binary's exec-child, so they die with this node. */
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl > 0) self[sl] = '\0';
    /* --exec-user: resolved and tried now (in a forked child, before any thread exists), so a
     * missing account or a node without the right to switch stops start-up, not every task. */
    struct exec_cred cred, *credp = NULL;
    if (w->cfg.exec_user && w->cfg.exec_user[0]) {
        if (sl <= 0) {
            snprintf(err, sizeof err, "--exec-user needs /proc/self/exe (the exec-child shim)");
            goto fail_config;
        }
        if (exec_cred_resolve(w->cfg.exec_user, &cred, err, sizeof err) != 0 ||
            exec_cred_probe(&cred, err, sizeof err) != 0)
            goto fail_config;
        credp = &cred;
    }
    struct api_state *api = NULL; /* API keys (read now: a bad key file stops start-up) */
    if (api_state_new(&w->cfg, &api, err, sizeof err) != 0) goto fail_config;
    log_set_level(w->cfg.log_level);
    log_set_node(w->cfg.name);
    size_thread_pool(w->cfg.handler_threads);
    /* Temp files of uploads a crash cut off (never fatal: uploads would then fail clearly). */
    (void)packages_startup_clean(w->cfg.package_dir, w->cfg.name);

    /* Below: tasks at TASK_NICE with default slices; the loop preempts them when a request
     * comes (docs/benchmarks.md, "Ping with every task slot busy"). */
    if ((rc = thread_short_slices()) != 0)
        log_info("short time slices for the event loop refused", " err=\"%s\"", strerror(-rc));
    uv_loop_init(&w->loop);
    fit_file_limit(&w->cfg);
    /* Background threads below the loop: they read and hash upload bodies, and write them. */
    if ((rc = bgq_new(&w->loop, BG_CPU_THREADS, BGQ_IDLE, &w->services.bg_cpu)) != 0 ||
        (rc = bgq_new(&w->loop, BG_IO_THREADS, BG_IO_NICE, &w->services.bg_io)) != 0)
        log_warn("no background threads: package uploads will answer 503", " err=\"%s\"",
                 uv_strerror(rc));
    w->services.view = &w->node.view; /* w is zeroed: fields not set here stay NULL */
    w->services.keys = &w->node.keys;
    w->services.cfg = &w->cfg;
    w->services.api = api;
    snprintf(w->http_headers, sizeof w->http_headers, "Octopus-Node: %s\r\n", w->cfg.name);
    struct http_site site = {.data = &w->services, .headers = w->http_headers};
    w->routes = node_routes_build(&site.nroutes);
    site.routes = w->routes;
    struct http_server_config pc = {
        .listen = w->cfg.listen,
        .idle_timeout_ms = (uint64_t)w->cfg.http_idle_ms,
        .max_header_bytes = 16384,
        .head_timeout_ms = (uint64_t)w->cfg.http_head_ms,
        .body_timeout_ms = (uint64_t)w->cfg.http_body_ms,
        .max_conns = (unsigned)w->cfg.http_max_conns,
        .max_conns_per_ip = (unsigned)w->cfg.http_max_conns_per_ip,
        .reader = w->services.bg_cpu,
    };
    rc = http_server_new(&w->loop, &pc, &site, &w->http);
    if (rc != 0) {
        snprintf(err, sizeof err, "cannot listen on %s: %s", w->cfg.listen, shoal_strerror(rc));
        goto fail_listen;
    }
    char listen[80], host[64];
    snprintf(host, sizeof host, "%s", w->cfg.listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    snprintf(listen, sizeof listen, "%s:%d", host, http_server_port(w->http));
    node_init(&w->node, &w->loop, &w->cfg, &url, listen, fatal_cb, event_cb);
    w->services.redis = w->node.cmd;
    /* Redis-held users and keys, kept coherent with every node (api/access.h). */
    api->access = access_cache_new(&w->loop, &url, &w->node.keys, &w->cfg, w->node.cmd);
    w->claimer = claimer_new(&w->loop, &w->node, &w->cfg, w->handlers, sl > 0 ? self : NULL, credp);

    char desc[2048];
    config_describe(&w->cfg, SCOPE_WORKER, desc, sizeof desc);
    log_info("starting", " version=%s http=%s%s", SHOAL_VERSION, listen, desc);
    shutdown_init(w);
    reload_init(w);
    node_start(&w->node);
    access_cache_start(api->access);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->services.bg_cpu) bgq_close(w->services.bg_cpu);
    if (w->services.bg_io) bgq_close(w->services.bg_io);
    uv_run(&w->loop, UV_RUN_NOWAIT); /* their handles close */
    tls_bridges_wait(2000);          /* rediss://: the bridges' threads end after their links */
    code = w->exit_code;
    if (uv_loop_close(&w->loop) != 0) log_warn("event loop closed with handles still open", NULL);
    api_state_free(api); /* every reply callback has run by now */
    free(w->routes);
    config_free(&w->cfg);
    free(w);
    return code;

fail_listen:
    if (w->services.bg_cpu) bgq_close(w->services.bg_cpu);
    if (w->services.bg_io) bgq_close(w->services.bg_io);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_loop_close(&w->loop);
    free(w->routes);
    api_state_free(api);
    log_error(err, NULL);
    config_free(&w->cfg);
    free(w);
    return 1;
fail_config:
    fprintf(stderr, "shoal worker: %s\n", err);
    config_free(&w->cfg);
    free(w);
    return 2;
}

int shoal_worker_main(int argc, char **argv, const struct shoal_handlers *handlers) {
    if (argc >= 1 && strcmp(argv[0], "worker") == 0) return run_worker(argc, argv, handlers);
    if (argc >= 1 && strcmp(argv[0], "exec-child") == 0) return exec_child_main(argc, argv);
    fprintf(stderr, "shoal_worker_main: expected argv[0] = \"worker\"\n");
    return 2;
}
