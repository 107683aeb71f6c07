/* package_upload.c: POST /api/{space}/packages/raw, streamed to disk in constant memory.
 *
 * Life of an upload (one struct upload, freed after its answer):
 *   head in    auth, space, overwrite mode, file name (raw bodies: ?filename= or
 *              Content-Disposition; multipart: the file part's, known later). A raw body whose
 *              package already exists is refused (400, Octopus's words) before a byte of it is read.
 *   prepare    mkdir <dir>, <dir>/<space>; open <dir>/<space>/.upload-<node>-<token>.tmp
 *              (O_EXCL); then http_body_start(): "100 Continue" goes out now.
 *   body       bytes (multipart: the file part's data) go into UP_BUFS buffers of UP_BUF
 *              bytes. A body with a Content-Length is read into them off the loop, by the
 *              server's background thread (sink_buffer lends the buffer being filled; for
 *              multipart, sink_prepare parses there and packs the file's bytes in place); a
 *              chunked one is read and copied by the loop, which then pauses after UP_BURST
 *              bytes until its next turn, so that a fast client cannot hold it for more than a
 *              fraction of a millisecond: ping is answered in between. Each full buffer is
 *              hashed (SHA-256) and then written at its offset by background threads
 *              (common/bgq.h, below the loop). Backpressure: when no buffer is free the sink
 *              answers "pause", the core stops reading the socket, and the first write to
 *              complete resumes it. Memory per upload is thus UP_BUFS * UP_BUF, whatever the
 *              size.
 *   disk       the file is written with O_DIRECT where the file system takes it (the page
 *              cache's copy and writeback were the bottleneck: docs/benchmarks.md, "Package
 *              uploads"), two writes in flight; the last buffer is padded to whole
 *              blocks and the file cut back to its size before the fsync. Where O_DIRECT is
 *              refused, writes go through the page cache one at a time, and every
 *              UP_SYNC_EVERY bytes an fdatasync starts the disk writing while the body still
 *              comes, so the final fsync waits for the tail only.
 *   commit     last buffer written, fsync, close; take the package lock (lua/package.lua);
 *              check the mode against an existing version; rename the temp file into place;
 *              record the metadata with the lock's token; answer 201 with the package.
 *   failure    first error wins (client gone, malformed multipart, bad name, disk full, Redis
 *              lost): wait for writes in flight, close and unlink the temp file, release the
 *              lock, answer. Nothing partial remains, on disk or in Redis. */
#define _GNU_SOURCE /* O_DIRECT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/api.h"
#include "common/bgq.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rconn.h"
#include "common/util.h"
#include "http/multipart.h"
#include "packages/packages_int.h"

#define UP_BUF (2u << 20)    /* bytes per write */
#define UP_BUFS 6            /* buffers per upload: its whole memory for data */
#define UP_ALIGN 4096u       /* O_DIRECT: buffer addresses, offsets and lengths */
#define UP_INFLIGHT_DIRECT 2 /* data writes in flight with O_DIRECT (one through the cache) */
#define UP_SYNC_EVERY (32ull << 20) /* buffered: start writeback (fdatasync) after this much */
#define UP_BURST (64u << 10) /* body bytes the loop reads per turn before others (loop reads) */

enum mode { MODE_FAIL, MODE_OVERWRITE, MODE_IGNORE };

/* Where an upload is in its life (the top of the file tells each step):
 *   HEAD      the handler: checks, and a raw body's file name
 *   PRECHECK  a raw body's package, unless overwriting: does it exist? (Redis; no byte read)
 *   PREPARE   mkdir <dir>, <dir>/<space>; open the temp file
 *   BODY      the body comes: buffers filled, hashed and written as they fill (see flow)
 *   STORE     the body is in: the last buffers hashed and written, padding cut, fsync, close
 *   COMMIT    the lock, the mode against an existing version, rename, record in Redis
 *   CLEANUP   the answer is decided and nothing is in flight: close, unlink the temp file
 *   DONE      answered (finish): freed once the yield timer and the lock have closed
 * A failure (u->status set) moves to CLEANUP once nothing is in flight (fail()); until then
 * the phase stays where it was, with status set. Transitions (asserted in set_phase):
 *   HEAD -> PRECHECK | PREPARE;  PRECHECK -> PREPARE;  PREPARE -> BODY;  BODY -> STORE;
 *   STORE -> COMMIT;  COMMIT -> DONE (201);  any but DONE -> CLEANUP (a failure, or 200 for
 *   IgnoreIfExists; cleanup() runs once per step, so CLEANUP -> CLEANUP);  CLEANUP -> DONE. */
enum phase { PH_HEAD, PH_PRECHECK, PH_PREPARE, PH_BODY, PH_STORE, PH_COMMIT, PH_CLEANUP, PH_DONE };

/* While in BODY: does the core read the body for us? ON: yes. PAUSED: the sink said "pause"
 * (no buffer free, or failed); drain() resumes once a buffer is free. YIELDING: paused for one
 * loop turn after UP_BURST bytes read by the loop; the yield timer makes it PAUSED, then
 * drain() resumes. ON -> PAUSED | YIELDING, YIELDING -> PAUSED, PAUSED -> ON. */
enum flow { FLOW_ON, FLOW_PAUSED, FLOW_YIELDING };

/* The temp file on disk: none yet (or unlinked), there, or renamed into place (then kept, even
 * when recording it fails: the answer says so). NONE -> TEMP -> PLACED, TEMP -> NONE. */
enum disk { DISK_NONE, DISK_TEMP, DISK_PLACED };

struct chunk {
    struct bgq_job wjob; /* writing it */
    ssize_t result;      /* of its pwrite: bytes or -errno */
    struct upload *u;
    char *data;          /* UP_BUF bytes, owned */
    size_t len;          /* filled */
    size_t written;      /* of len, done (a short write is continued) */
    uint64_t offset;     /* in the file */
    bool direct;         /* submitted while the file was in O_DIRECT mode */
    struct bgq_job hjob; /* hashing it */
    size_t real;         /* of len, file bytes (the rest is O_DIRECT padding) */
};

struct upload {
    struct http_exchange *ex; /* ours until answered */
    struct access_actor who;  /* who asked (the audit trail) */
    struct api_state *api;    /* counts us in api->uploads until freed */
    const struct node_services *svc;
    uv_loop_t *loop;
    enum mode mode;
    char space[PACKAGE_SPACE_MAX + 1];
    enum phase phase; /* see enum phase */
    bool named;       /* ref holds the package (file name known and valid) */
    struct pkg_ref ref;
    bool multipart;
    struct multipart mp;
    bool file_part;       /* a multipart file part was found */
    char tmp[PATH_MAX];   /* the temporary file */
    char final[PATH_MAX]; /* where it goes */
    uv_fs_t req;          /* the one sequential file operation in flight */
    uv_file fd;           /* -1 when not open */
    enum disk disk;       /* tmp: not there, there, or renamed to final */
    bool stepping;        /* the phase's sequential operation (file or Redis) is in
                                    * flight (fail() waits for its callback) */
    struct chunk chunks[UP_BUFS];
    struct chunk *spare[UP_BUFS]; /* free buffers */
    unsigned nspare;
    struct chunk *fill;        /* being filled, or NULL */
    struct buf overflow;       /* bytes taken while no buffer was free (one piece at most) */
    struct chunk *hq[UP_BUFS]; /* full buffers waiting to be hashed, in file order */
    unsigned hhead, hlen;
    bool hashing;                 /* a buffer is being hashed (one at a time: SHA-256 is serial) */
    struct chunk *queue[UP_BUFS]; /* full buffers waiting for a data write */
    unsigned qhead, qlen;
    unsigned writing; /* data writes in flight */
    bool direct;      /* the file is open with O_DIRECT */
    bool padded;      /* the last write was padded to UP_ALIGN: truncate after */
    uv_timer_t yield; /* resumes the body on the next loop turn (UP_BURST) */
    size_t burst;     /* body bytes taken since the last yield */
    uv_fs_t sync_req; /* the periodic fdatasync */
    bool syncing;     /* ... in flight */
    uint64_t written; /* bytes whose writes completed */
    uint64_t synced;  /* written when the last periodic fdatasync started */
    uint64_t offset;  /* bytes handed to writes so far */
    uint64_t size;    /* file bytes received */
    EVP_MD_CTX *sha;
    char hash[65];
    bool lent; /* the fill buffer is being read into off the loop */
    /* Multipart off the loop (sink_prepare): the parser runs on the reading thread and packs
     * the file part's bytes in place in the fill buffer; sink_data then takes them in. */
    bool mp_thread;   /* inside sink_prepare: the parser's callbacks pack */
    bool mp_prepared; /* the bytes of the next data call were parsed there */
    int mp_rc;        /* ... multipart_feed's result */
    size_t mp_w;      /* where the next packed byte goes in the fill buffer */
    bool mp_named;    /* ... and a file part began: take_name(mp_filename) */
    char mp_filename[1024];
    enum flow flow; /* in BODY: read, paused, or yielding a loop turn */
    struct pkg_lock lock;
    int status;      /* the answer, once decided (a failure, 200 ignored, 201) */
    char msg[320];   /* a failure's message */
    struct buf json; /* a success's body */
};

static void cleanup(struct upload *u);
static void drain(struct upload *u);

/* The phases each phase may be entered from (see enum phase). */
#define FROM(p) (1u << (p))
static const unsigned phase_from[] = {
    [PH_HEAD] = 0,
    [PH_PRECHECK] = FROM(PH_HEAD),
    [PH_PREPARE] = FROM(PH_HEAD) | FROM(PH_PRECHECK),
    [PH_BODY] = FROM(PH_PREPARE),
    [PH_STORE] = FROM(PH_BODY),
    [PH_COMMIT] = FROM(PH_STORE),
    [PH_CLEANUP] = FROM(PH_HEAD) | FROM(PH_PRECHECK) | FROM(PH_PREPARE) | FROM(PH_BODY) |
                   FROM(PH_STORE) | FROM(PH_COMMIT) | FROM(PH_CLEANUP),
    [PH_DONE] = FROM(PH_COMMIT) | FROM(PH_CLEANUP),
};
#undef FROM

static void set_phase(struct upload *u, enum phase to) {
    assert(phase_from[to] & (1u << u->phase));
    (void)phase_from; /* read by the assert only */
    u->phase = to;
}

/* Background work in flight: data writes, the hashing, the periodic fdatasync, a socket read
 * into our memory (sink_buffer off the loop, until sink_returned). */
static unsigned in_flight(const struct upload *u) {
    return u->writing + u->hashing + u->syncing + u->lent;
}

/* Records the first failure and starts cleaning once nothing is in flight. */
static void fail(struct upload *u, int status, const char *fmt, ...) {
    if (!u->status) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->msg, sizeof u->msg, fmt, ap);
        va_end(ap);
        u->status = status;
        log_info("package upload failed", " space=%s status=%d err=\"%s\"", u->space, status,
                 u->msg);
    }
    if (!in_flight(u) && !u->stepping && u->phase < PH_CLEANUP) cleanup(u);
}

static void fail_disk(struct upload *u, const char *what, int err) {
    if (err == UV_ENOSPC || err == -EDQUOT)
        fail(u, 507, "the package directory is full (%s); nothing was kept", uv_strerror(err));
    else
        fail(u, 500, "cannot %s the package file: %s; nothing was kept", what, uv_strerror(err));
}

/* A libuv fs request was just started with err its result: on success one step is in flight
 * (libuv never runs the callback from inside the call); otherwise the upload fails with what
 * could not be done. */
static void fs_started(struct upload *u, int err, const char *what) {
    if (err)
        fail_disk(u, what, err);
    else
        u->stepping = true;
}

/* ... and that step (u->req) finished: its upload, with the result in *result; NULL when it
 * failed (what names the step; EEXIST counts as done where exist_ok). */
static struct upload *fs_finished(uv_fs_t *req, const char *what, bool exist_ok, ssize_t *result) {
    struct upload *u = container_of(req, struct upload, req);
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    u->stepping = false;
    if (r < 0 && !(exist_ok && r == UV_EEXIST)) {
        fail_disk(u, what, (int)r);
        return NULL;
    }
    if (result) *result = r;
    return u;
}

static void upload_free_cb(struct pkg_lock *l) {
    struct upload *u = container_of(l, struct upload, lock);
    u->api->uploads--;
    for (unsigned i = 0; i < UP_BUFS; i++) free(u->chunks[i].data);
    buf_free(&u->overflow);
    buf_free(&u->json);
    if (u->multipart) multipart_free(&u->mp);
    EVP_MD_CTX_free(u->sha);
    free(u);
}

static void yield_closed_cb(uv_handle_t *h) {
    struct upload *u = container_of((uv_timer_t *)h, struct upload, yield);
    pkg_lock_close(&u->lock, upload_free_cb);
}

/* Answers (the decided status) and frees u once its timers have closed. */
static void finish(struct upload *u) {
    pkg_lock_release(&u->lock, &u->ref);
    if (u->json.len)
        http_respond(u->ex, u->status, "application/json", u->json.data, u->json.len);
    else
        http_respond_error(u->ex, u->status, u->msg);
    u->ex = NULL;
    set_phase(u, PH_DONE);
    uv_close((uv_handle_t *)&u->yield, yield_closed_cb);
}

/* ---- the failure path: close, unlink, release, answer ---- */

static void cleanup_close_cb(uv_fs_t *req) {
    struct upload *u = container_of(req, struct upload, req);
    uv_fs_req_cleanup(req);
    cleanup(u);
}

static void cleanup(struct upload *u) {
    set_phase(u, PH_CLEANUP);
    if (u->fd >= 0) {
        uv_file fd = u->fd;
        u->fd = -1;
        if (uv_fs_close(u->loop, &u->req, fd, cleanup_close_cb) == 0) return;
    }
    if (u->disk == DISK_TEMP) {
        u->disk = DISK_NONE;
        if (uv_fs_unlink(u->loop, &u->req, u->tmp, cleanup_close_cb) == 0) return;
    }
    finish(u);
}

/* ---- commit ---- */

static void committed_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct upload *u = priv;
    u->stepping = false;
    u->lock.held = false; /* the script released it (or the link is gone, and so the lock) */
    if (!r) {
        buf_reset(&u->json);
        fail(u, 503,
             "Redis connection lost while recording the package; the file is in place "
             "but may not be listed: upload it again");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        buf_reset(&u->json);
        fail(u, 500, "recording the package failed: %s", r->str);
        return;
    }
    u->status = 201;
    char msg[400];
    snprintf(msg, sizeof msg, "Package %s uploaded to %s (%llu bytes, SHA-256 %s)", u->ref.key,
             u->space, (unsigned long long)u->size, u->hash);
    api_audit(u->svc, &u->who, "Created", msg, u->ref.key, NULL, u->hash);
    log_info("package uploaded", " space=%s package=%s size=%llu sha256=%s io=%s", u->space,
             u->ref.key, (unsigned long long)u->size, u->hash, u->direct ? "direct" : "cached");
    finish(u);
}

/* The answer's JSON from the fields being recorded (pkg_json reads them as from Redis). */
static void write_json(struct upload *u, const char *const *kv, size_t n) {
    redisReply *el[32], items[32];
    redisReply flat = {.type = REDIS_REPLY_ARRAY, .elements = n < 32 ? n : 32, .element = el};
    for (size_t i = 0; i < flat.elements; i++) {
        items[i] =
            (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)kv[i], .len = strlen(kv[i])};
        el[i] = &items[i];
    }
    struct json j;
    buf_reset(&u->json);
    json_init(&j, &u->json);
    pkg_json(&j, &flat, 0);
}

static void commit(struct upload *u) {
    const struct pkg_ref *f = &u->ref;
    char id[PACKAGE_ID_MAX + PACKAGE_VERSION_MAX + 16], size[24], published[24], file[PATH_MAX];
    int64_t now = clock_wall_ms();
    snprintf(id, sizeof id, PACKAGE_OCTOPUS_PREFIX "%s", f->key);
    snprintf(size, sizeof size, "%llu", (unsigned long long)u->size);
    snprintf(published, sizeof published, "%lld", (long long)now);
    package_file(f->space, &f->name, file, sizeof file);
    const char *kv[] = {
        "id",     id,      "package_id", f->name.id, "version", f->name.version,  "space",
        f->space, "ext",   f->name.ext,  "file",     file,      "size",           size,
        "hash",   u->hash, "published",  published,  "node",    u->svc->cfg->name};
    struct script_call call;
    call_package_commit(&call, f->keys, f->space, &f->name, u->lock.token, now, kv, ARRAY_SIZE(kv));
    write_json(u, kv, ARRAY_SIZE(kv));
    u->stepping = true;
    int rc = rconn_call(u->svc->redis, &call, committed_cb, u);
    call_free(&call);
    if (rc != 0) {
        u->stepping = false;
        buf_reset(&u->json);
        fail(u, 503,
             "Redis is unreachable from this node; the file is in place but not "
             "recorded: upload it again");
    }
}

static void renamed_cb(uv_fs_t *req) {
    struct upload *u = fs_finished(req, "rename", false, NULL);
    if (!u) return;
    u->disk = DISK_PLACED;
    commit(u);
}

static void rename_into_place(struct upload *u) {
    fs_started(u, uv_fs_rename(u->loop, &u->req, u->tmp, u->final, renamed_cb), "rename");
}

/* Under the lock, with a mode that cares: what is there already? */
static void existing_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct upload *u = priv;
    u->stepping = false;
    if (!r) {
        fail(u, 503, "Redis connection lost; try again");
        return;
    }
    bool exists = r->type == REDIS_REPLY_ARRAY && r->elements > 0;
    if (!exists) {
        rename_into_place(u);
        return;
    }
    if (u->mode == MODE_IGNORE) { /* Octopus answers with the package that is there */
        struct json j;
        json_init(&j, &u->json);
        pkg_json(&j, r, 0);
        u->status = 200;
        cleanup(u);
        return;
    }
    /* Octopus's answer, status and words (its clients match them), then which package */
    fail(u, 400,
         "A package with the same ID and version already exists. To proceed anyway, specify an "
         "overwriteMode of OverwriteExisting or IgnoreIfExists. (package %s version %s in %s)",
         u->ref.name.id, u->ref.name.version, u->space);
}

static void locked_cb(struct pkg_lock *l, int err) {
    struct upload *u = container_of(l, struct upload, lock);
    u->stepping = false;
    if (err == SHOAL_ETIMEOUT) {
        fail(u, 409, "another upload or delete of %s %s kept it locked; try again", u->ref.name.id,
             u->ref.name.version);
        return;
    }
    if (err) {
        fail(u, 503, "Redis is unreachable from this node; nothing was kept");
        return;
    }
    if (u->mode == MODE_OVERWRITE) {
        rename_into_place(u);
        return;
    }
    const char *argv[] = {"HGETALL", u->ref.hash_key};
    u->stepping = true;
    if (rconn_command(u->svc->redis, existing_cb, u, 2, argv, NULL) != 0) {
        u->stepping = false;
        fail(u, 503, "Redis is unreachable from this node; nothing was kept");
    }
}

static void closed_cb(uv_fs_t *req) {
    struct upload *u = fs_finished(req, "close", false, NULL);
    if (!u) return;
    snprintf(u->final, sizeof u->final, "%s/%s/%s.%s%s", u->svc->cfg->package_dir, u->space,
             u->ref.name.id, u->ref.name.version, u->ref.name.ext);
    set_phase(u, PH_COMMIT);
    u->stepping = true;
    pkg_lock_acquire(&u->lock, u->loop, u->svc->redis, u->ref.lock_key, locked_cb);
}

static void synced_cb(uv_fs_t *req) {
    struct upload *u = fs_finished(req, "sync", false, NULL);
    if (!u) return;
    uv_file fd = u->fd;
    u->fd = -1;
    fs_started(u, uv_fs_close(u->loop, &u->req, fd, closed_cb), "close");
}

static void truncated_cb(uv_fs_t *req) {
    struct upload *u = fs_finished(req, "write", false, NULL);
    if (u) fs_started(u, uv_fs_fsync(u->loop, &u->req, u->fd, synced_cb), "sync");
}

/* Every byte is hashed and written: the hash is final; cut the last write's padding, if any,
 * then fsync. */
static void sync_file(struct upload *u) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(u->sha, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++) sprintf(u->hash + 2 * i, "%02x", md[i]);
    if (u->padded)
        fs_started(u, uv_fs_ftruncate(u->loop, &u->req, u->fd, (int64_t)u->size, truncated_cb),
                   "write");
    else
        fs_started(u, uv_fs_fsync(u->loop, &u->req, u->fd, synced_cb), "sync");
}

/* ---- buffers: filled on the loop, hashed on the pool, written on the pool ---- */

static void write_cb(struct bgq_job *job);
static void hashed_cb(struct bgq_job *job);

static void ring_push(struct chunk **ring, unsigned head, unsigned *len, struct chunk *k) {
    ring[(head + *len) % UP_BUFS] = k;
    (*len)++;
}

static struct chunk *ring_pop(struct chunk **ring, unsigned *head, unsigned *len) {
    struct chunk *k = ring[*head];
    *head = (*head + 1) % UP_BUFS;
    (*len)--;
    return k;
}

/* The upload failed: buffers waiting to be hashed or written never will be. */
static void drop_queued(struct upload *u) {
    while (u->hlen) u->spare[u->nspare++] = ring_pop(u->hq, &u->hhead, &u->hlen);
    while (u->qlen) u->spare[u->nspare++] = ring_pop(u->queue, &u->qhead, &u->qlen);
}

/* Below the loop (common/bgq.h), like the hashing: even with O_DIRECT a write costs CPU
 * (pinning the buffer's pages), and through the page cache it copies every byte. */
static void write_work(struct bgq_job *job) {
    struct chunk *k = container_of(job, struct chunk, wjob);
    ssize_t n = pwrite(k->u->fd, k->data + k->written, k->len - k->written,
                       (off_t)(k->offset + k->written));
    k->result = n < 0 ? -errno : n;
}

static void submit(struct upload *u, struct chunk *k) {
    k->wjob.work = write_work;
    k->wjob.done = write_cb;
    k->direct = u->direct;
    u->writing++;
    bgq_submit(u->svc->bg_io, &k->wjob);
}

/* Writes through the page cache from now on (O_DIRECT refused a write, or a short write left
 * an unaligned rest). Writes already in flight are unaffected either way. */
static void direct_off(struct upload *u) {
    int fl = fcntl(u->fd, F_GETFL);
    if (fl >= 0) (void)fcntl(u->fd, F_SETFL, fl & ~O_DIRECT);
    u->direct = false;
    log_info("package upload continues through the page cache", " space=%s", u->space);
}

/* Starts queued writes while fewer than allowed are in flight: with O_DIRECT the device does
 * the copying, so two overlap; through the page cache a pool thread copies every byte and one
 * at a time keeps it from taking the CPU from the loop. */
static void pump_writes(struct upload *u) {
    while (u->writing < (u->direct ? UP_INFLIGHT_DIRECT : 1) && u->qlen && !u->status)
        submit(u, ring_pop(u->queue, &u->qhead, &u->qlen));
}

/* Below the loop (common/bgq.h): SHA-256 is most of an upload's CPU (about 0.6 ms per MiB),
 * and on the loop it would hold up every other connection for that long. One buffer at a
 * time, in file order (the hash is sequential); the queue's mutex orders the memory. */
static void hash_work(struct bgq_job *job) {
    struct chunk *k = container_of(job, struct chunk, hjob);
    EVP_DigestUpdate(k->u->sha, k->data, k->real);
}

static void pump_hash(struct upload *u) {
    if (u->hashing || !u->hlen || u->status) return;
    struct chunk *k = ring_pop(u->hq, &u->hhead, &u->hlen);
    k->hjob.work = hash_work;
    k->hjob.done = hashed_cb;
    u->hashing = true;
    bgq_submit(u->svc->bg_cpu, &k->hjob);
}

static void hashed_cb(struct bgq_job *job) {
    struct chunk *k = container_of(job, struct chunk, hjob);
    struct upload *u = k->u;
    u->hashing = false;
    if (u->status) {
        u->spare[u->nspare++] = k;
        drop_queued(u);
        fail(u, u->status, "%s", u->msg); /* cleans once the last write is back */
        return;
    }
    ring_push(u->queue, u->qhead, &u->qlen, k);
    pump_writes(u);
    pump_hash(u);
    drain(u);
}

/* Queues the fill buffer for hashing, then writing. The body's last one, with O_DIRECT, is
 * padded with zeros to whole blocks (sync_file() cuts them off). */
static void submit_fill(struct upload *u, bool last) {
    struct chunk *k = u->fill;
    u->fill = NULL;
    k->real = k->len;
    size_t pad = last && u->direct ? (UP_ALIGN - k->len % UP_ALIGN) % UP_ALIGN : 0;
    if (pad) {
        memset(k->data + k->len, 0, pad);
        k->len += pad;
        u->padded = true;
    }
    k->written = 0;
    k->offset = u->offset;
    u->offset += k->len;
    ring_push(u->hq, u->hhead, &u->hlen, k);
    pump_hash(u);
}

/* Copies file bytes into buffers, queueing each as it fills; what finds no buffer waits in
 * overflow (the sink has said "pause" by then, so that is one piece at most). */
static void stage(struct upload *u, const char *at, size_t n) {
    while (n) {
        if (!u->fill) {
            if (!u->nspare || u->status) {
                if (!u->status) buf_append(&u->overflow, at, n);
                return;
            }
            u->fill = u->spare[--u->nspare];
            u->fill->len = 0;
        }
        size_t k = UP_BUF - u->fill->len;
        if (k > n) k = n;
        if (at != u->fill->data + u->fill->len) /* else read there already (sink_buffer) */
            memcpy(u->fill->data + u->fill->len, at, k);
        u->fill->len += k;
        at += k;
        n -= k;
        if (u->fill->len == UP_BUF) submit_fill(u, false);
    }
}

static bool saturated(const struct upload *u) {
    return u->overflow.len > 0 || (!u->fill && !u->nspare);
}

static void sync_cb(uv_fs_t *req) {
    struct upload *u = container_of(req, struct upload, sync_req);
    int err = (int)req->result;
    uv_fs_req_cleanup(req);
    u->syncing = false;
    if (err < 0) fail_disk(u, "write", err);
    if (u->status)
        fail(u, u->status, "%s", u->msg); /* cleans once the last write is back */
    else
        drain(u);
}

/* Buffered: starts writeback of what is written so far, when enough has piled up since the
 * last one, so that the final fsync waits for the tail only (and dirty pages stay few). */
static void sync_some(struct upload *u) {
    if (u->direct || u->syncing || u->status || u->phase > PH_BODY ||
        u->written - u->synced < UP_SYNC_EVERY)
        return;
    u->synced = u->written;
    if (uv_fs_fdatasync(u->loop, &u->sync_req, u->fd, sync_cb) == 0) { u->syncing = true; }
}

static void write_cb(struct bgq_job *job) {
    struct chunk *k = container_of(job, struct chunk, wjob);
    struct upload *u = k->u;
    ssize_t n = k->result;
    u->writing--;
    bool again = n == UV_EINVAL && k->direct && !u->status;
    if (again) { /* the file system wants another alignment: the same bytes, buffered */
        if (u->direct) direct_off(u);
        n = 0;
    }
    if ((again || n > 0) && (size_t)n < k->len - k->written && !u->status) { /* short: rest */
        k->written += (size_t)n;
        u->written += (uint64_t)n;
        if (u->direct && k->written % UP_ALIGN) direct_off(u);
        submit(u, k);
        return;
    }
    u->spare[u->nspare++] = k;
    if (n > 0) u->written += (uint64_t)n;
    if (n < 0)
        fail_disk(u, "write", (int)n);
    else if (n == 0 && k->len)
        fail_disk(u, "write", UV_EIO);
    if (u->status) {
        drop_queued(u);
        fail(u, u->status, "%s", u->msg); /* cleans once the last write is back */
        return;
    }
    if (u->overflow.len) {
        struct buf held = u->overflow;
        buf_init(&u->overflow);
        stage(u, held.data, held.len);
        buf_free(&held);
    }
    pump_writes(u);
    sync_some(u);
    drain(u);
}

/* After each hash and write (and at the body's end): resume the body when a buffer is free,
 * or, the body being in, queue what is left and then sync. */
static void drain(struct upload *u) {
    if (u->status) return;
    if (u->phase < PH_STORE) {
        if (u->flow == FLOW_PAUSED && !saturated(u) && u->ex) {
            u->flow = FLOW_ON;
            http_body_resume(u->ex); /* may call the sink at once */
        }
        return;
    }
    if (u->overflow.len) return; /* staged as buffers come back */
    if (u->fill && u->fill->len) submit_fill(u, true);
    if (in_flight(u) || u->qlen || u->hlen || u->stepping || u->status) return;
    sync_file(u);
}

/* ---- the body ---- */

static void file_bytes(struct upload *u, const char *at, size_t n) {
    if (u->status) return;
    u->size += n;
    stage(u, at, n);
}

/* The name of the file being uploaded: checked, then the package it names. */
static bool take_name(struct upload *u, const char *filename) {
    char err[300];
    struct package_name n;
    if (package_name_parse(filename, &n, err, sizeof err) != 0) {
        fail(u, 400, "%s", err);
        return false;
    }
    pkg_ref_init(&u->ref, u->svc, u->space, &n);
    u->named = true;
    return true;
}

static bool mp_part(void *arg, const char *name, const char *filename) {
    struct upload *u = arg;
    if (u->mp_thread) { /* off the loop: the name is checked in sink_data */
        if (u->file_part || !filename) return false;
        u->file_part = true;
        snprintf(u->mp_filename, sizeof u->mp_filename, "%s", filename);
        u->mp_named = true;
        return true;
    }
    if (u->file_part || !filename || u->status) return false; /* the first file part only */
    u->file_part = true;
    return take_name(u, filename);
}

static void mp_data(void *arg, const char *at, size_t n) {
    struct upload *u = arg;
    if (!u->mp_thread) {
        file_bytes(u, at, n);
        return;
    }
    char *to = u->fill->data + u->mp_w; /* never past unparsed input (sink_buffer) */
    if (at != to) memmove(to, at, n);
    u->mp_w += n;
}

/* On the reading thread (http_sink.prepare): a multipart body's bytes, read into the fill
 * buffer after room for the delimiter bytes the parser holds back, are parsed there and the
 * file part's bytes packed from u->mp_w on. Only the parser, the fill buffer and the mp_
 * fields are touched: the loop leaves them alone while the buffer is lent. */
static void sink_prepare(void *arg, char *at, size_t n) {
    struct upload *u = arg;
    if (!u->multipart) return;
    u->mp_thread = true;
    u->mp_rc = multipart_feed(&u->mp, at, n);
    u->mp_thread = false;
    u->mp_prepared = true;
}

/* Back on the loop: what sink_prepare found. */
static void take_prepared(struct upload *u) {
    u->mp_prepared = false;
    if (u->mp_named) {
        u->mp_named = false;
        if (!u->status) take_name(u, u->mp_filename);
    }
    if (!u->status && u->mp_w > u->fill->len) {
        u->size += u->mp_w - u->fill->len;
        u->fill->len = u->mp_w;
        if (u->fill->len == UP_BUF) submit_fill(u, false);
    }
    if (u->mp_rc != 0) fail(u, 400, "malformed multipart body: %s", u->mp.error);
}

static void yield_cb(uv_timer_t *t) {
    struct upload *u = container_of(t, struct upload, yield);
    assert(u->flow == FLOW_YIELDING);
    u->flow = FLOW_PAUSED;
    drain(u);
}

static int sink_data(struct http_exchange *ex, const char *at, size_t n, void *arg) {
    struct upload *u = arg;
    if (u->status) return 1; /* failed: read no more; the answer closes the connection */
    if (u->mp_prepared)
        take_prepared(u);
    else if (!u->multipart)
        file_bytes(u, at, n);
    else if (multipart_feed(&u->mp, at, n) != 0)
        fail(u, 400, "malformed multipart body: %s", u->mp.error);
    if (u->status || saturated(u)) {
        assert(u->flow == FLOW_ON);
        u->flow = FLOW_PAUSED;
        return 1;
    }
    /* Read by the loop: let it serve others, go on next turn. Read off the loop (lent): the
     * loop only took note, and the next read is a background job anyway. */
    if (!u->lent && (u->burst += n) >= UP_BURST) {
        u->burst = 0;
        u->flow = FLOW_YIELDING;
        uv_timer_start(&u->yield, yield_cb, 0, 0);
        return 1;
    }
    return 0;
}

static void sink_end(struct http_exchange *ex, int err, void *arg) {
    struct upload *u = arg;
    if (err == UV_EPROTO) {
        fail(u, 400, "malformed request body (chunked encoding); nothing was kept");
        return;
    }
    if (err == UV_ETIMEDOUT) {
        fail(u, 408,
             "the body stopped arriving (nothing for --http-body-timeout); nothing was "
             "kept");
        return;
    }
    if (err) {
        fail(u, 400, "the connection ended before the whole body was received; nothing was kept");
        return;
    }
    if (u->multipart && multipart_finish(&u->mp) != 0) {
        fail(u, 400, "malformed multipart body: %s", u->mp.error);
        return;
    }
    if (u->multipart && !u->file_part) {
        fail(u, 400,
             "the multipart body has no file part (a part with a filename, as in "
             "Content-Disposition: form-data; name=\"file\"; filename=\"MyApp.1.0.3.zip\")");
        return;
    }
    set_phase(u, PH_STORE);
    drain(u);
}

/* A raw body is read straight into the buffer being filled (the loop's one copy of it saved),
 * by the server's background thread when it reads off the loop (http/server.c). A multipart
 * body too, but only off the loop (sink_prepare parses it there), and after as many bytes as
 * the parser holds back from the last read: it may emit them (as data) before the new bytes, so
 * packing never overtakes input not yet parsed. */
static int sink_buffer(struct http_exchange *ex, void *arg, bool off_loop, char **base,
                       size_t *len) {
    struct upload *u = arg;
    if ((u->multipart && (!off_loop || u->mp.error)) || u->status || u->overflow.len || u->lent)
        return -1;
    size_t gap = u->multipart ? u->mp.matched : 0;
    if (!u->fill) {
        if (!u->nspare) return -1;
        u->fill = u->spare[--u->nspare];
        u->fill->len = 0;
    }
    if (UP_BUF - u->fill->len <= gap) return -1; /* the loop reads; the buffer fills there */
    *base = u->fill->data + u->fill->len + gap;
    if (*len > UP_BUF - u->fill->len - gap) *len = UP_BUF - u->fill->len - gap;
    u->lent = off_loop;
    u->mp_w = u->fill->len;
    return 0;
}

/* The read off the loop is over (its bytes came through sink_data first): go on, or clean up
 * if the upload failed or was answered meanwhile. */
static void sink_returned(void *arg) {
    struct upload *u = arg;
    u->lent = false;
    if (u->status)
        fail(u, u->status, "%s", u->msg); /* cleans once nothing is in flight */
    else
        drain(u);
}

static const struct http_sink upload_sink = {sink_data, sink_end, sink_buffer, sink_returned,
                                             sink_prepare};

/* ---- preparing: directories, temp file, then the body ---- */

static void opened_cb(uv_fs_t *req) {
    ssize_t fd;
    struct upload *u = fs_finished(req, "create", false, &fd);
    if (!u) return;
    u->fd = (uv_file)fd;
    u->disk = DISK_TEMP;
    int fl = fcntl(u->fd, F_GETFL); /* a file system without O_DIRECT says EINVAL: buffered then */
    u->direct =
        u->svc->cfg->package_direct_io && fl >= 0 && fcntl(u->fd, F_SETFL, fl | O_DIRECT) == 0;
    if (u->status) { /* failed meanwhile (cannot happen today: kept for safety) */
        fail(u, u->status, "%s", u->msg);
        return;
    }
    set_phase(u, PH_BODY);
    if (http_body_start(u->ex, &upload_sink, u) != 0)
        fail(u, 400, "the connection ended before the body was sent; nothing was kept");
}

static void space_dir_cb(uv_fs_t *req) {
    struct upload *u = fs_finished(req, "create the directory of", true, NULL);
    if (!u) return;
    char token[17];
    pkg_random_hex(token, 8);
    snprintf(u->tmp, sizeof u->tmp, "%s/%s/.upload-%s-%s.tmp", u->svc->cfg->package_dir, u->space,
             u->svc->cfg->name, token);
    fs_started(u,
               uv_fs_open(u->loop, &u->req, u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644,
                          opened_cb),
               "create");
}

static void dir_cb(uv_fs_t *req) {
    struct upload *u = fs_finished(req, "create the directory of", true, NULL);
    if (!u) return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", u->svc->cfg->package_dir, u->space);
    fs_started(u, uv_fs_mkdir(u->loop, &u->req, dir, 0755, space_dir_cb),
               "create the directory of");
}

static void prepare(struct upload *u) {
    set_phase(u, PH_PREPARE);
    fs_started(u, uv_fs_mkdir(u->loop, &u->req, u->svc->cfg->package_dir, 0755, dir_cb),
               "create the directory of");
}

/* A raw body's name is known: a package that exists is refused before its body is read. */
static void precheck_cb(struct rconn *rc, redisReply *r, void *priv) {
    struct upload *u = priv;
    u->stepping = false;
    if (!r) {
        fail(u, 503, "Redis connection lost; try again");
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        u->stepping = true; /* existing_cb decides, with nothing on disk yet */
        existing_cb(rc, r, priv);
        return;
    }
    prepare(u);
}

/* ---- the handler ---- */

static int parse_mode(const char *query, enum mode *mode) {
    char v[32];
    *mode = MODE_FAIL;
    if (api_query_get(query, "overwriteMode", v, sizeof v)) {
        if (!strcasecmp(v, "FailIfExists") || !strcasecmp(v, "fail"))
            *mode = MODE_FAIL;
        else if (!strcasecmp(v, "OverwriteExisting") || !strcasecmp(v, "overwrite"))
            *mode = MODE_OVERWRITE;
        else if (!strcasecmp(v, "IgnoreIfExists") || !strcasecmp(v, "ignore"))
            *mode = MODE_IGNORE;
        else
            return -1;
    } else if (api_query_get(query, "replace", v, sizeof v)) {
        if (!strcasecmp(v, "true") || !strcmp(v, "1"))
            *mode = MODE_OVERWRITE;
        else if (strcasecmp(v, "false") && strcmp(v, "0"))
            return -1;
    }
    return 0;
}

static struct upload *upload_new(struct http_exchange *ex, const struct node_services *svc,
                                 const char *space, enum mode mode) {
    struct upload *u = xcalloc(1, sizeof *u);
    u->ex = ex;
    u->svc = svc;
    u->api = svc->api;
    u->api->uploads++;
    u->loop = http_site_of(ex)->loop;
    u->mode = mode;
    u->fd = -1;
    snprintf(u->space, sizeof u->space, "%s", space);
    for (unsigned i = 0; i < UP_BUFS; i++) {
        u->chunks[i].u = u;
        if (posix_memalign((void **)&u->chunks[i].data, UP_ALIGN, UP_BUF) != 0) abort();
        u->spare[u->nspare++] = &u->chunks[i];
    }
    buf_init(&u->overflow);
    buf_init(&u->json);
    uv_timer_init(u->loop, &u->yield);
    u->sha = EVP_MD_CTX_new();
    if (!u->sha || EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) abort();
    return u;
}

/* Seconds a client refused for too many uploads is told to wait (Retry-After). */
#define UP_RETRY_AFTER "5"

/* --http-max-uploads are in progress: 429 before any body byte is read (so no 100 Continue
 * goes out, and the connection closes after the answer), in Octopus's error shape. */
static void refuse_busy(struct http_exchange *ex, struct api_state *api, int64_t max) {
    char msg[200];
    struct buf b;
    struct json j;
    api->uploads_refused++;
    snprintf(msg, sizeof msg,
             "this node is taking %lld package uploads already (its limit, "
             "--http-max-uploads); retry in " UP_RETRY_AFTER " seconds or upload to another "
             "node",
             (long long)max);
    buf_init(&b);
    json_init(&j, &b);
    json_obj_open(&j);
    json_key(&j, "ErrorMessage");
    json_str(&j, "Too many package uploads in progress");
    json_key(&j, "Errors");
    json_arr_open(&j);
    json_str(&j, msg);
    json_arr_close(&j);
    json_obj_close(&j);
    http_add_header(ex, "Retry-After", UP_RETRY_AFTER);
    api_respond_json(ex, 429, &b);
    buf_free(&b);
}

void pkg_upload_cb(struct http_exchange *ex) {
    struct access_actor who;
    const struct node_services *svc = api_begin_who(ex, PERM_BUILTIN_FEED_PUSH, &who);
    if (!svc) return;
    /* POST /api/packages/raw, Octopus's route from before spaces, is the default space's. */
    const char *space = http_param(ex, 0) ? http_param(ex, 0) : PACKAGE_DEFAULT_SPACE;
    const char *ctype = http_header(ex, "content-type");
    enum mode mode;
    if (!package_space_valid(space)) {
        http_respond_error(ex, 400, "the space must be 1-64 of A-Z a-z 0-9 _ - (e.g. Spaces-1)");
        return;
    }
    if (parse_mode(http_query(ex), &mode) != 0) {
        http_respond_error(ex, 400,
                           "overwriteMode must be FailIfExists, OverwriteExisting or "
                           "IgnoreIfExists (replace: true or false)");
        return;
    }
    if (!http_site_of(ex)->loop || !svc->bg_cpu || !svc->bg_io) {
        http_respond_error(ex, 503, "uploads need the node's event loop");
        return;
    }
    int64_t max = svc->cfg->http_max_uploads;
    if (max > 0 && svc->api->uploads >= (uint64_t)max) {
        refuse_busy(ex, svc->api, max);
        return;
    }
    const char *disp = http_header(ex, "content-disposition");
    if (disp && strstr(disp, "%00")) {
        http_respond_error(ex, 400,
                           "Content-Disposition holds %00 (a NUL byte) in a parameter; "
                           "send the file name without it");
        return;
    }
    struct upload *u = upload_new(ex, svc, space, mode);
    u->who = who;
    char name[1024];
    if (multipart_is_form(ctype)) {
        u->multipart = true;
        if (multipart_init(&u->mp, ctype) != 0) {
            fail(u, 400, "multipart/form-data needs a boundary parameter of 1-70 characters");
            return;
        }
        u->mp.on_part = mp_part;
        u->mp.on_data = mp_data;
        u->mp.arg = u;
    } else if (api_query_get(http_query(ex), "filename", name, sizeof name) ||
               disposition_param(disp, "filename", name, sizeof name)) {
        if (!take_name(u, name)) return;
    } else {
        fail(u, 400,
             "no package file name: send multipart/form-data with a file part, or a raw "
             "body with ?filename=<PackageId>.<Version>.<ext> or Content-Disposition");
        return;
    }
    if (u->named && mode != MODE_OVERWRITE) {
        const char *argv[] = {"HGETALL", u->ref.hash_key};
        set_phase(u, PH_PRECHECK);
        u->stepping = true;
        if (rconn_command(svc->redis, precheck_cb, u, 2, argv, NULL) != 0) {
            u->stepping = false;
            fail(u, 503, "Redis is unreachable from this node; try again");
        }
        return;
    }
    prepare(u);
}
