/* fuzz_task.c: libFuzzer on the task payload decoders (common/task_codec.c): the input is a
 * payload as it would come from Redis, given to the exec, sleep and fail decoders in turn.
 *
 * Invariants checked (abort on violation): a decoder either succeeds with a well-formed value
 * or fails with a non-empty message; an accepted exec payload re-encodes to bytes that decode
 * to the same argv, env and cwd; nothing leaks (LeakSanitizer), also after a failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/task_codec.h"

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
    if (rc == 0 || b.len <= TASK_ARGS_MAX) {   /* re-encoding may only grow past the limit */
        check(rc == 0, "re-encoded exec payload decodes");
        check(again.argc == a->argc && again.envc == a->envc, "same counts");
        for (int i = 0; i < a->argc; i++) check(strcmp(again.argv[i], a->argv[i]) == 0, "same argv");
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
    } else {
        check(err[0] != '\0', "exec error has a message");
    }
    exec_args_free(&a);

    int64_t ms = -1;
    err[0] = '\0';
    if (task_args_sleep_decode(p, size, &ms, err, sizeof err) == 0) check(ms >= 0, "sleep >= 0");
    else check(err[0] != '\0', "sleep error has a message");

    char *msg = NULL;
    err[0] = '\0';
    if (task_args_fail_decode(p, size, &msg, err, sizeof err) == 0)
        check(msg && msg[0] != '\0', "fail message not empty");
    else
        check(msg == NULL && err[0] != '\0', "fail error has a message");
    free(msg);
    return 0;
}
