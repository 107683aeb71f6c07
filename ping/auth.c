/* auth.c: loading API keys and checking the one a request presents (see auth.h). */
#define _GNU_SOURCE
#include "ping/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/util.h"

struct auth_keys {
    char **keys;   /* owned, each owned */
    size_t n;
};

/* Adds s[0..len) trimmed of blanks, unless empty. */
static void add_key(struct auth_keys *k, const char *s, size_t len) {
    while (len && isspace((unsigned char)*s)) { s++; len--; }
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len == 0) return;
    k->keys = xrealloc(k->keys, (k->n + 1) * sizeof *k->keys);
    k->keys[k->n++] = xstrndup(s, len);
}

/* Reads one key a line from path; # starts a comment line. */
static int load_file(struct auth_keys *k, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--api-key-file %s: cannot read it: %s", path, strerror(errno));
        return SHOAL_ECONFIG;
    }
    size_t before = k->n, cap = 0;
    char *line = NULL;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) >= 0) {
        const char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (*p != '#') add_key(k, line, (size_t)got);
    }
    bool failed = ferror(f);
    free(line);
    fclose(f);
    if (failed || k->n == before) {
        snprintf(err, errlen, "--api-key-file %s: %s", path,
                 failed ? "read error" : "holds no key (one key a line)");
        return SHOAL_ECONFIG;
    }
    return 0;
}

int auth_keys_load(const struct shoal_config *cfg, struct auth_keys **out, char *err,
                   size_t errlen) {
    struct auth_keys *k = xcalloc(1, sizeof *k);
    for (const char *s = cfg->api_key; s && *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        add_key(k, s, len);
        s += len + (comma ? 1 : 0);
    }
    if (cfg->api_key_file && cfg->api_key_file[0]) {
        int rc = load_file(k, cfg->api_key_file, err, errlen);
        if (rc) {
            auth_keys_free(k);
            return rc;
        }
    }
    *out = k;
    return 0;
}

void auth_keys_free(struct auth_keys *k) {
    if (!k) return;
    for (size_t i = 0; i < k->n; i++) {
        /* Keys are secrets: wipe before freeing. */
        explicit_bzero(k->keys[i], strlen(k->keys[i]));
        free(k->keys[i]);
    }
    free(k->keys);
    free(k);
}

size_t auth_keys_count(const struct auth_keys *k) { return k ? k->n : 0; }

/* 0 when equal. Runs over the presented bytes only, whatever the key's length or content. */
static unsigned diff_ct(const char *key, const char *p, size_t n) {
    size_t klen = strlen(key);
    volatile unsigned d = (unsigned)(klen ^ n) | (klen == 0);
    for (size_t i = 0; i < n; i++) d |= (unsigned char)p[i] ^ (unsigned char)key[klen ? i % klen : 0];
    return d;
}

bool auth_keys_match(const struct auth_keys *k, const char *presented, size_t n) {
    unsigned ok = 0;
    for (size_t i = 0; k && i < k->n; i++) ok |= diff_ct(k->keys[i], presented, n) == 0;
    return ok != 0;
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

int auth_check(const struct auth_keys *k, const struct http_exchange *ex, const char **why) {
    size_t n = 0;
    const char *p = auth_presented(ex, &n);
    if (auth_keys_count(k) == 0) {
        *why = "this endpoint needs an API key and this node has none configured: start it "
               "with SHOAL_API_KEY=<key> (or --api-key) or SHOAL_API_KEY_FILE=<file with one "
               "key a line> (or --api-key-file)";
        return 403;
    }
    if (!p) {
        *why = "an API key is required: send it as X-Octopus-ApiKey: <key> or "
               "Authorization: Bearer <key>";
        return 401;
    }
    if (!auth_keys_match(k, p, n)) {
        *why = "the API key is not valid for this node";
        return 403;
    }
    return 0;
}
