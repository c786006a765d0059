/* Unit tests for the hyperparameter table (trainer/hparams.c): per-optimizer
 * defaults, explicit values kept over defaults, range and choice errors that
 * name the value, nested JSON, and the JSON round trip used by checkpoints. */
#include "check.h"
#include "hparams.h"

#include <cJSON.h>
#include <string.h>

static void finalize_for(train_config *cfg, const char *optimizer)
{
    char err[512];
    train_config_defaults(cfg);
    CHECK(train_config_set(cfg, "optimizer", optimizer, err, sizeof(err)) == 0);
    CHECK(train_config_finalize(cfg, err, sizeof(err)) == 0);
}

static void test_optimizer_defaults(void)
{
    train_config cfg;

    finalize_for(&cfg, "adam");
    CHECK(cfg.lr == 1e-3 && cfg.b1 == 0.9 && cfg.b2 == 0.999 && cfg.eps == 1e-8 && cfg.weight_decay == 0.0);
    finalize_for(&cfg, "adamw");
    CHECK(cfg.lr == 1e-3 && cfg.weight_decay == 0.01);
    finalize_for(&cfg, "sm3");
    CHECK(cfg.lr == 0.1 && cfg.b1 == 0.9 && cfg.b2 == 1.0 && cfg.eps == 1e-8 && cfg.weight_decay == 0.0);
    finalize_for(&cfg, "shampoo");
    CHECK(cfg.lr == 1e-3 && cfg.b2 == 0.999 && cfg.matrix_eps == 1e-6 && cfg.block_size == 128);
    CHECK(cfg.precondition_every == 10 && cfg.start_preconditioning_step == 1 && cfg.graft == GRAFT_ADAM);
    CHECK(cfg.nesterov == 1 && cfg.root_method == ROOT_EIGH && cfg.max_precond_dim == 4096);
    CHECK(cfg.graft_beta2 == 0.999 && cfg.graft_eps == 1e-10);
}

static void test_explicit_values_win(void)
{
    train_config cfg;
    char err[512];

    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "lr", "0.5", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "b2", "0.99", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "optimizer", "sm3", err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.lr == 0.5 && cfg.b2 == 0.99);

    /* graft_beta2 follows b2 unless set. */
    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "optimizer", "shampoo", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "b2", "0.99", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "graft", "sm3", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "nesterov", "false", err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.graft_beta2 == 0.99 && cfg.graft == GRAFT_SM3 && cfg.nesterov == 0);
}

static void test_errors_name_value(void)
{
    train_config cfg;
    char err[512];

    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "seq_len", "1", err, sizeof(err)) == -1);
    CHECK(strstr(err, "seq_len=1") && strstr(err, "[2, 8192]"));
    CHECK(train_config_set(&cfg, "n_head", "2.5", err, sizeof(err)) == -1);
    CHECK(strstr(err, "n_head=2.5") && strstr(err, "integer"));
    CHECK(train_config_set(&cfg, "lr", "abc", err, sizeof(err)) == -1);
    CHECK(strstr(err, "lr=abc"));
    CHECK(train_config_set(&cfg, "root_method", "svd", err, sizeof(err)) == -1);
    CHECK(strstr(err, "eigh|newton"));
    CHECK(train_config_set(&cfg, "dataset_sha256", "ABC", err, sizeof(err)) == -1);
    CHECK(strstr(err, "64 lowercase hex"));
    CHECK(train_config_set(&cfg, "nesterov", "maybe", err, sizeof(err)) == -1);
    CHECK(train_config_set(&cfg, "block_sise", "4", err, sizeof(err)) == -1);
    CHECK(strstr(err, "did you mean 'block_size'"));

    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "steps", "10", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "warmup_steps", "20", err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "warmup_steps=20") && strstr(err, "steps=10"));

    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "b2", "1", err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "b2=1"));
}

static void test_json(void)
{
    train_config cfg, back;
    char err[512];
    cJSON *in = cJSON_Parse("{\"optimizer\": \"shampoo\", \"shampoo\": {\"block_size\": 64, \"nesterov\": false},"
                            " \"steps\": 500, \"seed\": 12345678901}");

    CHECK(in != NULL);
    train_config_defaults(&cfg);
    CHECK(train_config_set_json(&cfg, in, err, sizeof(err)) == 0);
    cJSON_Delete(in);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.optimizer == OPT_SHAMPOO && cfg.block_size == 64 && cfg.nesterov == 0 && cfg.steps == 500);
    CHECK(cfg.seed == 12345678901ULL);

    cJSON *out = train_config_to_json(&cfg);
    CHECK(out != NULL);
    size_t n;
    hparam_table(&n);
    CHECK((size_t)cJSON_GetArraySize(out) == n);
    train_config_defaults(&back);
    CHECK(train_config_set_json(&back, out, err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&back, err, sizeof(err)) == 0);
    back.set_mask = cfg.set_mask;
    CHECK(memcmp(&back, &cfg, sizeof(cfg)) == 0);
    cJSON_Delete(out);

    in = cJSON_Parse("{\"n_layer\": \"two\"}");
    train_config_defaults(&cfg);
    CHECK(train_config_set_json(&cfg, in, err, sizeof(err)) == -1);
    CHECK(strstr(err, "n_layer=two"));
    cJSON_Delete(in);
    in = cJSON_Parse("{\"optimizer\": 3}");
    CHECK(train_config_set_json(&cfg, in, err, sizeof(err)) == -1);
    CHECK(strstr(err, "optimizer") && strstr(err, "string"));
    cJSON_Delete(in);
}

static void test_table(void)
{
    size_t n;
    const hparam_info *t = hparam_table(&n);
    CHECK(n == 30);
    for (size_t i = 0; i < n; i++) {
        CHECK(t[i].description && t[i].description[0]);
        CHECK(hparam_find(t[i].name) == &t[i]);
    }
    CHECK(hparam_find("nope") == NULL);
    CHECK(hparam_suggest("zzzzzzzzzz") == NULL);
}

int main(void)
{
    test_optimizer_defaults();
    test_explicit_values_win();
    test_errors_name_value();
    test_json();
    test_table();
    return check_report("hparams");
}
