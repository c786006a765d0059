/* Checkpoint store of the worker: where a trial's checkpoints go, how they are
 * read back for a resume, and which old ones are deleted.
 *
 * A directory store keeps DIR/<sweep>/<trial>/step-<N>.ckpt (DIR may be a
 * shared filesystem). A URL store PUTs to PREFIX/<sweep>/<trial>/step-<N>.ckpt
 * (WebDAV, an object store) and GETs from there on resume. Either way the
 * location string is what the daemon stores and hands to the next attempt.
 * Each trial keeps its 2 newest checkpoints plus the pinned ones (those
 * the daemon has stored or may store next); older ones are deleted.
 * Locations with a ".." component are rejected both ways.
 */
#ifndef SWEEPD_WORKER_CKPT_H
#define SWEEPD_WORKER_CKPT_H

#include <stddef.h>

#include "http.h"
#include "trainer.h"

#define CKPT_LOCATION_MAX 4096
#define CKPT_KEEP 2
#define CKPT_PINS 5
#define CKPT_HISTORY_MAX (CKPT_KEEP + CKPT_PINS + 1)

typedef struct ckpt_store {
    char dir[CKPT_LOCATION_MAX];      /* directory store, or "" */
    char url[CKPT_LOCATION_MAX];      /* URL prefix without a trailing '/', or "" */
    char staging_dir[CKPT_LOCATION_MAX]; /* local temporaries of a URL store */
    http_limits limits;
} ckpt_store;

/* The checkpoints of one trial this process has not deleted yet, oldest
 * first: the newest CKPT_KEEP, the pinned ones, and the resumed one. */
typedef struct ckpt_history {
    char locations[CKPT_HISTORY_MAX][CKPT_LOCATION_MAX];
    long steps[CKPT_HISTORY_MAX];
    int count;
} ckpt_history;

/* Steps whose checkpoints must not be deleted; -1 marks an unused slot. */
typedef struct ckpt_pins {
    long steps[CKPT_PINS];
} ckpt_pins;

/* Starts history with the checkpoint a trial resumed from. */
void ckpt_history_start(ckpt_history *history, const char *location);

/* Configures a directory store (url NULL) or a URL store (dir NULL).
 * staging_dir contains temporaries for URL uploads and downloads. A directory is
 * created and made absolute. Returns 0, or -1 with err set for a target
 * containing "..", a URL that is not http(s) or a directory that cannot be
 * created. */
int ckpt_store_init(ckpt_store *store, const char *dir, const char *url, const char *staging_dir,
                    char *err, size_t err_size);

/* Saves the trainer's state as the checkpoint of (sweep, trial) at step:
 * trainer_save into the directory (it writes a temporary file, fsyncs and
 * renames) or into a staging file that is then PUT. On success writes the
 * location into location (CKPT_LOCATION_MAX bytes). Returns 0 or -1 with err
 * set. Deletes nothing: call ckpt_store_keep next. Runs on the trial thread. */
int ckpt_store_save(const ckpt_store *store, const trainer *t, long long sweep, long long trial,
                    long step, char *location, char *err, size_t err_size);

/* Records the checkpoint just saved at location in history, then deletes the
 * checkpoints older than the newest CKPT_KEEP that are not pinned (a failed
 * delete is only logged). Runs on the trial thread. */
void ckpt_store_keep(const ckpt_store *store, ckpt_history *history, const ckpt_pins *pins,
                     const char *location, long step);

/* Deletes what pins kept: every checkpoint in history, and for a directory
 * store every older file beside them, except the newest CKPT_KEEP. Call it
 * once the daemon no longer needs them (the trial's final report is
 * acknowledged). Blocks on HTTP deletes; a failed delete is only logged. */
void ckpt_store_trim(const ckpt_store *store, ckpt_history *history);

/* Makes a reported location readable as a local file: a path is used as is,
 * a URL is downloaded into a staging file (*staged set to 1; the caller
 * unlinks local_path). Returns 0 or -1 with err set. */
int ckpt_store_fetch(const ckpt_store *store, const char *location, char *local_path,
                     size_t local_size, int *staged, char *err, size_t err_size);

/* Lists fallback checkpoints for a resume when location is a path: the other
 * step-<N>.ckpt files in its directory with N below location's step, newest
 * first. Returns how many were written into out (at most max). URL
 * locations have no listing and return 0. */
int ckpt_store_older(const char *location, char (*out)[CKPT_LOCATION_MAX], int max);

/* Returns 1 when location is acceptable to read: non-empty, no ".." component. */
int ckpt_location_valid(const char *location);

#endif
