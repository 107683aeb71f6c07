/* packages.c: `shoal packages [--space S] [--json]`: the package feed as Redis records it (the
 * same lua/package_list.lua the HTTP listing runs), every space or one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/package.h"
#include "common/reply.h"
#include "common/util.h"

static const char packages_usage[] =
    "shoal packages [--space S] [--json]\n\n"
    "Uploaded packages, newest first: space, PackageId, Version, size, published, SHA-256.\n"
    "Without --space, every space that has packages.";

static const char *or_empty(const char *s) { return s ? s : ""; }

#define PAGE 500 /* packages per package_list.lua call (each call bounded) */

static void print_page(const redisReply *r, const char *space, struct json *j);

/* Prints (or adds to j) one space's packages, a page of PAGE per call. Returns 0 or -1 after
 * printing why. */
static int list_space(struct cli *c, const char *space, struct json *j) {
    for (int64_t skip = 0;; skip += PAGE) {
        char err[256];
        struct script_call call;
        struct call_package_list_args a = {"", skip, PAGE, "", false, 0};
        call_package_list(&call, &c->keys, space, &a);
        redisReply *r = rsync_call(&c->redis, &call, err, sizeof err);
        call_free(&call);
        if (!r) return cli_fail(c, EXIT_FAIL, "%s", err), -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
            cli_fail(c, EXIT_FAIL, "unexpected reply from Redis: %s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "wrong shape");
            freeReplyObject(r);
            return -1;
        }
        int64_t total = r->element[0]->integer;
        print_page(r, space, j);
        freeReplyObject(r);
        if (skip + PAGE >= total) return 0;
    }
}

/* One page's packages (reply elements from 2). */
static void print_page(const redisReply *r, const char *space, struct json *j) {
    for (size_t i = 2; i < r->elements; i++) {
        const redisReply *h = r->element[i];
        if (h->type != REDIS_REPLY_ARRAY) continue;
        int64_t published = strtoll(or_empty(reply_field(h, 0, "published")), NULL, 10);
        if (j) {
            json_obj_open(j);
            json_key(j, "Id");
            json_str(j, reply_field(h, 0, "id"));
            json_key(j, "SpaceId");
            json_str(j, space);
            json_key(j, "PackageId");
            json_str(j, reply_field(h, 0, "package_id"));
            json_key(j, "Version");
            json_str(j, reply_field(h, 0, "version"));
            json_key(j, "FileExtension");
            json_str(j, reply_field(h, 0, "ext"));
            json_key(j, "Size");
            json_int(j, strtoll(or_empty(reply_field(h, 0, "size")), NULL, 10));
            json_key(j, "Hash");
            json_str(j, reply_field(h, 0, "hash"));
            json_key(j, "Published");
            json_time(j, published);
            json_key(j, "File");
            json_str(j, reply_field(h, 0, "file"));
            json_obj_close(j);
        } else {
            char when[40];
            iso8601_ms(published, when, sizeof when);
            printf("%-12s  %-30s  %-16s  %12s  %-29s  %s\n", space,
                   or_empty(reply_field(h, 0, "package_id")),
                   or_empty(reply_field(h, 0, "version")), or_empty(reply_field(h, 0, "size")),
                   when, or_empty(reply_field(h, 0, "hash")));
        }
    }
}

int cmd_packages(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "space", .has_value = true}, {.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 2, 0, 0, packages_usage, &code)) return code;
    const char *one = flags[0].set ? flags[0].value : NULL;
    if (one && !package_space_valid(one)) {
        code = cli_fail(&c, EXIT_USAGE, "'%s' is not a space name (1-64 of A-Z a-z 0-9 _ -)", one);
        cli_close(&c);
        return code;
    }
    char spaces_k[160], err[256];
    keys_package_spaces(&c.keys, spaces_k, sizeof spaces_k);
    redisReply *sp = one ? NULL : rsync_cmd(&c.redis, err, sizeof err, "SMEMBERS %s", spaces_k);
    if (!one && (!sp || sp->type != REDIS_REPLY_ARRAY)) {
        code = cli_fail(&c, EXIT_FAIL, "%s", sp ? "unexpected reply from Redis" : err);
        if (sp) freeReplyObject(sp);
        cli_close(&c);
        return code;
    }
    struct buf b;
    struct json j;
    bool as_json = flags[1].set;
    buf_init(&b);
    json_init(&j, &b);
    if (as_json)
        json_arr_open(&j);
    else
        printf("%-12s  %-30s  %-16s  %12s  %-29s  %s\n", "SPACE", "PACKAGE", "VERSION", "SIZE",
               "PUBLISHED", "SHA-256");
    size_t n = one ? 1 : sp->elements;
    for (size_t i = 0; i < n && code == EXIT_OK; i++) {
        const char *space = one ? one : sp->element[i]->str;
        if (list_space(&c, space, as_json ? &j : NULL) != 0) code = EXIT_FAIL;
    }
    if (as_json && code == EXIT_OK) {
        json_arr_close(&j);
        printf("%s\n", b.data);
    }
    buf_free(&b);
    if (sp) freeReplyObject(sp);
    cli_close(&c);
    return code;
}
