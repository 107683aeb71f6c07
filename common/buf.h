/* buf.h: a growable byte buffer (NUL-terminated for convenience), and a JSON writer on top.
 * A buf is embedded by its owner: buf_init/buf_free. Growth aborts on out-of-memory. */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data; /* owned; NUL-terminated after every append */
    size_t len; /* bytes used, not counting the terminator */
    size_t cap; /* bytes allocated */
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);                 /* len = 0, keeps the allocation */
void buf_reserve(struct buf *b, size_t extra); /* room for extra more bytes */
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a va_list (ap is consumed; va_end is the caller's). */
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);

/* JSON writing: the caller emits structure; these add commas where needed.
 * A json writer borrows its buf. Nesting deeper than 32 levels aborts (a programming error). */
struct json {
    struct buf *out;
    int depth;
    bool first[32]; /* per level: nothing written yet at this level */
    bool key;       /* a key was just written: the next value takes no comma */
};

void json_init(struct json *j, struct buf *out);
void json_obj_open(struct json *j);
void json_obj_close(struct json *j);
void json_arr_open(struct json *j);
void json_arr_close(struct json *j);
void json_key(struct json *j, const char *k);
void json_str(struct json *j, const char *s); /* NULL writes null */
void json_strn(struct json *j, const char *s, size_t n);
void json_int(struct json *j, int64_t v);
void json_bool(struct json *j, bool v);
void json_null_value(struct json *j);
/* Writes an ISO-8601 time (epoch ms), or null when ms <= 0. */
void json_time(struct json *j, int64_t ms);

/* Appends s as a quoted, escaped JSON string. */
void json_escape(struct buf *b, const char *s, size_t n);

#endif
