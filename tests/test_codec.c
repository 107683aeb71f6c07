/* test_codec.c: unit tests of common/task_codec.c: round trips of every payload shape and every
 * error path, including hostile bytes (truncated, huge declared sizes, deep nesting). */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/task_codec.h"
#include "common/util.h"

static char err[256];

static int pk_write_cb(void *data, const char *p, size_t n) {
    buf_append(data, p, n);
    return 0;
}

static void pk_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* Decodes an exec payload expecting failure, and checks the message contains want. */
static void exec_refused(const struct buf *b, const char *want) {
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode(b->data, b->len, &a, err, sizeof err), -EINVAL,
                 "accepted; want '%s'", want);
    cr_assert(strstr(err, want), "error '%s' lacks '%s'", err, want);
    exec_args_free(&a);
}

Test(codec, exec_round_trip) {
    const char *argv[] = {"/bin/echo", "hello world", ""};
    const char *env[] = {"FOO=bar", "EMPTY=", "EQ=a=b", "NOVAL"};
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, argv, 3, env, 4, "/tmp");
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode(b.data, b.len, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(a.argc, 3);
    cr_assert_str_eq(a.argv[0], "/bin/echo");
    cr_assert_str_eq(a.argv[1], "hello world");
    cr_assert_str_eq(a.argv[2], "");
    cr_assert_null(a.argv[3]);
    cr_assert_eq(a.envc, 4);
    cr_assert_str_eq(a.env[0], "FOO=bar");
    cr_assert_str_eq(a.env[1], "EMPTY=");
    cr_assert_str_eq(a.env[2], "EQ=a=b");
    cr_assert_str_eq(a.env[3], "NOVAL=");
    cr_assert_null(a.env[4]);
    cr_assert_str_eq(a.cwd, "/tmp");
    exec_args_free(&a);
    exec_args_free(&a); /* idempotent */
    buf_free(&b);
}

Test(codec, exec_minimal) {
    const char *argv[] = {"true"};
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, argv, 1, NULL, 0, NULL);
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode(b.data, b.len, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(a.argc, 1);
    cr_assert_null(a.env);
    cr_assert_null(a.cwd);
    exec_args_free(&a);
    buf_free(&b);
}

Test(codec, exec_nil_env_and_cwd_mean_none) {
    struct buf b;
    buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, pk_write_cb);
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "argv");
    msgpack_pack_array(&pk, 1);
    pk_str(&pk, "x");
    pk_str(&pk, "env");
    msgpack_pack_nil(&pk);
    pk_str(&pk, "cwd");
    msgpack_pack_nil(&pk);
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode(b.data, b.len, &a, err, sizeof err), 0, "%s", err);
    cr_assert_null(a.env);
    cr_assert_null(a.cwd);
    exec_args_free(&a);
    buf_free(&b);
}

/* One bad exec map per case: build writes the map's items after a map header of n. */
struct bad_exec {
    const char *want;
    int n;
    void (*build)(msgpack_packer *pk);
};

static void b_no_argv(msgpack_packer *pk) {
    pk_str(pk, "cwd");
    pk_str(pk, "/");
}
static void b_argv_not_array(msgpack_packer *pk) {
    pk_str(pk, "argv");
    pk_str(pk, "/bin/ls");
}
static void b_argv_empty(msgpack_packer *pk) {
    pk_str(pk, "argv");
    msgpack_pack_array(pk, 0);
}
static void b_argv_item(msgpack_packer *pk) {
    pk_str(pk, "argv");
    msgpack_pack_array(pk, 3);
    pk_str(pk, "a");
    pk_str(pk, "b");
    msgpack_pack_int(pk, 7);
}
static void b_argv_nul(msgpack_packer *pk) {
    pk_str(pk, "argv");
    msgpack_pack_array(pk, 1);
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}
static void b_argv0_empty(msgpack_packer *pk) {
    pk_str(pk, "argv");
    msgpack_pack_array(pk, 1);
    pk_str(pk, "");
}
static void b_argv_bin(msgpack_packer *pk) {
    pk_str(pk, "argv");
    msgpack_pack_array(pk, 1);
    msgpack_pack_bin(pk, 1);
    msgpack_pack_bin_body(pk, "x", 1);
}
static void argv_ok(msgpack_packer *pk) {
    pk_str(pk, "argv");
    msgpack_pack_array(pk, 1);
    pk_str(pk, "x");
}
static void b_dup(msgpack_packer *pk) {
    argv_ok(pk);
    argv_ok(pk);
}
static void b_unknown(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "args");
    msgpack_pack_nil(pk);
}
static void b_key_int(msgpack_packer *pk) {
    argv_ok(pk);
    msgpack_pack_int(pk, 1);
    msgpack_pack_nil(pk);
}
static void b_env_array(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "env");
    msgpack_pack_array(pk, 0);
}
static void b_env_key(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "env");
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 1);
    pk_str(pk, "v");
}
static void b_env_val(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "env");
    msgpack_pack_map(pk, 1);
    pk_str(pk, "K");
    msgpack_pack_true(pk);
}
static void b_env_eq(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "env");
    msgpack_pack_map(pk, 1);
    pk_str(pk, "A=B");
    pk_str(pk, "v");
}
static void b_env_empty(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "env");
    msgpack_pack_map(pk, 1);
    pk_str(pk, "");
    pk_str(pk, "v");
}
static void b_cwd_int(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "cwd");
    msgpack_pack_int(pk, 3);
}
static void b_cwd_empty(msgpack_packer *pk) {
    argv_ok(pk);
    pk_str(pk, "cwd");
    pk_str(pk, "");
}

Test(codec, exec_error_paths) {
    const struct bad_exec cases[] = {
        {"argv is missing", 1, b_no_argv},
        {"argv is not an array of strings (got a string)", 1, b_argv_not_array},
        {"argv is empty", 1, b_argv_empty},
        {"argv[2] is not a string (got an integer)", 1, b_argv_item},
        {"argv[0] contains a NUL byte", 1, b_argv_nul},
        {"argv[0] is empty", 1, b_argv0_empty},
        {"argv[0] is not a string (got binary)", 1, b_argv_bin},
        {"key 'argv' appears twice", 2, b_dup},
        {"unknown key 'args'", 2, b_unknown},
        {"a key of the exec map is not a string", 2, b_key_int},
        {"env is not a map of strings (got an array)", 2, b_env_array},
        {"an env name is not a string", 2, b_env_key},
        {"env K is not a string (got a boolean)", 2, b_env_val},
        {"env name 'A=B' is empty or contains '='", 2, b_env_eq},
        {"env name '' is empty", 2, b_env_empty},
        {"cwd is not a string", 2, b_cwd_int},
        {"cwd is empty", 2, b_cwd_empty},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct buf b;
        buf_init(&b);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b, pk_write_cb);
        msgpack_pack_map(&pk, (size_t)cases[i].n);
        cases[i].build(&pk);
        exec_refused(&b, cases[i].want);
        buf_free(&b);
    }
}

Test(codec, exec_not_a_map) {
    const char *items[] = {"/bin/echo", "hi"};
    struct buf b;
    buf_init(&b);
    task_args_strings_encode(&b, items, 2);
    exec_refused(&b, "payload is not a msgpack map (got an array)");
    buf_free(&b);
}

/* Raw byte strings that are not (one, complete, sane) msgpack value. */
Test(codec, hostile_bytes) {
    static const struct {
        const char *bytes;
        size_t len;
        const char *want;
    } cases[] = {
        {"", 0, "payload is empty"},
        {"\xc1", 1, "0xc1"},
        {"\x81\xa4"
         "ar",
         4, "truncated"},
        {"\xdd\xff\xff\xff\xff\x01", 6, "more items than there are bytes"}, /* array32 4G */
        {"\xdf\xff\xff\xff\xff\x01", 6, "more items than there are bytes"}, /* map32 4G */
        {"\xdb\xff\xff\xff\xff"
         "abc",
         8, "truncated"}, /* str32 4G */
        {"\xc6\x00\x00\x00\x10"
         "ab",
         7, "truncated"},                         /* bin32 */
        {"\xc9\x00\x00\x00\x01", 5, "truncated"}, /* ext32 */
        {"\xd8\x01"
         "abc",
         5, "truncated"},                 /* fixext16 */
        {"\xcf\x01\x02", 3, "truncated"}, /* uint64 */
        {"\xc0\xc0", 2, "1 bytes after its msgpack value"},
        {"\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0", 21,
         "nested too deeply"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct exec_args a;
        int64_t ms;
        char *msg;
        cr_assert_eq(task_args_exec_decode(cases[i].bytes, cases[i].len, &a, err, sizeof err),
                     -EINVAL);
        cr_assert(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err, cases[i].want);
        exec_args_free(&a);
        cr_assert_eq(task_args_sleep_decode(cases[i].bytes, cases[i].len, &ms, err, sizeof err),
                     -EINVAL);
        cr_assert(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err, cases[i].want);
        if (cases[i].len == 0) continue; /* fail: no payload means the default message */
        cr_assert_eq(task_args_fail_decode(cases[i].bytes, cases[i].len, &msg, err, sizeof err),
                     -EINVAL);
        cr_assert_null(msg);
    }
}

Test(codec, too_large) {
    size_t n = TASK_ARGS_MAX + 1;
    char *big = xcalloc(1, n);
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode(big, n, &a, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "the limit is 1048576"), "%s", err);
    exec_args_free(&a);
    free(big);
}

/* Encodes one sleep payload by a packer callback and decodes it. */
static int sleep_of(void (*build)(msgpack_packer *), int64_t *ms) {
    struct buf b;
    buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, pk_write_cb);
    build(&pk);
    int rc = task_args_sleep_decode(b.data, b.len, ms, err, sizeof err);
    buf_free(&b);
    return rc;
}

static void s_int(msgpack_packer *pk) { msgpack_pack_int(pk, 250); }
static void s_zero(msgpack_packer *pk) { msgpack_pack_int(pk, 0); }
static void s_str(msgpack_packer *pk) { pk_str(pk, "1m30s"); }
static void s_arr(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    pk_str(pk, "250ms");
}
static void s_arr_int(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 5);
}
static void s_neg(msgpack_packer *pk) { msgpack_pack_int(pk, -5); }
static void s_huge(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }
static void s_float(msgpack_packer *pk) { msgpack_pack_double(pk, 1.5); }
static void s_bad(msgpack_packer *pk) { pk_str(pk, "soon"); }
static void s_two(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    pk_str(pk, "1s");
    pk_str(pk, "2s");
}
static void s_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void s_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }

Test(codec, sleep_shapes) {
    int64_t ms = -1;
    cr_assert_eq(sleep_of(s_int, &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(sleep_of(s_zero, &ms), 0);
    cr_assert_eq(ms, 0);
    cr_assert_eq(sleep_of(s_str, &ms), 0);
    cr_assert_eq(ms, 90000);
    cr_assert_eq(sleep_of(s_arr, &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(sleep_of(s_arr_int, &ms), 0);
    cr_assert_eq(ms, 5);
    const char *items[] = {"2s"};
    struct buf b;
    buf_init(&b);
    task_args_strings_encode(&b, items, 1); /* what the CLI sends */
    cr_assert_eq(task_args_sleep_decode(b.data, b.len, &ms, err, sizeof err), 0);
    cr_assert_eq(ms, 2000);
    buf_free(&b);
}

Test(codec, sleep_errors) {
    static const struct {
        void (*build)(msgpack_packer *);
        const char *want;
    } cases[] = {
        {s_neg, "sleep of -5 ms is negative"},
        {s_huge, "out of range"},
        {s_float, "(got a float)"},
        {s_bad, "sleep duration 'soon' is not a duration"},
        {s_two, "sleep takes one duration (got 2 items)"},
        {s_nil, "(got nil)"},
        {s_map, "(got a map)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int64_t ms;
        cr_assert_eq(sleep_of(cases[i].build, &ms), -EINVAL, "case %zu accepted", i);
        cr_assert(strstr(err, cases[i].want), "'%s' lacks '%s'", err, cases[i].want);
    }
}

static char *fail_of(void (*build)(msgpack_packer *)) {
    struct buf b;
    buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, pk_write_cb);
    build(&pk);
    char *msg = NULL;
    int rc = task_args_fail_decode(b.data, b.len, &msg, err, sizeof err);
    buf_free(&b);
    cr_assert((rc == 0) == (msg != NULL));
    return msg;
}

static void f_str(msgpack_packer *pk) { pk_str(pk, "disk full"); }
static void f_arr(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    pk_str(pk, "disk");
    pk_str(pk, "full");
}
static void f_empty_arr(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void f_empty_str(msgpack_packer *pk) { pk_str(pk, ""); }
static void f_nul(msgpack_packer *pk) {
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}
static void f_arr_int(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    pk_str(pk, "a");
    msgpack_pack_int(pk, 1);
}
static void f_int(msgpack_packer *pk) { msgpack_pack_int(pk, 1); }

Test(codec, fail_messages) {
    char *m;
    cr_assert_str_eq(m = fail_of(f_str), "disk full");
    free(m);
    cr_assert_str_eq(m = fail_of(f_arr), "disk full");
    free(m);
    cr_assert_str_eq(m = fail_of(f_empty_arr), "failed on purpose");
    free(m);
    cr_assert_str_eq(m = fail_of(f_empty_str), "failed on purpose");
    free(m);
    cr_assert_str_eq(m = fail_of(s_nil), "failed on purpose");
    free(m);
    cr_assert_str_eq(m = fail_of(f_nul), "a b");
    free(m);
    cr_assert_eq(task_args_fail_decode(NULL, 0, &m, err, sizeof err), 0);
    cr_assert_str_eq(m, "failed on purpose");
    free(m);
    cr_assert_null(fail_of(f_arr_int));
    cr_assert(strstr(err, "fail message item 1 is not a string (got an integer)"), "%s", err);
    cr_assert_null(fail_of(f_int));
    cr_assert(strstr(err, "fail takes a message string or an array of strings"), "%s", err);
}

Test(codec, errors_fit_small_buffers) {
    char tiny[8];
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode("\xc1", 1, &a, tiny, sizeof tiny), -EINVAL);
    cr_assert_eq(strlen(tiny), sizeof tiny - 1);
    exec_args_free(&a);
    cr_assert_eq(task_args_exec_decode("\xc1", 1, &a, NULL, 0), -EINVAL);
    exec_args_free(&a);
}

Test(codec, exec_package_round_trip) {
    struct buf b;
    buf_init(&b);
    const char *argv[] = {"/bin/sh", "-c", "ls \"$SHOAL_PACKAGE_PATH\""};
    task_args_exec_encode_package(&b, argv, 3, NULL, 0, NULL, "Spaces-1/MyApp.1.0.3");
    struct exec_args a;
    cr_assert_eq(task_args_exec_decode(b.data, b.len, &a, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a.package, "Spaces-1/MyApp.1.0.3");
    cr_assert_eq(a.argc, 3);
    exec_args_free(&a);
    buf_reset(&b);
    task_args_exec_encode_package(&b, argv, 3, NULL, 0, NULL, "");
    cr_assert_neq(task_args_exec_decode(b.data, b.len, &a, err, sizeof err), 0);
    cr_assert(strstr(err, "package is empty"), "%s", err);
    exec_args_free(&a);
    buf_free(&b);
}
