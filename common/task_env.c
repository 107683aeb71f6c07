/* task_env.c: the task environment rules (task_env.h): the deny list, allow-list matching, and
 * the env block the node hands its exec-child shim.
 *
 * To change the deny list: add a row below (a trailing '*' makes it a prefix), say why in its
 * reason, and add the name to the deny test in tests/test_units.c. TMPDIR, which glibc also
 * drops for setuid programs, is deliberately NOT denied: it names where a program writes
 * scratch files, it loads no code, and a task that runs with its own rights gains nothing it
 * could not do by passing a path itself. Setting it is a common, legitimate need. */
#include "common/task_env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char LOADER[] = "it changes how programs are loaded";
static const char LIBC[] = "it makes the C library read files or settings it names (glibc "
                           "ignores it in setuid programs for that reason)";
static const char SHELL[] = "it makes a shell run code before the program's own";
static const char INTERP[] = "it makes an interpreter or runtime load code of its choosing";
static const char NODE[] = "SHOAL_* names belong to the node (it sets SHOAL_TASK_* itself)";

static const struct {
    const char *name; /* a name, or a prefix ending in '*' */
    const char *why;
} deny[] = {
    {"LD_*", LOADER},
    {"GCONV_PATH", LOADER},
    {"GLIBC_TUNABLES", LOADER},
    {"MALLOC_*", LOADER},
    {"GETCONF_DIR", LIBC},
    {"HOSTALIASES", LIBC},
    {"LOCALDOMAIN", LIBC},
    {"LOCPATH", LIBC},
    {"NIS_PATH", LIBC},
    {"NLSPATH", LIBC},
    {"RESOLV_HOST_CONF", LIBC},
    {"RES_OPTIONS", LIBC},
    {"TZDIR", LIBC},
    {"BASH_ENV", SHELL},
    {"ENV", SHELL},
    {"BASH_FUNC_*", SHELL},
    {"SHELLOPTS", SHELL},
    {"BASHOPTS", SHELL},
    {"PS4", SHELL},
    {"PROMPT_COMMAND", SHELL},
    {"IFS", SHELL},
    {"CDPATH", SHELL},
    {"PYTHON*", INTERP},
    {"PERL5*", INTERP},
    {"PERLLIB", INTERP},
    {"RUBYOPT", INTERP},
    {"RUBYLIB", INTERP},
    {"NODE_OPTIONS", INTERP},
    {"NODE_PATH", INTERP},
    {"JAVA_TOOL_OPTIONS", INTERP},
    {"_JAVA_OPTIONS", INTERP},
    {"JDK_JAVA_OPTIONS", INTERP},
    {"DOTNET_STARTUP_HOOKS", INTERP},
    {"CORECLR_*", INTERP},
    {"OPENSSL_CONF", INTERP},
    {"OPENSSL_ENGINES", INTERP},
    {"LUA_INIT*", INTERP},
    {"LUA_PATH*", INTERP},
    {"LUA_CPATH*", INTERP},
    {"SHOAL_*", NODE},
};

bool task_env_name_valid(const char *name, size_t len) {
    if (len == 0 || (name[0] >= '0' && name[0] <= '9')) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Does entry e[0..n) (a name, or a prefix ending in '*') match name[0..len)? */
static bool entry_matches(const char *e, size_t n, const char *name, size_t len) {
    if (n > 0 && e[n - 1] == '*') return len >= n - 1 && memcmp(e, name, n - 1) == 0;
    return n == len && memcmp(e, name, n) == 0;
}

const char *task_env_denied(const char *name, size_t len) {
    for (size_t i = 0; i < ARRAY_SIZE(deny); i++)
        if (entry_matches(deny[i].name, strlen(deny[i].name), name, len)) return deny[i].why;
    return NULL;
}

struct match_ctx {
    const char *name;
    size_t len;
};

static int match_cb(const char *e, size_t n, void *ctx) {
    const struct match_ctx *m = ctx;
    return n > 0 && entry_matches(e, n, m->name, m->len);
}

bool task_env_list_match(const char *list, const char *name, size_t len) {
    struct match_ctx m = {name, len};
    return comma_list_each(list, match_cb, &m) != 0;
}

struct check_ctx {
    const char *what;
    char *err;
    size_t errlen;
};

static int syntax_cb(const char *e, size_t n, void *ctx) {
    struct check_ctx *c = ctx;
    size_t m = n > 0 && e[n - 1] == '*' ? n - 1 : n;
    if (n == 0) {
        snprintf(c->err, c->errlen,
                 "%s: an empty entry (a comma list of names, or prefixes "
                 "ending in '*')",
                 c->what);
        return -EINVAL;
    }
    if (m > 0 && task_env_name_valid(e, m)) return 0;
    snprintf(c->err, c->errlen,
             "%s: '%.*s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*) "
             "or a prefix of one followed by '*'",
             c->what, (int)(n > 64 ? 64 : n), e);
    return -EINVAL;
}

int task_env_list_check(const char *list, const char *what, char *err, size_t errlen) {
    struct check_ctx c = {what, err, errlen};
    return comma_list_each(list, syntax_cb, &c);
}

/* Writes name into out for a message, non-printable bytes as '?', at most 64 of them. */
static void printable(const char *name, size_t len, char *out, size_t outlen) {
    size_t n = len < 64 ? len : 64, k = 0;
    for (size_t i = 0; i < n && k + 1 < outlen; i++)
        out[k++] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
    out[k] = '\0';
    if (n < len && k + 4 < outlen) strcpy(out + k, "...");
}

int task_env_check(const char *const *env, int envc, const char *allow, char *err, size_t errlen) {
    for (int i = 0; i < envc; i++) {
        const char *eq = strchr(env[i], '=');
        size_t len = eq ? (size_t)(eq - env[i]) : strlen(env[i]);
        char name[72];
        printable(env[i], len, name, sizeof name);
        const char *why;
        if (!task_env_name_valid(env[i], len)) {
            snprintf(err, errlen,
                     "env name '%s' is not a variable name: use A-Z a-z 0-9 _, "
                     "not starting with a digit",
                     name);
            return -EINVAL;
        }
        if ((why = task_env_denied(env[i], len))) {
            snprintf(err, errlen, "env %s is refused: %s; a task may not set it", name, why);
            return -EINVAL;
        }
        if (allow && *allow && !task_env_list_match(allow, env[i], len)) {
            snprintf(err, errlen,
                     "env %s is refused: this node's --task-env-allow (%.120s) "
                     "does not list it",
                     name, allow);
            return -EINVAL;
        }
        for (int j = 0; j < i; j++)
            if (strncmp(env[j], env[i], len) == 0 && env[j][len] == '=') {
                snprintf(err, errlen, "env %s is given twice", name);
                return -EINVAL;
            }
    }
    return 0;
}

void task_env_block_encode(struct buf *out, const char *const *env) {
    for (size_t i = 0; env && env[i]; i++) buf_append(out, env[i], strlen(env[i]) + 1);
}

int task_env_block_parse(const char *data, size_t len, char ***out, char *err, size_t errlen) {
    *out = NULL;
    if (len > TASK_ENV_BLOCK_MAX) {
        snprintf(err, errlen, "env block of %zu bytes is larger than %d", len, TASK_ENV_BLOCK_MAX);
        return -EINVAL;
    }
    if (len > 0 && data[len - 1] != '\0') {
        snprintf(err, errlen, "env block does not end with a NUL byte");
        return -EINVAL;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += data[i] == '\0';
    if (n > TASK_ENV_MAX) {
        snprintf(err, errlen, "env block has %zu entries, more than %d", n, TASK_ENV_MAX);
        return -EINVAL;
    }
    char **v = xcalloc(n + 1, sizeof *v);
    size_t k = 0;
    for (const char *p = data; p < data + len; p += strlen(p) + 1) {
        const char *eq = strchr(p, '=');
        if (!eq || !task_env_name_valid(p, (size_t)(eq - p))) {
            snprintf(err, errlen, "env block entry %zu is not NAME=value", k);
            free(v);
            return -EINVAL;
        }
        v[k++] = (char *)p;
    }
    *out = v;
    return 0;
}
