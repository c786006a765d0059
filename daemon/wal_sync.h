/* Making committed WAL frames durable from a thread other than SQLite's.
 *
 * sweepd runs SQLite with synchronous=NORMAL, so COMMIT appends the
 * transaction's frames to the -wal file with write() and returns without
 * fsync. To acknowledge durably, the server then calls wal_sync_run() on a
 * libuv pool thread. One fdatasync of the -wal file, through a descriptor of
 * our own, covers every frame written before the call. So a batch of commits
 * needs one sync, and the event loop serves the next batch meanwhile.
 *
 * SQLite takes no POSIX locks on the -wal file (WAL locking uses the -shm
 * file), so opening and closing a second descriptor on it cannot drop one of
 * SQLite's locks.
 */
#ifndef SWEEPD_WAL_SYNC_H
#define SWEEPD_WAL_SYNC_H

#include <sys/types.h>

typedef struct wal_sync {
    char *wal_path;  /* DB-wal */
    char *dir_path;  /* the directory holding it, synced once per new file */
    int fd;          /* -1 until the first run */
    dev_t dev;       /* identity of the file fd refers to */
    ino_t ino;
} wal_sync;

/* Prepares syncing the file wal_path (SQLite's name for the -wal file, which
 * follows a symbolic link to the database); opens nothing yet. Returns 0 or
 * ENOMEM. */
int wal_sync_init(wal_sync *ws, const char *wal_path);

/* Makes every byte written to the -wal file before this call durable. The
 * first call, and any call after the file was replaced, also syncs the
 * directory entry. Once a descriptor is open, only a failed fdatasync is an
 * error. One thread at a time. Returns 0 or an errno value. */
int wal_sync_run(wal_sync *ws);

void wal_sync_free(wal_sync *ws);

#endif
