/* test_packages.c: package uploads against a real `shoal worker` and redis-server, over real
 * sockets: raw, multipart, chunked and Expect: 100-continue bodies (256 MiB in the default run,
 * generated on the fly and hashed by the client), download matching upload, listing, delete,
 * duplicates and the overwrite modes, concurrent uploads of one package, a client cut off
 * half-way, malformed multipart bodies, path traversal, keys, and the start-up sweep of crashed
 * uploads' temporary files. After every failure, nothing may remain: no file, no metadata. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/pkg_client.h"
#include "tests/harness.h"

#define KEY "pkg-test-key-0123456789"
#define SPACE "Spaces-1"
#define MiB (1024ull * 1024)

static struct h_redis redis;
static struct h_worker node;
static char pkgdir[160];

static void start_node(void) {
    const char *extra[] = {"--api-key", KEY, "--package-dir", pkgdir, "--cap", "0", NULL};
    h_worker_start(&node, &redis, "pkgnode", extra);
    if (!h_ping_is(&node, 200, 10000)) {
        char *log = h_read_file(node.log);
        cr_assert_fail("the node did not come up; its log:\n%s", log ? log : "(none)");
    }
}

static void setup(void) {
    cr_assert_eq(h_redis_start(&redis, NULL), 0, "redis-server did not start");
    snprintf(pkgdir, sizeof pkgdir, "%s/packages", redis.dir);
    start_node();
}

static void teardown(void) {
    if (node.pid > 0) cr_expect_eq(h_worker_stop(&node), 0, "the node must exit 0 on SIGTERM");
    h_redis_stop(&redis, false);
}

TestSuite(packages, .init = setup, .fini = teardown, .timeout = 120);

/* Files in the space directory (temporary ones included), "" when none. */
static void space_files(char *out, size_t len) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/" SPACE, pkgdir);
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        strncat(out, e->d_name, len - strlen(out) - 2);
        strcat(out, " ");
    }
    closedir(d);
}

static bool no_temp_files(void *arg) {
    char files[4096];
    space_files(files, sizeof files);
    return strstr(files, ".upload-") == NULL;
}

static long long redis_exists(const char *key) {
    redisContext *c = h_redis_connect(&redis);
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    long long n = r ? r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* "Hash":"..." of a package JSON. */
static void json_hash(const char *body, char out[65]) {
    const char *p = strstr(body, "\"Hash\":\"");
    out[0] = '\0';
    if (p) snprintf(out, 65, "%.64s", p + 8);
}

static struct pc_upload raw(const char *query, uint64_t size, uint64_t seed) {
    return (struct pc_upload){
        .space = SPACE, .query = query, .key = KEY, .size = size, .seed = seed};
}

static void upload_ok(const struct pc_upload *o, int want, struct pc_result *r) {
    cr_assert_eq(pc_upload(node.port, o, r), 0, "cannot connect");
    cr_assert_eq(r->status, want, "status %d, body %s", r->status, r->body);
}

/* Octopus's route from before spaces, POST /api/packages/raw (older uploaders use it), is the
 * default space's. Before, it was answered 413 "Request body too large" (no such route). */
Test(packages, legacy_route_without_a_space_uploads_to_the_default_space) {
    struct pc_result r;
    struct pc_upload o = raw("?filename=Legacy.2.0.0.zip", 1 * MiB + 3, 7);
    o.space = NULL;
    upload_ok(&o, 201, &r);
    cr_assert(strstr(r.body, "\"SpaceId\":\"Spaces-1\""), "%s", r.body);
    struct pc_result g;
    pc_request(node.port, "GET", "/api/Spaces-1/packages/Legacy.2.0.0", KEY, &g);
    cr_assert_eq(g.status, 200, "%s", g.body);
    cr_assert(strstr(g.body, r.sha), "%s", g.body);
}

Test(packages, raw_upload_get_list_download_delete) {
    struct pc_result r;
    struct pc_upload o = raw("?filename=MyApp.1.0.3.zip", 3 * MiB + 17, 1);
    upload_ok(&o, 201, &r);
    char hash[65];
    json_hash(r.body, hash);
    cr_assert_str_eq(hash, r.sha, "the node's SHA-256 differs from the client's");
    cr_assert(strstr(r.body, "\"Id\":\"packages-MyApp.1.0.3\""), "%s", r.body);
    cr_assert(
        strstr(r.body, "\"PackageId\":\"MyApp\",\"Version\":\"1.0.3\",\"SpaceId\":\"" SPACE "\""),
        "%s", r.body);
    cr_assert(strstr(r.body, "\"Size\":3145745"), "%s", r.body);

    char path[512];
    snprintf(path, sizeof path, "%s/" SPACE "/MyApp.1.0.3.zip", pkgdir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "the file is at %s", path);
    cr_assert_eq(st.st_size, 3 * MiB + 17);

    struct pc_result g;
    pc_request(node.port, "GET", "/api/" SPACE "/packages/packages-MyApp.1.0.3", KEY, &g);
    cr_assert_eq(g.status, 200, "%s", g.body);
    cr_assert(strstr(g.body, r.sha));
    pc_request(node.port, "GET", "/api/" SPACE "/packages/MyApp.1.0.3", KEY, &g);
    cr_assert_eq(g.status, 200, "the bare <PackageId>.<Version> works too");
    pc_request(node.port, "GET", "/api/" SPACE "/packages?take=10", KEY, &g);
    cr_assert_eq(g.status, 200, "%s", g.body);
    cr_assert(strstr(g.body, "\"TotalResults\":1"), "%s", g.body);
    cr_assert(strstr(g.body, "packages-MyApp.1.0.3"), "%s", g.body);
    pc_request(node.port, "GET", "/api/" SPACE "/packages?filter=nomatch", KEY, &g);
    cr_assert(strstr(g.body, "\"TotalResults\":0"), "%s", g.body);

    int status;
    uint64_t len;
    char dsha[65];
    pc_download(node.port, "/api/" SPACE "/packages/packages-MyApp.1.0.3/raw", KEY, &status, &len,
                dsha);
    cr_assert_eq(status, 200);
    cr_assert_eq(len, 3 * MiB + 17);
    cr_assert_str_eq(dsha, r.sha, "download matches upload");

    pc_request(node.port, "DELETE", "/api/" SPACE "/packages/packages-MyApp.1.0.3", KEY, &g);
    cr_assert_eq(g.status, 204, "%d %s", g.status, g.body);
    cr_assert_neq(stat(path, &st), 0, "the file is gone");
    pc_request(node.port, "GET", "/api/" SPACE "/packages/packages-MyApp.1.0.3", KEY, &g);
    cr_assert_eq(g.status, 404);
    pc_request(node.port, "DELETE", "/api/" SPACE "/packages/packages-MyApp.1.0.3", KEY, &g);
    cr_assert_eq(g.status, 404);
    cr_assert_eq(redis_exists("{shoal}:pkgs:" SPACE), 0);
}

Test(packages, multipart_256mib_expect_continue_then_download, .timeout = 180) {
    struct pc_result r;
    struct pc_upload o = {.space = SPACE,
                          .key = KEY,
                          .filename = "Big.App.2.0.0-beta.1.tar.gz",
                          .size = 256 * MiB,
                          .seed = 7,
                          .expect = true};
    upload_ok(&o, 201, &r);
    cr_assert(r.got_continue, "100 Continue before the body");
    char hash[65];
    json_hash(r.body, hash);
    cr_assert_str_eq(hash, r.sha);
    cr_assert(strstr(r.body, "\"PackageId\":\"Big.App\",\"Version\":\"2.0.0-beta.1\""), "%s",
              r.body);
    cr_assert(strstr(r.body, "\"FileExtension\":\".tar.gz\""), "%s", r.body);
    int status;
    uint64_t len;
    char dsha[65];
    pc_download(node.port, "/api/" SPACE "/packages/packages-Big.App.2.0.0-beta.1/raw", KEY,
                &status, &len, dsha);
    cr_assert_eq(status, 200);
    cr_assert_eq(len, 256 * MiB);
    cr_assert_str_eq(dsha, r.sha);
}

Test(packages, chunked_raw_and_chunked_multipart) {
    struct pc_result r;
    struct pc_upload o = raw("?filename=Chunky.1.0.0.nupkg", 5 * MiB + 3, 3);
    o.chunked = true;
    upload_ok(&o, 201, &r);
    char hash[65];
    json_hash(r.body, hash);
    cr_assert_str_eq(hash, r.sha);
    o = (struct pc_upload){.space = SPACE,
                           .key = KEY,
                           .filename = "Chunky.1.0.1.zip",
                           .size = 2 * MiB + 1,
                           .seed = 4,
                           .chunked = true,
                           .expect = true};
    upload_ok(&o, 201, &r);
    json_hash(r.body, hash);
    cr_assert_str_eq(hash, r.sha);
}

Test(packages, content_disposition_names_a_raw_body) {
    struct pc_result r;
    struct pc_upload o = raw("", 1000, 5);
    o.extra = "Content-Disposition: attachment; filename=\"Disp.3.2.1.zip\"\r\n";
    upload_ok(&o, 201, &r);
    cr_assert(strstr(r.body, "packages-Disp.3.2.1"), "%s", r.body);
}

Test(packages, client_cut_off_half_way_leaves_nothing) {
    struct pc_result r;
    struct pc_upload o = raw("?filename=Cut.1.0.0.zip", 64 * MiB, 6);
    o.cut_at = 8 * MiB;
    cr_assert_eq(pc_upload(node.port, &o, &r), 0);
    cr_assert(h_eventually(no_temp_files, NULL, 10000), "the temporary file must be removed");
    char files[4096];
    space_files(files, sizeof files);
    cr_assert_null(strstr(files, "Cut."), "no package file: %s", files);
    cr_assert_eq(redis_exists("{shoal}:pkg:" SPACE ":Cut.1.0.0"), 0);
    /* the same, multipart and chunked */
    o = (struct pc_upload){.space = SPACE,
                           .key = KEY,
                           .filename = "Cut.1.0.0.zip",
                           .size = 64 * MiB,
                           .seed = 6,
                           .chunked = true,
                           .cut_at = 3 * MiB};
    cr_assert_eq(pc_upload(node.port, &o, &r), 0);
    cr_assert(h_eventually(no_temp_files, NULL, 10000), "the temporary file must be removed");
    cr_assert_eq(redis_exists("{shoal}:pkg:" SPACE ":Cut.1.0.0"), 0);
    cr_assert(h_ping_is(&node, 200, 1000));
}

static bool has_temp_file(void *arg) { return !no_temp_files(arg); }

/* Raw bodies are read off the loop (http/server.c): a node stopped while two uploads stream in
 * closes their connections once each read in flight is back, exits 0, and keeps no package
 * (nor, after the start-up sweep, a temporary file). Under ASan this is where a connection
 * freed under a running read would show. */
Test(packages, node_stopped_during_uploads_exits_cleanly) {
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) { /* 4 GiB each: still sending when the node stops */
            char q[64];
            snprintf(q, sizeof q, "?filename=Stopped%d.1.0.0.zip", i);
            struct pc_result r;
            struct pc_upload o = raw(q, 4096 * MiB, (uint64_t)(300 + i));
            o.no_hash = true;
            pc_upload(node.port, &o, &r);
            _exit(r.status == 201 ? 1 : 0);
        }
    }
    cr_assert(h_eventually(has_temp_file, NULL, 10000), "the uploads did not start");
    cr_assert_eq(h_worker_stop(&node), 0, "the node must exit 0 on SIGTERM mid-upload");
    for (int i = 0; i < 2; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "upload %d was not cut off", i);
    }
    start_node();
    cr_assert(h_eventually(no_temp_files, NULL, 10000), "the temporary files must be removed");
    char files[4096];
    space_files(files, sizeof files);
    cr_assert_null(strstr(files, "Stopped"), "no package file: %s", files);
    cr_assert_eq(redis_exists("{shoal}:pkg:" SPACE ":Stopped0.1.0.0"), 0);
}

static void malformed(const char *body, const char *ctype, const char *want) {
    struct pc_result r;
    struct pc_upload o = {.space = SPACE, .key = KEY, .raw_body = body, .content_type = ctype};
    upload_ok(&o, 400, &r);
    cr_assert(strstr(r.body, want), "body %s lacks %s", r.body, want);
    cr_assert(h_eventually(no_temp_files, NULL, 5000));
}

#define B "----shoalTestBoundary7MA4YWxkTrZu0gW"
/* Multipart bodies are parsed off the loop, in place in the upload's buffers, with room left
 * for the delimiter bytes the parser holds back between reads. A file dense with near-miss
 * delimiters ("\r\n--" and every proper prefix of the boundary, lone CRs, CR CR LF) must come
 * out byte for byte: its size and SHA-256 as the client computed them. */
Test(packages, multipart_file_full_of_near_delimiters) {
    const char *head =
        "--" B "\r\nContent-Disposition: form-data; name=\"file\"; "
        "filename=\"Delim.1.0.0.zip\"\r\nContent-Type: application/octet-stream\r\n\r\n";
    const char *tail = "\r\n--" B "--\r\n";
    size_t cap = 7 * MiB, n = 0, blen = strlen(B);
    char *content = malloc(cap);
    for (unsigned i = 0; n + 256 < cap - 2 * blen; i++) {
        size_t k = i % blen; /* a proper prefix of the boundary: never the whole delimiter */
        const char *lead = (i % 3 == 0) ? "\r\n--" : (i % 3 == 1) ? "\r\r\n--" : "\r\n-\r\n--";
        n += (size_t)sprintf(content + n, "%s%.*s%c", lead, (int)k, B, 'a' + i % 26);
        for (unsigned j = 0; j < i % 97; j++) content[n++] = (char)(j % 7 ? 'x' : '\r');
    }
    char *body = malloc(strlen(head) + n + strlen(tail) + 1);
    size_t blen_all = (size_t)sprintf(body, "%s", head);
    memcpy(body + blen_all, content, n);
    strcpy(body + blen_all + n, tail);
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    EVP_DigestUpdate(sha, content, n);
    char want[65], got[65];
    pc_sha_done(sha, want);

    struct pc_result r;
    struct pc_upload o = {.space = SPACE, .key = KEY, .raw_body = body};
    upload_ok(&o, 201, &r);
    json_hash(r.body, got);
    cr_assert_str_eq(got, want, "the file came out changed: %s", r.body);
    char size[64];
    snprintf(size, sizeof size, "\"Size\":%zu,", n);
    cr_assert(strstr(r.body, size), "size %zu: %s", n, r.body);
    free(body);
    free(content);
}

/* %00 in a file name (RFC 5987 filename*=, raw or in a multipart part) is refused, not cut
 * short to a name the client did not send. */
Test(packages, percent_00_in_a_file_name_is_refused) {
    struct pc_result r;
    struct pc_upload o = {.space = SPACE,
                          .key = KEY,
                          .size = 10,
                          .seed = 3,
                          .extra = "Content-Disposition: attachment; "
                                   "filename*=UTF-8''Nul.1.0.0.zip%00.exe\r\n"};
    upload_ok(&o, 400, &r);
    cr_assert(strstr(r.body, "%00"), "%s", r.body);
    malformed("--" B "\r\nContent-Disposition: form-data; name=\"file\"; "
              "filename*=UTF-8''Nul.1.0.1.zip%00.exe\r\n\r\nx\r\n--" B "--\r\n",
              NULL, "%00");
    struct pc_result g;
    pc_request(node.port, "GET", "/api/" SPACE "/packages?filter=Nul", KEY, &g);
    cr_assert(strstr(g.body, "\"TotalResults\":0"), "%s", g.body);
}

Test(packages, malformed_multipart_variants) {
    const char *part =
        "--" B
        "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"M.1.0.0.zip\"\r\n\r\n";
    char body[1024];
    snprintf(body, sizeof body, "%sdata without a closing boundary", part);
    malformed(body, NULL, "ended before its closing boundary");
    malformed("--" B "\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nvalue\r\n--" B "--\r\n",
              NULL, "no file part");
    malformed("just bytes, no boundary at all", NULL, "holds no boundary");
    snprintf(body, sizeof body, "--" B "garbage\r\n");
    malformed(body, NULL, "boundary line"); /* "--Bgarbage" is no delimiter line */
    malformed("--" B "\r\nContent-Disposition: attachment\r\n\r\nx\r\n--" B "--\r\n", NULL,
              "not form-data");
    malformed("x", "multipart/form-data", "boundary");
    /* a delimiter with more after it: the boundary must never occur in data, so this is an error */
    snprintf(body, sizeof body, "%sdata\r\n--" B "X\r\n", part);
    malformed(body, NULL, "boundary line");
    snprintf(body, sizeof body, "%sdata\r\n--" B "\r\nno headers end", part);
    malformed(body, NULL, "closing boundary");
    cr_assert_eq(redis_exists("{shoal}:pkg:" SPACE ":M.1.0.0"), 0);
}

Test(packages, path_traversal_and_bad_names_refused) {
    const char *names[] = {"..%2F..%2Fevil.1.0.0.zip",
                           "a%2Fb.1.0.0.zip",
                           "a%5Cb.1.0.0.zip",
                           "..evil.1.0.0.zip",
                           "MyApp..zip",
                           "MyApp.zip",
                           "MyApp.1.0.0.exe",
                           ".hidden.1.0.0.zip",
                           "MyApp.1.0.0..zip",
                           NULL};
    for (int i = 0; names[i]; i++) {
        char q[128];
        struct pc_result r;
        snprintf(q, sizeof q, "?filename=%s", names[i]);
        struct pc_upload o = raw(q, 100, 8);
        upload_ok(&o, 400, &r);
    }
    const char *parts[] = {"../../evil.1.0.0.zip", "C:\\\\x\\\\App.1.0.0.zip", "App..zip", NULL};
    for (int i = 0; parts[i]; i++) {
        struct pc_result r;
        struct pc_upload o = {
            .space = SPACE, .key = KEY, .filename = parts[i], .size = 100, .seed = 9};
        upload_ok(&o, 400, &r);
    }
    struct pc_result r;
    struct pc_upload o = raw("?filename=Ok.1.0.0.zip", 10, 1);
    o.space = "..";
    cr_assert_eq(pc_upload(node.port, &o, &r), 0);
    cr_assert(r.status == 400 || r.status == 404, "status %d", r.status);
    cr_assert(h_eventually(no_temp_files, NULL, 5000));
    struct stat st;
    char evil[300];
    snprintf(evil, sizeof evil, "%s/../evil.1.0.0.zip", pkgdir);
    cr_assert_neq(stat(evil, &st), 0);
}

Test(packages, duplicate_versions_and_overwrite_modes) {
    struct pc_result a, b;
    struct pc_upload o = raw("?filename=Dup.1.0.0.zip", 100000, 10);
    upload_ok(&o, 201, &a);
    o.seed = 11;
    upload_ok(&o, 400, &b);
    cr_assert(strstr(b.body, "A package with the same ID and version already exists. To proceed "
                             "anyway, specify an overwriteMode of OverwriteExisting or "
                             "IgnoreIfExists."),
              "%s", b.body);
    o.expect = true; /* refused before the body: no 100 Continue */
    upload_ok(&o, 400, &b);
    cr_assert_not(b.got_continue);
    o.expect = false;
    struct pc_upload m = {
        .space = SPACE, .key = KEY, .filename = "Dup.1.0.0.zip", .size = 1000, .seed = 12};
    upload_ok(&m, 400, &b); /* multipart: found at commit */
    o.query = "?filename=Dup.1.0.0.zip&overwriteMode=IgnoreIfExists";
    upload_ok(&o, 200, &b);
    char h[65];
    json_hash(b.body, h);
    cr_assert_str_eq(h, a.sha, "ignore keeps the first");
    o.query = "?filename=Dup.1.0.0.zip&replace=true";
    upload_ok(&o, 201, &b);
    json_hash(b.body, h);
    cr_assert_str_eq(h, b.sha, "replace takes the new one");
    o.query = "?filename=Dup.1.0.0.zip&overwriteMode=OverwriteExisting";
    o.seed = 13;
    upload_ok(&o, 201, &b);
    int status;
    uint64_t len;
    char d[65];
    pc_download(node.port, "/api/" SPACE "/packages/packages-Dup.1.0.0/raw", KEY, &status, &len, d);
    cr_assert_str_eq(d, b.sha);
    o.query = "?filename=Dup.1.0.0.zip&overwriteMode=Sometimes";
    upload_ok(&o, 400, &b);
    cr_assert(h_eventually(no_temp_files, NULL, 5000));
}

/* Two processes upload the same package at once, n times: the recorded hash is always the
 * file's, and per mode one wins (fail) or both succeed (overwrite). */
static void race(const char *query, bool overwrite) {
    for (int round = 0; round < 4; round++) {
        int fds[2][2];
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(pipe(fds[i]), 0);
            pids[i] = fork();
            if (pids[i] == 0) {
                struct pc_result r;
                struct pc_upload o =
                    raw(query, 4 * MiB + (uint64_t)i, (uint64_t)(100 + 2 * round + i));
                pc_upload(node.port, &o, &r);
                char line[128];
                int n = snprintf(line, sizeof line, "%d %s\n", r.status, r.sha);
                if (write(fds[i][1], line, (size_t)n) < 0) _exit(1);
                _exit(0);
            }
            close(fds[i][1]);
        }
        int status[2], created = 0, conflicts = 0;
        char sha[2][65];
        for (int i = 0; i < 2; i++) {
            char line[128] = {0};
            cr_assert_gt(read(fds[i][0], line, sizeof line - 1), 0);
            close(fds[i][0]);
            waitpid(pids[i], NULL, 0);
            sscanf(line, "%d %64s", &status[i], sha[i]);
            created += status[i] == 201;
            conflicts += status[i] == 400 || status[i] == 409; /* exists, or locked */
        }
        if (overwrite)
            cr_assert_eq(created, 2, "both overwrite: %d %d", status[0], status[1]);
        else
            cr_assert(created == 1 && conflicts == 1, "one wins: %d %d", status[0], status[1]);
        struct pc_result g;
        int st;
        uint64_t len;
        char d[65], h[65];
        pc_request(node.port, "GET", "/api/" SPACE "/packages/packages-Race.1.0.0", KEY, &g);
        json_hash(g.body, h);
        pc_download(node.port, "/api/" SPACE "/packages/packages-Race.1.0.0/raw", KEY, &st, &len,
                    d);
        cr_assert_str_eq(d, h, "the file is the one recorded");
        cr_assert(!strcmp(d, sha[0]) || !strcmp(d, sha[1]), "never a mixed file");
        pc_request(node.port, "DELETE", "/api/" SPACE "/packages/packages-Race.1.0.0", KEY, &g);
    }
    cr_assert(h_eventually(no_temp_files, NULL, 5000));
}

Test(packages, concurrent_uploads_of_one_package) {
    race("?filename=Race.1.0.0.zip", false);
    race("?filename=Race.1.0.0.zip&replace=true", true);
}

Test(packages, concurrent_uploads_of_different_packages) {
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char q[64];
            snprintf(q, sizeof q, "?filename=Many%d.1.0.0.zip", i);
            struct pc_result r;
            struct pc_upload o = raw(q, 8 * MiB, (uint64_t)(200 + i));
            pc_upload(node.port, &o, &r);
            _exit(r.status == 201 && strstr(r.body, r.sha) ? 0 : 1);
        }
    }
    for (int i = 0; i < 4; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "upload %d failed", i);
    }
    struct pc_result g;
    pc_request(node.port, "GET", "/api/" SPACE "/packages?filter=many", KEY, &g);
    cr_assert(strstr(g.body, "\"TotalResults\":4"), "%s", g.body);
}

Test(packages, keys_required) {
    struct pc_result r;
    struct pc_upload o = raw("?filename=K.1.0.0.zip", 10, 1);
    o.key = NULL;
    upload_ok(&o, 401, &r);
    o.key = "wrong";
    upload_ok(&o, 403, &r);
    pc_request(node.port, "GET", "/api/" SPACE "/packages", NULL, &r);
    cr_assert_eq(r.status, 401);
    pc_request(node.port, "GET", "/api/" SPACE "/packages", "wrong", &r);
    cr_assert_eq(r.status, 403);
    cr_assert(no_temp_files(NULL));
}

Test(packages, crashed_upload_temp_files_removed_at_start) {
    cr_assert_eq(h_worker_stop(&node), 0);
    char dir[256], own[320], other_old[320], other_new[320];
    snprintf(dir, sizeof dir, "%s/" SPACE, pkgdir);
    mkdir(pkgdir, 0755);
    mkdir(dir, 0755);
    snprintf(own, sizeof own, "%s/.upload-pkgnode-0123456789abcdef.tmp", dir);
    snprintf(other_old, sizeof other_old, "%s/.upload-othernode-0123456789abcdef.tmp", dir);
    snprintf(other_new, sizeof other_new, "%s/.upload-othernode-fedcba9876543210.tmp", dir);
    const char *files[] = {own, other_old, other_new};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(files[i], "w");
        cr_assert_not_null(f);
        fputs("partial", f);
        fclose(f);
    }
    struct timespec old[2] = {{.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};
    utimensat(AT_FDCWD, other_old, old, 0);
    start_node();
    struct stat st;
    cr_assert_neq(stat(own, &st), 0, "this node's crashed upload is removed");
    cr_assert_neq(stat(other_old, &st), 0, "an old orphan of another node is removed");
    cr_assert_eq(stat(other_new, &st), 0, "another node's recent upload may be live: kept");
}

/* A task naming a package gets its path in SHOAL_PACKAGE_PATH; an unknown one fails clearly. */
Test(packages, exec_task_gets_the_package_path) {
    struct pc_result r;
    struct pc_upload o = raw("?filename=Tool.2.0.0.tar.gz", 1 * MiB + 5, 9);
    upload_ok(&o, 201, &r);
    struct h_worker runner;
    const char *extra[] = {"--package-dir", pkgdir, "--allow-exec", "/bin/", NULL};
    h_worker_start(&runner, &redis, "pkgrunner", extra);
    cr_assert(h_ping_is(&runner, 200, 10000));
    char *out = NULL;
    const char *enq[] = {"enqueue", "--package", SPACE "/Tool.2.0.0",
                         "--redis", redis.url,   "--",
                         "/bin/sh", "-c",        "sha256sum \"$SHOAL_PACKAGE_PATH\"",
                         NULL};
    cr_assert_eq(h_shoal(&out, NULL, enq), 0);
    char id[64];
    cr_assert_eq(sscanf(out, "%63s", id), 1);
    free(out);
    const char *wait[] = {"wait", id, "--timeout", "10s", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, wait), 0, "%s", out);
    free(out);
    const char *log[] = {"task", id, "--log", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, log), 0);
    cr_assert(strstr(out, r.sha) && strstr(out, "Tool.2.0.0.tar.gz"), "%s", out);
    free(out);
    const char *missing[] = {"enqueue", "--package", SPACE "/Nope.1.0.0", "--redis",
                             redis.url, "--",        "/bin/true",         NULL};
    cr_assert_eq(h_shoal(&out, NULL, missing), 0);
    cr_assert_eq(sscanf(out, "%63s", id), 1);
    free(out);
    const char *wait2[] = {"wait", id, "--timeout", "10s", "--redis", redis.url, NULL};
    cr_assert_eq(h_shoal(&out, NULL, wait2), 10, "Failed");
    cr_assert(strstr(out, "not in this node's --package-dir"), "%s", out);
    free(out);
    cr_assert_eq(h_worker_stop(&runner), 0);
}

/* ---- how the bytes reach the disk ---- */

/* Whether dir's file system takes O_DIRECT (tmpfs before Linux 6.6 does not). */
static bool direct_io_works(const char *dir) {
    char path[300];
    snprintf(path, sizeof path, "%s/.direct-probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    unlink(path);
    if (fd < 0) return false;
    close(fd);
    return true;
}

static int log_count(const char *what) {
    char *log = h_read_file(node.log);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, what)); p += strlen(what)) n++;
    free(log);
    return n;
}

/* Uploads size bytes as Edge.<version>.zip, checks the answer, the file and a download. */
static void upload_checked(const char *version, uint64_t size, uint64_t seed) {
    char q[128], path[512], dl[256];
    snprintf(q, sizeof q, "?filename=Edge.%s.zip", version);
    struct pc_upload o = raw(q, size, seed);
    struct pc_result r;
    upload_ok(&o, 201, &r);
    char hash[65];
    json_hash(r.body, hash);
    cr_assert_str_eq(hash, r.sha, "%llu bytes: the node's SHA-256 differs",
                     (unsigned long long)size);
    snprintf(path, sizeof path, "%s/" SPACE "/Edge.%s.zip", pkgdir, version);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, size, "%llu bytes: the file has %lld (padding left?)",
                 (unsigned long long)size, (long long)st.st_size);
    snprintf(dl, sizeof dl, "/api/" SPACE "/packages/packages-Edge.%s/raw", version);
    int status;
    uint64_t len;
    char dsha[65];
    pc_download(node.port, dl, KEY, &status, &len, dsha);
    cr_assert_eq(status, 200);
    cr_assert_eq(len, size);
    cr_assert_str_eq(dsha, r.sha, "%llu bytes: download matches upload", (unsigned long long)size);
}

/* O_DIRECT writes whole blocks: sizes around a block and around a 2 MiB buffer are padded and
 * cut back exactly. The log says which way the bytes went. */
Test(packages, direct_io_sizes_around_blocks_and_buffers, .timeout = 180) {
    const uint64_t sizes[] = {
        1, 4095, 4096, 4097, 2 * MiB - 1, 2 * MiB, 2 * MiB + 1, 12 * MiB + 4095, 13 * MiB};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char v[16];
        snprintf(v, sizeof v, "1.0.%u", i);
        upload_checked(v, sizes[i], 100 + i);
    }
    bool direct = direct_io_works(pkgdir);
    cr_assert_eq(log_count(direct ? "io=direct" : "io=cached"), 9, "%s",
                 direct ? "the package directory takes O_DIRECT, so every upload must use it"
                        : "without O_DIRECT every upload goes through the page cache");
}

/* --no-package-direct-io: through the page cache, same results. */
Test(packages, page_cache_with_no_package_direct_io, .timeout = 180) {
    cr_assert_eq(h_worker_stop(&node), 0);
    const char *extra[] = {"--api-key", KEY, "--package-dir",          pkgdir,
                           "--cap",     "0", "--no-package-direct-io", NULL};
    h_worker_start(&node, &redis, "pkgnode", extra);
    if (!h_ping_is(&node, 200, 10000)) {
        char *log = h_read_file(node.log);
        cr_assert_fail("the node did not come up; its log:\n%s", log ? log : "(none)");
    }
    upload_checked("2.0.0", 2 * MiB + 4097, 7);
    upload_checked("2.0.1", 40 * MiB + 1, 8); /* past one writeback fdatasync */
    cr_assert_eq(log_count("io=cached"), 2);
    cr_assert_eq(log_count("io=direct"), 0);
}

/* Octopus's listing parameters: nuGetPackageId (one PackageId, case-insensitive) and latest
 * (the newest version of each PackageId). Before, both were accepted and ignored. */
Test(packages, listing_by_package_id_and_latest) {
    struct pc_result r;
    struct pc_upload a = raw("?filename=Lister.1.0.0.zip", 1000, 1);
    upload_ok(&a, 201, &r);
    struct pc_upload b = raw("?filename=Lister.1.1.0.zip", 1000, 2);
    upload_ok(&b, 201, &r);
    struct pc_upload o = raw("?filename=Other.2.0.0.zip", 1000, 3);
    upload_ok(&o, 201, &r);
    struct pc_result g;
    pc_request(node.port, "GET", "/api/" SPACE "/packages?nuGetPackageId=lister", KEY, &g);
    cr_assert_eq(g.status, 200, "%s", g.body);
    cr_assert(strstr(g.body, "\"TotalResults\":2"), "%s", g.body);
    cr_assert(!strstr(g.body, "Other"), "%s", g.body);
    pc_request(node.port, "GET", "/api/" SPACE "/packages?latest=true", KEY, &g);
    cr_assert(strstr(g.body, "\"TotalResults\":2"), "%s", g.body);
    cr_assert(strstr(g.body, "packages-Lister.1.1.0") && !strstr(g.body, "packages-Lister.1.0.0"),
              "%s", g.body);
    pc_request(node.port, "GET", "/api/" SPACE "/packages?nuGetPackageId=Lister&latest=true", KEY,
               &g);
    cr_assert(strstr(g.body, "\"TotalResults\":1"), "%s", g.body);
    cr_assert(strstr(g.body, "\"Version\":\"1.1.0\""), "%s", g.body);
}
