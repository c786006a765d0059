"""Protocol conversations with a real sweepd: every operation once, the
line limits (long line, deep JSON, bad JSON, idle and partial-line timeouts,
connection limit), TCP token authentication, and the state-directory lock.
Workers are Python clients speaking the protocol; nothing trains.
"""

import os
import signal
import socket

import harness
from harness import Client, Daemon

SPEC = {"name": "protocol", "method": "grid",
        "parameters": {"optimizer": {"values": ["adam", "sm3"]}, "lr": {"values": [0.01, 0.001]}}}


def worker(daemon, name="w1", **fields):
    client = Client(daemon.socket_path)
    reply = client.ok("hello", version=1, role="worker", name=name, host="testhost", pid=os.getpid(), **fields)
    return client, reply


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def test_every_operation():
    with Daemon() as d:
        c = Client(d.socket_path)
        assert c.ok("hello", version=1)["version"] == 1

        v = c.ok("validate", spec=SPEC, show=3)
        assert v["size"] == 4
        assert len(v["trials"]) == 3
        assert v["trials"][0] == {"lr": 0.01, "optimizer": "adam"}

        s = c.ok("submit", spec=SPEC)
        sweep = s["sweep"]
        assert s["size"] == 4
        assert s["method"] == "grid"
        assert s["name"] == "protocol"

        listed = c.ok("list")["sweeps"]
        assert [x["sweep"] for x in listed] == [sweep]
        assert listed[0]["state"] == "running"

        w, hello = worker(d)
        assert hello["worker_id"] == "w1"
        assert hello["heartbeat_timeout_ms"] == 30000
        trial = w.ok("lease")["trial"]
        assert trial["attempt"] == 1
        assert trial["index"] == 0
        assert trial["checkpoint"] is None
        lf = lease_fields(trial)

        assert w.ok("heartbeat", step=5, loss=2.5, tokens_per_s=1000.0, **lf)
        m = w.ok("metrics", points=[{"step": 5, "train_loss": 2.5, "val_loss": 2.6},
                                    {"step": 10, "train_loss": 2.4, "val_loss": "nan"}], **lf)
        assert m["stored"] == 2
        assert w.ok("metrics", points=[{"step": 10, "train_loss": 9.0}], **lf)["stored"] == 0
        w.ok("checkpoint", location="/tmp/ck/1/step-10.ckpt", step=10, **lf)
        bad = w.request("checkpoint", location="/tmp/ck/../../etc/passwd", step=10, **lf)
        assert bad["error"]["code"] == "bad_request"

        workers = c.ok("workers")["workers"]
        assert workers[0]["worker"] == "w1"
        assert workers[0]["trial"] == trial["trial"]
        assert workers[0]["step"] == 5
        assert workers[0]["host"] == "testhost"

        done = w.ok("complete", final_loss=1.25, best_loss=1.2, steps=10, seconds=0.5, **lf)
        assert done["state"] == "completed"

        t2 = w.ok("lease")["trial"]
        assert w.ok("diverged", step=3, loss="nan", **lease_fields(t2))["state"] == "diverged"
        t3 = w.ok("lease")["trial"]
        assert w.ok("preempted", location="/tmp/ck/3/step-2.ckpt", step=2, **lease_fields(t3))["state"] == "pending"
        again = w.ok("lease")["trial"]
        assert again["trial"] == t3["trial"], "a requeued trial is leased before new ones"
        assert again["attempt"] == 2
        assert again["checkpoint"] == {"location": "/tmp/ck/3/step-2.ckpt", "step": 2}
        assert w.ok("failed", error="dataset missing", **lease_fields(again))["state"] == "pending"

        status = c.ok("status", sweep=sweep)
        assert status["counts"]["completed"] == 1
        assert status["counts"]["diverged"] == 1
        assert status["counts"]["pending"] == 1
        assert status["best_loss"] == 1.25
        assert status["best_trial"] == trial["trial"]
        assert status["total"] == 4
        assert len(c.ok("status")["sweeps"]) == 1

        trials = c.ok("trials", sweep=sweep, sort="final_loss", limit=10)["trials"]
        assert trials[0]["final_loss"] == 1.25
        assert [t["state"] for t in c.ok("trials", sweep=sweep, state="diverged")["trials"]] == ["diverged"]

        tickets = c.ok("tickets", sweep=sweep, threshold=2.0, by="optimizer")
        assert tickets["overall"]["finished"] == 2
        assert tickets["overall"]["winners"] == 1

        assert c.ok("pause", sweep=sweep)["state"] == "paused"
        assert w.ok("lease", wait=False)["trial"] is None
        assert c.ok("resume", sweep=sweep)["state"] == "running"
        t4 = w.ok("lease")["trial"]
        cancelled = c.ok("cancel", sweep=sweep)
        assert cancelled["state"] == "cancelled"
        event = w.wait_event(event="cancel")
        assert event["trial"] == t4["trial"]
        assert w.request("complete", final_loss=1.0, **lease_fields(t4))["error"]["code"] == "stale_lease"

        assert w.ok("bye")
        assert w.request("lease")["error"]["code"] == "leaving"
        c.ok("watch")


def test_request_errors():
    with Daemon() as d:
        c = Client(d.socket_path)
        cases = [
            ({"op": "status"}, "bad_request"),                   # no id
            ({"id": 1}, "bad_request"),                          # no op
            ({"id": 2, "op": "frobnicate"}, "unknown_op"),
            ({"id": 3, "op": "lease"}, "not_worker"),
            ({"id": 4, "op": "hello", "version": 2}, "unsupported_version"),
            ({"id": 5, "op": "status", "sweep": 99}, "not_found"),
            ({"id": 6, "op": "status", "sweep": "one"}, "bad_request"),
            ({"id": 7, "op": "submit", "spec": {"method": "bayes", "parameters": {}}}, "invalid_spec"),
            ({"id": 8, "op": "submit"}, "bad_request"),
            ({"id": 9, "op": "trials", "sweep": 1}, "not_found"),
        ]
        import json
        for message, code in cases:
            c.send_raw(json.dumps(message).encode() + b"\n")
            reply = c.recv()
            assert reply["ok"] is False, message
            assert reply["error"]["code"] == code, (message, reply)
            assert reply["error"]["message"], message
        sweep = c.ok("submit", spec=SPEC)["sweep"]
        assert c.request("trials", sweep=sweep, sort="loss")["error"]["code"] == "bad_request"
        assert c.request("trials", sweep=sweep, limit=0)["error"]["code"] == "bad_request"
        assert c.request("tickets", sweep=sweep)["error"]["code"] == "bad_request"
        w, _ = worker(d)
        trial = w.ok("lease")["trial"]
        wrong = dict(lease_fields(trial), lease="0" * 32)
        assert w.request("heartbeat", step=1, **wrong)["error"]["code"] == "stale_lease"
        assert w.request("complete", trial=trial["trial"])["error"]["code"] == "bad_request"
        assert w.request("complete", **lease_fields(trial))["error"]["code"] == "bad_request"


def test_duplicate_worker_name():
    with Daemon() as d:
        _, first = worker(d, "same")
        _, second = worker(d, "same")
        assert first["worker_id"] == "same"
        assert second["worker_id"] == "same-2"


def test_long_line_rejected():
    with Daemon(args=["--max-line-bytes", "2048"]) as d:
        c = Client(d.socket_path)
        c.send_raw(b'{"id":1,"op":"status","pad":"' + b"x" * 4000 + b'"}\n')
        messages = c.wait_closed()
        assert messages[-1]["error"]["code"] == "line_too_long"
        d.wait_log(r"longer than --max-line-bytes")
        assert Client(d.socket_path).ok("list")["sweeps"] == [], "the daemon keeps serving others"


def test_deep_json_rejected():
    with Daemon() as d:
        c = Client(d.socket_path)
        c.send_raw(b'{"id":1,"op":"status","x":' + b"[" * 70 + b"]" * 70 + b"}\n")
        messages = c.wait_closed()
        assert messages[-1]["error"]["code"] == "too_deep"
        # 63 nested lists inside the object is exactly 64 levels: accepted.
        ok = Client(d.socket_path)
        ok.send_raw(b'{"id":2,"op":"list","x":' + b"[" * 63 + b"]" * 63 + b"}\n")
        assert ok.recv()["ok"] is True
        d.wait_log(r"nested deeper than 64")


def test_bad_json_rejected():
    with Daemon() as d:
        c = Client(d.socket_path)
        c.send_raw(b'{"id":1,"op":\x01\xff nope\n')
        messages = c.wait_closed()
        assert messages[-1]["error"]["code"] == "bad_json"
        match = d.wait_log(r"not a JSON object; closing; line starts \"(.*)\"")
        assert "\\x01" in match.group(1), "the sample is escaped"


def test_partial_line_timeout():
    with Daemon(args=["--idle-timeout", "1"]) as d:
        c = Client(d.socket_path)
        c.send_raw(b'{"id":1,"op":"li')
        messages = c.wait_closed(timeout=10)
        assert messages[-1]["error"]["code"] == "timeout"
        idle = Client(d.socket_path)
        assert idle.wait_closed(timeout=10)[-1]["error"]["code"] == "timeout"
        # A worker that heartbeats is exempt from the idle rule; a watcher too.
        watcher = Client(d.socket_path)
        watcher.ok("watch")
        mark = d.log_mark()
        third = Client(d.socket_path)
        third.wait_closed(timeout=10)
        d.wait_log(r"sent nothing", since=mark)
        assert watcher.ok("list")["sweeps"] == []


def test_connection_limit():
    with Daemon(args=["--max-connections", "2"]) as d:
        a = Client(d.socket_path)
        b = Client(d.socket_path)
        a.ok("list")
        b.ok("list")
        c = Client(d.socket_path)
        messages = c.wait_closed()
        assert messages[0]["error"]["code"] == "too_many_connections"
        a.close()
        b.ok("list")


def test_tcp_token_auth():
    state = harness.tmp_dir()
    token_path = os.path.join(state, "token")
    with open(token_path, "w") as f:
        f.write("s3cret-token-0123456789\n")
    os.chmod(token_path, 0o600)
    with Daemon(state_dir=state, args=["--listen", "127.0.0.1:0", "--token-file", token_path]) as d:
        assert d.tcp_address is not None
        first = Client(d.tcp_address)
        assert first.request("list")["error"]["code"] == "unauthorized"
        assert first.wait_closed() == []
        wrong = Client(d.tcp_address)
        assert wrong.request("hello", version=1, token="guess")["error"]["code"] == "unauthorized"
        # Rejections are logged at most once per second; the first one is.
        d.wait_log(r"peer=127\.0\.0\.1:\d+ rejected: first request was not hello")
        good = Client(d.tcp_address)
        good.ok("hello", version=1, token="s3cret-token-0123456789")
        assert good.ok("list")["sweeps"] == []
        # The unix socket needs no token.
        Client(d.socket_path).ok("list")


def test_state_dir_lock():
    with Daemon() as d:
        second = harness.LoggedProcess([harness.program("sweepd"), "--state-dir", d.state_dir, "--foreground"],
                                       os.path.join(harness.tmp_dir(), "second.log"))
        assert second.wait() == 1
        assert f"pid {d.pid}" in second.log_text()
        Client(d.socket_path).ok("list")


def test_shutdown_tells_workers():
    d = Daemon()
    w, _ = worker(d)
    held = Client(d.socket_path)
    held.ok("hello", version=1, role="worker", name="waiter")
    lease_id = held.send("lease", wait=True)
    d.kill(signal.SIGTERM)
    assert w.next_event()["event"] == "shutdown"
    assert held.reply(lease_id)["error"]["code"] == "shutting_down"
    assert d.proc.returncode == 0
    d.check_sanitizers()
    assert not os.path.exists(d.socket_path)



def test_sigterm_with_watcher_and_workers():
    """SIGTERM while a watcher is subscribed and workers hold leases: the
    watcher's last events (workers leaving) are written while stopping, every
    connection closes, and the daemon exits 0 with no handle left open."""
    d = Daemon()
    c = Client(d.socket_path)
    c.ok("submit", spec={"method": "grid", "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]}}})
    watcher = Client(d.socket_path)
    watcher.ok("watch")
    workers = []
    for name in ("w1", "w2", "w3"):
        w, _ = worker(d, name)
        assert w.ok("lease")["trial"] is not None
        workers.append(w)
    d.kill(signal.SIGTERM)
    for w in workers:
        assert w.next_event()["event"] == "shutdown"
    assert d.proc.returncode == 0
    d.check_sanitizers()
    assert "still had open handles" not in d.log_text()


def test_stats_counts_commits():
    with Daemon() as d:
        c = Client(d.socket_path)
        first = c.ok("stats")
        c.ok("submit", spec={"method": "grid", "parameters": {"optimizer": {"values": ["adam"]}}})
        w, _ = worker(d, "w1")
        trial = w.ok("lease")["trial"]
        w.ok("complete", final_loss=1.0, **lease_fields(trial))
        second = c.ok("stats")
        # stats, submit, hello, lease, complete, stats: the second stats counts itself.
        assert second["requests"] - first["requests"] == 5
        assert second["commits"] - first["commits"] >= 3  # submit, hello with lease, complete
        assert second["commit_seconds"] > first["commit_seconds"]
        assert second["max_batch"] >= 1
        assert second["leases"] == first["leases"] + 1
        assert second["completions"] == first["completions"] + 1
        assert second["connections"] == 2
        # Durable mode: each acknowledged write waited for a WAL sync.
        assert second["syncs"] - first["syncs"] >= 3
        assert second["sync_seconds"] > first["sync_seconds"]


def test_stats_normal_mode_skips_syncs():
    with Daemon(args=["--synchronous", "normal"]) as d:
        c = Client(d.socket_path)
        c.ok("submit", spec={"method": "grid", "parameters": {"optimizer": {"values": ["adam"]}}})
        w, _ = worker(d, "w1")
        trial = w.ok("lease")["trial"]
        w.ok("complete", final_loss=1.0, **lease_fields(trial))
        stats = c.ok("stats")
        assert stats["commits"] >= 3
        assert stats["syncs"] == 0
        assert stats["sync_seconds"] == 0


if __name__ == "__main__":
    harness.main(globals())
