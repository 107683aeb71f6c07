/* err.c: names for shoal's own error codes; everything else is handed to libuv. */
#include "common/err.h"

#include <uv.h>

const char *shoal_strerror(int err) {
    switch (err) {
    case SHOAL_EREDIS: return "Redis unreachable";
    case SHOAL_EREPLY: return "unexpected Redis reply";
    case SHOAL_ENONODE: return "no such node";
    case SHOAL_EALIVE: return "node is alive";
    case SHOAL_ECONFIG: return "bad configuration";
    case SHOAL_ETIMEOUT: return "timed out";
    case SHOAL_EURL: return "bad Redis URL";
    case SHOAL_ENOTASK: return "no such task";
    default: return uv_strerror(err);
    }
}
