/* multipart.h: a streaming multipart/form-data parser (RFC 7578 on RFC 2046) for uploads of
 * any size: bytes go in as they arrive, in pieces of any size, and the data of each part comes
 * out as spans of the input (no copy of the data, constant memory: the delimiter bytes held
 * back between pieces and the current part's headers, at most MULTIPART_HEADERS_MAX).
 *
 * A part's data ends at CRLF "--" boundary; the preamble before the first boundary and the
 * epilogue after the closing "--boundary--" are ignored. */
#ifndef SHOAL_HTTP_MULTIPART_H
#define SHOAL_HTTP_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define MULTIPART_BOUNDARY_MAX 70
#define MULTIPART_HEADERS_MAX 8192

enum multipart_state { MP_PREAMBLE, MP_AFTER_DELIM, MP_DASH, MP_CR, MP_HEADERS, MP_DATA, MP_END };

struct multipart {
    char delim[MULTIPART_BOUNDARY_MAX + 5]; /* CRLF "--" boundary */
    size_t dlen;
    size_t matched; /* leading delimiter bytes seen and held back */
    enum multipart_state state;
    struct buf headers; /* the current part's header block, while in MP_HEADERS */
    /* A part's headers are in: name and filename from its Content-Disposition (NULL when
     * absent). Returns true to get this part's data through on_data. */
    bool (*on_part)(void *arg, const char *name, const char *filename);
    void (*on_data)(void *arg, const char *at, size_t n);
    void (*on_part_end)(void *arg); /* after the last on_data of a wanted part */
    void *arg;
    bool want;         /* the current part's data goes to on_data */
    const char *error; /* static text once a feed failed */
};

/* Reads the boundary from a Content-Type value ("multipart/form-data; boundary=xyz"). Returns
 * 0, or -EINVAL when it is not multipart/form-data or has no usable boundary. Callbacks and arg
 * are set by the caller afterwards. Free with multipart_free(). */
int multipart_init(struct multipart *m, const char *content_type);
void multipart_free(struct multipart *m);

/* True when content_type is multipart/form-data (whatever its parameters). */
bool multipart_is_form(const char *content_type);

/* Parses n more bytes. Returns 0, or -EINVAL with m->error set (malformed); callbacks may have
 * run for the bytes before the fault. */
int multipart_feed(struct multipart *m, const char *at, size_t n);

/* The body ended: returns 0 when the closing boundary was seen, else -EINVAL with m->error. */
int multipart_finish(struct multipart *m);

/* The filename parameter of a Content-Disposition value ('attachment; filename="a.zip"', or
 * filename*=UTF-8''a.zip percent-decoded), copied into out. False when absent, too long, or
 * when it decodes to a NUL byte (%00): never a name cut short. */
bool disposition_param(const char *value, const char *param, char *out, size_t len);

#endif
