-- sweepd schema, migration 4: the two indexes that finished trials write to
-- are kept in trial order instead of final_loss order.
--
-- Before, trials_sweep_state was (sweep, state, final_loss) and
-- trial_params_group was (sweep, name, value, outcome, final_loss). So each
-- completed trial inserted entries at pages chosen by its loss, about three
-- random leaf pages per completion. Every group commit rewrote those pages
-- into the WAL, and a growing sweep spread them over more distinct pages. The daemon now keeps the final
-- losses of completed trials in memory (daemon/store.c, loaded at start from
-- trials_sweep_state), so neither index needs loss order. With the trial id
-- ahead of the loss, both indexes grow at their ends, and they still cover
-- the columns that the start-up load and the grouped tickets scan read.

DROP INDEX trials_sweep_state;
CREATE INDEX trials_sweep_state ON trials (sweep, state, id, final_loss);

DROP INDEX trial_params_group;
CREATE INDEX trial_params_group ON trial_params (sweep, name, trial, value, outcome, final_loss)
    WHERE outcome IS NOT NULL;
