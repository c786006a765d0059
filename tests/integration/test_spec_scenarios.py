"""Sweep-spec scenarios through a real sweepd, with protocol clients as
workers, so nothing trains. Specs rejected at submit store nothing and name
the field and the rule. Bounds 0.0 and 1.0 draw reals, while 0 and 1 draw only
0 and 1. A nested grid gives 8 trials as nested JSON and then finishes. A
10^12-point grid is accepted at once without memory growth. A 600-point grid
leased by 4 concurrent workers yields 600 distinct trials and then finishes.
"""

import json
import sqlite3
import threading

import harness
from harness import Client, Daemon


def db_rows(daemon, sql):
    con = sqlite3.connect(f"file:{daemon.db_path()}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def rss_kib(pid):
    """Return the resident set size of pid in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS line for pid {pid}")


def submit_raw(client, spec_text):
    """Submit a spec given as JSON text, so number literals keep the exact
    form written in the test (0 versus 0.0)."""
    client.send_raw(b'{"id":"submit","op":"submit","spec":' + spec_text.encode() + b"}\n")
    return client.reply("submit")


def worker(daemon, name):
    w = Client(daemon.socket_path)
    w.ok("hello", version=1, role="worker", name=name)
    return w


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def run_all(w, loss=2.0):
    """Lease and complete trials until none is ready; returns the trials."""
    trials = []
    while True:
        trial = w.ok("lease")["trial"]
        if trial is None:
            return trials
        trials.append(trial)
        w.ok("complete", final_loss=loss, best_loss=loss, steps=1, seconds=0.01, **lease_fields(trial))


# Each spec is rejected at submit. The expected message starts with the JSON
# path of the field and contains the rule.
REJECTED = [
    ('{"method":"random","parameters":{"lr":{"distribution":"log_uniform_values","min":0,"max":0.1}}}',
     "parameters.lr.min:", "min > 0"),
    ('{"method":"random","parameters":{"lr":{"distribution":"log_uniform_values","min":-1,"max":0.1}}}',
     "parameters.lr.min:", "min > 0"),
    ('{"method":"random","parameters":{"lr":{"distribution":"log_uniform_values","min":0.1,"max":0.1}}}',
     "parameters.lr", "min < max"),
    ('{"method":"random","parameters":{"lr":{"distribution":"log_uniform_values","min":0.5,"max":0.1}}}',
     "parameters.lr", "min < max"),
    ('{"method":"random","parameters":{"lr":{"distribution":"log_uniform_values","min":1e-400,"max":0.1}}}',
     "parameters.lr.min:", "underflow"),
    ('{"method":"random","parameters":{"lr":{"distribution":"log_uniform","min":-5,"max":1000}}}',
     "parameters.lr.max:", "exp(1000)"),
    ('{"method":"grid","parameters":{"lr":{"distribution":"uniform","min":0.0,"max":1.0}}}',
     "parameters.lr:", "continuous"),
    ('{"method":"grid","parameters":{"lr":{"min":0.0,"max":1.0}}}',
     "parameters.lr:", "continuous"),
]


def test_rejected_specs_store_nothing():
    with Daemon() as d:
        with Client(d.socket_path) as c:
            for spec_text, path, rule in REJECTED:
                reply = submit_raw(c, spec_text)
                assert reply["ok"] is False, (spec_text, reply)
                assert reply["error"]["code"] == "invalid_spec", (spec_text, reply)
                message = reply["error"]["message"]
                assert message.startswith(path), (spec_text, message)
                assert rule in message, (spec_text, message)
            assert c.ok("list")["sweeps"] == []
        for table in ("sweeps", "trials", "trial_params", "attempts"):
            assert db_rows(d, f"SELECT count(*) FROM {table}") == [(0,)], f"{table} is not empty"


def test_float_bounds_reals_int_bounds_integers():
    with Daemon() as d:
        c = Client(d.socket_path)
        reals = submit_raw(c, '{"method":"random","seed":11,"run_cap":60,'
                              '"parameters":{"lr":{"min":0.0,"max":1.0}}}')
        ints = submit_raw(c, '{"method":"random","seed":11,"run_cap":60,'
                             '"parameters":{"lr":{"min":0,"max":1}}}')
        assert reals["ok"] is True, reals
        assert ints["ok"] is True, ints
        w = worker(d, "w1")
        trials = run_all(w)
        assert len(trials) == 120
        by_sweep = {reals["sweep"]: [], ints["sweep"]: []}
        for trial in trials:
            by_sweep[trial["sweep"]].append(trial["params"]["lr"])

        real_values = by_sweep[reals["sweep"]]
        assert all(isinstance(v, float) for v in real_values), real_values
        assert all(0.0 <= v < 1.0 for v in real_values), real_values
        assert len(set(real_values)) == 60, "60 distinct reals"
        assert sum(1 for v in real_values if v != int(v)) == 60, "none of them integral"

        int_values = by_sweep[ints["sweep"]]
        assert all(type(v) is int for v in int_values), int_values
        assert set(int_values) == {0, 1}, set(int_values)
        w.close()
        c.close()


NESTED = {
    "method": "grid",
    "name": "nested",
    "parameters": {
        "optimizer": {"values": ["adam", "sm3"]},
        "model": {"parameters": {
            "d_model": {"values": [32, 64]},
            "n_head": {"value": 4},
            "depth": {"parameters": {"n_layer": {"values": [1, 2]}}},
        }},
    },
}


def test_nested_grid_eight_trials():
    with Daemon() as d:
        c = Client(d.socket_path)
        submitted = c.ok("submit", spec=NESTED)
        assert submitted["size"] == 8
        c.ok("watch", sweep=submitted["sweep"])
        w = worker(d, "w1")
        trials = run_all(w)

        assert len(trials) == 8
        points = set()
        for trial in trials:
            params = trial["params"]
            assert sorted(params) == ["model", "optimizer"], params
            model = params["model"]
            assert isinstance(model, dict), params
            assert model["n_head"] == 4, "the constant is in every trial"
            assert isinstance(model["depth"], dict), params
            points.add((params["optimizer"], model["d_model"], model["depth"]["n_layer"]))
        assert points == {(o, m, n) for o in ("adam", "sm3") for m in (32, 64) for n in (1, 2)}
        assert sorted(t["index"] for t in trials) == list(range(8))

        c.wait_event(event="sweep", sweep=submitted["sweep"], state="finished")
        status = c.ok("status", sweep=submitted["sweep"])
        assert status["state"] == "finished"
        assert status["counts"]["completed"] == 8
        assert w.ok("lease")["trial"] is None
        stored = db_rows(d, "SELECT params FROM trials ORDER BY idx")
        assert [json.loads(p) for (p,) in stored] == [t["params"] for t in sorted(trials, key=lambda t: t["index"])]
        w.close()
        c.close()


# Six parameters of 100 values each: 10^12 points.
HUGE = {
    "method": "grid",
    "name": "huge",
    "parameters": {name: {"min": 2, "max": 101} for name in
                   ("d_model", "seq_len", "batch_size", "steps", "warmup_steps", "eval_every")},
}


def test_huge_grid_no_memory_growth():
    with Daemon() as d:
        c = Client(d.socket_path)
        # Warm up: the first submit and lease load SQLite's statements and pages.
        small = c.ok("submit", spec={"method": "grid", "parameters": {"lr": {"values": [0.1, 0.2]}}})
        w = worker(d, "w1")
        run_all(w)
        c.ok("status", sweep=small["sweep"])
        before = rss_kib(d.pid)

        submitted = c.ok("submit", spec=HUGE)
        assert submitted["size"] == 10 ** 12, "the size is reported at submit"
        status = c.ok("status", sweep=submitted["sweep"])
        assert status["total"] == 10 ** 12
        assert status["state"] == "running"
        assert db_rows(d, f"SELECT size FROM sweeps WHERE id = {submitted['sweep']}") == [(10 ** 12,)]
        assert db_rows(d, f"SELECT count(*) FROM trials WHERE sweep = {submitted['sweep']}") == [(0,)], \
            "no trial exists before a worker asks"

        # Trials are created on demand, by index.
        for expected_index in range(3):
            trial = w.ok("lease")["trial"]
            assert trial["index"] == expected_index
            w.ok("complete", final_loss=1.0, **lease_fields(trial))
        assert db_rows(d, f"SELECT count(*) FROM trials WHERE sweep = {submitted['sweep']}") == [(3,)]
        last = c.ok("validate", spec=HUGE, show=1)
        assert last["size"] == 10 ** 12
        after = rss_kib(d.pid)
        growth = after - before
        print(f"daemon RSS {before} KiB before the 10^12-point submit, {after} KiB after ({growth:+d} KiB)")
        assert growth < 4096, f"RSS grew by {growth} KiB"
        w.close()
        c.close()


def test_grid_600_four_workers():
    spec = {"method": "grid", "name": "six-hundred",
            "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                           "lr": {"values": [0.0001 * k for k in range(1, 11)]},
                           "n_layer": {"min": 1, "max": 20}}}
    with Daemon() as d:
        c = Client(d.socket_path)
        submitted = c.ok("submit", spec=spec)
        assert submitted["size"] == 600
        c.ok("watch", sweep=submitted["sweep"])

        results, errors = [], []
        start = threading.Barrier(4)

        def work(name):
            try:
                w = worker(d, name)
                start.wait()
                results.extend((name, t) for t in run_all(w))
                w.close()
            except Exception as exc:  # reported by the main thread
                errors.append(f"{name}: {exc!r}")

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(harness.scaled(300))
        assert not errors, errors
        assert len(results) == 600, len(results)

        trials = [t for _, t in results]
        assert len({t["trial"] for t in trials}) == 600, "no trial is leased twice"
        assert sorted(t["index"] for t in trials) == list(range(600)), "every index exactly once"
        points = {(t["params"]["optimizer"], t["params"]["lr"], t["params"]["n_layer"]) for t in trials}
        assert len(points) == 600, "no point repeats"
        assert all(t["attempt"] == 1 for t in trials)
        assert len({name for name, _ in results}) == 4, "all four workers got trials"

        c.wait_event(timeout=30, event="sweep", sweep=submitted["sweep"], state="finished")
        status = c.ok("status", sweep=submitted["sweep"])
        assert status["state"] == "finished"
        assert status["counts"]["completed"] == 600
        assert status["done"] == 600
        assert db_rows(d, "SELECT count(*), count(DISTINCT params) FROM trials") == [(600, 600)]
        c.close()


if __name__ == "__main__":
    harness.main(globals())
