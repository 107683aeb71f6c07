/* reload.c: SIGHUP re-reads the API key file (--api-key-file) while the node keeps running.
 * The keys of --api-key / SHOAL_API_KEY are fixed at start-up and kept; the file's keys are
 * replaced by what it holds now. The file is read on libuv's thread pool (a file read has no
 * place on the loop), into a new key set the loop then puts in force: requests never see half
 * a file. A file that fails to load (unreadable, no key, a key too short) leaves the keys in
 * force untouched and says why at error level. Logs give the count of keys, never a key. A
 * SIGHUP while a reload runs asks for one more once it is done. */
#include <stdlib.h>

#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/worker.h"

static void reload_start(struct worker *w);

static void reload_work_cb(uv_work_t *req) {
    struct worker *w = req->data;
    w->reload.rc = auth_keys_add_file(w->reload.next, w->cfg.api_key_file, w->reload.err,
                                      sizeof w->reload.err);
}

static void reload_done_cb(uv_work_t *req, int status) {
    struct worker *w = req->data;
    struct auth_keys *next = w->reload.next;
    char q[600];
    w->reload.next = NULL;
    w->reload.running = false;
    if (status != 0 || w->reload.rc != 0) {
        log_error("API key reload failed; the keys in force stay", " err=%s keys=%zu",
                  log_q(q, sizeof q, status ? uv_strerror(status) : w->reload.err),
                  auth_keys_count(w->services.api->keys));
        auth_keys_free(next);
    } else {
        log_info("API keys reloaded", " keys=%zu file=%s", auth_keys_count(next),
                 log_q(q, sizeof q, w->cfg.api_key_file));
        api_state_set_keys(w->services.api, next);
    }
    if (w->reload.again && !w->shutting_down) {
        w->reload.again = false;
        reload_start(w);
    }
}

static void reload_start(struct worker *w) {
    if (w->reload.running) {
        w->reload.again = true;
        return;
    }
    w->reload.next = auth_keys_fixed(w->services.api->keys);
    w->reload.work.data = w;
    w->reload.running = true;
    int rc = uv_queue_work(&w->loop, &w->reload.work, reload_work_cb, reload_done_cb);
    if (rc != 0) {
        w->reload.running = false;
        auth_keys_free(w->reload.next);
        w->reload.next = NULL;
        log_error("API key reload failed; the keys in force stay", " err=%s", uv_strerror(rc));
    }
}

static void sighup_cb(uv_signal_t *s, int signum) {
    struct worker *w = s->data;
    if (!w->cfg.api_key_file || !w->cfg.api_key_file[0]) {
        log_warn("SIGHUP: no --api-key-file to reload; the API keys stay as they are", " keys=%zu",
                 auth_keys_count(w->services.api ? w->services.api->keys : NULL));
        return;
    }
    if (!w->services.api || w->shutting_down) return;
    log_info("SIGHUP: reloading the API key file", NULL);
    reload_start(w);
}

void reload_init(struct worker *w) {
    uv_signal_init(&w->loop, &w->reload.sighup);
    w->reload.sighup.data = w;
    uv_signal_start(&w->reload.sighup, sighup_cb, SIGHUP);
}
