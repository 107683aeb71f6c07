/* util.c: allocation, clocks, number and duration parsing shared by every module. */
#define _GNU_SOURCE
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* sched_setattr(2)'s argument (SCHED_ATTR_SIZE_VER0): glibc 2.36 has no wrapper, and
 * <linux/sched/types.h> clashes with <sched.h>, which libuv's header includes. */
struct kernel_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};
#define KERNEL_SCHED_NORMAL 0
#define KERNEL_SCHED_FLAG_RESET_ON_FORK 0x01
#define SHORT_SLICE_NS 100000u /* the kernel's minimum */

int thread_short_slices(void) {
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (nice == -1 && errno) return -errno;
    struct kernel_sched_attr a = {.size = sizeof a,
                                  .sched_policy = KERNEL_SCHED_NORMAL,
                                  .sched_flags = KERNEL_SCHED_FLAG_RESET_ON_FORK,
                                  .sched_nice = nice,
                                  .sched_runtime = SHORT_SLICE_NS};
    return syscall(SYS_sched_setattr, 0, &a, 0) == 0 ? 0 : -errno;
}

_Noreturn void oom(size_t n) {
    fprintf(stderr, "shoal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}
void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}
void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}
char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }
char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int64_t clock_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
uint64_t clock_mono_ns(void) { return uv_hrtime(); }
uint64_t clock_mono_ms(void) { return uv_hrtime() / 1000000; }

char *iso8601_ms(int64_t ms, char *buf, size_t len) {
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03d+00:00", (int)(ms % 1000));
    return buf;
}

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (s == NULL || *s == '\0') return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || isspace((unsigned char)*s)) return -EINVAL;
    if (errno == ERANGE || v < min || v > max) return -ERANGE;
    *out = v;
    return 0;
}

static const struct {
    const char *unit;
    int64_t ms;
} units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

int parse_duration_ms(const char *s, int64_t *ms) {
    if (s == NULL || *s == '\0') return -EINVAL;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p)) return -EINVAL;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v > (INT64_MAX - 9) / 10) return -ERANGE;
            v = v * 10 + (*p++ - '0');
        }
        const char *u = p;
        while (isalpha((unsigned char)*p)) p++;
        size_t ulen = (size_t)(p - u);
        int64_t mult = 0;
        for (size_t i = 0; i < ARRAY_SIZE(units); i++)
            if (strlen(units[i].unit) == ulen && strncmp(u, units[i].unit, ulen) == 0)
                mult = units[i].ms;
        if (mult == 0) return -EINVAL;
        if (v > (INT64_MAX - total) / mult) return -ERANGE;
        total += v * mult;
    }
    *ms = total;
    return 0;
}

char *format_duration_ms(int64_t ms, char *buf, size_t len) {
    for (size_t i = ARRAY_SIZE(units); i-- > 0;) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return buf;
        }
    }
    snprintf(buf, len, "%lld%s", (long long)ms, ms ? "ms" : "");
    return buf;
}

int node_name_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-') return 0;
    }
    return 1;
}

int parse_iso8601_ms(const char *s, int64_t *ms) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) return -EINVAL;
    int64_t frac = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3) frac = frac * 10 + (*rest - '0');
        while (digits++ < 3) frac *= 10;
    }
    if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0 && *rest != '\0') return -EINVAL;
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return 0;
}

int comma_list_each(const char *list, int (*fn)(const char *e, size_t n, void *ctx), void *ctx) {
    for (const char *s = list; s && *s;) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *e = s;
        size_t m = n;
        while (m && (*e == ' ' || *e == '\t')) e++, m--;
        while (m && (e[m - 1] == ' ' || e[m - 1] == '\t')) m--;
        int rc = fn(e, m, ctx);
        if (rc) return rc;
        s = end ? end + 1 : s + n;
    }
    return 0;
}
