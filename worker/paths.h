/* Filesystem paths of the worker: default state and cache directories from
 * the XDG variables, recursive mkdir, and the check that keeps `..` out of
 * every checkpoint location the worker writes or reads.
 */
#ifndef SWEEPD_WORKER_PATHS_H
#define SWEEPD_WORKER_PATHS_H

#include <stddef.h>

/* Writes $XDG_STATE_HOME/sweepd (else ~/.local/state/sweepd) followed by
 * suffix ("" or "/sweepd.sock") into out. Returns 0, or -1 when neither
 * variable is set or the result does not fit. */
int paths_state_dir(const char *suffix, char *out, size_t out_size);

/* Writes $XDG_CACHE_HOME/sweepd (else ~/.cache/sweepd) into out. */
int paths_cache_dir(char *out, size_t out_size);

/* Creates path and its missing parents with mode 0755. Returns 0 or -errno. */
int paths_mkdirs(const char *path);

/* Returns 1 when path has a ".." component ("..", "../x", "x/..", "x/../y"). */
int paths_has_dotdot(const char *path);

#endif
