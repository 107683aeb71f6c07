/* task_env.h: which environment variables an `exec` task may set, and the list syntax of the
 * operator's allow lists. Shared by enqueue (CLI, HTTP API: refused up front with a clear
 * error) and the node (which checks again: anything that writes Redis can enqueue).
 *
 * A task's "env" entry must have a name of [A-Za-z_][A-Za-z0-9_]* and a value without NUL, and
 * its name must not be on the DENY list: variables that change how programs are loaded or what
 * code an interpreter runs before the program's own (LD_*, glibc's unsecure variables, shell
 * start-up hooks, PYTHON*, NODE_OPTIONS, JAVA_TOOL_OPTIONS, ...) and every SHOAL_* name (the
 * node generates SHOAL_TASK_*; a task must not fake them). Those would let a task run code of
 * its choice inside a program the node's --allow-exec allows, e.g. LD_PRELOAD of an uploaded
 * package inside /usr/bin/true.
 *
 * Allow lists (--exec-env-allow, --task-env-allow) are comma lists of names, or prefixes ending
 * in '*' ("AWS_*"); blanks around entries are ignored.
 *
 * The env block handed to the exec-child shim (worker/exec.c) is "K=V\0K=V\0...": at most
 * TASK_ENV_BLOCK_MAX bytes and TASK_ENV_MAX entries. */
#ifndef SHOAL_TASK_ENV_H
#define SHOAL_TASK_ENV_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define TASK_ENV_MAX 4096                    /* entries in a task's final environment */
#define TASK_ENV_BLOCK_MAX (2 * 1024 * 1024) /* bytes of the env block given to the shim */

/* True when name[0..len) is [A-Za-z_][A-Za-z0-9_]*. */
bool task_env_name_valid(const char *name, size_t len);

/* NULL when a task may set the variable name[0..len); else why not, for a person ("it changes
 * how programs are loaded", ...). */
const char *task_env_denied(const char *name, size_t len);

/* True when name[0..len) matches an entry of the comma list (a name, or a prefix ending in
 * '*'). A NULL or empty list matches nothing. */
bool task_env_list_match(const char *list, const char *name, size_t len);

/* Checks an allow list's syntax (what is a name, or a name prefix followed by '*'). what names
 * the setting in the message ("--exec-env-allow"). Returns 0 or -EINVAL with a message. */
int task_env_list_check(const char *list, const char *what, char *err, size_t errlen);

/* Checks a task's "K=V" entries: valid names, none denied, none twice, and each matching
 * allow (when allow is non-empty: --task-env-allow). Returns 0, or -EINVAL with a message
 * naming the first offending variable ("env LD_PRELOAD is refused: ..."). */
int task_env_check(const char *const *env, int envc, const char *allow, char *err, size_t errlen);

/* Appends env (NULL-terminated "K=V" strings) to out as the shim's env block. */
void task_env_block_encode(struct buf *out, const char *const *env);

/* Splits an env block into a NULL-terminated vector of "K=V" strings pointing INTO data (which
 * must stay alive; data[len - 1] must be '\0' unless len is 0). Every entry must be K=V with a
 * valid name. Returns 0 with *out (free the vector only), or -EINVAL with a message. */
int task_env_block_parse(const char *data, size_t len, char ***out, char *err, size_t errlen);

#endif
