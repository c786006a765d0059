/* fdatasync of the -wal file for durable acknowledgements; see wal_sync.h. */
#include "wal_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int wal_sync_init(wal_sync *ws, const char *wal_path)
{
    memset(ws, 0, sizeof(*ws));
    ws->fd = -1;
    ws->wal_path = strdup(wal_path);
    ws->dir_path = strdup(wal_path);
    if (!ws->wal_path || !ws->dir_path) {
        wal_sync_free(ws);
        return ENOMEM;
    }
    char *slash = strrchr(ws->dir_path, '/');
    if (!slash)
        strcpy(ws->dir_path, ".");
    else if (slash == ws->dir_path)
        slash[1] = '\0';
    else
        *slash = '\0';
    return 0;
}

static int sync_directory(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return err;
}

/* Points ws->fd at the file now named ws->wal_path. SQLite keeps the same
 * -wal file while any connection is open, so this opens once in practice;
 * the check costs one stat per sync. */
static int reopen_if_replaced(wal_sync *ws)
{
    struct stat named;
    if (stat(ws->wal_path, &named) != 0)
        return errno;
    if (ws->fd >= 0 && named.st_dev == ws->dev && named.st_ino == ws->ino)
        return 0;

    int fd = open(ws->wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat opened;
    if (fstat(fd, &opened) != 0) {
        int err = errno;
        close(fd);
        return err;
    }
    /* The file's name must be durable too, or a crash could lose the whole
     * -wal file of a new database. */
    int err = sync_directory(ws->dir_path);
    if (err != 0) {
        close(fd);
        return err;
    }
    if (ws->fd >= 0)
        close(ws->fd);
    ws->fd = fd;
    ws->dev = opened.st_dev;
    ws->ino = opened.st_ino;
    return 0;
}

int wal_sync_run(wal_sync *ws)
{
    /* A failed check (EMFILE in a reconnect storm, say) keeps the open
     * descriptor: SQLite replaces the -wal file only after its last
     * connection closed, so the file is still the one the daemon writes. */
    int err = reopen_if_replaced(ws);
    if (err != 0 && ws->fd < 0)
        return err;
    if (fdatasync(ws->fd) != 0)
        return errno;
    return 0;
}

void wal_sync_free(wal_sync *ws)
{
    if (ws->fd >= 0)
        close(ws->fd);
    ws->fd = -1;
    free(ws->wal_path);
    free(ws->dir_path);
    ws->wal_path = ws->dir_path = NULL;
}
