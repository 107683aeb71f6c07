/* task_codec.c: the msgpack payloads of the built-in task types (exec, sleep, fail) and the
 * CLI's array-of-strings encoding. This is the only place shoal reads msgpack.
 *
 * Payloads come from Redis, so from anyone who can write to it: every decoder first walks the
 * raw bytes with check_msgpack() (well-formed, one object, no trailing bytes, nesting at most
 * MAX_DEPTH, every container's declared count plausible for the bytes left) and only then lets
 * msgpack-c build objects. Without that walk a 5-byte "array of 4 billion items" header would
 * make msgpack-c try to allocate ~100 GB before noticing the input is short. */
#include "common/task_codec.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MAX_DEPTH 16 /* deepest nesting accepted; our payloads need 2 */

/* ---- encoding ---- */

static int buf_write_cb(void *data, const char *p, size_t n) {
    buf_append(data, p, n);
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void task_args_exec_encode(struct buf *out, const char *const *argv, int argc,
                           const char *const *env, int envc, const char *cwd) {
    task_args_exec_encode_package(out, argv, argc, env, envc, cwd, NULL);
}

void task_args_exec_encode_package(struct buf *out, const char *const *argv, int argc,
                                   const char *const *env, int envc, const char *cwd,
                                   const char *package) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write_cb);
    msgpack_pack_map(&pk, 1 + (env && envc > 0) + (cwd != NULL) + (package != NULL));
    pack_str(&pk, "argv", 4);
    msgpack_pack_array(&pk, argc > 0 ? (size_t)argc : 0);
    for (int i = 0; i < argc; i++) pack_str(&pk, argv[i], strlen(argv[i]));
    if (env && envc > 0) {
        pack_str(&pk, "env", 3);
        msgpack_pack_map(&pk, (size_t)envc);
        for (int i = 0; i < envc; i++) {
            const char *eq = strchr(env[i], '='); /* "K" without '=' means K="" */
            size_t klen = eq ? (size_t)(eq - env[i]) : strlen(env[i]);
            pack_str(&pk, env[i], klen);
            const char *v = eq ? eq + 1 : "";
            pack_str(&pk, v, strlen(v));
        }
    }
    if (cwd) {
        pack_str(&pk, "cwd", 3);
        pack_str(&pk, cwd, strlen(cwd));
    }
    if (package) {
        pack_str(&pk, "package", 7);
        pack_str(&pk, package, strlen(package));
    }
}

void task_args_strings_encode(struct buf *out, const char *const *items, int n) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write_cb);
    msgpack_pack_array(&pk, n > 0 ? (size_t)n : 0);
    for (int i = 0; i < n; i++) pack_str(&pk, items[i], strlen(items[i]));
}

/* ---- validation of raw bytes ---- */

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Skips one object at p[*off..len). Returns 0, or -1 with *why set. Recursion is bounded by
 * MAX_DEPTH; loops are bounded by len because every object takes at least one byte. */
static int skip_object(const uint8_t *p, size_t len, size_t *off, int depth, const char **why) {
    if (depth > MAX_DEPTH) {
        *why = "nested too deeply";
        return -1;
    }
    if (*off >= len) {
        *why = "truncated";
        return -1;
    }
    uint8_t b = p[(*off)++];
    size_t left = len - *off;
    uint64_t count = 0, skip = 0; /* container items / bytes to skip */
    int hdr = 0;                  /* bytes of length field */
    bool map = false, container = false;

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return 0;
    if (b >= 0x80 && b <= 0x8f) {
        count = b & 0x0f;
        map = container = true;
    } else if (b >= 0x90 && b <= 0x9f) {
        count = b & 0x0f;
        container = true;
    } else if (b >= 0xa0 && b <= 0xbf)
        skip = b & 0x1f;
    else if (b == 0xc1) {
        *why = "byte 0xc1 is never used in msgpack";
        return -1;
    } else if (b >= 0xc4 && b <= 0xc6)
        hdr = 1 << (b - 0xc4); /* bin 8/16/32 */
    else if (b >= 0xc7 && b <= 0xc9) {
        hdr = 1 << (b - 0xc7);
        skip = 1;
    } /* ext 8/16/32 + type */
    else if (b == 0xca)
        skip = 4;
    else if (b == 0xcb)
        skip = 8;
    else if (b >= 0xcc && b <= 0xcf)
        skip = 1u << (b - 0xcc); /* uint 8..64 */
    else if (b >= 0xd0 && b <= 0xd3)
        skip = 1u << (b - 0xd0); /* int 8..64 */
    else if (b >= 0xd4 && b <= 0xd8)
        skip = 1 + (1u << (b - 0xd4)); /* fixext 1..16 */
    else if (b >= 0xd9 && b <= 0xdb)
        hdr = 1 << (b - 0xd9); /* str 8/16/32 */
    else if (b == 0xdc || b == 0xdd) {
        hdr = b == 0xdc ? 2 : 4;
        container = true;
    } else {
        hdr = b == 0xde ? 2 : 4;
        map = container = true;
    } /* 0xde, 0xdf */

    if ((size_t)hdr > left) {
        *why = "truncated";
        return -1;
    }
    if (hdr) {
        uint64_t n = be(p + *off, hdr);
        *off += (size_t)hdr;
        left -= (size_t)hdr;
        if (container)
            count = n;
        else
            skip += n;
    }
    if (!container) {
        if (skip > left) {
            *why = "truncated";
            return -1;
        }
        *off += (size_t)skip;
        return 0;
    }
    if (map) count *= 2; /* count < 2^32: no overflow */
    if (count > left) {
        *why = "truncated (a container declares more items than there are bytes)";
        return -1;
    }
    for (uint64_t i = 0; i < count; i++)
        if (skip_object(p, len, off, depth + 1, why) < 0) return -1;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Validates data and unpacks it into u (destroy it after, also on failure). */
static int unpack(const char *data, size_t len, msgpack_unpacked *u, char *err, size_t errlen) {
    msgpack_unpacked_init(u);
    if (!data || len == 0) return fail(err, errlen, "payload is empty");
    if (len > TASK_ARGS_MAX)
        return fail(err, errlen, "payload is %zu bytes; the limit is %d", len, TASK_ARGS_MAX);
    size_t off = 0;
    const char *why = NULL;
    if (skip_object((const uint8_t *)data, len, &off, 0, &why) < 0)
        return fail(err, errlen, "payload is not valid msgpack (%s)", why);
    if (off != len)
        return fail(err, errlen, "payload has %zu bytes after its msgpack value", len - off);
    size_t uoff = 0;
    if (msgpack_unpack_next(u, data, len, &uoff) != MSGPACK_UNPACK_SUCCESS)
        return fail(err, errlen, "payload is not valid msgpack");
    return 0;
}

static const char *type_name(msgpack_object_type t) {
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "a float";
    case MSGPACK_OBJECT_STR: return "a string";
    case MSGPACK_OBJECT_ARRAY: return "an array";
    case MSGPACK_OBJECT_MAP: return "a map";
    case MSGPACK_OBJECT_BIN: return "binary";
    case MSGPACK_OBJECT_EXT: return "an extension";
    }
    return "unknown";
}

/* A string object as a NUL-terminated copy; NULL (with err) when o is no string or holds NUL. */
static char *dup_str(const msgpack_object *o, const char *what, char *err, size_t errlen) {
    if (o->type != MSGPACK_OBJECT_STR) {
        fail(err, errlen, "%s is not a string (got %s)", what, type_name(o->type));
        return NULL;
    }
    if (o->via.str.size == 0) return xstrdup(""); /* msgpack-c gives NULL for "" */
    if (memchr(o->via.str.ptr, '\0', o->via.str.size)) {
        fail(err, errlen, "%s contains a NUL byte", what);
        return NULL;
    }
    return xstrndup(o->via.str.ptr, o->via.str.size);
}

static bool key_is(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->via.str.size == n && n > 0 && memcmp(k->via.str.ptr, s, n) == 0;
}

/* ---- exec ---- */

static int decode_argv(const msgpack_object *o, struct exec_args *out, char *err, size_t errlen) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return fail(err, errlen, "argv is not an array of strings (got %s)", type_name(o->type));
    uint32_t n = o->via.array.size;
    if (n == 0) return fail(err, errlen, "argv is empty: it needs the program to run");
    out->argv = xcalloc(n + 1, sizeof *out->argv);
    for (uint32_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "argv[%" PRIu32 "]", i);
        if (!(out->argv[i] = dup_str(&o->via.array.ptr[i], what, err, errlen))) return -EINVAL;
        out->argc = (int)i + 1;
    }
    if (out->argv[0][0] == '\0') return fail(err, errlen, "argv[0] is empty");
    return 0;
}

static int decode_env(const msgpack_object *o, struct exec_args *out, char *err, size_t errlen) {
    if (o->type == MSGPACK_OBJECT_NIL) return 0;
    if (o->type != MSGPACK_OBJECT_MAP)
        return fail(err, errlen, "env is not a map of strings (got %s)", type_name(o->type));
    uint32_t n = o->via.map.size;
    out->env = xcalloc(n + 1, sizeof *out->env);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        char *k = dup_str(&kv->key, "an env name", err, errlen);
        if (!k) return -EINVAL;
        char what[96];
        snprintf(what, sizeof what, "env %.64s", k);
        char *v = dup_str(&kv->val, what, err, errlen);
        if (!v || !k[0] || strchr(k, '=')) {
            if (v) fail(err, errlen, "env name '%.64s' is empty or contains '='", k);
            free(k);
            free(v);
            return -EINVAL;
        }
        size_t kl = strlen(k), vl = strlen(v);
        char *kv_s = xmalloc(kl + vl + 2);
        memcpy(kv_s, k, kl);
        kv_s[kl] = '=';
        memcpy(kv_s + kl + 1, v, vl + 1);
        free(k);
        free(v);
        out->env[i] = kv_s;
        out->envc = (int)i + 1;
    }
    return 0;
}

static int decode_exec_field(const msgpack_object_kv *kv, struct exec_args *out, unsigned *seen,
                             char *err, size_t errlen) {
    static const char *const names[] = {"argv", "env", "cwd", "package"};
    const msgpack_object *k = &kv->key;
    if (k->type != MSGPACK_OBJECT_STR)
        return fail(err, errlen, "a key of the exec map is not a string (got %s)",
                    type_name(k->type));
    for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
        if (!key_is(k, names[i])) continue;
        if (*seen & (1u << i)) return fail(err, errlen, "key '%s' appears twice", names[i]);
        *seen |= 1u << i;
        if (i == 0) return decode_argv(&kv->val, out, err, errlen);
        if (i == 1) return decode_env(&kv->val, out, err, errlen);
        if (kv->val.type == MSGPACK_OBJECT_NIL) return 0;
        char **dst = i == 2 ? &out->cwd : &out->package;
        if (!(*dst = dup_str(&kv->val, names[i], err, errlen))) return -EINVAL;
        if (!(*dst)[0]) return fail(err, errlen, "%s is empty", names[i]);
        return 0;
    }
    return fail(err, errlen,
                "unknown key '%.*s' in the exec map (expected argv, env, cwd, "
                "package)",
                k->via.str.size > 40 ? 40 : (int)k->via.str.size,
                k->via.str.size ? k->via.str.ptr : "");
}

int task_args_exec_decode(const char *data, size_t len, struct exec_args *out, char *err,
                          size_t errlen) {
    memset(out, 0, sizeof *out);
    msgpack_unpacked u;
    int rc = unpack(data, len, &u, err, errlen);
    if (rc < 0) goto done;
    const msgpack_object *o = &u.data;
    if (o->type != MSGPACK_OBJECT_MAP) {
        rc =
            fail(err, errlen, "payload is not a msgpack map (got %s); exec needs {\"argv\": [...]}",
                 type_name(o->type));
        goto done;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < o->via.map.size && rc == 0; i++)
        rc = decode_exec_field(&o->via.map.ptr[i], out, &seen, err, errlen);
    if (rc == 0 && !(seen & 1)) rc = fail(err, errlen, "argv is missing");
done:
    msgpack_unpacked_destroy(&u);
    return rc;
}

void exec_args_free(struct exec_args *a) {
    for (int i = 0; a->argv && a->argv[i]; i++) free(a->argv[i]);
    for (int i = 0; a->env && a->env[i]; i++) free(a->env[i]);
    free(a->argv);
    free(a->env);
    free(a->cwd);
    free(a->package);
    memset(a, 0, sizeof *a);
}

/* ---- sleep ---- */

static int sleep_value(const msgpack_object *o, int64_t *ms, char *err, size_t errlen) {
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX)
            return fail(err, errlen, "sleep of %" PRIu64 " ms is out of range", o->via.u64);
        *ms = (int64_t)o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return fail(err, errlen, "sleep of %" PRId64 " ms is negative", o->via.i64);
    case MSGPACK_OBJECT_STR: {
        char *s = dup_str(o, "the sleep duration", err, errlen);
        if (!s) return -EINVAL;
        int rc = parse_duration_ms(s, ms);
        if (rc < 0)
            fail(err, errlen, "sleep duration '%.40s' is not a duration (like 250ms, 30s, 1m30s)",
                 s);
        free(s);
        return rc < 0 ? -EINVAL : 0;
    }
    default:
        return fail(err, errlen, "sleep takes milliseconds or a duration string (got %s)",
                    type_name(o->type));
    }
}

int task_args_sleep_decode(const char *data, size_t len, int64_t *ms, char *err, size_t errlen) {
    msgpack_unpacked u;
    int rc = unpack(data, len, &u, err, errlen);
    if (rc == 0) {
        const msgpack_object *o = &u.data;
        if (o->type == MSGPACK_OBJECT_ARRAY) {
            if (o->via.array.size != 1)
                rc = fail(err, errlen, "sleep takes one duration (got %" PRIu32 " items)",
                          o->via.array.size);
            else
                rc = sleep_value(&o->via.array.ptr[0], ms, err, errlen);
        } else {
            rc = sleep_value(o, ms, err, errlen);
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* ---- fail ---- */

static int fail_join(const msgpack_object *o, struct buf *b, char *err, size_t errlen) {
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *it = &o->via.array.ptr[i];
        if (it->type != MSGPACK_OBJECT_STR)
            return fail(err, errlen, "fail message item %" PRIu32 " is not a string (got %s)", i,
                        type_name(it->type));
        if (b->len) buf_append(b, " ", 1);
        buf_append(b, it->via.str.ptr, it->via.str.size);
    }
    return 0;
}

int task_args_fail_decode(const char *data, size_t len, char **msg, char *err, size_t errlen) {
    *msg = NULL;
    struct buf b;
    buf_init(&b);
    msgpack_unpacked u;
    int rc = 0;
    if (!data || len == 0) { /* no arguments at all: the default message */
        msgpack_unpacked_init(&u);
    } else if ((rc = unpack(data, len, &u, err, errlen)) == 0) {
        const msgpack_object *o = &u.data;
        if (o->type == MSGPACK_OBJECT_STR)
            buf_append(&b, o->via.str.ptr, o->via.str.size);
        else if (o->type == MSGPACK_OBJECT_ARRAY)
            rc = fail_join(o, &b, err, errlen);
        else if (o->type != MSGPACK_OBJECT_NIL)
            rc = fail(err, errlen, "fail takes a message string or an array of strings (got %s)",
                      type_name(o->type));
    }
    msgpack_unpacked_destroy(&u);
    if (rc == 0) {
        /* A NUL inside the message would silently cut it: show it as a space instead. */
        for (size_t i = 0; i < b.len; i++)
            if (b.data[i] == '\0') b.data[i] = ' ';
        *msg = xstrdup(b.len ? b.data : "failed on purpose");
    }
    buf_free(&b);
    return rc;
}
