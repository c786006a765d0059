/* The trainer library as the worker drives it: trainer_run with hooks, a
 * stop request answered by a checkpoint at a step boundary, an in-process
 * resume that ends bit for bit where an uninterrupted run ends, a NaN that
 * ends the run as diverged, and a resume against another config rejected. */
#include "check.h"
#include "trainer_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct counts {
    int steps, evals, checkpoints;
    long checkpoint_step;
    long stop_at;
    atomic_int stop;
} counts;

static void on_step(void *ctx, const train_progress *p)
{
    counts *c = ctx;
    c->steps++;
    if (c->stop_at > 0 && p->step >= c->stop_at)
        atomic_store(&c->stop, 1);
}

static void on_eval(void *ctx, long step, double train_loss, double val_loss)
{
    counts *c = ctx;
    (void)step;
    (void)train_loss;
    (void)val_loss;
    c->evals++;
}

static int on_checkpoint(void *ctx, trainer *t, long step)
{
    counts *c = ctx;
    (void)t;
    c->checkpoints++;
    c->checkpoint_step = step;
    return 0;
}

static train_hooks hooks_for(counts *c)
{
    memset(c, 0, sizeof(*c));
    atomic_init(&c->stop, 0);
    train_hooks h = {.ctx = c, .on_step = on_step, .on_eval = on_eval, .on_checkpoint = on_checkpoint,
                     .checkpoint_every = 0, .stop = &c->stop};
    return h;
}

static void tiny_config(train_config *cfg, const char *data)
{
    const char *sets[][2] = {{"n_layer", "1"},   {"d_model", "16"},     {"n_head", "2"},     {"seq_len", "8"},
                             {"batch_size", "4"}, {"steps", "6"},        {"eval_every", "2"}, {"eval_batches", "2"},
                             {"lr", "0.01"},      {"warmup_steps", "2"}, {"dataset", data}};
    char err[512];

    train_config_defaults(cfg);
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        CHECK(train_config_set(cfg, sets[i][0], sets[i][1], err, sizeof(err)) == 0);
    CHECK(train_config_finalize(cfg, err, sizeof(err)) == 0);
}

int main(void)
{
    char dir[] = "/tmp/test_trainer_run.XXXXXX";
    char data[256], ckpt[256], err[1024];
    train_config cfg;
    train_result full, part, rest;
    counts c;
    trainer *t;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data, sizeof(data), "%s/text.txt", dir);
    snprintf(ckpt, sizeof(ckpt), "%s/run.ckpt", dir);
    FILE *f = fopen(data, "w");
    if (f == NULL) {
        perror("fopen");
        return 1;
    }
    for (int i = 0; i < 200; i++)
        fprintf(f, "line %d of a small text for the trainer test.\n", i);
    fclose(f);
    trainer_thread_setup(1);
    tiny_config(&cfg, data);

    /* An uninterrupted run: hooks fire once per step and per evaluation. */
    train_hooks hooks = hooks_for(&c);
    CHECK(trainer_create(&t, &cfg, NULL, err, sizeof(err)) == 0);
    CHECK(trainer_bytes_allocated(t) > 0);
    CHECK(trainer_run(t, &hooks, &full, err, sizeof(err)) == TRAIN_DONE);
    CHECK(c.steps == 6);
    CHECK(c.evals == 3);
    CHECK(c.checkpoints == 0);
    CHECK(full.steps == 6);
    CHECK(isfinite(full.final_loss));
    CHECK(full.best_loss <= full.final_loss);
    CHECK(full.diverged_step == -1);
    printf("uninterrupted: final loss %.17g\n", full.final_loss);
    trainer_free(t);

    /* A stop request after step 3: checkpoint at the boundary, then TRAIN_STOPPED. */
    hooks = hooks_for(&c);
    c.stop_at = 3;
    CHECK(trainer_create(&t, &cfg, NULL, err, sizeof(err)) == 0);
    CHECK(trainer_run(t, &hooks, &part, err, sizeof(err)) == TRAIN_STOPPED);
    CHECK(part.status == TRAIN_STOPPED);
    CHECK(part.steps == 3);
    CHECK(c.checkpoints == 1);
    CHECK(c.checkpoint_step == 3);
    CHECK(trainer_save(t, ckpt, err, sizeof(err)) == 0);
    trainer_free(t);

    /* Resume in the same process and finish: the same final loss, bit for bit. */
    hooks = hooks_for(&c);
    CHECK(trainer_resume(&t, ckpt, &cfg, NULL, err, sizeof(err)) == 0);
    CHECK(trainer_step_count(t) == 3);
    CHECK(trainer_run(t, &hooks, &rest, err, sizeof(err)) == TRAIN_DONE);
    CHECK(c.steps == 3);
    CHECK(rest.steps == 6);
    CHECK(rest.final_loss == full.final_loss);
    CHECK(rest.best_loss == full.best_loss);
    printf("resumed: final loss %.17g\n", rest.final_loss);
    trainer_free(t);

    /* Another config is rejected, naming the field. */
    train_config other = cfg;
    other.seq_len = 16;
    CHECK(trainer_resume(&t, ckpt, &other, NULL, err, sizeof(err)) == -1);
    CHECK(strstr(err, "seq_len") != NULL);
    printf("mismatch: %s\n", err);

    /* A NaN weight makes the first loss NaN: diverged at step 1, no crash. */
    hooks = hooks_for(&c);
    CHECK(trainer_create(&t, &cfg, NULL, err, sizeof(err)) == 0);
    t->model.params[t->model.tensors[t->model.n_tensors - 2].offset] = NAN; /* lnf.g[0] */
    CHECK(trainer_run(t, &hooks, &part, err, sizeof(err)) == TRAIN_DIVERGED);
    CHECK(part.status == TRAIN_DIVERGED);
    CHECK(part.diverged_step == 1);
    CHECK(part.steps == 0);
    trainer_free(t);

    unlink(ckpt);
    unlink(data);
    rmdir(dir);
    return check_report("trainer_run");
}
