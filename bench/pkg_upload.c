/* pkg_upload.c: uploads a generated package of SIZE MiB to a node and checks that the node's
 * size and SHA-256 are the client's (the body is made on the fly and never stored whole), then
 * optionally downloads it back and checks its hash. Used by scripts/bench-packages.sh.
 *
 * The expected SHA-256 is computed in a pass of its own before the timed upload, so that the
 * client's hashing does not compete with the node for the CPU during the measurement.
 *
 * Usage: pkg_upload PORT KEY SIZE_MIB NAME [raw|multipart] [download|repeat=SECONDS]
 * Prints "upload <bytes> bytes in <s> s: <MB/s> MB/s, sha256 ok" (and the same for download);
 * exits 1 when the status, size or hash is wrong. repeat=SECONDS: uploads the same package
 * again (replacing it) until SECONDS have passed, from one process (a shell loop starting one
 * per upload adds its own fork, exec and dynamic linking at normal priority to what a probe
 * sharing the machine measures), then prints "repeated <n> uploads in <s> s". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/pkg_client.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: pkg_upload PORT KEY SIZE_MIB NAME [raw|multipart] [download]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    uint64_t size = strtoull(argv[3], NULL, 10) << 20;
    const char *name = argv[4];
    bool multipart = argc > 5 && strcmp(argv[5], "multipart") == 0;
    bool download = argc > 6 && strcmp(argv[6], "download") == 0;
    double repeat = argc > 6 && strncmp(argv[6], "repeat=", 7) == 0 ? atof(argv[6] + 7) : 0;
    if (repeat < 0 || repeat > 3600) {
        fprintf(stderr, "pkg_upload: repeat= takes 0-3600 seconds\n");
        return 2;
    }
    char query[256];
    snprintf(query, sizeof query, "?replace=true%s%s",
             multipart ? "" : "&filename=", multipart ? "" : name);
    struct pc_upload o = {.space = "Spaces-1",
                          .query = query,
                          .key = argv[2],
                          .size = size,
                          .seed = (uint64_t)time(NULL),
                          .expect = true,
                          .filename = multipart ? name : NULL,
                          .no_hash = true};
    struct pc_result r;
    char expected[65];
    pc_expected_sha(o.seed, size, expected); /* before the clock starts: the node is timed */
    char want[96];
    snprintf(want, sizeof want, "\"Hash\":\"%s\"", expected);
    char size_field[64];
    snprintf(size_field, sizeof size_field, "\"Size\":%llu,", (unsigned long long)size);
    double start = now(), t0, t;
    unsigned n = 0;
    do { /* once, or until repeat seconds have passed */
        t0 = now();
        if (pc_upload(port, &o, &r) != 0) {
            fprintf(stderr, "pkg_upload: cannot connect to port %d\n", port);
            return 1;
        }
        t = now() - t0;
        memcpy(r.sha, expected, sizeof expected);
        if (r.status != 201 || !strstr(r.body, want) || !strstr(r.body, size_field)) {
            fprintf(stderr, "pkg_upload: status %d, body %s (client sha256 %s)\n", r.status, r.body,
                    r.sha);
            return 1;
        }
        if (n++ == 0)
            printf("upload %llu bytes in %.2f s: %.0f MB/s, size and sha256 match\n",
                   (unsigned long long)size, t, (double)size / t / 1e6);
    } while (now() - start < repeat);
    if (repeat > 0) printf("repeated %u uploads in %.1f s\n", n, now() - start);
    if (!download) return 0;
    char path[512], sha[65];
    const char *dot = strstr(name, ".zip");
    snprintf(path, sizeof path, "/api/Spaces-1/packages/packages-%.*s/raw",
             dot ? (int)(dot - name) : (int)strlen(name), name);
    int status;
    uint64_t len;
    t0 = now();
    pc_download(port, path, argv[2], &status, &len, sha);
    t = now() - t0;
    if (status != 200 || len != size || strcmp(sha, r.sha) != 0) {
        fprintf(stderr, "pkg_upload: download status %d, %llu bytes, sha256 %s\n", status,
                (unsigned long long)len, sha);
        return 1;
    }
    printf("download %llu bytes in %.2f s: %.0f MB/s, sha256 matches the upload\n",
           (unsigned long long)len, t, (double)len / t / 1e6);
    return 0;
}
