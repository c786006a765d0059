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
    CHECK(cfg.lr == 1e-3);
    CHECK(cfg.b1 == 0.9);
    CHECK(cfg.b2 == 0.999);
    CHECK(cfg.eps == 1e-8);
    CHECK(cfg.weight_decay == 0.0);
    finalize_for(&cfg, "adamw");
    CHECK(cfg.lr == 1e-3);
    CHECK(cfg.weight_decay == 0.01);
    finalize_for(&cfg, "sm3");
    CHECK(cfg.lr == 0.1);
    CHECK(cfg.b1 == 0.9);
    CHECK(cfg.b2 == 1.0);
    CHECK(cfg.eps == 1e-8);
    CHECK(cfg.weight_decay == 0.0);
    finalize_for(&cfg, "shampoo");
    CHECK(cfg.lr == 1e-3);
    CHECK(cfg.b2 == 0.999);
    CHECK(cfg.matrix_eps == 1e-6);
    CHECK(cfg.block_size == 128);
    CHECK(cfg.precondition_every == 10);
    CHECK(cfg.start_preconditioning_step == 1);
    CHECK(cfg.graft == GRAFT_ADAM);
    CHECK(cfg.nesterov == 1);
    CHECK(cfg.root_method == ROOT_EIGH);
    CHECK(cfg.max_precond_dim == 4096);
    CHECK(cfg.graft_beta2 == 0.999);
    CHECK(cfg.graft_eps == 1e-10);
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
    CHECK(cfg.lr == 0.5);
    CHECK(cfg.b2 == 0.99);

    /* graft_beta2 follows b2 unless set. */
    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "optimizer", "shampoo", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "b2", "0.99", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "graft", "sm3", err, sizeof(err)) == 0);
    CHECK(train_config_set(&cfg, "nesterov", "false", err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.graft_beta2 == 0.99);
    CHECK(cfg.graft == GRAFT_SM3);
    CHECK(cfg.nesterov == 0);
}

static void test_errors_name_value(void)
{
    train_config cfg;
    char err[512];

    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "seq_len", "1", err, sizeof(err)) == -1);
    CHECK(strstr(err, "seq_len=1"));
    CHECK(strstr(err, "[2, 8192]"));
    CHECK(train_config_set(&cfg, "n_head", "2.5", err, sizeof(err)) == -1);
    CHECK(strstr(err, "n_head=2.5"));
    CHECK(strstr(err, "integer"));
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
    CHECK(strstr(err, "warmup_steps=20"));
    CHECK(strstr(err, "steps=10"));

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
    CHECK(cfg.optimizer == OPT_SHAMPOO);
    CHECK(cfg.block_size == 64);
    CHECK(cfg.nesterov == 0);
    CHECK(cfg.steps == 500);
    CHECK(cfg.seed == 12345678901ULL);

    cJSON *out = train_config_to_json(&cfg);
    CHECK(out != NULL);
    size_t n;
    hparam_table(&n);
    /* Every entry but one_minus_b1 and one_minus_b2, which b1 and b2 carry. */
    CHECK((size_t)cJSON_GetArraySize(out) == n - 2);
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
    CHECK(strstr(err, "optimizer"));
    CHECK(strstr(err, "string"));
    cJSON_Delete(in);
}

static void test_table(void)
{
    size_t n;
    const hparam_info *t = hparam_table(&n);
    CHECK(n == 33);
    for (size_t i = 0; i < n; i++) {
        CHECK(t[i].description);
        CHECK(t[i].description[0]);
        CHECK(hparam_find(t[i].name) == &t[i]);
    }
    CHECK(hparam_find("nope") == NULL);
    CHECK(hparam_suggest("zzzzzzzzzz") == NULL);
}

/* Sets name=value on cfg (already holding defaults) and checks it worked. */
static void set_ok(train_config *cfg, const char *name, const char *value)
{
    char err[512];
    int rc = train_config_set(cfg, name, value, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "set %s=%s: %s\n", name, value, err);
    CHECK(rc == 0);
}

static int set_json_text(train_config *cfg, const char *text, char *err, size_t err_size)
{
    cJSON *in = cJSON_Parse(text);
    CHECK(in != NULL);
    train_config_defaults(cfg);
    int rc = train_config_set_json(cfg, in, err, err_size);
    cJSON_Delete(in);
    return rc;
}

static void test_one_minus_betas(void)
{
    train_config cfg;
    char err[512];

    train_config_defaults(&cfg);
    set_ok(&cfg, "optimizer", "adam");
    set_ok(&cfg, "one_minus_b1", "0.25");
    set_ok(&cfg, "one_minus_b2", "0.001");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b1 == 1.0 - 0.25);
    CHECK(cfg.b2 == 1.0 - 0.001);
    /* Finalizing again (trainer_create does) gives the same values. */
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b1 == 0.75);

    /* graft_beta2 defaults to the derived b2. */
    train_config_defaults(&cfg);
    set_ok(&cfg, "optimizer", "shampoo");
    set_ok(&cfg, "one_minus_b2", "0.01");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b2 == 1.0 - 0.01);
    CHECK(cfg.graft_beta2 == cfg.b2);

    /* Both forms of one beta: an error that names both. */
    train_config_defaults(&cfg);
    set_ok(&cfg, "b1", "0.5");
    set_ok(&cfg, "one_minus_b1", "0.1");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "b1") != NULL);
    CHECK(strstr(err, "one_minus_b1") != NULL);

    /* The range is (0, 1]: 0 and above 1 are invalid. */
    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "one_minus_b2", "0", err, sizeof(err)) == -1);
    CHECK(strstr(err, "one_minus_b2=0") != NULL);
    CHECK(train_config_set(&cfg, "one_minus_b2", "1.5", err, sizeof(err)) == -1);
    CHECK(strstr(err, "one_minus_b2=1.5") != NULL);
    set_ok(&cfg, "one_minus_b1", "1");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b1 == 0.0);

    /* A derived b1 beyond b1's own maximum names the input. */
    train_config_defaults(&cfg);
    set_ok(&cfg, "one_minus_b1", "1e-9");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "one_minus_b1") != NULL);

    /* The JSON round trip keeps the derived value and does not conflict. */
    train_config_defaults(&cfg);
    set_ok(&cfg, "one_minus_b2", "0.02");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    cJSON *out = train_config_to_json(&cfg);
    train_config back;
    train_config_defaults(&back);
    CHECK(out != NULL);
    CHECK(train_config_set_json(&back, out, err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&back, err, sizeof(err)) == 0);
    CHECK(back.b2 == cfg.b2);
    cJSON_Delete(out);
}

static void test_scoped_names(void)
{
    train_config cfg;
    char err[512];

    /* hparam_find returns the unscoped entry for a valid optimizer. */
    CHECK(hparam_find("shampoo.b2") == hparam_find("b2"));
    CHECK(hparam_find("sm3.lr") == hparam_find("lr"));
    CHECK(hparam_find("shampoo.graft") == hparam_find("graft"));
    CHECK(hparam_find("lion.lr") == NULL);
    CHECK(hparam_find("shampoo.nope") == NULL);
    CHECK(hparam_find("shampoo.optimizer") == NULL);
    CHECK(hparam_find("shampoo.sm3.lr") == NULL);
    CHECK_STR(hparam_suggest("shampo.b2"), "shampoo.b2");
    CHECK_STR(hparam_suggest("shampoo.graf"), "shampoo.graft");

    /* JSON: the scoped value wins whatever the key order, and only for its
     * optimizer. */
    CHECK(set_json_text(&cfg, "{\"shampoo.b2\": 0.99, \"b2\": 0.9, \"optimizer\": \"shampoo\"}", err,
                        sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b2 == 0.99);
    CHECK(set_json_text(&cfg, "{\"optimizer\": \"shampoo\", \"b2\": 0.9, \"shampoo.b2\": 0.99}", err,
                        sizeof(err)) == 0);
    CHECK(cfg.b2 == 0.99);
    CHECK(set_json_text(&cfg, "{\"shampoo.b2\": 0.99, \"b2\": 0.9, \"optimizer\": \"adam\"}", err,
                        sizeof(err)) == 0);
    CHECK(cfg.b2 == 0.9);

    /* A scoped value is checked even when it does not apply. */
    CHECK(set_json_text(&cfg, "{\"optimizer\": \"adam\", \"shampoo.b2\": 2}", err, sizeof(err)) == -1);
    CHECK(strstr(err, "shampoo.b2") != NULL);
    CHECK(set_json_text(&cfg, "{\"shampoo.graft\": \"lion\"}", err, sizeof(err)) == -1);
    CHECK(strstr(err, "lion") != NULL);

    /* The published combination: sampled one_minus_b2 for everyone, but
     * shampoo trials keep b2 0.99 and graft onto sm3 without Nesterov. */
    const char *spec = "{\"optimizer\": \"shampoo\", \"one_minus_b2\": 0.05, \"shampoo.b2\": 0.99,"
                       " \"shampoo.graft\": \"sm3\", \"shampoo.nesterov\": false, \"sm3.lr\": 0.5}";
    CHECK(set_json_text(&cfg, spec, err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b2 == 0.99);
    CHECK(cfg.graft == GRAFT_SM3);
    CHECK(cfg.nesterov == 0);
    CHECK(cfg.lr == 1e-3);
    const char *sm3 = "{\"optimizer\": \"sm3\", \"one_minus_b2\": 0.05, \"shampoo.b2\": 0.99, \"sm3.lr\": 0.5}";
    CHECK(set_json_text(&cfg, sm3, err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.b2 == 1.0 - 0.05);
    CHECK(cfg.lr == 0.5);

    /* Both scoped forms of one beta conflict. */
    CHECK(set_json_text(&cfg, "{\"optimizer\": \"shampoo\", \"shampoo.b2\": 0.9, \"shampoo.one_minus_b2\": 0.1}",
                        err, sizeof(err)) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "shampoo.b2") != NULL);
    CHECK(strstr(err, "shampoo.one_minus_b2") != NULL);

    /* One at a time: the optimizer must come first, a later unscoped value
     * does not replace the scoped one, and the optimizer cannot change
     * after scoped values were applied. */
    train_config_defaults(&cfg);
    CHECK(train_config_set(&cfg, "shampoo.b2", "0.99", err, sizeof(err)) == -1);
    CHECK(strstr(err, "optimizer") != NULL);
    set_ok(&cfg, "optimizer", "shampoo");
    set_ok(&cfg, "shampoo.b2", "0.99");
    set_ok(&cfg, "b2", "0.5");
    CHECK(cfg.b2 == 0.99);
    CHECK(train_config_set(&cfg, "optimizer", "adam", err, sizeof(err)) == -1);
    CHECK(strstr(err, "optimizer") != NULL);
    set_ok(&cfg, "adam.lr", "0.5");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.lr == 1e-3);
}

static void test_precondition_async_entry(void)
{
    train_config cfg;
    char err[512];

    finalize_for(&cfg, "shampoo");
    CHECK(cfg.precondition_async == 0);
    train_config_defaults(&cfg);
    set_ok(&cfg, "optimizer", "shampoo");
    set_ok(&cfg, "precondition_async", "true");
    CHECK(train_config_finalize(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.precondition_async == 1);
    CHECK(train_config_set(&cfg, "precondition_async", "maybe", err, sizeof(err)) == -1);
    CHECK(strstr(err, "precondition_async=maybe") != NULL);
}

int main(void)
{
    test_optimizer_defaults();
    test_explicit_values_win();
    test_errors_name_value();
    test_json();
    test_table();
    test_one_minus_betas();
    test_scoped_names();
    test_precondition_async_entry();
    return check_report("hparams");
}
