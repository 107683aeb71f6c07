/* multipart.c: the streaming multipart/form-data parser (see multipart.h).
 *
 * The delimiter search relies on a property of boundaries: RFC 2046 allows no CR in one, so
 * the delimiter CRLF "--" boundary holds '\r' only at its start. When a partial match fails,
 * the held-back bytes can hold no other start of a match: they are emitted as data and the
 * failing byte is looked at afresh. In part data, memchr finds the next '\r', so the parser
 * costs little more than a copy-free scan. The first delimiter of a body may lack its CRLF:
 * the preamble state starts as if a CRLF had just been seen. */
#include "http/multipart.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool multipart_is_form(const char *ct) {
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t') ct++;
    size_t n = strlen("multipart/form-data");
    return strncasecmp(ct, "multipart/form-data", n) == 0 &&
           (!ct[n] || ct[n] == ';' || ct[n] == ' ');
}

/* Finds param=value or param="value" in a header value's ;-separated parameters. */
static bool param_raw(const char *v, const char *param, char *out, size_t len) {
    size_t pl = strlen(param);
    for (const char *p = strchr(v, ';'); p; p = strchr(p + 1, ';')) {
        const char *s = p + 1;
        while (*s == ' ' || *s == '\t') s++;
        if (strncasecmp(s, param, pl) != 0) continue;
        s += pl;
        while (*s == ' ' || *s == '\t') s++;
        if (*s++ != '=') continue;
        while (*s == ' ' || *s == '\t') s++;
        size_t k = 0;
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                if (*s == '\\' && s[1]) s++;
                if (k + 1 >= len) return false;
                out[k++] = *s;
            }
            if (*s != '"') return false;
        } else {
            for (; *s && *s != ';' && *s != ' ' && *s != '\t'; s++) {
                if (k + 1 >= len) return false;
                out[k++] = *s;
            }
        }
        out[k] = '\0';
        return true;
    }
    return false;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool disposition_param(const char *value, const char *param, char *out, size_t len) {
    char ext[512];
    size_t pl = strlen(param);
    char star[64];
    if (!value || pl + 2 > sizeof star) return false;
    /* A leading "form-data" or "attachment" has no ';' before it: the scan starts after it. */
    if (param_raw(value, param, out, len)) return true;
    memcpy(star, param, pl);
    memcpy(star + pl, "*", 2);
    if (!param_raw(value, star, ext, sizeof ext)) return false;
    const char *q = strstr(ext, "''"); /* charset'lang'percent-encoded */
    const char *s = q ? q + 2 : ext;
    size_t k = 0;
    for (; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            c = hexval(s[1]) * 16 + hexval(s[2]);
            s += 2;
            if (c == 0) return false; /* a NUL would cut the name short: no name at all */
        }
        if (k + 1 >= len) return false;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return true;
}

int multipart_init(struct multipart *m, const char *content_type) {
    char b[MULTIPART_BOUNDARY_MAX + 2];
    memset(m, 0, sizeof *m);
    buf_init(&m->headers);
    if (!multipart_is_form(content_type) || !param_raw(content_type, "boundary", b, sizeof b))
        return -EINVAL;
    size_t n = strlen(b);
    if (n == 0 || n > MULTIPART_BOUNDARY_MAX || strpbrk(b, "\r\n")) return -EINVAL;
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, b, n);
    m->dlen = n + 4;
    m->matched = 2; /* the first delimiter may open the body without a CRLF */
    m->state = MP_PREAMBLE;
    return 0;
}

void multipart_free(struct multipart *m) { buf_free(&m->headers); }

static int fail(struct multipart *m, const char *why) {
    m->error = why;
    return -EINVAL;
}

static void emit(struct multipart *m, const char *at, size_t n) {
    if (n && m->want && m->state == MP_DATA) m->on_data(m->arg, at, n);
}

/* A whole delimiter was matched: the part before it (if any) ends. */
static void delimiter(struct multipart *m) {
    if (m->state == MP_DATA && m->want && m->on_part_end) m->on_part_end(m->arg);
    m->want = false;
    m->matched = 0;
    m->state = MP_AFTER_DELIM;
}

/* Scans data (or preamble) for the delimiter; returns bytes consumed (all, or up to and
 * including the delimiter's last byte). */
static size_t scan(struct multipart *m, const char *at, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (m->matched == 0) {
            const char *cr = memchr(at + i, '\r', n - i);
            size_t upto = cr ? (size_t)(cr - at) : n;
            emit(m, at + i, upto - i);
            i = upto;
            if (!cr) break;
            m->matched = 1;
            i++;
            continue;
        }
        if (at[i] == m->delim[m->matched]) {
            i++;
            if (++m->matched == m->dlen) {
                delimiter(m);
                return i;
            }
            continue;
        }
        emit(m, m->delim, m->matched); /* not a delimiter after all: it was data */
        m->matched = 0;                /* at[i] is looked at again */
    }
    return i;
}

/* The part's header block is complete: find its Content-Disposition and ask on_part. */
static int headers_done(struct multipart *m) {
    char name[256], filename[1024];
    bool has_name = false, has_file = false;
    char *line = m->headers.data;
    while (line && *line) {
        char *end = strstr(line, "\r\n");
        if (end) *end = '\0';
        if (strncasecmp(line, "content-disposition:", 20) == 0) {
            const char *v = line + 20;
            while (*v == ' ' || *v == '\t') v++;
            if (strncasecmp(v, "form-data", 9) != 0)
                return fail(m, "a part's Content-Disposition is not form-data");
            if (strstr(v, "%00"))
                return fail(m,
                            "a part's Content-Disposition holds %00 (a NUL byte) in a parameter");
            has_name = disposition_param(v, "name", name, sizeof name);
            has_file = disposition_param(v, "filename", filename, sizeof filename);
        }
        line = end ? end + 2 : NULL;
    }
    buf_reset(&m->headers);
    m->state = MP_DATA;
    m->matched = 0;
    m->want = m->on_part(m->arg, has_name ? name : NULL, has_file ? filename : NULL);
    return 0;
}

static int headers_byte(struct multipart *m, char c) {
    struct buf *h = &m->headers;
    if (h->len >= MULTIPART_HEADERS_MAX) return fail(m, "a part's headers exceed 8 KiB");
    buf_append(h, &c, 1);
    bool empty = h->len == 2 && memcmp(h->data, "\r\n", 2) == 0;
    bool end = h->len >= 4 && memcmp(h->data + h->len - 4, "\r\n\r\n", 4) == 0;
    return empty || end ? headers_done(m) : 0;
}

int multipart_feed(struct multipart *m, const char *at, size_t n) {
    size_t i = 0;
    if (m->error) return -EINVAL;
    while (i < n) {
        char c = at[i];
        int rc = 0;
        switch (m->state) {
        case MP_PREAMBLE:
        case MP_DATA: i += scan(m, at + i, n - i); continue;
        case MP_AFTER_DELIM:
            if (c == '-')
                m->state = MP_DASH;
            else if (c == '\r')
                m->state = MP_CR;
            else if (c != ' ' && c != '\t')
                rc = fail(m, "a boundary line is not followed by CRLF or \"--\"");
            break;
        case MP_DASH:
            if (c == '-')
                m->state = MP_END;
            else
                rc = fail(m, "a boundary line is not followed by CRLF or \"--\"");
            break;
        case MP_CR:
            if (c == '\n')
                m->state = MP_HEADERS;
            else
                rc = fail(m, "a boundary line is not followed by CRLF");
            break;
        case MP_HEADERS: rc = headers_byte(m, c); break;
        case MP_END: return 0; /* the epilogue is ignored */
        }
        if (rc) return rc;
        i++;
    }
    return 0;
}

int multipart_finish(struct multipart *m) {
    if (m->error) return -EINVAL;
    if (m->state == MP_END) return 0;
    if (m->state == MP_PREAMBLE) return fail(m, "the multipart body holds no boundary");
    return fail(m, "the multipart body ended before its closing boundary");
}
