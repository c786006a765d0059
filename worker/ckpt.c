/* Checkpoint store; see ckpt.h. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "paths.h"

int ckpt_location_valid(const char *location)
{
    return location != NULL && location[0] != '\0' && !paths_has_dotdot(location);
}

static int copy_text(char *dst, size_t dst_size, const char *src)
{
    size_t len = strlen(src);
    if (len >= dst_size)
        return -1;
    memcpy(dst, src, len + 1);
    return 0;
}

int ckpt_store_init(ckpt_store *store, const char *dir, const char *url, const char *staging_dir,
                    char *err, size_t err_size)
{
    memset(store, 0, sizeof(*store));
    http_limits_default(&store->limits);
    const char *target = dir ? dir : url;
    if (target == NULL || target[0] == '\0' || paths_has_dotdot(target)) {
        snprintf(err, err_size, "checkpoint target \"%s\" is empty or contains \"..\"; give a "
                 "plain directory or URL prefix", target ? target : "");
        return -1;
    }
    if (url != NULL && !http_is_url(url)) {
        snprintf(err, err_size, "--checkpoint-url %s: must start with http:// or https://", url);
        return -1;
    }
    char *dst = dir ? store->dir : store->url;
    if (copy_text(dst, CKPT_LOCATION_MAX, target) != 0 ||
        copy_text(store->staging_dir, sizeof(store->staging_dir), staging_dir) != 0) {
        snprintf(err, err_size, "checkpoint target or staging directory path too long");
        return -1;
    }
    /* Trailing slashes would double up in PREFIX/<sweep>/... */
    size_t len = strlen(dst);
    while (len > 1 && dst[len - 1] == '/')
        dst[--len] = '\0';
    if (dir == NULL)
        return 0;

    /* Locations go to the daemon and to other workers, so a directory is
     * made absolute: a relative one would resolve against their cwd. */
    int rc = paths_mkdirs(store->dir);
    if (rc != 0) {
        snprintf(err, err_size, "--checkpoint-dir %s: failed to create: %s", dir, strerror(-rc));
        return -1;
    }
    char *absolute = realpath(store->dir, NULL);
    if (absolute == NULL || copy_text(store->dir, sizeof(store->dir), absolute) != 0) {
        snprintf(err, err_size, "--checkpoint-dir %s: failed to resolve: %s", dir,
                 absolute ? "path too long" : strerror(errno));
        free(absolute);
        return -1;
    }
    free(absolute);
    return 0;
}

/* Deletes one location: unlink for a path, DELETE for a URL. */
static void remove_location(const ckpt_store *store, const char *location)
{
    char err[512];
    if (http_is_url(location)) {
        if (http_delete(location, &store->limits, err, sizeof(err)) != 0)
            log_warn("ckpt", "failed to delete old checkpoint: %s", err);
    } else if (unlink(location) != 0 && errno != ENOENT) {
        log_warn("ckpt", "failed to delete old checkpoint %s: %s", location, strerror(errno));
    }
}

/* Parses "step-<N>.ckpt"; returns N or -1. */
static long parse_step_name(const char *name)
{
    char *end = NULL;
    if (strncmp(name, "step-", 5) != 0)
        return -1;
    errno = 0;
    long step = strtol(name + 5, &end, 10);
    if (errno != 0 || end == name + 5 || strcmp(end, ".ckpt") != 0 || step < 0)
        return -1;
    return step;
}

static int is_pinned(const ckpt_pins *pins, long step)
{
    for (int i = 0; i < CKPT_PINS; i++)
        if (pins->steps[i] >= 0 && pins->steps[i] == step)
            return 1;
    return 0;
}

/* Deletes step-<N>.ckpt files in dir with N below keep_from_step and not
 * pinned, which earlier attempts (this worker's or another's) may have left. */
static void prune_directory(const char *dir, long keep_from_step, const ckpt_pins *pins)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        long step = parse_step_name(entry->d_name);
        if (step < 0 || step >= keep_from_step || is_pinned(pins, step))
            continue;
        char path[CKPT_LOCATION_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        if (n > 0 && (size_t)n < sizeof(path) && unlink(path) != 0 && errno != ENOENT)
            log_warn("ckpt", "failed to delete old checkpoint %s: %s", path, strerror(errno));
    }
    closedir(d);
}

void ckpt_history_start(ckpt_history *history, const char *location)
{
    const char *slash = strrchr(location, '/');
    memcpy(history->locations[0], location, strlen(location) + 1);
    history->steps[0] = parse_step_name(slash ? slash + 1 : location);
    history->count = 1;
}

/* Drops entry i of history, deleting its checkpoint unless it is the one at
 * keep (the same location saved again). */
static void history_drop(const ckpt_store *store, ckpt_history *history, int i, const char *keep)
{
    if (strcmp(history->locations[i], keep) != 0)
        remove_location(store, history->locations[i]);
    memmove(history->locations[i], history->locations[i + 1],
            sizeof(history->locations[0]) * (size_t)(history->count - i - 1));
    memmove(&history->steps[i], &history->steps[i + 1],
            sizeof(history->steps[0]) * (size_t)(history->count - i - 1));
    history->count--;
}

/* Deletes every entry outside the newest CKPT_KEEP that is not pinned. */
static void history_trim(const ckpt_store *store, ckpt_history *history, const ckpt_pins *pins)
{
    const char *newest = history->locations[history->count - 1];
    int i = 0;
    while (i < history->count - CKPT_KEEP) {
        if (is_pinned(pins, history->steps[i]))
            i++;
        else
            history_drop(store, history, i, newest);
    }
}

/* Deletes older files in the newest entry's directory: those below the
 * oldest of the newest CKPT_KEEP and not pinned. Directory stores only. */
static void prune_beside(const ckpt_store *store, const ckpt_history *history, const ckpt_pins *pins)
{
    if (!store->dir[0] || history->count < CKPT_KEEP)
        return;
    long oldest_kept = history->steps[history->count - CKPT_KEEP];
    const char *newest = history->locations[history->count - 1];
    const char *slash = strrchr(newest, '/');
    char dir[CKPT_LOCATION_MAX];
    if (oldest_kept < 0 || slash == NULL)
        return;
    memcpy(dir, newest, (size_t)(slash - newest));
    dir[slash - newest] = '\0';
    prune_directory(dir, oldest_kept, pins);
}

/* Records location as the newest, then deletes every entry outside the
 * newest CKPT_KEEP that is not pinned. */
static void history_push(const ckpt_store *store, ckpt_history *history, const ckpt_pins *pins,
                         const char *location, long step)
{
    /* Only more pins than CKPT_PINS could fill the array; drop the oldest. */
    if (history->count == CKPT_HISTORY_MAX) {
        log_warn("ckpt", "more than %d checkpoints pinned; deleting %s", CKPT_PINS,
                 history->locations[0]);
        history_drop(store, history, 0, location);
    }
    memcpy(history->locations[history->count], location, strlen(location) + 1);
    history->steps[history->count] = step;
    history->count++;
    history_trim(store, history, pins);
}

int ckpt_store_save(const ckpt_store *store, const trainer *t, long long sweep, long long trial,
                    long step, char *location, char *err, size_t err_size)
{
    char trial_dir[CKPT_LOCATION_MAX];
    const char *base = store->dir[0] ? store->dir : store->url;
    int n = snprintf(trial_dir, sizeof(trial_dir), "%s/%lld/%lld", base, sweep, trial);
    if (n < 0 || (size_t)n >= sizeof(trial_dir)) {
        snprintf(err, err_size, "checkpoint location too long under %s", base);
        return -1;
    }
    n = snprintf(location, CKPT_LOCATION_MAX, "%s/step-%ld.ckpt", trial_dir, step);
    if (n < 0 || n >= CKPT_LOCATION_MAX) {
        snprintf(err, err_size, "checkpoint location too long under %s", base);
        return -1;
    }

    if (store->dir[0]) {
        int rc = paths_mkdirs(trial_dir);
        if (rc != 0) {
            snprintf(err, err_size, "failed to create checkpoint directory %s: %s", trial_dir,
                     strerror(-rc));
            return -1;
        }
        if (trainer_save(t, location, err, err_size) != 0)
            return -1;
    } else {
        /* Stage locally, upload, then drop the staging copy. */
        char staged[CKPT_LOCATION_MAX];
        n = snprintf(staged, sizeof(staged), "%s/upload-%d-%lld-%ld.ckpt", store->staging_dir,
                     (int)getpid(), trial, step);
        if (n < 0 || (size_t)n >= sizeof(staged)) {
            snprintf(err, err_size, "staging path too long under %s", store->staging_dir);
            return -1;
        }
        int rc = paths_mkdirs(store->staging_dir);
        if (rc != 0) {
            snprintf(err, err_size, "failed to create staging directory %s: %s", store->staging_dir,
                     strerror(-rc));
            return -1;
        }
        if (trainer_save(t, staged, err, err_size) != 0)
            return -1;
        rc = http_put_file(location, staged, &store->limits, err, err_size);
        unlink(staged);
        if (rc != 0)
            return -1;
    }

    return 0;
}

void ckpt_store_keep(const ckpt_store *store, ckpt_history *history, const ckpt_pins *pins,
                     const char *location, long step)
{
    history_push(store, history, pins, location, step);
    prune_beside(store, history, pins);
}

void ckpt_store_trim(const ckpt_store *store, ckpt_history *history)
{
    ckpt_pins none;
    for (int i = 0; i < CKPT_PINS; i++)
        none.steps[i] = -1;
    if (history->count == 0)
        return;
    history_trim(store, history, &none);
    prune_beside(store, history, &none);
}

int ckpt_store_fetch(const ckpt_store *store, const char *location, char *local_path,
                     size_t local_size, int *staged, char *err, size_t err_size)
{
    *staged = 0;
    if (!ckpt_location_valid(location)) {
        snprintf(err, err_size, "checkpoint location \"%s\" is empty or contains \"..\"; "
                 "not reading it", location);
        return -1;
    }
    if (!http_is_url(location)) {
        if (copy_text(local_path, local_size, location) != 0) {
            snprintf(err, err_size, "checkpoint location too long: %s", location);
            return -1;
        }
        return 0;
    }

    int rc = paths_mkdirs(store->staging_dir);
    if (rc != 0) {
        snprintf(err, err_size, "failed to create staging directory %s: %s", store->staging_dir,
                 strerror(-rc));
        return -1;
    }
    int n = snprintf(local_path, local_size, "%s/download-%d.ckpt", store->staging_dir,
                     (int)getpid());
    if (n < 0 || (size_t)n >= local_size) {
        snprintf(err, err_size, "staging path too long under %s", store->staging_dir);
        return -1;
    }
    if (http_get_file(location, local_path, &store->limits, err, err_size) != 0)
        return -1;
    *staged = 1;
    return 0;
}

static int compare_steps_desc(const void *a, const void *b)
{
    long step_a = *(const long *)a, step_b = *(const long *)b;
    if (step_a == step_b)
        return 0;
    return step_a < step_b ? 1 : -1;
}

int ckpt_store_older(const char *location, char (*out)[CKPT_LOCATION_MAX], int max)
{
    if (!ckpt_location_valid(location) || http_is_url(location))
        return 0;
    const char *slash = strrchr(location, '/');
    if (slash == NULL)
        return 0;
    long newest = parse_step_name(slash + 1);
    char dir[CKPT_LOCATION_MAX];
    size_t dir_len = (size_t)(slash - location);
    if (newest < 0 || dir_len >= sizeof(dir))
        return 0;
    memcpy(dir, location, dir_len);
    dir[dir_len] = '\0';

    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    long steps[64];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL && count < 64) {
        long step = parse_step_name(entry->d_name);
        if (step >= 0 && step < newest)
            steps[count++] = step;
    }
    closedir(d);

    qsort(steps, (size_t)count, sizeof(steps[0]), compare_steps_desc);
    int written = 0;
    for (int i = 0; i < count && written < max; i++) {
        int n = snprintf(out[written], CKPT_LOCATION_MAX, "%s/step-%ld.ckpt", dir, steps[i]);
        if (n > 0 && n < CKPT_LOCATION_MAX)
            written++;
    }
    return written;
}
