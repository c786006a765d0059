/* Dataset loading, the batch sampler and the validation windows (data.h). */
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names the kind of a file that is not regular, for error messages. */
static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "not a regular file";
}

FILE *data_open_regular(const char *path, const char *what, size_t *size_bytes, char *err, size_t err_size)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, err_size, "cannot open %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, err_size, "cannot stat %s %s: %s", what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "%s %s is %s, not a regular file; give the path of a file", what, path,
                 file_kind(st.st_mode));
        close(fd);
        return NULL;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        snprintf(err, err_size, "cannot configure %s %s: %s", what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "cannot open %s %s: %s", what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    *size_bytes = (size_t)st.st_size;
    return f;
}

int data_load(dataset *d, const char *path, int seq_len, int batch_size, char *err, size_t err_size)
{
    size_t size;

    memset(d, 0, sizeof(*d));
    FILE *f = data_open_regular(path, "dataset", &size, err, err_size);
    if (f == NULL)
        return -1;

    /* Validation: the last 10% (rounded down). Both splits must fit a batch. */
    size_t window = (size_t)seq_len + 1;
    size_t val_size = size / 10;
    size_t train_size = size - val_size;
    size_t train_need = (size_t)batch_size * window;
    if (train_size < train_need || val_size < window) {
        /* Smallest size whose 90% holds train_need and whose 10% holds a window. */
        size_t need = train_need * 10 / 9 + 1;
        if (need < 10 * window)
            need = 10 * window;
        snprintf(err, err_size,
                 "dataset %s is too small: %zu bytes, but seq_len=%d and batch_size=%d need at least %zu "
                 "(training split, 90%%: %zu bytes; validation split, 10%%: %zu bytes); use a larger file or "
                 "lower seq_len or batch_size",
                 path, size, seq_len, batch_size, need, train_need, window);
        fclose(f);
        return -1;
    }

    d->bytes = malloc(size);
    if (d->bytes == NULL) {
        snprintf(err, err_size, "out of memory reading dataset %s (%zu bytes)", path, size);
        fclose(f);
        return -1;
    }
    if (fread(d->bytes, 1, size, f) != size) {
        snprintf(err, err_size, "cannot read dataset %s: %s", path, ferror(f) ? strerror(errno) : "short read");
        fclose(f);
        data_free(d);
        return -1;
    }
    fclose(f);
    d->size = size;
    d->train_size = train_size;
    d->val_start = train_size;
    return 0;
}

void data_free(dataset *d)
{
    free(d->bytes);
    memset(d, 0, sizeof(*d));
}

static void copy_window(const dataset *d, size_t offset, uint8_t *inputs, uint8_t *targets, int T)
{
    memcpy(inputs, d->bytes + offset, (size_t)T);
    memcpy(targets, d->bytes + offset + 1, (size_t)T);
}

void data_sample_batch(const dataset *d, rng_state *rng, uint8_t *inputs, uint8_t *targets, int B, int T)
{
    /* Offsets in [0, train_size - (T + 1)]: the window ends inside the split. */
    uint64_t choices = d->train_size - ((size_t)T + 1) + 1;
    for (int b = 0; b < B; b++) {
        size_t offset = (size_t)rng_below(rng, choices);
        copy_window(d, offset, inputs + (size_t)b * T, targets + (size_t)b * T, T);
    }
}

void data_validation_batch(const dataset *d, int batch, int n_batches, uint8_t *inputs, uint8_t *targets, int B,
                           int T)
{
    size_t n = (size_t)n_batches * (size_t)B;
    size_t span = d->size - d->val_start - ((size_t)T + 1);
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)batch * B + b;
        /* 128-bit product: i * span can exceed 64 bits only for absurd files, but costs nothing. */
        size_t offset = n > 1 ? (size_t)((unsigned __int128)i * span / (n - 1)) : 0;
        copy_window(d, d->val_start + offset, inputs + (size_t)b * T, targets + (size_t)b * T, T);
    }
}
