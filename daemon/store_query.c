/* Read-only queries behind the status, trials and tickets operations. They
 * prepare their statements per call (these operations are rare next to leases)
 * and build reply fields into a cJSON object. Status and tickets read the
 * sweep cache: counts per state, the completed trials' final losses and the
 * best trial, and per parameter value the group lists of store_group_counts.
 * A 1M-trial sweep is summarised without reading a row.
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
    (void)st;
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

    if (sw->best_trial != 0) {
        store_json_add_loss(obj, "best_loss", sw->best_loss);
        cJSON_AddNumberToObject(obj, "best_trial", (double)sw->best_trial);
    } else {
        cJSON_AddNullToObject(obj, "best_loss");
        cJSON_AddNullToObject(obj, "best_trial");
    }
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

/* Counts per finished state from counts per trial state. */
static tickets_counts finished_counts(const int64_t counts[TRIAL_STATE_COUNT])
{
    return (tickets_counts){
        .completed = (uint64_t)counts[TRIAL_COMPLETED],
        .diverged = (uint64_t)counts[TRIAL_DIVERGED],
        .failed = (uint64_t)counts[TRIAL_FAILED],
        .cancelled = (uint64_t)counts[TRIAL_CANCELLED],
    };
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

/* Grouped tickets: one summary per value of parameter by that has a finished
 * trial, from the store's group list (cached in memory after the first
 * request). Each summary is linear in the value's completed trials. */
static int tickets_grouped(store *st, store_sweep *sw, const char *by, double threshold, cJSON *groups)
{
    store_group_list *list = NULL;
    int err = store_group_counts(st, sw, by, &list);
    if (err != 0)
        return err;
    for (size_t i = 0; i < list->count; i++) {
        store_group *g = &list->groups[i];
        int64_t finished = 0;
        for (int k = TRIAL_COMPLETED; k < TRIAL_STATE_COUNT; k++)
            finished += g->counts[k];
        if (finished == 0)
            continue; /* every trial of this value is pending or running */
        tickets_counts counts = finished_counts(g->counts);
        tickets_summary sum;
        tickets_summarize(&counts, &g->losses, threshold, &sum);
        cJSON *obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToArray(groups, obj)) {
            cJSON_Delete(obj);
            err = STORE_ERR_NOMEM;
            break;
        }
        add_group_value(obj, g);
        add_summary(obj, &sum);
    }
    if (!list->cached)
        store_group_list_free(list);
    return err;
}

int store_query_tickets(store *st, int64_t sweep, double threshold, const char *by, cJSON *obj)
{
    store_sweep *sw = store_sweep_find(st, sweep);
    if (!sw)
        return STORE_ERR_NOT_FOUND;
    tickets_counts counts = finished_counts(sw->counts);
    tickets_summary overall;
    tickets_summarize(&counts, &sw->losses, threshold, &overall);
    cJSON *o = cJSON_AddObjectToObject(obj, "overall");
    if (!o)
        return STORE_ERR_NOMEM;
    add_summary(o, &overall);
    if (!by)
        return 0;
    cJSON *groups = cJSON_AddArrayToObject(obj, "groups");
    if (!groups)
        return STORE_ERR_NOMEM;
    return tickets_grouped(st, sw, by, threshold, groups);
}
