/* The training loop: sample a batch, forward, backward, clip, schedule the
 * learning rate, optimizer step; evaluate every eval_every steps; checkpoint
 * and stop on request at step boundaries. Checkpoint files are in
 * checkpoint.c, the model in model.c.
 *
 * Learning rate at step k (0-based count of previous steps), W = warmup_steps,
 * S = steps: lr * (k+1)/W while k < W; after that, with p = (k-W)/(S-W) in
 * [0, 1): constant lr, cosine lr * (1 + cos(pi p)) / 2, or linear lr * (1-p),
 * so that the decay reaches 0 at step S.
 */
#include "trainer_internal.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pmmintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <xmmintrin.h>

/* Declared by OpenBLAS's cblas.h in some builds only. */
void openblas_set_num_threads(int num_threads);

/* Set once the program runs with OpenBLAS started single-threaded. */
#define REEXEC_MARKER "SWEEPD_OPENBLAS_REEXEC"

int trainer_process_init(char **argv)
{
    if (getenv(REEXEC_MARKER) != NULL)
        return 0;
    if (setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0 || setenv(REEXEC_MARKER, "1", 1) != 0)
        return -1;
    execv("/proc/self/exe", argv);
    return -1; /* execv returns only on failure */
}

void trainer_thread_setup(int threads)
{
    /* FTZ: denormal results become 0; DAZ: denormal inputs read as 0. Without
     * them high-learning-rate runs slow down several times when values decay
     * towards 0, so trial time would depend on the hyperparameters. They are
     * set before the OpenBLAS thread count, so that OpenBLAS threads created
     * by that call inherit them; after trainer_process_init() every OpenBLAS
     * thread is created that way. */
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
    openblas_set_num_threads(threads > 0 ? threads : 1);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The limit set by trainer_set_memory_limit(); 0 = the default. */
static _Atomic size_t memory_limit_bytes;

void trainer_set_memory_limit(size_t bytes)
{
    atomic_store(&memory_limit_bytes, bytes);
}

/* Physical memory, lowered to RLIMIT_AS or RLIMIT_DATA when either is set
 * and smaller: a run above it would be OOM-killed or fail mid-allocation. */
static size_t default_memory_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page_bytes = sysconf(_SC_PAGESIZE);
    size_t limit = SIZE_MAX;
    if (pages > 0 && page_bytes > 0 && (uint64_t)pages <= SIZE_MAX / (uint64_t)page_bytes)
        limit = (size_t)pages * (size_t)page_bytes;

    const int resources[] = {RLIMIT_AS, RLIMIT_DATA};
    for (size_t i = 0; i < sizeof(resources) / sizeof(resources[0]); i++) {
        struct rlimit rl;
        if (getrlimit(resources[i], &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit)
            limit = (size_t)rl.rlim_cur;
    }
    return limit;
}

size_t trainer_memory_limit(void)
{
    size_t bytes = atomic_load(&memory_limit_bytes);
    return bytes ? bytes : default_memory_limit();
}

int trainer_parse_bytes(const char *text, size_t *bytes)
{
    static const char units[] = "KMGT";
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || value == 0)
        return -1;
    int shift = 0;
    const char *unit = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (unit != NULL) {
        shift = 10 * (int)(unit - units + 1);
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
            end += strlen(end);
    }
    if (*end != '\0' || value > (SIZE_MAX >> shift))
        return -1;
    *bytes = (size_t)value << shift;
    return 0;
}

/* Adds b to *sum; returns -1 when the sum does not fit in size_t. */
static int add_bytes(size_t *sum, size_t b)
{
    return __builtin_add_overflow(*sum, b, sum) ? -1 : 0;
}

/* Checks that need_bytes (what the run allocates) stays under the memory
 * limit. Returns 0, or -1 with err naming both figures and the fix. */
static int check_memory(const train_config *cfg, size_t need_bytes, int overflowed, const char *what, char *err,
                        size_t err_size)
{
    size_t limit = trainer_memory_limit();
    if (!overflowed && need_bytes <= limit)
        return 0;
    char need_text[64];
    if (overflowed)
        snprintf(need_text, sizeof(need_text), "more than %zu bytes", (size_t)SIZE_MAX);
    else
        snprintf(need_text, sizeof(need_text), "%zu bytes (%.1f MiB)", need_bytes,
                 (double)need_bytes / (1024.0 * 1024.0));
    snprintf(err, err_size,
             "run needs %s for %s (n_layer=%d d_model=%d n_head=%d seq_len=%d batch_size=%d), above the "
             "memory limit of %zu bytes (%.1f MiB); lower batch_size, seq_len, d_model, n_layer or "
             "steps / eval_every, or raise the limit with --max-memory",
             need_text, what, cfg->n_layer, cfg->d_model, cfg->n_head, cfg->seq_len, cfg->batch_size, limit,
             (double)limit / (1024.0 * 1024.0));
    return -1;
}

int trainer_create(trainer **out, const train_config *cfg, const char *dataset_path, char *err, size_t err_size)
{
    const char *path = dataset_path ? dataset_path : cfg->dataset;
    *out = NULL;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, err_size, "missing dataset: set dataset=PATH (sweep-train --data FILE)");
        return -1;
    }
    /* The caller finalized cfg; check again so that a config from a
     * checkpoint or a hand-built struct cannot make the model inconsistent. */
    train_config checked = *cfg;
    if (train_config_finalize(&checked, err, err_size) != 0)
        return -1;

    trainer *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, err_size, "out of memory allocating the trainer");
        return -1;
    }
    t->cfg = checked;

    /* Size the run before any large allocation: the model's buffers, the
     * evaluation curve and the dataset, which data_load() reads whole. */
    size_t dataset_bytes;
    FILE *probe = data_open_regular(path, "dataset", &dataset_bytes, err, err_size);
    if (probe == NULL) {
        free(t);
        return -1;
    }
    fclose(probe);
    if (model_layout(&t->model, cfg->n_layer, cfg->d_model, cfg->n_head, cfg->seq_len, cfg->batch_size, err,
                     err_size) != 0) {
        free(t);
        return -1;
    }
    /* One curve point per evaluation: steps / eval_every, plus the last step. */
    t->curve_cap = (size_t)(cfg->steps / cfg->eval_every) + 1;

    /* Everything the run will allocate, measured from the tensor table
     * before any large allocation: the model's buffers, the evaluation
     * curve, the dataset (data_load() reads it whole), the optimizer's
     * state, scratch and root workspaces, and the state's export copy that
     * checkpoints use. */
    size_t export_bytes = 0;
    size_t optim_bytes = optim_state_bytes_for(&t->cfg, t->model.tensors, t->model.n_tensors, &export_bytes);
    size_t need = model_bytes(&t->model), curve_bytes = 0;
    int overflowed = optim_bytes == SIZE_MAX || add_bytes(&need, dataset_bytes) != 0 ||
                     __builtin_mul_overflow(t->curve_cap, sizeof(trainer_eval_point), &curve_bytes) ||
                     add_bytes(&need, curve_bytes) != 0 || add_bytes(&need, optim_bytes) != 0 ||
                     add_bytes(&need, export_bytes) != 0;
    if (check_memory(cfg, need, overflowed, "the model, the optimizer state and the dataset", err,
                     err_size) != 0) {
        trainer_free(t);
        return -1;
    }

    if (data_load(&t->data, path, cfg->seq_len, cfg->batch_size, err, err_size) != 0 ||
        model_alloc(&t->model, err, err_size) != 0) {
        trainer_free(t);
        return -1;
    }
    model_init(&t->model, cfg->seed);
    if (optim_create(&t->opt, &t->cfg, t->model.tensors, t->model.n_tensors, err, err_size) != 0) {
        trainer_free(t);
        return -1;
    }
    rng_seed(&t->sampler, cfg->seed, 1);

    t->curve = calloc(t->curve_cap, sizeof(trainer_eval_point));
    t->optim_export = malloc(optim_state_bytes(t->opt) + 1);
    if (t->curve == NULL || t->optim_export == NULL) {
        snprintf(err, err_size, "out of memory allocating the trainer");
        trainer_free(t);
        return -1;
    }
    t->best_loss = INFINITY;
    t->last_val_loss = NAN;
    t->last_train_loss = NAN;
    t->diverged_step = -1;
    t->bytes_allocated = model_bytes(&t->model) + optim_bytes + export_bytes +
                         t->curve_cap * sizeof(trainer_eval_point);
    *out = t;
    return 0;
}

void trainer_free(trainer *t)
{
    if (t == NULL)
        return;
    if (t->opt)
        optim_free(t->opt);
    model_free(&t->model);
    data_free(&t->data);
    free(t->curve);
    free(t->optim_export);
    free(t);
}

long trainer_step_count(const trainer *t)
{
    return t->step;
}

const train_config *trainer_config(const trainer *t)
{
    return &t->cfg;
}

size_t trainer_bytes_allocated(const trainer *t)
{
    return t->bytes_allocated;
}

/* Learning rate of the step after k completed steps (schedule in the file header). */
static double scheduled_lr(const train_config *cfg, long k)
{
    if (k < cfg->warmup_steps)
        return cfg->lr * (double)(k + 1) / (double)cfg->warmup_steps;
    long decay_steps = cfg->steps - cfg->warmup_steps;
    double p = decay_steps > 0 ? (double)(k - cfg->warmup_steps) / (double)decay_steps : 0.0;
    switch (cfg->lr_schedule) {
    case LR_CONSTANT: return cfg->lr;
    case LR_COSINE: return cfg->lr * 0.5 * (1.0 + cos(M_PI * p));
    case LR_LINEAR: return cfg->lr * (1.0 - p);
    }
    return cfg->lr;
}

/* Global L2 norm of the gradients, accumulated in double over 8 lanes. */
static double gradient_norm(const float *g, size_t n)
{
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)g[i + k] * g[i + k];
    double s = 0.0;
    for (; i < n; i++)
        s += (double)g[i] * g[i];
    for (int k = 0; k < 8; k++)
        s += acc[k];
    return sqrt(s);
}

int trainer_step(trainer *t, double *train_loss)
{
    gpt_model *m = &t->model;

    data_sample_batch(&t->data, &t->sampler, m->inputs, m->targets, m->B, m->T);
    double loss = model_forward(m);
    *train_loss = loss;
    if (!isfinite(loss)) {
        t->diverged_step = t->step + 1;
        return TRAIN_DIVERGED;
    }

    model_zero_grad(m);
    model_backward(m);
    double norm = gradient_norm(m->grads, m->num_params);
    if (!isfinite(norm)) {
        t->diverged_step = t->step + 1;
        return TRAIN_DIVERGED;
    }
    if (t->cfg.grad_clip > 0.0 && norm > t->cfg.grad_clip) {
        float scale = (float)(t->cfg.grad_clip / norm);
        for (size_t i = 0; i < m->num_params; i++)
            m->grads[i] *= scale;
    }

    optim_step(t->opt, m->params, m->grads, scheduled_lr(&t->cfg, t->step));
    t->step++;
    t->last_train_loss = loss;
    return TRAIN_DONE;
}

double trainer_evaluate(trainer *t)
{
    gpt_model *m = &t->model;
    double total = 0.0;

    /* Every batch has B*T positions, so the mean of batch means is the mean over all windows. */
    for (int b = 0; b < t->cfg.eval_batches; b++) {
        data_validation_batch(&t->data, b, t->cfg.eval_batches, m->inputs, m->targets, m->B, m->T);
        total += model_forward(m);
    }
    return total / t->cfg.eval_batches;
}

static void fill_result(const trainer *t, train_result *r, enum train_status status, long steps_run,
                        double seconds)
{
    r->status = status;
    r->final_loss = t->last_val_loss;
    r->best_loss = t->best_loss;
    r->steps = t->step;
    r->seconds = seconds;
    r->tokens_per_s = seconds > 0 ? (double)steps_run * t->cfg.batch_size * t->cfg.seq_len / seconds : 0.0;
    r->diverged_step = t->diverged_step;
    r->bytes_allocated = t->bytes_allocated;
}

/* Recent step times for the progress rate: a ring of the last RECENT ends. */
#define RECENT 16

int trainer_run(trainer *t, const train_hooks *hooks, train_result *result, char *err, size_t err_size)
{
    const train_config *cfg = &t->cfg;
    double start = now_seconds();
    long first_step = t->step;
    double recent[RECENT];
    long n_recent = 0;

    /* Step of the last checkpoint that on_checkpoint stored in this call,
     * so a stop right after a periodic checkpoint does not store it twice. */
    long stored_step = -1;

    memset(result, 0, sizeof(*result));
    recent[0] = start;
    n_recent = 1;

    while (t->step < cfg->steps) {
        /* Stop at a step boundary, after a checkpoint of the state so far. */
        if (hooks && hooks->stop && atomic_load(hooks->stop)) {
            if (hooks->on_checkpoint && stored_step != t->step)
                hooks->on_checkpoint(hooks->ctx, t, t->step);
            fill_result(t, result, TRAIN_STOPPED, t->step - first_step, now_seconds() - start);
            return TRAIN_STOPPED;
        }

        double loss;
        if (trainer_step(t, &loss) != TRAIN_DONE) {
            fill_result(t, result, TRAIN_DIVERGED, t->step - first_step, now_seconds() - start);
            return TRAIN_DIVERGED;
        }

        double now = now_seconds();
        recent[n_recent % RECENT] = now;
        n_recent++;
        if (hooks && hooks->on_step) {
            long span = n_recent - 1 < RECENT - 1 ? n_recent - 1 : RECENT - 1;
            double oldest = recent[(n_recent - 1 - span) % RECENT];
            double per_step = span > 0 ? (now - oldest) / span : 0.0;
            train_progress p = {
                .step = t->step,
                .steps = cfg->steps,
                .train_loss = loss,
                .tokens_per_s = per_step > 0 ? (double)cfg->batch_size * cfg->seq_len / per_step : 0.0,
                .eta_seconds = per_step * (double)(cfg->steps - t->step),
            };
            hooks->on_step(hooks->ctx, &p);
        }

        if (t->step % cfg->eval_every == 0 || t->step == cfg->steps) {
            double val = trainer_evaluate(t);
            if (!isfinite(val)) {
                t->diverged_step = t->step;
                fill_result(t, result, TRAIN_DIVERGED, t->step - first_step, now_seconds() - start);
                return TRAIN_DIVERGED;
            }
            t->last_val_loss = val;
            if (val < t->best_loss)
                t->best_loss = val;
            if (t->curve_len < t->curve_cap) {
                t->curve[t->curve_len].step = t->step;
                t->curve[t->curve_len].train_loss = loss;
                t->curve[t->curve_len].val_loss = val;
                t->curve_len++;
            }
            if (hooks && hooks->on_eval)
                hooks->on_eval(hooks->ctx, t->step, loss, val);
        }

        if (hooks && hooks->on_checkpoint && hooks->checkpoint_every > 0 &&
            t->step % hooks->checkpoint_every == 0 && hooks->on_checkpoint(hooks->ctx, t, t->step) == 0)
            stored_step = t->step;
    }

    if (!isfinite(t->last_val_loss)) {
        snprintf(err, err_size, "internal error: run finished at step %ld without a validation loss", t->step);
        return -1;
    }
    fill_result(t, result, TRAIN_DONE, t->step - first_step, now_seconds() - start);
    return TRAIN_DONE;
}
