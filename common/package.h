/* package.h: what a package is, independent of HTTP, Redis or disk: its name as uploaded
 * (<PackageId>.<Version><ext>, Octopus's convention), the checks that keep a name from ever
 * naming a path outside the package directory, and where its file lives (its Redis keys are
 * built with the others in common/keys.c: keys_package*()).
 *
 *   file      <package dir>/<space>/<PackageId>.<Version><ext>
 *   temp file <package dir>/<space>/.upload-<node>-<token>.tmp   (renamed into place when whole)
 *
 * A PackageId is 1..100 of [A-Za-z0-9_.-], starting with a letter, digit or '_', with no "..";
 * a version is 1..64 characters of semantic-version shape (1.0.3, 2.0.0-beta.1+sha.5e1); a
 * space is 1..64 of [A-Za-z0-9_-] ("Spaces-1"). None can hold '/', '\' or "..". */
#ifndef SHOAL_PACKAGE_H
#define SHOAL_PACKAGE_H

#include <stdbool.h>
#include <stddef.h>

#define PACKAGE_ID_MAX 100
#define PACKAGE_VERSION_MAX 64
#define PACKAGE_SPACE_MAX 64
#define PACKAGE_OCTOPUS_PREFIX "packages-" /* Octopus's Id: packages-<PackageId>.<Version> */
#define PACKAGE_DEFAULT_SPACE                                                                      \
    "Spaces-1" /* Octopus's default space: routes without a space use it */

struct package_name {
    char id[PACKAGE_ID_MAX + 1];           /* PackageId, "MyApp.Web" */
    char version[PACKAGE_VERSION_MAX + 1]; /* "1.0.3" */
    char ext[16];                          /* ".zip", ".tar.gz", ... ("" from package_key_parse) */
};

/* Parses an uploaded file name "<PackageId>.<Version><ext>" ("MyApp.Web.1.0.3.tar.gz": id
 * MyApp.Web, version 1.0.3, ext .tar.gz): the version starts at the first '.' followed by a
 * digit after which the rest is a valid version. Returns 0, or -EINVAL with a message for the
 * client in err (path separators, "..", unknown extension, no or empty version, ...). */
int package_name_parse(const char *file, struct package_name *out, char *err, size_t errlen);

/* Parses "<PackageId>.<Version>" or Octopus's "packages-<PackageId>.<Version>" (URLs, tasks);
 * ext is left empty. Same return as package_name_parse. */
int package_key_parse(const char *key, struct package_name *out, char *err, size_t errlen);

/* A valid space name ("Spaces-1"). */
bool package_space_valid(const char *space);

/* The extensions accepted, longest first, NULL-terminated (".tar.gz", ".zip", ...). */
extern const char *const package_exts[];

/* "<PackageId>.<Version>": the member in the space index and the tail of every key. */
void package_key(const struct package_name *n, char *buf, size_t len);

/* The file of a package relative to the package directory: "<space>/<key><ext>". */
void package_file(const char *space, const struct package_name *n, char *buf, size_t len);

/* Finds a stored package file for "<space>/<PackageId>.<Version>" (or with its extension) under
 * dir, by trying each extension. Blocking stat() calls: a handful, at task start. Returns 0 with
 * the path in out, -ENOENT when no file exists, -EINVAL with err for a malformed name. */
int package_locate(const char *dir, const char *ref, char *out, size_t outlen, char *err,
                   size_t errlen);

#endif
