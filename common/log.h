/* log.h: one logfmt line per event on stderr: ts= level= node= msg= key=value...
 *
 * The sink (stderr, or a test's buffer) and the level are the only mutable globals in shoal.
 * LOG_* macros skip formatting entirely below the level. Values are passed as a printf-style
 * tail that the caller writes as ` key=value` pairs; log_q() quotes a value when needed. */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include <stdarg.h>
#include <stdio.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

extern enum log_level log_min_level;

/* Sets the level from "debug", "info", "warn" or "error". Returns 0, or -EINVAL. */
int log_set_level(const char *name);
/* The node name printed as node= on every line; copied. NULL or "" leaves it out. */
void log_set_node(const char *node);
/* Redirects output (tests); NULL restores stderr. Borrowed until replaced. */
void log_set_sink(FILE *f);

/* Writes one line: msg is quoted as needed; fmt (may be NULL) appends ` k=v` pairs verbatim. */
void log_write(enum log_level lvl, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes s for logfmt into buf when it holds spaces, quotes or '='; returns buf or s. */
const char *log_q(char *buf, size_t len, const char *s);

#define LOG_AT(lvl, msg, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) >= log_min_level) log_write((lvl), (msg), __VA_ARGS__);                          \
    } while (0)
#define log_debug(msg, ...) LOG_AT(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) LOG_AT(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) LOG_AT(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) LOG_AT(LOG_ERROR, msg, __VA_ARGS__)

#endif
