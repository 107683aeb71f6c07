/* fuzz_url.c: libFuzzer on the Redis URL parser (common/rurl.c): redis://, rediss://, unix://,
 * redis-sentinel://, redis-cluster:// and their TLS forms rediss-sentinel:// and
 * rediss-cluster:// as they come from a flag, a variable or a file. The
 * input is split at its first NUL: the URL, then a namespace for the cluster slot.
 *
 * Invariants checked (abort on violation): a URL is accepted with a well-formed result or refused
 * with a non-empty message naming it; every string of an accepted result is terminated within
 * its field; ports are 1..65535 (a Sentinel or cluster URL's own port 0); the seed list holds
 * 1..8 entries exactly when Sentinel or cluster mode is on; a cluster's slot is 0..16383; TLS is
 * on exactly for the rediss forms, never for a unix socket, and TLS files are accepted with it
 * only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/rurl.h"

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static int terminated(const char *s, size_t n) { return memchr(s, '\0', n) != NULL; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    const char *ns = in + strlen(in) < in + size ? in + strlen(in) + 1 : "shoal";
    struct rurl u;
    char err[256];
    err[0] = '\0';
    int rc = rurl_parse(in, &u, err, sizeof err);
    if (rc != 0) {
        check(rc == SHOAL_EURL, "a refusal is SHOAL_EURL");
        check(err[0] != '\0', "a refusal says why");
        free(in);
        return 0;
    }
    check(terminated(u.host, sizeof u.host) && terminated(u.path, sizeof u.path) &&
              terminated(u.user, sizeof u.user) && terminated(u.pass, sizeof u.pass) &&
              terminated(u.master, sizeof u.master),
          "strings terminated in their fields");
    int seeded = u.nsentinels > 0;
    check(u.nsentinels >= 0 && u.nsentinels <= RURL_MAX_SENTINELS, "at most 8 seeds");
    for (int i = 0; i < u.nsentinels; i++) {
        check(terminated(u.sentinels[i].host, sizeof u.sentinels[i].host), "seed host terminated");
        check(u.sentinels[i].port >= 1 && u.sentinels[i].port <= 65535, "seed port in range");
    }
    if (seeded)
        check(u.port == 0, "Sentinel and cluster URLs have no port of their own");
    else if (!u.path[0])
        check(u.host[0] && u.port >= 1 && u.port <= 65535, "a TCP URL has a host and a port");
    check(!u.cluster || seeded, "a cluster URL names its seeds");
    check(u.tls ==
              (strncmp(in, "rediss://", 9) == 0 || strncmp(in, "rediss-sentinel://", 18) == 0 ||
               strncmp(in, "rediss-cluster://", 17) == 0),
          "TLS exactly for the rediss forms");
    check(!u.tls || !u.path[0], "no TLS to a unix socket");
    if (u.cluster) {
        rurl_cluster_namespace(&u, ns);
        check(u.slot >= 0 && u.slot <= 16383, "the slot is 0..16383");
    }
    int t = rurl_tls_files(&u, "/etc/ca.pem", NULL, NULL, err, sizeof err);
    check(u.tls ? t == 0 : t == SHOAL_ECONFIG, "TLS files only with the rediss forms");
    free(in);
    return 0;
}
