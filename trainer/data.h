/* The training text: one file read as raw bytes, split into a training part
 * (the first 90%) and a validation part (the last 10%), the seeded batch
 * sampler and the fixed validation windows.
 *
 * A window is seq_len + 1 consecutive bytes: inputs are its first seq_len
 * bytes and targets the same bytes shifted by one. Details: docs/TRAINER.md.
 */
#ifndef SWEEPD_DATA_H
#define SWEEPD_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rng.h"

typedef struct dataset {
    uint8_t *bytes;
    size_t size;        /* whole file */
    size_t train_size;  /* bytes [0, train_size) are the training split */
    size_t val_start;   /* bytes [val_start, size) are the validation split */
} dataset;

/* Reads path and checks that each split holds what one batch needs: the
 * training split at least batch_size * (seq_len + 1) bytes, the validation
 * split at least seq_len + 1. Returns 0, or -1 with err naming the file and
 * the sizes. */
int data_load(dataset *d, const char *path, int seq_len, int batch_size, char *err, size_t err_size);

/* Opens path for reading only when it is a regular file, without blocking:
 * a FIFO, a directory or a device is rejected instead of hanging in open()
 * or reading without end. what names the file in messages ("dataset",
 * "checkpoint"). Returns the stream and its size in bytes, or NULL with err
 * set. The caller fcloses the stream. */
FILE *data_open_regular(const char *path, const char *what, size_t *size_bytes, char *err, size_t err_size);
void data_free(dataset *d);

/* Fills inputs[B*T] and targets[B*T] with B windows at uniform random offsets
 * of the training split, drawing B numbers from rng. */
void data_sample_batch(const dataset *d, rng_state *rng, uint8_t *inputs, uint8_t *targets, int B, int T);

/* Fills batch number `batch` (0-based) of the validation set: window i of
 * the n = n_batches * B windows starts at val_start + floor(i * span / (n-1)),
 * span = validation bytes - (T + 1), so windows are evenly spaced from the
 * first to the last possible offset. */
void data_validation_batch(const dataset *d, int batch, int n_batches, uint8_t *inputs, uint8_t *targets, int B,
                           int T);

#endif
