"""The trials operation against a real sweepd and its SQLite file: "where"
filters on flattened parameter values (strings, integers, reals, nested
names, several at once), paging with "offset" and "after", the errors for bad
filters and pages, and `sweepctl trials --where`. Every expected listing is
computed from the database, not written down.
"""

import csv
import json
import os
import sqlite3
import subprocess

import harness
from harness import Client, Daemon

SPEC = {"method": "grid",
        "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                       "lr": {"values": [0.01, 0.001, 3]},
                       "model": {"parameters": {"d_model": {"values": [32, 64]}}}}}


def run_sweep(daemon, losses):
    """Submit SPEC and complete one trial per loss; returns the sweep id."""
    client = Client(daemon.socket_path)
    sweep = client.ok("submit", spec=SPEC)["sweep"]
    worker = Client(daemon.socket_path)
    worker.ok("hello", version=1, role="worker", name="w1")
    for loss in losses:
        trial = worker.ok("lease")["trial"]
        worker.ok("complete", trial=trial["trial"], attempt=trial["attempt"], lease=trial["lease"],
                  final_loss=loss, steps=5, seconds=1.0)
    worker.close()
    client.close()
    return sweep


def db_params(daemon):
    """Return {trial id: params dict} read from the trials table."""
    with sqlite3.connect(f"file:{daemon.db_path()}?mode=ro", uri=True) as db:
        return {row[0]: json.loads(row[1]) for row in db.execute("SELECT id, params FROM trials")}


def flat(params, prefix=""):
    out = {}
    for key, value in params.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        else:
            out[name] = value
    return out


def ids(reply):
    return [t["trial"] for t in reply["trials"]]


def test_where_filters():
    with Daemon() as d:
        losses = [1.0 + 0.01 * ((i * 7) % 18) for i in range(18)]
        sweep = run_sweep(d, losses)
        params = {trial: flat(p) for trial, p in db_params(d).items()}
        assert len(params) == 18
        client = Client(d.socket_path)
        cases = [{"optimizer": "adam"}, {"lr": 3}, {"lr": 0.001}, {"model.d_model": 64},
                 {"optimizer": "sm3", "lr": 0.01}, {"optimizer": "nadam"}, {}]
        for where in cases:
            expected = sorted(t for t, p in params.items()
                              if all(p.get(k) == v for k, v in where.items()))
            got = ids(client.ok("trials", sweep=sweep, where=where))
            assert got == expected, (where, got, expected)
        assert ids(client.ok("trials", sweep=sweep, where={"optimizer": "nadam"})) == []

        best_adam = min((losses[t - 1], t) for t, p in params.items() if p["optimizer"] == "adam")[1]
        reply = client.ok("trials", sweep=sweep, state="completed", sort="final_loss", limit=1,
                          where={"optimizer": "adam"})
        assert ids(reply) == [best_adam]


def test_paging_offset_and_after():
    with Daemon() as d:
        losses = [2.0 - 0.05 * i for i in range(18)]
        sweep = run_sweep(d, losses)
        client = Client(d.socket_path)
        everything = ids(client.ok("trials", sweep=sweep))
        assert everything == sorted(everything)
        assert len(everything) == 18

        seen, after = [], 0
        while True:
            page = ids(client.ok("trials", sweep=sweep, after=after, limit=5))
            if not page:
                break
            assert len(page) <= 5
            seen += page
            after = page[-1]
        assert seen == everything

        by_loss = ids(client.ok("trials", sweep=sweep, sort="final_loss"))
        pages = [ids(client.ok("trials", sweep=sweep, sort="final_loss", offset=k, limit=4))
                 for k in range(0, 18, 4)]
        assert [t for page in pages for t in page] == by_loss
        assert ids(client.ok("trials", sweep=sweep, offset=18)) == []
        adam_after = ids(client.ok("trials", sweep=sweep, where={"optimizer": "adam"}, after=everything[8]))
        assert all(t > everything[8] for t in adam_after)


def test_bad_filters_rejected():
    with Daemon() as d:
        sweep = run_sweep(d, [1.0])
        client = Client(d.socket_path)
        bad = [
            ({"where": ["optimizer", "adam"]}, "where: expected an object"),
            ({"where": {"optimizer": ["adam"]}}, "where.optimizer: expected a string, number or boolean"),
            ({"where": {"optimizer": None}}, "where.optimizer: expected a string, number or boolean"),
            ({"where": {f"p{i}": i for i in range(17)}}, "where: at most 16 conditions"),
            ({"offset": -1}, "offset: -1 is negative"),
            ({"after": 1.5}, "after: expected an integer"),
            ({"after": 3, "sort": "final_loss"}, "after: pages by trial id and needs sort \"id\""),
        ]
        for fields, message in bad:
            reply = client.request("trials", sweep=sweep, **fields)
            assert reply["ok"] is False, fields
            assert reply["error"]["code"] == "bad_request", reply
            assert message in reply["error"]["message"], (message, reply)


def test_sweepctl_trials_where():
    with Daemon() as d:
        losses = [1.5, 1.2, 1.9, 1.1, 1.4, 1.3]
        sweep = run_sweep(d, losses)
        params = {trial: flat(p) for trial, p in db_params(d).items()}
        argv = [harness.program("sweepctl"), "--connect", "unix:" + d.socket_path, "--json", "trials",
                str(sweep), "--where", "optimizer=sm3", "--where", "model.d_model=32", "--sort", "final_loss"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=harness.scaled(30))
        assert proc.returncode == 0, proc.stderr
        expected = sorted((losses[t - 1], t) for t, p in params.items()
                          if p["optimizer"] == "sm3" and p["model.d_model"] == 32)
        assert ids(json.loads(proc.stdout)) == [t for _, t in expected]

        text = subprocess.run(argv[:3] + ["trials", str(sweep), "--state", "completed", "--sort", "final_loss",
                                          "--limit", "1", "--where", "optimizer=adam"],
                              capture_output=True, text=True, timeout=harness.scaled(30))
        assert text.returncode == 0, text.stderr
        best = min((losses[t - 1], t) for t, p in params.items() if p["optimizer"] == "adam")[1]
        rows = [line.split() for line in text.stdout.splitlines()[1:]]
        assert [int(row[0]) for row in rows] == [best], text.stdout

        for arg, message in [("optimizer", "expected NAME=VALUE"), ("=adam", "expected NAME=VALUE")]:
            bad = subprocess.run(argv[:3] + ["trials", str(sweep), "--where", arg], capture_output=True,
                                 text=True, timeout=harness.scaled(30))
            assert bad.returncode == 2, bad
            assert message in bad.stderr, bad.stderr
        twice = subprocess.run(argv[:3] + ["trials", str(sweep), "--where", "lr=3", "--where", "lr=0.01"],
                               capture_output=True, text=True, timeout=harness.scaled(30))
        assert twice.returncode == 2, twice
        assert "names lr twice" in twice.stderr, twice.stderr



def test_export_pages_past_100000():
    """A sweep above the 100,000-row limit of one trials request is exported
    whole, as CSV and as JSON. The trials are written into the daemon's
    database directly (as leases and completes would write them), because
    100,005 lifecycles over the protocol would take minutes."""
    count = 100_005
    state = harness.tmp_dir()
    spec = {"method": "random", "run_cap": 200_000,
            "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                           "lr": {"distribution": "uniform", "min": 0.001, "max": 0.1}}}
    with Daemon(state_dir=state) as d:
        sweep = Client(d.socket_path).ok("submit", spec=spec)["sweep"]
    with sqlite3.connect(os.path.join(state, "sweepd.db")) as db:
        trials, params = [], []
        for i in range(count):
            p = {"lr": 0.001 + (i % 997) / 10000, "optimizer": ["adam", "sm3", "shampoo"][i % 3]}
            loss = 1.0 + (i % 1000) / 1000
            trials.append((i + 1, sweep, i, json.dumps(p), loss))
            params += [(i + 1, "lr", sweep, p["lr"], loss), (i + 1, "optimizer", sweep, p["optimizer"], loss)]
        db.executemany("INSERT INTO trials (id, sweep, idx, state, params, attempt, created_ms, final_loss, steps) "
                       "VALUES (?, ?, ?, 'completed', ?, 1, 0, ?, 1)", trials)
        db.executemany("INSERT INTO trial_params (trial, name, sweep, value, outcome, final_loss) "
                       "VALUES (?, ?, ?, ?, 'completed', ?)", params)
    with Daemon(state_dir=state) as d:
        base = [harness.program("sweepctl"), "--connect", "unix:" + d.socket_path, "export", str(sweep)]
        csv_path = os.path.join(state, "export.csv")
        proc = subprocess.run(base + ["--format", "csv", "--output", csv_path], capture_output=True, text=True,
                              timeout=harness.scaled(120))
        assert proc.returncode == 0, proc.stderr
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == count
        assert [int(r["trial"]) for r in rows] == list(range(1, count + 1))
        assert rows[-1]["optimizer"] == ["adam", "sm3", "shampoo"][(count - 1) % 3]
        assert float(rows[4]["lr"]) == 0.001 + 4 / 10000

        proc = subprocess.run(base + ["--format", "json"], capture_output=True, text=True,
                              timeout=harness.scaled(120))
        assert proc.returncode == 0, proc.stderr
        exported = json.loads(proc.stdout)
        assert len(exported) == count
        assert exported[count - 1]["trial"] == count
        assert exported[count - 1]["params"]["optimizer"] == ["adam", "sm3", "shampoo"][(count - 1) % 3]


if __name__ == "__main__":
    harness.main(globals())
