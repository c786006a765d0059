-- sweepd schema, migration 3: trials.state keeps the same six allowed values,
-- but the CHECK is written as a chain of '=' tests joined by OR. SQLite 3.40
-- compiles "state IN (...)" in a CHECK into an ephemeral table that every
-- trials INSERT and state UPDATE builds and fills; the OR chain compiles into
-- plain comparisons. Columns, defaults, indexes and foreign keys are as in
-- migration 1. daemon/store.c runs this with foreign_keys off (SQLite ignores
-- that pragma inside a transaction) and runs PRAGMA foreign_key_check before
-- COMMIT, so attempts, metrics and trial_params keep pointing at these ids.

CREATE TABLE trials_new (
    id              INTEGER PRIMARY KEY,
    sweep           INTEGER NOT NULL REFERENCES sweeps(id),
    idx             INTEGER NOT NULL,          -- 0-based index into the spec
    state           TEXT NOT NULL
                    CHECK (state = 'pending' OR state = 'running' OR state = 'completed'
                           OR state = 'diverged' OR state = 'failed' OR state = 'cancelled'),
    params          TEXT NOT NULL,             -- JSON object from spec_trial_params
    attempt         INTEGER NOT NULL DEFAULT 0, -- number of the newest lease, 0 before any
    lease           TEXT,                      -- token of the current lease while running
    worker          TEXT,                      -- worker of the newest lease
    requeues        INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    checkpoint      TEXT,                      -- newest checkpoint location
    checkpoint_step INTEGER,
    final_loss      REAL,                      -- NULL unless completed
    best_loss       REAL,
    steps           INTEGER,
    seconds         REAL,
    error           TEXT,
    created_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    UNIQUE (sweep, idx)
);

INSERT INTO trials_new (id, sweep, idx, state, params, attempt, lease, worker, requeues,
                        failures, checkpoint, checkpoint_step, final_loss, best_loss, steps,
                        seconds, error, created_ms, ended_ms)
    SELECT id, sweep, idx, state, params, attempt, lease, worker, requeues,
           failures, checkpoint, checkpoint_step, final_loss, best_loss, steps,
           seconds, error, created_ms, ended_ms
    FROM trials;

DROP TABLE trials;
ALTER TABLE trials_new RENAME TO trials;

-- Requeued trials waiting for a worker, oldest first.
CREATE INDEX trials_pending ON trials (id) WHERE state = 'pending';
-- Covers status counts and the tickets scan without touching table rows.
CREATE INDEX trials_sweep_state ON trials (sweep, state, final_loss);
