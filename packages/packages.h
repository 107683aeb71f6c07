/* packages.h: the package feed of a node (DESIGN section 8): uploads streamed to the package
 * directory with SHA-256 on the way, metadata in Redis, listing, download and delete, shaped
 * like Octopus's built-in feed API. README "Packages" describes the endpoints. */
#ifndef SHOAL_PACKAGES_PACKAGES_H
#define SHOAL_PACKAGES_PACKAGES_H

#include <stddef.h>

#include "http/http.h"

extern const struct http_route package_routes[];
extern const size_t package_nroutes;

/* At start-up, before the node serves HTTP: creates dir if missing, and removes temporary files
 * of uploads that a crash interrupted: this node's (".upload-<node>-*.tmp" in each space
 * directory), and any node's not written for an hour (a node that never came back; a live
 * upload writes continuously, and an idle one is cut by the HTTP idle timeout). Blocking file
 * calls: start-up only. Returns the number of files removed, or a negative errno when dir
 * cannot be created or read (logged). */
int packages_startup_clean(const char *dir, const char *node);

#endif
