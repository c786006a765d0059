"""Worker faults against a real sweepd and real sweep-worker processes. Workers
are killed or frozen while holding trials, or lost right after their lease. A
frozen worker wakes up holding a lease given away meanwhile, and a resumed
trial re-reports metric steps. The database is read read-only with the
sqlite3 module; every wait is on a log line, a watch event or a process exit.
"""

import os
import random
import signal
import sqlite3
import threading

import chaos
import harness
import relay
from harness import Client, Daemon, start_worker
from relay import Relay

HEARTBEAT_TIMEOUT = f"{harness.scaled(1.0):g}"


def setup(directory, lrs, steps, eval_every):
    """Write a text and return a grid spec with one trial per lr value."""
    text = chaos.write_dataset(directory, random.Random(3))
    parameters = chaos.tiny_parameters(text, steps, eval_every)
    parameters["optimizer"] = {"value": "adam"}
    parameters["lr"] = {"values": list(lrs)}
    return {"method": "grid", "parameters": parameters}


def worker(daemon, directory, name, checkpoint_every):
    return start_worker(daemon.socket_path, "--name", name, "--checkpoint-dir", os.path.join(directory, "ck"),
                        "--checkpoint-every", str(checkpoint_every), "--cache-dir", os.path.join(directory, "cache"),
                        log_path=os.path.join(directory, name + ".log"))


def query(daemon, sql, *args):
    uri = "file:" + daemon.db_path() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return db.execute(sql, args).fetchall()


def attempts_of(daemon):
    """{trial: [(attempt, worker, outcome), ...]} for every trial."""
    result = {}
    for trial, attempt, name, outcome in query(daemon, "SELECT trial, attempt, worker, outcome FROM attempts "
                                                       "ORDER BY trial, attempt"):
        result.setdefault(trial, []).append((attempt, name, outcome))
    return result


def wait_finished(watcher, sweep, timeout=120):
    watcher.wait_event(timeout=timeout, event="sweep", sweep=sweep, state="finished")


def test_killed_workers_requeued_for_later():
    directory = harness.tmp_dir()
    with Daemon(args=["--heartbeat-timeout", HEARTBEAT_TIMEOUT]) as d:
        c = Client(d.socket_path)
        # 10,000 steps leave about a second after the slowest worker reaches
        # step 600 for all three to be killed before any trial ends.
        sweep = c.ok("submit", spec=setup(directory, [0.001, 0.002, 0.003], 10000, 100))["sweep"]
        c.ok("watch", sweep=sweep)
        workers = [worker(d, directory, f"k{i}", 500) for i in range(3)]
        # A worker sends the metrics of step 600 after its checkpoint of step
        # 500, so once they are stored the daemon has a checkpoint too.
        past_checkpoint = set()
        while len(past_checkpoint) < 3:
            event = c.next_event(timeout=60)
            if event.get("event") == "metrics" and event["step"] >= 600:
                past_checkpoint.add(event["trial"])

        # All three die at once and their sockets close. No other worker exists.
        mark = d.log_mark()
        for w in workers:
            w.proc.send_signal(signal.SIGKILL)
        for w in workers:
            assert w.wait() == -signal.SIGKILL
        for i in range(3):
            d.wait_log(rf"worker=k{i} requeued: disconnect -> pending", since=mark)
        probe = Client(d.socket_path)
        counts = probe.ok("status", sweep=sweep)["counts"]
        assert counts["pending"] == 3, counts
        assert counts["running"] == 0, counts
        assert probe.ok("workers")["workers"] == [], "no worker should be connected"

        later = worker(d, directory, "later", 500)
        wait_finished(c, sweep)
        later.stop()
        for trial, rows in attempts_of(d).items():
            assert [(a, o) for a, _, o in rows] == [(1, "disconnect"), (2, "completed")], (trial, rows)
            assert rows[1][1] == "later", (trial, rows)
            # The later worker resumed from the newest checkpoint of attempt 1.
            saved = query(d, "SELECT checkpoint_step FROM attempts WHERE trial = ? AND attempt = 1", trial)[0][0]
            assert saved >= 500, (trial, saved)
            later.wait_log(rf"trial={trial} attempt=2 resumed from \S+ at step {saved}$", timeout=1)


def test_frozen_workers_requeued_by_timer():
    directory = harness.tmp_dir()
    with Daemon(args=["--heartbeat-timeout", HEARTBEAT_TIMEOUT]) as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=setup(directory, [0.001, 0.002, 0.003], 10000, 500))["sweep"]
        c.ok("watch", sweep=sweep)
        workers = [worker(d, directory, f"v{i}", 500) for i in range(3)]
        for w in workers:
            w.wait_log(r"step=500 saved", timeout=60)

        # Frozen machines keep their sockets open: only the daemon's own
        # heartbeat timer can notice them.
        mark = d.log_mark()
        for w in workers:
            w.proc.send_signal(signal.SIGSTOP)
        for i in range(3):
            d.wait_log(rf"worker=v{i} requeued: heartbeat_timeout -> pending", since=mark, timeout=30)
        assert Client(d.socket_path).ok("status", sweep=sweep)["counts"]["pending"] == 3

        # Killing them now closes their sockets, which must not requeue again.
        for w in workers:
            w.proc.send_signal(signal.SIGKILL)
        for w in workers:
            w.wait()
        later = worker(d, directory, "later", 500)
        wait_finished(c, sweep)
        later.stop()
        for trial, rows in attempts_of(d).items():
            assert [(a, o) for a, _, o in rows] == [(1, "heartbeat_timeout"), (2, "completed")], (trial, rows)
        assert query(d, "SELECT requeues FROM trials") == [(1,), (1,), (1,)]


def test_killed_right_after_lease_requeued():
    directory = harness.tmp_dir()
    with Daemon(args=["--heartbeat-timeout", HEARTBEAT_TIMEOUT]) as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=setup(directory, [0.001], 200, 50))["sweep"]
        c.ok("watch", sweep=sweep)
        first = worker(d, directory, "first", 50)
        first.wait_log(r"trial=1 attempt=1 lease=\w+ leased")
        mark = d.log_mark()
        first.kill(signal.SIGKILL)
        d.wait_log(r"trial=1 attempt=1 worker=first requeued: disconnect -> pending", since=mark)
        second = worker(d, directory, "second", 50)
        wait_finished(c, sweep)
        second.stop()
        assert [(a, o) for a, _, o in attempts_of(d)[1]] == [(1, "disconnect"), (2, "completed")]


def test_silent_after_lease_requeued_by_timer():
    directory = harness.tmp_dir()
    with Daemon(args=["--heartbeat-timeout", HEARTBEAT_TIMEOUT]) as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=setup(directory, [0.001], 200, 50))["sweep"]
        c.ok("watch", sweep=sweep)
        # A protocol client leases and then sends nothing, socket open: no
        # heartbeat ever arrives for the lease.
        silent = Client(d.socket_path)
        silent.ok("hello", version=1, role="worker", name="silent")
        trial = silent.ok("lease")["trial"]
        d.wait_log(rf"trial={trial['trial']} attempt=1 worker=silent requeued: heartbeat_timeout -> pending",
                   timeout=30)
        w = worker(d, directory, "next", 50)
        wait_finished(c, sweep)
        w.stop()
        assert [(a, n, o) for a, n, o in attempts_of(d)[trial["trial"]]] == [
            (1, "silent", "heartbeat_timeout"), (2, "next", "completed")]
        reply = silent.request("complete", final_loss=1.0, trial=trial["trial"], attempt=1, lease=trial["lease"])
        assert reply["error"]["code"] == "stale_lease", reply


def test_frozen_worker_told_stale_lease():
    directory = harness.tmp_dir()
    with Daemon(args=["--heartbeat-timeout", HEARTBEAT_TIMEOUT]) as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=setup(directory, [0.001], 4000, 100))["sweep"]
        c.ok("watch", sweep=sweep)
        frozen = worker(d, directory, "frozen", 1000)
        frozen.wait_log(r"trial=1 attempt=1 step=1000 saved", timeout=60)
        mark = d.log_mark()
        frozen.proc.send_signal(signal.SIGSTOP)
        d.wait_log(r"trial=1 attempt=1 worker=frozen requeued: heartbeat_timeout -> pending", since=mark, timeout=30)
        stored_by_first = query(d, "SELECT step, train_loss FROM metrics WHERE attempt = 1 ORDER BY step")

        fresh = worker(d, directory, "fresh", 1000)
        fresh.wait_log(r"trial=1 attempt=2 lease=\w+ leased", timeout=30)
        mark = d.log_mark()
        frozen.proc.send_signal(signal.SIGCONT)
        frozen.wait_log(r"trial=1 attempt=1 dropped: stale_lease", timeout=30)
        d.wait_log(r"trial=1 attempt=1 worker=frozen stale lease rejected", since=mark)
        wait_finished(c, sweep)

        # The zombie is alive and well, and its late reports changed nothing.
        assert frozen.proc.poll() is None
        frozen.stop()
        fresh.stop()
        assert attempts_of(d)[1] == [(1, "frozen", "heartbeat_timeout"), (2, "fresh", "completed")]
        assert query(d, "SELECT state, worker, attempt FROM trials") == [("completed", "fresh", 2)]
        assert query(d, "SELECT step, train_loss FROM metrics WHERE attempt = 1 ORDER BY step") == stored_by_first


def count_metrics_until(watcher, seen, **fields):
    """Reads events up to the first that has all of fields, counting each
    metrics event's step in seen."""
    while True:
        event = watcher.next_event(timeout=60)
        if event.get("event") == "metrics":
            seen[event["step"]] = seen.get(event["step"], 0) + 1
        if all(event.get(k) == v for k, v in fields.items()):
            return


def test_resumed_trial_stores_each_step_once():
    directory = harness.tmp_dir()
    with Daemon(args=["--heartbeat-timeout", HEARTBEAT_TIMEOUT]) as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=setup(directory, [0.001], 4000, 10))["sweep"]
        c.ok("watch", sweep=sweep)
        first = worker(d, directory, "first", 2000)

        # Kill the first worker once it reported steps past its checkpoint at
        # 2000, so the resumed attempt re-reports those steps. The next
        # checkpoint is 1,900 steps (about 0.4 s) after the trigger.
        seen = {}
        reported = None
        while True:
            event = c.next_event(timeout=60)
            if event.get("event") == "checkpoint":
                reported = event["step"]
            if event.get("event") == "metrics":
                seen[event["step"]] = seen.get(event["step"], 0) + 1
                if event["step"] >= 2100:
                    break
        assert reported == 2000, "the checkpoint at 2000 was not reported before step 2100"
        first.kill(signal.SIGKILL)
        d.wait_log(r"trial=1 attempt=1 worker=first requeued: disconnect -> pending")

        # The event follows the commit, so every point of the first attempt
        # is in the database once it arrives.
        count_metrics_until(c, seen, event="trial", state="pending")
        checkpoint_step = query(d, "SELECT checkpoint_step FROM trials")[0][0]
        last_step = query(d, "SELECT max(step) FROM metrics")[0][0]
        assert checkpoint_step is not None and last_step > checkpoint_step, (checkpoint_step, last_step)

        second = worker(d, directory, "second", 2000)
        second.wait_log(rf"trial=1 attempt=2 resumed from \S+ at step {checkpoint_step}", timeout=30)
        count_metrics_until(c, seen, event="sweep", state="finished")
        second.stop()

        rows = query(d, "SELECT step, attempt FROM metrics ORDER BY step")
        assert [s for s, _ in rows] == list(range(10, 4001, 10)), rows[:5]
        assert all(a == 1 for s, a in rows if s <= last_step), "a re-reported step replaced the first value"
        assert all(a == 2 for s, a in rows if s > last_step)
        assert all(count == 1 for count in seen.values()), {s: n for s, n in seen.items() if n != 1}


def checkpoint_reports(reply_delay):
    """Trains 6000 steps with a metric point every step and a checkpoint
    every 100 behind replies delayed by reply_delay seconds. Checks that each
    report comes after every point up to its step and before any later one,
    and returns the reported steps."""
    directory = harness.tmp_dir()
    with Daemon() as d:
        relay = Relay(d.socket_path, os.path.join(directory, "relay.sock"), delay=reply_delay)
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=setup(directory, [0.001], 6000, 1))["sweep"]
        c.ok("watch", sweep=sweep)
        w = start_worker(relay.path, "--name", "streamer", "--checkpoint-dir", os.path.join(directory, "ck"),
                         "--checkpoint-every", "100", "--cache-dir", os.path.join(directory, "cache"),
                         log_path=os.path.join(directory, "streamer.log"))

        steps = []
        reported = []
        while True:
            event = c.next_event(timeout=120)
            if event.get("event") == "metrics":
                steps.append(event["step"])
            elif event.get("event") == "checkpoint":
                n = event["step"]
                assert steps == list(range(1, n + 1)), f"checkpoint {n} after point {steps[-1:]}"
                assert event["attempt"] == 1, event
                assert event["location"].endswith(f"/step-{n}.ckpt"), event
                reported.append(n)
            elif event.get("event") == "sweep" and event.get("state") == "finished":
                break
        w.stop()
        relay.close()

        assert steps == list(range(1, 6001))
        assert reported == sorted(set(reported)), reported
        assert query(d, "SELECT checkpoint_step FROM trials") == [(reported[-1],)]
        return reported


def test_checkpoint_reported_while_points_stream():
    """A metric point every step keeps the worker's outbox from ever being
    empty. Each checkpoint must still be reported as soon as its own steps
    are stored, or a kill at that moment resumes from an older checkpoint
    than the newest on disk."""
    reported = checkpoint_reports(0.0)
    # Reports skip a checkpoint that a newer one replaced before its turn,
    # but most acknowledgement rounds report one.
    assert len(reported) >= 20, reported


def test_checkpoint_reported_behind_slow_replies():
    """With every reply 25 ms late, longer than a checkpoint interval here,
    the checkpoint the report waits for must not keep moving away."""
    reported = checkpoint_reports(0.025)
    assert len(reported) >= 10, reported


def checkpoint_files(directory, trial):
    return sorted(os.listdir(os.path.join(directory, "ck", "1", str(trial))),
                  key=lambda name: int(name[len("step-"):-len(".ckpt")]))


def test_checkpoint_kept_after_lost_reply():
    """The daemon stores checkpoint X and is killed before its reply leaves.
    After the restart the worker re-presents its lease, and its report of a
    newer checkpoint gets no reply for as long as the worker trains on. X is
    the daemon's checkpoint all that time, so the worker must keep X on disk
    while it saves and prunes newer ones."""
    directory = harness.tmp_dir()
    state_dir = os.path.join(directory, "state")
    grace = f"{harness.scaled(30.0):g}"
    stored = threading.Event()
    report = {}
    swallow_reports = threading.Event()

    def on_request(message):
        if message.get("op") != "checkpoint":
            return True
        if swallow_reports.is_set():
            return False
        if message["step"] >= 1000 and "id" not in report:
            report.update(id=message["id"], step=message["step"], location=message["location"])
        return True

    def on_reply(message):
        if "id" in report and message.get("id") == report["id"] and not stored.is_set():
            stored.set()  # the daemon replied, so X is committed; the worker never hears it
            return relay.DROP
        return relay.DELIVER

    d = Daemon(state_dir=state_dir, args=["--grace", grace])
    sweep = Client(d.socket_path).ok("submit", spec=setup(directory, [0.001], 400000, 10))["sweep"]
    link = Relay(d.socket_path, os.path.join(directory, "relay.sock"), delay=0.005,
                 request_filter=on_request, reply_filter=on_reply)
    w = start_worker(link.path, "--name", "keeper", "--checkpoint-dir", os.path.join(directory, "ck"),
                     "--checkpoint-every", "100", "--cache-dir", os.path.join(directory, "cache"),
                     log_path=os.path.join(directory, "keeper.log"))
    try:
        assert stored.wait(harness.scaled(60)), "no checkpoint report past step 1000"
        swallow_reports.set()
        d.kill(signal.SIGKILL)
        d = Daemon(state_dir=state_dir, args=["--grace", grace])
        d.wait_log(r"trial=1 attempt=1 worker=keeper re-presented after restart", timeout=30)

        # Train six checkpoints past the newest report, with X still held.
        saved = w.wait_log(r"trial=1 attempt=1 step=(\d+) saved", since=w.log_mark(), timeout=30)
        newest = int(saved.group(1))
        w.wait_log(rf"trial=1 attempt=1 step={newest + 600} saved", timeout=60)
        assert query(d, "SELECT checkpoint, checkpoint_step FROM trials") == [(report["location"],
                                                                              report["step"])]
        assert os.path.exists(report["location"]), (report, checkpoint_files(directory, 1))
    finally:
        w.kill(signal.SIGKILL)
        link.close()
        d.stop()
    assert sweep == 1


def test_checkpoints_trimmed_after_lost_final_reply():
    """The daemon stores the trial's completion, but the connection is cut
    before the reply arrives. The reconnected worker gets stale_lease for its
    lease and drops the trial, and must still delete the checkpoints it had
    kept pinned, leaving the newest two."""
    directory = harness.tmp_dir()
    final_ids = set()

    def on_request(message):
        if message.get("op") == "complete":
            final_ids.add(message.get("id"))
        return True

    def on_reply(message):
        return relay.CUT if message.get("id") in final_ids else relay.DELIVER

    with Daemon() as d:
        link = Relay(d.socket_path, os.path.join(directory, "relay.sock"), delay=0.025,
                     request_filter=on_request, reply_filter=on_reply)
        c = Client(d.socket_path)
        c.ok("submit", spec=setup(directory, [0.001], 6000, 1))
        w = start_worker(link.path, "--name", "trimmer", "--checkpoint-dir", os.path.join(directory, "ck"),
                         "--checkpoint-every", "100", "--cache-dir", os.path.join(directory, "cache"),
                         "--max-trials", "1", log_path=os.path.join(directory, "trimmer.log"))
        w.wait_log(r"trial=1 attempt=1 dropped: stale_lease", timeout=120)
        w.wait_log(r"sweep=1 trial=1 older checkpoints deleted; the newest 2 kept", timeout=30)
        assert checkpoint_files(directory, 1) == ["step-5900.ckpt", "step-6000.ckpt"]
        assert query(d, "SELECT state FROM trials") == [("completed",)]
        w.kill(signal.SIGKILL)
        link.close()


def test_rereported_steps_ignored_by_protocol():
    with Daemon() as d:
        c = Client(d.socket_path)
        c.ok("submit", spec={"method": "grid", "parameters": {"lr": {"values": [0.1]}}})
        a = Client(d.socket_path)
        a.ok("hello", version=1, role="worker", name="a")
        t = a.ok("lease")["trial"]
        lease = {"trial": t["trial"], "attempt": t["attempt"], "lease": t["lease"]}
        points = [{"step": s, "train_loss": float(s), "val_loss": float(s)} for s in range(1, 6)]
        assert a.ok("metrics", points=points, **lease)["stored"] == 5
        a.ok("preempted", location="/ck/step-2.ckpt", step=2, **lease)

        b = Client(d.socket_path)
        b.ok("hello", version=1, role="worker", name="b")
        t = b.ok("lease")["trial"]
        assert t["attempt"] == 2, t
        assert t["checkpoint"]["step"] == 2, t
        lease = {"trial": t["trial"], "attempt": t["attempt"], "lease": t["lease"]}
        points = [{"step": s, "train_loss": 100.0 + s, "val_loss": 100.0 + s} for s in range(3, 9)]
        assert b.ok("metrics", points=points, **lease)["stored"] == 3
        rows = query(d, "SELECT step, attempt, train_loss FROM metrics ORDER BY step")
        assert rows == [(s, 1, float(s)) for s in range(1, 6)] + [(s, 2, 100.0 + s) for s in range(6, 9)], rows


if __name__ == "__main__":
    harness.main(globals())
