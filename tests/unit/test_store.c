/* Unit tests of daemon/store.c on real SQLite files: migrations, lazy trial
 * creation, fencing, requeue and failure limits, cancel, the cache reload at
 * reopen, and an injected full disk (PRAGMA max_page_count) that must roll the
 * whole group transaction back and leave cache and database in agreement.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "store.h"

static sweep_spec *compile(const char *text)
{
    cJSON *root = cJSON_Parse(text);
    json_kinds *kinds = root ? json_kinds_scan(text, strlen(text), root) : NULL;
    sweep_spec *spec = NULL;
    char err[512];
    if (!root || spec_compile(root, kinds, 0, &spec, err, sizeof(err)) != 0) {
        fprintf(stderr, "spec did not compile: %s\n", root ? err : "bad JSON");
        spec = NULL;
    }
    json_kinds_free(kinds);
    cJSON_Delete(root);
    return spec;
}

static const char *grid3 =
    "{\"method\":\"grid\",\"max_failures\":2,\"max_requeues\":1,"
    "\"parameters\":{\"optimizer\":{\"values\":[\"adam\",\"sm3\",\"shampoo\"]}}}";

static int64_t count_rows(store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static void test_lifecycle(const char *path)
{
    store *st = NULL;
    char err[256];
    CHECK(store_open(path, 1, &st, err, sizeof(err)) == 0);
    if (!st)
        return;
    sweep_spec *spec = compile(grid3);
    CHECK(spec != NULL);
    int64_t sweep = 0;
    CHECK(store_sweep_create(st, spec, 7, 1000, &sweep) == 0);
    CHECK(store_commit(st) == 0);

    /* Lazy creation: trial rows appear only as leases are handed out. */
    CHECK(count_rows(st, "SELECT count(*) FROM trials") == 0);
    store_lease a, b;
    CHECK(store_trial_lease(st, "w1", 2000, &a) == 1);
    CHECK(store_trial_lease(st, "w2", 2000, &b) == 1);
    CHECK(a.index == 0);
    CHECK(b.index == 1);
    CHECK_STR(cJSON_GetObjectItem(a.params, "optimizer")->valuestring, "adam");
    CHECK(strlen(a.lease) == 32);
    CHECK(strcmp(a.lease, b.lease) != 0);
    CHECK(store_commit(st) == 0);
    CHECK(count_rows(st, "SELECT count(*) FROM trials") == 2);
    CHECK(count_rows(st, "SELECT count(*) FROM trial_params WHERE name = 'optimizer'") == 2);

    /* Fencing: a wrong token or attempt is stale. */
    int64_t sw_id = 0;
    CHECK(store_trial_check_lease(st, a.trial, 1, a.lease, &sw_id) == 0);
    CHECK(sw_id == sweep);
    CHECK(store_trial_check_lease(st, a.trial, 1, b.lease, &sw_id) == STORE_ERR_STALE);
    CHECK(store_trial_check_lease(st, a.trial, 2, a.lease, &sw_id) == STORE_ERR_STALE);
    CHECK(store_trial_check_lease(st, 999, 1, a.lease, &sw_id) == STORE_ERR_NOT_FOUND);

    /* Requeue with a checkpoint; the requeued trial is leased first. */
    enum trial_state state;
    CHECK(store_trial_requeue(st, a.trial, 1, "preempted", "/ck/a", 40, 3000, &state) == 0);
    CHECK(state == TRIAL_PENDING);
    CHECK(store_trial_check_lease(st, a.trial, 1, a.lease, &sw_id) == STORE_ERR_STALE);
    store_lease again;
    CHECK(store_trial_lease(st, "w3", 3000, &again) == 1);
    CHECK(again.trial == a.trial);
    CHECK(again.attempt == 2);
    CHECK(again.checkpoint != NULL);
    if (again.checkpoint != NULL)
        CHECK_STR(again.checkpoint, "/ck/a");
    CHECK(again.checkpoint_step == 40);

    /* max_requeues 1: the second requeue fails the trial. */
    CHECK(store_trial_requeue(st, again.trial, 2, "disconnect", NULL, 0, 3100, &state) == 0);
    CHECK(state == TRIAL_FAILED);

    /* Metrics keep one value per step. */
    CHECK(store_metrics_add(st, b.trial, 1, 10, 2.0, 2.5) == 1);
    CHECK(store_metrics_add(st, b.trial, 1, 10, 9.0, 9.0) == 0);
    CHECK(store_trial_complete(st, b.trial, 1, NAN, NAN, 5, 1.0, 3200, &state) == 0);
    CHECK(state == TRIAL_DIVERGED);
    CHECK(store_commit(st) == 0);

    store_sweep *sw = store_sweep_find(st, sweep);
    CHECK(sw->counts[TRIAL_FAILED] == 1);
    CHECK(sw->counts[TRIAL_DIVERGED] == 1);
    CHECK(sw->next_index == 2);
    store_lease_clear(&a);
    store_lease_clear(&b);
    store_lease_clear(&again);
    store_close(st);

    /* Reopen: the cache is rebuilt from the rows. */
    st = NULL;
    CHECK(store_open(path, 1, &st, err, sizeof(err)) == 0);
    if (!st)
        return;
    sw = store_sweep_find(st, sweep);
    CHECK(sw != NULL);
    if (sw) {
        CHECK(sw->counts[TRIAL_FAILED] == 1);
        CHECK(sw->counts[TRIAL_DIVERGED] == 1);
        CHECK(sw->next_index == 2);
        CHECK(sw->seed == 7);
    }
    store_lease c;
    CHECK(store_trial_lease(st, "w1", 4000, &c) == 1);
    CHECK(c.index == 2);
    CHECK(store_trial_complete(st, c.trial, 1, 1.25, 1.2, 10, 2.0, 4100, &state) == 0);
    store_lease_clear(&c);
    int more = store_trial_lease(st, "w1", 4200, &c);
    CHECK(more == 0); /* the grid of 3 is exhausted */
    if (more == 1)
        store_lease_clear(&c);
    CHECK(store_sweep_check_finished(st, store_sweep_find(st, sweep), 4300) == 1);
    CHECK(store_commit(st) == 0);
    CHECK(store_sweep_find(st, sweep)->state == SWEEP_FINISHED);
    store_lease_clear(&c);
    store_close(st);
}

static void test_disk_full_rolls_back(const char *path)
{
    store *st = NULL;
    char err[256];
    CHECK(store_open(path, 1, &st, err, sizeof(err)) == 0);
    if (!st)
        return;
    int64_t sweep = 0;
    CHECK(store_sweep_create(st, compile("{\"method\":\"random\",\"run_cap\":100000,"
                                                     "\"parameters\":{\"lr\":{\"min\":0.1,\"max\":0.2}}}"),
                             1, 1, &sweep) == 0);
    CHECK(store_commit(st) == 0);

    /* No page may be added: the next insert fails with SQLITE_FULL. */
    int64_t pages = count_rows(st, "PRAGMA page_count");
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)pages);
    CHECK(sqlite3_exec(store_db(st), sql, NULL, NULL, NULL) == SQLITE_OK);
    store_lease lease;
    int got = 0;
    for (int i = 0; i < 5000 && got >= 0; i++) {
        got = store_trial_lease(st, "w", 2, &lease);
        if (got == 1)
            store_lease_clear(&lease);
    }
    CHECK(got == STORE_ERR_FULL);
    CHECK(store_commit(st) == STORE_ERR_FULL);

    /* Everything of the failed transaction is gone, and the cache agrees. */
    CHECK(count_rows(st, "SELECT count(*) FROM trials") == 0);
    store_sweep *sw = store_sweep_find(st, sweep);
    CHECK(sw != NULL);
    if (sw != NULL) {
        CHECK(sw->next_index == 0);
        CHECK(sw->counts[TRIAL_RUNNING] == 0);
    }

    /* With room again, leasing works. */
    CHECK(sqlite3_exec(store_db(st), "PRAGMA max_page_count = 1073741823", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(store_trial_lease(st, "w", 3, &lease) == 1);
    CHECK(lease.index == 0);
    store_lease_clear(&lease);
    CHECK(store_commit(st) == 0);
    store_close(st);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "\"%.60s\" failed: %s\n", sql, msg ? msg : sqlite3_errstr(rc));
    CHECK(rc == SQLITE_OK);
    sqlite3_free(msg);
}

/* A version-2 database with a finished, a running and a pending trial, their
 * attempts, metrics and parameters, upgraded by store_open: every row and
 * index survives and trials.state is still checked. */
static void test_upgrade_from_version_2(const char *path)
{
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    exec_ok(db, schema_migrations[0]);
    exec_ok(db, schema_migrations[1]);
    exec_ok(db, "PRAGMA user_version = 2");
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO sweeps (id, name, state, method, spec, seed, size, created_ms) "
             "VALUES (1, 'old', 'running', 'grid', '%s', 7, 3, 1000);",
             grid3);
    exec_ok(db, sql);
    exec_ok(db,
            "INSERT INTO trials (id, sweep, idx, state, params, attempt, lease, worker, final_loss, "
            "created_ms, ended_ms) VALUES "
            "(1, 1, 0, 'completed', '{\"optimizer\":\"adam\"}', 1, NULL, 'w1', 2.5, 1001, 1002),"
            "(2, 1, 1, 'running', '{\"optimizer\":\"sm3\"}', 1, 'tok', 'w2', NULL, 1003, NULL),"
            "(3, 1, 2, 'pending', '{\"optimizer\":\"shampoo\"}', 1, NULL, 'w3', NULL, 1004, NULL);"
            "INSERT INTO attempts (trial, attempt, lease, worker, started_ms, ended_ms, outcome) VALUES "
            "(1, 1, 'a', 'w1', 1001, 1002, 'completed'), (2, 1, 'tok', 'w2', 1003, NULL, NULL),"
            "(3, 1, 'c', 'w3', 1004, 1005, 'requeued');"
            "INSERT INTO metrics (trial, step, attempt, train_loss, val_loss) VALUES (1, 10, 1, 3.0, 2.5);"
            "INSERT INTO trial_params (trial, name, sweep, value, outcome, final_loss) VALUES "
            "(1, 'optimizer', 1, 'adam', 'completed', 2.5), (2, 'optimizer', 1, 'sm3', NULL, NULL),"
            "(3, 'optimizer', 1, 'shampoo', NULL, NULL);");
    CHECK(sqlite3_close(db) == SQLITE_OK);

    store *st = NULL;
    char err[256];
    int rc = store_open(path, 1, &st, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "store_open: %s\n", err);
    CHECK(rc == 0);
    if (!st)
        return;
    CHECK(count_rows(st, "PRAGMA user_version") == 4);
    CHECK(count_rows(st, "PRAGMA foreign_keys") == 1);
    CHECK(count_rows(st, "SELECT count(*) FROM trials") == 3);
    CHECK(count_rows(st, "SELECT count(*) FROM trials WHERE id = 1 AND state = 'completed' "
                         "AND final_loss = 2.5 AND worker = 'w1' AND ended_ms = 1002") == 1);
    CHECK(count_rows(st, "SELECT count(*) FROM trials WHERE id = 2 AND state = 'running' AND lease = 'tok'") == 1);
    CHECK(count_rows(st, "SELECT count(*) FROM attempts") == 3);
    CHECK(count_rows(st, "SELECT count(*) FROM metrics") == 1);
    CHECK(count_rows(st, "SELECT count(*) FROM trial_params") == 3);
    CHECK(count_rows(st, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'trials' "
                         "AND name IN ('trials_pending', 'trials_sweep_state')") == 2);
    CHECK(count_rows(st, "SELECT count(*) FROM sqlite_schema WHERE name = 'trials' AND sql LIKE '%state IN%'") == 0);
    CHECK(count_rows(st, "SELECT count(*) FROM sqlite_schema WHERE name = 'trials_new'") == 0);
    /* Migration 4: both indexes that finished trials write to are in trial order. */
    CHECK(count_rows(st, "SELECT count(*) FROM sqlite_schema WHERE name = 'trials_sweep_state' "
                         "AND sql LIKE '%(sweep, state, id, final_loss)%'") == 1);
    CHECK(count_rows(st, "SELECT count(*) FROM sqlite_schema WHERE name = 'trial_params_group' "
                         "AND sql LIKE '%(sweep, name, trial, value, outcome, final_loss)%'") == 1);

    /* The rebuilt table still rejects unknown states and orphan rows. */
    CHECK(sqlite3_exec(store_db(st), "UPDATE trials SET state = 'bogus' WHERE id = 3", NULL, NULL, NULL) ==
          SQLITE_CONSTRAINT);
    CHECK(sqlite3_exec(store_db(st), "INSERT INTO attempts (trial, attempt, lease, worker, started_ms) "
                                     "VALUES (99, 1, 'x', 'w', 1)", NULL, NULL, NULL) == SQLITE_CONSTRAINT);

    /* The cache loads the old rows: one trial each running, pending, completed. */
    store_sweep *sw = store_sweep_find(st, 1);
    CHECK(sw != NULL);
    if (sw != NULL) {
        CHECK(sw->counts[TRIAL_RUNNING] == 1);
        CHECK(sw->counts[TRIAL_PENDING] == 1);
        CHECK(sw->counts[TRIAL_COMPLETED] == 1);
        /* The completed trial's loss is loaded for tickets and status. */
        CHECK(sw->losses.n == 1);
        if (sw->losses.n == 1)
            CHECK(sw->losses.v[0] == 2.5);
        CHECK(sw->best_trial == 1);
        CHECK(sw->best_loss == 2.5);
    }
    store_close(st);
}

int main(void)
{
    char dir[] = "/tmp/test_store.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/a.db", dir);
    test_lifecycle(path);
    snprintf(path, sizeof(path), "%s/b.db", dir);
    test_disk_full_rolls_back(path);
    snprintf(path, sizeof(path), "%s/c.db", dir);
    test_upgrade_from_version_2(path);

    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "removing %s failed\n", dir);
    return check_report("test_store");
}
