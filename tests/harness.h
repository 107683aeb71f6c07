/* harness.h: what integration and end-to-end tests share: a real redis-server on a free
 * loopback port (started, polled until it answers, stopped by PID), real `shoal` processes
 * kept by PID, a tiny blocking HTTP client for 127.0.0.1, and bounded polling.
 *
 * Nothing here sleeps for a fixed time to synchronise: h_eventually() polls a condition every
 * 10 ms up to a deadline. Every child started is stopped by its PID (never by name), and dies
 * with the test process if a failed assertion ends the test first (PR_SET_PDEATHSIG). */
#ifndef SHOAL_TEST_HARNESS_H
#define SHOAL_TEST_HARNESS_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct h_redis {
    pid_t pid;     /* redis-server's PID, 0 when stopped */
    int port;      /* its loopback port */
    char dir[128]; /* its working directory (removed on stop) */
    char url[64];  /* "redis://127.0.0.1:PORT/0" */
};

/* A free TCP port on 127.0.0.1 (bound then released). */
int h_free_port(void);

/* Starts redis-server (no persistence) on a free port; extra: more "--flag value" args or NULL.
 * Returns 0 once PING answers (within 10 s), else -1. */
int h_redis_start(struct h_redis *r, const char *const *extra);
/* Restarts on the same port (e.g. after h_redis_stop) and waits for PING. */
int h_redis_restart(struct h_redis *r);
/* SIGTERM, wait (bounded), SIGKILL if needed; removes its directory unless keep_dir. */
void h_redis_stop(struct h_redis *r, bool keep_dir);
/* A blocking connection to it (assert-style: aborts the test if it cannot connect). */
redisContext *h_redis_connect(const struct h_redis *r);

/* The shoal binary under test (SHOAL_BIN, set by CTest). */
const char *h_shoal_bin(void);

/* Starts argv[0..] (NULL-terminated) with stdout+stderr appended to log_path (may be NULL for
 * /dev/null). env: extra "K=V" strings, NULL-terminated, or NULL. Returns the PID. */
pid_t h_spawn(const char *const *argv, const char *const *env, const char *log_path);
/* Waits for pid to exit within timeout_ms. Returns its exit code, 128+signal, or -1 timeout. */
int h_wait(pid_t pid, int timeout_ms);
/* Sends sig then waits (bounded); SIGKILLs after timeout_ms. Returns as h_wait. */
int h_stop(pid_t pid, int sig, int timeout_ms);

/* Runs `shoal args...` to completion (bounded 30 s), capturing stdout and stderr (caller frees).
 * Returns the exit code. */
int h_shoal(char **out, char **err, const char *const *args);

/* Runs `shoal check` on namespace ns (NULL: "shoal") of r: the invariants of docs/design.md's
 * task lifecycle hold (every task in exactly the structure its state says, counters equal to
 * what they count). Returns true, or false with what it found in *report (caller frees). */
bool h_check_namespace(const struct h_redis *r, const char *ns, char **report);

/* An HTTP answer read by h_req. */
struct h_resp {
    int status; /* -1 when no answer came */
    char head[4096];
    char *body;   /* malloc'd, NUL-terminated */
    json_t *json; /* the body parsed as JSON, or NULL */
};
/* One request to 127.0.0.1:port on a fresh connection (Connection: close); hdrs are whole
 * "Name: value\r\n" lines (may be NULL), body may be NULL. Reads the whole answer (5 s
 * timeout per read). Returns the status, or -1. Free r with h_resp_free. */
int h_req(int port, const char *method, const char *path, const char *hdrs, const char *body,
          struct h_resp *r);
void h_resp_free(struct h_resp *r);

/* GET/HEAD path from 127.0.0.1:port on a fresh connection. Returns the status (or -1), body
 * copied into body (NUL-terminated, may be NULL). */
int h_http(int port, const char *method, const char *path, char *body, size_t len);

/* Polls cond(arg) every 10 ms until true or timeout_ms passes. Returns true if it became true. */
bool h_eventually(bool (*cond)(void *arg), void *arg, int timeout_ms);

struct shoal_client;
/* True once task number id is in state (read with the C client c), polled within timeout_ms. */
bool h_task_reaches(struct shoal_client *c, int64_t id, const char *state, int timeout_ms);
/* Queues a built-in `sleep` task of dur ("700ms") with c; returns its number, or -1 with the
 * client's message in err. */
int64_t h_enqueue_sleep(struct shoal_client *c, const char *dur, char *err, size_t errlen);

/* A `shoal worker` process on a free loopback port, logging to a file in the redis dir. */
struct h_worker {
    pid_t pid;
    int port;
    char name[32];
    char log[200];
};
/* Starts `shoal worker --redis URL --name NAME --listen 127.0.0.1:PORT --heartbeat 200ms` plus
 * extra flags (NULL-terminated, may be NULL). */
void h_worker_start(struct h_worker *w, const struct h_redis *r, const char *name,
                    const char *const *extra);
/* SIGTERM and wait (bounded); returns the exit code (0 for a clean shutdown). */
int h_worker_stop(struct h_worker *w);
/* h_worker_stop, and when the exit code is not 0 (a crash, or a leak under ASan) the node's
 * log in *log (free it); else *log is NULL. Returns the exit code. */
int h_worker_stop_log(struct h_worker *w, char **log);
/* Polls ping until it answers status (true), or timeout_ms passes (false). */
bool h_ping_is(const struct h_worker *w, int status, int timeout_ms);

/* The redis-server arguments of a cluster node (cluster mode, nodes.conf, the bus on the port
 * written in bus, 2 s node timeout; with tls the bus speaks TLS too): into out, NULL-terminated
 * (room for H_CLUSTER_ARGS). bus must outlive the server's start. */
#define H_CLUSTER_ARGS 11
void h_cluster_node_args(const char *bus, bool tls, const char **out);

/* Forms a Redis Cluster of n primaries, each started with --cluster-enabled yes and
 * --cluster-port bus_ports[i]: node i takes the i-th of n equal ranges of the 16384 slots
 * (CLUSTER ADDSLOTSRANGE) and meets node 0 at its client port meet_ports[0] (its TLS port when
 * the cluster bus speaks TLS). Admin commands go to each node's plain port. Returns 0 once every
 * node says cluster_state:ok and knows all n (polled, within 20 s), else -1. */
int h_cluster_form(struct h_redis *const *nodes, const int *meet_ports, const int *bus_ports,
                   int n);

/* Starts moving slot from primary src to primary dst and holds it half-way: SETSLOT IMPORTING
 * on dst, MIGRATING on src, then MIGRATE to dst_port (dst's TLS port in a --tls-cluster
 * cluster, whose MIGRATE speaks TLS) of every key in the slot. src then answers ASK for the
 * slot's keys. Returns the number of keys moved, or -1. Finish with h_cluster_slot_owner(). */
int h_cluster_migrate_keys(struct h_redis *src, struct h_redis *dst, int dst_port, int slot);
/* CLUSTER SETSLOT slot NODE <owner's id> on each of the n nodes. Returns 0 or -1. */
int h_cluster_slot_owner(struct h_redis *const *nodes, int n, struct h_redis *owner, int slot);

/* Reads a whole file (caller frees), or NULL. */
char *h_read_file(const char *path);

/* Monotonic milliseconds. */
uint64_t h_now_ms(void);

#endif
