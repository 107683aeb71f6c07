/* pkg_client.h: a blocking HTTP client for package uploads and downloads, shared by the tests
 * (tests/test_packages.c) and the benchmark (bench/pkg_upload.c). Header-only (static
 * functions) so that each includes it without a library of its own.
 *
 * The body is generated on the fly from a seed (a xorshift stream), never stored whole, and
 * its SHA-256 computed as it is sent, so a 2 GiB upload costs the client a 256 KiB buffer.
 * Framing: raw or multipart/form-data, Content-Length or chunked, with or without "Expect:
 * 100-continue"; a cut-off point closes the socket half-way. Before every send the socket is
 * polled for an early answer (a 409 or 400 while the body is still going), which is then read
 * rather than lost to a reset. */
#ifndef SHOAL_BENCH_PKG_CLIENT_H
#define SHOAL_BENCH_PKG_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PC_BLOCK (256u << 10)
#define PC_FN static __attribute__((unused)) /* each includer uses a subset */

struct pc_upload {
    const char *space;        /* "Spaces-1"; NULL: the legacy route POST /api/packages/raw */
    const char *query;        /* "?filename=MyApp.1.0.3.zip&replace=true", or "" */
    const char *key;          /* API key, or NULL */
    const char *filename;     /* multipart: the file part's filename; NULL: raw body */
    const char *extra;        /* more header lines ("Content-Disposition: ...\r\n"), or NULL */
    uint64_t size;            /* file bytes */
    uint64_t seed;            /* the generated content */
    bool chunked;             /* Transfer-Encoding: chunked instead of Content-Length */
    bool expect;              /* Expect: 100-continue, and wait for it */
    uint64_t cut_at;          /* > 0: close after this many file bytes */
    const char *raw_body;     /* a literal body instead (malformed multipart tests) */
    const char *content_type; /* overrides the multipart/octet-stream default */
    bool no_hash;             /* skip hashing while sending (pc_expected_sha beforehand) */
};

struct pc_result {
    int status;        /* -1 when no answer came */
    bool got_continue; /* a 100 Continue was seen */
    char body[8192];   /* the answer's body (truncated) */
    char sha[65];      /* hex SHA-256 of the file bytes sent */
    uint64_t sent;     /* file bytes sent */
};

PC_FN int pc_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* The generated stream: block i of a seed is always the same bytes. A pseudo-random base
 * block per seed (made once), stamped with the block number every 4 KiB, so that generating
 * costs a copy, not the client's whole core (the node, not the client, is being measured). */
PC_FN void pc_fill(uint64_t seed, uint64_t block, unsigned char *out, size_t n) {
    static unsigned char base[PC_BLOCK];
    static uint64_t base_seed = 0;
    static bool made = false;
    if (!made || base_seed != seed) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0xD1B54A32D192ED03ULL;
        for (size_t i = 0; i + 8 <= PC_BLOCK; i += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(base + i, &x, 8);
        }
        base_seed = seed;
        made = true;
    }
    memcpy(out, base, n);
    for (size_t i = 0; i + 16 <= n; i += 4096) {
        memcpy(out + i, &block, 8);
        memcpy(out + i + 8, &seed, 8);
    }
}

/* True when an answer is already readable (poll without waiting). */
PC_FN bool pc_answered(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* Sends all of buf; false when the peer stopped taking it (or answered early). */
PC_FN bool pc_send(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        if (pc_answered(fd)) return false;
        ssize_t k = send(fd, p, n > (64u << 10) ? (64u << 10) : n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

PC_FN bool pc_send_framed(int fd, bool chunked, const void *buf, size_t n) {
    if (!chunked || n == 0) return pc_send(fd, buf, n);
    char hdr[24];
    int h = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
    return pc_send(fd, hdr, (size_t)h) && pc_send(fd, buf, n) && pc_send(fd, "\r\n", 2);
}

/* Reads one response head into head (NUL-terminated); returns its length or -1. */
PC_FN int pc_read_head(int fd, char *head, size_t len, char *extra, size_t *nextra) {
    size_t n = 0;
    *nextra = 0;
    while (n + 1 < len) {
        ssize_t k = recv(fd, head + n, len - 1 - n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        n += (size_t)k;
        head[n] = '\0';
        char *end = strstr(head, "\r\n\r\n");
        if (end) {
            size_t hl = (size_t)(end - head) + 4;
            *nextra = n - hl;
            memcpy(extra, head + hl, *nextra);
            head[hl] = '\0';
            return (int)hl;
        }
    }
    return -1;
}

PC_FN long long pc_content_length(const char *head) {
    const char *p = strcasestr(head, "\r\nContent-Length:");
    return p ? atoll(p + 17) : -1;
}

/* Completes a final answer whose head (and nextra bytes after it) was read. */
PC_FN void pc_answer_body(int fd, const char *head, const char *extra, size_t nextra,
                          struct pc_result *r) {
    r->status = atoi(head + 9);
    long long cl = pc_content_length(head);
    size_t have = nextra < sizeof r->body - 1 ? nextra : sizeof r->body - 1;
    memcpy(r->body, extra, have);
    while (cl >= 0 && (long long)have < cl && have < sizeof r->body - 1) {
        ssize_t k = recv(fd, r->body + have, sizeof r->body - 1 - have, 0);
        if (k <= 0) break;
        have += (size_t)k;
    }
    r->body[have] = '\0';
}

/* Reads a final response (skipping 100 Continue): status and body (truncated to r->body). */
PC_FN void pc_read_answer(int fd, struct pc_result *r) {
    char head[8192], extra[8192];
    size_t nextra;
    for (;;) {
        if (pc_read_head(fd, head, sizeof head, extra, &nextra) < 0) return;
        if (atoi(head + 9) == 100) { /* an interim answer; a final one follows */
            r->got_continue = true;
            if (nextra) { /* already here: it starts in extra */
                char *end = strstr(extra, "\r\n\r\n");
                if (!end) return;
                size_t hl = (size_t)(end - extra) + 4;
                memcpy(head, extra, hl);
                head[hl] = '\0';
                pc_answer_body(fd, head, extra + hl, nextra - hl, r);
                return;
            }
            continue;
        }
        pc_answer_body(fd, head, extra, nextra, r);
        return;
    }
}

/* Finishes sha into 64 hex digits (out holds 65) and frees it. */
PC_FN void pc_sha_done(EVP_MD_CTX *sha, char *out) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(sha, md, &n);
    for (unsigned i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", md[i]);
    EVP_MD_CTX_free(sha);
}

/* Uploads per o; fills r. Returns 0, or -1 when no connection could be made. */
PC_FN int pc_upload(int port, const struct pc_upload *o, struct pc_result *r) {
    static const char boundary[] = "----shoalTestBoundary7MA4YWxkTrZu0gW";
    char head[2048], pre[1024], post[128];
    int npre = 0, npost = 0;
    memset(r, 0, sizeof *r);
    r->status = -1;
    int fd = pc_connect(port);
    if (fd < 0) return -1;
    if (o->filename) {
        npre = snprintf(pre, sizeof pre,
                        "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                        "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                        boundary, o->filename);
        npost = snprintf(post, sizeof post, "\r\n--%s--\r\n", boundary);
    }
    uint64_t total = o->raw_body ? strlen(o->raw_body) : npre + o->size + npost;
    char ctype[200];
    if (o->content_type)
        snprintf(ctype, sizeof ctype, "%s", o->content_type);
    else if (o->filename || o->raw_body)
        snprintf(ctype, sizeof ctype, "multipart/form-data; boundary=%s", boundary);
    else
        snprintf(ctype, sizeof ctype, "application/octet-stream");
    char length[64];
    if (o->chunked)
        snprintf(length, sizeof length, "Transfer-Encoding: chunked\r\n");
    else
        snprintf(length, sizeof length, "Content-Length: %llu\r\n", (unsigned long long)total);
    char path[128]; /* no space: Octopus's legacy route, the default space */
    if (o->space)
        snprintf(path, sizeof path, "/api/%s/packages/raw", o->space);
    else
        snprintf(path, sizeof path, "/api/packages/raw");
    int nh = snprintf(head, sizeof head,
                      "POST %s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s"
                      "Content-Type: %s\r\n%s%s\r\n",
                      path, o->query ? o->query : "", o->key ? "X-Octopus-ApiKey: " : "",
                      o->key ? o->key : "", o->key ? "\r\n" : "", ctype, length,
                      o->expect ? "Expect: 100-continue\r\n" : "");
    if (o->extra) {
        nh -= 2; /* before the blank line */
        nh += snprintf(head + nh, sizeof head - (size_t)nh, "%s\r\n", o->extra);
    }
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    unsigned char *block = malloc(PC_BLOCK);
    bool ok = pc_send(fd, head, (size_t)nh);
    if (ok && o->expect) { /* wait for 100 Continue, or an early final answer */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) == 1) {
            char h2[8192], extra[8192];
            size_t nextra;
            if (pc_read_head(fd, h2, sizeof h2, extra, &nextra) > 0 && atoi(h2 + 9) == 100) {
                r->got_continue = true;
            } else { /* refused before the body */
                pc_answer_body(fd, h2, extra, nextra, r);
                close(fd);
                free(block);
                EVP_MD_CTX_free(sha);
                return 0;
            }
        }
    }
    if (ok && o->raw_body) ok = pc_send_framed(fd, o->chunked, o->raw_body, strlen(o->raw_body));
    if (ok && npre) ok = pc_send_framed(fd, o->chunked, pre, (size_t)npre);
    for (uint64_t off = 0, b = 0; ok && !o->raw_body && off < o->size; off += PC_BLOCK, b++) {
        size_t n = o->size - off < PC_BLOCK ? (size_t)(o->size - off) : PC_BLOCK;
        pc_fill(o->seed, b, block, n);
        if (o->cut_at && off + n >= o->cut_at) {
            n = (size_t)(o->cut_at - off);
            ok = pc_send_framed(fd, o->chunked, block, n);
            r->sent += n;
            close(fd);
            free(block);
            EVP_MD_CTX_free(sha);
            return 0;
        }
        if (!o->no_hash) EVP_DigestUpdate(sha, block, n);
        ok = pc_send_framed(fd, o->chunked, block, n);
        if (ok) r->sent += n;
    }
    if (ok && npost) ok = pc_send_framed(fd, o->chunked, post, (size_t)npost);
    if (ok && o->chunked) ok = pc_send(fd, "0\r\n\r\n", 5);
    pc_sha_done(sha, r->sha);
    pc_read_answer(fd, r);
    close(fd);
    free(block);
    return 0;
}

/* The SHA-256 of the stream an upload of size bytes with seed sends (a pass of its own). */
PC_FN void pc_expected_sha(uint64_t seed, uint64_t size, char out[65]) {
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    unsigned char *block = malloc(PC_BLOCK);
    for (uint64_t off = 0, b = 0; off < size; off += PC_BLOCK, b++) {
        size_t n = size - off < PC_BLOCK ? (size_t)(size - off) : PC_BLOCK;
        pc_fill(seed, b, block, n);
        EVP_DigestUpdate(sha, block, n);
    }
    pc_sha_done(sha, out);
    free(block);
}

/* A request with a small body (or none); the answer's status and body into r. */
PC_FN int pc_request(int port, const char *method, const char *path, const char *key,
                     struct pc_result *r) {
    char head[1024];
    memset(r, 0, sizeof *r);
    r->status = -1;
    int fd = pc_connect(port);
    if (fd < 0) return -1;
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", method,
                     path, key ? "X-Octopus-ApiKey: " : "", key ? key : "", key ? "\r\n" : "");
    if (pc_send(fd, head, (size_t)n)) pc_read_answer(fd, r);
    close(fd);
    return 0;
}

/* Downloads path: status, Content-Length, and the SHA-256 of the body (streamed). */
PC_FN int pc_download(int port, const char *path, const char *key, int *status, uint64_t *len,
                      char sha_hex[65]) {
    char head[8192], extra[8192];
    size_t nextra;
    *status = -1;
    *len = 0;
    int fd = pc_connect(port);
    if (fd < 0) return -1;
    int n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", path,
                     key ? "X-Octopus-ApiKey: " : "", key ? key : "", key ? "\r\n" : "");
    if (!pc_send(fd, head, (size_t)n) || pc_read_head(fd, head, sizeof head, extra, &nextra) < 0) {
        close(fd);
        return 0;
    }
    *status = atoi(head + 9);
    long long cl = pc_content_length(head);
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    unsigned char *block = malloc(PC_BLOCK);
    uint64_t got = nextra;
    EVP_DigestUpdate(sha, extra, nextra);
    while (cl >= 0 && (long long)got < cl) {
        ssize_t k = recv(fd, block, PC_BLOCK, 0);
        if (k <= 0) break;
        EVP_DigestUpdate(sha, block, (size_t)k);
        got += (uint64_t)k;
    }
    pc_sha_done(sha, sha_hex);
    *len = got;
    free(block);
    close(fd);
    return 0;
}

#endif
