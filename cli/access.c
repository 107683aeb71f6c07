/* access.c: `shoal user`, `shoal apikey` and `shoal events`: users, API keys and the audit
 * trail in Redis (common/access.h). The CLI talks to Redis, so it is trusted like redis-cli;
 * every change it makes is written by lua/access_write.lua and audited with the OS user who ran
 * it. A new key is printed once, on stdout, and never stored: Redis holds its SHA-256. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/access.h"
#include "common/buf.h"
#include "common/util.h"

/* The OS user running the CLI, as the audit trail records it. */
static void cli_actor(struct access_actor *a) {
    memset(a, 0, sizeof *a);
    struct passwd *pw = getpwuid(geteuid());
    const char *name = pw && pw->pw_name ? pw->pw_name : getenv("USER");
    snprintf(a->user, sizeof a->user, "os:%s", name ? name : "unknown");
    snprintf(a->agent, sizeof a->agent, "shoal-cli/%s", SHOAL_VERSION);
    snprintf(a->via, sizeof a->via, "Redis (CLI)");
}

void cli_audit(struct cli *c, const char *category, const char *message, const char *related,
               const char *before, const char *after) {
    struct access_actor who;
    struct buf ev;
    char err[256], key[160], minid[24];
    int64_t now = clock_wall_ms();
    cli_actor(&who);
    buf_init(&ev);
    access_event_json(&ev, &who, category, message, related, before, after, now);
    snprintf(minid, sizeof minid, "%lld", (long long)(now - ACCESS_EVENT_RETENTION_MS));
    redisReply *r = rsync_cmd(&c->redis, err, sizeof err, "XADD %s MINID ~ %s * e %b",
                              keys_events(&c->keys, key, sizeof key), minid, ev.data, ev.len);
    if (!r || r->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "shoal %s: the audit event was not written: %s\n", c->cmd,
                r ? r->str : err);
    freeReplyObject(r);
    buf_free(&ev);
}

/* Runs one access_write.lua op with its audit event. Returns the reply (caller frees) or NULL
 * after printing why (Redis unreachable, or the script refused). */
static redisReply *write_op(struct cli *c, const char *op, const char *const *args, int nargs,
                            const char *category, const char *message, const char *related,
                            const char *before, const char *after) {
    struct access_actor who;
    struct buf ev;
    char err[256];
    int64_t now = clock_wall_ms();
    cli_actor(&who);
    buf_init(&ev);
    access_event_json(&ev, &who, category, message, related, before, after, now);
    struct script_call call;
    call_access_write(&call, &c->keys, now, ACCESS_EVENT_RETENTION_MS, ev.data, op, args, nargs);
    redisReply *r = rsync_call(&c->redis, &call, err, sizeof err);
    call_free(&call);
    buf_free(&ev);
    if (!r) {
        cli_fail(c, EXIT_FAIL, "%s", err);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        cli_reply_error(c, op, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Reads everything (access_load.lua) into s. Returns 0, or -1 after printing why. */
static int load(struct cli *c, struct access_snapshot *s) {
    char err[256];
    struct script_call call;
    call_access_load(&call, &c->keys, clock_wall_ms());
    redisReply *r = rsync_call(&c->redis, &call, err, sizeof err);
    call_free(&call);
    if (!r) return cli_fail(c, EXIT_FAIL, "%s", err), -1;
    int rc = r->type == REDIS_REPLY_ERROR ? -1 : access_snapshot_parse(r, s);
    if (rc) cli_fail(c, EXIT_FAIL, "unexpected reply from Redis");
    freeReplyObject(r);
    return rc;
}

static const char user_usage[] =
    "shoal user add NAME [--role R] [--display TEXT] [--service]\n"
    "shoal user list [--json]\n"
    "shoal user remove NAME\n\n"
    "Users of the HTTP API. Roles: viewer (TaskView, EventView, FeedView), buildserver\n"
    "(BuiltInFeedPush, FeedView), operator (everything but AdministerSystem and\n"
    "BuiltInFeedAdminister), administrator (everything). Removing a user revokes its keys on\n"
    "every node at once.";

int cmd_user(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "role", .has_value = true},
                               {.name = "display", .has_value = true},
                               {.name = "service"},
                               {.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 4, 1, 2, user_usage, &code)) return code;
    const char *sub = c.pos[0], *name = c.npos > 1 ? c.pos[1] : NULL;
    code = EXIT_OK;
    if (strcmp(sub, "add") == 0 && name) {
        const char *role = flags[0].set ? flags[0].value : "viewer";
        if (!access_name_valid(name)) {
            code = cli_fail(&c, EXIT_USAGE, "a user name is 1-64 of A-Z a-z 0-9 . _ @ -");
        } else if (!access_role_perms(role)) {
            code = cli_fail(&c, EXIT_USAGE,
                            "--role: one of viewer, buildserver, operator, administrator");
        } else {
            const char *args[] = {name, role, flags[1].set ? flags[1].value : name,
                                  flags[2].set ? "1" : "0"};
            char msg[200], uid[96];
            snprintf(msg, sizeof msg, "User %s added with role %s", name, role);
            snprintf(uid, sizeof uid, ACCESS_USER_PREFIX "%s", name);
            redisReply *r = write_op(&c, "user_add", args, 4, "Created", msg, uid, NULL, role);
            if (r)
                printf("%s\n", uid);
            else
                code = EXIT_FAIL;
            freeReplyObject(r);
        }
    } else if (strcmp(sub, "remove") == 0 && name) {
        const char *args[] = {name};
        char msg[200], uid[96];
        snprintf(msg, sizeof msg, "User %s removed, with its API keys", name);
        snprintf(uid, sizeof uid, ACCESS_USER_PREFIX "%s", name);
        redisReply *r = write_op(&c, "user_remove", args, 1, "Deleted", msg, uid, name, NULL);
        if (!r) code = EXIT_FAIL;
        freeReplyObject(r);
    } else if (strcmp(sub, "list") == 0 && !name) {
        struct access_snapshot s;
        if (load(&c, &s) != 0) {
            code = EXIT_FAIL;
        } else {
            if (!flags[3].set) printf("%-24s  %-13s  %-7s  %s\n", "NAME", "ROLE", "KEYS", "ID");
            for (size_t i = 0; i < s.nusers; i++) {
                int nk = 0;
                for (size_t k = 0; k < s.nkeys; k++)
                    nk += strcmp(s.keys[k].user, s.users[i].name) == 0;
                if (flags[3].set)
                    printf("{\"Id\":\"" ACCESS_USER_PREFIX
                           "%s\",\"Username\":\"%s\",\"Role\":\"%s\","
                           "\"IsService\":%s,\"ApiKeys\":%d}\n",
                           s.users[i].name, s.users[i].name, s.users[i].role,
                           s.users[i].service ? "true" : "false", nk);
                else
                    printf("%-24s  %-13s  %-7d  " ACCESS_USER_PREFIX "%s\n", s.users[i].name,
                           s.users[i].role, nk, s.users[i].name);
            }
            access_snapshot_free(&s);
        }
    } else {
        code = cli_fail(&c, EXIT_USAGE, "expected add NAME, list or remove NAME (see --help)");
    }
    cli_close(&c);
    return code;
}

static const char apikey_usage[] =
    "shoal apikey create --user U --purpose P [--expires 90d] [--read-only]\n"
    "shoal apikey list [--user U] [--json]\n"
    "shoal apikey revoke ID\n\n"
    "API keys of the HTTP API. create prints the new key once (keep it: Redis holds only its\n"
    "SHA-256); list never shows a key, only its hint. A revoked or expired key is refused by\n"
    "every node.";

static int apikey_create(struct cli *c, const char *user, const char *purpose, const char *expires,
                         bool read_only) {
    int64_t exp = 0;
    if (expires && (parse_duration_ms(expires, &exp) != 0 || exp <= 0))
        return cli_fail(c, EXIT_USAGE, "--expires: a duration such as 90d, 12h or 30m");
    if (!access_name_valid(user)) return cli_fail(c, EXIT_USAGE, "--user: not a user name");
    if (strlen(purpose) > 100) return cli_fail(c, EXIT_USAGE, "--purpose: at most 100 bytes");
    char key[ACCESS_KEY_LEN + 1], sha[65], id[32], hint[ACCESS_HINT_LEN + 1], expires_s[24];
    if (access_key_new(key, sha, id) != 0)
        return cli_fail(c, EXIT_FAIL, "the system's random generator failed");
    snprintf(hint, sizeof hint, "%.*s", ACCESS_HINT_LEN, key);
    snprintf(expires_s, sizeof expires_s, "%lld", (long long)(exp ? clock_wall_ms() + exp : 0));
    const char *args[] = {id,  user, sha, purpose, expires_s, read_only ? "ReadOnly" : "FullAccess",
                          hint};
    char msg[256];
    snprintf(msg, sizeof msg, "API key %s (%s) created for user %s", id, purpose, user);
    redisReply *r = write_op(c, "key_create", args, 7, "Created", msg, id, NULL, hint);
    int code = r ? EXIT_OK : EXIT_FAIL;
    if (r) {
        printf("%s\n", key);
        fprintf(stderr, "API key %s for user %s: shown once, keep it now\n", id, user);
    }
    explicit_bzero(key, sizeof key);
    freeReplyObject(r);
    return code;
}

int cmd_apikey(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "user", .has_value = true},
                               {.name = "purpose", .has_value = true},
                               {.name = "expires", .has_value = true},
                               {.name = "read-only"},
                               {.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 5, 1, 2, apikey_usage, &code)) return code;
    const char *sub = c.pos[0], *arg = c.npos > 1 ? c.pos[1] : NULL;
    if (strcmp(sub, "create") == 0 && !arg) {
        if (!flags[0].set || !flags[1].set)
            code = cli_fail(&c, EXIT_USAGE, "create needs --user U and --purpose P");
        else
            code = apikey_create(&c, flags[0].value, flags[1].value,
                                 flags[2].set ? flags[2].value : NULL, flags[3].set);
    } else if (strcmp(sub, "revoke") == 0 && arg) {
        const char *args[] = {arg};
        char msg[160];
        snprintf(msg, sizeof msg, "API key %s revoked", arg);
        redisReply *r = write_op(&c, "key_revoke", args, 1, "Deleted", msg, arg, arg, NULL);
        code = r ? EXIT_OK : EXIT_FAIL;
        freeReplyObject(r);
    } else if (strcmp(sub, "list") == 0 && !arg) {
        struct access_snapshot s;
        if (load(&c, &s) != 0) {
            code = EXIT_FAIL;
        } else {
            if (!flags[4].set)
                printf("%-24s  %-16s  %-10s  %-8s  %-24s  %s\n", "ID", "USER", "ACCESS", "HINT",
                       "EXPIRES", "PURPOSE");
            for (size_t i = 0; i < s.nkeys; i++) {
                const struct access_key *k = &s.keys[i];
                if (flags[0].set && strcmp(k->user, flags[0].value) != 0) continue;
                char exp[40];
                if (k->expires_ms)
                    iso8601_ms(k->expires_ms, exp, sizeof exp);
                else
                    snprintf(exp, sizeof exp, "never");
                if (flags[4].set) {
                    struct buf b;
                    struct json j;
                    buf_init(&b);
                    json_init(&j, &b);
                    json_obj_open(&j);
                    json_key(&j, "Id");
                    json_str(&j, k->id);
                    json_key(&j, "UserId");
                    char uid[96];
                    snprintf(uid, sizeof uid, ACCESS_USER_PREFIX "%s", k->user);
                    json_str(&j, uid);
                    json_key(&j, "Purpose");
                    json_str(&j, k->purpose);
                    json_key(&j, "AccessLevel");
                    json_str(&j, k->read_only ? "ReadOnly" : "FullAccess");
                    json_key(&j, "Hint");
                    json_str(&j, k->hint);
                    json_key(&j, "Expires");
                    if (k->expires_ms)
                        json_time(&j, k->expires_ms);
                    else
                        json_null_value(&j);
                    json_obj_close(&j);
                    printf("%s\n", b.data);
                    buf_free(&b);
                } else {
                    printf("%-24s  %-16s  %-10s  %-8s  %-24s  %s\n", k->id, k->user,
                           k->read_only ? "ReadOnly" : "FullAccess", k->hint, exp, k->purpose);
                }
            }
            access_snapshot_free(&s);
        }
    } else {
        code = cli_fail(&c, EXIT_USAGE, "expected create, list or revoke ID (see --help)");
    }
    cli_close(&c);
    return code;
}

static const char events_usage[] =
    "shoal events [--take N] [--json]\n\n"
    "The audit trail ({NS}:events), newest first: who changed what, when, from where.";

int cmd_events(int argc, char **argv) {
    struct cli c;
    struct cli_flag flags[] = {{.name = "take", .has_value = true}, {.name = "json"}};
    int code;
    if (!cli_open(&c, argc, argv, flags, 2, 0, 0, events_usage, &code)) return code;
    int64_t take = 30;
    char err[256], key[160];
    if (flags[0].set && parse_int64(flags[0].value, 1, 1000, &take) != 0) {
        code = cli_fail(&c, EXIT_USAGE, "--take: 1 to 1000");
        cli_close(&c);
        return code;
    }
    redisReply *r = rsync_cmd(&c.redis, err, sizeof err, "XREVRANGE %s + - COUNT %lld",
                              keys_events(&c.keys, key, sizeof key), (long long)take);
    if (!r) {
        code = cli_fail(&c, EXIT_FAIL, "%s", err);
    } else if (r->type != REDIS_REPLY_ARRAY) {
        code = cli_fail(&c, EXIT_FAIL, "unexpected reply from Redis");
    } else {
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements < 2)
                continue;
            const char *json = e->element[1]->element[1]->str;
            if (flags[1].set) {
                printf("{\"Id\":\"Events-%s\",%s\n", e->element[0]->str, json + 1);
                continue;
            }
            /* A line per event: when, who, what (the JSON is ours: find the fields). */
            const char *fields[] = {"\"Occurred\":\"", "\"Username\":\"", "\"Message\":\""};
            char v[3][256];
            for (int f = 0; f < 3; f++) {
                const char *p = strstr(json, fields[f]);
                v[f][0] = '\0';
                if (!p) continue;
                p += strlen(fields[f]);
                size_t n = 0;
                while (p[n] && p[n] != '"' && n < sizeof v[f] - 1) n++;
                snprintf(v[f], sizeof v[f], "%.*s", (int)n, p);
            }
            printf("%-29s  %-20s  %s\n", v[0], v[1], v[2]);
        }
    }
    freeReplyObject(r);
    cli_close(&c);
    return code;
}
