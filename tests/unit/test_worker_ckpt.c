/* The worker's directory checkpoint store: which files a save deletes. It
 * keeps the newest two and every pinned step, and removes the rest,
 * including files an earlier attempt left. A trim drops the pins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ckpt.h"
#include "trainer.h"

static char root[] = "/tmp/test_worker_ckpt_XXXXXX";

static int exists(long step)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/ck/1/7/step-%ld.ckpt", root, step);
    return access(path, F_OK) == 0;
}

/* Saves t as step under the given pins (-1 for none). */
static void save(const ckpt_store *store, const trainer *t, ckpt_history *history, long step,
                 long held, long sent, long chosen)
{
    ckpt_pins pins = {.steps = {held, sent, chosen, -1, -1}};
    char location[CKPT_LOCATION_MAX], err[512];

    CHECK(ckpt_store_save(store, t, 1, 7, step, location, err, sizeof(err)) == 0);
    char want[256];
    snprintf(want, sizeof(want), "%s/ck/1/7/step-%ld.ckpt", root, step);
    CHECK_STR(location, want);
    ckpt_store_keep(store, history, &pins, location, step);
}

int main(void)
{
    char data[256], dir[256], staging[256], err[512];
    CHECK(mkdtemp(root) != NULL);
    snprintf(data, sizeof(data), "%s/text.txt", root);
    snprintf(dir, sizeof(dir), "%s/ck", root);
    snprintf(staging, sizeof(staging), "%s/staging", root);
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    for (int i = 0; f != NULL && i < 100; i++)
        fprintf(f, "line %d of a small text for the checkpoint test.\n", i);
    if (f != NULL)
        fclose(f);

    const char *sets[][2] = {{"n_layer", "1"},    {"d_model", "16"}, {"n_head", "2"},
                             {"seq_len", "8"},    {"batch_size", "2"}, {"steps", "10"},
                             {"eval_every", "5"}, {"dataset", data}};
    train_config cfg;
    train_config_defaults(&cfg);
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        CHECK(train_config_set(&cfg, sets[i][0], sets[i][1], err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    trainer *t = NULL;
    CHECK(trainer_create(&t, &cfg, NULL, err, sizeof(err)) == 0);
    if (t == NULL)
        return check_report("test_worker_ckpt");

    ckpt_store store;
    CHECK(ckpt_store_init(&store, dir, NULL, staging, err, sizeof(err)) == 0);
    ckpt_history history = {.count = 0};

    /* Unpinned: only the newest two survive. */
    save(&store, t, &history, 100, -1, -1, -1);
    save(&store, t, &history, 200, -1, -1, -1);
    save(&store, t, &history, 300, -1, -1, -1);
    CHECK(!exists(100));
    CHECK(exists(200));
    CHECK(exists(300));

    /* 200 is held by the daemon, 300 is in flight: both outlive the window. */
    save(&store, t, &history, 400, 200, 300, -1);
    save(&store, t, &history, 500, 200, 300, 400);
    save(&store, t, &history, 600, 200, 300, 400);
    CHECK(exists(200));
    CHECK(exists(300));
    CHECK(exists(400));
    CHECK(exists(500));
    CHECK(exists(600));
    CHECK(history.count == 5);

    /* Once 400 is held, 200 and 300 go, from history and from disk. */
    save(&store, t, &history, 700, 400, -1, -1);
    CHECK(!exists(200));
    CHECK(!exists(300));
    CHECK(exists(400));
    CHECK(!exists(500));
    CHECK(exists(600));
    CHECK(exists(700));
    CHECK(history.count == 3);

    /* A file an earlier attempt left below the window goes too, unless pinned. */
    char path[256];
    snprintf(path, sizeof(path), "%s/ck/1/7/step-50.ckpt", root);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL)
        fclose(f);
    save(&store, t, &history, 800, 50, -1, -1);
    CHECK(exists(50));
    CHECK(!exists(400));
    save(&store, t, &history, 900, -1, -1, -1);
    CHECK(!exists(50));
    CHECK(!exists(700));
    CHECK(exists(800));
    CHECK(exists(900));

    /* Trimming after the final report drops the pins: the newest two stay. */
    save(&store, t, &history, 1000, 800, -1, -1);
    CHECK(exists(800));
    CHECK(history.count == 3);
    ckpt_store_trim(&store, &history);
    CHECK(!exists(800));
    CHECK(exists(900));
    CHECK(exists(1000));
    CHECK(history.count == 2);

    /* A resumed checkpoint starts the history with its step. */
    ckpt_history resumed;
    snprintf(path, sizeof(path), "%s/ck/1/7/step-900.ckpt", root);
    ckpt_history_start(&resumed, path);
    CHECK(resumed.count == 1);
    CHECK(resumed.steps[0] == 900);

    trainer_free(t);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    return check_report("test_worker_ckpt");
}
