/* sweepctl tickets: winning-ticket fractions of a sweep, per group.
 *
 * The daemon does the counting (docs/PROTOCOL.md, "tickets"): finished =
 * completed + diverged, winners = completed runs whose final loss is strictly
 * below the threshold, with a 95% Wilson score interval. This file only
 * checks the arguments and prints one row per group plus the overall row.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Returns 1 when name matches ^[A-Za-z_][A-Za-z0-9_.-]*$, the form of a
 * sweep parameter name (nested names joined with dots). */
static int valid_param_name(const char *name)
{
    if (!(name[0] == '_' || (name[0] >= 'A' && name[0] <= 'Z') ||
          (name[0] >= 'a' && name[0] <= 'z')))
        return 0;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
           strlen(name);
}

/* Adds one group's row to the table. */
static void add_group_row(cli_table *table, const char *label, const cJSON *g)
{
    char finished[32], winners[32], fraction[32], interval[80], best[32], median[32];
    char failed[32], cancelled[32], low[32], high[32];

    cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "finished"), "0", finished,
                   sizeof(finished));
    cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "winners"), "0", winners,
                   sizeof(winners));
    cli_fmt_percent(g, "fraction", fraction, sizeof(fraction));
    cli_fmt_percent(g, "ci_low", low, sizeof(low));
    cli_fmt_percent(g, "ci_high", high, sizeof(high));
    snprintf(interval, sizeof(interval), "[%s, %s]", low, high);
    cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(g, "best_loss"), best, sizeof(best));
    cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(g, "median_loss"), median, sizeof(median));
    cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "failed"), "0", failed, sizeof(failed));
    cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "cancelled"), "0", cancelled,
                   sizeof(cancelled));

    const char *cells[] = {label, finished, winners, fraction, interval,
                           best,  median,   failed,  cancelled};
    cli_table_add(table, cells);
}

int cli_cmd_tickets(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *threshold_text = NULL, *by = NULL;
    const cli_opt opts[] = {
        {"threshold", &threshold_text, NULL, NULL, NULL, 0},
        {"by", &by, NULL, NULL, NULL, 0},
        {NULL, NULL, NULL, NULL, NULL, 0},
    };
    const char *pos[1];
    int npos;
    long long sweep;

    int rc = cli_parse_args(ctx, cmd, argc, argv, opts, pos, 1, 1, &npos);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = cli_parse_sweep(cmd, pos[0], &sweep)) != 0)
        return rc;

    /* The argument checks; by is checked against the parameter name form, so
     * it needs no JSON escaping. */
    char members[512];
    int n = snprintf(members, sizeof(members), "\"sweep\":%lld", sweep);
    if (threshold_text != NULL) {
        char *end;
        double threshold = strtod(threshold_text, &end);
        if (end == threshold_text || *end != '\0' || !isfinite(threshold))
            return cli_usage_error(cmd, "invalid --threshold '%s': expected a finite loss in "
                                        "nats, e.g. 1.46", threshold_text);
        n += snprintf(members + n, sizeof(members) - (size_t)n, ",\"threshold\":%.17g",
                      threshold);
    }
    if (by != NULL) {
        if (!valid_param_name(by) || strlen(by) > 200)
            return cli_usage_error(cmd, "invalid --by '%s': expected a parameter name such as "
                                        "optimizer", by);
        snprintf(members + n, sizeof(members) - (size_t)n, ",\"by\":\"%s\"", by);
    }

    cJSON *reply;
    if ((rc = cli_call_once(ctx, "tickets", members, &reply)) != 0)
        return rc;
    if (ctx->json) {
        rc = cli_print_json(reply);
        cJSON_Delete(reply);
        return rc;
    }

    char threshold[64];
    cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(reply, "threshold"), "-", threshold,
                   sizeof(threshold));
    const char *group_by = cli_get_str(reply, "by", by);
    printf("sweep %lld: winners have a final loss below %s", sweep, threshold);
    if (group_by != NULL)
        printf(", grouped by %s", group_by);
    printf("\n");

    static const char *const headers_template[] = {
        "group", "finished", "winners", "fraction", "95% interval", "best_loss",
        "median_loss", "failed", "cancelled"};
    static const unsigned char right[] = {0, 1, 1, 1, 0, 1, 1, 1, 1};
    const char *headers[9];
    memcpy(headers, headers_template, sizeof(headers));
    if (group_by != NULL)
        headers[0] = group_by;

    cli_table table;
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(reply, "groups");
    const cJSON *g;
    cli_table_init(&table, 9, headers, right);
    cJSON_ArrayForEach(g, groups) {
        char label[256];
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "value"), "null", label,
                       sizeof(label));
        add_group_row(&table, label, g);
    }
    const cJSON *overall = cJSON_GetObjectItemCaseSensitive(reply, "overall");
    if (cJSON_IsObject(overall))
        add_group_row(&table, "overall", overall);
    rc = cli_table_finish(&table, NULL, stdout);
    cJSON_Delete(reply);
    return rc;
}
