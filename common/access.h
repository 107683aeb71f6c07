/* access.h: what users, API keys and permissions are, shared by the node (api/access.c) and the
 * CLI (cli/access.c). The records live in Redis (docs/redis.md, "Key layout"); lua/access_*.lua
 * write and read them.
 *
 * Permissions carry Octopus's names and meanings; a user has one built-in role, a role a fixed
 * set of permissions (access_role_perms). A key may be limited below its user: ReadOnly keeps
 * only the view permissions (ACCESS_READ_PERMS). A key is "API-" and 26 characters of base32
 * from 16 bytes of OpenSSL's RAND_bytes (128 bits); Redis holds only its SHA-256 (hex) and a
 * hint (its first 7 characters), never the key. */
#ifndef SHOAL_COMMON_ACCESS_H
#define SHOAL_COMMON_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/keys.h"

enum access_perm {
    PERM_ADMINISTER_SYSTEM,       /* nodes: drain, cap, forget; users and keys */
    PERM_TASK_VIEW,               /* tasks and the nodes they run on */
    PERM_TASK_CREATE,             /* enqueue */
    PERM_TASK_CANCEL,             /* cancel */
    PERM_EVENT_VIEW,              /* the audit trail */
    PERM_FEED_VIEW,               /* list and read package metadata */
    PERM_BUILTIN_FEED_PUSH,       /* upload packages */
    PERM_BUILTIN_FEED_DOWNLOAD,   /* download packages */
    PERM_BUILTIN_FEED_ADMINISTER, /* delete packages */
    PERM_COUNT,
    PERM_NONE = PERM_COUNT /* a route that needs a valid key and no permission (/api, spaces) */
};
#define PERM_BIT(p) (1u << (p))
#define ACCESS_ALL_PERMS ((1u << PERM_COUNT) - 1)
#define ACCESS_READ_PERMS                                                                          \
    (PERM_BIT(PERM_TASK_VIEW) | PERM_BIT(PERM_EVENT_VIEW) | PERM_BIT(PERM_FEED_VIEW) |             \
     PERM_BIT(PERM_BUILTIN_FEED_DOWNLOAD))

/* Bounds every script and every node's cache lives with (lua/access_write.lua refuses more). */
#define ACCESS_MAX_USERS 500
#define ACCESS_MAX_KEYS 2000
#define ACCESS_MAX_KEYS_PER_USER 100
#define ACCESS_KEY_PREFIX "API-"
#define ACCESS_KEY_LEN 30 /* "API-" + 26 base32 characters */
#define ACCESS_HINT_LEN 7
#define ACCESS_USER_PREFIX "Users-"
#define ACCESS_KEYID_PREFIX "APIKeys-"
/* The built-in administrator every --api-key / --api-key-file key belongs to. */
#define ACCESS_BOOTSTRAP_USER "bootstrap"

/* "AdministerSystem", ... ; NULL out of range. */
const char *access_perm_name(enum access_perm p);
/* The role's permission bits, or 0 for an unknown role (viewer, buildserver, operator,
 * administrator). */
unsigned access_role_perms(const char *role);
/* The roles' names, NULL-terminated. */
extern const char *const access_roles[];
/* A user or key name is 1-64 of [A-Za-z0-9._@-]. */
bool access_name_valid(const char *s);

/* A new key ("API-..."), its SHA-256 in hex (65 bytes with NUL) and a new key id
 * ("APIKeys-" + 16 hex). Returns 0, or -1 when the CSPRNG fails (nothing is made). */
int access_key_new(char key[ACCESS_KEY_LEN + 1], char sha_hex[65], char id[32]);
/* SHA-256 of s[0..n) in lower-case hex. */
void access_sha256_hex(const char *s, size_t n, char out[65]);

/* Who did something, for the audit trail. */
struct access_actor {
    char user[72];   /* user name ("bootstrap", an OS user for the CLI) */
    char key_id[32]; /* "" for the CLI and bootstrap keys */
    char hint[16];   /* the key's hint, never the key */
    char ip[48];     /* client address, "" for the CLI */
    char agent[128]; /* User-Agent, or "shoal-cli" */
    char via[24];    /* IdentityEstablishedWith: "API key", "Bootstrap key", "Redis (CLI)" */
    bool service;    /* IsService */
    unsigned perms;  /* effective permission bits (HTTP only) */
    bool read_only;  /* the key is ReadOnly: it changes nothing, its own keys included */
};

/* An event as Octopus's /api/events shows it, without its Id (the stream entry id gives it):
 * Category, Occurred, UserId, Username, IsService, IdentityEstablishedWith, ApiKeyId,
 * ApiKeyHint, IpAddress, UserAgent, Message, RelatedDocumentIds, ChangeDetails {DocumentContext,
 * Differences: before -> after}. before/after may be NULL. */
void access_event_json(struct buf *out, const struct access_actor *a, const char *category,
                       const char *message, const char *related, const char *before,
                       const char *after, int64_t now_ms);

/* Event retention (Octopus's default: 90 days) and the stream's hard bound. */
#define ACCESS_EVENT_RETENTION_MS (90LL * 24 * 3600 * 1000)
#define ACCESS_EVENT_MAXLEN 1000000

/* --- what lua/access_load.lua returns, parsed (the CLI's lists, a node's cache) --- */

struct access_user {
    char name[72];
    char role[16];
    char display[128];
    bool service;
    int64_t created_ms;
    unsigned perms; /* the role's */
};
struct access_key {
    char id[32];
    char user[72];
    unsigned char digest[32]; /* the key's SHA-256 */
    char purpose[128];
    int64_t created_ms, expires_ms, last_used_ms; /* expires 0: never */
    bool read_only;                               /* AccessLevel ReadOnly */
    char hint[16];
    unsigned perms; /* effective: its user's role's, limited by ReadOnly; 0 when no user */
};
struct access_lock {
    char addr[48];
    int64_t until_ms;
};
struct access_snapshot {
    int64_t version;
    struct access_user *users; /* owned */
    size_t nusers;
    struct access_key *keys; /* owned, sorted by digest (access_snapshot_find) */
    size_t nkeys;
    struct access_lock *locks; /* owned */
    size_t nlocks;
};

struct redisReply;
/* Parses access_load.lua's reply into s (zeroed first). Returns 0, or -1 for a wrong shape (s
 * then holds nothing). */
int access_snapshot_parse(const struct redisReply *r, struct access_snapshot *s);
void access_snapshot_free(struct access_snapshot *s);
/* The key whose SHA-256 is digest, or NULL. O(log keys). */
const struct access_key *access_snapshot_find(const struct access_snapshot *s,
                                              const unsigned char digest[32]);
const struct access_user *access_snapshot_user(const struct access_snapshot *s, const char *name);

#endif
