"""sweepctl against a real sweepd over a real unix socket (and TCP): every
subcommand's output and exit code, usage and connection errors, a spec error
with its JSON path, integer-vs-float literals kept by submit and validate,
--json output that parses, and a CSV export that round-trips.

Trials are driven to their end by FakeWorker, a small worker speaking the
protocol from Python with losses the test chooses, so every printed number can
be checked against a known value and against the database.
"""

import csv
import io
import json
import math
import os
import sqlite3
import subprocess

import harness


def ctl(daemon, *args, env=None, timeout=30.0):
    """Run sweepctl [--connect unix:SOCK] args (no --connect when daemon is
    None); returns (exit code, stdout, stderr)."""
    argv = [harness.program("sweepctl")]
    if daemon is not None:
        argv += ["--connect", "unix:" + daemon.socket_path]
    argv += [str(a) for a in args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env,
                          timeout=harness.scaled(timeout))
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in proc.stderr, f"sanitizer report from {argv}:\n{proc.stderr}"
    return proc.returncode, proc.stdout, proc.stderr


def ctl_ok(daemon, *args, **kw):
    """Run sweepctl and assert exit 0; returns stdout."""
    rc, out, err = ctl(daemon, *args, **kw)
    assert rc == 0, f"sweepctl {args} exited {rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def ctl_json(daemon, *args):
    """Run sweepctl --json args and parse stdout, rejecting bare NaN/Infinity."""
    out = ctl_ok(daemon, "--json", *args)

    def reject(name):
        raise AssertionError(f"bare {name} in --json output of {args}:\n{out}")
    return json.loads(out, parse_constant=reject)


def write_spec(directory, name, spec):
    """Write spec (a dict, or text written as it is) to directory/name; returns the path."""
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(spec if isinstance(spec, str) else json.dumps(spec, indent=2))
    return path


def grid_spec(name="cli grid", threshold=2.0, extra=None):
    """A 2 x 2 grid over optimizer and lr; trials are never trained for real.
    threshold None leaves out ticket_threshold."""
    spec = {
        "name": name,
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {
            "optimizer": {"values": ["adam", "sm3"]},
            "lr": {"values": [0.001, 0.01]},
            "steps": {"value": 10},
        },
    }
    if threshold is not None:
        spec["ticket_threshold"] = threshold
    if extra:
        spec["parameters"].update(extra)
    return spec


class FakeWorker:
    """A protocol-speaking worker: hello, lease, heartbeat, and an outcome
    chosen by the test. It trains nothing; the losses are the test's."""

    def __init__(self, daemon, name="fake1", host="testhost"):
        self.client = harness.Client(daemon.socket_path)
        reply = self.client.ok("hello", version=1, role="worker", name=name, host=host,
                               pid=os.getpid(), capabilities={"threads": 1, "checkpoint": "dir"})
        self.name = reply.get("worker_id", name)

    def lease(self):
        """Lease one trial without waiting; returns the trial dict or None."""
        return self.client.ok("lease", wait=False)["trial"]

    def lease_fields(self, trial):
        return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}

    def heartbeat(self, trial, step, loss, tokens_per_s=1234.5):
        self.client.ok("heartbeat", step=step, loss=loss, tokens_per_s=tokens_per_s,
                       **self.lease_fields(trial))

    def complete(self, trial, final_loss, best_loss=None, steps=10, seconds=1.5):
        self.client.ok("complete", final_loss=final_loss,
                       best_loss=final_loss if best_loss is None else best_loss,
                       steps=steps, seconds=seconds, **self.lease_fields(trial))

    def diverged(self, trial, step=3):
        self.client.ok("diverged", step=step, loss="nan", **self.lease_fields(trial))

    def failed(self, trial, error="dataset: test failure"):
        self.client.ok("failed", error=error, **self.lease_fields(trial))

    def close(self):
        self.client.close()


def wilson(k, n, z=1.959963984540054):
    """The 95% Wilson score interval of k successes in n trials."""
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return center - half, center + half


def table_rows(text):
    """Split a printed table into rows of whitespace-separated cells, keyed by
    the first cell."""
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if cells:
            rows[cells[0]] = cells
    return rows


def db_trials(daemon, sweep):
    """Read the sweep's trials from the daemon's database, read-only."""
    uri = "file:" + daemon.db_path() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        db.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in db.execute(
            "SELECT id, state, attempt, params, final_loss, best_loss, steps, seconds, worker "
            "FROM trials WHERE sweep = ?", (sweep,))}


def test_no_daemon_listening():
    d = harness.tmp_dir()
    sock = os.path.join(d, "none.sock")
    rc, out, err = ctl(None, "--connect", "unix:" + sock, "list")
    assert rc == 3, (rc, err)
    assert sock in err, err
    assert "sweepd --state-dir" in err, err
    assert "make demo" in err, err

    # The default socket comes from $XDG_STATE_HOME when $SWEEPD_SOCKET is unset.
    rc, out, err = ctl(None, "status", env={"XDG_STATE_HOME": d, "SWEEPD_SOCKET": ""})
    assert rc == 3, (rc, err)
    assert os.path.join(d, "sweepd", "sweepd.sock") in err, err
    assert "default socket" in err, err

    rc, out, err = ctl(None, "workers", env={"SWEEPD_SOCKET": sock})
    assert rc == 3, (rc, err)
    assert sock in err, err
    assert "$SWEEPD_SOCKET" in err, err


def test_usage_errors_one_line():
    cases = [
        ([], "usage: sweepctl"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["trials"], "missing argument"),
        (["trials", "x1"], "invalid sweep id 'x1'"),
        (["trials", "1", "--state", "done"], "invalid --state 'done'"),
        (["trials", "1", "--sort", "loss"], "invalid --sort 'loss'"),
        (["trials", "1", "--limit", "-3"], "invalid --limit '-3'"),
        (["tickets", "1", "--threshold", "abc"], "invalid --threshold 'abc'"),
        (["tickets", "1", "--by", "a b"], "invalid --by 'a b'"),
        (["export", "1"], "missing --format"),
        (["export", "1", "--format", "xml"], "invalid --format 'xml'"),
        (["export", "1", "--format", "csv", "--json"], "--json conflicts with --format csv"),
        (["--connect", "unix:/tmp/x.sock", "--token-file", "/dev/null", "list"],
         "--token-file applies only"),
        (["--connect", "tcp:127.0.0.1:1", "list"], "needs a token"),
        (["--connect", "tcp:127.0.0.1:99999", "--token-file", "/dev/null", "list"],
         "port must be"),
        (["watch", "--json"], "--json does not apply to watch"),
        (["list", "extra"], "unexpected argument 'extra'"),
        (["status", "--bogus"], "unknown option '--bogus'"),
        (["validate", "spec.json", "--show"], "needs a value"),
    ]
    for args, expected in cases:
        rc, out, err = ctl(None, *args)
        assert rc == 2, (args, rc, out, err)
        assert expected in err, (args, err)
        if args:
            assert len(err.strip().splitlines()) == 1, (args, err)

    for name in ["submit", "validate", "list", "status", "trials", "tickets", "workers",
                 "watch", "pause", "resume", "cancel", "export"]:
        rc, out, err = ctl(None, name, "--help")
        assert rc == 0, (name, rc, err)
        assert out.startswith(f"usage: sweepctl {name}"), (name, out)
        assert "Exit codes" in out, (name, out)
    rc, out, err = ctl(None, "--help")
    assert rc == 0, (rc, out)
    assert "Commands:" in out, (rc, out)


def test_validate_and_spec_errors():
    d = harness.tmp_dir()
    with harness.Daemon() as daemon:
        path = write_spec(d, "grid.json", grid_spec())
        out = ctl_ok(daemon, "validate", path, "--show", "3")
        assert "valid, 4 trials" in out, out
        rows = [line for line in out.splitlines() if "optimizer=" in line]
        assert len(rows) == 3, out

        reply = ctl_json(daemon, "validate", path, "--show", "2")
        assert reply["size"] == 4, reply
        assert len(reply["trials"]) == 2, reply

        # An invalid range: the daemon's error names the JSON path.
        bad = grid_spec()
        bad["parameters"]["lr"] = {"min": 1.0, "max": 0.5}
        rc, out, err = ctl(daemon, "validate", write_spec(d, "bad.json", bad))
        assert rc == 4, (rc, err)
        assert "invalid_spec" in err, err
        assert "parameters.lr" in err, err

        # A name the trainer does not know fails, unless --generic.
        generic = {"method": "grid", "parameters": {"widgets": {"values": [1, 2, 3]}}}
        gpath = write_spec(d, "generic.json", generic)
        rc, out, err = ctl(daemon, "validate", gpath)
        assert rc == 4, (rc, err)
        assert "widgets" in err, (rc, err)
        out = ctl_ok(daemon, "validate", gpath, "--generic")
        assert "valid, 3 trials" in out, out

        broken = write_spec(d, "broken.json", '{"method":\n  "grid",,}')
        rc, out, err = ctl(daemon, "validate", broken)
        assert rc == 4, (rc, err)
        assert "not valid JSON" in err, err
        assert "line 2" in err, err

        rc, out, err = ctl(daemon, "submit", write_spec(d, "array.json", "[1, 2]"))
        assert rc == 4, (rc, err)
        assert "one JSON object" in err, (rc, err)

        rc, out, err = ctl(daemon, "submit", os.path.join(d, "missing.json"))
        assert rc == 4, (rc, err)
        assert "cannot open spec file" in err, (rc, err)


def test_out_of_range_draws_warn():
    """A normal lr centred on 0 draws negative rates about half the time:
    validate and submit succeed, reply with a warning naming the path and the
    share, and sweepctl prints it on stderr. A bounded form warns nothing."""
    d = harness.tmp_dir()
    spec = {"method": "random", "run_cap": 4,
            "parameters": {"lr": {"distribution": "normal", "mu": 0, "sigma": 0.01}}}
    path = write_spec(d, "normal.json", spec)
    with harness.Daemon() as daemon:
        reply = ctl_json(daemon, "validate", path)
        assert len(reply["warnings"]) == 1, reply
        warning = reply["warnings"][0]
        assert warning.startswith("parameters.lr: "), warning
        outside = int(warning.split()[1])
        assert 1900 < outside < 2200, warning
        assert "of 4096 sample draws of normal" in warning, warning

        rc, out, err = ctl(daemon, "submit", path)
        assert rc == 0, (rc, err)
        assert "submitted sweep 1" in out, out
        assert "sweepctl: warning: parameters.lr: " in err, err
        daemon.wait_log(r"WARN .*sweep=1 parameters\.lr: \d+ of 4096 sample draws")

        spec["parameters"]["lr"] = {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}
        reply = ctl_json(daemon, "validate", write_spec(d, "bounded.json", spec))
        assert "warnings" not in reply, reply


def test_literal_kinds_kept():
    d = harness.tmp_dir()
    with harness.Daemon() as daemon:
        # Integer bounds mean int_uniform; float bounds mean uniform. The file's
        # literals must reach the daemon unchanged, line breaks and all.
        int_text = ('{"method": "random", "run_cap": 30, "seed": 7,\n'
                    ' "parameters": {"x": {"min": 0,\n "max": 1000}}}\n')
        float_text = int_text.replace('"min": 0', '"min": 0.0').replace('1000}', '1000.0}')
        ints = ctl_json(daemon, "validate", write_spec(d, "int.json", int_text),
                        "--generic", "--show", "30")["trials"]
        floats = ctl_json(daemon, "validate", write_spec(d, "float.json", float_text),
                          "--generic", "--show", "30")["trials"]

        def values(trials):
            return [t["params"]["x"] if "params" in t else t["x"] for t in trials]
        assert len(values(ints)) == 30
        assert len(values(floats)) == 30
        assert all(isinstance(v, int) for v in values(ints)), values(ints)
        assert any(not float(v).is_integer() for v in values(floats)), values(floats)

        # submit splices the same way: a leased trial carries an integer steps.
        spec = ('{"name": "kinds", "method": "random", "run_cap": 3,\n'
                ' "parameters": {"steps": {"min": 5, "max": 9},\n'
                '                "lr": {"min": 0.001, "max": 0.01}}}')
        out = ctl_ok(daemon, "submit", write_spec(d, "kinds.json", spec))
        assert "3 trials" in out, out
        worker = FakeWorker(daemon)
        trial = worker.lease()
        assert isinstance(trial["params"]["steps"], int), trial
        assert 5 <= trial["params"]["steps"] <= 9, trial
        assert isinstance(trial["params"]["lr"], float), trial
        worker.close()


def run_grid_sweep(daemon, d):
    """Submit the 2 x 2 grid (dataset path with a comma and quotes) and end
    its four trials: losses 1.5 and 1.8 (winners at 2.0), 2.5, one diverged.
    Returns (sweep id, {trial id: (params, final loss or None)})."""
    dataset = '/data/a,b "c".txt'
    path = write_spec(d, "grid.json", grid_spec(extra={"dataset": {"value": dataset}}))
    out = ctl_ok(daemon, "submit", path)
    assert "4 trials" in out, out
    assert "sweep-worker --connect unix:" + daemon.socket_path in out, out
    sweep = int(out.split("submitted sweep ")[1].split()[0])

    worker = FakeWorker(daemon, name="fake1", host="testhost")
    outcomes = {}
    for loss in [1.5, 2.5, None, 1.8]:
        trial = worker.lease()
        assert trial is not None
        assert trial["params"]["dataset"] == dataset, trial
        worker.heartbeat(trial, step=5, loss=3.25)
        if loss is None:
            worker.diverged(trial)
        else:
            worker.complete(trial, final_loss=loss, best_loss=loss - 0.125, steps=10,
                            seconds=2.5)
        outcomes[trial["trial"]] = (trial["params"], loss)
    assert worker.lease() is None
    worker.close()
    return sweep, outcomes


def test_query_commands_agree():
    d = harness.tmp_dir()
    with harness.Daemon() as daemon:
        sweep, outcomes = run_grid_sweep(daemon, d)

        out = ctl_ok(daemon, "list")
        row = table_rows(out)[str(sweep)]
        assert "cli" in row, out
        assert "4/4" in row, out

        out = ctl_ok(daemon, "status", sweep)
        assert "4/4" in out, out
        assert "completed 3" in out, out
        assert "diverged 1" in out, out
        best = min(t for t, (_, loss) in outcomes.items() if loss == 1.5)
        assert f"loss 1.5000 (trial {best})" in out, out
        status = ctl_json(daemon, "status", sweep)
        assert status["done"] == 4, status
        assert status["counts"]["completed"] == 3, status

        out = ctl_ok(daemon, "trials", sweep)
        rows = table_rows(out)
        for trial, (params, loss) in outcomes.items():
            cells = rows[str(trial)]
            assert cells[1] == ("diverged" if loss is None else "completed"), cells
            if loss is not None:
                assert f"{loss:.4f}" in cells, cells
            assert f"optimizer={params['optimizer']}" in cells, cells

        ranked = ctl_json(daemon, "trials", sweep, "--sort", "final_loss", "--limit", "2")
        assert [t["final_loss"] for t in ranked["trials"]] == [1.5, 1.8], ranked
        diverged = ctl_json(daemon, "trials", sweep, "--state", "diverged")["trials"]
        assert len(diverged) == 1, diverged
        assert diverged[0]["state"] == "diverged", diverged

        # The database agrees with what trials printed.
        stored = db_trials(daemon, sweep)
        assert set(stored) == set(outcomes), (stored, outcomes)
        for trial, (params, loss) in outcomes.items():
            assert json.loads(stored[trial]["params"]) == params
            assert stored[trial]["final_loss"] == loss, (stored[trial], loss)


def test_tickets_match_wilson():
    d = harness.tmp_dir()
    with harness.Daemon() as daemon:
        sweep, outcomes = run_grid_sweep(daemon, d)
        groups = {}
        for params, loss in outcomes.values():
            g = groups.setdefault(params["optimizer"], [0, 0])
            g[0] += 1
            g[1] += loss is not None and loss < 2.0

        out = ctl_ok(daemon, "tickets", sweep, "--threshold", "2.0", "--by", "optimizer")
        assert "below 2" in out, out
        assert "grouped by optimizer" in out, out
        rows = table_rows(out)
        for name, (finished, winners) in list(groups.items()) + [("overall", (4, 2))]:
            cells = rows[name]
            assert cells[1] == str(finished), (name, cells)
            assert cells[2] == str(winners), (name, cells)
            assert cells[3] == f"{100 * winners / finished:.2f}%", (name, cells)
            low, high = wilson(winners, finished)
            assert cells[4] == f"[{100 * low:.2f}%,", cells
            assert cells[5] == f"{100 * high:.2f}%]", cells

        reply = ctl_json(daemon, "tickets", sweep, "--threshold", "2.0", "--by", "optimizer")
        low, high = wilson(2, 4)
        assert reply["overall"]["finished"] == 4, reply
        assert reply["overall"]["winners"] == 2, reply
        assert abs(reply["overall"]["ci_low"] - low) < 1e-9, reply
        assert abs(reply["overall"]["ci_high"] - high) < 1e-9, reply

        # Without --threshold the spec's ticket_threshold (2.0) applies.
        assert ctl_json(daemon, "tickets", sweep)["threshold"] == 2.0


def test_export_round_trip():
    d = harness.tmp_dir()
    with harness.Daemon() as daemon:
        sweep, outcomes = run_grid_sweep(daemon, d)
        stored = db_trials(daemon, sweep)

        csv_path = os.path.join(d, "out.csv")
        ctl_ok(daemon, "export", sweep, "--format", "csv", "--output", csv_path)
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 4, rows
        assert list(rows[0])[:3] == ["trial", "state", "attempts"], list(rows[0])
        assert list(rows[0])[-5:] == ["final_loss", "best_loss", "steps", "seconds", "worker"]
        for row in rows:
            trial = int(row["trial"])
            params, loss = outcomes[trial]
            for name, value in params.items():
                # A parameter named like a fixed column gets a "params." prefix.
                column = "params." + name if name in ("steps", "seconds", "state") else name
                if isinstance(value, str):
                    assert row[column] == value, (name, row[column], value)
                else:
                    assert float(row[column]) == value, (name, row[column], value)
            assert row["params.steps"] == "10", row
            assert row["dataset"] == '/data/a,b "c".txt', row
            assert row["state"] == stored[trial]["state"], row
            assert int(row["attempts"]) == stored[trial]["attempt"], row
            assert row["worker"] == "fake1", row
            if loss is None:
                assert row["final_loss"] in ("", "nan"), row
            else:
                assert float(row["final_loss"]) == loss == stored[trial]["final_loss"], row
                assert float(row["best_loss"]) == loss - 0.125, row
                assert float(row["seconds"]) == 2.5, row
                assert row["steps"] == "10", row

        # The CSV read back and written again with the csv module is the same text.
        with open(csv_path, newline="", encoding="utf-8") as f:
            original = f.read()
        again = io.StringIO()
        writer = csv.writer(again, lineterminator="\n")
        for record in csv.reader(io.StringIO(original)):
            writer.writerow(record)
        assert again.getvalue() == original, (again.getvalue(), original)

        rows = ctl_json(daemon, "export", sweep, "--format", "json")
        assert len(rows) == 4, rows
        for row in rows:
            params, loss = outcomes[row["trial"]]
            assert row["params"] == params, row
            assert row["final_loss"] in ((None, "nan") if loss is None else (loss,)), row


def test_pause_resume_cancel_and_workers():
    d = harness.tmp_dir()
    with harness.Daemon() as daemon:
        out = ctl_ok(daemon, "submit", write_spec(d, "g.json", grid_spec(name="ctl")))
        sweep = int(out.split("submitted sweep ")[1].split()[0])

        assert ctl_ok(daemon, "pause", sweep).strip() == f"sweep {sweep}: paused"
        worker = FakeWorker(daemon, name="wk", host="hostA")
        assert worker.lease() is None  # a paused sweep leases nothing
        assert ctl_ok(daemon, "resume", sweep).strip() == f"sweep {sweep}: running"
        trial = worker.lease()
        assert trial is not None
        worker.heartbeat(trial, step=7, loss=2.75, tokens_per_s=4321.0)

        out = ctl_ok(daemon, "workers")
        cells = table_rows(out)["wk"]
        assert "hostA" in cells, cells
        assert str(trial["trial"]) in cells, cells
        assert "2.7500" in cells, cells
        assert "4321" in cells, cells
        assert any(c.startswith("7") for c in cells), cells
        workers = ctl_json(daemon, "workers")["workers"]
        assert [w["worker"] for w in workers] == ["wk"], workers

        assert ctl_ok(daemon, "cancel", sweep).strip() == f"sweep {sweep}: cancelled"
        status = ctl_json(daemon, "status", sweep)
        assert status["state"] == "cancelled", status
        worker.close()

        rc, out, err = ctl(daemon, "pause", 9999)
        assert rc == 1, (rc, err)
        assert "not_found" in err, err
        rc, out, err = ctl(daemon, "status", 9999)
        assert rc == 1, (rc, err)
        assert "not_found" in err, (rc, err)


def test_tcp_with_token():
    d = harness.tmp_dir()
    token = os.path.join(d, "token")
    wrong = os.path.join(d, "wrong")
    for path, text in [(token, "s3cret-token-0123456789\n"), (wrong, "wrong-token-0123456789\n")]:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(text)
    with harness.Daemon(args=["--listen", "127.0.0.1:0", "--token-file", token]) as daemon:
        host, port = daemon.tcp_address
        address = f"tcp:{host}:{port}"
        rc, out, err = ctl(None, "--connect", address, "--token-file", token, "list")
        assert rc == 0, (rc, err)
        assert "no sweeps" in out, out
        rc, out, err = ctl(None, "--connect", address, "--token-file", wrong, "list")
        assert rc == 1, (rc, out, err)
        assert "unauthorized" in err, err


if __name__ == "__main__":
    harness.main(dict(globals()))
