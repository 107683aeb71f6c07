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
char *keys_control(const struct keys *k, char *buf, size_t len) {
    snprintf(buf, len, "%scontrol", k->prefix);
    return buf;
}
