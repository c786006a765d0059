/* Read-only queries behind the status, trials and tickets operations. They
 * prepare their statements per call (these operations are rare next to leases)
 * and build reply fields into a cJSON object. Counts come from the sweep cache
 * and its group counts. Losses come from the covering indexes trials(sweep,
 * state, final_loss) and trial_params(sweep, name, value, state, final_loss),
 * so a 1M-trial sweep is summarised without reading table rows.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "store.h"
#include "tickets.h"

static int query_fail(sqlite3 *db, int rc, const char *what)
{
    log_error("store", "%s failed: %s (sqlite %d)", what, sqlite3_errmsg(db), rc);
    return rc == SQLITE_NOMEM ? STORE_ERR_NOMEM : STORE_ERR_IO;
}

/* Adds a column value (integer, real, text or null) to obj under name. */
static cJSON *add_column(cJSON *obj, const char *name, sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_INTEGER:
        return cJSON_AddNumberToObject(obj, name, (double)sqlite3_column_int64(s, col));
    case SQLITE_FLOAT:
        return store_json_add_loss(obj, name, sqlite3_column_double(s, col));
    case SQLITE_TEXT:
        return cJSON_AddStringToObject(obj, name, (const char *)sqlite3_column_text(s, col));
    default:
        return cJSON_AddNullToObject(obj, name);
    }
}

int store_query_status(store *st, store_sweep *sw, cJSON *obj)
{
    sqlite3 *db = store_db(st);
    cJSON_AddNumberToObject(obj, "sweep", (double)sw->id);
    cJSON_AddStringToObject(obj, "name", sw->name);
    cJSON_AddStringToObject(obj, "state", store_sweep_state_name(sw->state));
    cJSON_AddStringToObject(obj, "method", sw->spec && spec_method(sw->spec) == SPEC_GRID ? "grid" : "random");
    cJSON *counts = cJSON_AddObjectToObject(obj, "counts");
    int64_t done = 0;
    for (int i = 0; i < TRIAL_STATE_COUNT; i++) {
        cJSON_AddNumberToObject(counts, store_trial_state_name((enum trial_state)i), (double)sw->counts[i]);
        if (i >= TRIAL_COMPLETED)
            done += sw->counts[i];
    }
    cJSON_AddNumberToObject(obj, "done", (double)done);
    if (sw->bounded)
        cJSON_AddNumberToObject(obj, "total", (double)sw->size);
    else
        cJSON_AddNullToObject(obj, "total");
    cJSON_AddNumberToObject(obj, "created", (double)sw->created_ms / 1000.0);
    if (!cJSON_GetObjectItem(obj, "done"))
        return STORE_ERR_NOMEM;

    /* Best by the covering index: the first or last completed final_loss. */
    int maximize = sw->spec && spec_metric_maximize(sw->spec);
    const char *sql = maximize
        ? "SELECT id, final_loss FROM trials WHERE sweep = ?1 AND state = 'completed' "
          "ORDER BY final_loss DESC LIMIT 1"
        : "SELECT id, final_loss FROM trials WHERE sweep = ?1 AND state = 'completed' "
          "ORDER BY final_loss LIMIT 1";
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return query_fail(db, rc, "preparing the status query");
    sqlite3_bind_int64(s, 1, sw->id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store_json_add_loss(obj, "best_loss", sqlite3_column_double(s, 1));
        cJSON_AddNumberToObject(obj, "best_trial", (double)sqlite3_column_int64(s, 0));
    } else if (rc == SQLITE_DONE) {
        cJSON_AddNullToObject(obj, "best_loss");
        cJSON_AddNullToObject(obj, "best_trial");
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return query_fail(db, rc, "reading the best trial");
    return 0;
}

int store_query_trials(store *st, const store_trials_query *query, cJSON *obj)
{
    sqlite3 *db = store_db(st);

    /* sort was checked against this list by the caller; unknown names fall
     * back to id so no text from the request reaches the SQL. */
    const char *sort = query->sort;
    const char *order = "id";
    if (sort && strcmp(sort, "final_loss") == 0)
        order = "final_loss IS NULL, final_loss";
    else if (sort && strcmp(sort, "best_loss") == 0)
        order = "best_loss IS NULL, best_loss";
    else if (sort && strcmp(sort, "seconds") == 0)
        order = "seconds IS NULL, seconds";
    if (query->where_count > STORE_MAX_PARAM_MATCHES)
        return STORE_ERR_STATE;

    /* Each parameter condition is a seek on the trial_params primary key
     * (trial, name) for each candidate trial, so a small page of a large
     * sweep stays cheap. Its placeholders are ?6 and up, two per condition. */
    char sql[4096];
    int n = snprintf(sql, sizeof(sql),
                     "SELECT id, idx, state, attempt, params, final_loss, best_loss, steps, seconds, worker, "
                     "requeues, failures, checkpoint, checkpoint_step, error FROM trials "
                     "WHERE sweep = ?1 AND (?2 IS NULL OR state = ?2) AND id > ?4");
    for (size_t i = 0; i < query->where_count; i++)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n,
                      " AND EXISTS (SELECT 1 FROM trial_params WHERE trial = trials.id AND name = ?%zu AND value = ?%zu)",
                      6 + 2 * i, 7 + 2 * i);
    snprintf(sql + n, sizeof(sql) - (size_t)n, " ORDER BY %s, id LIMIT ?3 OFFSET ?5", order);

    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return query_fail(db, rc, "preparing the trials query");
    sqlite3_bind_int64(s, 1, query->sweep);
    if (query->state >= 0)
        sqlite3_bind_text(s, 2, store_trial_state_name((enum trial_state)query->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, query->limit);
    sqlite3_bind_int64(s, 4, query->after);
    sqlite3_bind_int64(s, 5, query->offset);
    for (size_t i = 0; i < query->where_count; i++) {
        sqlite3_bind_text(s, (int)(6 + 2 * i), query->where[i].name, -1, SQLITE_STATIC);
        int bound = store_bind_param_value(s, (int)(7 + 2 * i), query->where[i].value);
        if (bound != 0) {
            sqlite3_finalize(s);
            return bound < 0 ? bound : STORE_ERR_STATE; /* the caller lets only scalars through */
        }
    }

    cJSON *list = cJSON_AddArrayToObject(obj, "trials");
    int err = list ? 0 : STORE_ERR_NOMEM;
    while (err == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        cJSON *t = cJSON_CreateObject();
        if (!t || !cJSON_AddItemToArray(list, t)) {
            cJSON_Delete(t);
            err = STORE_ERR_NOMEM;
            break;
        }
        cJSON_AddNumberToObject(t, "trial", (double)sqlite3_column_int64(s, 0));
        cJSON_AddNumberToObject(t, "index", (double)sqlite3_column_int64(s, 1));
        add_column(t, "state", s, 2);
        cJSON_AddNumberToObject(t, "attempts", (double)sqlite3_column_int64(s, 3));
        const char *params = (const char *)sqlite3_column_text(s, 4);
        cJSON *parsed = params ? cJSON_Parse(params) : NULL;
        cJSON_AddItemToObject(t, "params", parsed ? parsed : cJSON_CreateNull());
        add_column(t, "final_loss", s, 5);
        add_column(t, "best_loss", s, 6);
        add_column(t, "steps", s, 7);
        add_column(t, "seconds", s, 8);
        add_column(t, "worker", s, 9);
        add_column(t, "requeues", s, 10);
        add_column(t, "failures", s, 11);
        add_column(t, "checkpoint", s, 12);
        add_column(t, "checkpoint_step", s, 13);
        add_column(t, "error", s, 14);
    }
    sqlite3_finalize(s);
    if (err == 0 && rc != SQLITE_DONE)
        return query_fail(db, rc, "listing trials");
    return err;
}

/* Adds the fields of one tickets group to obj. */
static void add_summary(cJSON *obj, const tickets_summary *sum)
{
    cJSON_AddNumberToObject(obj, "finished", (double)sum->finished);
    cJSON_AddNumberToObject(obj, "completed", (double)sum->completed);
    cJSON_AddNumberToObject(obj, "diverged", (double)sum->diverged);
    cJSON_AddNumberToObject(obj, "winners", (double)sum->winners);
    cJSON_AddNumberToObject(obj, "fraction", sum->fraction);
    cJSON_AddNumberToObject(obj, "ci_low", sum->low);
    cJSON_AddNumberToObject(obj, "ci_high", sum->high);
    if (sum->has_loss) {
        store_json_add_loss(obj, "best_loss", sum->best);
        store_json_add_loss(obj, "median_loss", sum->median);
    } else {
        cJSON_AddNullToObject(obj, "best_loss");
        cJSON_AddNullToObject(obj, "median_loss");
    }
    cJSON_AddNumberToObject(obj, "failed", (double)sum->failed);
    cJSON_AddNumberToObject(obj, "cancelled", (double)sum->cancelled);
}

/* The index queries behind one tickets summary. Placeholders: ?1 sweep,
 * ?2 threshold, ?3 parameter name, ?4 parameter value, ?5 limit, ?6 offset.
 * The overall statements read trials(sweep, state, final_loss); the group
 * statement reads trial_params(sweep, name, value, outcome, final_loss).
 * Every count is an index range and every loss an ordered position in one,
 * so nothing is loaded into memory. */
typedef struct summary_statements {
    sqlite3_stmt *winners; /* count of completed trials with final_loss < ?2 */
    sqlite3_stmt *ranked;  /* completed final losses in order, LIMIT ?5 OFFSET ?6 */
} summary_statements;

static const char *const overall_sql[2] = {
    "SELECT count(*) FROM trials WHERE sweep = ?1 AND state = 'completed' AND final_loss < ?2",
    "SELECT final_loss FROM trials WHERE sweep = ?1 AND state = 'completed' "
    "ORDER BY final_loss LIMIT ?5 OFFSET ?6",
};

/* One group's completed final losses in ascending order, with no limit: the
 * caller steps it only as far as it needs (see group_pass). */
static const char group_sql[] =
    "SELECT final_loss FROM trial_params WHERE sweep = ?1 AND name = ?3 AND value = ?4 "
    "AND outcome = 'completed' ORDER BY final_loss";

static int summary_prepare(sqlite3 *db, summary_statements *out)
{
    memset(out, 0, sizeof(*out));
    int rc = sqlite3_prepare_v2(db, overall_sql[0], -1, &out->winners, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, overall_sql[1], -1, &out->ranked, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(out->winners);
        out->winners = NULL;
        return query_fail(db, rc, "preparing the tickets queries");
    }
    return 0;
}

static void summary_finalize(summary_statements *stmts)
{
    sqlite3_finalize(stmts->winners);
    sqlite3_finalize(stmts->ranked);
}

/* Binds a cached group's value to placeholder ?4. */
static void bind_group_value(sqlite3_stmt *s, const store_group *g)
{
    if (g->type == SQLITE_TEXT)
        sqlite3_bind_text(s, 4, g->text, -1, SQLITE_STATIC);
    else if (g->type == SQLITE_INTEGER)
        sqlite3_bind_int64(s, 4, g->integer);
    else
        sqlite3_bind_double(s, 4, g->real);
}

/* Fills the counts of sum from counts per trial state (only the finished
 * states are read). The caller fills the winners, losses and interval. */
static void summary_counts(const int64_t counts[TRIAL_STATE_COUNT], tickets_summary *sum)
{
    memset(sum, 0, sizeof(*sum));
    sum->completed = (uint64_t)counts[TRIAL_COMPLETED];
    sum->diverged = (uint64_t)counts[TRIAL_DIVERGED];
    sum->failed = (uint64_t)counts[TRIAL_FAILED];
    sum->cancelled = (uint64_t)counts[TRIAL_CANCELLED];
    sum->finished = sum->completed + sum->diverged;
    sum->best = sum->median = NAN;
}

static void summary_interval(tickets_summary *sum)
{
    sum->fraction = sum->finished ? (double)sum->winners / (double)sum->finished : 0.0;
    tickets_wilson(sum->winners, sum->finished, &sum->low, &sum->high);
}

/* The median of n sorted losses is element (n-1)/2, averaged with the next
 * one when n is even. These return its first position and its length. */
static uint64_t median_first(uint64_t n) { return (n - 1) / 2; }
static uint64_t median_count(uint64_t n) { return n % 2 == 0 ? 2 : 1; }

/* Overall winners by a range count on the trials index. */
static int overall_winners(sqlite3 *db, summary_statements *stmts, int64_t sweep, double threshold,
                           uint64_t *winners)
{
    sqlite3_stmt *s = stmts->winners;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, sweep);
    sqlite3_bind_double(s, 2, threshold);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *winners = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : query_fail(db, rc, "counting winners");
}

/* Overall best and median by ordered offsets on the trials index: the first
 * entry, then the middle one or two. */
static int overall_losses(sqlite3 *db, summary_statements *stmts, int64_t sweep, tickets_summary *sum)
{
    uint64_t n = sum->completed;
    double values[2] = {NAN, NAN};
    sqlite3_stmt *s = stmts->ranked;
    for (int pass = 0; pass < 2; pass++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, sweep);
        sqlite3_bind_int64(s, 5, pass == 0 ? 1 : (int64_t)median_count(n));
        sqlite3_bind_int64(s, 6, pass == 0 ? 0 : (int64_t)median_first(n));
        double acc = 0.0;
        int64_t got = 0;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            acc += sqlite3_column_double(s, 0);
            got++;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return query_fail(db, rc, "reading the median");
        values[pass] = got ? acc / (double)got : NAN;
    }
    sum->has_loss = 1;
    sum->best = values[0];
    sum->median = values[1];
    return 0;
}

/* One ordered pass over a group's completed final losses that yields the
 * winners count, the best loss and the median together. Losses ascend, so
 * the winners are a prefix and the pass stops after max(winners + 1, median
 * position + 2) entries. That is about half the group, where a winners count
 * and a median offset each walked about half of it before. Completed trials
 * always have a finite final loss (a non-finite one makes the trial
 * diverged), so no entry is NULL. */
static int group_pass(sqlite3 *db, sqlite3_stmt *s, int64_t sweep, const char *name, const store_group *g,
                      double threshold, tickets_summary *sum)
{
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, sweep);
    sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
    bind_group_value(s, g);

    uint64_t n = sum->completed;
    uint64_t first = n ? median_first(n) : 0;
    uint64_t end = n ? first + median_count(n) : 0; /* one past the median entries */
    uint64_t pos = 0, got = 0;
    double acc = 0.0;
    int counting = 1; /* still inside the prefix below the threshold */
    int rc = SQLITE_DONE;
    while ((pos < end || counting) && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        double loss = sqlite3_column_double(s, 0);
        if (pos == 0)
            sum->best = loss;
        if (counting && loss < threshold)
            sum->winners++;
        else
            counting = 0;
        if (pos >= first && pos < end) {
            acc += loss;
            got++;
        }
        pos++;
    }
    if (rc == SQLITE_ROW)
        rc = SQLITE_DONE; /* stopped early on purpose */
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return query_fail(db, rc, "reading a group's losses");
    if (n > 0) {
        sum->has_loss = 1;
        sum->median = got ? acc / (double)got : NAN;
    }
    summary_interval(sum);
    return 0;
}

/* Adds the value of a group to obj. */
static void add_group_value(cJSON *obj, const store_group *g)
{
    if (g->type == SQLITE_TEXT)
        cJSON_AddStringToObject(obj, "value", g->text);
    else if (g->type == SQLITE_INTEGER)
        cJSON_AddNumberToObject(obj, "value", (double)g->integer);
    else
        cJSON_AddNumberToObject(obj, "value", g->real);
}

/* Grouped tickets: counts per parameter value from the store's group list
 * (cached in memory after the first request), then one ordered pass per
 * group on the trial_params index (group_pass). The cost grows with the
 * larger of each group's winners and half its completed trials, not with
 * the sweep's other trials. The groups' winners and best losses are summed
 * into *derived when the groups hold every completed trial of the sweep. */
typedef struct derived_overall {
    int complete;     /* the groups' completed counts add up to the sweep's */
    uint64_t winners; /* sum of the groups' winners */
    double best;      /* least of the groups' best losses; NAN if none */
} derived_overall;

static int tickets_grouped(store *st, store_sweep *sw, const char *by, double threshold, cJSON *groups,
                           derived_overall *derived)
{
    sqlite3 *db = store_db(st);
    store_group_list *list = NULL;
    int err = store_group_counts(st, sw, by, &list);
    if (err != 0)
        return err;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, group_sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        err = query_fail(db, rc, "preparing the grouped tickets query");
    uint64_t completed = 0;
    derived->winners = 0;
    derived->best = NAN;
    for (size_t i = 0; err == 0 && i < list->count; i++) {
        const store_group *g = &list->groups[i];
        int64_t finished = 0;
        for (int k = TRIAL_COMPLETED; k < TRIAL_STATE_COUNT; k++)
            finished += g->counts[k];
        if (finished == 0)
            continue; /* every trial of this value is pending or running */
        tickets_summary sum;
        summary_counts(g->counts, &sum);
        err = group_pass(db, s, sw->id, by, g, threshold, &sum);
        if (err != 0)
            break;
        completed += sum.completed;
        derived->winners += sum.winners;
        if (sum.has_loss && !(derived->best <= sum.best))
            derived->best = sum.best;
        cJSON *obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToArray(groups, obj)) {
            cJSON_Delete(obj);
            err = STORE_ERR_NOMEM;
            break;
        }
        add_group_value(obj, g);
        add_summary(obj, &sum);
    }
    sqlite3_finalize(s);
    derived->complete = err == 0 && completed == (uint64_t)sw->counts[TRIAL_COMPLETED];
    if (!list->cached)
        store_group_list_free(list);
    return err;
}

/* The overall summary: counts from the sweep cache, the median from the
 * trials index, and the winners and best loss from the groups when they hold
 * every completed trial (derived), else from the trials index too. */
static int tickets_overall(sqlite3 *db, store_sweep *sw, double threshold, const derived_overall *derived,
                           tickets_summary *sum)
{
    summary_statements stmts;
    int err = summary_prepare(db, &stmts);
    if (err != 0)
        return err;
    summary_counts(sw->counts, sum);
    if (derived && derived->complete)
        sum->winners = derived->winners;
    else
        err = overall_winners(db, &stmts, sw->id, threshold, &sum->winners);
    if (err == 0) {
        summary_interval(sum);
        if (sum->completed > 0)
            err = overall_losses(db, &stmts, sw->id, sum);
    }
    summary_finalize(&stmts);
    return err;
}

int store_query_tickets(store *st, int64_t sweep, double threshold, const char *by, cJSON *obj)
{
    store_sweep *sw = store_sweep_find(st, sweep);
    if (!sw)
        return STORE_ERR_NOT_FOUND;
    /* The groups go first so the overall summary can reuse their sums; the
     * reply still lists "overall" before "groups". */
    cJSON *groups = NULL;
    derived_overall derived = {0};
    int err = 0;
    if (by) {
        groups = cJSON_CreateArray();
        err = groups ? tickets_grouped(st, sw, by, threshold, groups, &derived) : STORE_ERR_NOMEM;
    }
    tickets_summary overall;
    if (err == 0)
        err = tickets_overall(store_db(st), sw, threshold, by ? &derived : NULL, &overall);
    cJSON *o = err == 0 ? cJSON_AddObjectToObject(obj, "overall") : NULL;
    if (err == 0 && !o)
        err = STORE_ERR_NOMEM;
    if (err == 0)
        add_summary(o, &overall);
    if (err == 0 && groups) {
        if (!cJSON_AddItemToObject(obj, "groups", groups))
            err = STORE_ERR_NOMEM;
        else
            groups = NULL;
    }
    cJSON_Delete(groups);
    return err;
}
