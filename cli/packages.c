/* packages.c: `shoal packages [--space S] [--json]`: the package feed as Redis records it (the
 * same lua/package_list.lua the HTTP listing runs), every space or one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/package.h"
#include "common/util.h"

static const char packages_usage[] =
    "shoal packages [--space S] [--json]\n\n"
    "Uploaded packages, newest first: space, PackageId, Version, size, published, SHA-256.\n"
    "Without --space, every space that has packages.";

static const char *field(const redisReply *h, const char *name) {
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0)
            return h->element[i + 1]->type == REDIS_REPLY_STRING ? h->element[i + 1]->str : NULL;
    return NULL;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* Prints (or adds to j) one space's packages. Returns 0 or -1 after printing why. */
static int list_space(struct cli *c, const char *space, struct json *j) {
    char index[256], prefix[256], err[256];
    package_index_key(c->keys.prefix, space, index, sizeof index);
    snprintf(prefix, sizeof prefix, "%spkg:%s:", c->keys.prefix, space);
    const char *argv[] = {index, prefix, "", "0", "1000000"};
    redisReply *r = rsync_eval(&c->redis, SCRIPT_PACKAGE_LIST, 1, 5, argv, NULL, err, sizeof err);
    if (!r) return cli_fail(c, EXIT_FAIL, "%s", err), -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        cli_fail(c, EXIT_FAIL, "unexpected reply from Redis: %s", r->type == REDIS_REPLY_ERROR ? r->str : "wrong shape");
        freeReplyObject(r);
        return -1;
    }
    for (size_t i = 1; i < r->elements; i++) {
        const redisReply *h = r->element[i];
        if (h->type != REDIS_REPLY_ARRAY) continue;
        int64_t published = strtoll(or_empty(field(h, "published")), NULL, 10);
        if (j) {
            json_obj_open(j);
            json_key(j, "Id"); json_str(j, field(h, "id"));
            json_key(j, "SpaceId"); json_str(j, space);
            json_key(j, "PackageId"); json_str(j, field(h, "package_id"));
            json_key(j, "Version"); json_str(j, field(h, "version"));
            json_key(j, "FileExtension"); json_str(j, field(h, "ext"));
            json_key(j, "Size"); json_int(j, strtoll(or_empty(field(h, "size")), NULL, 10));
            json_key(j, "Hash"); json_str(j, field(h, "hash"));
            json_key(j, "Published"); json_time(j, published);
            json_key(j, "File"); json_str(j, field(h, "file"));
            json_obj_close(j);
        } else {
            char when[40];
            iso8601_ms(published, when, sizeof when);
            printf("%-12s  %-30s  %-16s  %12s  %-29s  %s\n", space, or_empty(field(h, "package_id")),
                   or_empty(field(h, "version")), or_empty(field(h, "size")), when,
                   or_empty(field(h, "hash")));
        }
    }
    freeReplyObject(r);
    return 0;
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
    package_spaces_key(c.keys.prefix, spaces_k, sizeof spaces_k);
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
    if (as_json) json_arr_open(&j);
    else printf("%-12s  %-30s  %-16s  %12s  %-29s  %s\n", "SPACE", "PACKAGE", "VERSION", "SIZE",
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
