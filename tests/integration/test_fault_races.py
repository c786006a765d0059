"""Lease races against a real sweepd: many workers asking for work in the same
instant after a preemption or after several workers were lost, and 64
workers starting together on a 2,000-trial sweep. The workers here are
protocol clients in threads released by a threading.Barrier, so their
requests reach the daemon together. They lease and report at once instead
of training, so 64 of them fit on a small machine.
"""

import select
import sqlite3
import threading

import harness
from harness import Client, Daemon


def grid_spec(count):
    return {"method": "grid", "parameters": {"lr": {"values": [0.001 * (i + 1) for i in range(count)]}}}


def new_worker(daemon, name):
    client = Client(daemon.socket_path)
    client.ok("hello", version=1, role="worker", name=name)
    return client


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def at_once(clients, op, **fields):
    """Send op from every client in the same instant (threads behind a
    barrier) and return the replies in client order."""
    barrier = threading.Barrier(len(clients))
    replies = [None] * len(clients)

    def run(i):
        barrier.wait()
        replies[i] = clients[i].request(op, **fields)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(harness.scaled(60))
    assert all(r is not None for r in replies), "a request got no reply"
    return replies


def query(daemon, sql, *args):
    with sqlite3.connect("file:" + daemon.db_path() + "?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


def test_preempted_trial_leased_once_of_16():
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=grid_spec(8))
        first = new_worker(d, "first")
        preempted = first.ok("lease")["trial"]
        assert first.ok("preempted", **lease_fields(preempted))["state"] == "pending"

        workers = [new_worker(d, f"w{i}") for i in range(16)]
        workers[0].ok("bye")
        replies = at_once(workers, "lease")

        assert replies[0]["error"]["code"] == "leaving", replies[0]
        trials = [r["trial"] for r in replies[1:] if r["ok"] and r["trial"] is not None]
        assert all(r["ok"] for r in replies[1:]), [r for r in replies[1:] if not r["ok"]]
        ids = [t["trial"] for t in trials]
        assert len(ids) == len(set(ids)), f"a trial was leased twice: {sorted(ids)}"
        again = [t for t in trials if t["trial"] == preempted["trial"]]
        assert len(again) == 1, again
        assert again[0]["attempt"] == 2, again
        assert len(trials) == 8, f"8 trials exist, {len(trials)} were leased"
        assert query(d, "SELECT count(*) FROM attempts") == [(9,)]


def test_lost_trials_leased_once_to_8_new():
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=grid_spec(4))
        holders = [new_worker(d, f"h{i}") for i in range(4)]
        lost = {h.ok("lease")["trial"]["trial"] for h in holders}
        mark = d.log_mark()
        for h in holders:
            h.close()
        for i in range(4):
            d.wait_log(rf"worker=h{i} requeued: disconnect -> pending", since=mark)

        replies = at_once([new_worker(d, f"n{i}") for i in range(8)], "lease")
        assert all(r["ok"] for r in replies), replies
        trials = [r["trial"] for r in replies if r["trial"] is not None]
        assert sorted(t["trial"] for t in trials) == sorted(lost), trials
        assert all(t["attempt"] == 2 for t in trials), trials


def test_lost_trials_go_to_held_requests_once():
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec=grid_spec(4))["sweep"]
        holders = [new_worker(d, f"h{i}") for i in range(4)]
        lost = {h.ok("lease")["trial"]["trial"] for h in holders}

        # Eight workers wait with held lease requests on an exhausted grid.
        waiters = [new_worker(d, f"n{i}") for i in range(8)]
        ids = [w.send("lease", wait=True) for w in waiters]
        watcher = Client(d.socket_path)
        watcher.ok("watch", sweep=sweep)
        for h in holders:
            h.close()

        # Each lost trial runs again exactly once, as attempt 2.
        running = []
        while len(running) < 4:
            event = watcher.next_event(timeout=30)
            if event.get("event") == "trial" and event["state"] == "running":
                running.append(event)
        assert sorted(e["trial"] for e in running) == sorted(lost), running
        assert all(e["attempt"] == 2 for e in running), running
        winners = {e["worker"] for e in running}
        assert len(winners) == 4, running
        got = []
        for i, (w, request_id) in enumerate(zip(waiters, ids)):
            if f"n{i}" in winners:
                got.append(w.reply(request_id)["trial"]["trial"])
        assert sorted(got) == sorted(lost), got
        # The four losers still wait: nothing is readable on their sockets.
        losers = [w.sock for i, w in enumerate(waiters) if f"n{i}" not in winners]
        readable, _, _ = select.select(losers, [], [], 0)
        assert readable == [], "a waiter without a trial got a reply"
        assert query(d, "SELECT count(*) FROM attempts") == [(8,)]


def test_64_workers_start_together():
    trials, workers = 2000, 64
    with Daemon() as d:
        c = Client(d.socket_path)
        sweep = c.ok("submit", spec={"method": "random", "run_cap": trials, "seed": 1,
                                     "parameters": {"lr": {"min": 0.0, "max": 1.0}}})["sweep"]
        barrier = threading.Barrier(workers)
        done = [[] for _ in range(workers)]
        errors = []

        def run(i):
            try:
                barrier.wait()
                w = new_worker(d, f"w{i}")
                while True:
                    reply = w.request("lease")
                    if not reply["ok"]:
                        errors.append(reply)
                        return
                    trial = reply["trial"]
                    if trial is None:
                        return
                    reply = w.request("complete", final_loss=trial["params"]["lr"] + 1.0, **lease_fields(trial))
                    if not reply["ok"]:
                        errors.append(reply)
                        return
                    done[i].append(trial["trial"])
            except Exception as e:  # any failure in a thread fails the test below
                errors.append(repr(e))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(harness.scaled(300))
        assert errors == [], errors[:5]
        ids = [t for per_worker in done for t in per_worker]
        assert len(ids) == trials, len(ids)
        assert len(set(ids)) == trials, "a trial was completed twice"
        status = c.ok("status", sweep=sweep)
        assert status["state"] == "finished", status
        assert status["counts"]["completed"] == trials, status
        assert query(d, "SELECT count(*), count(DISTINCT trial) FROM attempts WHERE outcome = 'completed'") == \
            [(trials, trials)]


if __name__ == "__main__":
    harness.main(globals())
