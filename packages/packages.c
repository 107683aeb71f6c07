/* packages.c: the package feed's read side and deletes: GET /api/{space}/packages (filter,
 * skip, take), GET .../packages/{id}, GET .../packages/{id}/raw (the file, streamed from disk
 * in constant memory), DELETE .../packages/{id}; the per-package lock and the package JSON that
 * uploads share (packages_int.h); and the start-up sweep of crashed uploads' temporary files.
 *
 * Every Redis call is asynchronous; every file call goes through libuv's thread pool (the
 * start-up sweep excepted, which runs before the loop). {id} is "packages-<PackageId>.<Version>"
 * (Octopus's Id) or "<PackageId>.<Version>". */
#include "packages/packages.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rconn.h"
#include "common/util.h"
#include "packages/packages_int.h"

#define READ_PIECE (256u << 10) /* a download reads the file this much at a time */
#define ORPHAN_AGE_S 3600       /* another node's temp file untouched this long is an orphan */

/* ---- shared ---- */

void pkg_ref_init(struct pkg_ref *r, const struct node_services *svc, const char *space,
                  const struct package_name *n) {
    r->keys = svc->keys;
    snprintf(r->space, sizeof r->space, "%s", space);
    r->name = *n;
    package_key(n, r->key, sizeof r->key);
    keys_package(svc->keys, space, n, r->hash_key, sizeof r->hash_key);
    keys_package_lock(svc->keys, space, n, r->lock_key, sizeof r->lock_key);
}

static int64_t field_int(const redisReply *r, size_t from, const char *name) {
    const char *v = reply_field(r, from, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

void pkg_json(struct json *j, const redisReply *r, size_t from) {
    const char *space = reply_field(r, from, "space"), *id = reply_field(r, from, "id");
    char link[512];
    json_obj_open(j);
    json_key(j, "Id");
    json_str(j, id);
    json_key(j, "PackageId");
    json_str(j, reply_field(r, from, "package_id"));
    json_key(j, "Version");
    json_str(j, reply_field(r, from, "version"));
    json_key(j, "SpaceId");
    json_str(j, space);
    json_key(j, "FileExtension");
    json_str(j, reply_field(r, from, "ext"));
    json_key(j, "Size");
    json_int(j, field_int(r, from, "size"));
    json_key(j, "PackageSizeBytes");
    json_int(j, field_int(r, from, "size"));
    json_key(j, "Hash");
    json_str(j, reply_field(r, from, "hash"));
    json_key(j, "Published");
    json_time(j, field_int(r, from, "published"));
    json_key(j, "UploadedBy");
    json_str(j, reply_field(r, from, "node"));
    json_key(j, "Links");
    json_obj_open(j);
    snprintf(link, sizeof link, "/api/%s/packages/%s", space ? space : "", id ? id : "");
    json_key(j, "Self");
    json_str(j, link);
    snprintf(link, sizeof link, "/api/%s/packages/%s/raw", space ? space : "", id ? id : "");
    json_key(j, "Raw");
    json_str(j, link);
    json_obj_close(j);
    json_obj_close(j);
}

/* ---- the per-package lock ---- */

static void lock_try(struct pkg_lock *l);

static void lock_timer_cb(uv_timer_t *t) { lock_try(container_of(t, struct pkg_lock, timer)); }

static void lock_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct pkg_lock *l = priv;
    if (!r) {
        l->done(l, SHOAL_EREDIS);
        return;
    }
    if (r->type == REDIS_REPLY_STATUS) { /* OK: ours */
        l->held = true;
        l->done(l, 0);
        return;
    }
    if (r->type != REDIS_REPLY_NIL) {
        l->done(l, SHOAL_EREPLY);
        return;
    }
    uv_loop_t *loop = l->timer.loop;
    if (uv_now(loop) >= l->deadline_ms) {
        l->done(l, SHOAL_ETIMEOUT);
        return;
    }
    uv_timer_start(&l->timer, lock_timer_cb, 20, 0); /* another commit takes milliseconds */
}

static void lock_try(struct pkg_lock *l) {
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%d", PKG_LOCK_TTL_MS);
    const char *argv[] = {"SET", l->key, l->token, "NX", "PX", ttl};
    if (rconn_command(l->redis, lock_reply_cb, l, 6, argv, NULL) != 0) l->done(l, SHOAL_EREDIS);
}

void pkg_random_hex(char *out, size_t bytes) {
    unsigned char raw[32];
    if (bytes > sizeof raw) bytes = sizeof raw;
    if (uv_random(NULL, NULL, raw, bytes, 0, NULL) != 0) { /* never seen; still unique enough */
        uint64_t x = clock_mono_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < bytes; i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
            raw[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < bytes; i++) sprintf(out + 2 * i, "%02x", raw[i]);
}

void pkg_lock_acquire(struct pkg_lock *l, uv_loop_t *loop, struct rconn *redis, const char *key,
                      void (*done)(struct pkg_lock *l, int err)) {
    l->redis = redis;
    l->key = key;
    l->done = done;
    l->held = false;
    pkg_random_hex(l->token, 16);
    if (!l->timer_open) {
        uv_timer_init(loop, &l->timer);
        l->timer_open = true;
    }
    l->deadline_ms = uv_now(loop) + PKG_LOCK_WAIT_MS;
    uv_timer_start(&l->timer, lock_timer_cb, 0, 0); /* done never runs inside acquire */
}

static void unlock_reply_cb(struct rconn *rc, redisReply *r, void *priv) {}

void pkg_lock_release(struct pkg_lock *l, const struct pkg_ref *r) {
    if (!l->held) return;
    l->held = false;
    struct script_call call;
    call_package_unlock(&call, r->keys, r->space, &r->name, l->token);
    (void)rconn_call(l->redis, &call, unlock_reply_cb, NULL);
    call_free(&call);
}

static void lock_closed_cb(uv_handle_t *h) {
    struct pkg_lock *l = container_of((uv_timer_t *)h, struct pkg_lock, timer);
    void (*closed)(struct pkg_lock *) = (void (*)(struct pkg_lock *))h->data;
    closed(l);
}

void pkg_lock_close(struct pkg_lock *l, void (*closed)(struct pkg_lock *l)) {
    if (!l->timer_open) {
        closed(l);
        return;
    }
    l->timer_open = false;
    l->timer.data = (void *)closed;
    uv_close((uv_handle_t *)&l->timer, lock_closed_cb);
}

/* ---- request helpers ---- */

/* The package a path names, from {space} and {id}; answers 400 and returns false when either
 * is malformed (ex must then not be used). */
static bool parse_ref(struct http_exchange *ex, const struct node_services *svc,
                      struct pkg_ref *r) {
    char err[256];
    struct package_name n;
    const char *space = http_param(ex, 0), *id = http_param(ex, 1);
    if (!package_space_valid(space)) {
        http_respond_error(ex, 400, "the space must be 1-64 of A-Z a-z 0-9 _ - (e.g. Spaces-1)");
        return false;
    }
    if (package_key_parse(id, &n, err, sizeof err) != 0) {
        http_respond_error(ex, 404, err);
        return false;
    }
    pkg_ref_init(r, svc, space, &n);
    return true;
}

/* ---- GET /api/{space}/packages ---- */

struct list_req {
    struct http_exchange *ex;
    char space[PACKAGE_SPACE_MAX + 1];
    char filter[128];
    char nuget[PACKAGE_ID_MAX + 1]; /* nuGetPackageId, or "" */
    bool latest;
    int64_t skip, take;
};

static void list_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct list_req *q = priv;
    struct http_exchange *ex = q->ex;
    if (!api_reply_failed(ex, r, NULL)) {
        bool ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
                  r->element[0]->type == REDIS_REPLY_INTEGER;
        if (!ok) {
            http_respond_error(ex, 500, "unexpected reply from package_list.lua");
        } else {
            struct buf b;
            struct json j;
            char path[128], tmpl[160];
            buf_init(&b);
            json_init(&j, &b);
            api_collection_open(&j, "Package", r->element[0]->integer, q->take);
            for (size_t i = 2; i < r->elements; i++)
                if (r->element[i]->type == REDIS_REPLY_ARRAY) pkg_json(&j, r->element[i], 0);
            snprintf(path, sizeof path, "/api/%s/packages", q->space);
            snprintf(tmpl, sizeof tmpl, "{?nuGetPackageId,filter,latest,skip,take}");
            api_collection_close(&j, path, tmpl, q->skip, q->take, r->element[0]->integer);
            api_respond_json(ex, 200, &b);
            buf_free(&b);
        }
    }
    free(q);
}

static void list_cb(struct http_exchange *ex) {
    const struct node_services *svc = api_begin(ex, PERM_FEED_VIEW);
    if (!svc) return;
    const char *space = http_param(ex, 0);
    if (!package_space_valid(space)) {
        http_respond_error(ex, 400, "the space must be 1-64 of A-Z a-z 0-9 _ - (e.g. Spaces-1)");
        return;
    }
    struct list_req *q = xcalloc(1, sizeof *q);
    q->ex = ex;
    snprintf(q->space, sizeof q->space, "%s", space);
    if (!api_query_get(http_query(ex), "filter", q->filter, sizeof q->filter)) q->filter[0] = '\0';
    if (!api_query_get(http_query(ex), "nuGetPackageId", q->nuget, sizeof q->nuget))
        q->nuget[0] = '\0';
    char latest[8] = "";
    api_query_get(http_query(ex), "latest", latest, sizeof latest);
    q->latest = strcasecmp(latest, "true") == 0;
    if (api_query_int(ex, "skip", 0, 0, INT32_MAX, &q->skip) ||
        api_query_int(ex, "take", API_TAKE_DEFAULT, 0, API_TAKE_MAX, &q->take)) {
        free(q);
        return;
    }
    struct script_call call;
    struct call_package_list_args a = {q->filter, q->skip,   q->take,
                                       q->nuget,  q->latest, API_SCAN_LIMIT};
    call_package_list(&call, svc->keys, space, &a);
    if (api_call(ex, svc, &call, list_reply_cb, q) != 0) free(q);
    call_free(&call);
}

/* ---- GET /api/{space}/packages/{id} ---- */

static void get_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct http_exchange *ex = priv;
    if (api_reply_failed(ex, r, NULL)) return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        http_respond_error(ex, 404, "no such package in this space");
        return;
    }
    struct buf b;
    struct json j;
    buf_init(&b);
    json_init(&j, &b);
    pkg_json(&j, r, 0);
    api_respond_json(ex, 200, &b);
    buf_free(&b);
}

static void get_cb(struct http_exchange *ex) {
    struct pkg_ref ref;
    const struct node_services *svc = api_begin(ex, PERM_FEED_VIEW);
    if (!svc || !parse_ref(ex, svc, &ref)) return;
    const char *argv[] = {"HGETALL", ref.hash_key};
    (void)api_send(ex, svc, get_reply_cb, ex, 2, argv, NULL);
}

/* ---- GET /api/{space}/packages/{id}/raw: the file, streamed ---- */

struct download {
    struct http_exchange *ex; /* with us until http_respond_stream, then the core's */
    const struct node_services *svc;
    uv_loop_t *loop;
    uv_fs_t req;     /* one file operation at a time */
    uv_file fd;      /* -1 until opened */
    uint64_t size;   /* from fstat of the open file */
    uint64_t offset; /* next byte to read */
    char *piece;     /* the read in flight, handed to the core when done */
    char path[PATH_MAX];
    char filename[256]; /* for Content-Disposition */
};

static void dl_free_cb(uv_fs_t *req) {
    struct download *d = container_of(req, struct download, req);
    uv_fs_req_cleanup(req);
    free(d);
}

/* Closes the file (if open) and frees d. */
static void dl_finish(struct download *d) {
    if (d->fd < 0 || uv_fs_close(d->loop, &d->req, d->fd, dl_free_cb) != 0) free(d);
}

static void dl_read_cb(uv_fs_t *req) {
    struct download *d = container_of(req, struct download, req);
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    char *piece = d->piece;
    d->piece = NULL;
    if (n <= 0) { /* an error, or the file shrank under us: the client sees a short body */
        free(piece);
        log_warn("package download failed", " path=%s err=%s", d->path,
                 n < 0 ? uv_strerror((int)n) : "file shorter than at open");
        http_stream_fail(d->ex, n < 0 ? (int)n : UV_EIO);
        return;
    }
    d->offset += (uint64_t)n;
    http_stream_send(d->ex, piece, (size_t)n);
}

static void dl_pull(struct http_exchange *ex, void *arg) {
    struct download *d = arg;
    uint64_t left = d->size - d->offset;
    size_t want = left < READ_PIECE ? (size_t)left : READ_PIECE;
    d->piece = xmalloc(want);
    uv_buf_t b = uv_buf_init(d->piece, (unsigned)want);
    int err = uv_fs_read(d->loop, &d->req, d->fd, &b, 1, (int64_t)d->offset, dl_read_cb);
    if (err) {
        free(d->piece);
        d->piece = NULL;
        http_stream_fail(ex, err);
    }
}

static void dl_end(void *arg, int err) { dl_finish(arg); }

static const struct http_source dl_source = {dl_pull, dl_end};

static void dl_stat_cb(uv_fs_t *req) {
    struct download *d = container_of(req, struct download, req);
    int err = (int)req->result;
    uint64_t size = req->statbuf.st_size;
    uv_fs_req_cleanup(req);
    if (err < 0) {
        http_respond_error(d->ex, 500, "the package file cannot be read");
        dl_finish(d);
        return;
    }
    char disp[320];
    d->size = size;
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", d->filename);
    http_add_header(d->ex, "Content-Disposition", disp);
    http_respond_stream(d->ex, 200, "application/octet-stream", size, &dl_source, d);
}

static void dl_open_cb(uv_fs_t *req) {
    struct download *d = container_of(req, struct download, req);
    int fd = (int)req->result;
    uv_fs_req_cleanup(req);
    if (fd < 0) {
        log_warn("package file missing", " path=%s err=%s", d->path, uv_strerror(fd));
        http_respond_error(d->ex, fd == UV_ENOENT ? 404 : 500,
                           fd == UV_ENOENT ? "the package is recorded but its file is missing"
                                           : "the package file cannot be opened");
        free(d);
        return;
    }
    d->fd = fd;
    if (uv_fs_fstat(d->loop, &d->req, fd, dl_stat_cb) != 0) {
        http_respond_error(d->ex, 500, "the package file cannot be read");
        dl_finish(d);
    }
}

static void dl_reply_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct download *d = priv;
    if (api_reply_failed(d->ex, r, NULL)) {
        free(d);
        return;
    }
    const char *file = r->type == REDIS_REPLY_ARRAY ? reply_field(r, 0, "file") : NULL;
    const char *id = reply_field(r, 0, "package_id"), *ver = reply_field(r, 0, "version");
    const char *ext = reply_field(r, 0, "ext");
    if (!file || !id || !ver || strstr(file, "..")) {
        http_respond_error(d->ex, 404, "no such package in this space");
        free(d);
        return;
    }
    snprintf(d->path, sizeof d->path, "%s/%s", d->svc->cfg->package_dir, file);
    snprintf(d->filename, sizeof d->filename, "%s.%s%s", id, ver, ext ? ext : "");
    if (uv_fs_open(d->loop, &d->req, d->path, O_RDONLY | O_CLOEXEC, 0, dl_open_cb) != 0) {
        http_respond_error(d->ex, 500, "the package file cannot be opened");
        free(d);
    }
}

static void download_cb(struct http_exchange *ex) {
    struct pkg_ref ref;
    const struct node_services *svc = api_begin(ex, PERM_BUILTIN_FEED_DOWNLOAD);
    if (!svc || !parse_ref(ex, svc, &ref)) return;
    if (!http_site_of(ex)->loop) {
        http_respond_error(ex, 503, "downloads need the node's event loop");
        return;
    }
    struct download *d = xcalloc(1, sizeof *d);
    d->ex = ex;
    d->svc = svc;
    d->loop = http_site_of(ex)->loop;
    d->fd = -1;
    const char *argv[] = {"HGETALL", ref.hash_key};
    if (api_send(ex, svc, dl_reply_cb, d, 2, argv, NULL) != 0) free(d);
}

/* ---- DELETE /api/{space}/packages/{id} ---- */

/* Under the lock: read the file name, unlink the file, then drop the metadata (so no moment
 * shows metadata for a file another commit is putting in place). */
struct removal {
    struct http_exchange *ex;
    const struct node_services *svc;
    uv_loop_t *loop;
    struct pkg_ref ref;
    struct pkg_lock lock;
    uv_fs_t req;
    char path[PATH_MAX];
    int status; /* the answer, once decided */
    char msg[160];
    struct access_actor who; /* who asked (the audit trail) */
};

static void rm_closed(struct pkg_lock *l) {
    struct removal *m = container_of(l, struct removal, lock);
    if (m->status == 204)
        http_respond(m->ex, 204, NULL, NULL, 0);
    else
        http_respond_error(m->ex, m->status, m->msg);
    free(m);
}

static void rm_answer(struct removal *m, int status, const char *msg) {
    m->status = status;
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    pkg_lock_release(&m->lock, &m->ref);
    pkg_lock_close(&m->lock, rm_closed);
}

static void rm_script_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct removal *m = priv;
    m->lock.held = false; /* the script released it (or the link is gone) */
    if (!r)
        rm_answer(
            m, 503,
            "Redis connection lost while deleting; the file is gone, the metadata may remain");
    else if (r->type == REDIS_REPLY_ERROR)
        rm_answer(m, 500, r->str);
    else {
        char msg[400];
        snprintf(msg, sizeof msg, "Package %s deleted from %s", m->ref.key, m->ref.space);
        api_audit(m->svc, &m->who, "Deleted", msg, m->ref.key, m->ref.key, NULL);
        rm_answer(m, 204, "");
    }
}

static void rm_unlink_cb(uv_fs_t *req) {
    struct removal *m = container_of(req, struct removal, req);
    int err = (int)req->result;
    uv_fs_req_cleanup(req);
    if (err < 0 && err != UV_ENOENT) {
        log_warn("package delete failed", " path=%s err=%s", m->path, uv_strerror(err));
        rm_answer(m, 500, "the package file cannot be removed");
        return;
    }
    struct script_call call;
    call_package_delete(&call, m->ref.keys, m->ref.space, &m->ref.name, m->lock.token);
    if (rconn_call(m->svc->redis, &call, rm_script_cb, m) != 0)
        rm_answer(m, 503, "Redis is unreachable from this node; try again");
    call_free(&call);
}

static void rm_file_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct removal *m = priv;
    if (!r) {
        rm_answer(m, 503, "Redis connection lost; try again");
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        rm_answer(m, 404, "no such package in this space");
        return;
    }
    snprintf(m->path, sizeof m->path, "%s/%s", m->svc->cfg->package_dir, r->str);
    if (strstr(r->str, "..") || uv_fs_unlink(m->loop, &m->req, m->path, rm_unlink_cb) != 0)
        rm_answer(m, 500, "the package file cannot be removed");
}

static void rm_locked(struct pkg_lock *l, int err) {
    struct removal *m = container_of(l, struct removal, lock);
    if (err) {
        rm_answer(m, err == SHOAL_ETIMEOUT ? 409 : 503,
                  err == SHOAL_ETIMEOUT ? "the package is being uploaded or deleted; try again"
                                        : "Redis is unreachable from this node; try again");
        return;
    }
    const char *argv[] = {"HGET", m->ref.hash_key, "file"};
    if (rconn_command(m->svc->redis, rm_file_cb, m, 3, argv, NULL) != 0)
        rm_answer(m, 503, "Redis is unreachable from this node; try again");
}

static void delete_cb(struct http_exchange *ex) {
    struct pkg_ref ref;
    struct access_actor who;
    const struct node_services *svc = api_begin_who(ex, PERM_BUILTIN_FEED_ADMINISTER, &who);
    if (!svc || !parse_ref(ex, svc, &ref)) return;
    uv_loop_t *loop = http_site_of(ex)->loop;
    if (!loop) {
        http_respond_error(ex, 503, "deletes need the node's event loop");
        return;
    }
    struct removal *m = xcalloc(1, sizeof *m);
    m->ex = ex;
    m->svc = svc;
    m->loop = loop;
    m->ref = ref;
    m->who = who;
    pkg_lock_acquire(&m->lock, loop, svc->redis, m->ref.lock_key, rm_locked);
}

/* ---- start-up ---- */

static bool is_temp(const char *name) {
    size_t n = strlen(name);
    return strncmp(name, ".upload-", 8) == 0 && n > 12 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Removes the orphaned temp files of one space directory; returns how many. */
static int clean_space(const char *dir, const char *node, time_t now) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char mine[128], path[PATH_MAX];
    int removed = 0;
    snprintf(mine, sizeof mine, ".upload-%s-", node);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_temp(e->d_name)) continue;
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        bool own = strncmp(e->d_name, mine, strlen(mine)) == 0;
        if (!own && now - st.st_mtime < ORPHAN_AGE_S) continue;
        if (unlink(path) == 0)
            removed++;
        else
            log_warn("cannot remove a crashed upload's file", " path=%s err=%s", path,
                     strerror(errno));
    }
    closedir(d);
    return removed;
}

int packages_startup_clean(const char *dir, const char *node) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int err = -errno;
        log_error("cannot create the package directory", " dir=%s err=%s", dir, strerror(errno));
        return err;
    }
    DIR *d = opendir(dir);
    if (!d) {
        int err = -errno;
        log_error("cannot read the package directory", " dir=%s err=%s", dir, strerror(errno));
        return err;
    }
    char path[PATH_MAX];
    int removed = 0;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || !package_space_valid(e->d_name)) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        removed += clean_space(path, node, now);
    }
    closedir(d);
    if (removed) log_info("removed files of interrupted uploads", " dir=%s count=%d", dir, removed);
    return removed;
}

const struct http_route package_routes[] = {
    {HTTP_POST, "/api/{space}/packages/raw", pkg_upload_cb, HTTP_BODY_STREAM, api_admit_feed_push},
    {HTTP_POST, "/api/packages/raw", pkg_upload_cb, HTTP_BODY_STREAM, api_admit_feed_push},
    {HTTP_GET, "/api/{space}/packages", list_cb, HTTP_BODY_NONE, api_admit_feed_view},
    {HTTP_GET, "/api/{space}/packages/{id}", get_cb, HTTP_BODY_NONE, api_admit_feed_view},
    {HTTP_GET, "/api/{space}/packages/{id}/raw", download_cb, HTTP_BODY_NONE,
     api_admit_feed_download},
    {HTTP_DELETE, "/api/{space}/packages/{id}", delete_cb, HTTP_BODY_NONE, api_admit_feed_admin},
};
const size_t package_nroutes = ARRAY_SIZE(package_routes);
