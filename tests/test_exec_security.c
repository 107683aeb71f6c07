/* test_exec_security.c: what an exec task cannot reach, end to end with real `shoal worker`
 * processes, the real CLI and a redis-server with requirepass: the node's secrets stay out of a
 * task's environment (the node's Redis password comes from --redis-password-file, for the node
 * and the CLI alike), enqueue refuses loader hooks in a task's env up front (CLI and HTTP API,
 * nothing queued), and --exec-user runs tasks as another account that cannot read the node's
 * /proc/PID/environ, still in a process group of its own and still dying with its node. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/client.h"
#include "common/task_codec.h"
#include "tests/harness.h"

#define PW "redis-pw-5e0b7c1d"
#define KEY "api-key-0a9f3b72c4"
#define FOO "foo-secret-3c9d"

static struct h_redis redis;
static struct shoal_client client;
static char pwfile[256];
static char url_pw[128]; /* the test's own URL, with the password */

static void write_file(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void setup(void) {
    const char *extra[] = {"--requirepass", PW, NULL};
    cr_assert_eq(h_redis_start(&redis, extra), 0, "redis-server did not start");
    snprintf(pwfile, sizeof pwfile, "%s/redis-password", redis.dir);
    write_file(pwfile, PW "\n", 0600);
    snprintf(url_pw, sizeof url_pw, "redis://:" PW "@%s", redis.url + strlen("redis://"));
    char err[256];
    cr_assert_eq(shoal_client_open(&client, url_pw, "shoal", err, sizeof err), 0, "%s", err);
}
static void teardown(void) {
    shoal_client_close(&client);
    h_redis_stop(&redis, false);
}
TestSuite(sec, .init = setup, .fini = teardown, .timeout = 90);

/* A node whose URL has no password (it is in pwfile), with secrets in its environment. */
static void start_node(struct h_worker *w, const char *name, const char *const *extra) {
    char listen[40];
    w->port = h_free_port();
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", w->port);
    snprintf(w->log, sizeof w->log, "%s/%s-%d.log", redis.dir, name, w->port);
    const char *argv[40] = {h_shoal_bin(), "worker", "--redis", redis.url,  "--redis-password-file",
                            pwfile,        "--name", name,      "--listen", listen,
                            "--heartbeat", "200ms"};
    int n = 12;
    for (int i = 0; extra && extra[i] && n < 39; i++) argv[n++] = extra[i];
    const char *env[] = {"SHOAL_API_KEY=" KEY, "FOO_SECRET=" FOO, NULL};
    w->pid = h_spawn(argv, env, w->log);
    if (!h_ping_is(w, 200, 10000)) {
        char *log = h_read_file(w->log);
        cr_assert_fail("%s did not come up; log:\n%s", name, log ? log : "");
    }
}

/* Waits for the task to reach state; returns its log (caller frees). */
static char *await_log(int64_t id, const char *state) {
    bool ok = h_task_reaches(&client, id, state, 10000);
    size_t len = 0;
    char err[256];
    char *log = shoal_task_log(&client, id, &len, err, sizeof err);
    struct shoal_task t;
    memset(&t, 0, sizeof t);
    shoal_task_get(&client, id, &t, err, sizeof err);
    cr_assert(ok, "ServerTasks-%lld is %s (%s), wanted %s; log: %s", (long long)id, t.state,
              t.error ? t.error : "", state, log ? log : "");
    shoal_task_free(&t);
    return log ? log : strdup("");
}

static int64_t enqueue_exec(const char *const *argv, int argc) {
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, argv, argc, NULL, 0, NULL);
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    o.args = b.data;
    o.args_len = b.len;
    int64_t id = 0;
    char err[256];
    cr_assert_eq(shoal_enqueue(&client, &o, 1, &id, err, sizeof err), 0, "%s", err);
    buf_free(&b);
    return id;
}

/* The node and the CLI take the Redis password from a file; a task printing its environment
 * sees none of the node's secrets, only what the node generates for it. */
Test(sec, password_file_and_no_secrets_in_a_task) {
    struct h_worker w;
    const char *extra[] = {"--allow-exec", "/usr/bin/env", NULL};
    start_node(&w, "vault", extra);
    char *out = NULL, *err = NULL;
    const char *args[] = {"enqueue", "--redis", redis.url,      "--redis-password-file",
                          pwfile,    "--",      "/usr/bin/env", NULL};
    int code = h_shoal(&out, &err, args);
    cr_assert_eq(code, 0, "shoal enqueue with --redis-password-file: %s", err);
    int64_t id = 0;
    out[strcspn(out, "\n")] = '\0';
    cr_assert_eq(shoal_task_parse_id(out, &id), 0, "%s", out);
    char *log = await_log(id, "Success");
    cr_assert_null(strstr(log, KEY), "the node's API key reached the task:\n%s", log);
    cr_assert_null(strstr(log, PW), "the Redis password reached the task:\n%s", log);
    cr_assert_null(strstr(log, FOO), "%s", log);
    cr_assert_null(strstr(log, "SHOAL_REDIS"), "%s", log);
    char want[64];
    snprintf(want, sizeof want, "SHOAL_TASK_ID=ServerTasks-%lld\n", (long long)id);
    cr_assert(strstr(log, want), "%s", log);
    cr_assert(strstr(log, "SHOAL_TASK_NODE=vault\n"), "%s", log);
    free(log);
    cr_assert_eq(h_worker_stop(&w), 0);
    char *nlog = h_read_file(w.log);
    cr_assert_null(strstr(nlog, PW), "the node logged the password:\n%s", nlog);
    free(nlog);
    free(out);
    free(err);
}

/* The program gets stdin, stdout and stderr and no other descriptor of the node: before, it
 * held the node's Redis sockets (authenticated: full control of the fleet), among others. */
Test(sec, a_task_inherits_no_descriptor_of_the_node) {
    struct h_worker w;
    const char *extra[] = {"--allow-exec", "/usr/bin/ls", NULL};
    start_node(&w, "sealed", extra);
    const char *argv[] = {"/usr/bin/ls", "-l", "/proc/self/fd"};
    char *log = await_log(enqueue_exec(argv, 3), "Success");
    int sockets = 0, entries = 0;
    for (const char *p = log; (p = strstr(p, " -> ")); p += 4) {
        entries++;
        if (strncmp(p + 4, "socket:", 7) == 0) sockets++;
    }
    /* 0, 1, 2 and ls's own handle on /proc/self/fd; stdout and stderr are the node's pipes. */
    cr_assert_eq(entries, 4, "the task holds %d descriptors:\n%s", entries, log);
    cr_assert_eq(sockets, 2, "the task holds a socket of the node:\n%s", log);
    free(log);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* --exec-env-allow hands a named variable of the node's environment to its tasks. */
Test(sec, exec_env_allow_passes_a_node_variable) {
    struct h_worker w;
    const char *extra[] = {"--allow-exec", "/usr/bin/env", "--exec-env-allow", "FOO_SECRET", NULL};
    start_node(&w, "sharing", extra);
    const char *argv[] = {"/usr/bin/env"};
    char *log = await_log(enqueue_exec(argv, 1), "Success");
    cr_assert(strstr(log, "FOO_SECRET=" FOO "\n"), "%s", log);
    cr_assert_null(strstr(log, KEY), "%s", log);
    free(log);
    cr_assert_eq(h_worker_stop(&w), 0);
}

static bool has(const char *s, const char *part) { return s && strstr(s, part); }

Test(sec, password_file_errors_are_clear) {
    char wrong[300], empty[300], missing[300];
    snprintf(wrong, sizeof wrong, "%s/wrong", redis.dir);
    snprintf(empty, sizeof empty, "%s/empty", redis.dir);
    snprintf(missing, sizeof missing, "%s/missing", redis.dir);
    write_file(wrong, "not-the-password\n", 0600);
    write_file(empty, "", 0600);
    char *out = NULL, *err = NULL;
    const char *a1[] = {"nodes", "--redis", redis.url, "--redis-password-file", wrong, NULL};
    cr_assert_eq(h_shoal(&out, &err, a1), 1, "%s", err);
    cr_assert(has(err, "Redis refused AUTH"), "%s", err);
    cr_assert(!has(err, "not-the-password"), "the password shows: %s", err);
    free(out), free(err);
    const char *a2[] = {"nodes", "--redis", redis.url, "--redis-password-file", missing, NULL};
    cr_assert_eq(h_shoal(&out, &err, a2), 1, "%s", err);
    cr_assert(has(err, "--redis-password-file") && has(err, "No such file"), "%s", err);
    free(out), free(err);
    const char *a3[] = {"worker", "--redis", redis.url, "--redis-password-file", empty, NULL};
    cr_assert_eq(h_shoal(&out, &err, a3), 2, "%s", err);
    cr_assert(has(err, "is empty"), "%s", err);
    free(out), free(err);
    const char *a4[] = {"nodes", "--redis", redis.url, NULL}; /* and without: refused */
    cr_assert_eq(h_shoal(&out, &err, a4), 1, "%s", err);
    cr_assert(has(err, "NOAUTH") || has(err, "Authentication required"), "%s", err);
    free(out), free(err);
}

/* One POST on a fresh connection; returns the status, the body in body. */
static int post(int port, const char *path, const char *json, char *body, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "X-Octopus-ApiKey: " KEY "\r\nContent-Length: %zu\r\n\r\n%s",
                     path, strlen(json), json);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < len && (r = read(fd, body + got, len - got - 1)) > 0) got += (size_t)r;
    body[got] = '\0';
    close(fd);
    int status = -1;
    sscanf(body, "HTTP/1.1 %d", &status);
    return status;
}

static long long queued_total(void) {
    redisContext *c = h_redis_connect(&redis);
    redisReply *r = redisCommand(c, "AUTH %s", PW);
    freeReplyObject(r);
    r = redisCommand(c, "GET {shoal}:seq");
    long long n = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Loader hooks in a task's env are refused at enqueue, by the API (400) and the CLI (exit 2),
 * naming the variable; nothing enters the queue. */
Test(sec, enqueue_refuses_loader_hooks_up_front) {
    struct h_worker w;
    const char *extra[] = {"--api-key", KEY, "--allow-exec", "/bin/true", NULL};
    start_node(&w, "gate", extra);
    long long before = queued_total();
    static const char *const bad[] = {"LD_PRELOAD", "GCONV_PATH",   "BASH_ENV",
                                      "PYTHONPATH", "NODE_OPTIONS", "SHOAL_TASK_ID"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[300], body[4096], want[64];
        snprintf(json, sizeof json,
                 "{\"Type\":\"exec\",\"Arguments\":{\"argv\":[\"/bin/true\"],"
                 "\"env\":{\"A\":\"1\",\"%s\":\"/tmp/x\"}}}",
                 bad[i]);
        snprintf(want, sizeof want, "env %s is refused", bad[i]);
        int status = post(w.port, "/api/tasks", json, body, sizeof body);
        cr_assert_eq(status, 400, "%s: %d %s", bad[i], status, body);
        cr_assert(strstr(body, want), "%s", body);

        char envflag[64], *out = NULL, *err = NULL;
        snprintf(envflag, sizeof envflag, "%s=/tmp/x", bad[i]);
        const char *args[] = {"enqueue", "--redis", url_pw,      "--env",
                              envflag,   "--",      "/bin/true", NULL};
        cr_assert_eq(h_shoal(&out, &err, args), 2, "%s: %s", bad[i], err);
        cr_assert(has(err, want), "%s", err);
        free(out), free(err);
    }
    cr_assert_eq(queued_total(), before, "a refused task entered the queue");
    /* The C client refuses too (it is what the CLI and bench tools use). */
    const char *argv[] = {"/bin/true"};
    const char *env[] = {"LD_PRELOAD=/tmp/x.so"};
    struct buf b;
    buf_init(&b);
    task_args_exec_encode(&b, argv, 1, env, 1, NULL);
    struct shoal_task_opts o;
    shoal_task_opts_init(&o);
    o.args = b.data;
    o.args_len = b.len;
    int64_t id;
    char err[256];
    cr_assert_eq(shoal_enqueue(&client, &o, 1, &id, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "env LD_PRELOAD is refused"), "%s", err);
    buf_free(&b);
    cr_assert_eq(queued_total(), before);
    cr_assert_eq(h_worker_stop(&w), 0);
}

/* ---- --exec-user (needs root to switch) ---- */

static bool pid_gone(void *arg) {
    pid_t p = *(pid_t *)arg;
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    FILE *f = fopen(path, "r");
    if (!f) return true;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    char *rp = strrchr(st, ')');
    return rp && (rp[2] == 'Z' || rp[2] == 'X');
}

Test(sec, exec_user_runs_tasks_as_another_account) {
    if (geteuid() != 0) cr_skip_test("--exec-user needs root to switch accounts (CI runs as root)");
    struct h_worker w;
    const char *extra[] = {"--allow-exec", "/usr/bin/,/bin/", "--exec-user", "nobody", NULL};
    start_node(&w, "sep", extra);
    const char *id_argv[] = {"/usr/bin/id", "-u"};
    char *log = await_log(enqueue_exec(id_argv, 2), "Success");
    cr_assert_str_eq(log, "65534\n");
    free(log);
    char environ_path[64];
    snprintf(environ_path, sizeof environ_path, "/proc/%d/environ", (int)w.pid);
    const char *cat[] = {"/bin/cat", environ_path};
    log = await_log(enqueue_exec(cat, 2), "Failed");
    cr_assert(strstr(log, "Permission denied"), "%s", log);
    cr_assert_null(strstr(log, KEY), "%s", log);
    free(log);

    /* Its own process group, killed with its node (the shim, which keeps the node's account,
     * stops it when the node dies). */
    char dir[] = "/tmp/shoal-sep-XXXXXX", pidfile[400], script[600];
    cr_assert_not_null(mkdtemp(dir));
    chmod(dir, 0777); /* the task account writes its pid here */
    snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
    snprintf(script, sizeof script, "echo $$ > %s; exec sleep 30", pidfile);
    const char *sh[] = {"/bin/sh", "-c", script};
    enqueue_exec(sh, 3);
    pid_t child = 0;
    for (int i = 0; i < 500 && child <= 0; i++) {
        char *s = h_read_file(pidfile);
        if (s) child = (pid_t)atoi(s);
        free(s);
        if (child <= 0) usleep(10000);
    }
    cr_assert(child > 0, "the task never started");
    cr_assert_neq(getpgid(child), getpgid(w.pid), "a process group of its own (its shim's)");
    cr_assert_eq(getsid(child), getsid(w.pid), "the node's session");
    kill(w.pid, SIGKILL);
    h_wait(w.pid, 2000);
    w.pid = 0;
    cr_assert(h_eventually(pid_gone, &child, 3000), "pid %d outlived its node", (int)child);
    unlink(pidfile);
    rmdir(dir);
}

Test(sec, exec_user_refused_at_startup_when_impossible) {
    char *out = NULL, *err = NULL;
    const char *a1[] = {"worker", "--redis", redis.url, "--exec-user", "no-such-user-shoal", NULL};
    cr_assert_eq(h_shoal(&out, &err, a1), 2, "%s", err);
    cr_assert(has(err, "no user 'no-such-user-shoal'"), "%s", err);
    free(out), free(err);
    if (geteuid() != 0) cr_skip_test("the privilege check needs root to start a node as nobody");
    /* A node without the right to switch (run as nobody, no capabilities) says so. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "setpriv --reuid=nobody --regid=nogroup --clear-groups %s worker "
             "--redis %s --exec-user daemon 2>&1; echo exit=$?",
             h_shoal_bin(), redis.url);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    pclose(p);
    cr_assert(strstr(buf, "cannot switch to uid") && strstr(buf, "CAP_SETUID"), "%s", buf);
    cr_assert(strstr(buf, "exit=2"), "%s", buf);
}
