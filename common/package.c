/* package.c: package names (parsing, validation) and where a package's file lives.
 * Pure functions but package_locate(), which stats files. See package.h for the rules. */
#include "common/package.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

const char *const package_exts[] = {".tar.bz2", ".tar.gz", ".tar.bz", ".tar.xz", ".nupkg",
                                    ".tbz",     ".tgz",    ".tar",    ".zip",    ".jar",
                                    ".war",     ".ear",    NULL};

static bool id_valid(const char *s, size_t n) {
    if (n == 0 || n > PACKAGE_ID_MAX || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
        return false;
    if (s[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-') return false;
        if (c == '.' && i + 1 < n && s[i + 1] == '.') return false;
    }
    return true;
}

/* digits(.digits)* then optional -prerelease and +metadata of [0-9A-Za-z.-], no "..". */
static bool version_valid(const char *s, size_t n) {
    size_t i = 0;
    if (n == 0 || n > PACKAGE_VERSION_MAX || !isdigit((unsigned char)s[0])) return false;
    while (i < n && (isdigit((unsigned char)s[i]) ||
                     (s[i] == '.' && i + 1 < n && isdigit((unsigned char)s[i + 1]))))
        i++;
    if (i < n && s[i] == '-') {
        if (++i == n) return false;
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-')) i++;
    }
    if (i < n && s[i] == '+') {
        if (++i == n) return false;
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-')) i++;
    }
    if (i != n || s[n - 1] == '.') return false;
    for (size_t k = 0; k + 1 < n; k++)
        if (s[k] == '.' && s[k + 1] == '.') return false;
    return true;
}

/* Splits "<PackageId>.<Version>" (n bytes) at the first '.'+digit that leaves both valid. */
static int split(const char *s, size_t n, struct package_name *out, char *err, size_t errlen) {
    for (size_t i = 1; i + 1 < n; i++) {
        if (s[i] != '.' || !isdigit((unsigned char)s[i + 1])) continue;
        if (!id_valid(s, i) || !version_valid(s + i + 1, n - i - 1)) continue;
        memcpy(out->id, s, i);
        out->id[i] = '\0';
        memcpy(out->version, s + i + 1, n - i - 1);
        out->version[n - i - 1] = '\0';
        return 0;
    }
    snprintf(err, errlen,
             "'%.*s' is not <PackageId>.<Version> (as in MyApp.1.0.3): the "
             "PackageId takes letters, digits, '.', '-' and '_', and the version must be "
             "non-empty and look like 1.0.3 or 1.0.3-beta.1",
             (int)(n > 120 ? 120 : n), s);
    return -EINVAL;
}

/* Refuses what could name another path: separators, "..", control characters. */
static int safe(const char *s, char *err, size_t errlen) {
    if (!*s) {
        snprintf(err, errlen, "the package file name is empty");
        return -EINVAL;
    }
    if (strpbrk(s, "/\\")) {
        snprintf(err, errlen,
                 "the package file name must not contain path separators ('/' or '\\')");
        return -EINVAL;
    }
    if (strstr(s, "..")) {
        snprintf(err, errlen, "the package file name must not contain '..'");
        return -EINVAL;
    }
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "the package file name must not contain control characters");
            return -EINVAL;
        }
    return 0;
}

int package_name_parse(const char *file, struct package_name *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int rc = safe(file, err, errlen);
    if (rc) return rc;
    size_t n = strlen(file);
    for (const char *const *e = package_exts; *e; e++) {
        size_t el = strlen(*e);
        if (n <= el || strcasecmp(file + n - el, *e) != 0) continue;
        rc = split(file, n - el, out, err, errlen);
        if (rc == 0) snprintf(out->ext, sizeof out->ext, "%s", *e);
        return rc;
    }
    snprintf(err, errlen,
             "'%.120s' has no package extension: expected <PackageId>.<Version> "
             "followed by .zip, .nupkg, .tar.gz, .tgz, .tar.bz2, .tar, .jar, .war or .ear",
             file);
    return -EINVAL;
}

int package_key_parse(const char *key, struct package_name *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (strncmp(key, PACKAGE_OCTOPUS_PREFIX, strlen(PACKAGE_OCTOPUS_PREFIX)) == 0)
        key += strlen(PACKAGE_OCTOPUS_PREFIX);
    int rc = safe(key, err, errlen);
    return rc ? rc : split(key, strlen(key), out, err, errlen);
}

bool package_space_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > PACKAGE_SPACE_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return false;
    return true;
}

void package_key(const struct package_name *n, char *buf, size_t len) {
    snprintf(buf, len, "%s.%s", n->id, n->version);
}

void package_file(const char *space, const struct package_name *n, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s.%s%s", space, n->id, n->version, n->ext);
}

int package_locate(const char *dir, const char *ref, char *out, size_t outlen, char *err,
                   size_t errlen) {
    char space[PACKAGE_SPACE_MAX + 1];
    const char *slash = strchr(ref, '/');
    size_t sl = slash ? (size_t)(slash - ref) : 0;
    if (!slash || sl == 0 || sl > PACKAGE_SPACE_MAX) {
        snprintf(err, errlen, "package '%.100s' is not <space>/<PackageId>.<Version>", ref);
        return -EINVAL;
    }
    memcpy(space, ref, sl);
    space[sl] = '\0';
    if (!package_space_valid(space)) {
        snprintf(err, errlen, "package '%.100s': '%s' is not a valid space name", ref, space);
        return -EINVAL;
    }
    struct package_name n;
    int rc = package_name_parse(slash + 1, &n, err, errlen); /* with its extension */
    if (rc) rc = package_key_parse(slash + 1, &n, err, errlen);
    if (rc) return rc;
    struct stat st;
    for (const char *const *e = package_exts; *e; e++) {
        if (n.ext[0] && strcmp(n.ext, *e) != 0) continue;
        snprintf(out, outlen, "%s/%s/%s.%s%s", dir, space, n.id, n.version, *e);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return 0;
    }
    snprintf(err, errlen, "package %s/%s.%s is not in %s", space, n.id, n.version, dir);
    return -ENOENT;
}
