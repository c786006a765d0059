/* sweepctl export: one row per trial of a sweep, as CSV or JSON.
 *
 * Columns: trial, state, attempts, every parameter (nested objects flattened
 * to dotted names, sorted, the union over all trials), final_loss,
 * best_loss, steps, seconds, worker. CSV follows RFC 4180 quoting: a field
 * with a comma, a double quote or a line break is quoted, with inner quotes
 * doubled. Non-finite losses are written as nan, inf or -inf. In JSON output
 * they are strings, so it never contains a bare NaN or Infinity.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The maximum "limit" that sweepd accepts in a trials request. */
#define EXPORT_MAX_TRIALS 100000

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

static int write_csv(const cJSON *trials, cJSON *const *flat_params, const name_set *names,
                     FILE *out)
{
    static char value[65536];
    const cJSON *t;
    size_t row = 0;

    /* Header: a parameter whose name equals a fixed column gets "params.". */
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

    cJSON_ArrayForEach(t, trials) {
        first = 1;
        for (size_t i = 0; i < 3; i++, first = 0)
            write_csv_field(out, csv_value(cJSON_GetObjectItemCaseSensitive(t, fixed_before[i]),
                                           value, sizeof(value)), first);
        for (size_t i = 0; i < names->count; i++)
            write_csv_field(out, csv_value(cJSON_GetObjectItemCaseSensitive(flat_params[row],
                                                                             names->names[i]),
                                           value, sizeof(value)), 0);
        for (size_t i = 0; i < 5; i++)
            write_csv_field(out, csv_value(cJSON_GetObjectItemCaseSensitive(t, fixed_after[i]),
                                           value, sizeof(value)), 0);
        fputc('\n', out);
        row++;
    }
    return 0;
}

/* Builds the JSON export: an array of row objects with "params" flattened.
 * Returns the array (owned by the caller) or NULL when out of memory. */
static cJSON *build_json_rows(const cJSON *trials, cJSON *const *flat_params)
{
    cJSON *rows = cJSON_CreateArray();
    const cJSON *t;
    size_t row = 0;

    if (rows == NULL)
        return NULL;
    cJSON_ArrayForEach(t, trials) {
        cJSON *r = cJSON_CreateObject();
        if (r == NULL || !cJSON_AddItemToArray(rows, r))
            goto fail;
        for (size_t i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, fixed_before[i]);
            cJSON *copy = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
            if (copy == NULL || !cJSON_AddItemToObject(r, fixed_before[i], copy))
                goto fail;
        }
        cJSON *params = cJSON_Duplicate(flat_params[row], 1);
        if (params == NULL || !cJSON_AddItemToObject(r, "params", params))
            goto fail;
        for (size_t i = 0; i < 5; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, fixed_after[i]);
            cJSON *copy = v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
            if (copy == NULL || !cJSON_AddItemToObject(r, fixed_after[i], copy))
                goto fail;
        }
        row++;
    }
    return rows;

fail:
    cJSON_Delete(rows);
    return NULL;
}

/* Writes the export of a trials reply to out. Returns an exit code. */
static int write_export(const cJSON *reply, int csv, FILE *out)
{
    const cJSON *trials = cJSON_GetObjectItemCaseSensitive(reply, "trials");
    int ntrials = cJSON_GetArraySize(trials);
    cJSON **flat = calloc((size_t)ntrials + 1, sizeof(cJSON *));
    name_set names = {0};
    int rc = CLI_EXIT_OK;

    if (!cJSON_IsArray(trials)) {
        fprintf(stderr, "sweepctl: the trials reply has no \"trials\" array\n");
        free(flat);
        return CLI_EXIT_PROTOCOL;
    }
    if (flat == NULL)
        goto oom;

    /* Flatten every trial's parameters and collect the column names. */
    const cJSON *t;
    int row = 0;
    cJSON_ArrayForEach(t, trials) {
        if ((flat[row] = cJSON_CreateObject()) == NULL)
            goto oom;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(t, "params");
        if (cJSON_IsObject(params) && flatten(params, "", flat[row], &names) != 0)
            goto oom;
        row++;
    }
    if (names.count > 0)
        qsort(names.names, names.count, sizeof(char *), compare_names);

    if (csv) {
        rc = write_csv(trials, flat, &names, out);
    } else {
        cJSON *rows = build_json_rows(trials, flat);
        char *text = rows ? cJSON_Print(rows) : NULL;
        cJSON_Delete(rows);
        if (text == NULL)
            goto oom;
        fputs(text, out);
        fputc('\n', out);
        free(text);
    }
    goto done;

oom:
    fprintf(stderr, "sweepctl: out of memory building the export\n");
    rc = CLI_EXIT_PROTOCOL;
done:
    for (int i = 0; flat != NULL && i < ntrials; i++)
        cJSON_Delete(flat[i]);
    free(flat);
    name_set_free(&names);
    return rc;
}

/* Fetches every trial of the sweep, ordered by id, over one connection: a
 * status request counts the trials, then one trials request asks for all of
 * them. Returns 0 with *reply set (owned by the caller) or an exit code. */
static int fetch_trials(const cli_ctx *ctx, long long sweep, cJSON **reply)
{
    cli_conn conn;
    cJSON *status = NULL;
    char members[96];
    int rc;

    *reply = NULL;
    if ((rc = cli_conn_open(ctx, &conn)) != 0)
        return rc;
    snprintf(members, sizeof(members), "\"sweep\":%lld", sweep);
    rc = cli_conn_call(&conn, "status", members, &status, NULL);
    if (rc != 0) {
        cli_conn_close(&conn);
        return rc;
    }

    /* Trials that exist: the sum of the counts per state. */
    long long count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(status, "counts")) {
        if (cJSON_IsNumber(item))
            count += (long long)item->valuedouble;
    }
    cJSON_Delete(status);

    /* NOTE: the trials op has no offset, and sweepd caps "limit" at
     * EXPORT_MAX_TRIALS, so a larger sweep cannot be exported whole yet. */
    if (count > EXPORT_MAX_TRIALS) {
        fprintf(stderr, "sweepctl: sweep %lld has %lld trials, but one trials request "
                        "returns at most %d; export cannot write them all\n", sweep, count,
                EXPORT_MAX_TRIALS);
        cli_conn_close(&conn);
        return CLI_EXIT_DAEMON;
    }
    snprintf(members, sizeof(members), "\"sweep\":%lld,\"sort\":\"id\",\"limit\":%lld",
             sweep, count > 0 ? count : 1);
    rc = cli_conn_call(&conn, "trials", members, reply, NULL);
    cli_conn_close(&conn);
    return rc;
}

int cli_cmd_export(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *format = NULL, *output = NULL;
    const cli_opt opts[] = {
        {"format", &format, NULL},
        {"output", &output, NULL},
        {NULL, NULL, NULL},
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

    cJSON *reply;
    if ((rc = fetch_trials(ctx, sweep, &reply)) != 0)
        return rc;

    FILE *out = stdout;
    if (output != NULL && (out = fopen(output, "w")) == NULL) {
        fprintf(stderr, "sweepctl: cannot create '%s': %s\n", output, strerror(errno));
        cJSON_Delete(reply);
        return CLI_EXIT_USAGE;
    }
    rc = write_export(reply, strcmp(format, "csv") == 0, out);
    cJSON_Delete(reply);

    int write_failed = out == stdout ? fflush(out) != 0 : fclose(out) != 0;
    if (write_failed && rc == 0) {
        fprintf(stderr, "sweepctl: writing the export to %s failed: %s\n",
                output ? output : "stdout", strerror(errno));
        rc = CLI_EXIT_USAGE;
    }
    return rc;
}
