/* cli.c: argument handling shared by the admin commands. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

int cli_fail(const struct cli *c, int code, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "shoal %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_reply_error(const struct cli *c, const char *what, const char *err_text) {
    /* Script errors read "CODE message": show the message. */
    const char *sp = strchr(err_text, ' ');
    const char *msg = sp && sp - err_text <= 10 ? sp + 1 : err_text;
    return cli_fail(c, EXIT_FAIL, "%s: %s", what, msg);
}

static struct cli_flag *find(struct cli_flag *flags, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

/* cli_open's work: -1 when ready, else the exit code (after printing why). */
static int open_args(struct cli *c, int argc, char **argv, struct cli_flag *flags, int nflags,
                     int min_pos, int max_pos, const char *usage) {
    char err[512];
    memset(c, 0, sizeof *c);
    c->cmd = argv[0];
    config_defaults(&c->cfg);
    /* Split argv: our flags, shared settings (kept for config_parse), positionals. */
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int nrest = 1;
    rest[0] = argv[0];
    c->pos = xcalloc((size_t)argc + 1, sizeof *c->pos);
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || strncmp(a, "--", 2) != 0 || strcmp(a, "-") == 0) {
            c->pos[c->npos++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            printf("%s\n", usage);
            config_usage(stdout, SCOPE_REDIS);
            free(rest);
            return EXIT_OK;
        }
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        struct cli_flag *f = find(flags, nflags, a + 2, len);
        if (f) {
            f->set = true;
            if (f->has_value) {
                if (eq)
                    f->value = eq + 1;
                else if (i + 1 < argc)
                    f->value = argv[++i];
                else {
                    free(rest);
                    return cli_fail(c, EXIT_USAGE, "--%s needs a value", f->name);
                }
                if (f->nvalues == (int)ARRAY_SIZE(f->values)) {
                    free(rest);
                    return cli_fail(c, EXIT_USAGE, "--%s given too often", f->name);
                }
                f->values[f->nvalues++] = f->value;
            } else if (eq) {
                free(rest);
                return cli_fail(c, EXIT_USAGE, "--%s takes no value", f->name);
            }
            continue;
        }
        rest[nrest++] = argv[i];
        if (!eq && i + 1 < argc) rest[nrest++] = argv[++i];
    }
    int code = -1, after;
    if (config_parse(&c->cfg, SCOPE_REDIS, nrest, rest, &after, err, sizeof err) != 0)
        code = cli_fail(c, EXIT_USAGE, "%s", err);
    else if (c->npos < min_pos || c->npos > max_pos)
        code = cli_fail(c, EXIT_USAGE, "expected %s (see shoal %s --help)", usage, c->cmd);
    free(rest);
    if (code >= 0) return code;
    log_set_level(c->cfg.log_level);
    keys_init(&c->keys, c->cfg.namespace);
    struct rurl u;
    if (rurl_parse_with_password(c->cfg.redis_url, c->cfg.redis_password_file, &u, err,
                                 sizeof err) != 0 ||
        rurl_tls_files(&u, c->cfg.redis_ca, c->cfg.redis_cert, c->cfg.redis_key, err, sizeof err) !=
            0 ||
        rurl_tls_name(&u, c->cfg.redis_sni, err, sizeof err) != 0)
        return cli_fail(c, EXIT_FAIL, "%s", err);
    if (u.cluster) rurl_cluster_namespace(&u, c->cfg.namespace);
    int rc = rsync_open_rurl(&c->redis, &u, 5000, err, sizeof err);
    explicit_bzero(u.pass, sizeof u.pass);
    if (rc != 0) return cli_fail(c, EXIT_FAIL, "%s", err);
    return -1;
}

bool cli_open(struct cli *c, int argc, char **argv, struct cli_flag *flags, int nflags, int min_pos,
              int max_pos, const char *usage, int *code) {
    int r = open_args(c, argc, argv, flags, nflags, min_pos, max_pos, usage);
    *code = r >= 0 ? r : EXIT_OK;
    if (r < 0) return true;
    cli_close(c);
    return false;
}

void cli_close(struct cli *c) {
    rsync_close(&c->redis);
    config_free(&c->cfg);
    free(c->pos);
}
