/* `sweep-train optim-trace`: one optimizer on one tensor, step by step.
 *
 * Input (stdin, one JSON object of at most TRACE_MAX_INPUT_BYTES):
 *   {"shape": [rows, cols] or [n], "w0": [row-major values], "grads": [[...], ...]}
 * Output: one line per gradient, {"step": t, "param": [...], "rejected_roots": r},
 * values printed with %.9g so they round-trip through float32. The optimizer
 * runs through optim.h exactly as in training, at the constant rate cfg.lr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "hparams.h"
#include "optim.h"
#include "optim_trace.h"

#define TRACE_MAX_INPUT_BYTES ((size_t)64 << 20)
#define TRACE_MAX_NUMEL ((size_t)1 << 22)
#define TRACE_MAX_SIDE (1 << 20)

static const char USAGE[] =
    "usage: sweep-train optim-trace --optimizer NAME [--set name=value ...] < input.json\n"
    "\n"
    "Applies one step of optimizer NAME (adam, adamw, sm3, shampoo) per gradient to one\n"
    "tensor and prints the parameters after each step as one JSON line:\n"
    "  input:  {\"shape\": [rows, cols] or [n], \"w0\": [...], \"grads\": [[...], ...]}\n"
    "  output: {\"step\": t, \"param\": [...], \"rejected_roots\": r}\n"
    "Values are row-major. The learning rate is constant (--set lr=...); every other\n"
    "optimizer hyperparameter takes --set as in training (b1, b2, eps, weight_decay,\n"
    "matrix_eps, block_size, precondition_every, start_preconditioning_step, graft,\n"
    "graft_beta2, graft_eps, nesterov, root_method, max_precond_dim).\n"
    "Exit status: 0 success, 1 invalid input or optimizer error, 2 usage error.\n";

/* Reads all of stdin into a NUL-terminated buffer, up to max_bytes. Returns
 * the buffer (caller frees) or NULL with a message printed. */
static char *read_stdin(size_t max_bytes, size_t *len_out)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fprintf(stderr, "optim-trace: out of memory reading stdin\n");
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= max_bytes) {
                fprintf(stderr, "optim-trace: input larger than %zu bytes; use a smaller tensor or fewer "
                        "steps\n", max_bytes);
                free(buf);
                return NULL;
            }
            cap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            char *bigger = realloc(buf, cap + 1);
            if (!bigger) {
                fprintf(stderr, "optim-trace: out of memory reading stdin\n");
                free(buf);
                return NULL;
            }
            buf = bigger;
        }
        size_t got = fread(buf + len, 1, cap - len, stdin);
        len += got;
        if (got == 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "optim-trace: failed to read stdin\n");
                free(buf);
                return NULL;
            }
            break;
        }
    }
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

/* Copies a JSON array of exactly n numbers into out. Returns 0, or -1 with
 * a message naming what (e.g. "grads[3]"). */
static int read_numbers(const cJSON *array, size_t n, float *out, const char *what, long index)
{
    char label[64];
    if (index >= 0)
        snprintf(label, sizeof label, "%s[%ld]", what, index);
    else
        snprintf(label, sizeof label, "%s", what);

    if (!cJSON_IsArray(array)) {
        fprintf(stderr, "optim-trace: %s is missing or not an array\n", label);
        return -1;
    }
    if ((size_t)cJSON_GetArraySize(array) != n) {
        fprintf(stderr, "optim-trace: %s has %d values, expected %zu (the product of shape)\n", label,
                cJSON_GetArraySize(array), n);
        return -1;
    }
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, array) {
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble)) {
            fprintf(stderr, "optim-trace: %s[%zu] is not a finite number\n", label, i);
            return -1;
        }
        out[i++] = (float)item->valuedouble;
    }
    return 0;
}

/* Fills td from "shape". Returns 0 or -1 with a message. */
static int read_shape(const cJSON *shape, tensor_desc *td)
{
    int ndim = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : 0;
    if (ndim != 1 && ndim != 2) {
        fprintf(stderr, "optim-trace: shape must be [rows, cols] or [n]\n");
        return -1;
    }
    int sides[2] = {1, 1};
    for (int i = 0; i < ndim; i++) {
        const cJSON *side = cJSON_GetArrayItem(shape, i);
        double value = cJSON_IsNumber(side) ? side->valuedouble : -1.0;
        if (!(value >= 1.0 && value <= TRACE_MAX_SIDE) || value != floor(value)) {
            fprintf(stderr, "optim-trace: shape[%d] must be an integer in [1, %d]\n", i, TRACE_MAX_SIDE);
            return -1;
        }
        sides[i] = (int)value;
    }
    size_t numel = (size_t)sides[0] * (size_t)sides[1];
    if (numel > TRACE_MAX_NUMEL) {
        fprintf(stderr, "optim-trace: shape has %zu elements, more than the maximum %zu\n", numel,
                TRACE_MAX_NUMEL);
        return -1;
    }
    *td = (tensor_desc){"trace", ndim, sides[0], sides[1], 0, numel};
    return 0;
}

static void print_step(long step, const float *w, size_t n, long rejected_roots)
{
    printf("{\"step\":%ld,\"param\":[", step);
    for (size_t i = 0; i < n; i++) {
        if (isfinite(w[i]))
            printf("%s%.9g", i ? "," : "", (double)w[i]);
        else
            printf("%snull", i ? "," : "");
    }
    printf("],\"rejected_roots\":%ld}\n", rejected_roots);
}

/* Parses the options into cfg. Returns 0, 1 (--help printed) or 2 (usage
 * error printed). */
static int parse_options(int argc, char **argv, train_config *cfg)
{
    char err[512];
    const char *optimizer_text = NULL;

    train_config_defaults(cfg);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(USAGE, stdout);
            return 1;
        }
        if (i + 1 >= argc || (strcmp(arg, "--optimizer") != 0 && strcmp(arg, "--set") != 0)) {
            fprintf(stderr, "optim-trace: invalid argument '%s'\n%s", arg, USAGE);
            return 2;
        }
        const char *value = argv[++i];
        if (strcmp(arg, "--optimizer") == 0) {
            optimizer_text = value;
            if (train_config_set(cfg, "optimizer", value, err, sizeof err) < 0) {
                fprintf(stderr, "optim-trace: %s\n", err);
                return 2;
            }
            continue;
        }

        const char *eq = strchr(value, '=');
        char name[128];
        if (!eq || eq == value || (size_t)(eq - value) >= sizeof name) {
            fprintf(stderr, "optim-trace: --set expects name=value, got '%s'\n", value);
            return 2;
        }
        memcpy(name, value, (size_t)(eq - value));
        name[eq - value] = '\0';
        if (strcmp(name, "optimizer") == 0) {
            fprintf(stderr, "optim-trace: choose the optimizer with --optimizer, not --set\n");
            return 2;
        }
        if (train_config_set(cfg, name, eq + 1, err, sizeof err) < 0) {
            fprintf(stderr, "optim-trace: %s\n", err);
            return 2;
        }
    }
    if (!optimizer_text) {
        fprintf(stderr, "optim-trace: --optimizer is missing\n%s", USAGE);
        return 2;
    }
    if (train_config_finalize(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "optim-trace: %s\n", err);
        return 2;
    }
    return 0;
}

/* Runs every step of a parsed input. Returns the exit status. */
static int run_trace(const train_config *cfg, const cJSON *input)
{
    tensor_desc td;
    if (read_shape(cJSON_GetObjectItemCaseSensitive(input, "shape"), &td) < 0)
        return 1;
    const cJSON *grads = cJSON_GetObjectItemCaseSensitive(input, "grads");
    if (!cJSON_IsArray(grads)) {
        fprintf(stderr, "optim-trace: grads is missing or not an array of arrays\n");
        return 1;
    }

    int status = 1;
    char err[512];
    optimizer *opt = NULL;
    float *w = malloc(td.numel * sizeof(float));
    float *g = malloc(td.numel * sizeof(float));
    if (!w || !g) {
        fprintf(stderr, "optim-trace: out of memory for %zu values\n", td.numel);
        goto done;
    }
    if (read_numbers(cJSON_GetObjectItemCaseSensitive(input, "w0"), td.numel, w, "w0", -1) < 0)
        goto done;
    if (optim_create(&opt, cfg, &td, 1, err, sizeof err) < 0) {
        fprintf(stderr, "optim-trace: %s\n", err);
        goto done;
    }

    long index = 0;
    const cJSON *grad;
    cJSON_ArrayForEach(grad, grads) {
        if (read_numbers(grad, td.numel, g, "grads", index) < 0)
            goto done;
        optim_step(opt, w, g, cfg->lr);
        print_step(optim_step_count(opt), w, td.numel, optim_rejected_roots(opt));
        index++;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "optim-trace: failed to write stdout\n");
        goto done;
    }
    status = 0;

done:
    optim_free(opt);
    free(w);
    free(g);
    return status;
}

int optim_trace_main(int argc, char **argv)
{
    train_config cfg;
    int rc = parse_options(argc, argv, &cfg);
    if (rc != 0)
        return rc == 1 ? 0 : rc;

    size_t len = 0;
    char *text = read_stdin(TRACE_MAX_INPUT_BYTES, &len);
    if (!text)
        return 1;
    cJSON *input = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(input)) {
        fprintf(stderr, "optim-trace: stdin is not one JSON object; see optim-trace --help\n");
        cJSON_Delete(input);
        return 1;
    }
    int status = run_trace(&cfg, input);
    cJSON_Delete(input);
    return status;
}
