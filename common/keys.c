/* keys.c: key names, built from the namespace prefix. */
#include "common/keys.h"

#include <stdio.h>

void keys_init(struct keys *k, const char *ns) { snprintf(k->prefix, sizeof k->prefix, "{%s}:", ns); }

char *keys_nodes(const struct keys *k, char *buf, size_t len) {
    snprintf(buf, len, "%snodes", k->prefix);
    return buf;
}
char *keys_node(const struct keys *k, const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%snode:%s", k->prefix, name);
    return buf;
}
char *keys_alive(const struct keys *k, const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%salive:%s", k->prefix, name);
    return buf;
}
char *keys_running(const struct keys *k, const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%srunning:%s", k->prefix, name);
    return buf;
}
char *keys_stats(const struct keys *k, char *buf, size_t len) {
    snprintf(buf, len, "%sstats", k->prefix);
    return buf;
}
char *keys_control(const struct keys *k, char *buf, size_t len) {
    snprintf(buf, len, "%scontrol", k->prefix);
    return buf;
}

static char *with_suffix(const struct keys *k, const char *suffix, char *buf, size_t len) {
    snprintf(buf, len, "%s%s", k->prefix, suffix);
    return buf;
}
char *keys_seq(const struct keys *k, char *buf, size_t len) { return with_suffix(k, "seq", buf, len); }
char *keys_queues(const struct keys *k, char *buf, size_t len) {
    return with_suffix(k, "queues", buf, len);
}
char *keys_scheduled(const struct keys *k, char *buf, size_t len) {
    return with_suffix(k, "scheduled", buf, len);
}
char *keys_done(const struct keys *k, char *buf, size_t len) { return with_suffix(k, "done", buf, len); }
char *keys_wake(const struct keys *k, char *buf, size_t len) { return with_suffix(k, "wake", buf, len); }
char *keys_recover_lock(const struct keys *k, char *buf, size_t len) {
    return with_suffix(k, "lock:recover", buf, len);
}

char *keys_task(const struct keys *k, int64_t n, char *buf, size_t len) {
    snprintf(buf, len, "%stask:%lld", k->prefix, (long long)n);
    return buf;
}
char *keys_log(const struct keys *k, int64_t n, char *buf, size_t len) {
    snprintf(buf, len, "%slog:%lld", k->prefix, (long long)n);
    return buf;
}
char *keys_queue(const struct keys *k, const char *queue, const char *prio, char *buf, size_t len) {
    snprintf(buf, len, "%sq:%s:%s", k->prefix, queue, prio);
    return buf;
}
char *keys_queue_prios(const struct keys *k, const char *queue, char *buf, size_t len) {
    snprintf(buf, len, "%sqp:%s", k->prefix, queue);
    return buf;
}
