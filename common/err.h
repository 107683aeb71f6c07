/* err.h: shoal's error codes. Functions return 0 or a negative code: libuv's (-errno values,
 * UV_E*) where one fits, and ours below SHOAL_ERR_BASE otherwise. shoal_strerror() names both. */
#ifndef SHOAL_ERR_H
#define SHOAL_ERR_H

#define SHOAL_ERR_BASE (-30000)
enum shoal_err {
    SHOAL_EREDIS = SHOAL_ERR_BASE - 1,   /* Redis unreachable or the connection dropped */
    SHOAL_EREPLY = SHOAL_ERR_BASE - 2,   /* Redis answered with an error or an unexpected shape */
    SHOAL_ENONODE = SHOAL_ERR_BASE - 3,  /* no node of that name is registered */
    SHOAL_EALIVE = SHOAL_ERR_BASE - 4,   /* the node is alive (refused: forget, duplicate) */
    SHOAL_ECONFIG = SHOAL_ERR_BASE - 5,  /* a setting is malformed */
    SHOAL_ETIMEOUT = SHOAL_ERR_BASE - 6, /* gave up waiting */
    SHOAL_EURL = SHOAL_ERR_BASE - 7,     /* a Redis URL could not be understood */
    SHOAL_ENOTASK = SHOAL_ERR_BASE - 8,  /* no task with that id (or it expired) */
};

/* Text for a shoal or libuv code; never NULL. */
const char *shoal_strerror(int err);

#endif
