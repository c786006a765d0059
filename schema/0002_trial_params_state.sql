-- sweepd schema, migration 2: trial_params rows of finished trials carry
-- their trial's outcome and final_loss, indexed by (sweep, name, value,
-- outcome, final_loss). Grouped tickets then count, rank and take medians per
-- parameter value by index range scans instead of joining every row with
-- trials. The index is partial (outcome IS NOT NULL), so leasing a trial
-- writes no entry into it and a requeue changes nothing. Each parameter costs
-- one index entry when its trial finishes. The primary key becomes
-- (trial, name): a trial's rows are one range, found by a seek when the trial
-- finishes and when the trials "where" filter checks a trial.
-- daemon/store.c keeps the copies equal in the same transaction as trials.

CREATE TABLE trial_params_new (
    trial      INTEGER NOT NULL REFERENCES trials(id),
    name       TEXT NOT NULL,             -- flattened name, nested groups joined with '.'
    sweep      INTEGER NOT NULL,
    value      ANY,                       -- text, integer or real; booleans as 'true'/'false'
    outcome    TEXT,                      -- trials.state once finished (completed, diverged,
                                          -- failed, cancelled); NULL while pending or running
    final_loss REAL,                      -- trials.final_loss once finished (NULL unless completed)
    PRIMARY KEY (trial, name)
) WITHOUT ROWID;

INSERT INTO trial_params_new (trial, name, sweep, value, outcome, final_loss)
    SELECT p.trial, p.name, p.sweep, p.value,
           CASE WHEN t.state IN ('pending', 'running') THEN NULL ELSE t.state END, t.final_loss
    FROM trial_params p JOIN trials t ON t.id = p.trial;

DROP TABLE trial_params;
ALTER TABLE trial_params_new RENAME TO trial_params;

CREATE INDEX trial_params_group ON trial_params (sweep, name, value, outcome, final_loss)
    WHERE outcome IS NOT NULL;
