/* sweepctl list, status, trials, workers, pause, resume and cancel: one
 * request each, printed as a table (or as JSON with --json).
 *
 * The reply fields are those of docs/PROTOCOL.md; a field the daemon leaves
 * out prints as "-" rather than failing the command.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Trial states in their lifecycle order, for counts and --state. */
static const char *const trial_states[] = {"pending",  "running", "completed",
                                           "diverged", "failed",  "cancelled"};
#define NSTATES (sizeof(trial_states) / sizeof(trial_states[0]))

static const char *const sort_keys[] = {"id", "final_loss", "best_loss", "seconds"};

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

/* Sums the counts of the finished states: completed, diverged, failed and
 * cancelled trials never run again. */
static long long count_done(const cJSON *counts)
{
    long long done = 0, n;
    for (size_t i = 2; i < NSTATES; i++)
        if (cli_get_ll(counts, trial_states[i], &n))
            done += n;
    return done;
}

/* Formats "done/total", or "done/unbounded" for a sweep without a size. */
static const char *fmt_progress(const cJSON *obj, char *buf, size_t size)
{
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(obj, "counts");
    long long done, total;

    if (!cli_get_ll(obj, "done", &done))
        done = count_done(counts);
    if (cli_get_ll(obj, "total", &total) || cli_get_ll(obj, "size", &total))
        snprintf(buf, size, "%lld/%lld", done, total);
    else
        snprintf(buf, size, "%lld/unbounded", done);
    return buf;
}

void cli_print_status(const cJSON *status, FILE *out)
{
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(status, "counts");
    long long sweep = 0, done, total, n;
    char bar[64], loss[32];

    cli_get_ll(status, "sweep", &sweep);
    fprintf(out, "sweep %lld", sweep);
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(status, "name")))
        fprintf(out, " \"%s\"", cli_get_str(status, "name", ""));
    fprintf(out, "  state %s\n", cli_get_str(status, "state", "-"));

    if (!cli_get_ll(status, "done", &done))
        done = count_done(counts);
    if (cli_get_ll(status, "total", &total) && total > 0) {
        cli_fmt_bar(done, total, 30, bar, sizeof(bar));
        fprintf(out, "progress  %s %lld/%lld (%.1f%%)\n", bar, done, total,
                100.0 * (double)done / (double)total);
    } else {
        fprintf(out, "progress  %lld done (unbounded)\n", done);
    }

    fprintf(out, "trials   ");
    for (size_t i = 0; i < NSTATES; i++)
        fprintf(out, " %s %lld", trial_states[i],
                cli_get_ll(counts, trial_states[i], &n) ? n : 0);
    fprintf(out, "\n");

    long long best_trial;
    cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(status, "best_loss"), loss, sizeof(loss));
    if (cli_get_ll(status, "best_trial", &best_trial))
        fprintf(out, "best      loss %s (trial %lld)\n", loss, best_trial);
    else
        fprintf(out, "best      loss %s\n", loss);
}

/* Runs a request whose only argument is SWEEP, taking min_pos to max_pos
 * (0 or 1) of them. Returns 1 with *reply set (owned by the caller) when the
 * caller should print the reply as text. Returns 0 with *rc set when the
 * command is over: an error, --help, or --json output already printed. */
static int query(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv, int min_pos,
                 int max_pos, cJSON **reply, long long *sweep, int *rc)
{
    const char *pos[1];
    int npos;
    char members[64] = "";

    *reply = NULL;
    *sweep = 0;
    *rc = cli_parse_args(ctx, cmd, argc, argv, NULL, pos, min_pos, max_pos, &npos);
    if (*rc != 0) {
        if (*rc < 0)
            *rc = CLI_EXIT_OK; /* --help */
        return 0;
    }
    if (npos == 1) {
        if ((*rc = cli_parse_sweep(cmd, pos[0], sweep)) != 0)
            return 0;
        snprintf(members, sizeof(members), "\"sweep\":%lld", *sweep);
    }
    if ((*rc = cli_call_once(ctx, cmd->name, members[0] ? members : NULL, reply)) != 0)
        return 0;
    if (ctx->json) {
        *rc = cli_print_json(*reply);
        cJSON_Delete(*reply);
        *reply = NULL;
        return 0;
    }
    return 1;
}

/* Formats a creation time: seconds since the epoch as local "YYYY-MM-DD
 * HH:MM"; any other value as it is. */
static void fmt_created(const cJSON *v, char *buf, size_t size)
{
    struct tm tm;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        time_t t = (time_t)v->valuedouble;
        if (localtime_r(&t, &tm) != NULL && strftime(buf, size, "%Y-%m-%d %H:%M", &tm) > 0)
            return;
    }
    cli_fmt_scalar(v, "-", buf, size);
}

int cli_cmd_list(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    cJSON *reply;
    long long sweep;
    int rc;
    if (!query(ctx, cmd, argc, argv, 0, 0, &reply, &sweep, &rc))
        return rc;

    static const char *const headers[] = {"sweep",   "name",      "state",  "method",
                                          "done",    "running",   "failed", "created"};
    static const unsigned char right[] = {1, 0, 0, 0, 1, 1, 1, 0};
    const cJSON *sweeps = cJSON_GetObjectItemCaseSensitive(reply, "sweeps");
    const cJSON *s;
    cli_table table;

    cli_table_init(&table, 8, headers, right);
    cJSON_ArrayForEach(s, sweeps) {
        const cJSON *counts = cJSON_GetObjectItemCaseSensitive(s, "counts");
        char id[32], progress[64], running[32], failed[32], created[64];
        long long v;
        snprintf(id, sizeof(id), "%lld", cli_get_ll(s, "sweep", &v) ? v : 0);
        snprintf(running, sizeof(running), "%lld", cli_get_ll(counts, "running", &v) ? v : 0);
        snprintf(failed, sizeof(failed), "%lld", cli_get_ll(counts, "failed", &v) ? v : 0);
        fmt_created(cJSON_GetObjectItemCaseSensitive(s, "created"), created, sizeof(created));
        const char *cells[] = {id, cli_get_str(s, "name", "-"), cli_get_str(s, "state", "-"),
                               cli_get_str(s, "method", "-"), fmt_progress(s, progress,
                               sizeof(progress)), running, failed, created};
        cli_table_add(&table, cells);
    }
    rc = cli_table_finish(&table, "no sweeps; submit one with 'sweepctl submit SPEC.json'",
                          stdout);
    cJSON_Delete(reply);
    return rc;
}

int cli_cmd_status(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    cJSON *reply;
    long long sweep;
    int rc;
    if (!query(ctx, cmd, argc, argv, 0, 1, &reply, &sweep, &rc))
        return rc;

    /* Without SWEEP the daemon may reply with one status per sweep. */
    const cJSON *sweeps = cJSON_GetObjectItemCaseSensitive(reply, "sweeps");
    if (cJSON_IsArray(sweeps)) {
        const cJSON *s;
        int first = 1;
        cJSON_ArrayForEach(s, sweeps) {
            if (!first)
                printf("\n");
            cli_print_status(s, stdout);
            first = 0;
        }
        if (first)
            printf("no sweeps; submit one with 'sweepctl submit SPEC.json'\n");
    } else {
        cli_print_status(reply, stdout);
    }
    cJSON_Delete(reply);
    return CLI_EXIT_OK;
}

/* The most --where conditions; sweepd accepts 16 per request. */
#define MAX_WHERE 16

/* Converts NAME=VALUE to a member of where: "true" and "false" become
 * booleans, text that parses whole as a finite number becomes a number, and
 * anything else stays a string. trial_params stores numeric text as a number
 * too, so "3" matches a parameter value of 3. Returns 0, or a usage error. */
static int add_where(const cli_command *cmd, cJSON *where, const char *text)
{
    const char *eq = strchr(text, '=');
    if (eq == NULL || eq == text)
        return cli_usage_error(cmd, "invalid --where '%s': expected NAME=VALUE, e.g. optimizer=adam",
                               text);
    char name[256];
    if ((size_t)(eq - text) >= sizeof(name))
        return cli_usage_error(cmd, "invalid --where '%s': the name is longer than %zu bytes", text,
                               sizeof(name) - 1);
    memcpy(name, text, (size_t)(eq - text));
    name[eq - text] = '\0';
    if (cJSON_GetObjectItemCaseSensitive(where, name) != NULL)
        return cli_usage_error(cmd, "--where names %s twice; give one value per parameter", name);

    const char *value = eq + 1;
    char *end;
    double number = strtod(value, &end);
    cJSON *item;
    if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
        item = cJSON_CreateBool(strcmp(value, "true") == 0);
    else if (value[0] != '\0' && *end == '\0' && isfinite(number))
        item = cJSON_CreateNumber(number);
    else
        item = cJSON_CreateString(value);
    if (item == NULL || !cJSON_AddItemToObject(where, name, item)) {
        cJSON_Delete(item);
        fprintf(stderr, "sweepctl: out of memory building --where\n");
        return CLI_EXIT_PROTOCOL;
    }
    return 0;
}

/* Builds the members of a trials request. Returns the text (caller frees)
 * or NULL after printing why, with *rc set. state and sort were checked
 * against fixed word lists, so they need no JSON escaping. */
static char *trials_members(const cli_command *cmd, long long sweep, const char *state,
                            const char *sort, long long limit, long long offset,
                            const char *const *wheres, int nwhere, int *rc)
{
    char head[256];
    int n = snprintf(head, sizeof(head), "\"sweep\":%lld", sweep);
    if (state != NULL)
        n += snprintf(head + n, sizeof(head) - (size_t)n, ",\"state\":\"%s\"", state);
    if (sort != NULL)
        n += snprintf(head + n, sizeof(head) - (size_t)n, ",\"sort\":\"%s\"", sort);
    if (limit >= 0)
        n += snprintf(head + n, sizeof(head) - (size_t)n, ",\"limit\":%lld", limit);
    if (offset >= 0)
        snprintf(head + n, sizeof(head) - (size_t)n, ",\"offset\":%lld", offset);

    cJSON *where = cJSON_CreateObject();
    *rc = where ? 0 : CLI_EXIT_PROTOCOL;
    for (int i = 0; i < nwhere && *rc == 0; i++)
        *rc = add_where(cmd, where, wheres[i]);
    char *where_text = *rc == 0 && nwhere > 0 ? cJSON_PrintUnformatted(where) : NULL;
    cJSON_Delete(where);
    if (*rc != 0)
        return NULL;
    if (nwhere > 0 && where_text == NULL) {
        *rc = CLI_EXIT_PROTOCOL;
        fprintf(stderr, "sweepctl: out of memory building --where\n");
        return NULL;
    }

    size_t size = strlen(head) + (where_text ? strlen(where_text) : 0) + 16;
    char *members = malloc(size);
    if (members == NULL) {
        *rc = CLI_EXIT_PROTOCOL;
        fprintf(stderr, "sweepctl: out of memory building the request\n");
    } else if (where_text != NULL) {
        snprintf(members, size, "%s,\"where\":%s", head, where_text);
    } else {
        snprintf(members, size, "%s", head);
    }
    cJSON_free(where_text);
    return members;
}

int cli_cmd_trials(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *state = NULL, *sort = NULL, *limit_text = NULL, *offset_text = NULL;
    const char *wheres[MAX_WHERE];
    int nwhere = 0;
    const cli_opt opts[] = {
        {"state", &state, NULL, NULL, NULL, 0},
        {"sort", &sort, NULL, NULL, NULL, 0},
        {"limit", &limit_text, NULL, NULL, NULL, 0},
        {"offset", &offset_text, NULL, NULL, NULL, 0},
        {"where", NULL, NULL, wheres, &nwhere, MAX_WHERE},
        {NULL, NULL, NULL, NULL, NULL, 0},
    };
    const char *pos[1];
    int npos;
    long long sweep, limit = -1, offset = -1;

    int rc = cli_parse_args(ctx, cmd, argc, argv, opts, pos, 1, 1, &npos);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = cli_parse_sweep(cmd, pos[0], &sweep)) != 0)
        return rc;
    if (state != NULL && !in_list(state, trial_states, NSTATES))
        return cli_usage_error(cmd, "invalid --state '%s': expected pending, running, "
                                    "completed, diverged, failed or cancelled", state);
    if (sort != NULL && !in_list(sort, sort_keys, 4))
        return cli_usage_error(cmd, "invalid --sort '%s': expected id, final_loss, best_loss "
                                    "or seconds", sort);
    if (limit_text != NULL && (rc = cli_parse_count(cmd, "--limit", limit_text, &limit)) != 0)
        return rc;
    if (offset_text != NULL &&
        (rc = cli_parse_count(cmd, "--offset", offset_text, &offset)) != 0)
        return rc;
    char *members = trials_members(cmd, sweep, state, sort, limit, offset, wheres, nwhere, &rc);
    if (members == NULL)
        return rc;

    cJSON *reply;
    rc = cli_call_once(ctx, "trials", members, &reply);
    free(members);
    if (rc != 0)
        return rc;
    if (ctx->json) {
        rc = cli_print_json(reply);
        cJSON_Delete(reply);
        return rc;
    }

    static const char *const headers[] = {"trial", "state",   "attempts", "final_loss",
                                          "best_loss", "steps", "seconds", "worker",
                                          "parameters"};
    static const unsigned char right[] = {1, 0, 1, 1, 1, 1, 1, 0, 0};
    const cJSON *trials = cJSON_GetObjectItemCaseSensitive(reply, "trials");
    const cJSON *t;
    cli_table table;

    cli_table_init(&table, 9, headers, right);
    cJSON_ArrayForEach(t, trials) {
        char id[32], attempts[32], final[32], best[32], steps[32], seconds[32], worker[128];
        char params[2048];
        double secs;
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(t, "trial"), "-", id, sizeof(id));
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(t, "attempts"), "-", attempts,
                       sizeof(attempts));
        cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(t, "final_loss"), final, sizeof(final));
        cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(t, "best_loss"), best, sizeof(best));
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(t, "steps"), "-", steps, sizeof(steps));
        if (cli_get_double(t, "seconds", &secs) && isfinite(secs))
            snprintf(seconds, sizeof(seconds), "%.1f", secs);
        else
            snprintf(seconds, sizeof(seconds), "-");
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(t, "worker"), "-", worker,
                       sizeof(worker));
        const char *cells[] = {id, cli_get_str(t, "state", "-"), attempts, final, best, steps,
                               seconds, worker,
                               cli_fmt_params(cJSON_GetObjectItemCaseSensitive(t, "params"),
                                              params, sizeof(params))};
        cli_table_add(&table, cells);
    }
    rc = cli_table_finish(&table, "no trials match", stdout);
    cJSON_Delete(reply);
    return rc;
}

/* Formats a worker's "step/steps", or "-" when it has no trial. */
static const char *fmt_step(const cJSON *w, char *buf, size_t size)
{
    long long step, steps;
    if (!cli_get_ll(w, "step", &step))
        snprintf(buf, size, "-");
    else if (cli_get_ll(w, "steps", &steps))
        snprintf(buf, size, "%lld/%lld", step, steps);
    else
        snprintf(buf, size, "%lld", step);
    return buf;
}

int cli_workers_table(const cJSON *workers, cli_table *table)
{
    static const char *const headers[] = {"worker", "host", "pid", "state", "trial",
                                          "step", "loss", "tokens/s", "heartbeat"};
    static const unsigned char right[] = {0, 0, 1, 0, 1, 1, 1, 1, 1};
    const cJSON *w;

    cli_table_init(table, 9, headers, right);
    cJSON_ArrayForEach(w, workers) {
        char pid[32], trial[32], step[64], loss[32], rate[32], age[32];
        double v;
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(w, "pid"), "-", pid, sizeof(pid));
        const cJSON *trial_item = cJSON_GetObjectItemCaseSensitive(w, "trial");
        cli_fmt_scalar(trial_item, "-", trial, sizeof(trial));
        cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(w, "loss"), loss, sizeof(loss));

        /* An idle worker's last heartbeat carries step 0 and loss nan, which
         * would read as a diverged run; it trains nothing, so show dashes. */
        int idle = trial_item == NULL || cJSON_IsNull(trial_item);
        if (cli_get_double(w, "tokens_per_s", &v) && isfinite(v))
            snprintf(rate, sizeof(rate), "%.0f", v);
        else
            snprintf(rate, sizeof(rate), "-");
        if (cli_get_double(w, "heartbeat_age_ms", &v) && isfinite(v))
            snprintf(age, sizeof(age), "%.1fs", v / 1000.0);
        else
            snprintf(age, sizeof(age), "-");
        const char *cells[] = {cli_get_str(w, "worker", "-"), cli_get_str(w, "host", "-"),
                               pid, cli_get_str(w, "state", "-"), trial,
                               idle ? "-" : fmt_step(w, step, sizeof(step)),
                               idle ? "-" : loss, rate, age};
        if (cli_table_add(table, cells) != 0)
            return -1;
    }
    return 0;
}

int cli_cmd_workers(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    cJSON *reply;
    long long sweep;
    int rc;
    if (!query(ctx, cmd, argc, argv, 0, 0, &reply, &sweep, &rc))
        return rc;

    cli_table table;
    cli_workers_table(cJSON_GetObjectItemCaseSensitive(reply, "workers"), &table);
    rc = cli_table_finish(&table, "no workers connected; start one with "
                                  "'sweep-worker --connect ADDR'", stdout);
    cJSON_Delete(reply);
    return rc;
}

int cli_cmd_control(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    cJSON *reply;
    long long sweep;
    int rc;
    if (!query(ctx, cmd, argc, argv, 1, 1, &reply, &sweep, &rc))
        return rc;
    printf("sweep %lld: %s\n", sweep, cli_get_str(reply, "state", "-"));
    cJSON_Delete(reply);
    return rc;
}
