/* auth.h: API keys for the keyed HTTP routes.
 *
 * Keys come from --api-key / SHOAL_API_KEY (a comma list) and --api-key-file /
 * SHOAL_API_KEY_FILE (one key a line, blank lines and # comments skipped), read once at
 * start-up: a restart picks up a changed file. A request presents its key as
 * `X-Octopus-ApiKey: KEY` or `Authorization: Bearer KEY`; it is compared with every configured
 * key in time that depends only on the presented length. No key ever reaches a log line, an
 * error message or a response. */
#ifndef SHOAL_PING_AUTH_H
#define SHOAL_PING_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"
#include "ping/http.h"

struct auth_keys;

/* Loads the keys of cfg. Returns 0 and *out (which may hold no key), or SHOAL_ECONFIG with a
 * message naming the file in err: it cannot be read, or it holds no key. */
int auth_keys_load(const struct shoal_config *cfg, struct auth_keys **out, char *err,
                   size_t errlen);
void auth_keys_free(struct auth_keys *k);
size_t auth_keys_count(const struct auth_keys *k);

/* True when presented (n bytes) equals one of the keys. Every key is compared, each in time
 * that depends on n only, so neither a key's bytes nor which key matched leak through timing. */
bool auth_keys_match(const struct auth_keys *k, const char *presented, size_t n);

/* The key ex presents (X-Octopus-ApiKey, else Authorization: Bearer), with its length, or NULL. */
const char *auth_presented(const struct http_exchange *ex, size_t *n);

/* The decision for ex: 0 to proceed, else the status to answer (401 no key, 403 wrong key or
 * none configured) with a message for the body in *why (static text). */
int auth_check(const struct auth_keys *k, const struct http_exchange *ex, const char **why);

#endif
