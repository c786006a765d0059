"""Grouped tickets against a real sweepd. The per-value counts and losses that
the daemon keeps in memory must follow every later transition (complete,
diverged, failed, requeue, cancel) and be rebuilt the same after a restart. A database written by schema version 1
must migrate to version 2 with the outcome and final loss of each finished
trial copied onto its trial_params rows. The overall summary that comes with
the groups (partly summed from them when they hold every completed trial)
must match the whole sweep, also for a parameter no trial has. The expected figures are computed from the daemon's own
SQLite file, so the test checks the daemon against its database.
"""

import json
import os
import sqlite3
import statistics

import harness
from harness import Client, Daemon

THRESHOLD = 1.5


def summarise(trials):
    """The tickets fields of a list of (state, final_loss)."""
    states = [s for s, _ in trials]
    losses = sorted(loss for s, loss in trials if s == "completed")
    return {"completed": states.count("completed"), "diverged": states.count("diverged"),
            "failed": states.count("failed"), "cancelled": states.count("cancelled"),
            "finished": states.count("completed") + states.count("diverged"),
            "winners": sum(1 for loss in losses if loss < THRESHOLD),
            "best_loss": losses[0] if losses else None,
            "median_loss": statistics.median(losses) if losses else None}


def expected_groups(db_path, sweep, by):
    """Compute ({value: summary}, overall summary) for the sweep straight from
    the trials table. Trials without the parameter are in no group."""
    rows = {}
    everything = []
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        for params, state, loss in db.execute(
                "SELECT params, state, final_loss FROM trials WHERE sweep = ?", (sweep,)):
            everything.append((state, loss))
            params = json.loads(params)
            if by in params:
                rows.setdefault(params[by], []).append((state, loss))
    out = {}
    for value, trials in rows.items():
        fields = summarise(trials)
        if fields["finished"] + fields["failed"] + fields["cancelled"] == 0:
            continue
        out[value] = fields
    return out, summarise(everything)


def check_fields(where, actual_fields, expected_fields):
    for key, expected in expected_fields.items():
        actual = actual_fields[key]
        if isinstance(expected, float):
            assert abs(actual - expected) <= 1e-12, (where, key, actual, expected)
        else:
            assert actual == expected, (where, key, actual, expected)


def check_tickets(client, daemon, sweep, by):
    reply = client.ok("tickets", sweep=sweep, threshold=THRESHOLD, by=by)
    got = {g["value"]: g for g in reply["groups"]}
    want, overall = expected_groups(daemon.db_path(), sweep, by)
    assert sorted(got, key=str) == sorted(want, key=str), (got.keys(), want.keys())
    for value, fields in want.items():
        check_fields((by, value), got[value], fields)
    check_fields((by, "overall"), reply["overall"], overall)


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def test_cached_counts_follow_transitions():
    spec = {"method": "grid", "max_failures": 1,
            "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                           "lr": {"values": [0.001, 0.01, 1, 2]}}}
    with Daemon() as d:
        client = Client(d.socket_path)
        sweep = client.ok("submit", spec=spec)["sweep"]
        worker = Client(d.socket_path)
        worker.ok("hello", version=1, role="worker", name="w1")

        def finish(count, start):
            for i in range(start, start + count):
                trial = worker.ok("lease")["trial"]
                if i % 5 == 4:
                    worker.ok("diverged", step=2, loss="nan", **lease_fields(trial))
                elif i % 7 == 6:
                    worker.ok("failed", error="test", **lease_fields(trial))
                else:
                    worker.ok("complete", final_loss=1.2 + (i * 37 % 11) / 20, **lease_fields(trial))

        finish(5, 0)
        check_tickets(client, d, sweep, "optimizer")  # builds the cached counts
        check_tickets(client, d, sweep, "lr")
        check_tickets(client, d, sweep, "absent")  # no groups: overall from the trials index
        finish(4, 5)
        check_tickets(client, d, sweep, "optimizer")  # after more completions
        check_tickets(client, d, sweep, "lr")

        # A requeued trial is pending, then cancelled with the sweep.
        other = Client(d.socket_path)
        other.ok("hello", version=1, role="worker", name="w2")
        held = other.ok("lease")["trial"]
        assert held is not None
        other.close()
        d.wait_log(rf"trial={held['trial']} attempt=1 worker=w2 requeued: disconnect -> pending")
        worker.ok("lease")  # running under w1
        client.ok("cancel", sweep=sweep)
        check_tickets(client, d, sweep, "optimizer")
        check_tickets(client, d, sweep, "lr")
        with sqlite3.connect(f"file:{d.db_path()}?mode=ro", uri=True) as db:
            mismatched = db.execute(
                "SELECT count(*) FROM trial_params p JOIN trials t ON t.id = p.trial WHERE "
                "p.outcome IS NOT (CASE WHEN t.state IN ('pending', 'running') THEN NULL ELSE t.state END) "
                "OR p.final_loss IS NOT t.final_loss").fetchone()
            assert mismatched == (0,)


def test_restart_reloads_losses():
    """Losses and group lists are rebuilt from the database at start (the
    categorical optimizer before any request), and completions after the
    restart extend them. The status best trial survives the restart too."""
    state = harness.tmp_dir()
    spec = {"method": "random", "seed": 11, "run_cap": 60,
            "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                           "lr": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.1}}}

    def finish(d, count, start):
        worker = Client(d.socket_path)
        worker.ok("hello", version=1, role="worker", name="w1")
        for i in range(start, start + count):
            trial = worker.ok("lease")["trial"]
            if i % 6 == 5:
                worker.ok("diverged", step=1, loss="inf", **lease_fields(trial))
            else:
                worker.ok("complete", final_loss=1.0 + (i * 29 % 17) / 16, **lease_fields(trial))
        worker.close()

    with Daemon(state_dir=state) as d:
        client = Client(d.socket_path)
        sweep = client.ok("submit", spec=spec)["sweep"]
        finish(d, 25, 0)
        before = client.ok("tickets", sweep=sweep, threshold=THRESHOLD, by="optimizer")
        status_before = client.ok("status", sweep=sweep)
    with Daemon(state_dir=state) as d:
        client = Client(d.socket_path)
        after = client.ok("tickets", sweep=sweep, threshold=THRESHOLD, by="optimizer")
        del before["id"], after["id"]
        assert after == before, (after, before)
        status_after = client.ok("status", sweep=sweep)
        assert status_after["best_trial"] == status_before["best_trial"]
        assert status_after["best_loss"] == status_before["best_loss"]
        check_tickets(client, d, sweep, "optimizer")
        check_tickets(client, d, sweep, "lr")
        finish(d, 20, 25)
        check_tickets(client, d, sweep, "optimizer")
        check_tickets(client, d, sweep, "lr")
        with sqlite3.connect(f"file:{d.db_path()}?mode=ro", uri=True) as db:
            best = db.execute("SELECT id, final_loss FROM trials WHERE sweep = ? AND state = 'completed' "
                              "ORDER BY final_loss, id LIMIT 1", (sweep,)).fetchone()
        status = client.ok("status", sweep=sweep)
        assert (status["best_trial"], status["best_loss"]) == best


def test_many_values_read_sorted():
    """A parameter with more values than the daemon caches (4096) is read
    sorted by value on each request, and still matches the database. Past
    10000 values the request gets a bad_request error naming the limit."""
    spec = {"method": "random", "seed": 5, "run_cap": 10050,
            "parameters": {"optimizer": {"values": ["adam", "sm3"]},
                           "lr": {"distribution": "uniform", "min": 0.001, "max": 0.1}}}
    with Daemon() as d:
        client = Client(d.socket_path)
        sweep = client.ok("submit", spec=spec)["sweep"]
        worker = Client(d.socket_path)
        worker.ok("hello", version=1, role="worker", name="w1")

        def finish(start, end):
            # Pipelined: send all lease requests of a batch, then the completes.
            for first in range(start, end, 300):
                ids = [worker.send("lease") for _ in range(min(300, end - first))]
                trials = [worker.reply(i)["trial"] for i in ids]
                ids = [worker.send("complete", final_loss=1.0 + (first + k) % 97 / 50, **lease_fields(t))
                       for k, t in enumerate(trials)]
                for i in ids:
                    assert worker.reply(i)["ok"]

        finish(0, 4200)
        reply = client.ok("tickets", sweep=sweep, threshold=THRESHOLD, by="lr")
        assert len(reply["groups"]) == 4200
        check_tickets(client, d, sweep, "lr")
        check_tickets(client, d, sweep, "optimizer")

        finish(4200, 10050)
        reply = client.request("tickets", sweep=sweep, threshold=THRESHOLD, by="lr")
        assert reply["ok"] is False, reply
        error = reply["error"]
        assert error["code"] == "bad_request", error
        assert "more than 10000 values" in error["message"], error
        check_tickets(client, d, sweep, "optimizer")


def test_migration_from_version_1():
    state = harness.tmp_dir()
    db_path = os.path.join(state, "sweepd.db")
    with open(os.path.join(harness.REPO, "schema", "0001_initial.sql")) as f:
        schema_v1 = f.read()
    spec = {"method": "grid", "parameters": {"optimizer": {"values": ["adam", "sm3"]}}}
    with sqlite3.connect(db_path) as db:
        db.executescript(schema_v1)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO sweeps (id, name, state, method, spec, seed, size, created_ms) "
                   "VALUES (1, 'old', 'running', 'grid', ?, 7, 40, 0)", (json.dumps(spec),))
        for i in range(40):
            optimizer = ["adam", "sm3"][i % 2]
            state_name, loss = ("diverged", None) if i % 9 == 8 else ("completed", 1.3 + (i % 13) / 25)
            db.execute("INSERT INTO trials (id, sweep, idx, state, params, attempt, created_ms, final_loss) "
                       "VALUES (?, 1, ?, ?, ?, 1, 0, ?)",
                       (i + 1, i, state_name, json.dumps({"optimizer": optimizer}), loss))
            db.execute("INSERT INTO trial_params (sweep, name, value, trial) VALUES (1, 'optimizer', ?, ?)",
                       (optimizer, i + 1))
    with Daemon(state_dir=state) as d:
        d.wait_log(r"applied schema migration 2 to ")
        check_tickets(Client(d.socket_path), d, 1, "optimizer")
        reply = Client(d.socket_path).ok("trials", sweep=1, where={"optimizer": "sm3"}, limit=100)
        assert [t["trial"] for t in reply["trials"]] == list(range(2, 41, 2))
    with sqlite3.connect(db_path) as db:
        # Every later migration ran too, each keeping the rows above.
        migrations = [n for n in os.listdir(os.path.join(harness.REPO, "schema")) if n.endswith(".sql")]
        assert db.execute("PRAGMA user_version").fetchone() == (len(migrations),)
        assert db.execute("SELECT count(*) FROM trials").fetchone() == (40,)
        copied = db.execute("SELECT count(*) FROM trial_params p JOIN trials t ON t.id = p.trial "
                            "WHERE p.outcome = t.state AND p.final_loss IS t.final_loss").fetchone()
        assert copied == (40,)


if __name__ == "__main__":
    harness.main(globals())
