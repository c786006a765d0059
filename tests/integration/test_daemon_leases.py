"""Lease lifecycle against a real sweepd and its SQLite file: fencing after a
requeue, requeue on disconnect and on heartbeat timeout, held lease requests,
restart recovery after SIGKILL with re-presented leases, durability of every
acknowledged write, grid exhaustion, ticket arithmetic against a Python
Wilson interval, and watch events. Workers are Python protocol clients.
"""

import math
import os
import signal
import sqlite3

import harness
from harness import Client, Daemon


def grid_spec(optimizers=("adam", "sm3"), lrs=(0.01, 0.001), **extra):
    spec = {"method": "grid", "parameters": {"optimizer": {"values": list(optimizers)},
                                             "lr": {"values": list(lrs)}}}
    spec.update(extra)
    return spec


def worker(daemon, name, **fields):
    client = Client(daemon.socket_path)
    client.ok("hello", version=1, role="worker", name=name, **fields)
    return client


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def test_stale_lease_after_requeue():
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=grid_spec())
        first = worker(d, "first")
        trial = first.ok("lease")["trial"]
        first.ok("preempted", location="/ck/a.ckpt", step=40, **lease_fields(trial))
        second = worker(d, "second")
        again = second.ok("lease")["trial"]
        assert again["trial"] == trial["trial"]
        assert again["attempt"] == 2
        for op, fields in [("heartbeat", {"step": 41}), ("metrics", {"points": [{"step": 50}]}),
                           ("checkpoint", {"location": "/ck/b.ckpt", "step": 50}),
                           ("complete", {"final_loss": 1.0}), ("failed", {"error": "x"})]:
            reply = first.request(op, **fields, **lease_fields(trial))
            assert reply["error"]["code"] == "stale_lease", (op, reply)
        # The stale messages changed nothing: the new attempt completes.
        assert second.ok("complete", final_loss=1.5, **lease_fields(again))["state"] == "completed"
        db = sqlite3.connect(d.db_path())
        rows = db.execute("SELECT attempt, outcome, checkpoint FROM attempts WHERE trial = ? ORDER BY attempt",
                          (trial["trial"],)).fetchall()
        assert rows == [(1, "preempted", "/ck/a.ckpt"), (2, "completed", None)], rows
        assert db.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0


def test_requeue_on_disconnect():
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=grid_spec())
        lost = worker(d, "lost")
        trial = lost.ok("lease")["trial"]
        lost.ok("checkpoint", location="/ck/t.ckpt", step=7, **lease_fields(trial))
        mark = d.log_mark()
        lost.close()
        d.wait_log(rf"trial={trial['trial']} attempt=1 worker=lost requeued: disconnect -> pending", since=mark)
        again = worker(d, "next").ok("lease")["trial"]
        assert again["trial"] == trial["trial"]
        assert again["attempt"] == 2
        assert again["checkpoint"] == {"location": "/ck/t.ckpt", "step": 7}


def test_requeue_on_heartbeat_timeout():
    with Daemon(args=["--heartbeat-timeout", "1"]) as d:
        Client(d.socket_path).ok("submit", spec=grid_spec())
        silent = worker(d, "silent")
        assert silent.request("hello", version=1, role="worker")["error"]["code"] == "invalid_state"
        trial = silent.ok("lease")["trial"]
        d.wait_log(r"worker=silent .*heartbeat timeout")
        d.wait_log(rf"trial={trial['trial']} attempt=1 worker=silent requeued: heartbeat_timeout")
        assert silent.request("complete", final_loss=1.0, **lease_fields(trial))["error"]["code"] == "stale_lease"
        again = worker(d, "alive").ok("lease")["trial"]
        assert again["trial"] == trial["trial"]
        assert again["attempt"] == 2


def test_held_lease_request():
    with Daemon() as d:
        waiting = worker(d, "waiting")
        request_id = waiting.send("lease", wait=True)
        assert waiting.request("lease", wait=True)["error"]["code"] == "invalid_state"
        sweep = Client(d.socket_path).ok("submit", spec=grid_spec(optimizers=["adam"], lrs=[0.1]))["sweep"]
        trial = waiting.reply(request_id)["trial"]
        assert trial["sweep"] == sweep
        assert trial["index"] == 0
        # A grid of one is exhausted: the next held request waits until the
        # first trial is requeued, then gets it back as attempt 2.
        other = worker(d, "other")
        second_id = other.send("lease", wait=True)
        waiting.ok("preempted", **lease_fields(trial))
        again = other.reply(second_id)["trial"]
        assert again["trial"] == trial["trial"]
        assert again["attempt"] == 2


def test_max_requeues_and_failures():
    spec = grid_spec(optimizers=["adam"], lrs=[0.1, 0.2], max_requeues=1, max_failures=2)
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=spec)["sweep"]
        w = worker(d, "w")
        t = w.ok("lease")["trial"]
        assert w.ok("preempted", **lease_fields(t))["state"] == "pending"
        t = w.ok("lease")["trial"]
        assert w.ok("preempted", **lease_fields(t))["state"] == "failed", "2 requeues > max_requeues 1"
        u = w.ok("lease")["trial"]
        assert u["trial"] != t["trial"]
        assert w.ok("failed", error="boom", **lease_fields(u))["state"] == "pending"
        u = w.ok("lease")["trial"]
        assert w.ok("failed", error="boom", **lease_fields(u))["state"] == "failed"
        status = c.ok("status", sweep=sweep)
        assert status["counts"]["failed"] == 2
        assert status["state"] == "finished"
        assert w.ok("lease", wait=False)["trial"] is None


def test_restart_recovery_after_sigkill():
    state = harness.tmp_dir()
    d = Daemon(state_dir=state)
    c = Client(d.socket_path)
    sweep = c.ok("submit", spec=grid_spec())["sweep"]
    w = worker(d, "keeper")
    kept = w.ok("lease")["trial"]
    dropped = w.ok("lease")["trial"]
    done = w.ok("lease")["trial"]
    w.ok("complete", final_loss=1.75, **lease_fields(done))
    w.ok("metrics", points=[{"step": 1, "val_loss": 3.0}], **lease_fields(kept))
    d.kill(signal.SIGKILL)

    with Daemon(state_dir=state, args=["--grace", f"{harness.scaled(1.0):g}"]) as d2:
        d2.wait_log(r"2 trials were running when the daemon stopped")
        c2 = Client(d2.socket_path)
        status = c2.ok("status", sweep=sweep)
        assert status["counts"] == {"pending": 0, "running": 2, "completed": 1, "diverged": 0,
                                    "failed": 0, "cancelled": 0}, status
        back = Client(d2.socket_path)
        hello = back.ok("hello", version=1, role="worker", name="keeper",
                        leases=[lease_fields(kept), dict(lease_fields(dropped), lease="f" * 32)])
        assert hello["leases"][0]["ok"] is True
        assert hello["leases"][1] == {"trial": dropped["trial"], "attempt": dropped["attempt"], "ok": False,
                                      "error": "stale_lease"}
        d2.wait_log(rf"trial={dropped['trial']} attempt=1 worker=keeper not re-presented")
        # The re-presented lease is still the trial's lease; metrics keep one value per step.
        assert back.ok("metrics", points=[{"step": 1, "val_loss": 9.0}, {"step": 2, "val_loss": 2.0}],
                       **lease_fields(kept))["stored"] == 1
        assert back.ok("complete", final_loss=1.5, **lease_fields(kept))["state"] == "completed"
        again = back.ok("lease")["trial"]
        assert again["trial"] == dropped["trial"]
        assert again["attempt"] == 2
        counts = c2.ok("status", sweep=sweep)["counts"]
        assert counts["completed"] == 2
        assert counts["running"] == 1


def test_acknowledged_writes_survive_sigkill():
    state = harness.tmp_dir()
    d = Daemon(state_dir=state)
    c = Client(d.socket_path)
    sweep = c.ok("submit", spec=grid_spec(lrs=[0.1 * (i + 1) for i in range(30)]))["sweep"]
    workers = [worker(d, f"w{i}") for i in range(4)]
    acknowledged = {}
    for round_ in range(5):
        leases = [w.ok("lease")["trial"] for w in workers]
        # Send all completions before reading any reply, so several share a commit.
        ids = [w.send("complete", final_loss=1.0 + t["trial"] / 100, **lease_fields(t))
               for w, t in zip(workers, leases)]
        for w, request_id, t in zip(workers, ids, leases):
            assert w.reply(request_id)["ok"] is True
            acknowledged[t["trial"]] = 1.0 + t["trial"] / 100
    d.kill(signal.SIGKILL)
    db = sqlite3.connect(os.path.join(state, "sweepd.db"))
    rows = dict(db.execute("SELECT id, final_loss FROM trials WHERE sweep = ? AND state = 'completed'", (sweep,)))
    assert rows == acknowledged
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"


def test_grid_exhaustion_finishes_sweep():
    with Daemon() as d:
        c = Client(d.socket_path)
        c.ok("watch")
        sweep = c.ok("submit", spec=grid_spec(optimizers=["adam", "sm3", "shampoo"], lrs=[0.1]))["sweep"]
        w = worker(d, "w")
        seen = []
        while True:
            trial = w.ok("lease")["trial"]
            if trial is None:
                break
            seen.append((trial["index"], trial["params"]["optimizer"]))
            w.ok("complete", final_loss=2.0, **lease_fields(trial))
        assert seen == [(0, "adam"), (1, "sm3"), (2, "shampoo")], seen  # values keep their listed order
        assert c.ok("status", sweep=sweep)["state"] == "finished"
        assert c.wait_event(event="sweep", state="finished")["sweep"] == sweep


def wilson(k, n, z=1.959963984540054):
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def test_tickets_match_python():
    optimizers = ["adam", "shampoo", "sm3"]
    lrs = [0.001 * (i + 1) for i in range(12)]
    threshold = 1.6
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=grid_spec(optimizers, lrs, max_failures=1))["sweep"]
        w = worker(d, "w")
        outcomes = []  # (optimizer, kind, loss)
        i = 0
        while True:
            trial = w.ok("lease")["trial"]
            if trial is None:
                break
            opt = trial["params"]["optimizer"]
            i += 1
            if i % 11 == 0:
                w.ok("diverged", step=3, loss="inf", **lease_fields(trial))
                outcomes.append((opt, "diverged", None))
            elif i % 13 == 0:
                w.ok("failed", error="oom", **lease_fields(trial))
                outcomes.append((opt, "failed", None))
            elif i % 17 == 0:
                w.ok("complete", final_loss="nan", **lease_fields(trial))
                outcomes.append((opt, "diverged", None))
            else:
                loss = 1.3 + ((i * 7919) % 61) / 100.0  # deterministic spread over [1.3, 1.9]
                w.ok("complete", final_loss=loss, **lease_fields(trial))
                outcomes.append((opt, "completed", loss))
        tickets = c.ok("tickets", sweep=sweep, threshold=threshold, by="optimizer")

        def expect(rows):
            losses = [loss for _, kind, loss in rows if kind == "completed"]
            finished = sum(1 for _, kind, _ in rows if kind in ("completed", "diverged"))
            winners = sum(1 for loss in losses if loss < threshold)
            low, high = wilson(winners, finished)
            return {"finished": finished, "winners": winners, "failed": sum(1 for r in rows if r[1] == "failed"),
                    "fraction": winners / finished, "ci_low": low, "ci_high": high,
                    "best_loss": min(losses), "median_loss": median(losses)}

        def check(got, want, label):
            for key, value in want.items():
                if isinstance(value, float):
                    assert abs(got[key] - value) <= 1e-9, (label, key, got[key], value)
                else:
                    assert got[key] == value, (label, key, got[key], value)

        check(tickets["overall"], expect(outcomes), "overall")
        groups = {g["value"]: g for g in tickets["groups"]}
        assert sorted(groups) == optimizers
        for opt in optimizers:
            check(groups[opt], expect([r for r in outcomes if r[0] == opt]), opt)


def test_watch_events():
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=grid_spec(optimizers=["adam"], lrs=[0.1]))["sweep"]
        watcher = Client(d.socket_path)
        assert watcher.ok("watch", sweep=sweep)["sweep"] == sweep
        w = worker(d, "evented")
        assert watcher.wait_event(event="worker") == {"event": "worker", "worker": "evented", "state": "joined"}
        trial = w.ok("lease")["trial"]
        running = watcher.wait_event(event="trial")
        assert running == {"event": "trial", "sweep": sweep, "trial": trial["trial"], "state": "running",
                           "attempt": 1, "worker": "evented"}
        w.ok("heartbeat", step=3, loss="inf", **lease_fields(trial))
        beat = watcher.wait_event(event="heartbeat")
        assert beat["loss"] == "inf"
        assert beat["step"] == 3
        w.ok("metrics", points=[{"step": 4, "train_loss": 2.0, "val_loss": 2.5}], **lease_fields(trial))
        metrics = watcher.wait_event(event="metrics")
        assert metrics["step"] == 4
        assert metrics["val_loss"] == 2.5
        w.ok("complete", final_loss=1.0, **lease_fields(trial))
        assert watcher.wait_event(event="trial")["state"] == "completed"
        assert watcher.wait_event(event="sweep")["state"] == "finished"
        w.close()
        assert watcher.wait_event(event="worker")["state"] == "left"


if __name__ == "__main__":
    harness.main(globals())
