/* log.c: the logfmt writer. One fprintf per line so concurrent writers do not interleave. */
#include "common/log.h"

#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "common/util.h"

enum log_level log_min_level = LOG_INFO;
static FILE *sink;
static char node_name[128];

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_set_level(const char *name) {
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            log_min_level = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_set_node(const char *node) {
    snprintf(node_name, sizeof node_name, "%s", node ? node : "");
}

void log_set_sink(FILE *f) { sink = f; }

const char *log_q(char *buf, size_t len, const char *s) {
    if (s == NULL) return "\"\"";
    if (*s != '\0' && strpbrk(s, " \"=\t\n\\") == NULL) return s;
    size_t o = 0;
    if (len < 3) return "\"\"";
    buf[o++] = '"';
    for (const char *p = s; *p && o + 3 < len; p++) {
        if (*p == '"' || *p == '\\') buf[o++] = '\\';
        if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
            continue;
        }
        buf[o++] = *p;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void log_write(enum log_level lvl, const char *msg, const char *fmt, ...) {
    char line[2048], ts[40], q[512], nq[160];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    int off = snprintf(line, sizeof line, "ts=%s level=%s", ts, level_names[lvl]);
    if (node_name[0])
        off += snprintf(line + off, sizeof line - (size_t)off, " node=%s",
                        log_q(nq, sizeof nq, node_name));
    off += snprintf(line + off, sizeof line - (size_t)off, " msg=%s", log_q(q, sizeof q, msg));
    if (fmt != NULL && off < (int)sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        off += vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
        va_end(ap);
    }
    if (off >= (int)sizeof line - 1) off = (int)sizeof line - 2;
    line[off++] = '\n';
    line[off] = '\0';
    fputs(line, sink ? sink : stderr);
    fflush(sink ? sink : stderr);
}
