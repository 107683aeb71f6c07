/* fuzz_task.c: libFuzzer on the task payload decoders (common/task_codec.c): the input is a
 * payload as it would come from Redis, given to the exec, sleep and fail decoders in turn.
 *
 * Invariants checked (abort on violation): a decoder either succeeds with a well-formed value
 * or fails with a non-empty message; an accepted exec payload re-encodes to bytes that decode
 * to the same argv, env and cwd; nothing leaks (LeakSanitizer), also after a failure. The same
 * bytes also go to the env rules (common/task_env.c): task_env_check on a decoded env (an
 * accepted env has valid, undenied, distinct names) and task_env_block_parse (the shim's env
 * block: every accepted entry is NAME=value within the input). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/task_codec.h"
#include "common/task_env.h"

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static void check_exec_shape(const struct exec_args *a) {
    check(a->argv && a->argc >= 1 && a->argv[a->argc] == NULL, "argv NULL-terminated, 1+ items");
    for (int i = 0; i < a->argc; i++) check(a->argv[i] != NULL, "argv item present");
    check(a->argv[0][0] != '\0', "argv[0] not empty");
    check(a->env != NULL || a->envc == 0, "env and envc agree");
    for (int i = 0; i < a->envc; i++) {
        const char *eq = strchr(a->env[i], '=');
        check(eq && eq != a->env[i], "env entry is K=V with a name");
    }
    check(a->env == NULL || a->env[a->envc] == NULL, "env NULL-terminated");
    check(a->cwd == NULL || a->cwd[0] != '\0', "cwd not empty");
}

static void check_exec_round_trip(const struct exec_args *a) {
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, (const char *const *)a->argv, a->argc, (const char *const *)a->env,
                          a->envc, a->cwd);
    struct exec_args again;
    char err[256];
    int rc = task_args_exec_decode(b.data, b.len, &again, err, sizeof err);
    if (rc == 0 || b.len <= TASK_ARGS_MAX) { /* re-encoding may only grow past the limit */
        check(rc == 0, "re-encoded exec payload decodes");
        check(again.argc == a->argc && again.envc == a->envc, "same counts");
        for (int i = 0; i < a->argc; i++)
            check(strcmp(again.argv[i], a->argv[i]) == 0, "same argv");
        for (int i = 0; i < a->envc; i++) check(strcmp(again.env[i], a->env[i]) == 0, "same env");
        check((a->cwd == NULL) == (again.cwd == NULL), "same cwd presence");
        check(a->cwd == NULL || strcmp(a->cwd, again.cwd) == 0, "same cwd");
    }
    exec_args_free(&again);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data;
    char err[256];

    struct exec_args a;
    err[0] = '\0';
    if (task_args_exec_decode(p, size, &a, err, sizeof err) == 0) {
        check_exec_shape(&a);
        check_exec_round_trip(&a);
        err[0] = '\0';
        if (task_env_check((const char *const *)a.env, a.envc, "A*,B", err, sizeof err) == 0) {
            for (int i = 0; i < a.envc; i++) {
                size_t kl = (size_t)(strchr(a.env[i], '=') - a.env[i]);
                check(task_env_name_valid(a.env[i], kl), "accepted env name is valid");
                check(task_env_denied(a.env[i], kl) == NULL, "accepted env name not denied");
                check(task_env_list_match("A*,B", a.env[i], kl), "accepted env name allowed");
            }
        } else {
            check(err[0] != '\0', "env refusal has a message");
        }
    } else {
        check(err[0] != '\0', "exec error has a message");
    }
    exec_args_free(&a);

    int64_t ms = -1;
    err[0] = '\0';
    if (task_args_sleep_decode(p, size, &ms, err, sizeof err) == 0)
        check(ms >= 0, "sleep >= 0");
    else
        check(err[0] != '\0', "sleep error has a message");

    char *msg = NULL;
    err[0] = '\0';
    if (task_args_fail_decode(p, size, &msg, err, sizeof err) == 0)
        check(msg && msg[0] != '\0', "fail message not empty");
    else
        check(msg == NULL && err[0] != '\0', "fail error has a message");
    free(msg);

    char **v = NULL;
    err[0] = '\0';
    if (task_env_block_parse(p, size, &v, err, sizeof err) == 0) {
        for (size_t i = 0; v[i]; i++) {
            check(v[i] >= p && v[i] < p + size, "entry points into the block");
            const char *eq = strchr(v[i], '=');
            check(eq && task_env_name_valid(v[i], (size_t)(eq - v[i])), "entry is NAME=value");
        }
        free(v);
    } else {
        check(v == NULL && err[0] != '\0', "block refusal has a message");
    }
    return 0;
}
