-- sweepd schema, migration 1: sweeps, trials, attempts, metrics, trial
-- parameters, workers and events. docs/STORAGE.md describes every column, the
-- trial state machine and the invariants; daemon/store.c performs each
-- transition. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE sweeps (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    state          TEXT NOT NULL
                   CHECK (state IN ('running', 'paused', 'finished', 'cancelled')),
    method         TEXT NOT NULL CHECK (method IN ('grid', 'random')),
    spec           TEXT NOT NULL,              -- canonical spec text
    seed           INTEGER NOT NULL,           -- uint64 kept as its int64 bit pattern
    size           INTEGER,                    -- trial count; NULL when unbounded
    target_reached INTEGER NOT NULL DEFAULT 0, -- 1 once a trial met metric.target
    created_ms     INTEGER NOT NULL,
    ended_ms       INTEGER
);

-- One row per trial index that was ever leased; a sweep's grid is never
-- materialised, so rows appear only as workers lease them.
CREATE TABLE trials (
    id              INTEGER PRIMARY KEY,
    sweep           INTEGER NOT NULL REFERENCES sweeps(id),
    idx             INTEGER NOT NULL,          -- 0-based index into the spec
    state           TEXT NOT NULL
                    CHECK (state IN ('pending', 'running', 'completed', 'diverged',
                                     'failed', 'cancelled')),
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
-- Requeued trials waiting for a worker, oldest first.
CREATE INDEX trials_pending ON trials (id) WHERE state = 'pending';
-- Covers status counts and the tickets scan without touching table rows.
CREATE INDEX trials_sweep_state ON trials (sweep, state, final_loss);

-- One row per lease.
CREATE TABLE attempts (
    trial           INTEGER NOT NULL REFERENCES trials(id),
    attempt         INTEGER NOT NULL,
    lease           TEXT NOT NULL,
    worker          TEXT NOT NULL,
    started_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    outcome         TEXT,    -- NULL while running, else how the lease ended
    steps           INTEGER,
    checkpoint      TEXT,    -- newest checkpoint saved during this attempt
    checkpoint_step INTEGER,
    error           TEXT,
    PRIMARY KEY (trial, attempt)
) WITHOUT ROWID;

-- One row per (trial, step): a resumed attempt that re-reports a step is ignored.
CREATE TABLE metrics (
    trial      INTEGER NOT NULL REFERENCES trials(id),
    step       INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    train_loss REAL,
    val_loss   REAL,
    PRIMARY KEY (trial, step)
) WITHOUT ROWID;

-- Top-level scalar parameters of each trial (nested groups flattened with '.'),
-- so tickets can group by a parameter without parsing JSON per row.
CREATE TABLE trial_params (
    sweep INTEGER NOT NULL,
    name  TEXT NOT NULL,
    value ANY,
    trial INTEGER NOT NULL REFERENCES trials(id),
    PRIMARY KEY (sweep, name, trial)
) WITHOUT ROWID;

CREATE TABLE workers (
    name          TEXT PRIMARY KEY,
    host          TEXT,
    pid           INTEGER,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    state         TEXT NOT NULL   -- connected | leaving | gone
);

-- Sweep and worker history: submit, pause, resume, cancel, finish, requeue,
-- joins and leaves. Leases and completions live in attempts.
CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    sweep  INTEGER,
    trial  INTEGER,
    worker TEXT,
    detail TEXT
);
