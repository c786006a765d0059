-- sweepd schema, migration 2: trial_params rows carry a copy of their
-- trial's state and final_loss, indexed by (sweep, name, value, state,
-- final_loss). Grouped tickets then count, rank and take medians per
-- parameter value by index range scans instead of joining every row with
-- trials, and trials "where" filters are index lookups. The primary key
-- becomes (trial, name), so a trial's rows are updated by one range seek
-- when the trial changes state. daemon/store.c keeps both copies equal in the
-- same transaction as the trials row.

CREATE TABLE trial_params_new (
    trial      INTEGER NOT NULL REFERENCES trials(id),
    name       TEXT NOT NULL,             -- flattened name, nested groups joined with '.'
    sweep      INTEGER NOT NULL,
    value      ANY,                       -- text, integer or real; booleans as 'true'/'false'
    state      TEXT NOT NULL,             -- equals trials.state
    final_loss REAL,                      -- equals trials.final_loss (NULL unless completed)
    PRIMARY KEY (trial, name)
) WITHOUT ROWID;

INSERT INTO trial_params_new (trial, name, sweep, value, state, final_loss)
    SELECT p.trial, p.name, p.sweep, p.value, t.state, t.final_loss
    FROM trial_params p JOIN trials t ON t.id = p.trial;

DROP TABLE trial_params;
ALTER TABLE trial_params_new RENAME TO trial_params;

CREATE INDEX trial_params_group ON trial_params (sweep, name, value, state, final_loss);
