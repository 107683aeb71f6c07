/* cli.h: the admin commands of the `shoal` binary. Each command is a function taking its own
 * argv (argv[0] = command name) and returning the process exit code:
 *   0 done, 1 failed (Redis unreachable, unknown node, refused), 2 usage error, 3 timed out.
 * Commands talk to Redis directly with a blocking connection (never on an event loop). */
#ifndef SHOAL_CLI_H
#define SHOAL_CLI_H

#include <stdbool.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/rsync.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3 };

/* What every Redis command shares: settings, keys and the connection. */
struct cli {
    const char *cmd;         /* command name, for messages */
    struct shoal_config cfg; /* --redis, --namespace, --log-level */
    struct keys keys;
    struct rsync redis;
    int npos; /* positional arguments */
    char **pos;
};

/* A command-specific flag: name without "--"; has_value: takes a value. Filled by cli_open. */
struct cli_flag {
    const char *name;
    bool has_value;
    bool set;               /* given on the command line */
    const char *value;      /* its (last) value, borrowed from argv */
    const char *values[32]; /* every value, for a repeatable flag (--env K=V ...) */
    int nvalues;
};

/* Parses argv: command flags (from flags[]), shared settings, positionals (must be within
 * [min_pos, max_pos]); prints help (usage text + settings) for --help; connects to Redis.
 * Returns true when the command may go on, with *code = EXIT_OK. Otherwise it has printed why
 * (or the help), closed c, and *code is the exit code to return. */
bool cli_open(struct cli *c, int argc, char **argv, struct cli_flag *flags, int nflags, int min_pos,
              int max_pos, const char *usage, int *code);
void cli_close(struct cli *c);

/* Prints "shoal CMD: message" on stderr and returns code. */
int cli_fail(const struct cli *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turns a script's error reply into a message and exit code (NONODE/ALIVE/... -> 1). */
int cli_reply_error(const struct cli *c, const char *what, const char *err_text);

/* Appends an event to the audit trail ({NS}:events) as the OS user running the CLI (after the
 * change it records succeeded). A failure is reported on stderr, not fatal. */
void cli_audit(struct cli *c, const char *category, const char *message, const char *related,
               const char *before, const char *after);

int cmd_nodes(int argc, char **argv);
int cmd_drain(int argc, char **argv);
int cmd_cap(int argc, char **argv);
int cmd_forget(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);
int cmd_tasks(int argc, char **argv);
int cmd_task(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_packages(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_user(int argc, char **argv);
int cmd_apikey(int argc, char **argv);
int cmd_events(int argc, char **argv);

#endif
