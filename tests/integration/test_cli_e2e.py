"""sweepctl on a real sweep: sweepd, two sweep-worker processes training a
tiny model on a small text, and `watch --until-done` waiting for the end.
Then status, trials, tickets and export must agree with the database, read
read-only with the sqlite3 module.
"""

import csv
import json
import os
import sqlite3
import statistics

import harness
from test_cli_commands import ctl_json, ctl_ok, wilson, write_spec


def tiny_spec(dataset):
    """Four trials of a 1-layer model, 20 steps each: seconds per trial."""
    return {
        "name": "tiny e2e",
        "method": "random",
        "run_cap": 4,
        "seed": 11,
        "ticket_threshold": 5.3,
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            "dataset": {"value": dataset},
            "optimizer": {"values": ["adam", "sm3"]},
            "lr": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.03},
            "n_layer": {"value": 1},
            "d_model": {"value": 8},
            "n_head": {"value": 2},
            "seq_len": {"value": 8},
            "batch_size": {"value": 2},
            "steps": {"value": 20},
            "eval_every": {"value": 10},
            "eval_batches": {"value": 1},
        },
    }


def write_text(directory):
    """A small English text, long enough for training and validation windows."""
    path = os.path.join(directory, "text.txt")
    sentence = ("The quick brown fox jumps over the lazy dog while the cat sleeps "
                "by the warm fire and the rain falls on the old stone roof. ")
    with open(path, "w", encoding="utf-8") as f:
        f.write(sentence * 60)
    return path


def db_rows(daemon, sweep):
    uri = "file:" + daemon.db_path() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT id, state, attempt, params, final_loss, best_loss, steps, seconds, worker "
            "FROM trials WHERE sweep = ? ORDER BY id", (sweep,))]


def test_two_workers_agree_with_db():
    d = harness.tmp_dir()
    spec_path = write_spec(d, "tiny.json", tiny_spec(write_text(d)))
    with harness.Daemon() as daemon:
        out = ctl_ok(daemon, "submit", spec_path)
        assert "4 trials" in out, out
        sweep = int(out.split("submitted sweep ")[1].split()[0])

        workers = [harness.start_worker(daemon.socket_path, "--name", name, "--threads", "1",
                                        "--checkpoint-dir", os.path.join(d, "ckpt-" + name))
                   for name in ("w1", "w2")]
        try:
            # watch --until-done off a terminal returns when the sweep finishes.
            out = ctl_ok(daemon, "watch", sweep, "--until-done", "--interval", "1",
                         timeout=300)
            assert f"sweep {sweep} finished: 4/4 done" in out, out
        finally:
            for worker in workers:
                worker.stop()

        rows = db_rows(daemon, sweep)
        assert len(rows) == 4, rows
        by_id = {r["id"]: r for r in rows}
        assert {r["worker"] for r in rows} <= {"w1", "w2"}, rows
        for r in rows:
            if r["state"] == "completed":
                assert r["steps"] == 20, r
                assert 0 < r["final_loss"] < 6.5, r  # log(256) = 5.55 nats at the start

        # status
        status = ctl_json(daemon, "status", sweep)
        assert status["state"] == "finished", status
        assert status["done"] == 4, status
        for state in ("completed", "diverged", "failed", "cancelled"):
            expected = sum(r["state"] == state for r in rows)
            assert status["counts"][state] == expected, (state, status)
        completed = [r for r in rows if r["state"] == "completed"]
        assert completed, rows
        best = min(completed, key=lambda r: r["final_loss"])
        assert status["best_loss"] == best["final_loss"], (status, best)
        assert status["best_trial"] == best["id"], (status, best)

        # trials
        trials = ctl_json(daemon, "trials", sweep)["trials"]
        assert [t["trial"] for t in trials] == [r["id"] for r in rows], trials
        for t in trials:
            r = by_id[t["trial"]]
            assert t["state"] == r["state"], (t, r)
            assert t["attempts"] == r["attempt"], (t, r)
            assert t["params"] == json.loads(r["params"]), (t, r)
            assert t["worker"] == r["worker"], (t, r)
            assert t["steps"] == r["steps"], (t, r)
            if r["state"] == "completed":
                assert t["final_loss"] == r["final_loss"], (t, r)
                assert t["best_loss"] == r["best_loss"], (t, r)
                assert t["seconds"] == r["seconds"], (t, r)

        # tickets, per optimizer and overall, from the database
        threshold = 5.3
        reply = ctl_json(daemon, "tickets", sweep, "--by", "optimizer")
        assert reply["threshold"] == threshold, reply
        groups = {g["value"]: g for g in reply["groups"]}
        names = {json.loads(r["params"])["optimizer"] for r in rows}
        assert set(groups) == names, (groups, names)
        for name, group in list(groups.items()) + [(None, reply["overall"])]:
            members = [r for r in rows
                       if name is None or json.loads(r["params"])["optimizer"] == name]
            finished = [r for r in members if r["state"] in ("completed", "diverged")]
            winners = [r for r in finished
                       if r["state"] == "completed" and r["final_loss"] < threshold]
            assert group["finished"] == len(finished), (name, group)
            assert group["winners"] == len(winners), (name, group)
            losses = [r["final_loss"] for r in finished if r["state"] == "completed"]
            if losses:
                assert group["best_loss"] == min(losses), (name, group)
                assert abs(group["median_loss"] - statistics.median(losses)) < 1e-12, group
            if finished:
                low, high = wilson(len(winners), len(finished))
                assert abs(group["ci_low"] - low) < 1e-9
                assert abs(group["ci_high"] - high) < 1e-9

        out = ctl_ok(daemon, "tickets", sweep, "--by", "optimizer")
        assert "below 5.3" in out, out
        assert "overall" in out, out

        # export
        csv_path = os.path.join(d, "tiny.csv")
        ctl_ok(daemon, "export", sweep, "--format", "csv", "--output", csv_path)
        with open(csv_path, newline="", encoding="utf-8") as f:
            exported = list(csv.DictReader(f))
        assert [int(e["trial"]) for e in exported] == [r["id"] for r in rows], exported
        for e in exported:
            r = by_id[int(e["trial"])]
            params = json.loads(r["params"])
            assert e["optimizer"] == params["optimizer"], (e, r)
            assert float(e["lr"]) == params["lr"], (e, r)
            assert e["params.steps"] == str(params["steps"]), (e, r)
            assert e["state"] == r["state"], (e, r)
            assert e["worker"] == r["worker"], (e, r)
            if r["state"] == "completed":
                assert float(e["final_loss"]) == r["final_loss"], (e, r)
                assert float(e["best_loss"]) == r["best_loss"], (e, r)
                assert float(e["seconds"]) == r["seconds"], (e, r)
                assert int(e["steps"]) == r["steps"], (e, r)


if __name__ == "__main__":
    harness.main(dict(globals()))
