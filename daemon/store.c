/* SQLite storage for sweepd: schema migrations, trial transitions, queries.
 *
 * Tables (schema/0001_initial.sql; times in ms since the epoch, losses in nats):
 *   sweeps(id, name, state, method, spec, seed, size, target_reached, created_ms, ended_ms)
 *   trials(id, sweep, idx, state, params, attempt, lease, worker, requeues, failures,
 *          checkpoint, checkpoint_step, final_loss, best_loss, steps, seconds, error, ...)
 *   attempts(trial, attempt, lease, worker, started_ms, ended_ms, outcome, steps, checkpoint, ...)
 *   metrics(trial, step, attempt, train_loss, val_loss)     one row per (trial, step)
 *   trial_params(trial, name, sweep, value, outcome, final_loss)
 *          flattened scalar parameters; outcome and final_loss are copied from
 *          the trial when it finishes
 *   workers(name, host, pid, first_seen_ms, last_seen_ms, state), events(...)
 *
 * Trial states and the function performing each transition:
 *
 *   (none) --store_trial_lease--> running            new index, attempt 1
 *   pending --store_trial_lease--> running           attempt + 1, new lease token
 *   running --store_trial_complete--> completed      (diverged when final_loss is not finite)
 *   running --store_trial_diverged--> diverged
 *   running --store_trial_failed--> pending | failed (failed once failures >= max_failures)
 *   running --store_trial_requeue--> pending | failed (failed once requeues > max_requeues)
 *   pending, running --store_sweep_cancel--> cancelled
 *   pending --(target reached in store_trial_complete)--> cancelled
 *
 * Invariants:
 *   1. A trial is running iff trials.lease is not NULL; its attempts row for
 *      trials.attempt has outcome NULL, and every other attempts row has one.
 *   2. (sweep, idx) is unique, and idx < sweeps.size for bounded sweeps; the
 *      next index to create is max(idx) + 1, so it is never stored apart.
 *   3. Every write happens inside the current group-commit transaction, and
 *      the server sends no reply about a write before store_commit() returned 0
 *      and, in durable mode, a store_wal_sync() begun after it returned 0.
 *   4. The cached counts of a sweep equal SELECT state, count(*) ... GROUP BY
 *      state for it, except inside an uncommitted transaction.
 *   5. trial_params.outcome is NULL while the trial is pending or running and
 *      equals trials.state once it finished; final_loss equals the trial's.
 *      trial_end and the cancel paths write them with trials.state.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>
#include <uv.h>

#include "json_kinds.h"
#include "log.h"
#include "wal_sync.h"

/* Prepared statements, compiled once at open. */
#define STORE_STATEMENTS(X)                                                                       \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                   \
    X(COMMIT, "COMMIT")                                                                           \
    X(ROLLBACK, "ROLLBACK")                                                                       \
    X(SWEEP_INSERT, "INSERT INTO sweeps (name, state, method, spec, seed, size, created_ms) "    \
                    "VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6)")                                 \
    X(SWEEP_SET_STATE, "UPDATE sweeps SET state = ?2, ended_ms = ?3 WHERE id = ?1")              \
    X(SWEEP_SET_TARGET, "UPDATE sweeps SET target_reached = 1 WHERE id = ?1")                     \
    X(PENDING_PICK, "SELECT t.id FROM trials t JOIN sweeps s ON s.id = t.sweep "                 \
                    "WHERE t.state = 'pending' AND s.state = 'running' "                          \
                    "AND s.target_reached = 0 ORDER BY t.id LIMIT 1")                             \
    X(TRIAL_FOR_LEASE, "SELECT sweep, idx, params, attempt, checkpoint, checkpoint_step "        \
                       "FROM trials WHERE id = ?1")                                               \
    X(TRIAL_INSERT, "INSERT INTO trials (sweep, idx, state, params, attempt, lease, worker, "    \
                    "created_ms) VALUES (?1, ?2, 'running', ?3, 1, ?4, ?5, ?6)")                  \
    X(TRIAL_START, "UPDATE trials SET state = 'running', attempt = ?2, lease = ?3, worker = ?4 " \
                   "WHERE id = ?1")                                                               \
    X(ATTEMPT_INSERT, "INSERT INTO attempts (trial, attempt, lease, worker, started_ms) "        \
                      "VALUES (?1, ?2, ?3, ?4, ?5)")                                              \
    X(PARAM_INSERT, "INSERT INTO trial_params (trial, name, sweep, value) VALUES (?4, ?2, ?1, ?3)") \
    X(PARAMS_END, "UPDATE trial_params SET outcome = ?2, final_loss = ?3 WHERE trial = ?1")     \
    X(PARAMS_OF_TRIAL, "SELECT name, value FROM trial_params WHERE trial = ?1")                   \
    X(PARAMS_CANCEL, "UPDATE trial_params SET outcome = 'cancelled' WHERE trial IN "              \
                     "(SELECT id FROM trials WHERE sweep = ?1 AND state IN ('pending', 'running'))") \
    X(PARAMS_CANCEL_PENDING, "UPDATE trial_params SET outcome = 'cancelled' WHERE trial IN "      \
                             "(SELECT id FROM trials WHERE sweep = ?1 AND state = 'pending')")    \
    X(GROUP_ROWS, "SELECT value, outcome, final_loss FROM trial_params WHERE sweep = ?1 "         \
                  "AND name = ?2 AND outcome IS NOT NULL")                                        \
    X(GROUP_ROWS_SORTED, "SELECT value, outcome, final_loss FROM trial_params WHERE sweep = ?1 "  \
                         "AND name = ?2 AND outcome IS NOT NULL ORDER BY value")                  \
    X(TRIAL_GET, "SELECT state, attempt, lease, sweep, requeues, failures, checkpoint, "         \
                 "checkpoint_step FROM trials WHERE id = ?1")                                     \
    X(METRIC_INSERT, "INSERT OR IGNORE INTO metrics (trial, step, attempt, train_loss, val_loss) " \
                     "VALUES (?1, ?2, ?3, ?4, ?5)")                                               \
    X(TRIAL_CHECKPOINT, "UPDATE trials SET checkpoint = ?2, checkpoint_step = ?3 WHERE id = ?1") \
    X(ATTEMPT_CHECKPOINT, "UPDATE attempts SET checkpoint = ?3, checkpoint_step = ?4 "           \
                          "WHERE trial = ?1 AND attempt = ?2")                                    \
    X(TRIAL_END, "UPDATE trials SET state = ?2, lease = NULL, final_loss = ?3, best_loss = ?4, " \
                 "steps = ?5, seconds = ?6, error = ?7, ended_ms = ?8 WHERE id = ?1")             \
    X(TRIAL_TO_PENDING, "UPDATE trials SET state = 'pending', lease = NULL, requeues = ?2, "     \
                        "failures = ?3, error = ?4 WHERE id = ?1")                                \
    X(TRIAL_SET_COUNTERS, "UPDATE trials SET requeues = ?2, failures = ?3 WHERE id = ?1")      \
    X(ATTEMPT_END, "UPDATE attempts SET ended_ms = ?3, outcome = ?4, steps = ?5, error = ?6 "    \
                   "WHERE trial = ?1 AND attempt = ?2")                                           \
    X(SWEEP_RUNNING_TRIALS, "SELECT id, attempt FROM trials WHERE sweep = ?1 AND state = 'running'") \
    X(SWEEP_CANCEL_TRIALS, "UPDATE trials SET state = 'cancelled', lease = NULL, ended_ms = ?2 " \
                           "WHERE sweep = ?1 AND state IN ('pending', 'running')")                \
    X(SWEEP_CANCEL_PENDING, "UPDATE trials SET state = 'cancelled', ended_ms = ?2 "              \
                            "WHERE sweep = ?1 AND state = 'pending'")                             \
    X(ALL_RUNNING, "SELECT id, sweep, attempt, lease, worker FROM trials WHERE state = 'running' " \
                   "ORDER BY id")                                                                 \
    X(WORKER_SEEN, "INSERT INTO workers (name, host, pid, first_seen_ms, last_seen_ms, state) "  \
                   "VALUES (?1, ?2, ?3, ?5, ?5, ?4) ON CONFLICT (name) DO UPDATE SET "           \
                   "host = coalesce(?2, host), pid = coalesce(?3, pid), state = ?4, "             \
                   "last_seen_ms = ?5")                                                           \
    X(EVENT_INSERT, "INSERT INTO events (at_ms, kind, sweep, trial, worker, detail) "            \
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                            \
    X(LOAD_SWEEPS, "SELECT id, name, state, spec, seed, size, target_reached, created_ms "       \
                   "FROM sweeps ORDER BY id")                                                     \
    X(LOAD_COUNTS, "SELECT state, count(*) FROM trials WHERE sweep = ?1 GROUP BY state")         \
    X(LOAD_LOSSES, "SELECT id, final_loss FROM trials WHERE sweep = ?1 AND state = 'completed'") \
    X(LOAD_NEXT_INDEX, "SELECT max(idx) FROM trials WHERE sweep = ?1")

enum store_statement {
#define STORE_STATEMENT_ENUM(name, sql) ST_##name,
    STORE_STATEMENTS(STORE_STATEMENT_ENUM)
#undef STORE_STATEMENT_ENUM
    ST_COUNT
};

static const char *const statement_sql[] = {
#define STORE_STATEMENT_SQL(name, sql) sql,
    STORE_STATEMENTS(STORE_STATEMENT_SQL)
#undef STORE_STATEMENT_SQL
};

/* Background WAL checkpoints: a thread with its own connection copies
 * committed WAL frames into the database file every CHECKPOINT_INTERVAL_MS.
 * PASSIVE mode copies what it can without waiting for readers or writers
 * (SQLite's sqlite3_wal_checkpoint_v2 documentation), so the daemon's commits
 * go on meanwhile. Under sustained writes it never copies the newest frames
 * before the next commit, and SQLite restarts the WAL from its beginning
 * only once every frame was copied. So the daemon's own connection
 * checkpoints when the WAL exceeds CHECKPOINT_FALLBACK_PAGES: it copies only
 * the frames the thread has not copied yet, and the WAL then restarts. With
 * 64 MiB instead of 256 MiB, a 300,000-lifecycle run at 100 workers measured
 * 24,900 lifecycles/s instead of 23,400 (docs/BENCHMARKS.md): a smaller
 * -wal file is rewritten in pages the kernel already holds, where a growing
 * one makes it allocate and zero new pages (seen in a perf profile). */
#define CHECKPOINT_INTERVAL_MS 100
#define CHECKPOINT_FALLBACK_PAGES 16384 /* 64 MiB of 4 KiB pages */

typedef struct checkpointer {
    sqlite3 *db;
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t wake;
    int stop;      /* guarded by lock */
    int running;   /* the thread was started */
    uint64_t frames_copied; /* guarded by lock; logged at stop */
} checkpointer;

struct store {
    sqlite3 *db;
    checkpointer ckpt;
    wal_sync wal;     /* used by store_wal_sync on a pool thread, nothing else */
    int durable;      /* replies wait for store_wal_sync */
    sqlite3_stmt *stmt[ST_COUNT];
    int in_txn;
    int txn_error;   /* first error inside the open transaction, 0 if none */
    uint64_t commits;
    store_sweep **sweeps; /* creation order */
    size_t sweep_count;
    size_t sweep_cap;
};

static const char *const trial_state_names[TRIAL_STATE_COUNT] = {
    "pending", "running", "completed", "diverged", "failed", "cancelled"};
static const char *const sweep_state_names[] = {"running", "paused", "finished", "cancelled"};

const char *store_trial_state_name(enum trial_state state)
{
    return (unsigned)state < TRIAL_STATE_COUNT ? trial_state_names[state] : "unknown";
}

int store_trial_state_parse(const char *name)
{
    for (int i = 0; i < TRIAL_STATE_COUNT; i++)
        if (strcmp(name, trial_state_names[i]) == 0)
            return i;
    return -1;
}

const char *store_sweep_state_name(enum sweep_state state)
{
    return (unsigned)state <= SWEEP_CANCELLED ? sweep_state_names[state] : "unknown";
}

static int sweep_state_parse(const char *name)
{
    for (int i = 0; i <= SWEEP_CANCELLED; i++)
        if (strcmp(name, sweep_state_names[i]) == 0)
            return i;
    return -1;
}

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

cJSON *store_json_add_loss(cJSON *obj, const char *name, double value)
{
    if (isnan(value))
        return cJSON_AddStringToObject(obj, name, "nan");
    if (isinf(value))
        return cJSON_AddStringToObject(obj, name, value > 0 ? "inf" : "-inf");
    return cJSON_AddNumberToObject(obj, name, value);
}

/* Maps a failed SQLite call to a store result and logs it with context. */
static int sql_fail(store *st, int rc, const char *what)
{
    log_error("store", "%s failed: %s (sqlite %d)", what, sqlite3_errmsg(st->db), rc);
    int err = STORE_ERR_IO;
    if (rc == SQLITE_FULL)
        err = STORE_ERR_FULL;
    else if (rc == SQLITE_NOMEM)
        err = STORE_ERR_NOMEM;
    /* An operation that failed half-way leaves the transaction with part of
     * its writes, so the whole transaction is doomed: store_commit() rolls it
     * back and every reply that depended on it becomes an error. */
    if (st->in_txn && st->txn_error == 0)
        st->txn_error = err;
    return err;
}

/* Resets a statement and returns it ready for binding. */
static sqlite3_stmt *stmt_get(store *st, enum store_statement which)
{
    sqlite3_stmt *s = st->stmt[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no rows; 0 or a STORE_ERR_*. */
static int stmt_run(store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        int err = sql_fail(st, rc, what);
        sqlite3_reset(s);
        return err;
    }
    sqlite3_reset(s);
    return 0;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *text)
{
    if (text)
        sqlite3_bind_text(s, i, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

/* Begins the group-commit transaction when none is open. */
static int txn_begin(store *st)
{
    if (st->in_txn) {
        /* SQLite may have rolled back by itself (SQLITE_FULL, I/O errors);
         * writing on would autocommit each statement. */
        if (st->txn_error == 0 && sqlite3_get_autocommit(st->db))
            st->txn_error = STORE_ERR_IO;
        return st->txn_error;
    }
    int err = stmt_run(st, stmt_get(st, ST_BEGIN), "BEGIN");
    if (err == 0)
        st->in_txn = 1;
    return err;
}

int store_in_transaction(const store *st) { return st->in_txn; }

uint64_t store_commit_count(const store *st) { return st->commits; }

/* ---- sweep cache ---------------------------------------------------------- */

void store_group_list_free(store_group_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++) {
        free(list->groups[i].text);
        tickets_losses_free(&list->groups[i].losses);
    }
    free(list->groups);
    free(list->name);
    free(list);
}

/* Drops the cached group counts of sw, after a change that moved many trials
 * at once (cancel); the next grouped tickets request rebuilds them. */
static void group_lists_drop(store_sweep *sw)
{
    while (sw->group_lists) {
        store_group_list *next = sw->group_lists->next;
        store_group_list_free(sw->group_lists);
        sw->group_lists = next;
    }
}

/* Orders a group's value against column col of s as SQLite sorts values:
 * numbers before text, numbers by value, text by bytes (BINARY collation). */
static int group_compare(const store_group *g, sqlite3_stmt *s, int col)
{
    int type = sqlite3_column_type(s, col);
    int group_text = g->type == SQLITE_TEXT, column_text = type == SQLITE_TEXT;
    if (group_text != column_text)
        return group_text ? 1 : -1;
    if (group_text) {
        const char *text = (const char *)sqlite3_column_text(s, col);
        return strcmp(g->text, text ? text : "");
    }
    if (g->type == SQLITE_INTEGER && type == SQLITE_INTEGER) {
        int64_t v = sqlite3_column_int64(s, col);
        return g->integer < v ? -1 : g->integer > v;
    }
    double a = g->type == SQLITE_INTEGER ? (double)g->integer : g->real;
    double b = sqlite3_column_double(s, col);
    return a < b ? -1 : a > b;
}

/* Finds the group of the value in column col of s, inserting it in order
 * when missing and the list has fewer than max groups. Returns 0 with *out
 * set, or -1 (and *out NULL) when the list is full or out of memory. */
static int group_find_or_add(store_group_list *list, sqlite3_stmt *s, int col, size_t max, store_group **out)
{
    *out = NULL;
    size_t lo = 0, hi = list->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = group_compare(&list->groups[mid], s, col);
        if (c == 0) {
            *out = &list->groups[mid];
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (list->count >= max)
        return -1;
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        store_group *grown = realloc(list->groups, cap * sizeof(*grown));
        if (!grown)
            return -1;
        list->groups = grown;
        list->cap = cap;
    }
    store_group g = {.type = sqlite3_column_type(s, col)};
    if (g.type == SQLITE_TEXT) {
        const char *text = (const char *)sqlite3_column_text(s, col);
        if (!(g.text = strdup(text ? text : "")))
            return -1;
    } else if (g.type == SQLITE_INTEGER) {
        g.integer = sqlite3_column_int64(s, col);
    } else {
        g.type = SQLITE_FLOAT;
        g.real = sqlite3_column_double(s, col);
    }
    memmove(&list->groups[lo + 1], &list->groups[lo], (list->count - lo) * sizeof(*list->groups));
    list->groups[lo] = g;
    list->count++;
    *out = &list->groups[lo];
    return 0;
}

/* Reads the finished entries of (sweep, name) into list with the statement
 * which. Returns 0, STORE_ERR_NOMEM, or 1 when a new value would make more
 * than max groups. */
static int group_rows_read(store *st, store_sweep *sw, const char *name, enum store_statement which,
                           size_t max, store_group_list *list)
{
    sqlite3_stmt *s = stmt_get(st, which);
    sqlite3_bind_int64(s, 1, sw->id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    int rc, err = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_group *g;
        if (group_find_or_add(list, s, 0, max, &g) != 0) {
            err = list->count >= max ? 1 : STORE_ERR_NOMEM;
            break;
        }
        int state = store_trial_state_parse((const char *)sqlite3_column_text(s, 1));
        if (state < 0)
            continue;
        g->counts[state]++;
        if (state == TRIAL_COMPLETED && tickets_losses_add(&g->losses, sqlite3_column_double(s, 2)) != 0) {
            err = STORE_ERR_NOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    if (err == 0 && rc != SQLITE_DONE)
        err = sql_fail(st, rc, "reading trials per parameter value");
    return err;
}

int store_group_counts(store *st, store_sweep *sw, const char *name, store_group_list **out)
{
    *out = NULL;
    for (store_group_list *list = sw->group_lists; list; list = list->next) {
        if (strcmp(list->name, name) == 0) {
            *out = list;
            return 0;
        }
    }

    /* The finished entries come in trial order, each found by a binary
     * search among the groups so far. A parameter with more values than the
     * cache keeps is read again sorted by value, so that each new group is
     * appended instead of inserted. */
    store_group_list *list = calloc(1, sizeof(*list));
    if (!list || !(list->name = strdup(name))) {
        free(list);
        return STORE_ERR_NOMEM;
    }
    int err = group_rows_read(st, sw, name, ST_GROUP_ROWS, STORE_MAX_CACHED_GROUPS, list);
    if (err == 1) {
        char *kept = list->name;
        list->name = NULL;
        store_group_list_free(list);
        list = calloc(1, sizeof(*list));
        if (!list) {
            free(kept);
            return STORE_ERR_NOMEM;
        }
        list->name = kept;
        err = group_rows_read(st, sw, name, ST_GROUP_ROWS_SORTED, STORE_MAX_GROUPS, list);
        if (err == 1)
            err = STORE_ERR_LIMIT;
    }
    if (err != 0) {
        store_group_list_free(list);
        return err;
    }
    if (list->count <= STORE_MAX_CACHED_GROUPS) {
        list->cached = 1;
        list->next = sw->group_lists;
        sw->group_lists = list;
    }
    *out = list;
    return 0;
}

/* Builds the group lists of a sweep's first STORE_PREBUILT_GROUP_PARAMS
 * categorical parameters, the usual "by" of grouped tickets (optimizer), so
 * that no request pays for the first scan. For a new sweep the scans find no
 * rows. A failure only leaves a list to be built on request. */
typedef struct prebuild_ctx {
    store *st;
    store_sweep *sw;
    int built;
} prebuild_ctx;

static int prebuild_one(const char *name, void *arg)
{
    prebuild_ctx *ctx = arg;
    store_group_list *list;
    if (store_group_counts(ctx->st, ctx->sw, name, &list) == 0 && !list->cached)
        store_group_list_free(list);
    return ++ctx->built >= STORE_PREBUILT_GROUP_PARAMS;
}

static void sweep_prebuild_groups(store *st, store_sweep *sw)
{
    if (!sw->spec)
        return;
    prebuild_ctx ctx = {st, sw, 0};
    spec_each_categorical(sw->spec, prebuild_one, &ctx);
}

static void sweep_free(store_sweep *sw)
{
    if (!sw)
        return;
    group_lists_drop(sw);
    tickets_losses_free(&sw->losses);
    spec_free(sw->spec);
    free(sw->name);
    free(sw);
}

static void cache_clear(store *st)
{
    for (size_t i = 0; i < st->sweep_count; i++)
        sweep_free(st->sweeps[i]);
    st->sweep_count = 0;
}

static int cache_append(store *st, store_sweep *sw)
{
    if (st->sweep_count == st->sweep_cap) {
        size_t cap = st->sweep_cap ? st->sweep_cap * 2 : 16;
        store_sweep **grown = realloc(st->sweeps, cap * sizeof(*grown));
        if (!grown)
            return STORE_ERR_NOMEM;
        st->sweeps = grown;
        st->sweep_cap = cap;
    }
    st->sweeps[st->sweep_count++] = sw;
    return 0;
}

/* Compiles stored spec text. Stored specs passed the full check at submit, so
 * the reload skips the trainer-name check (generic) to survive renamed
 * hyperparameters; a spec that no longer compiles leaves sw->spec NULL and the
 * sweep creates no new trials. */
static sweep_spec *compile_stored_spec(int64_t id, const char *text)
{
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        log_error("store", "sweep=%" PRId64 " stored spec is not valid JSON; the sweep creates no new trials", id);
        return NULL;
    }
    json_kinds *kinds = json_kinds_scan(text, strlen(text), root);
    sweep_spec *spec = NULL;
    char err[512];
    if (spec_compile(root, kinds, 1, &spec, err, sizeof(err)) != 0) {
        log_error("store", "sweep=%" PRId64 " stored spec no longer compiles: %s; the sweep creates no new trials",
                  id, err);
        spec = NULL;
    }
    json_kinds_free(kinds);
    cJSON_Delete(root);
    return spec;
}

/* Adds a completed trial's final loss to the sweep's losses and best.
 * Returns 0 or STORE_ERR_NOMEM with sw unchanged. */
static int sweep_note_completed(store_sweep *sw, int64_t trial, double final_loss)
{
    if (tickets_losses_add(&sw->losses, final_loss) != 0)
        return STORE_ERR_NOMEM;
    int maximize = sw->spec && spec_metric_maximize(sw->spec);
    int better = maximize ? final_loss > sw->best_loss : final_loss < sw->best_loss;
    if (sw->best_trial == 0 || better || (final_loss == sw->best_loss && trial < sw->best_trial)) {
        sw->best_trial = trial;
        sw->best_loss = final_loss;
    }
    return 0;
}

/* Rebuilds the sweep cache from the database. */
static int cache_load(store *st)
{
    cache_clear(st);
    sqlite3_stmt *s = stmt_get(st, ST_LOAD_SWEEPS);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_sweep *sw = calloc(1, sizeof(*sw));
        if (!sw) {
            sqlite3_reset(s);
            return STORE_ERR_NOMEM;
        }
        sw->id = sqlite3_column_int64(s, 0);
        const char *name = (const char *)sqlite3_column_text(s, 1);
        sw->name = strdup(name ? name : "");
        int state = sweep_state_parse((const char *)sqlite3_column_text(s, 2));
        sw->state = state < 0 ? SWEEP_PAUSED : (enum sweep_state)state;
        sw->spec = compile_stored_spec(sw->id, (const char *)sqlite3_column_text(s, 3));
        sw->seed = (uint64_t)sqlite3_column_int64(s, 4);
        sw->bounded = sqlite3_column_type(s, 5) != SQLITE_NULL;
        sw->size = (uint64_t)sqlite3_column_int64(s, 5);
        sw->target_reached = sqlite3_column_int(s, 6);
        sw->created_ms = sqlite3_column_int64(s, 7);
        if (!sw->name || cache_append(st, sw) != 0) {
            sweep_free(sw);
            sqlite3_reset(s);
            return STORE_ERR_NOMEM;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sql_fail(st, rc, "loading sweeps");

    for (size_t i = 0; i < st->sweep_count; i++) {
        store_sweep *sw = st->sweeps[i];
        s = stmt_get(st, ST_LOAD_COUNTS);
        sqlite3_bind_int64(s, 1, sw->id);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int ts = store_trial_state_parse((const char *)sqlite3_column_text(s, 0));
            if (ts >= 0)
                sw->counts[ts] = sqlite3_column_int64(s, 1);
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return sql_fail(st, rc, "counting trials");

        s = stmt_get(st, ST_LOAD_LOSSES);
        sqlite3_bind_int64(s, 1, sw->id);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (sweep_note_completed(sw, sqlite3_column_int64(s, 0), sqlite3_column_double(s, 1)) != 0) {
                sqlite3_reset(s);
                return STORE_ERR_NOMEM;
            }
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return sql_fail(st, rc, "loading final losses");

        s = stmt_get(st, ST_LOAD_NEXT_INDEX);
        sqlite3_bind_int64(s, 1, sw->id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
            sw->next_index = (uint64_t)sqlite3_column_int64(s, 0) + 1;
        sqlite3_reset(s);
        if (rc != SQLITE_ROW)
            return sql_fail(st, rc, "reading the next trial index");
        sweep_prebuild_groups(st, sw);
    }
    return 0;
}

size_t store_sweep_count(const store *st) { return st->sweep_count; }

store_sweep *store_sweep_at(store *st, size_t i) { return i < st->sweep_count ? st->sweeps[i] : NULL; }

store_sweep *store_sweep_find(store *st, int64_t id)
{
    /* Ids grow with creation order, so the cache is sorted by id. */
    size_t lo = 0, hi = st->sweep_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->sweeps[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < st->sweep_count && st->sweeps[lo]->id == id ? st->sweeps[lo] : NULL;
}

/* ---- open, migrate, commit ---------------------------------------------- */

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t err_size)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return rc == SQLITE_FULL ? STORE_ERR_FULL : STORE_ERR_IO;
    }
    return 0;
}

/* Fails with STORE_ERR_STATE when PRAGMA foreign_key_check finds a row whose
 * parent is missing. A migration that rebuilds a parent table (copy, drop,
 * rename) runs with foreign_keys off, so this check replaces it. */
static int check_foreign_keys(sqlite3 *db, char *err, size_t err_size)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &s, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "PRAGMA foreign_key_check failed: %s", sqlite3_errmsg(db));
        return STORE_ERR_IO;
    }
    rc = sqlite3_step(s);
    int err_rc = 0;
    if (rc == SQLITE_ROW) {
        /* WITHOUT ROWID tables report a NULL rowid, so only the tables are named. */
        snprintf(err, err_size,
                 "a row of table %s references a missing row of table %s; find it with "
                 "PRAGMA foreign_key_check in the sqlite3 shell, fix or delete it, and restart",
                 (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 2));
        err_rc = STORE_ERR_STATE;
    } else if (rc != SQLITE_DONE) {
        snprintf(err, err_size, "PRAGMA foreign_key_check failed: %s", sqlite3_errmsg(db));
        err_rc = STORE_ERR_IO;
    }
    sqlite3_finalize(s);
    return err_rc;
}

/* Applies the migrations above PRAGMA user_version, each in its own
 * transaction together with the new user_version. Foreign keys are off while
 * migrations run, because dropping a rebuilt parent table would otherwise
 * fail, and PRAGMA foreign_key_check runs before each COMMIT instead. The
 * caller turns foreign keys on afterwards. */
static int migrate(sqlite3 *db, const char *path, char *err, size_t err_size)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
        snprintf(err, err_size, "%s: reading user_version failed: %s", path, sqlite3_errmsg(db));
        sqlite3_finalize(s);
        return STORE_ERR_IO;
    }
    int64_t version = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);

    if (version > (int64_t)schema_migration_count) {
        snprintf(err, err_size,
                 "%s has schema version %" PRId64 " but this sweepd knows only %zu; "
                 "run a newer sweepd or use another --state-dir",
                 path, version, schema_migration_count);
        return STORE_ERR_STATE;
    }
    int err_rc = exec_sql(db, "PRAGMA foreign_keys = OFF", err, err_size);
    if (err_rc != 0)
        return err_rc;
    for (size_t i = (size_t)version; i < schema_migration_count; i++) {
        char sql[64];
        /* Rebuilding indexes takes seconds on a 1M-trial database (4.5 to
         * 5.3 s for migration 4, docs/STORAGE.md), so log what is running. */
        log_info("store", "applying schema migration %zu to %s", i + 1, path);
        uint64_t start_ns = uv_hrtime();
        err_rc = exec_sql(db, "BEGIN IMMEDIATE", err, err_size);
        if (err_rc == 0)
            err_rc = exec_sql(db, schema_migrations[i], err, err_size);
        if (err_rc == 0)
            err_rc = check_foreign_keys(db, err, err_size);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu", i + 1);
        if (err_rc == 0)
            err_rc = exec_sql(db, sql, err, err_size);
        if (err_rc == 0)
            err_rc = exec_sql(db, "COMMIT", err, err_size);
        if (err_rc != 0) {
            char detail[256];
            snprintf(detail, sizeof(detail), "%s", err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            snprintf(err, err_size, "%s: migration %zu failed: %s", path, i + 1, detail);
            return err_rc;
        }
        log_info("store", "applied schema migration %zu to %s in %.2f s", i + 1, path,
                 (double)(uv_hrtime() - start_ns) / 1e9);
    }
    return 0;
}

static int checkpointer_start(store *st, const char *path);

/* Rejects a database that is not in WAL mode. SQLite keeps the old journal
 * mode when it cannot use WAL (a file system without shared memory, say),
 * and durable replies would then wait on a -wal file that never exists. */
static int check_wal_mode(sqlite3 *db, const char *path, char *err, size_t err_size)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
    const char *mode = rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    int ok = mode && strcmp(mode, "wal") == 0;
    if (!ok)
        snprintf(err, err_size, "%s: journal_mode is %s, not wal; put the state directory on a local file system",
                 path, mode ? mode : "unknown");
    sqlite3_finalize(s);
    return ok ? 0 : STORE_ERR_IO;
}

int store_open(const char *path, int synchronous_full, store **out, char *err, size_t err_size)
{
    *out = NULL;
    store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, err_size, "out of memory");
        return STORE_ERR_NOMEM;
    }
    st->wal.fd = -1;
    int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "opening %s failed: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        store_close(st);
        return STORE_ERR_IO;
    }
    sqlite3_busy_timeout(st->db, 5000);

    /* WAL lets readers (sqlite3 CLI, backups) look while the daemon writes.
     * SQLite's synchronous is NORMAL in both modes: COMMIT writes the WAL
     * frames without fsync. In durable mode (synchronous_full) the server
     * acknowledges a commit only after store_wal_sync(), run off the event
     * loop, so one fdatasync covers several commits and COMMIT itself does
     * not wait for the disk. The page cache is 64 MiB instead of SQLite's default 2 MiB, because
     * each finished trial updates index pages at random positions (final_loss
     * order). At 1M trials those indexes are tens of MiB, and a small cache
     * makes most lifecycles read pages back from the operating system. */
    st->durable = synchronous_full != 0;
    const char *wal_path = sqlite3_filename_wal(sqlite3_db_filename(st->db, "main"));
    if (wal_sync_init(&st->wal, wal_path) != 0) {
        snprintf(err, err_size, "out of memory");
        store_close(st);
        return STORE_ERR_NOMEM;
    }
    int err_rc = exec_sql(st->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
                          err, err_size);
    if (err_rc == 0)
        err_rc = check_wal_mode(st->db, path, err, err_size);
    if (err_rc == 0)
        err_rc = migrate(st->db, path, err, err_size);
    if (err_rc == 0)
        err_rc = exec_sql(st->db, "PRAGMA foreign_keys = ON", err, err_size);
    if (err_rc != 0) {
        store_close(st);
        return err_rc;
    }

    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            snprintf(err, err_size, "preparing \"%s\" failed: %s", statement_sql[i], sqlite3_errmsg(st->db));
            store_close(st);
            return STORE_ERR_IO;
        }
    }
    err_rc = cache_load(st);
    if (err_rc != 0) {
        snprintf(err, err_size, "loading sweeps from %s failed: %s", path, sqlite3_errmsg(st->db));
        store_close(st);
        return err_rc;
    }
    checkpointer_start(st, path);

    /* Open the -wal descriptor and sync the directory now, so that a
     * missing WAL or a descriptor limit shows up here and not as a failed
     * sync under load. */
    if (st->durable) {
        int sync_err = store_wal_sync(st);
        if (sync_err != 0) {
            snprintf(err, err_size, "syncing %s failed: %s", st->wal.wal_path, strerror(sync_err));
            store_close(st);
            return STORE_ERR_IO;
        }
    }
    *out = st;
    return 0;
}

/* The checkpoint thread: a PASSIVE checkpoint, then a wait for the next
 * interval or the stop signal. */
static void checkpoint_thread(void *arg)
{
    checkpointer *c = arg;
    uv_mutex_lock(&c->lock);
    while (!c->stop) {
        uv_mutex_unlock(&c->lock);
        int log_frames = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("store", "background WAL checkpoint failed: %s (sqlite %d); retrying in %d ms",
                     sqlite3_errmsg(c->db), rc, CHECKPOINT_INTERVAL_MS);
        uv_mutex_lock(&c->lock);
        if (copied > 0)
            c->frames_copied += (uint64_t)copied;
        if (!c->stop)
            uv_cond_timedwait(&c->wake, &c->lock, (uint64_t)CHECKPOINT_INTERVAL_MS * 1000000u);
    }
    uv_mutex_unlock(&c->lock);
}

/* Starts the checkpoint thread on its own connection to path. On failure the
 * daemon's connection keeps SQLite's automatic checkpoints. Returns 0 or -1
 * after logging. */
static int checkpointer_start(store *st, const char *path)
{
    checkpointer *c = &st->ckpt;
    int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
    /* A checkpoint syncs the WAL before it copies frames and the database
     * file before the WAL may restart; FULL states that explicitly. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        log_warn("store", "opening a checkpoint connection to %s failed: %s; the daemon checkpoints the WAL itself",
                 path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        c->db = NULL;
        return -1;
    }
    if (uv_mutex_init(&c->lock) != 0) {
        sqlite3_close(c->db);
        c->db = NULL;
        return -1;
    }
    if (uv_cond_init(&c->wake) != 0) {
        uv_mutex_destroy(&c->lock);
        sqlite3_close(c->db);
        c->db = NULL;
        return -1;
    }
    rc = uv_thread_create(&c->thread, checkpoint_thread, c);
    if (rc != 0) {
        log_warn("store", "starting the checkpoint thread failed: %s; the daemon checkpoints the WAL itself",
                 uv_strerror(rc));
        uv_cond_destroy(&c->wake);
        uv_mutex_destroy(&c->lock);
        sqlite3_close(c->db);
        c->db = NULL;
        return -1;
    }
    c->running = 1;
    sqlite3_wal_autocheckpoint(st->db, CHECKPOINT_FALLBACK_PAGES);
    return 0;
}

static void checkpointer_stop(store *st)
{
    checkpointer *c = &st->ckpt;
    if (!c->running)
        return;
    uv_mutex_lock(&c->lock);
    c->stop = 1;
    uv_cond_signal(&c->wake);
    uv_mutex_unlock(&c->lock);
    uv_thread_join(&c->thread);
    log_info("store", "checkpoint thread stopped; it copied %" PRIu64 " WAL frames into the database",
             c->frames_copied);
    uv_cond_destroy(&c->wake);
    uv_mutex_destroy(&c->lock);
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK)
        log_error("store", "closing the checkpoint connection failed: %s", sqlite3_errstr(rc));
    c->db = NULL;
    c->running = 0;
}

void store_close(store *st)
{
    if (!st)
        return;
    checkpointer_stop(st);
    if (st->in_txn) {
        int err = store_commit(st);
        if (err != 0)
            log_error("store", "final commit failed (%d); the last changes are lost", err);
    }
    cache_clear(st);
    free(st->sweeps);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    if (st->db) {
        int rc = sqlite3_close(st->db);
        if (rc != SQLITE_OK)
            log_error("store", "closing the database failed: %s", sqlite3_errstr(rc));
    }
    wal_sync_free(&st->wal);
    free(st);
}

int store_durable(const store *st) { return st->durable; }

int store_wal_sync(store *st) { return wal_sync_run(&st->wal); }

int store_commit(store *st)
{
    if (!st->in_txn)
        return 0;
    int err = st->txn_error;
    sqlite3_stmt *s;
    int rc;
    if (err == 0) {
        s = stmt_get(st, ST_COMMIT);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE) {
            st->in_txn = 0;
            st->commits++;
            return 0;
        }
        err = sql_fail(st, rc, "COMMIT");
    }

    /* The transaction is lost: roll back (SQLite may already have), then make
     * the cache match the database again. */
    if (!sqlite3_get_autocommit(st->db)) {
        s = stmt_get(st, ST_ROLLBACK);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            log_error("store", "ROLLBACK failed: %s", sqlite3_errmsg(st->db));
    }
    st->in_txn = 0;
    st->txn_error = 0;
    if (cache_load(st) != 0)
        log_error("store", "reloading the sweep cache after a failed commit failed");
    return err;
}

/* ---- sweeps ---------------------------------------------------------------- */

int store_sweep_create(store *st, sweep_spec *spec, uint64_t seed, int64_t now_ms, int64_t *sweep_id)
{
    store_sweep *sw = calloc(1, sizeof(*sw));
    char *text = spec_canonical_text(spec);
    if (!sw || !text) {
        free(sw);
        cJSON_free(text);
        return STORE_ERR_NOMEM;
    }
    sw->name = strdup(spec_name(spec));
    if (!sw->name) {
        free(sw);
        cJSON_free(text);
        return STORE_ERR_NOMEM;
    }
    sw->bounded = spec_trial_count(spec, &sw->size);
    sw->seed = seed;
    sw->created_ms = now_ms;
    sw->state = SWEEP_RUNNING;

    int err = txn_begin(st);
    if (err == 0) {
        sqlite3_stmt *s = stmt_get(st, ST_SWEEP_INSERT);
        sqlite3_bind_text(s, 1, sw->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, spec_method(spec) == SPEC_GRID ? "grid" : "random", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, (int64_t)seed);
        if (sw->bounded)
            sqlite3_bind_int64(s, 5, (int64_t)sw->size);
        else
            sqlite3_bind_null(s, 5);
        sqlite3_bind_int64(s, 6, now_ms);
        err = stmt_run(st, s, "inserting a sweep");
    }
    cJSON_free(text);
    if (err == 0) {
        sw->id = sqlite3_last_insert_rowid(st->db);
        err = cache_append(st, sw);
    }
    if (err != 0) {
        free(sw->name);
        free(sw);
        return err;
    }
    sw->spec = spec;
    sweep_prebuild_groups(st, sw);
    *sweep_id = sw->id;
    return 0;
}

static int sweep_set_state(store *st, store_sweep *sw, enum sweep_state state, int64_t now_ms)
{
    int err = txn_begin(st);
    if (err != 0)
        return err;
    sqlite3_stmt *s = stmt_get(st, ST_SWEEP_SET_STATE);
    sqlite3_bind_int64(s, 1, sw->id);
    sqlite3_bind_text(s, 2, store_sweep_state_name(state), -1, SQLITE_STATIC);
    if (state == SWEEP_FINISHED || state == SWEEP_CANCELLED)
        sqlite3_bind_int64(s, 3, now_ms);
    else
        sqlite3_bind_null(s, 3);
    err = stmt_run(st, s, "updating a sweep's state");
    if (err == 0)
        sw->state = state;
    return err;
}

int store_sweep_pause(store *st, int64_t sweep, int64_t now_ms)
{
    store_sweep *sw = store_sweep_find(st, sweep);
    if (!sw)
        return STORE_ERR_NOT_FOUND;
    if (sw->state == SWEEP_PAUSED)
        return 0;
    if (sw->state != SWEEP_RUNNING)
        return STORE_ERR_STATE;
    return sweep_set_state(st, sw, SWEEP_PAUSED, now_ms);
}

int store_sweep_resume(store *st, int64_t sweep, int64_t now_ms)
{
    store_sweep *sw = store_sweep_find(st, sweep);
    if (!sw)
        return STORE_ERR_NOT_FOUND;
    if (sw->state == SWEEP_RUNNING)
        return 0;
    if (sw->state != SWEEP_PAUSED)
        return STORE_ERR_STATE;
    return sweep_set_state(st, sw, SWEEP_RUNNING, now_ms);
}

int store_sweep_cancel(store *st, int64_t sweep, int64_t now_ms, int64_t **running, size_t *running_count)
{
    *running = NULL;
    *running_count = 0;
    store_sweep *sw = store_sweep_find(st, sweep);
    if (!sw)
        return STORE_ERR_NOT_FOUND;
    if (sw->state == SWEEP_CANCELLED)
        return 0;
    if (sw->state == SWEEP_FINISHED)
        return STORE_ERR_STATE;
    int err = txn_begin(st);
    if (err != 0)
        return err;

    /* End the attempts of running trials, remembering them for cancel events. */
    size_t n = (size_t)sw->counts[TRIAL_RUNNING];
    int64_t *ids = n ? calloc(n, sizeof(*ids)) : NULL;
    if (n && !ids)
        return STORE_ERR_NOMEM;
    size_t found = 0;
    sqlite3_stmt *s = stmt_get(st, ST_SWEEP_RUNNING_TRIALS);
    sqlite3_bind_int64(s, 1, sweep);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && found < n) {
        ids[found] = sqlite3_column_int64(s, 0);
        int64_t attempt = sqlite3_column_int64(s, 1);
        found++;
        sqlite3_stmt *end = stmt_get(st, ST_ATTEMPT_END);
        sqlite3_bind_int64(end, 1, ids[found - 1]);
        sqlite3_bind_int64(end, 2, attempt);
        sqlite3_bind_int64(end, 3, now_ms);
        sqlite3_bind_text(end, 4, "cancelled", -1, SQLITE_STATIC);
        if ((err = stmt_run(st, end, "ending a cancelled attempt")) != 0)
            break;
    }
    sqlite3_reset(s);
    if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = sql_fail(st, rc, "listing running trials");
    if (err == 0) {
        s = stmt_get(st, ST_PARAMS_CANCEL);
        sqlite3_bind_int64(s, 1, sweep);
        err = stmt_run(st, s, "cancelling trials' parameter rows");
    }
    if (err == 0) {
        s = stmt_get(st, ST_SWEEP_CANCEL_TRIALS);
        sqlite3_bind_int64(s, 1, sweep);
        sqlite3_bind_int64(s, 2, now_ms);
        err = stmt_run(st, s, "cancelling trials");
    }
    if (err == 0)
        err = sweep_set_state(st, sw, SWEEP_CANCELLED, now_ms);
    if (err != 0) {
        free(ids);
        return err;
    }
    sw->counts[TRIAL_CANCELLED] += sw->counts[TRIAL_PENDING] + sw->counts[TRIAL_RUNNING];
    sw->counts[TRIAL_PENDING] = 0;
    sw->counts[TRIAL_RUNNING] = 0;
    group_lists_drop(sw);
    *running = ids;
    *running_count = found;
    return 0;
}

int store_sweep_check_finished(store *st, store_sweep *sw, int64_t now_ms)
{
    if (sw->state != SWEEP_RUNNING && sw->state != SWEEP_PAUSED)
        return 0;
    if (sw->counts[TRIAL_RUNNING] != 0 || sw->counts[TRIAL_PENDING] != 0)
        return 0;
    int exhausted = sw->bounded && sw->next_index >= sw->size;
    if (!exhausted && !sw->target_reached)
        return 0;
    int err = sweep_set_state(st, sw, SWEEP_FINISHED, now_ms);
    if (err != 0)
        return err;
    return 1;
}

/* ---- trials ---------------------------------------------------------------- */

static int random_token(char out[33])
{
    unsigned char bytes[16];
    int rc = uv_random(NULL, NULL, bytes, sizeof(bytes), 0, NULL);
    if (rc != 0) {
        log_error("store", "uv_random failed: %s", uv_strerror(rc));
        return STORE_ERR_IO;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
    out[32] = '\0';
    return 0;
}

int store_bind_param_value(sqlite3_stmt *s, int index, const cJSON *value)
{
    int rc;
    if (cJSON_IsString(value)) {
        rc = sqlite3_bind_text(s, index, value->valuestring, -1, SQLITE_TRANSIENT);
    } else if (cJSON_IsBool(value)) {
        rc = sqlite3_bind_text(s, index, cJSON_IsTrue(value) ? "true" : "false", -1, SQLITE_STATIC);
    } else if (cJSON_IsNumber(value)) {
        /* The range check comes first: casting a double outside int64_t's
         * range is undefined behaviour. */
        double v = value->valuedouble;
        if (v >= -9.2e18 && v <= 9.2e18 && v == (double)(int64_t)v)
            rc = sqlite3_bind_int64(s, index, (int64_t)v);
        else
            rc = sqlite3_bind_double(s, index, v);
    } else {
        return 1;
    }
    return rc == SQLITE_OK ? 0 : STORE_ERR_NOMEM;
}

/* Inserts one trial_params row per scalar leaf of params, nested groups
 * joined with '.'. Depth is bounded by the spec's SPEC_MAX_DEPTH. */
static int insert_params(store *st, int64_t sweep, int64_t trial, const cJSON *obj, const char *prefix)
{
    for (const cJSON *item = obj->child; item; item = item->next) {
        char name[512];
        int n = snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? "." : "", item->string);
        if (n < 0 || (size_t)n >= sizeof(name))
            continue; /* longer than any name a spec accepts */
        if (cJSON_IsObject(item)) {
            int err = insert_params(st, sweep, trial, item, name);
            if (err != 0)
                return err;
            continue;
        }
        sqlite3_stmt *s = stmt_get(st, ST_PARAM_INSERT);
        sqlite3_bind_int64(s, 1, sweep);
        sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
        int bound = store_bind_param_value(s, 3, item);
        if (bound < 0)
            return bound;
        if (bound > 0)
            continue; /* null and lists are not grouping keys */
        sqlite3_bind_int64(s, 4, trial);
        int err = stmt_run(st, s, "inserting a trial parameter");
        if (err != 0)
            return err;
    }
    return 0;
}

/* Picks the sweep that gets a new trial: the oldest running one with indexes
 * left and a compiled spec. */
static store_sweep *sweep_with_new_trials(store *st)
{
    for (size_t i = 0; i < st->sweep_count; i++) {
        store_sweep *sw = st->sweeps[i];
        if (sw->state != SWEEP_RUNNING || sw->target_reached || !sw->spec)
            continue;
        if (sw->bounded && sw->next_index >= sw->size)
            continue;
        return sw;
    }
    return NULL;
}

static int any_ready_pending(const store *st)
{
    for (size_t i = 0; i < st->sweep_count; i++) {
        const store_sweep *sw = st->sweeps[i];
        if (sw->state == SWEEP_RUNNING && !sw->target_reached && sw->counts[TRIAL_PENDING] > 0)
            return 1;
    }
    return 0;
}

static int attempt_insert(store *st, int64_t trial, int64_t attempt, const char *lease, const char *worker,
                          int64_t now_ms)
{
    sqlite3_stmt *s = stmt_get(st, ST_ATTEMPT_INSERT);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, attempt);
    sqlite3_bind_text(s, 3, lease, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, worker, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_ms);
    return stmt_run(st, s, "inserting an attempt");
}

/* Leases a pending trial: 1 with *out filled, 0 when none, or an error. */
static int lease_pending(store *st, const char *worker, int64_t now_ms, store_lease *out)
{
    sqlite3_stmt *s = stmt_get(st, ST_PENDING_PICK);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return sql_fail(st, rc, "picking a pending trial");
    }
    int64_t trial = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);

    s = stmt_get(st, ST_TRIAL_FOR_LEASE);
    sqlite3_bind_int64(s, 1, trial);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return sql_fail(st, rc, "reading a pending trial");
    }
    out->trial = trial;
    out->sweep = sqlite3_column_int64(s, 0);
    out->index = sqlite3_column_int64(s, 1);
    const char *params = (const char *)sqlite3_column_text(s, 2);
    out->params = cJSON_Parse(params ? params : "{}");
    out->params_text = out->params ? cJSON_PrintUnformatted(out->params) : NULL;
    out->attempt = sqlite3_column_int64(s, 3) + 1;
    const char *ckpt = (const char *)sqlite3_column_text(s, 4);
    out->checkpoint = ckpt ? strdup(ckpt) : NULL;
    out->checkpoint_step = sqlite3_column_int64(s, 5);
    sqlite3_reset(s);
    if (!out->params || !out->params_text || (ckpt && !out->checkpoint)) {
        store_lease_clear(out);
        return STORE_ERR_NOMEM;
    }

    s = stmt_get(st, ST_TRIAL_START);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, out->attempt);
    sqlite3_bind_text(s, 3, out->lease, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, worker, -1, SQLITE_STATIC);
    int err = stmt_run(st, s, "starting a pending trial");
    if (err == 0)
        err = attempt_insert(st, trial, out->attempt, out->lease, worker, now_ms);
    if (err != 0) {
        store_lease_clear(out);
        return err;
    }
    store_sweep *sw = store_sweep_find(st, out->sweep);
    if (sw) {
        sw->counts[TRIAL_PENDING]--;
        sw->counts[TRIAL_RUNNING]++;
    }
    return 1;
}

/* Creates trial next_index of sw, running under a new lease. */
static int lease_new(store *st, store_sweep *sw, const char *worker, int64_t now_ms, store_lease *out)
{
    uint64_t index = sw->next_index;
    cJSON *params = spec_trial_params(sw->spec, sw->seed, index);
    char *text = params ? cJSON_PrintUnformatted(params) : NULL;
    if (!text) {
        cJSON_Delete(params);
        return STORE_ERR_NOMEM;
    }
    sqlite3_stmt *s = stmt_get(st, ST_TRIAL_INSERT);
    sqlite3_bind_int64(s, 1, sw->id);
    sqlite3_bind_int64(s, 2, (int64_t)index);
    sqlite3_bind_text(s, 3, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, out->lease, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, worker, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now_ms);
    int err = stmt_run(st, s, "inserting a trial");
    int64_t trial = sqlite3_last_insert_rowid(st->db);
    if (err == 0)
        err = attempt_insert(st, trial, 1, out->lease, worker, now_ms);
    if (err == 0)
        err = insert_params(st, sw->id, trial, params, "");
    if (err != 0) {
        cJSON_free(text);
        cJSON_Delete(params);
        return err;
    }
    sw->next_index = index + 1;
    sw->counts[TRIAL_RUNNING]++;
    out->trial = trial;
    out->sweep = sw->id;
    out->index = (int64_t)index;
    out->attempt = 1;
    out->params = params;
    out->params_text = text; /* the reply reuses it instead of printing params again */
    out->checkpoint = NULL;
    out->checkpoint_step = 0;
    return 1;
}

int store_trial_lease(store *st, const char *worker, int64_t now_ms, store_lease *out)
{
    memset(out, 0, sizeof(*out));
    int pending = any_ready_pending(st);
    store_sweep *sw = pending ? NULL : sweep_with_new_trials(st);
    if (!pending && !sw)
        return 0;
    int err = random_token(out->lease);
    if (err == 0)
        err = txn_begin(st);
    if (err != 0)
        return err;
    if (pending) {
        int got = lease_pending(st, worker, now_ms, out);
        if (got != 0)
            return got;
        sw = sweep_with_new_trials(st);
        if (!sw)
            return 0;
    }
    return lease_new(st, sw, worker, now_ms, out);
}

void store_lease_clear(store_lease *lease)
{
    cJSON_Delete(lease->params);
    cJSON_free(lease->params_text);
    free(lease->checkpoint);
    lease->params = NULL;
    lease->params_text = NULL;
    lease->checkpoint = NULL;
}

/* The columns of TRIAL_GET for one trial. */
typedef struct trial_row {
    int state;
    int64_t attempt;
    char lease[33];
    int64_t sweep;
    int64_t requeues;
    int64_t failures;
    char *checkpoint; /* owned */
    int64_t checkpoint_step;
} trial_row;

static int trial_get(store *st, int64_t trial, trial_row *row)
{
    memset(row, 0, sizeof(*row));
    sqlite3_stmt *s = stmt_get(st, ST_TRIAL_GET);
    sqlite3_bind_int64(s, 1, trial);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return STORE_ERR_NOT_FOUND;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return sql_fail(st, rc, "reading a trial");
    }
    row->state = store_trial_state_parse((const char *)sqlite3_column_text(s, 0));
    row->attempt = sqlite3_column_int64(s, 1);
    const char *lease = (const char *)sqlite3_column_text(s, 2);
    snprintf(row->lease, sizeof(row->lease), "%s", lease ? lease : "");
    row->sweep = sqlite3_column_int64(s, 3);
    row->requeues = sqlite3_column_int64(s, 4);
    row->failures = sqlite3_column_int64(s, 5);
    const char *ckpt = (const char *)sqlite3_column_text(s, 6);
    row->checkpoint = ckpt ? strdup(ckpt) : NULL;
    row->checkpoint_step = sqlite3_column_int64(s, 7);
    sqlite3_reset(s);
    if (ckpt && !row->checkpoint)
        return STORE_ERR_NOMEM;
    return 0;
}

int store_trial_check_lease(store *st, int64_t trial, int64_t attempt, const char *lease, int64_t *sweep_id)
{
    trial_row row;
    int err = trial_get(st, trial, &row);
    if (err != 0)
        return err;
    free(row.checkpoint);
    *sweep_id = row.sweep;
    if (row.state != TRIAL_RUNNING || row.attempt != attempt || strcmp(row.lease, lease) != 0)
        return STORE_ERR_STALE;
    return 0;
}

static void bind_loss(sqlite3_stmt *s, int i, double value)
{
    if (isfinite(value))
        sqlite3_bind_double(s, i, value);
    else
        sqlite3_bind_null(s, i); /* SQLite stores NaN as NULL anyway */
}

int store_metrics_add(store *st, int64_t trial, int64_t attempt, int64_t step, double train_loss, double val_loss)
{
    int err = txn_begin(st);
    if (err != 0)
        return err;
    sqlite3_stmt *s = stmt_get(st, ST_METRIC_INSERT);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, step);
    sqlite3_bind_int64(s, 3, attempt);
    bind_loss(s, 4, train_loss);
    bind_loss(s, 5, val_loss);
    err = stmt_run(st, s, "inserting a metric point");
    if (err != 0)
        return err;
    return sqlite3_changes(st->db);
}

int store_trial_checkpoint(store *st, int64_t trial, int64_t attempt, const char *location, int64_t step)
{
    int err = txn_begin(st);
    if (err != 0)
        return err;
    sqlite3_stmt *s = stmt_get(st, ST_TRIAL_CHECKPOINT);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_text(s, 2, location, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, step);
    err = stmt_run(st, s, "recording a checkpoint");
    if (err != 0)
        return err;
    s = stmt_get(st, ST_ATTEMPT_CHECKPOINT);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, attempt);
    sqlite3_bind_text(s, 3, location, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, step);
    return stmt_run(st, s, "recording an attempt's checkpoint");
}

static int attempt_end(store *st, int64_t trial, int64_t attempt, int64_t now_ms, const char *outcome,
                       int64_t steps, const char *error)
{
    sqlite3_stmt *s = stmt_get(st, ST_ATTEMPT_END);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, attempt);
    sqlite3_bind_int64(s, 3, now_ms);
    sqlite3_bind_text(s, 4, outcome, -1, SQLITE_STATIC);
    if (steps >= 0)
        sqlite3_bind_int64(s, 5, steps);
    else
        sqlite3_bind_null(s, 5);
    bind_text_or_null(s, 6, error);
    return stmt_run(st, s, "ending an attempt");
}

/* Copies a finished trial's state (as outcome) and final loss to its
 * trial_params rows, and counts it in the sweep's cached group lists. The
 * rows are read back by a primary-key seek only when the sweep keeps group
 * lists. An UPDATE with RETURNING would read them on every call and costs
 * two ephemeral tables per run. */
static int params_end(store *st, store_sweep *sw, int64_t trial, enum trial_state state, double final_loss)
{
    sqlite3_stmt *s = stmt_get(st, ST_PARAMS_END);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_text(s, 2, store_trial_state_name(state), -1, SQLITE_STATIC);
    bind_loss(s, 3, final_loss);
    int err = stmt_run(st, s, "ending a trial's parameter rows");
    if (err != 0 || !sw || !sw->group_lists)
        return err;

    s = stmt_get(st, ST_PARAMS_OF_TRIAL);
    sqlite3_bind_int64(s, 1, trial);
    int rc;
    int dropped = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (dropped)
            continue;
        const char *name = (const char *)sqlite3_column_text(s, 0);
        for (store_group_list *list = sw->group_lists; list && name; list = list->next) {
            if (strcmp(list->name, name) != 0)
                continue;
            store_group *g;
            if (group_find_or_add(list, s, 1, STORE_MAX_CACHED_GROUPS, &g) != 0)
                dropped = 1;
            else if (state == TRIAL_COMPLETED && tickets_losses_add(&g->losses, final_loss) != 0)
                dropped = 1;
            else
                g->counts[state]++;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sql_fail(st, rc, "reading a trial's parameter rows");
    if (dropped) {
        /* Too many values, or out of memory: counts that cannot be kept
         * current are dropped, and the next request counts by a scan. */
        group_lists_drop(sw);
    }
    return 0;
}

/* Moves a running trial to a final state and updates the cached counts. */
static int trial_end(store *st, int64_t trial, int64_t sweep, enum trial_state state, double final_loss,
                     double best_loss, int64_t steps, double seconds, const char *error, int64_t now_ms)
{
    sqlite3_stmt *s = stmt_get(st, ST_TRIAL_END);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_text(s, 2, store_trial_state_name(state), -1, SQLITE_STATIC);
    bind_loss(s, 3, final_loss);
    bind_loss(s, 4, best_loss);
    if (steps >= 0)
        sqlite3_bind_int64(s, 5, steps);
    if (isfinite(seconds))
        sqlite3_bind_double(s, 6, seconds);
    bind_text_or_null(s, 7, error);
    sqlite3_bind_int64(s, 8, now_ms);
    int err = stmt_run(st, s, "ending a trial");
    store_sweep *sw = store_sweep_find(st, sweep);
    if (err == 0)
        err = params_end(st, sw, trial, state, final_loss);
    if (err != 0)
        return err;
    if (sw && state == TRIAL_COMPLETED && (err = sweep_note_completed(sw, trial, final_loss)) != 0) {
        /* Failing the transaction makes the commit reload the cache. */
        if (st->txn_error == 0)
            st->txn_error = err;
        return err;
    }
    if (sw) {
        sw->counts[TRIAL_RUNNING]--;
        sw->counts[state]++;
    }
    return 0;
}

/* Reads a running trial for a transition; the lease was checked already. */
static int running_trial(store *st, int64_t trial, int64_t attempt, trial_row *row)
{
    int err = trial_get(st, trial, row);
    if (err != 0)
        return err;
    if (row->state != TRIAL_RUNNING || row->attempt != attempt) {
        free(row->checkpoint);
        return STORE_ERR_STALE;
    }
    return txn_begin(st);
}

/* Marks the sweep's target reached when final_loss meets metric.target, and
 * cancels its pending trials so no new trial starts. */
static int check_target(store *st, store_sweep *sw, double final_loss, int64_t now_ms)
{
    double target;
    if (!sw || !sw->spec || sw->target_reached || !spec_metric_target(sw->spec, &target))
        return 0;
    int met = spec_metric_maximize(sw->spec) ? final_loss >= target : final_loss <= target;
    if (!met)
        return 0;
    sqlite3_stmt *s = stmt_get(st, ST_SWEEP_SET_TARGET);
    sqlite3_bind_int64(s, 1, sw->id);
    int err = stmt_run(st, s, "marking a sweep's target reached");
    if (err != 0)
        return err;
    s = stmt_get(st, ST_PARAMS_CANCEL_PENDING);
    sqlite3_bind_int64(s, 1, sw->id);
    err = stmt_run(st, s, "cancelling pending trials' parameter rows");
    if (err != 0)
        return err;
    s = stmt_get(st, ST_SWEEP_CANCEL_PENDING);
    sqlite3_bind_int64(s, 1, sw->id);
    sqlite3_bind_int64(s, 2, now_ms);
    err = stmt_run(st, s, "cancelling pending trials");
    if (err != 0)
        return err;
    group_lists_drop(sw);
    sw->target_reached = 1;
    sw->counts[TRIAL_CANCELLED] += sw->counts[TRIAL_PENDING];
    sw->counts[TRIAL_PENDING] = 0;
    log_info("store", "sweep=%" PRId64 " reached its metric target %g; no new trials start", sw->id, target);
    return 0;
}

int store_trial_complete(store *st, int64_t trial, int64_t attempt, double final_loss, double best_loss,
                         int64_t steps, double seconds, int64_t now_ms, enum trial_state *new_state)
{
    if (!isfinite(final_loss))
        return store_trial_diverged(st, trial, attempt, steps, now_ms, new_state);
    trial_row row;
    int err = running_trial(st, trial, attempt, &row);
    if (err != 0)
        return err;
    free(row.checkpoint);
    err = attempt_end(st, trial, attempt, now_ms, "completed", steps, NULL);
    if (err == 0)
        err = trial_end(st, trial, row.sweep, TRIAL_COMPLETED, final_loss, best_loss, steps, seconds, NULL, now_ms);
    if (err == 0)
        err = check_target(st, store_sweep_find(st, row.sweep), final_loss, now_ms);
    if (err == 0)
        *new_state = TRIAL_COMPLETED;
    return err;
}

int store_trial_diverged(store *st, int64_t trial, int64_t attempt, int64_t step, int64_t now_ms,
                         enum trial_state *new_state)
{
    trial_row row;
    int err = running_trial(st, trial, attempt, &row);
    if (err != 0)
        return err;
    free(row.checkpoint);
    err = attempt_end(st, trial, attempt, now_ms, "diverged", step, NULL);
    if (err == 0)
        err = trial_end(st, trial, row.sweep, TRIAL_DIVERGED, NAN, NAN, step, NAN, NULL, now_ms);
    if (err == 0)
        *new_state = TRIAL_DIVERGED;
    return err;
}

/* Returns the trial to pending, updating its counters and the cache. */
static int trial_to_pending(store *st, int64_t trial, int64_t sweep, int64_t requeues, int64_t failures,
                            const char *error)
{
    sqlite3_stmt *s = stmt_get(st, ST_TRIAL_TO_PENDING);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, requeues);
    sqlite3_bind_int64(s, 3, failures);
    bind_text_or_null(s, 4, error);
    int err = stmt_run(st, s, "returning a trial to pending");
    if (err != 0)
        return err;
    store_sweep *sw = store_sweep_find(st, sweep);
    if (sw) {
        sw->counts[TRIAL_RUNNING]--;
        sw->counts[TRIAL_PENDING]++;
    }
    return 0;
}

/* Stores a trial's requeue and failure counts; trial_end leaves them alone,
 * so a trial failed for good records the requeue or failure that ended it. */
static int set_counters(store *st, int64_t trial, int64_t requeues, int64_t failures)
{
    sqlite3_stmt *s = stmt_get(st, ST_TRIAL_SET_COUNTERS);
    sqlite3_bind_int64(s, 1, trial);
    sqlite3_bind_int64(s, 2, requeues);
    sqlite3_bind_int64(s, 3, failures);
    return stmt_run(st, s, "recording a trial's requeue and failure counts");
}

int store_trial_failed(store *st, int64_t trial, int64_t attempt, const char *error, int64_t now_ms,
                       enum trial_state *new_state)
{
    trial_row row;
    int err = running_trial(st, trial, attempt, &row);
    if (err != 0)
        return err;
    free(row.checkpoint);
    store_sweep *sw = store_sweep_find(st, row.sweep);
    int max_failures = sw && sw->spec ? spec_max_failures(sw->spec) : 1;
    int64_t failures = row.failures + 1;

    err = attempt_end(st, trial, attempt, now_ms, "failed", -1, error);
    if (err != 0)
        return err;
    if (failures >= max_failures) {
        err = set_counters(st, trial, row.requeues, failures);
        if (err == 0)
            err = trial_end(st, trial, row.sweep, TRIAL_FAILED, NAN, NAN, -1, NAN, error, now_ms);
        *new_state = TRIAL_FAILED;
    } else {
        err = trial_to_pending(st, trial, row.sweep, row.requeues, failures, error);
        *new_state = TRIAL_PENDING;
    }
    return err;
}

int store_trial_requeue(store *st, int64_t trial, int64_t attempt, const char *reason, const char *location,
                        int64_t step, int64_t now_ms, enum trial_state *new_state)
{
    trial_row row;
    int err = running_trial(st, trial, attempt, &row);
    if (err != 0)
        return err;
    free(row.checkpoint);
    if (location) {
        err = store_trial_checkpoint(st, trial, attempt, location, step);
        if (err != 0)
            return err;
    }
    store_sweep *sw = store_sweep_find(st, row.sweep);
    int max_requeues = sw && sw->spec ? spec_max_requeues(sw->spec) : 0;
    int64_t requeues = row.requeues + 1;

    err = attempt_end(st, trial, attempt, now_ms, reason, location ? step : -1, NULL);
    if (err != 0)
        return err;
    if (requeues > max_requeues) {
        char error[128];
        snprintf(error, sizeof(error), "requeued %" PRId64 " times, more than max_requeues %d; last: %s",
                 requeues, max_requeues, reason);
        err = set_counters(st, trial, requeues, row.failures);
        if (err == 0)
            err = trial_end(st, trial, row.sweep, TRIAL_FAILED, NAN, NAN, -1, NAN, error, now_ms);
        *new_state = TRIAL_FAILED;
    } else {
        err = trial_to_pending(st, trial, row.sweep, requeues, row.failures, NULL);
        *new_state = TRIAL_PENDING;
    }
    return err;
}

int store_running_trials(store *st, store_running **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t cap = 0;
    sqlite3_stmt *s = stmt_get(st, ST_ALL_RUNNING);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            store_running *grown = realloc(*out, cap * sizeof(*grown));
            if (!grown) {
                sqlite3_reset(s);
                free(*out);
                *out = NULL;
                *count = 0;
                return STORE_ERR_NOMEM;
            }
            *out = grown;
        }
        store_running *r = &(*out)[(*count)++];
        r->trial = sqlite3_column_int64(s, 0);
        r->sweep = sqlite3_column_int64(s, 1);
        r->attempt = sqlite3_column_int64(s, 2);
        const char *lease = (const char *)sqlite3_column_text(s, 3);
        const char *worker = (const char *)sqlite3_column_text(s, 4);
        snprintf(r->lease, sizeof(r->lease), "%s", lease ? lease : "");
        snprintf(r->worker, sizeof(r->worker), "%s", worker ? worker : "");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *count = 0;
        return sql_fail(st, rc, "listing running trials");
    }
    return 0;
}

int store_worker_seen(store *st, const char *name, const char *host, int64_t pid, const char *state,
                      int64_t now_ms)
{
    int err = txn_begin(st);
    if (err != 0)
        return err;
    sqlite3_stmt *s = stmt_get(st, ST_WORKER_SEEN);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    bind_text_or_null(s, 2, host);
    if (pid > 0)
        sqlite3_bind_int64(s, 3, pid);
    sqlite3_bind_text(s, 4, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_ms);
    return stmt_run(st, s, "recording a worker");
}

int store_event_add(store *st, int64_t now_ms, const char *kind, int64_t sweep, int64_t trial, const char *worker,
                    const char *detail)
{
    int err = txn_begin(st);
    if (err != 0)
        return err;
    sqlite3_stmt *s = stmt_get(st, ST_EVENT_INSERT);
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
    if (sweep > 0)
        sqlite3_bind_int64(s, 3, sweep);
    if (trial > 0)
        sqlite3_bind_int64(s, 4, trial);
    bind_text_or_null(s, 5, worker);
    bind_text_or_null(s, 6, detail);
    return stmt_run(st, s, "recording an event");
}

struct sqlite3 *store_db(store *st) { return st->db; }
