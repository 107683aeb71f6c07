/* auth.h: API keys for the keyed HTTP routes.
 *
 * Keys come from --api-key / SHOAL_API_KEY (a comma list, fixed for the life of the process)
 * and --api-key-file / SHOAL_API_KEY_FILE (one key a line, blank lines and # comments skipped,
 * read at start-up and again on SIGHUP). Every key has at least AUTH_KEY_MIN characters: a
 * shorter one stops start-up (or fails the reload). Only each key's SHA-256 digest is kept in
 * memory. A request presents its key as `X-Octopus-ApiKey: KEY` or `Authorization: Bearer KEY`;
 * its digest is compared with every configured one by CRYPTO_memcmp, so the time taken depends
 * on neither a key's bytes nor which key matched. No key ever reaches a log line, an error
 * message or a response. These are the bootstrap administrator's keys (break-glass); users and
 * keys held in Redis, with their permissions, are api/access.h's, which also makes the
 * decision on a request (access_check). */
#ifndef SHOAL_API_AUTH_H
#define SHOAL_API_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"
#include "http/http.h"

struct auth_keys;

#define AUTH_KEY_MIN 16 /* characters, after trimming blanks */

/* Loads the keys of cfg. Returns 0 and *out (which may hold no key), or SHOAL_ECONFIG with a
 * message in err naming the source (and the file's line), never the key: a key is too short,
 * the file cannot be read, or it holds no key. */
int auth_keys_load(const struct shoal_config *cfg, struct auth_keys **out, char *err,
                   size_t errlen);
/* A new set holding only k's keys from --api-key (k may be NULL): what a reload starts from. */
struct auth_keys *auth_keys_fixed(const struct auth_keys *k);
/* Adds the keys of the file at path to k: all of them, or none with SHOAL_ECONFIG and a message
 * in err (as auth_keys_load). Touches only k: safe off the loop thread for a k no one else
 * uses. */
int auth_keys_add_file(struct auth_keys *k, const char *path, char *err, size_t errlen);
void auth_keys_free(struct auth_keys *k);
size_t auth_keys_count(const struct auth_keys *k);

/* True when presented (n bytes) equals one of the keys: its SHA-256 digest is compared with
 * every key's by CRYPTO_memcmp, so neither a key's bytes nor which key matched leak through
 * timing. */
bool auth_keys_match(const struct auth_keys *k, const char *presented, size_t n);

/* The same with the presented key's SHA-256 digest already computed (32 bytes). */
bool auth_keys_match_digest(const struct auth_keys *k, const unsigned char *d);

/* The key ex presents (X-Octopus-ApiKey, else Authorization: Bearer), with its length, or NULL. */
const char *auth_presented(const struct http_exchange *ex, size_t *n);

#endif
