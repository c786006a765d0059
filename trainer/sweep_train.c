/* sweep-train: runs one training job without the daemon, for users,
 * benchmarks and debugging. Progress lines go to stderr, one JSON summary to
 * stdout. `sweep-train optim-trace ...` runs the optimizer trace command
 * (trainer/optim_trace.c) instead. Usage: sweep-train --help.
 */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "hparams.h"
#include "log.h"
#include "optim_trace.h"
#include "trainer.h"

#define EXIT_DONE 0
#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_DIVERGED 3
#define EXIT_STOPPED 4

#define MAX_SETS 256
#define MAX_CONFIG_FILE_BYTES (1 << 20)

typedef struct options {
    const char *data, *config_file, *checkpoint, *resume, *loss_log;
    const char *sets[MAX_SETS];
    int n_sets;
    int threads;
    size_t max_memory_bytes;    /* 0 = trainer_memory_limit()'s default */
    long checkpoint_every, stop_at, log_every;
} options;

/* State shared with the training hooks. */
typedef struct run_ctx {
    const options *opt;
    atomic_int stop;
    FILE *loss_log;
} run_ctx;

static atomic_int *signal_stop;

static void on_signal(int sig)
{
    (void)sig;
    if (signal_stop)
        atomic_store(signal_stop, 1);
}

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: sweep-train --data FILE [--set name=value ...] [--config FILE.json] [--threads N]\n"
            "                   [--checkpoint FILE] [--checkpoint-every N] [--resume FILE]\n"
            "                   [--stop-at STEP] [--log-every N] [--loss-log FILE] [--max-memory BYTES]\n"
            "       sweep-train optim-trace --optimizer NAME [--set name=value ...] < input.json\n"
            "\n"
            "Trains the byte-level GPT on FILE (raw bytes; the last 10%% is the validation split).\n"
            "Progress lines go to stderr; one JSON summary goes to stdout.\n"
            "\n"
            "options:\n"
            "  --data FILE            training text (overrides the dataset hyperparameter)\n"
            "  --set name=value       set one hyperparameter (repeatable; applied after --config)\n"
            "  --config FILE.json     JSON object of hyperparameters\n"
            "  --threads N            OpenBLAS threads (default 1)\n"
            "  --checkpoint FILE      write a checkpoint here at the end, on stop and every N steps\n"
            "  --checkpoint-every N   steps between checkpoints (default 0: only at the end and on stop)\n"
            "  --resume FILE          continue the run stored in this checkpoint; --set values must\n"
            "                         match the checkpoint's\n"
            "  --stop-at STEP         stop after STEP steps as if preempted (checkpoint, exit 4)\n"
            "  --log-every N          progress line every N steps (default 10)\n"
            "  --loss-log FILE        append \"step train_loss\" per step, losses as exact hex floats\n"
            "  --max-memory BYTES     reject a run that needs more memory (suffix K, M, G or T; default:\n"
            "                         physical memory, or RLIMIT_AS / RLIMIT_DATA when lower)\n"
            "  SIGINT / SIGTERM       stop at the next step boundary after a checkpoint (exit 4)\n"
            "\n"
            "exit status: 0 done, 1 error, 2 usage error, 3 diverged, 4 stopped\n"
            "\n"
            "subcommands:\n" OPTIM_TRACE_SUMMARY "\n"
            "hyperparameters (name type default range: meaning):\n");

    size_t n;
    const hparam_info *table = hparam_table(&n);
    static const char *const type_names[] = {"int", "float", "string", "enum", "bool"};
    for (size_t i = 0; i < n; i++) {
        const hparam_info *h = &table[i];
        char range[96];
        if (h->type == HP_INT || h->type == HP_FLOAT)
            snprintf(range, sizeof(range), "[%g, %g]", h->min, h->max);
        else if (h->type == HP_ENUM)
            snprintf(range, sizeof(range), "%s", h->choices);
        else if (h->type == HP_BOOL)
            snprintf(range, sizeof(range), "true|false");
        else
            snprintf(range, sizeof(range), "text");
        fprintf(out, "  %-27s %-6s %-16s %s\n      %s%s%s%s\n", h->name, type_names[h->type], h->default_text, range,
                h->description, h->applies_to ? " (" : "", h->applies_to ? h->applies_to : "",
                h->applies_to ? " only)" : "");
    }
    fprintf(out,
            "\n"
            "optimizer defaults: adam lr 1e-3 b1 .9 b2 .999 eps 1e-8 weight_decay 0; adamw the same with\n"
            "weight_decay 0.01; sm3 lr 0.1 b1 .9 b2 1.0 eps 1e-8; shampoo lr 1e-3 b1 .9 b2 .999.\n");
}

/* Parses a non-negative integer option value. */
static int parse_count(const char *flag, const char *text, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno || v < min) {
        fprintf(stderr, "sweep-train: invalid %s %s: expected an integer >= %ld\n", flag, text, min);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0, or EXIT_USAGE after printing the problem. */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof(*o));
    o->threads = 1;
    o->log_every = 10;
    o->stop_at = -1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout);
            exit(EXIT_DONE);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sweep-train: unknown option or missing value: %s (see --help)\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        long n;
        if (strcmp(a, "--data") == 0) {
            o->data = v;
        } else if (strcmp(a, "--config") == 0) {
            o->config_file = v;
        } else if (strcmp(a, "--checkpoint") == 0) {
            o->checkpoint = v;
        } else if (strcmp(a, "--resume") == 0) {
            o->resume = v;
        } else if (strcmp(a, "--loss-log") == 0) {
            o->loss_log = v;
        } else if (strcmp(a, "--set") == 0) {
            if (o->n_sets == MAX_SETS || strchr(v, '=') == NULL) {
                fprintf(stderr, "sweep-train: invalid --set %s: expected name=value (at most %d)\n", v, MAX_SETS);
                return EXIT_USAGE;
            }
            o->sets[o->n_sets++] = v;
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_count(a, v, 1, &n) != 0 || n > 256)
                return EXIT_USAGE;
            o->threads = (int)n;
        } else if (strcmp(a, "--checkpoint-every") == 0) {
            if (parse_count(a, v, 0, &o->checkpoint_every) != 0)
                return EXIT_USAGE;
        } else if (strcmp(a, "--stop-at") == 0) {
            if (parse_count(a, v, 0, &o->stop_at) != 0)
                return EXIT_USAGE;
        } else if (strcmp(a, "--max-memory") == 0) {
            if (trainer_parse_bytes(v, &o->max_memory_bytes) != 0) {
                fprintf(stderr, "sweep-train: invalid --max-memory %s: expected bytes > 0, e.g. 2G or 512M\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--log-every") == 0) {
            if (parse_count(a, v, 1, &o->log_every) != 0)
                return EXIT_USAGE;
        } else {
            fprintf(stderr, "sweep-train: unknown option %s (see --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (o->data == NULL && o->resume == NULL && o->config_file == NULL && o->n_sets == 0) {
        fprintf(stderr, "sweep-train: missing --data FILE (see --help)\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* Applies --config then every --set to cfg. Returns 0 or -1 after printing. */
static int apply_settings(const options *o, train_config *cfg)
{
    char err[1024];

    if (o->config_file) {
        FILE *f = fopen(o->config_file, "rb");
        if (f == NULL) {
            fprintf(stderr, "sweep-train: cannot open --config %s: %s\n", o->config_file, strerror(errno));
            return -1;
        }
        char *text = malloc(MAX_CONFIG_FILE_BYTES + 1);
        size_t len = text ? fread(text, 1, MAX_CONFIG_FILE_BYTES + 1, f) : 0;
        fclose(f);
        if (text == NULL || len > MAX_CONFIG_FILE_BYTES) {
            fprintf(stderr, "sweep-train: --config %s: %s\n", o->config_file,
                    text ? "larger than 1 MiB" : "out of memory");
            free(text);
            return -1;
        }
        cJSON *json = cJSON_ParseWithLength(text, len);
        free(text);
        if (json == NULL) {
            fprintf(stderr, "sweep-train: --config %s is not valid JSON\n", o->config_file);
            return -1;
        }
        int rc = train_config_set_json(cfg, json, err, sizeof(err));
        cJSON_Delete(json);
        if (rc != 0) {
            fprintf(stderr, "sweep-train: --config %s: %s\n", o->config_file, err);
            return -1;
        }
    }
    for (int i = 0; i < o->n_sets; i++) {
        char name[128];
        const char *eq = strchr(o->sets[i], '=');
        size_t len = (size_t)(eq - o->sets[i]);
        if (len >= sizeof(name)) {
            fprintf(stderr, "sweep-train: --set %s: name too long\n", o->sets[i]);
            return -1;
        }
        memcpy(name, o->sets[i], len);
        name[len] = '\0';
        if (train_config_set(cfg, name, eq + 1, err, sizeof(err)) != 0) {
            fprintf(stderr, "sweep-train: %s\n", err);
            return -1;
        }
    }
    if (o->data && train_config_set(cfg, "dataset", o->data, err, sizeof(err)) != 0) {
        fprintf(stderr, "sweep-train: --data: %s\n", err);
        return -1;
    }
    return 0;
}

static void on_step(void *p, const train_progress *pr)
{
    run_ctx *ctx = p;

    if (ctx->loss_log)
        fprintf(ctx->loss_log, "%ld %a\n", pr->step, pr->train_loss);
    if (pr->step == 1 || pr->step % ctx->opt->log_every == 0 || pr->step == pr->steps)
        log_info("train", "step=%ld/%ld train_loss=%.4f nats (%.4f bits/byte) tokens_per_s=%.0f eta_s=%.0f",
                 pr->step, pr->steps, pr->train_loss, pr->train_loss / M_LN2, pr->tokens_per_s, pr->eta_seconds);
    if (ctx->opt->stop_at >= 0 && pr->step >= ctx->opt->stop_at)
        atomic_store(&ctx->stop, 1);
}

static void on_eval(void *p, long step, double train_loss, double val_loss)
{
    (void)p;
    log_info("train", "step=%ld eval train_loss=%.4f val_loss=%.4f nats (%.4f bits/byte)", step, train_loss,
             val_loss, val_loss / M_LN2);
}

static int on_checkpoint(void *p, trainer *t, long step)
{
    run_ctx *ctx = p;
    char err[1024];

    if (ctx->opt->checkpoint == NULL) {
        log_warn("train", "step=%ld no --checkpoint given: state not saved", step);
        return 0;
    }
    if (trainer_save(t, ctx->opt->checkpoint, err, sizeof(err)) != 0) {
        log_error("train", "step=%ld checkpoint failed: %s", step, err);
        return -1;
    }
    log_info("train", "step=%ld checkpoint=%s written", step, ctx->opt->checkpoint);
    return 0;
}

/* Opens the run: a new one, or a resumed one whose config must agree with
 * any --set / --config given. Returns 0 or -1 after printing. */
static int open_run(const options *o, trainer **t)
{
    char err[2048];
    train_config cfg;

    if (o->resume == NULL) {
        train_config_defaults(&cfg);
        if (apply_settings(o, &cfg) != 0)
            return -1;
        if (train_config_finalize(&cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "sweep-train: %s\n", err);
            return -1;
        }
        if (trainer_create(t, &cfg, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "sweep-train: %s\n", err);
            return -1;
        }
        return 0;
    }

    if (trainer_resume(t, o->resume, NULL, o->data, err, sizeof(err)) != 0) {
        fprintf(stderr, "sweep-train: %s\n", err);
        return -1;
    }
    if (o->config_file == NULL && o->n_sets == 0)
        return 0;

    /* Re-open with the checkpoint's config changed by the user's settings as
     * the expected config, so that any difference is rejected by name. */
    cfg = *trainer_config(*t);
    trainer_free(*t);
    *t = NULL;
    if (apply_settings(o, &cfg) != 0)
        return -1;
    if (train_config_finalize(&cfg, err, sizeof(err)) != 0 ||
        trainer_resume(t, o->resume, &cfg, o->data, err, sizeof(err)) != 0) {
        fprintf(stderr, "sweep-train: %s\n", err);
        return -1;
    }
    return 0;
}

static int print_summary(const train_result *r, const trainer *t)
{
    static const char *const status_names[] = {"done", "diverged", "stopped"};
    struct rusage ru;
    long peak_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
    cJSON *s = cJSON_CreateObject();
    cJSON *cfg = train_config_to_json(trainer_config(t));
    int ok = s != NULL && cfg != NULL;

    ok = ok && cJSON_AddStringToObject(s, "status", status_names[r->status]);
    ok = ok && cJSON_AddNumberToObject(s, "final_loss", r->final_loss);
    ok = ok && cJSON_AddNumberToObject(s, "final_bits_per_byte", r->final_loss / M_LN2);
    ok = ok && cJSON_AddNumberToObject(s, "best_loss", r->best_loss);
    ok = ok && cJSON_AddNumberToObject(s, "best_bits_per_byte", r->best_loss / M_LN2);
    ok = ok && cJSON_AddNumberToObject(s, "steps", (double)r->steps);
    ok = ok && cJSON_AddNumberToObject(s, "seconds", r->seconds);
    ok = ok && cJSON_AddNumberToObject(s, "tokens_per_s", r->tokens_per_s);
    ok = ok && cJSON_AddNumberToObject(s, "diverged_step", (double)r->diverged_step);
    ok = ok && cJSON_AddNumberToObject(s, "bytes_allocated", (double)r->bytes_allocated);
    ok = ok && cJSON_AddNumberToObject(s, "peak_rss_bytes", peak_kb >= 0 ? (double)peak_kb * 1024.0 : -1.0);
    ok = ok && cJSON_AddItemToObject(s, "config", cfg);
    if (!ok) {
        if (s == NULL || !cJSON_GetObjectItem(s, "config"))
            cJSON_Delete(cfg);
        cJSON_Delete(s);
        fprintf(stderr, "sweep-train: out of memory writing the summary\n");
        return -1;
    }
    /* cJSON prints NaN (no evaluation yet) as null, which is valid JSON. */
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (text == NULL) {
        fprintf(stderr, "sweep-train: out of memory writing the summary\n");
        return -1;
    }
    printf("%s\n", text);
    free(text);
    return fflush(stdout) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    options o;
    trainer *t = NULL;
    char err[1024];

    if (argc > 1 && strcmp(argv[1], "optim-trace") == 0)
        return optim_trace_main(argc - 1, argv + 1);
    if (trainer_process_init(argv) != 0)
        log_warn("train", "could not re-execute with OPENBLAS_NUM_THREADS=1 (%s); OpenBLAS "
                 "threads keep the default denormal handling", strerror(errno));
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;

    trainer_thread_setup(o.threads);
    trainer_set_memory_limit(o.max_memory_bytes);
    if (open_run(&o, &t) != 0)
        return EXIT_ERROR;

    run_ctx ctx = {.opt = &o};
    atomic_init(&ctx.stop, 0);
    if (o.loss_log) {
        ctx.loss_log = fopen(o.loss_log, "a");
        if (ctx.loss_log == NULL) {
            fprintf(stderr, "sweep-train: cannot open --loss-log %s: %s\n", o.loss_log, strerror(errno));
            trainer_free(t);
            return EXIT_ERROR;
        }
    }
    signal_stop = &ctx.stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        log_warn("train", "cannot install signal handlers: %s", strerror(errno));

    const train_config *cfg = trainer_config(t);
    log_info("train",
             "start step=%ld/%ld n_layer=%d d_model=%d n_head=%d seq_len=%d batch_size=%d optimizer=%s "
             "threads=%d bytes_allocated=%zu dataset=%s",
             trainer_step_count(t), cfg->steps, cfg->n_layer, cfg->d_model, cfg->n_head, cfg->seq_len,
             cfg->batch_size, optimizer_name(cfg->optimizer), o.threads, trainer_bytes_allocated(t),
             o.data ? o.data : cfg->dataset);

    train_hooks hooks = {
        .ctx = &ctx,
        .on_step = on_step,
        .on_eval = on_eval,
        .on_checkpoint = on_checkpoint,
        .checkpoint_every = o.checkpoint_every,
        .stop = &ctx.stop,
    };
    if (o.stop_at >= 0 && trainer_step_count(t) >= o.stop_at)
        atomic_store(&ctx.stop, 1);
    train_result result;
    rc = trainer_run(t, &hooks, &result, err, sizeof(err));
    signal_stop = NULL;
    if (ctx.loss_log && fclose(ctx.loss_log) != 0)
        log_error("train", "cannot write --loss-log %s: %s", o.loss_log, strerror(errno));

    int status;
    if (rc < 0) {
        fprintf(stderr, "sweep-train: %s\n", err);
        trainer_free(t);
        return EXIT_ERROR;
    } else if (rc == TRAIN_DONE) {
        status = EXIT_DONE;
        if (o.checkpoint && on_checkpoint(&ctx, t, result.steps) != 0)
            status = EXIT_ERROR;
        log_info("train", "done steps=%ld final_val_loss=%.4f (%.4f bits/byte) best=%.4f tokens_per_s=%.0f",
                 result.steps, result.final_loss, result.final_loss / M_LN2, result.best_loss,
                 result.tokens_per_s);
    } else if (rc == TRAIN_DIVERGED) {
        status = EXIT_DIVERGED;
        log_warn("train", "diverged step=%ld: the loss or the gradients are not finite", result.diverged_step);
    } else {
        status = EXIT_STOPPED;
        log_info("train", "stopped step=%ld", result.steps);
    }
    if (print_summary(&result, t) != 0)
        status = EXIT_ERROR;
    trainer_free(t);
    return status;
}
