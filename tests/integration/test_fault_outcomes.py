"""Trial outcomes under faults against a real sweepd. Non-finite losses are
recorded as diverged, read the same before and after a restart, and are
never written as bare NaN or Infinity. A trial that fails on every attempt
ends failed, and cancelling a sweep stops its trials on real workers.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess

import chaos
import harness
from harness import Client, Daemon, start_worker


def strict_json(text):
    """Parse JSON, raising on the NaN, Infinity and -Infinity literals that
    Python's json module would otherwise accept."""
    def reject(literal):
        raise ValueError(f"bare {literal} in JSON output: {text[:200]}")
    return json.loads(text, parse_constant=reject)


class StrictClient(Client):
    """A client that checks every line it reads with strict_json."""

    def recv(self, timeout=None):
        line = self.recv_line(timeout)
        if line is None:
            return None
        return strict_json(line.decode())


def query(daemon, sql, *args):
    with sqlite3.connect("file:" + daemon.db_path() + "?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def sweepctl_json(daemon, *args):
    out = subprocess.run([harness.program("sweepctl"), "--connect", "unix:" + daemon.socket_path, "--json"]
                         + list(args), capture_output=True, text=True, timeout=harness.scaled(30))
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


def answers(daemon, sweep):
    """The replies and sweepctl outputs that must survive a restart, with
    request ids removed."""
    c = StrictClient(daemon.socket_path)
    replies = {}
    for op, fields in [("status", {"sweep": sweep}), ("tickets", {"sweep": sweep, "threshold": 3.0, "by": "lr"}),
                       ("trials", {"sweep": sweep}), ("list", {})]:
        reply = c.ok(op, **fields)
        reply.pop("id")
        replies[op] = reply
    c.close()
    for command in (["status", str(sweep)], ["tickets", str(sweep), "--threshold", "3.0", "--by", "lr"],
                    ["trials", str(sweep)], ["export", str(sweep), "--format", "json"]):
        replies[" ".join(command)] = strict_json(sweepctl_json(daemon, *command))
    return replies


def test_nonfinite_losses_diverged():
    state_dir = harness.tmp_dir()
    spec = {"method": "grid", "ticket_threshold": 3.0,
            "parameters": {"lr": {"values": [0.001, 0.002, 0.003, 0.004, 0.005]}}}
    d = Daemon(state_dir=state_dir)
    try:
        c = StrictClient(d.socket_path)
        sweep = c.ok("submit", spec=spec)["sweep"]
        watcher = StrictClient(d.socket_path)
        watcher.ok("watch", sweep=sweep)
        w = StrictClient(d.socket_path)
        w.ok("hello", version=1, role="worker", name="w")

        # Three completes with non-finite final losses, one diverged report.
        for final_loss in ("inf", "-inf", "nan"):
            t = w.ok("lease")["trial"]
            w.ok("heartbeat", step=3, loss=final_loss, **lease_fields(t))
            points = [{"step": 1, "train_loss": "inf", "val_loss": "-inf"},
                      {"step": 2, "train_loss": "nan", "val_loss": 2.5}]
            assert w.ok("metrics", points=points, **lease_fields(t))["stored"] == 2
            reply = w.ok("complete", final_loss=final_loss, best_loss=final_loss, steps=3, **lease_fields(t))
            assert reply["state"] == "diverged", (final_loss, reply)
        t = w.ok("lease")["trial"]
        assert w.ok("diverged", step=7, loss="nan", **lease_fields(t))["state"] == "diverged"

        # The sweep carries on: the last trial is leased and completes.
        t = w.ok("lease")["trial"]
        assert t is not None
        assert w.ok("complete", final_loss=1.5, best_loss=1.4, steps=3, **lease_fields(t))["state"] == "completed"
        watcher.wait_event(event="sweep", sweep=sweep, state="finished")
        before = answers(d, sweep)
        assert before["status"]["counts"]["diverged"] == 4, before["status"]
        assert before["status"]["counts"]["completed"] == 1, before["status"]
        assert before["status"]["best_loss"] == 1.5, before["status"]
        assert before["tickets"]["overall"]["finished"] == 5, before["tickets"]
        assert before["tickets"]["overall"]["winners"] == 1, before["tickets"]
        assert query(d, "SELECT count(*) FROM trials WHERE final_loss IS NOT NULL") == [(1,)]

        # Everything was acknowledged, so a SIGKILL loses none of it.
        d.kill(signal.SIGKILL)
    finally:
        d.ensure_dead()
    with Daemon(state_dir=state_dir) as again:
        after = answers(again, sweep)
    for key in before:
        assert after[key] == before[key], (key, before[key], after[key])


def test_failing_trial_stops_at_max_failures():
    directory = harness.tmp_dir()
    text = chaos.write_dataset(directory, random.Random(7))
    missing = os.path.join(directory, "missing.txt")
    parameters = chaos.tiny_parameters(text, 20, 10)
    parameters["dataset"] = {"values": [missing, text]}
    spec = {"method": "grid", "max_failures": 3, "parameters": parameters}
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=spec)["sweep"]
        c.ok("watch", sweep=sweep)
        w = start_worker(d.socket_path, "--name", "w", "--checkpoint-dir", os.path.join(directory, "ck"),
                         "--cache-dir", os.path.join(directory, "cache"))
        c.wait_event(timeout=60, event="sweep", sweep=sweep, state="finished")

        rows = query(d, "SELECT t.state, t.failures, a.attempt, a.outcome, a.error FROM trials t "
                        "JOIN attempts a ON a.trial = t.id WHERE t.idx = 0 ORDER BY a.attempt")
        assert [r[2] for r in rows] == [1, 2, 3], rows
        assert all(r[0] == "failed" for r in rows), rows
        assert all(r[1] == 3 for r in rows), rows
        assert all(r[3] == "failed" for r in rows), rows
        assert all("missing.txt" in (r[4] or "") for r in rows), rows
        assert query(d, "SELECT state FROM trials WHERE idx = 1") == [("completed",)]

        # Nothing is left to lease, and the worker waits without crashing.
        probe = Client(d.socket_path)
        probe.ok("hello", version=1, role="worker", name="probe")
        assert probe.ok("lease")["trial"] is None
        assert w.proc.poll() is None
        w.stop()


def test_cancel_stops_running_trials():
    directory = harness.tmp_dir()
    text = chaos.write_dataset(directory, random.Random(9))
    parameters = chaos.tiny_parameters(text, 200000, 100)
    parameters["lr"] = {"values": [0.001, 0.002, 0.003, 0.004]}
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec={"method": "grid", "parameters": parameters})["sweep"]
        c.ok("watch")
        workers = [start_worker(d.socket_path, "--name", f"w{i}", "--checkpoint-dir", os.path.join(directory, "ck"),
                                "--cache-dir", os.path.join(directory, "cache")) for i in range(2)]
        training = set()
        while len(training) < 2:
            event = c.next_event(timeout=60)
            if event.get("event") == "metrics" and event["sweep"] == sweep:
                training.add(event["trial"])

        assert c.ok("cancel", sweep=sweep)["state"] == "cancelled"
        for w in workers:
            w.wait_log(r"dropped: cancelled by the daemon", timeout=30)

        # No new lease for the cancelled sweep, while another sweep's trial
        # is taken by a worker that stopped its cancelled one.
        probe = Client(d.socket_path)
        probe.ok("hello", version=1, role="worker", name="probe")
        assert probe.ok("lease")["trial"] is None
        probe.close()
        quick = chaos.tiny_parameters(text, 20, 10)
        other = c.ok("submit", spec={"method": "grid", "parameters": quick})["sweep"]
        while True:
            event = c.next_event(timeout=60)
            if event.get("event") == "trial" and event["sweep"] == sweep:
                assert event["state"] != "running", event
            if event.get("event") == "sweep" and event["sweep"] == other and event["state"] == "finished":
                break
        for w in workers:
            w.stop()

        rows = query(d, "SELECT t.state, a.attempt, a.outcome FROM trials t JOIN attempts a ON a.trial = t.id "
                        "WHERE t.sweep = ? ORDER BY t.id", sweep)
        assert rows == [("cancelled", 1, "cancelled"), ("cancelled", 1, "cancelled")], rows
        assert query(d, "SELECT state FROM sweeps ORDER BY id") == [("cancelled",), ("finished",)]


if __name__ == "__main__":
    harness.main(globals())
