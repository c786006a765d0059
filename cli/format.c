/* Rendering helpers for sweepctl: loss values that may be non-finite, scalar
 * values in their shortest exact form, durations, percentages, progress bars,
 * flattened parameter lists and padded text tables.
 *
 * The daemon sends non-finite losses as the strings "nan", "inf" and "-inf"
 * (docs/PROTOCOL.md); every reader here accepts both forms.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cli_get_double(const cJSON *obj, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 1;
    }
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "nan") == 0)
            *out = NAN;
        else if (strcmp(v->valuestring, "inf") == 0)
            *out = INFINITY;
        else if (strcmp(v->valuestring, "-inf") == 0)
            *out = -INFINITY;
        else
            return 0;
        return 1;
    }
    return 0;
}

int cli_get_ll(const cJSON *obj, const char *name, long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return 0;
    *out = (long long)v->valuedouble;
    return 1;
}

const char *cli_get_str(const cJSON *obj, const char *name, const char *fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : fallback;
}

/* Prints d with the fewest significant digits that read back to the same
 * double, so 0.003 stays "0.003", 1e-05 stays "1e-05" and 10 stays "10". */
static void format_double(double d, char *buf, size_t size)
{
    if (isnan(d)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, size, d > 0 ? "inf" : "-inf");
        return;
    }
    /* Whole numbers print as integers, not in the "1e+01" form that %g picks. */
    if (d == floor(d) && fabs(d) < 1e15) {
        snprintf(buf, size, "%.0f", d);
        return;
    }
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

const char *cli_fmt_loss(const cJSON *v, char *buf, size_t size)
{
    if (cJSON_IsNumber(v))
        snprintf(buf, size, "%.4f", v->valuedouble);
    else if (cJSON_IsString(v))
        snprintf(buf, size, "%s", v->valuestring);
    else
        snprintf(buf, size, "-");
    return buf;
}

const char *cli_fmt_scalar(const cJSON *v, const char *empty_as, char *buf, size_t size)
{
    if (cJSON_IsNumber(v))
        format_double(v->valuedouble, buf, size);
    else if (cJSON_IsString(v))
        snprintf(buf, size, "%s", v->valuestring);
    else if (cJSON_IsBool(v))
        snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (v == NULL || cJSON_IsNull(v))
        snprintf(buf, size, "%s", empty_as);
    else {
        /* An array or object: its compact JSON text. */
        char *text = cJSON_PrintUnformatted(v);
        snprintf(buf, size, "%s", text ? text : "");
        free(text);
    }
    return buf;
}

const char *cli_fmt_duration(double seconds, char *buf, size_t size)
{
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    long long s = (long long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(buf, size, "%llds", s);
    return buf;
}

const char *cli_fmt_percent(const cJSON *obj, const char *name, char *buf, size_t size)
{
    double f;
    if (cli_get_double(obj, name, &f) && isfinite(f))
        snprintf(buf, size, "%.2f%%", 100.0 * f);
    else
        snprintf(buf, size, "-");
    return buf;
}

void cli_fmt_bar(long long done, long long total, int width, char *buf, size_t size)
{
    if (size < 3 || width < 1)
        return;
    if ((size_t)width + 3 > size)
        width = (int)size - 3;
    int filled = 0;
    if (total > 0) {
        long long clamped = done;
        if (clamped < 0)
            clamped = 0;
        if (clamped > total)
            clamped = total;
        filled = (int)((double)clamped / (double)total * width);
    }
    buf[0] = '[';
    for (int i = 0; i < width; i++)
        buf[1 + i] = i < filled ? '#' : '.';
    buf[1 + width] = ']';
    buf[2 + width] = '\0';
}

/* Appends "prefix.name=value" for every leaf of obj. */
static void append_params(const cJSON *obj, const char *prefix, char *buf, size_t size,
                          size_t *used)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj) {
        char name[256];
        if (prefix[0] != '\0')
            snprintf(name, sizeof(name), "%s.%s", prefix, item->string);
        else
            snprintf(name, sizeof(name), "%s", item->string ? item->string : "");
        if (cJSON_IsObject(item)) {
            append_params(item, name, buf, size, used);
            continue;
        }
        char value[256];
        cli_fmt_scalar(item, "null", value, sizeof(value));
        int n = snprintf(buf + *used, size - *used, "%s%s=%s", *used ? " " : "", name, value);
        if (n < 0 || (size_t)n >= size - *used) {
            *used = size - 1; /* the buffer is full; the list is cut */
            return;
        }
        *used += (size_t)n;
    }
}

const char *cli_fmt_params(const cJSON *params, char *buf, size_t size)
{
    size_t used = 0;

    if (size == 0)
        return buf;
    buf[0] = '\0';
    if (cJSON_IsObject(params))
        append_params(params, "", buf, size, &used);
    return buf;
}

void cli_table_init(cli_table *t, int ncols, const char *const *headers,
                    const unsigned char *right)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols < CLI_TABLE_MAX_COLS ? ncols : CLI_TABLE_MAX_COLS;
    t->headers = headers;
    t->right = right;
}

int cli_table_add(cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        char **grown = realloc(t->cells, cap * (size_t)t->ncols * sizeof(char *));
        if (grown == NULL) {
            t->out_of_memory = 1;
            return -1;
        }
        t->cells = grown;
        t->cap_rows = cap;
    }
    char **row = t->cells + t->nrows * (size_t)t->ncols;
    for (int c = 0; c < t->ncols; c++) {
        row[c] = strdup(cells[c] ? cells[c] : "");
        if (row[c] == NULL) {
            for (int k = 0; k < c; k++)
                free(row[k]);
            t->out_of_memory = 1;
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

static void print_row(const cli_table *t, const char *const *cells, const size_t *widths,
                      FILE *out)
{
    for (int c = 0; c < t->ncols; c++) {
        int w = (int)widths[c];
        int last = c == t->ncols - 1;
        if (t->right != NULL && t->right[c])
            fprintf(out, "%*s", w, cells[c]);
        else if (last)
            fputs(cells[c], out);
        else
            fprintf(out, "%-*s", w, cells[c]);
        fputs(last ? "\n" : "  ", out);
    }
}

void cli_table_print(const cli_table *t, FILE *out)
{
    size_t widths[CLI_TABLE_MAX_COLS];

    for (int c = 0; c < t->ncols; c++) {
        widths[c] = strlen(t->headers[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t len = strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);
            if (len > widths[c])
                widths[c] = len;
        }
    }
    print_row(t, t->headers, widths, out);
    for (size_t r = 0; r < t->nrows; r++)
        print_row(t, (const char *const *)(t->cells + r * (size_t)t->ncols), widths, out);
}

void cli_table_free(cli_table *t)
{
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

int cli_table_finish(cli_table *t, const char *empty_message, FILE *out)
{
    int rc = CLI_EXIT_OK;

    if (t->out_of_memory) {
        fprintf(stderr, "sweepctl: out of memory building a table\n");
        rc = CLI_EXIT_PROTOCOL;
    } else if (t->nrows == 0 && empty_message != NULL) {
        fprintf(out, "%s\n", empty_message);
    } else {
        cli_table_print(t, out);
    }
    cli_table_free(t);
    return rc;
}
