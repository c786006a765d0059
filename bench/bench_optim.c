/* Optimizer overhead benchmark: the step-time cost of SM3 and Shampoo over
 * Adam on the GPT model of config M (n_layer 4, d_model 128, n_head 4,
 * seq_len 128) at one batch size.
 *
 * A training step is forward + backward + optimizer step, and only the last
 * part differs between optimizers. The benchmark therefore times the parts
 * separately, as medians, which resist other load on the machine:
 *   t_fb       forward + zero_grad + backward at this batch size
 *   t_opt(X)   one optimizer step of X on real gradients
 * Shampoo's step without a root refresh and with one are timed apart, so
 * precondition_every P costs t_plain + (t_refresh - t_plain) / P per step.
 * overhead(X) = (t_opt(X) - t_opt(adam)) / (t_fb + t_opt(adam)).
 *
 * The asynchronous refresh overlaps forward and backward, which the split
 * cannot see, so --end-to-end STEPS times whole training steps instead: the
 * mean step time over STEPS steps (a multiple of 10, so every window holds
 * the same number of refreshes), median of the repeats, for adam and for
 * Shampoo synchronous and asynchronous at precondition_every 1 and 10.
 *
 * --threads N sets OpenBLAS's threads for every optimizer alike, as
 * sweep-train --threads does, and so the number of Shampoo root threads.
 *
 * --clock cpu measures the process's CPU time instead of wall time. On a
 * machine shared with other jobs it is much steadier, and with one thread
 * (sync mode) it is the time the work takes on an idle core. With several
 * threads it is their sum. --clock thread measures the calling thread's CPU
 * time only: with precondition_async and --threads 1 that is the critical
 * path of a step, provided a free core lets the background thread finish a
 * refresh before the step that installs it (waiting is not counted).
 *
 *   bench_optim [--batch B] [--repeats N] [--root-method eigh|newton]
 *               [--threads N] [--end-to-end STEPS] [--clock wall|cpu|thread]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hparams.h"
#include "model.h"
#include "optim.h"
#include "trainer.h"

#define M_LAYERS 4
#define M_D_MODEL 128
#define M_HEADS 4
#define M_SEQ_LEN 128

/* CLOCK_MONOTONIC, or the CPU-time clock chosen by --clock. */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static const char *clock_name(void)
{
    if (bench_clock == CLOCK_PROCESS_CPUTIME_ID)
        return "process cpu";
    return bench_clock == CLOCK_THREAD_CPUTIME_ID ? "thread cpu" : "wall";
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, compare_doubles);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static double time_forward_backward(gpt_model *m, int repeats)
{
    double samples[64];
    for (int r = 0; r < repeats; r++) {
        double start = now_seconds();
        model_forward(m);
        model_zero_grad(m);
        model_backward(m);
        samples[r] = now_seconds() - start;
    }
    return median(samples, repeats);
}

/* Times optimizer steps on the model's current gradients. Steps with
 * k % every == 0 go to refresh_out, the others to plain_out (either may be
 * NULL). The gradients are restored before each step because adam adds
 * weight decay into them. */
static int time_optimizer(gpt_model *m, const train_config *cfg, int repeats, double *plain_out,
                          double *refresh_out)
{
    char err[256];
    optimizer *opt = NULL;
    if (optim_create(&opt, cfg, m->tensors, m->n_tensors, err, sizeof err) < 0) {
        fprintf(stderr, "bench_optim: %s\n", err);
        return -1;
    }
    float *grads = malloc(m->num_params * sizeof(float));
    float *params = malloc(m->num_params * sizeof(float));
    if (!grads || !params) {
        fprintf(stderr, "bench_optim: out of memory\n");
        free(grads);
        free(params);
        optim_free(opt);
        return -1;
    }
    memcpy(grads, m->grads, m->num_params * sizeof(float));
    memcpy(params, m->params, m->num_params * sizeof(float));

    double plain[64], refresh[64];
    int n_plain = 0, n_refresh = 0;
    /* The first step is a warm-up (page faults, BLAS thread start). */
    for (int s = 0; n_plain < repeats || n_refresh < repeats; s++) {
        int refreshes = optim_step_count(opt) % cfg->precondition_every == 0;
        memcpy(m->grads, grads, m->num_params * sizeof(float));
        double start = now_seconds();
        optim_step(opt, m->params, m->grads, cfg->lr);
        double elapsed = now_seconds() - start;
        if (s == 0)
            continue;
        if (refreshes && n_refresh < repeats)
            refresh[n_refresh++] = elapsed;
        else if (!refreshes && n_plain < repeats)
            plain[n_plain++] = elapsed;
        if (!plain_out && n_refresh == repeats)
            break;
        if (!refresh_out && n_plain == repeats)
            break;
    }
    if (plain_out)
        *plain_out = median(plain, n_plain);
    if (refresh_out)
        *refresh_out = median(refresh, n_refresh);
    if (optim_rejected_roots(opt) > 0)
        fprintf(stderr, "bench_optim: %ld roots rejected\n", optim_rejected_roots(opt));

    memcpy(m->grads, grads, m->num_params * sizeof(float));
    memcpy(m->params, params, m->num_params * sizeof(float));
    free(grads);
    free(params);
    optim_free(opt);
    return 0;
}

static int make_config(train_config *cfg, const char *kind, int every, const char *root_method, int async)
{
    char err[256], every_text[32];
    train_config_defaults(cfg);
    snprintf(every_text, sizeof every_text, "%d", every);
    if (train_config_set(cfg, "optimizer", kind, err, sizeof err) < 0 ||
        train_config_set(cfg, "precondition_every", every_text, err, sizeof err) < 0 ||
        train_config_set(cfg, "root_method", root_method, err, sizeof err) < 0 ||
        train_config_set(cfg, "precondition_async", async ? "true" : "false", err, sizeof err) < 0 ||
        train_config_finalize(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "bench_optim: %s\n", err);
        return -1;
    }
    return 0;
}

/* Times whole training steps (forward, zero_grad, backward, optimizer
 * step) of cfg: one warm-up step, then repeats windows of steps steps.
 * Writes the median over windows of the mean step time. The model's
 * parameters are restored afterwards. */
static int time_training(gpt_model *m, const train_config *cfg, int steps, int repeats, double *step_out)
{
    char err[256];
    optimizer *opt = NULL;
    if (optim_create(&opt, cfg, m->tensors, m->n_tensors, err, sizeof err) < 0) {
        fprintf(stderr, "bench_optim: %s\n", err);
        return -1;
    }
    float *params = malloc(m->num_params * sizeof(float));
    if (!params) {
        fprintf(stderr, "bench_optim: out of memory\n");
        optim_free(opt);
        return -1;
    }
    memcpy(params, m->params, m->num_params * sizeof(float));

    double samples[64];
    for (int r = -1; r < repeats; r++) {
        int count = r < 0 ? 1 : steps;
        double start = now_seconds();
        for (int s = 0; s < count; s++) {
            model_forward(m);
            model_zero_grad(m);
            model_backward(m);
            optim_step(opt, m->params, m->grads, cfg->lr);
        }
        if (r >= 0)
            samples[r] = (now_seconds() - start) / count;
    }
    *step_out = median(samples, repeats);
    if (optim_rejected_roots(opt) > 0)
        fprintf(stderr, "bench_optim: %ld roots rejected\n", optim_rejected_roots(opt));

    memcpy(m->params, params, m->num_params * sizeof(float));
    free(params);
    optim_free(opt);
    return 0;
}

static int run_end_to_end(gpt_model *m, int batch, int steps, int repeats, int threads, const char *root_method)
{
    static const struct {
        const char *label;
        const char *kind;
        int every, async;
    } runs[] = {
        {"adam", "adam", 10, 0},
        {"shampoo every 1", "shampoo", 1, 0},
        {"shampoo every 10", "shampoo", 10, 0},
        {"shampoo async every 1", "shampoo", 1, 1},
        {"shampoo async every 10", "shampoo", 10, 1},
    };
    double step_s[sizeof runs / sizeof runs[0]];
    train_config cfg;

    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        if (make_config(&cfg, runs[i].kind, runs[i].every, root_method, runs[i].async) < 0 ||
            time_training(m, &cfg, steps, repeats, &step_s[i]) < 0)
            return -1;

    printf("config M, batch %d, %zu parameters, root_method %s, threads %d, %s time, end to end: mean of %d "
           "steps, median of %d\n", batch, m->num_params, root_method, threads,
           clock_name(), steps, repeats);
    printf("  %-8s %-24s %10s %10s\n", "batch", "optimizer", "step ms", "overhead");
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        printf("  %-8d %-24s %10.1f %9.1f%%\n", batch, runs[i].label, 1e3 * step_s[i],
               100.0 * (step_s[i] - step_s[0]) / step_s[0]);
    return 0;
}

int main(int argc, char **argv)
{
    int batch = 16, repeats = 7, threads = 1, end_to_end_steps = 0;
    const char *root_method = "eigh";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batch") == 0)
            batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--repeats") == 0)
            repeats = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--root-method") == 0)
            root_method = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--end-to-end") == 0)
            end_to_end_steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--clock") == 0 && strcmp(argv[i + 1], "wall") == 0)
            bench_clock = CLOCK_MONOTONIC;
        else if (strcmp(argv[i], "--clock") == 0 && strcmp(argv[i + 1], "cpu") == 0)
            bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (strcmp(argv[i], "--clock") == 0 && strcmp(argv[i + 1], "thread") == 0)
            bench_clock = CLOCK_THREAD_CPUTIME_ID;
        else {
            fprintf(stderr, "usage: bench_optim [--batch B] [--repeats N] [--root-method eigh|newton] "
                            "[--threads N] [--end-to-end STEPS] [--clock wall|cpu|thread]\n");
            return 2;
        }
    }
    if (batch < 1 || repeats < 1 || repeats > 64 || threads < 1 || threads > 256 || end_to_end_steps < 0 ||
        end_to_end_steps % 10 != 0) {
        fprintf(stderr, "bench_optim: invalid --batch %d, --repeats %d (1..64), --threads %d (1..256) or "
                        "--end-to-end %d (a multiple of 10)\n", batch, repeats, threads, end_to_end_steps);
        return 2;
    }
    trainer_thread_setup(threads);

    char err[256];
    gpt_model m;
    if (model_create(&m, M_LAYERS, M_D_MODEL, M_HEADS, M_SEQ_LEN, batch, err, sizeof err) < 0) {
        fprintf(stderr, "bench_optim: %s\n", err);
        return 1;
    }
    model_init(&m, 1);
    unsigned state = 7;
    for (size_t i = 0; i < (size_t)batch * M_SEQ_LEN; i++) {
        state = state * 1103515245u + 12345u;
        m.inputs[i] = (uint8_t)(32 + (state >> 16) % 95);
        m.targets[i] = (uint8_t)(32 + (state >> 8) % 95);
    }

    if (end_to_end_steps > 0) {
        int rc = run_end_to_end(&m, batch, end_to_end_steps, repeats, threads, root_method);
        model_free(&m);
        return rc < 0 ? 1 : 0;
    }

    /* One warm-up pass, then the timed ones. */
    time_forward_backward(&m, 1);
    double t_fb = time_forward_backward(&m, repeats);

    train_config cfg;
    double t_adam = 0, t_sm3 = 0, t_plain = 0, t_refresh = 0;
    int rc = 0;
    rc |= make_config(&cfg, "adam", 10, root_method, 0) || time_optimizer(&m, &cfg, repeats, NULL, &t_adam);
    rc |= make_config(&cfg, "sm3", 10, root_method, 0) || time_optimizer(&m, &cfg, repeats, NULL, &t_sm3);
    rc |= make_config(&cfg, "shampoo", 1, root_method, 0) ||
          time_optimizer(&m, &cfg, repeats, NULL, &t_refresh);
    rc |= make_config(&cfg, "shampoo", 1000, root_method, 0) ||
          time_optimizer(&m, &cfg, repeats, &t_plain, NULL);
    if (rc) {
        model_free(&m);
        return 1;
    }

    double base = t_fb + t_adam;
    printf("config M, batch %d, %zu parameters, root_method %s, threads %d, %s time, medians of %d\n", batch,
           m.num_params, root_method, threads, clock_name(), repeats);
    printf("  forward+backward %.1f ms, adam step %.2f ms, sm3 step %.2f ms\n", 1e3 * t_fb, 1e3 * t_adam,
           1e3 * t_sm3);
    printf("  shampoo step %.2f ms without root refresh, %.2f ms with one\n", 1e3 * t_plain, 1e3 * t_refresh);
    printf("  %-8s %-20s %10s %10s\n", "batch", "optimizer", "step ms", "overhead");
    printf("  %-8d %-20s %10.1f %9.1f%%\n", batch, "adam", 1e3 * base, 0.0);
    printf("  %-8d %-20s %10.1f %9.1f%%\n", batch, "sm3", 1e3 * (t_fb + t_sm3), 100.0 * (t_sm3 - t_adam) / base);
    static const int everies[] = {1, 10, 100};
    for (int i = 0; i < 3; i++) {
        double t_opt = t_plain + (t_refresh - t_plain) / everies[i];
        char label[32];
        snprintf(label, sizeof label, "shampoo every %d", everies[i]);
        printf("  %-8d %-20s %10.1f %9.1f%%\n", batch, label, 1e3 * (t_fb + t_opt),
               100.0 * (t_opt - t_adam) / base);
    }
    model_free(&m);
    return 0;
}
