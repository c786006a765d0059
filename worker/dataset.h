/* Turns a trial's `dataset` hyperparameter into a local file for the trainer.
 *
 * A plain path is used where it is. A file:// URL becomes its path. Neither
 * is ever copied, so a changed file is read as it is at the trial's start. An
 * http:// or https:// URL is downloaded once into CACHE_DIR/datasets/, under
 * the SHA-256 of the URL as the file name. Later trials find it there without
 * touching the network, so a file changed on the server is fetched again only
 * when dataset_sha256 no longer matches the cached copy or the cache entry is
 * removed. Downloads are atomic (see http_get_file), so workers sharing a
 * cache never see or produce a partial file.
 */
#ifndef SWEEPD_WORKER_DATASET_H
#define SWEEPD_WORKER_DATASET_H

#include <stddef.h>

#include "http.h"

typedef struct dataset_source {
    char path[4096];  /* local file to pass to trainer_create */
    int cache_hit;    /* 1 when a URL was served from the cache */
    int downloaded;   /* 1 when a URL was fetched over the network */
    int refetched;    /* 1 when a cached copy failed dataset_sha256 and was fetched again */
} dataset_source;

/* Resolves dataset (a path or URL). When expected_sha256 is non-empty, the
 * file's SHA-256 must equal it: a cached copy that does not match is fetched
 * again, and a download or local file that does not match is an error (the
 * bad download is removed). Returns 0, or -1 with err naming the dataset and
 * the cause. */
int dataset_resolve(const char *dataset, const char *expected_sha256, const char *cache_dir,
                    const http_limits *limits, dataset_source *out, char *err, size_t err_size);

#endif
