/* sweepctl export: one row per trial of a sweep, as CSV or JSON.
 *
 * Columns: trial, state, attempts, every parameter (nested objects flattened
 * to dotted names, sorted, the union over all trials), final_loss,
 * best_loss, steps, seconds, worker. CSV follows RFC 4180 quoting: a field
 * with a comma, a double quote or a line break is quoted, with inner quotes
 * doubled. Non-finite losses are written as nan, inf or -inf. In JSON output
 * they are strings, so it never contains a bare NaN or Infinity. Trials are
 * read in pages by trial id, so memory stays bounded for any sweep size.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const fixed_before[] = {"trial", "state", "attempts"};
static const char *const fixed_after[] = {"final_loss", "best_loss", "steps", "seconds",
                                          "worker"};

/* The sorted, distinct parameter names of all trials. */
typedef struct name_set {
    char **names;
    size_t count;
    size_t cap;
} name_set;

static int name_set_add(name_set *set, const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->names[i], name) == 0)
            return 0;
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        char **grown = realloc(set->names, cap * sizeof(char *));
        if (grown == NULL)
            return -1;
        set->names = grown;
        set->cap = cap;
    }
    if ((set->names[set->count] = strdup(name)) == NULL)
        return -1;
    set->count++;
    return 0;
}

static void name_set_free(name_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->names[i]);
    free(set->names);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Flattens obj's leaves into flat (a new object, keys joined with dots) and
 * records each key in set when set is not NULL. Returns 0 or -1 when out of
 * memory. */
static int flatten(const cJSON *obj, const char *prefix, cJSON *flat, name_set *set)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj) {
        size_t size = strlen(prefix) + strlen(item->string ? item->string : "") + 2;
        char *name = malloc(size);
        if (name == NULL)
            return -1;
        snprintf(name, size, "%s%s%s", prefix, prefix[0] ? "." : "",
                 item->string ? item->string : "");

        int err = 0;
        if (cJSON_IsObject(item)) {
            err = flatten(item, name, flat, set);
        } else {
            cJSON *copy = cJSON_Duplicate(item, 1);
            if (copy == NULL || !cJSON_AddItemToObject(flat, name, copy)) {
                cJSON_Delete(copy);
                err = -1;
            } else if (set != NULL) {
                err = name_set_add(set, name);
            }
        }
        free(name);
        if (err != 0)
            return err;
    }
    return 0;
}

/* Writes one CSV field with RFC 4180 quoting. */
static void write_csv_field(FILE *out, const char *text, int first)
{
    if (!first)
        fputc(',', out);
    if (strpbrk(text, ",\"\r\n") == NULL) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

/* Formats a value for CSV: losses and numbers in their shortest exact form,
 * non-finite strings as they are, null and missing as an empty field. */
static const char *csv_value(const cJSON *v, char *buf, size_t size)
{
    return cli_fmt_scalar(v, "", buf, size);
}

/* Writes the CSV header: a parameter whose name equals a fixed column gets
 * "params." in front. */
static void write_csv_header(const name_set *names, FILE *out)
{
    char value[1024];
    int first = 1;
    for (size_t i = 0; i < 3; i++, first = 0)
        write_csv_field(out, fixed_before[i], first);
    for (size_t i = 0; i < names->count; i++) {
        int clash = 0;
        for (size_t k = 0; k < 3; k++)
            clash |= strcmp(names->names[i], fixed_before[k]) == 0;
        for (size_t k = 0; k < 5; k++)
            clash |= strcmp(names->names[i], fixed_after[k]) == 0;
        if (clash) {
            snprintf(value, sizeof(value), "params.%s", names->names[i]);
            write_csv_field(out, value, 0);
        } else {
            write_csv_field(out, names->names[i], 0);
        }
    }
    for (size_t i = 0; i < 5; i++)
        write_csv_field(out, fixed_after[i], 0);
    fputc('\n', out);
}

/* Writes one CSV row: the fixed columns and the parameters of flat_params. */
static void write_csv_row(const cJSON *t, const cJSON *flat_params, const name_set *names,
                          FILE *out)
{
    static char value[65536];
    int first = 1;
    for (size_t i = 0; i < 3; i++, first = 0)
        write_csv_field(out, csv_value(cJSON_GetObjectItemCaseSensitive(t, fixed_before[i]),
                                       value, sizeof(value)), first);
    for (size_t i = 0; i < names->count; i++)
        write_csv_field(out, csv_value(cJSON_GetObjectItemCaseSensitive(flat_params,
                                                                         names->names[i]),
                                       value, sizeof(value)), 0);
    for (size_t i = 0; i < 5; i++)
        write_csv_field(out, csv_value(cJSON_GetObjectItemCaseSensitive(t, fixed_after[i]),
                                       value, sizeof(value)), 0);
    fputc('\n', out);
}

/* Builds the JSON export row of one trial, with "params" flattened (taking
 * ownership of flat_params). Returns the row (owned by the caller) or NULL
 * when out of memory. */
static cJSON *build_json_row(const cJSON *t, cJSON *flat_params)
{
    cJSON *r = cJSON_CreateObject();
    if (r == NULL) {
        cJSON_Delete(flat_params);
        return NULL;
    }
    for (size_t i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, fixed_before[i]);
        cJSON *copy = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
        if (copy == NULL || !cJSON_AddItemToObject(r, fixed_before[i], copy))
            goto fail;
    }
    if (!cJSON_AddItemToObject(r, "params", flat_params)) {
        flat_params = NULL;
        goto fail;
    }
    flat_params = NULL;
    for (size_t i = 0; i < 5; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, fixed_after[i]);
        cJSON *copy = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
        if (copy == NULL || !cJSON_AddItemToObject(r, fixed_after[i], copy))
            goto fail;
    }
    return r;

fail:
    cJSON_Delete(flat_params);
    cJSON_Delete(r);
    return NULL;
}

/* Trials per trials request of the export: small enough that one page of
 * replies stays a few megabytes, large enough that a 1M-trial sweep takes
 * 100 requests. */
#define EXPORT_PAGE_TRIALS 10000

/* The export in progress: one connection, paging by trial id. */
typedef struct export_run {
    cli_conn conn;
    long long sweep;
    int csv;
    FILE *out;
    name_set names;     /* CSV columns, collected in the first pass */
    long long last_id;  /* the largest trial id of the first pass */
    long long rows;     /* rows written */
} export_run;

/* Fetches the page of trials after trial id after. Returns 0 with *reply
 * and *trials set (the reply owned by the caller) or an exit code. */
static int fetch_page(export_run *run, long long after, cJSON **reply, const cJSON **trials)
{
    char members[128];
    snprintf(members, sizeof(members), "\"sweep\":%lld,\"sort\":\"id\",\"after\":%lld,\"limit\":%d",
             run->sweep, after, EXPORT_PAGE_TRIALS);
    int rc = cli_conn_call(&run->conn, "trials", members, reply, NULL);
    if (rc != 0)
        return rc;
    *trials = cJSON_GetObjectItemCaseSensitive(*reply, "trials");
    if (!cJSON_IsArray(*trials)) {
        fprintf(stderr, "sweepctl: the trials reply has no \"trials\" array\n");
        cJSON_Delete(*reply);
        *reply = NULL;
        return CLI_EXIT_PROTOCOL;
    }
    return 0;
}

/* Handles one page: pass 0 collects CSV column names and the last trial id,
 * pass 1 writes rows up to that id (CSV) or every row (JSON, one pass).
 * Sets *next to the page's last trial id, or 0 when the export is done.
 * Returns 0 or an exit code. */
static int export_page(export_run *run, int pass, const cJSON *trials, long long *next)
{
    const cJSON *t;
    *next = 0;
    cJSON_ArrayForEach(t, trials) {
        long long id = 0;
        if (!cli_get_ll(t, "trial", &id) || id <= 0) {
            fprintf(stderr, "sweepctl: a trial in the trials reply has no valid \"trial\" id\n");
            return CLI_EXIT_PROTOCOL;
        }
        if (run->csv && pass == 1 && id > run->last_id)
            return 0; /* created after the first pass: its columns are unknown */
        *next = id;
        cJSON *flat = cJSON_CreateObject();
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(t, "params");
        name_set *set = run->csv && pass == 0 ? &run->names : NULL;
        if (flat == NULL || (cJSON_IsObject(params) && flatten(params, "", flat, set) != 0)) {
            cJSON_Delete(flat);
            fprintf(stderr, "sweepctl: out of memory building the export\n");
            return CLI_EXIT_PROTOCOL;
        }
        if (run->csv && pass == 0) {
            run->last_id = id;
            cJSON_Delete(flat);
            continue;
        }
        if (run->csv) {
            write_csv_row(t, flat, &run->names, run->out);
            cJSON_Delete(flat);
        } else {
            cJSON *row = build_json_row(t, flat);
            char *text = row ? cJSON_Print(row) : NULL;
            cJSON_Delete(row);
            if (text == NULL) {
                fprintf(stderr, "sweepctl: out of memory building the export\n");
                return CLI_EXIT_PROTOCOL;
            }
            fputs(run->rows == 0 ? "[\n" : ",\n", run->out);
            fputs(text, run->out);
            free(text);
        }
        run->rows++;
    }
    if (cJSON_GetArraySize(trials) < EXPORT_PAGE_TRIALS)
        *next = 0; /* a short page is the last one */
    return 0;
}

/* Runs one pass over every trial of the sweep, page by page. */
static int export_pass(export_run *run, int pass)
{
    long long after = 0;
    do {
        cJSON *reply;
        const cJSON *trials;
        int rc = fetch_page(run, after, &reply, &trials);
        if (rc == 0)
            rc = export_page(run, pass, trials, &after);
        cJSON_Delete(reply);
        if (rc != 0)
            return rc;
    } while (after > 0);
    return 0;
}

/* Writes the whole export. CSV needs two passes because its header lists
 * every parameter name before the first row. The second pass stops at the
 * last trial of the first, so trials created meanwhile are left out rather
 * than written with missing columns. */
static int write_export(export_run *run)
{
    int rc = export_pass(run, 0);
    if (rc != 0)
        return rc;
    if (!run->csv) {
        fputs(run->rows == 0 ? "[]\n" : "\n]\n", run->out);
        return 0;
    }
    if (run->names.count > 0)
        qsort(run->names.names, run->names.count, sizeof(char *), compare_names);
    write_csv_header(&run->names, run->out);
    if (run->last_id == 0)
        return 0;
    return export_pass(run, 1);
}

int cli_cmd_export(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *format = NULL, *output = NULL;
    const cli_opt opts[] = {
        {"format", &format, NULL, NULL, NULL, 0},
        {"output", &output, NULL, NULL, NULL, 0},
        {NULL, NULL, NULL, NULL, NULL, 0},
    };
    const char *pos[1];
    int npos;
    long long sweep;

    int rc = cli_parse_args(ctx, cmd, argc, argv, opts, pos, 1, 1, &npos);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (ctx->json && format != NULL && strcmp(format, "json") != 0)
        return cli_usage_error(cmd, "--json conflicts with --format %s", format);
    if (format == NULL && ctx->json)
        format = "json";
    if (format == NULL)
        return cli_usage_error(cmd, "missing --format: expected csv or json");
    if (strcmp(format, "csv") != 0 && strcmp(format, "json") != 0)
        return cli_usage_error(cmd, "invalid --format '%s': expected csv or json", format);
    if ((rc = cli_parse_sweep(cmd, pos[0], &sweep)) != 0)
        return rc;

    FILE *out = stdout;
    if (output != NULL && (out = fopen(output, "w")) == NULL) {
        fprintf(stderr, "sweepctl: cannot create '%s': %s\n", output, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    export_run run = {.sweep = sweep, .csv = strcmp(format, "csv") == 0, .out = out};
    rc = cli_conn_open(ctx, &run.conn);
    if (rc == 0) {
        rc = write_export(&run);
        cli_conn_close(&run.conn);
    }
    name_set_free(&run.names);

    int write_failed = out == stdout ? fflush(out) != 0 : fclose(out) != 0;
    if (write_failed && rc == 0) {
        fprintf(stderr, "sweepctl: writing the export to %s failed: %s\n",
                output ? output : "stdout", strerror(errno));
        rc = CLI_EXIT_USAGE;
    }
    return rc;
}
