"""sweepd SIGKILLed mid-sweep and restarted on the same state directory, with
real sweep-worker processes. Finished trials keep their acknowledged results.
A running trial whose worker comes back continues under its lease, and one
whose worker died meanwhile is requeued once after the restart grace. The database is read read-only with the sqlite3 module.
"""

import os
import random
import signal
import sqlite3

import chaos
import harness
from harness import Client, Daemon, start_worker


def daemon_args():
    return ["--heartbeat-timeout", f"{harness.scaled(1.0):g}", "--grace", f"{harness.scaled(3.0):g}"]


def query(daemon, sql, *args):
    with sqlite3.connect("file:" + daemon.db_path() + "?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


def test_restart_keeps_finished_and_running():
    directory = harness.tmp_dir()
    text = chaos.write_dataset(directory, random.Random(5))
    parameters = chaos.tiny_parameters(text, 20, 100)
    # Three short trials, then two long ones; grid order follows the list.
    parameters["steps"] = {"values": [20, 21, 22, 4000, 4001]}
    spec = {"method": "grid", "parameters": parameters}

    def worker(daemon, name):
        return start_worker(daemon.socket_path, "--name", name, "--checkpoint-dir", os.path.join(directory, "ck"),
                            "--checkpoint-every", "500", "--cache-dir", os.path.join(directory, "cache"),
                            log_path=os.path.join(directory, name + ".log"))

    first = Daemon(state_dir=os.path.join(directory, "state"), args=daemon_args())
    try:
        c = Client(first.socket_path)
        sweep = c.ok("submit", spec=spec)["sweep"]
        c.ok("watch", sweep=sweep)
        keeper, victim = worker(first, "keeper"), worker(first, "victim")

        # Wait for 3 completed trials and 2 running ones past a stored
        # checkpoint (metrics of step 600 follow the checkpoint of step 500).
        completed, long_running = set(), set()
        while len(completed) < 3 or len(long_running) < 2:
            event = c.next_event(timeout=60)
            if event.get("event") == "trial" and event["state"] == "completed":
                completed.add(event["trial"])
            if event.get("event") == "metrics" and event["step"] >= 600:
                long_running.add(event["trial"])
        before = {t["trial"]: t for t in c.ok("trials", sweep=sweep)["trials"]}
        states = sorted(t["state"] for t in before.values())
        assert states == ["completed"] * 3 + ["running"] * 2, before
        c.close()

        # Kill the daemon, and one worker while the daemon is away.
        first.kill(signal.SIGKILL)
        victim.kill(signal.SIGKILL)
    finally:
        first.ensure_dead()
    held_by_victim = query(first, "SELECT trial FROM attempts WHERE worker = 'victim' AND outcome IS NULL")
    assert len(held_by_victim) == 1, held_by_victim
    lost_trial = held_by_victim[0][0]

    with Daemon(state_dir=os.path.join(directory, "state"), args=daemon_args()) as d:
        c = Client(d.socket_path)
        c.ok("watch", sweep=sweep)
        d.wait_log(rf"trial={lost_trial} attempt=1 worker=victim not re-presented within the restart grace",
                   timeout=30)
        spare = worker(d, "spare")
        c.wait_event(timeout=120, event="sweep", sweep=sweep, state="finished")
        keeper.stop()
        spare.stop()
        after = {t["trial"]: t for t in c.ok("trials", sweep=sweep)["trials"]}

    # Finished trials kept their acknowledged results.
    for trial in completed:
        assert after[trial]["final_loss"] == before[trial]["final_loss"], (before[trial], after[trial])
        assert after[trial]["attempts"] == 1, after[trial]
        keeper_or_victim = before[trial]["worker"]
        log = os.path.join(directory, keeper_or_victim + ".log")
        with open(log, encoding="utf-8") as f:
            assert f"trial={trial} attempt=1 reported complete" in f.read(), (trial, log)

    # The keeper's trial went on under its lease; the victim's ran again once.
    rows = query(d, "SELECT trial, attempt, worker, outcome FROM attempts ORDER BY trial, attempt")
    by_trial = {}
    for trial, attempt, name, outcome in rows:
        by_trial.setdefault(trial, []).append((attempt, name, outcome))
    kept = [t for t in long_running if t != lost_trial]
    assert len(kept) == 1, (long_running, lost_trial)
    assert by_trial[kept[0]] == [(1, "keeper", "completed")], by_trial[kept[0]]
    # Whichever worker was free first took the requeued trial.
    assert by_trial[lost_trial] in ([(1, "victim", "restart"), (2, "spare", "completed")],
                                    [(1, "victim", "restart"), (2, "keeper", "completed")]), by_trial[lost_trial]
    assert query(d, "SELECT count(*) FROM attempts WHERE outcome = 'completed'") == [(5,)]
    assert query(d, "SELECT state FROM sweeps") == [("finished",)]
    assert query(d, "PRAGMA integrity_check") == [("ok",)]


if __name__ == "__main__":
    harness.main(globals())
