/* Checkpoint files: trainer_save() and trainer_resume().
 *
 * Layout, little-endian, no padding (docs/TRAINER.md has the table):
 *   header (112 bytes: magic "SWPDCKPT", version, sizes, step, losses,
 *           sampler state)
 *   config JSON (config_bytes, train_config_to_json, no NUL)
 *   parameters (num_params float32, in the model's tensor-table order)
 *   optimizer state (optim_bytes, optim_state_export)
 *   evaluation curve (curve_len x {int64 step, f64 train_loss, f64 val_loss})
 *   checksum (uint64 FNV-1a 64 of every byte before it)
 * A file is written to PATH.tmp.PID, fsynced, renamed over PATH and the
 * directory fsynced, so PATH is always either the old or the new checkpoint.
 * The pid keeps two processes that save the same step of one trial (a worker
 * woken after its trial was given to another) from sharing a temporary file.
 */
#include "trainer_internal.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint files are little-endian; this code writes them from memory as is"
#endif

#define CKPT_MAGIC "SWPDCKPT"
#define CKPT_VERSION 1
/* The config JSON of any valid run is a few kilobytes; anything larger is corruption. */
#define CKPT_MAX_CONFIG_BYTES (1u << 20)

typedef struct ckpt_header {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    uint64_t config_bytes;
    uint64_t num_params;
    uint64_t optim_bytes;
    uint64_t curve_len;
    int64_t step;
    double best_loss;
    double last_val_loss;
    double last_train_loss;
    uint64_t rng[4];
} ckpt_header;
_Static_assert(sizeof(ckpt_header) == 112, "the header has no padding");

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Writes n bytes and folds them into the checksum. */
static int write_part(FILE *f, uint64_t *sum, const void *data, size_t n)
{
    *sum = fnv1a(*sum, data, n);
    return n == 0 || fwrite(data, 1, n, f) == n ? 0 : -1;
}

static int fsync_directory_of(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int trainer_save(const trainer *t, const char *path, char *err, size_t err_size)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        snprintf(err, err_size, "checkpoint path too long: %s", path);
        return -1;
    }

    cJSON *json = train_config_to_json(&t->cfg);
    char *config = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (config == NULL) {
        snprintf(err, err_size, "out of memory serialising the config for checkpoint %s", path);
        return -1;
    }

    ckpt_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.header_bytes = sizeof(h);
    h.config_bytes = strlen(config);
    h.num_params = t->model.num_params;
    h.optim_bytes = optim_state_bytes(t->opt);
    h.curve_len = t->curve_len;
    h.step = t->step;
    h.best_loss = t->best_loss;
    h.last_val_loss = t->last_val_loss;
    h.last_train_loss = t->last_train_loss;
    memcpy(h.rng, t->sampler.s, sizeof(h.rng));
    optim_state_export(t->opt, t->optim_export);

    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        snprintf(err, err_size, "cannot create checkpoint %s: %s", tmp, strerror(errno));
        free(config);
        return -1;
    }
    uint64_t sum = FNV_OFFSET;
    int rc = write_part(f, &sum, &h, sizeof(h));
    rc |= write_part(f, &sum, config, h.config_bytes);
    rc |= write_part(f, &sum, t->model.params, h.num_params * sizeof(float));
    rc |= write_part(f, &sum, t->optim_export, h.optim_bytes);
    rc |= write_part(f, &sum, t->curve, h.curve_len * sizeof(trainer_eval_point));
    free(config);
    if (rc == 0 && fwrite(&sum, sizeof(sum), 1, f) != 1)
        rc = -1;
    if (rc == 0 && fflush(f) != 0)
        rc = -1;
    if (rc == 0 && fsync(fileno(f)) != 0)
        rc = -1;
    int saved_errno = errno;
    if (fclose(f) != 0 && rc == 0) {
        rc = -1;
        saved_errno = errno;
    }
    if (rc != 0) {
        snprintf(err, err_size, "cannot write checkpoint %s: %s", tmp, strerror(saved_errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, err_size, "cannot rename checkpoint %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (fsync_directory_of(path) != 0) {
        snprintf(err, err_size, "cannot fsync the directory of checkpoint %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Checks the header's magic, version and section sizes against the file
 * size. Returns 0, or -1 with err naming the reason. */
static int check_header(const ckpt_header *h, size_t size, const char *path, char *err, size_t err_size)
{
    if (memcmp(h->magic, CKPT_MAGIC, 8) != 0) {
        snprintf(err, err_size, "%s is not a sweep-train checkpoint (bad magic number)", path);
        return -1;
    }
    if (h->version != CKPT_VERSION || h->header_bytes != sizeof(*h)) {
        snprintf(err, err_size, "checkpoint %s has format version %u; this build reads version %d", path,
                 h->version, CKPT_VERSION);
        return -1;
    }
    /* The bounds keep the sum below 2^63, so it cannot wrap. */
    if (h->config_bytes > CKPT_MAX_CONFIG_BYTES || h->num_params > ((uint64_t)1 << 40) ||
        h->optim_bytes > ((uint64_t)1 << 44) || h->curve_len > ((uint64_t)1 << 32)) {
        snprintf(err, err_size, "checkpoint %s is corrupted: implausible section sizes in the header", path);
        return -1;
    }
    uint64_t expected_size = sizeof(*h) + h->config_bytes + h->num_params * sizeof(float) + h->optim_bytes +
                             h->curve_len * sizeof(trainer_eval_point) + sizeof(uint64_t);
    if (size < expected_size) {
        snprintf(err, err_size, "checkpoint %s is truncated: %zu bytes, expected %llu", path, size,
                 (unsigned long long)expected_size);
        return -1;
    }
    if (size > expected_size) {
        snprintf(err, err_size, "checkpoint %s is corrupted: %zu bytes, expected %llu", path, size,
                 (unsigned long long)expected_size);
        return -1;
    }
    return 0;
}

/* Reads a checkpoint file whole, but only after its header passed the
 * checks that need no payload: magic, version and section sizes that add up
 * to the file's size. So a file that is not a checkpoint, or whose header
 * claims huge sections, is rejected before its length is allocated. Returns
 * a malloc'd buffer of *size bytes with the header copied into *h, or NULL
 * with err set. */
static unsigned char *read_file(const char *path, ckpt_header *h, size_t *size, char *err, size_t err_size)
{
    FILE *f = data_open_regular(path, "checkpoint", size, err, err_size);
    if (f == NULL)
        return NULL;
    if (*size < sizeof(*h)) {
        snprintf(err, err_size, "checkpoint %s is truncated: %zu bytes, shorter than its %zu-byte header", path,
                 *size, sizeof(*h));
        fclose(f);
        return NULL;
    }
    if (fread(h, 1, sizeof(*h), f) != sizeof(*h)) {
        snprintf(err, err_size, "cannot read checkpoint %s: %s", path, ferror(f) ? strerror(errno) : "short read");
        fclose(f);
        return NULL;
    }
    if (check_header(h, *size, path, err, err_size) != 0) {
        fclose(f);
        return NULL;
    }

    unsigned char *buf = malloc(*size);
    if (buf == NULL) {
        snprintf(err, err_size, "out of memory reading checkpoint %s (%zu bytes)", path, *size);
        fclose(f);
        return NULL;
    }
    memcpy(buf, h, sizeof(*h));
    size_t rest = *size - sizeof(*h);
    if (fread(buf + sizeof(*h), 1, rest, f) != rest) {
        snprintf(err, err_size, "cannot read checkpoint %s: %s", path, ferror(f) ? strerror(errno) : "short read");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    return buf;
}

/* Names the first field (other than dataset, which may be a cached copy of
 * the same data) that differs between the checkpoint's config and expected. */
static int compare_configs(const train_config *got, const train_config *expected, char *err, size_t err_size)
{
    cJSON *a = train_config_to_json(got), *b = train_config_to_json(expected);
    int rc = 0;

    if (a == NULL || b == NULL) {
        snprintf(err, err_size, "out of memory comparing checkpoint configs");
        rc = -1;
    }
    for (const cJSON *item = a ? a->child : NULL; rc == 0 && item; item = item->next) {
        if (strcmp(item->string, "dataset") == 0)
            continue;
        const cJSON *other = cJSON_GetObjectItemCaseSensitive(b, item->string);
        if (other && cJSON_Compare(item, other, 1))
            continue;
        char *va = cJSON_PrintUnformatted(item), *vb = other ? cJSON_PrintUnformatted(other) : NULL;
        snprintf(err, err_size, "checkpoint does not match this run: %s is %s in the checkpoint but %s here",
                 item->string, va ? va : "?", vb ? vb : "?");
        free(va);
        free(vb);
        rc = -1;
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    return rc;
}

/* Parses and finalizes the config stored in a checkpoint. */
static int parse_config(const char *text, size_t len, train_config *cfg, const char *path, char *err,
                        size_t err_size)
{
    char inner[512];
    cJSON *json = cJSON_ParseWithLength(text, len);
    if (json == NULL) {
        snprintf(err, err_size, "checkpoint %s is corrupted: its config is not valid JSON", path);
        return -1;
    }
    train_config_defaults(cfg);
    int rc = train_config_set_json(cfg, json, inner, sizeof(inner));
    cJSON_Delete(json);
    if (rc == 0)
        rc = train_config_finalize(cfg, inner, sizeof(inner));
    if (rc != 0) {
        snprintf(err, err_size, "checkpoint %s has an invalid config: %s", path, inner);
        return -1;
    }
    return 0;
}

int trainer_resume(trainer **out, const char *checkpoint_path, const train_config *expected,
                   const char *dataset_path, char *err, size_t err_size)
{
    size_t size;
    ckpt_header h;
    train_config cfg;
    trainer *t = NULL;

    *out = NULL;
    unsigned char *buf = read_file(checkpoint_path, &h, &size, err, err_size);
    if (buf == NULL)
        return -1;

    uint64_t stored_sum;
    memcpy(&stored_sum, buf + size - sizeof(stored_sum), sizeof(stored_sum));
    if (fnv1a(FNV_OFFSET, buf, size - sizeof(stored_sum)) != stored_sum) {
        snprintf(err, err_size, "checkpoint %s is corrupted: checksum mismatch", checkpoint_path);
        goto fail;
    }

    /* Config: must match what the caller expects, then the model is rebuilt from it. */
    const unsigned char *p = buf + sizeof(h);
    if (parse_config((const char *)p, h.config_bytes, &cfg, checkpoint_path, err, err_size) != 0)
        goto fail;
    p += h.config_bytes;
    if (expected && compare_configs(&cfg, expected, err, err_size) != 0)
        goto fail;
    if (trainer_create(&t, &cfg, dataset_path, err, err_size) != 0)
        goto fail;
    if (h.num_params != t->model.num_params || h.optim_bytes != optim_state_bytes(t->opt)) {
        snprintf(err, err_size,
                 "checkpoint %s does not match its own config: %llu parameters and %llu optimizer bytes, "
                 "the model needs %zu and %zu",
                 checkpoint_path, (unsigned long long)h.num_params, (unsigned long long)h.optim_bytes,
                 t->model.num_params, optim_state_bytes(t->opt));
        goto fail;
    }
    if (h.step < 0 || h.step > cfg.steps || h.curve_len > t->curve_cap) {
        snprintf(err, err_size, "checkpoint %s is corrupted: step %lld of %ld, %llu evaluations",
                 checkpoint_path, (long long)h.step, cfg.steps, (unsigned long long)h.curve_len);
        goto fail;
    }

    /* State. */
    memcpy(t->model.params, p, h.num_params * sizeof(float));
    p += h.num_params * sizeof(float);
    if (optim_state_import(t->opt, p, h.optim_bytes) != 0) {
        snprintf(err, err_size, "checkpoint %s: the optimizer rejected its state (%llu bytes)", checkpoint_path,
                 (unsigned long long)h.optim_bytes);
        goto fail;
    }
    p += h.optim_bytes;
    memcpy(t->curve, p, h.curve_len * sizeof(trainer_eval_point));
    t->curve_len = h.curve_len;
    t->step = h.step;
    t->best_loss = h.best_loss;
    t->last_val_loss = h.last_val_loss;
    t->last_train_loss = h.last_train_loss;
    memcpy(t->sampler.s, h.rng, sizeof(h.rng));

    free(buf);
    *out = t;
    return 0;

fail:
    trainer_free(t);
    free(buf);
    return -1;
}
