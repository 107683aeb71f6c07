/* task_codec.h: task payloads (the only msgpack in shoal) for the built-in types.
 *
 *   exec   map {"argv": [str, ...] (1+ items), "env": {str: str} (optional; names checked by
 *          common/task_env.h, not here), "cwd": str (opt.), "package":
 *          "<space>/<PackageId>.<Version>" (optional: the node puts the path of that uploaded
 *          package in SHOAL_TASK_PACKAGE_PATH and SHOAL_PACKAGE_PATH)}
 *   sleep  int (milliseconds), or str duration ("250ms"), or [str duration]
 *   fail   str message, or [str, ...] joined by spaces (empty: "failed on purpose")
 *   noop   anything (ignored)
 *   others (custom handlers): whatever their producers and handlers agree on; the CLI sends
 *          its arguments as an array of strings.
 *
 * Decoders never trust input: any byte string gives either a value or an error message that
 * says what is wrong ("payload is not a msgpack map", "argv[2] is not a string", ...). */
#ifndef SHOAL_TASK_CODEC_H
#define SHOAL_TASK_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define TASK_ARGS_MAX (1024 * 1024) /* largest payload accepted, bytes */

struct exec_args {
    char **argv; /* NULL-terminated; owned */
    int argc;
    char **env; /* "K=V" strings, NULL-terminated; owned (NULL when none) */
    int envc;
    char *cwd;     /* owned, NULL when none */
    char *package; /* "<space>/<PackageId>.<Version>", owned, NULL when none */
};

/* Appends an exec payload to out. env entries are "K=V" (may be NULL/0); cwd may be NULL. */
void task_args_exec_encode(struct buf *out, const char *const *argv, int argc,
                           const char *const *env, int envc, const char *cwd);
/* The same with a package reference (may be NULL). */
void task_args_exec_encode_package(struct buf *out, const char *const *argv, int argc,
                                   const char *const *env, int envc, const char *cwd,
                                   const char *package);
/* Decodes an exec payload. Returns 0, or -EINVAL with a message in err. Free with
 * exec_args_free (also after a failure). */
int task_args_exec_decode(const char *data, size_t len, struct exec_args *out, char *err,
                          size_t errlen);
void exec_args_free(struct exec_args *a);

/* Appends an array of strings (the CLI's encoding for non-exec types). */
void task_args_strings_encode(struct buf *out, const char *const *items, int n);

/* Decodes a sleep payload into milliseconds (>= 0). Returns 0 or -EINVAL with err. */
int task_args_sleep_decode(const char *data, size_t len, int64_t *ms, char *err, size_t errlen);
/* Decodes a fail payload into a message (malloc'd, caller frees). Returns 0 or -EINVAL. */
int task_args_fail_decode(const char *data, size_t len, char **msg, char *err, size_t errlen);

#endif
