/* Path helpers of the worker; see paths.h. */
#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int xdg_dir(const char *xdg_var, const char *home_rel, const char *suffix, char *out,
                   size_t out_size)
{
    const char *xdg = getenv(xdg_var);
    const char *home = getenv("HOME");
    int n;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(out, out_size, "%s/sweepd%s", xdg, suffix);
    else if (home != NULL && home[0] != '\0')
        n = snprintf(out, out_size, "%s/%s/sweepd%s", home, home_rel, suffix);
    else
        return -1;
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

int paths_state_dir(const char *suffix, char *out, size_t out_size)
{
    return xdg_dir("XDG_STATE_HOME", ".local/state", suffix, out, out_size);
}

int paths_cache_dir(char *out, size_t out_size)
{
    return xdg_dir("XDG_CACHE_HOME", ".cache", "", out, out_size);
}

int paths_mkdirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);

    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int paths_has_dotdot(const char *path)
{
    const char *p = path;
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}
