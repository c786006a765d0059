"""A hostile daemon against a real sweep-worker: over-long lines, invalid
JSON, leases with missing or odd fields, replies to unknown ids, an event
flood, a close in the middle of a line, and a checkpoint location that is a
FIFO. After each, the worker must log the problem, stay alive and come back
(reconnect with hello, or lease again), never crash or hang.
"""

import json
import os

import harness
from test_worker_protocol import ScriptedConn, ScriptedDaemon, start, trial
from test_worker_sweep import make_dataset

MAX_LINE_BYTES = 1024 * 1024


def reconnects(daemon, w):
    """Accept the worker's next connection and return it after its hello."""
    conn, hello = daemon.accept()
    assert hello["op"] == "hello", hello
    assert w.proc.poll() is None, w.log_text(20)
    return conn


def finish(daemon, w, conn):
    """Say bye through SIGTERM and check the worker exits 0."""
    w.proc.send_signal(harness.signal.SIGTERM)
    while True:
        message = conn.recv()
        if message is None:
            break
        if message["op"] == "bye":
            conn.reply(message)
            break
        if message["op"] != "lease":  # a daemon holds a lease request until a trial is ready
            conn.reply(message)
    assert w.wait(30) == 0, w.log_text(40)
    conn.close()
    daemon.close()


def test_overlong_line_reconnects():
    daemon = ScriptedDaemon()
    w = start(daemon)
    sock, _ = daemon.listener.accept()
    conn = ScriptedConn(sock)
    conn.expect("hello")
    conn.sock.sendall(b"x" * (MAX_LINE_BYTES + 10))
    w.wait_log(r"line longer than 1048576 bytes; reconnecting")
    conn.close()
    conn = reconnects(daemon, w)
    finish(daemon, w, conn)


def test_invalid_json_reconnects():
    daemon = ScriptedDaemon()
    w = start(daemon)
    sock, _ = daemon.listener.accept()
    conn = ScriptedConn(sock)
    conn.expect("hello")
    conn.sock.sendall(b"{\"id\": 1, \"ok\": tru\n")
    w.wait_log(r"invalid JSON")
    conn.close()
    conn = reconnects(daemon, w)
    finish(daemon, w, conn)


def test_close_mid_line_reconnects():
    daemon = ScriptedDaemon()
    w = start(daemon)
    sock, _ = daemon.listener.accept()
    conn = ScriptedConn(sock)
    hello = conn.expect("hello")
    conn.sock.sendall(json.dumps({"id": hello["id"], "ok": True})[:10].encode())
    conn.close()
    conn = reconnects(daemon, w)
    finish(daemon, w, conn)


def test_odd_lease_fields_rejected():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept()
    odd = [
        dict(trial(dataset), params=[1, 2]),
        dict(trial(dataset), params="n_layer=1"),
        dict(trial(dataset), lease="a" * 10240),
        dict(trial(dataset), attempt="one"),
        {k: v for k, v in trial(dataset).items() if k != "trial"},
    ]
    for i, lease in enumerate(odd):
        request = conn.expect("lease")
        mark = w.log_mark()
        conn.reply(request, trial=lease)
        w.wait_log(r"lease reply lacks|invalid|reconnecting", since=mark)
        assert w.proc.poll() is None, f"odd lease {i}: worker exited: {w.log_text(20)}"
        conn.close()
        conn = reconnects(daemon, w)
    finish(daemon, w, conn)


def test_negative_attempt_echoed_back():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=dict(trial(dataset, steps=4), attempt=-3))
    message = conn.recv()
    while message is not None and message["op"] in ("heartbeat", "metrics", "checkpoint"):
        conn.reply(message)
        message = conn.recv()
    assert message is not None, w.log_text(20)
    # The daemon owns attempt numbers; the worker reports the one it was given.
    assert message["attempt"] == -3, message
    assert w.proc.poll() is None, w.log_text(20)
    conn.reply(message)
    finish(daemon, w, conn)


def test_unknown_reply_id_and_event_flood():
    daemon = ScriptedDaemon()
    w = start(daemon)
    conn, _ = daemon.accept()
    request = conn.expect("lease")
    conn.send({"id": 987654321, "ok": True})
    conn.send({"id": -1, "ok": False, "error": {"code": "internal", "message": "x"}})
    flood = b"".join(json.dumps({"event": "progress", "sweep": 1, "n": i}).encode() + b"\n"
                     for i in range(20000))
    conn.sock.sendall(flood)
    conn.send({"event": "cancel", "trial": 99})
    assert w.proc.poll() is None, w.log_text(20)
    # The lease is still pending: answer it with an idle reply and see the worker keep talking.
    conn.reply(request, trial=None)
    finish(daemon, w, conn)


def test_fifo_checkpoint_location_starts_over():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    fifo = os.path.join(daemon.dir, "step-10.ckpt")
    os.mkfifo(fifo)
    w = start(daemon, "--max-trials", "1")
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset, steps=20, checkpoint={"location": fifo, "step": 10}))
    w.wait_log(r"is a FIFO, not a regular file")
    while True:
        message = conn.recv()
        assert message is not None, w.log_text(30)
        if message["op"] == "complete":
            break
        conn.reply(message)
    assert message["steps"] == 20, message
    conn.reply(message)
    conn.reply(conn.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    daemon.close()


def test_trial_above_max_memory_failed():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon, "--max-memory", "4M")
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset, steps=4, d_model=64, n_head=4, seq_len=256, batch_size=16))
    message = conn.recv()
    while message is not None and message["op"] in ("heartbeat", "metrics", "checkpoint"):
        conn.reply(message)
        message = conn.recv()
    assert message is not None, w.log_text(20)
    assert message["op"] == "failed", message
    assert "above the memory limit of 4194304 bytes" in message["error"], message
    conn.reply(message)
    assert conn.expect("lease")["op"] == "lease"
    assert w.proc.poll() is None, w.log_text(20)
    finish(daemon, w, conn)


if __name__ == "__main__":
    harness.main(globals())
