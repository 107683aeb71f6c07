/* packages_int.h: what packages.c (listing, download, delete) and package_upload.c share:
 * the package a request names, its per-package lock in Redis, and its JSON. */
#ifndef SHOAL_PACKAGES_PACKAGES_INT_H
#define SHOAL_PACKAGES_PACKAGES_INT_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <uv.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/package.h"
#include "common/reply.h"
#include "common/services.h"

#define PKG_LOCK_TTL_MS 60000  /* a holder that died frees the package after this */
#define PKG_LOCK_WAIT_MS 10000 /* how long a commit waits for another one of the same package */

/* One package version of one space, with the Redis keys read outside lua/package.lua (which
 * gets its keys from common/calls.h's builders). */
struct pkg_ref {
    const struct keys *keys; /* borrowed: the namespace's */
    char space[PACKAGE_SPACE_MAX + 1];
    struct package_name name;
    char key[PACKAGE_ID_MAX + PACKAGE_VERSION_MAX + 2]; /* <PackageId>.<Version> */
    char hash_key[320], lock_key[320];
};
void pkg_ref_init(struct pkg_ref *r, const struct node_services *svc, const char *space,
                  const struct package_name *n);

/* The per-package lock an upload's commit and a delete hold while they change the file and the
 * metadata together (SET NX PX, token checked by lua/package.lua). Embedded by its user. */
struct pkg_lock {
    struct rconn *redis;  /* borrowed */
    const char *key;      /* borrowed: the lock key */
    uv_timer_t timer;     /* retry while another holder has it */
    bool timer_open;      /* timer initialised: close before freeing the owner */
    bool held;            /* SET NX succeeded and not yet released */
    char token[33];       /* ours, random */
    uint64_t deadline_ms; /* give up (SHOAL_ETIMEOUT) after this (uv_now) */
    void (*done)(struct pkg_lock *l, int err); /* 0 held, SHOAL_EREDIS, SHOAL_ETIMEOUT */
};
/* Starts taking the lock; done runs once (never before this returns). */
void pkg_lock_acquire(struct pkg_lock *l, uv_loop_t *loop, struct rconn *redis, const char *key,
                      void (*done)(struct pkg_lock *l, int err));
/* Releases a held lock without changes (lua/package.lua "unlock"); fire and forget. */
void pkg_lock_release(struct pkg_lock *l, const struct pkg_ref *r);
/* Closes the retry timer if it was opened; closed(l) runs once it is (at once if never). */
void pkg_lock_close(struct pkg_lock *l, void (*closed)(struct pkg_lock *l));

/* Writes a package (a hash's flat field/value reply r->element[from..]) as Octopus's package
 * resource: Id, PackageId, Version, SpaceId, FileExtension, Size, PackageSizeBytes, Hash,
 * Published, Links. */
void pkg_json(struct json *j, const redisReply *r, size_t from);

/* Writes 2 * bytes random hex digits and a NUL into out (bytes <= 32). */
void pkg_random_hex(char *out, size_t bytes);

/* The upload handler (package_upload.c). */
void pkg_upload_cb(struct http_exchange *ex);

#endif
