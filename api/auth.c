/* auth.c: loading API keys and checking the one a request presents (see auth.h). Only the
 * SHA-256 digest of each key is kept; the text read is wiped once hashed. */
#define _GNU_SOURCE
#include "api/auth.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/util.h"

#define DIGEST_LEN 32 /* SHA-256 */

struct auth_keys {
    unsigned char (*digests)[DIGEST_LEN]; /* owned: one per key, in the order read */
    size_t n;
    size_t nfixed; /* the first nfixed came from --api-key (fixed for the process's life) */
};

static void digest(const char *s, size_t len, unsigned char out[DIGEST_LEN]) {
    unsigned int outlen = 0;
    if (EVP_Digest(s, len, out, &outlen, EVP_sha256(), NULL) != 1 || outlen != DIGEST_LEN)
        abort(); /* SHA-256 is always there: failing means a broken libcrypto */
}

/* Trims s[0..len) of blanks; adds its digest unless empty. Returns 0, or SHOAL_ECONFIG when the
 * key is shorter than AUTH_KEY_MIN (*got: its length). */
static int add_key(struct auth_keys *k, const char *s, size_t len, size_t *got) {
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1])) len--;
    *got = len;
    if (len == 0) return 0;
    if (len < AUTH_KEY_MIN) return SHOAL_ECONFIG;
    k->digests = xrealloc(k->digests, (k->n + 1) * sizeof *k->digests);
    digest(s, len, k->digests[k->n++]);
    return 0;
}

static const char too_short[] = "API keys need at least %d characters (make one with: "
                                "openssl rand -hex 24)";

int auth_keys_add_file(struct auth_keys *k, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--api-key-file %s: cannot read it: %s", path, strerror(errno));
        return SHOAL_ECONFIG;
    }
    size_t before = k->n, cap = 0, got = 0, lineno = 0;
    char *line = NULL;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        const char *p = line;
        lineno++;
        while (isspace((unsigned char)*p)) p++;
        if (*p != '#') rc = add_key(k, line, (size_t)len, &got);
        explicit_bzero(line, (size_t)len);
    }
    bool failed = ferror(f);
    free(line);
    fclose(f);
    if (rc == 0 && (failed || k->n == before)) {
        snprintf(err, errlen, "--api-key-file %s: %s", path,
                 failed ? "read error" : "holds no key (one key a line)");
        rc = SHOAL_ECONFIG;
    } else if (rc != 0) {
        char rule[120];
        snprintf(rule, sizeof rule, too_short, AUTH_KEY_MIN);
        snprintf(err, errlen, "--api-key-file %s: line %zu holds a key of %zu characters; %s", path,
                 lineno, got, rule);
    }
    if (rc != 0) k->n = before; /* all of the file or none of it */
    return rc;
}

int auth_keys_load(const struct shoal_config *cfg, struct auth_keys **out, char *err,
                   size_t errlen) {
    struct auth_keys *k = xcalloc(1, sizeof *k);
    size_t i = 0, got = 0;
    for (const char *s = cfg->api_key; s && *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        i++;
        if (add_key(k, s, len, &got) != 0) {
            char rule[120];
            snprintf(rule, sizeof rule, too_short, AUTH_KEY_MIN);
            snprintf(err, errlen,
                     "--api-key (SHOAL_API_KEY): key %zu of the comma list has %zu "
                     "characters; %s",
                     i, got, rule);
            auth_keys_free(k);
            return SHOAL_ECONFIG;
        }
        s += len + (comma ? 1 : 0);
    }
    k->nfixed = k->n;
    if (cfg->api_key_file && cfg->api_key_file[0]) {
        int rc = auth_keys_add_file(k, cfg->api_key_file, err, errlen);
        if (rc) {
            auth_keys_free(k);
            return rc;
        }
    }
    *out = k;
    return 0;
}

struct auth_keys *auth_keys_fixed(const struct auth_keys *k) {
    struct auth_keys *c = xcalloc(1, sizeof *c);
    c->n = c->nfixed = k ? k->nfixed : 0;
    if (c->n) {
        c->digests = xcalloc(c->n, sizeof *c->digests);
        memcpy(c->digests, k->digests, c->n * sizeof *c->digests);
    }
    return c;
}

void auth_keys_free(struct auth_keys *k) {
    if (!k) return;
    if (k->digests) explicit_bzero(k->digests, k->n * sizeof *k->digests);
    free(k->digests);
    free(k);
}

size_t auth_keys_count(const struct auth_keys *k) { return k ? k->n : 0; }

bool auth_keys_match_digest(const struct auth_keys *k, const unsigned char *d) {
    int ok = 0;
    for (size_t i = 0; k && i < k->n; i++) ok |= CRYPTO_memcmp(d, k->digests[i], DIGEST_LEN) == 0;
    return ok != 0;
}

bool auth_keys_match(const struct auth_keys *k, const char *presented, size_t n) {
    unsigned char d[DIGEST_LEN];
    digest(presented, n, d);
    bool ok = auth_keys_match_digest(k, d);
    explicit_bzero(d, sizeof d);
    return ok;
}

const char *auth_presented(const struct http_exchange *ex, size_t *n) {
    const char *v = http_header(ex, "X-Octopus-ApiKey");
    if (!v) {
        const char *a = http_header(ex, "Authorization");
        if (a && strncasecmp(a, "Bearer ", 7) == 0) v = a + 7;
    }
    if (!v) return NULL;
    while (*v == ' ' || *v == '\t') v++;
    size_t len = strlen(v);
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t')) len--;
    if (len == 0) return NULL;
    *n = len;
    return v;
}
