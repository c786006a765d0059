/* Training throughput of one benchmark config, and its sgemm floor.
 *
 * Runs `--warmup` steps, then times whole training steps (batch sampling,
 * forward, backward, clipping, Adam) for at least `--seconds`. It reports
 * the mean and the fastest step: on a machine shared with other jobs the
 * fastest step is the one least disturbed by them. The floor
 * replays the step's matrix products alone: the same cblas_sgemm shapes,
 * transposes and leading dimensions as model.c and kernels.c, on scratch
 * buffers. Prints one JSON line. Used by bench/bench_trainer.sh.
 *
 *   bench_trainer --data FILE --config S|M|M256|L [--threads N] [--warmup W] [--seconds S]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kernels.h"
#include "trainer.h"

#define ATT_BLOCK KERNEL_ATT_BLOCK

typedef struct bench_config {
    const char *name;
    int n_layer, d_model, n_head, seq_len, batch_size;
} bench_config;

static const bench_config configs[] = {
    {"S", 2, 64, 4, 64, 16},
    {"M", 4, 128, 4, 128, 16},
    {"M256", 4, 128, 4, 128, 256},
    {"L", 6, 256, 8, 128, 32},
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Scratch operands for the floor; large enough for every product below. */
typedef struct floor_buffers {
    float *a, *b, *c;
} floor_buffers;

static void gemm(floor_buffers *f, int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc, float beta)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, f->a,
                lda, f->b, ldb, beta, f->c, ldc);
}

/* y = x @ W (N x in, in x out) and its two backward products. */
static void linear_products(floor_buffers *f, int N, int in, int out)
{
    gemm(f, 0, 0, N, out, in, in, out, out, 1.0f);
    gemm(f, 0, 1, N, in, out, out, out, in, 0.0f);
    gemm(f, 1, 0, in, out, N, in, out, out, 1.0f);
}

/* One step's matrix products, in the layouts of model.c / kernels.c. */
static void step_products(floor_buffers *f, const bench_config *c)
{
    int B = c->batch_size, T = c->seq_len, C = c->d_model, NH = c->n_head, N = B * T, hs = C / NH;

    for (int l = 0; l < c->n_layer; l++) {
        linear_products(f, N, C, 3 * C);
        linear_products(f, N, C, C);
        linear_products(f, N, C, 4 * C);
        linear_products(f, N, 4 * C, C);
        /* Attention by causal row blocks, as kernels.c computes it. */
        for (int bh = 0; bh < B * NH; bh++)
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, rows = r1 - r0;
                gemm(f, 0, 1, rows, r1, hs, 3 * C, 3 * C, T, 0.0f);     /* scores */
                gemm(f, 0, 0, rows, hs, r1, T, 3 * C, C, 0.0f);         /* p @ v */
                gemm(f, 0, 1, rows, r1, hs, C, 3 * C, T, 0.0f);         /* dp */
                gemm(f, 1, 0, rows, hs, T - r0, T, C, 3 * C, 0.0f);     /* dv */
                gemm(f, 0, 0, rows, hs, r1, T, 3 * C, 3 * C, 0.0f);     /* dq */
                gemm(f, 1, 0, rows, hs, T - r0, T, 3 * C, 3 * C, 0.0f); /* dk */
            }
    }
    gemm(f, 0, 1, N, 256, C, C, C, 256, 0.0f);  /* logits */
    gemm(f, 0, 0, N, C, 256, 256, C, C, 0.0f);  /* dlnf */
    gemm(f, 1, 0, 256, C, N, 256, C, C, 1.0f);  /* dwte */
}

/* Times the floor; *ms_per_step is the fastest repetition. */
static int time_floor(const bench_config *c, double min_seconds, double *ms_per_step)
{
    size_t N = (size_t)c->batch_size * c->seq_len;
    size_t floats = N * 4 * (size_t)c->d_model + N * 256 + 16 * (size_t)c->d_model * c->d_model + 65536;
    floor_buffers f = {calloc(floats, 4), calloc(floats, 4), calloc(floats, 4)};
    if (!f.a || !f.b || !f.c) {
        free(f.a);
        free(f.b);
        free(f.c);
        return -1;
    }
    step_products(&f, c); /* warm-up */
    long n = 0;
    double start = now_seconds(), elapsed;
    *ms_per_step = 1e300;
    do {
        double t0 = now_seconds();
        step_products(&f, c);
        double t1 = now_seconds();
        if ((t1 - t0) * 1e3 < *ms_per_step)
            *ms_per_step = (t1 - t0) * 1e3;
        n++;
        elapsed = t1 - start;
    } while (elapsed < min_seconds || n < 3);
    free(f.a);
    free(f.b);
    free(f.c);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *name = "S";
    int threads = 1;
    long warmup = 3;
    double seconds = 5.0;
    char err[1024];

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data") == 0)
            data = argv[i + 1];
        else if (strcmp(argv[i], "--config") == 0)
            name = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else {
            fprintf(stderr, "bench_trainer: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    const bench_config *c = NULL;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
        if (strcmp(configs[i].name, name) == 0)
            c = &configs[i];
    if (data == NULL || c == NULL || threads < 1) {
        fprintf(stderr, "usage: bench_trainer --data FILE --config S|M|M256|L [--threads N] [--warmup W] "
                        "[--seconds S]\n");
        return 2;
    }

    trainer_thread_setup(threads);
    train_config cfg;
    train_config_defaults(&cfg);
    char value[32];
    const struct { const char *name; long v; } sets[] = {
        {"n_layer", c->n_layer}, {"d_model", c->d_model}, {"n_head", c->n_head},
        {"seq_len", c->seq_len}, {"batch_size", c->batch_size}, {"steps", 1000000},
        {"eval_every", 1000000}, {"eval_batches", 1},
    };
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        snprintf(value, sizeof(value), "%ld", sets[i].v);
        if (train_config_set(&cfg, sets[i].name, value, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_trainer: %s\n", err);
            return 1;
        }
    }
    trainer *t;
    if (train_config_finalize(&cfg, err, sizeof(err)) != 0 || trainer_create(&t, &cfg, data, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_trainer: %s\n", err);
        return 1;
    }

    double loss;
    for (long i = 0; i < warmup; i++)
        if (trainer_step(t, &loss) != 0) {
            fprintf(stderr, "bench_trainer: diverged during warm-up\n");
            trainer_free(t);
            return 1;
        }
    long n = 0;
    double start = now_seconds(), elapsed, best_ms = 1e300;
    do {
        double t0 = now_seconds();
        if (trainer_step(t, &loss) != 0) {
            fprintf(stderr, "bench_trainer: diverged\n");
            trainer_free(t);
            return 1;
        }
        double t1 = now_seconds();
        if ((t1 - t0) * 1e3 < best_ms)
            best_ms = (t1 - t0) * 1e3;
        n++;
        elapsed = t1 - start;
    } while (elapsed < seconds || n < 3);
    double step_ms = elapsed * 1e3 / n;
    size_t bytes = trainer_bytes_allocated(t);
    trainer_free(t);

    double floor_ms;
    if (time_floor(c, seconds / 2, &floor_ms) != 0) {
        fprintf(stderr, "bench_trainer: out of memory for the sgemm floor\n");
        return 1;
    }
    struct rusage ru;
    long peak_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
    double tokens = (double)c->batch_size * c->seq_len;
    /* sgemm_fraction compares fastest with fastest: floor time / step time. */
    printf("{\"impl\":\"sweep-train\",\"config\":\"%s\",\"threads\":%d,\"steps\":%ld,\"step_ms\":%.3f,"
           "\"tokens_per_s\":%.1f,\"best_step_ms\":%.3f,\"best_tokens_per_s\":%.1f,\"sgemm_ms\":%.3f,"
           "\"sgemm_fraction\":%.3f,\"bytes_allocated\":%zu,\"peak_rss_bytes\":%ld,\"loss\":%.4f}\n",
           c->name, threads, n, step_ms, tokens / (step_ms / 1e3), best_ms, tokens / (best_ms / 1e3), floor_ms,
           floor_ms / best_ms, bytes, peak_kb * 1024, loss);
    return 0;
}
