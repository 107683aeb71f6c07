/* util.h: the few macros shoal allows itself (ARRAY_SIZE, container_of) and allocation that
 * aborts on out-of-memory, so callers never handle a NULL from malloc. */
#ifndef SHOAL_UTIL_H
#define SHOAL_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Allocators: abort the process with a message on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* What they do when n bytes could not be had (for allocations made elsewhere, e.g. tsearch). */
_Noreturn void oom(size_t n);

/* Milliseconds since the Unix epoch (wall clock), and a monotonic clock in ms / ns. */
int64_t clock_wall_ms(void);
uint64_t clock_mono_ms(void);
uint64_t clock_mono_ns(void);

/* Formats epoch ms as ISO-8601 with milliseconds and offset, "2026-11-28T03:47:35.123+00:00".
 * buf must hold 32 bytes. Returns buf. */
char *iso8601_ms(int64_t ms, char *buf, size_t len);

/* Parses a decimal integer in [min, max] with nothing after it. Returns 0 or -EINVAL/-ERANGE. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses a duration: "250ms", "30s", "10m", "2h", "1d", combinations ("1m30s"), or "0".
 * Returns 0 with *ms set, or -EINVAL (no unit, bad unit, negative) / -ERANGE. */
int parse_duration_ms(const char *s, int64_t *ms);
/* Writes ms back in the shortest exact form ("1d", "250ms", "90s"). Returns buf. */
char *format_duration_ms(int64_t ms, char *buf, size_t len);

/* Parses "2026-11-28T10:00:00Z" (also with .250 milliseconds, "+00:00" or no zone: UTC) into
 * epoch ms. Returns 0 or -EINVAL. */
int parse_iso8601_ms(const char *s, int64_t *ms);

/* Calls fn for each entry of a comma list ("a, b,c"), blanks (spaces, tabs) trimmed, empty
 * entries too (with n = 0); stops at the first non-zero return of fn and returns it, else 0. */
int comma_list_each(const char *list, int (*fn)(const char *e, size_t n, void *ctx), void *ctx);

/* A node name: 1..64 of [A-Za-z0-9._-], not starting with '-' (pod and host names fit). */
int node_name_valid(const char *s);

/* For the event loop's thread: asks the scheduler for the shortest time slice (0.1 ms; Linux
 * 6.12+ EEVDF honours sched_attr.sched_runtime for normal tasks, older kernels ignore it), so
 * that a request arriving while CPU-bound tasks hold every core preempts them at once instead
 * of waiting for the end of their slice (1.5 ms on 2 CPUs, longer on larger machines). Same
 * nice value; threads and processes started later get the default slice (reset on fork).
 * Returns 0 or -errno (nothing changes then). */
int thread_short_slices(void);

#endif
