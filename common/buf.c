/* buf.c: the growable buffer and the JSON writer used by the CLI (--json) and HTTP bodies. */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void buf_init(struct buf *b) { memset(b, 0, sizeof *b); }
void buf_free(struct buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
void buf_reset(struct buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void buf_reserve(struct buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_vprintf(struct buf *b, const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= 0 && (size_t)n < sizeof small) {
        buf_append(b, small, (size_t)n);
    } else if (n >= 0) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

void buf_printf(struct buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_consume(struct buf *b, size_t n) {
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void json_escape(struct buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    buf_append(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_append(b, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(b, u, 6);
        }
        }
    }
    buf_append(b, s + start, n - start);
    buf_append(b, "\"", 1);
}

void json_init(struct json *j, struct buf *out) {
    memset(j, 0, sizeof *j);
    j->out = out;
    j->first[0] = true;
}

static void sep(struct json *j) {
    if (j->key) {
        j->key = false;
        return;
    }
    if (!j->first[j->depth]) buf_append(j->out, ",", 1);
    j->first[j->depth] = false;
}

static void open(struct json *j, char c) {
    sep(j);
    buf_append(j->out, &c, 1);
    if (++j->depth >= (int)ARRAY_SIZE(j->first)) abort();
    j->first[j->depth] = true;
}

static void close_(struct json *j, char c) {
    j->depth--;
    buf_append(j->out, &c, 1);
}

void json_obj_open(struct json *j) { open(j, '{'); }
void json_obj_close(struct json *j) { close_(j, '}'); }
void json_arr_open(struct json *j) { open(j, '['); }
void json_arr_close(struct json *j) { close_(j, ']'); }

void json_key(struct json *j, const char *k) {
    sep(j);
    json_escape(j->out, k, strlen(k));
    buf_append(j->out, ":", 1);
    j->key = true;
}

void json_strn(struct json *j, const char *s, size_t n) {
    sep(j);
    json_escape(j->out, s, n);
}
void json_str(struct json *j, const char *s) {
    if (!s) {
        json_null_value(j);
        return;
    }
    json_strn(j, s, strlen(s));
}
void json_int(struct json *j, int64_t v) {
    sep(j);
    buf_printf(j->out, "%lld", (long long)v);
}
void json_bool(struct json *j, bool v) {
    sep(j);
    buf_puts(j->out, v ? "true" : "false");
}
void json_null_value(struct json *j) {
    sep(j);
    buf_puts(j->out, "null");
}
void json_time(struct json *j, int64_t ms) {
    char t[40];
    if (ms <= 0) {
        json_null_value(j);
        return;
    }
    json_str(j, iso8601_ms(ms, t, sizeof t));
}
