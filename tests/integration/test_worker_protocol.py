"""sweep-worker's side of the protocol against a scripted daemon: each test
drives one real worker process (real training on a tiny model) through a
unix socket that this script serves, and checks the exact messages it sends.
Cases the real sweepd cannot easily stage: a lease rejected as stale after a
reconnect, a pushed cancel, heartbeats while training, the second signal,
invalid params, and a corrupt or unsafe checkpoint location.
"""

import json
import os
import signal
import socket
import subprocess

import harness
from test_worker_sweep import TINY, make_dataset


class ScriptedConn:
    """One accepted worker connection, read and written by the test."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(harness.scaled(30))
        self.buf = b""
        self.heartbeats = []

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def send(self, message):
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def reply(self, request, **fields):
        self.send(dict({"id": request["id"], "ok": True}, **fields))

    def expect(self, op):
        """Return the next request whose op is op. Heartbeats, metrics and
        checkpoints met on the way get an ok reply (they interleave freely)."""
        while True:
            message = self.recv()
            assert message is not None, f"connection closed while waiting for {op}"
            if message["op"] != op and message["op"] in ("heartbeat", "metrics", "checkpoint"):
                if message["op"] == "heartbeat":
                    self.heartbeats.append(message)
                self.reply(message)
                continue
            assert message["op"] == op, (op, message)
            return message

    def close(self):
        self.sock.close()


class ScriptedDaemon:
    def __init__(self):
        self.dir = harness.tmp_dir()
        self.path = os.path.join(self.dir, "s.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(harness.scaled(30))

    def accept(self, heartbeat_timeout_ms=30000, **hello_fields):
        """Accept a worker and reply ok to its hello; returns (conn, hello)."""
        sock, _ = self.listener.accept()
        conn = ScriptedConn(sock)
        hello = conn.expect("hello")
        conn.reply(hello, version=1, worker_id=hello["name"],
                   heartbeat_timeout_ms=heartbeat_timeout_ms, **hello_fields)
        return conn, hello

    def close(self):
        self.listener.close()


def trial(dataset, steps=100000, checkpoint=None, **params):
    merged = dict(TINY, dataset=dataset, steps=steps, eval_every=10, lr=0.003)
    merged.update(params)
    return {"trial": 1, "sweep": 1, "attempt": 1, "lease": "aa11", "params": merged,
            "checkpoint": checkpoint}


def start(daemon, *args):
    return harness.LoggedProcess(
        [harness.program("sweep-worker"), "--connect", "unix:" + daemon.path, "--name", "w",
         "--checkpoint-dir", os.path.join(daemon.dir, "ckpt"), "--cache-dir",
         os.path.join(daemon.dir, "cache")] + list(args),
        os.path.join(daemon.dir, "worker.log"))


LEASE_FIELDS = {"trial": 1, "attempt": 1, "lease": "aa11"}


def test_stale_lease_after_reconnect_drops_trial():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon, "--checkpoint-every", "20")
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    checkpoint = conn.expect("checkpoint")
    assert {k: checkpoint[k] for k in LEASE_FIELDS} == LEASE_FIELDS, checkpoint
    conn.close()
    w.wait_log(r"lost the connection to sweepd .*training goes on")

    # A hello reply without a verdict on the lease (as from an older daemon):
    # the worker re-presents it with a heartbeat, which is rejected as stale.
    again, hello = daemon.accept()
    assert hello["leases"] == [LEASE_FIELDS], hello
    beat = again.recv()
    assert beat["op"] == "heartbeat", beat
    assert {k: beat[k] for k in LEASE_FIELDS} == LEASE_FIELDS, beat
    again.send({"id": beat["id"], "ok": False,
                "error": {"code": "stale_lease", "message": "requeued"}})
    w.wait_log(r"sweep=1 trial=1 attempt=1 dropped: stale_lease")
    # Nothing more about the trial: the next request is a new lease.
    request = again.recv()
    assert request["op"] == "lease", request
    assert request["wait"] is True, request
    w.proc.send_signal(signal.SIGTERM)
    again.reply(again.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    w.check_sanitizers()
    daemon.close()


def test_hello_verdict_stale_drops_trial():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon, "--checkpoint-every", "20")
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    conn.expect("checkpoint")
    conn.close()
    again, hello = daemon.accept(leases=[dict(LEASE_FIELDS, ok=False, error="stale_lease")])
    assert hello["leases"] == [LEASE_FIELDS], hello
    w.wait_log(r"dropped: stale_lease")
    assert again.expect("lease")["wait"] is True
    w.proc.send_signal(signal.SIGINT)
    again.reply(again.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    w.check_sanitizers()
    daemon.close()


def test_cancel_event_stops_trial():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    conn.reply(conn.expect("metrics"), stored=1)
    conn.send({"event": "cancel", "trial": 1, "attempt": 1})
    w.wait_log(r"trial=1 attempt=1 dropped: cancelled by the daemon")
    # Late metrics may still be in flight; after them comes a lease, never a result.
    assert conn.expect("lease")["wait"] is True
    w.proc.send_signal(signal.SIGTERM)
    conn.reply(conn.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    w.check_sanitizers()
    daemon.close()


def test_heartbeats_carry_progress():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept(heartbeat_timeout_ms=300)
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    while len([b for b in conn.heartbeats if "trial" in b]) < 3:
        message = conn.recv()
        conn.reply(message)
        if message["op"] == "heartbeat":
            conn.heartbeats.append(message)
    beats = [b for b in conn.heartbeats if "trial" in b]
    assert all({k: b[k] for k in LEASE_FIELDS} == LEASE_FIELDS for b in beats), beats
    assert all(b["step"] > 0 and isinstance(b["loss"], float) for b in beats), beats
    assert beats[-1]["step"] >= beats[0]["step"], beats
    w.proc.send_signal(signal.SIGTERM)
    preempted = conn.expect("preempted")
    assert preempted["location"].endswith(f"/1/1/step-{preempted['step']}.ckpt"), preempted
    assert os.path.exists(preempted["location"]), preempted
    conn.reply(preempted)
    conn.reply(conn.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    w.check_sanitizers()
    daemon.close()


def test_second_signal_exits_at_once():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    conn.reply(conn.expect("metrics"), stored=1)
    w.proc.send_signal(signal.SIGTERM)
    conn.expect("preempted")  # never answered
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait(30) == 128 + signal.SIGTERM, w.log_text(40)
    w.wait_log(r"second Terminated: exiting at once")
    daemon.close()


def test_invalid_params_reported_failed():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon, "--max-trials", "1")
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(dataset, d_model=15))
    failed = conn.expect("failed")
    assert failed["error"].startswith("params: "), failed
    assert "d_model" in failed["error"], failed
    conn.reply(failed)
    conn.reply(conn.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    daemon.close()


def test_corrupt_checkpoint_falls_back_to_older():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    trial_dir = os.path.join(daemon.dir, "ckpt", "1", "1")
    os.makedirs(trial_dir)
    good = os.path.join(trial_dir, "step-20.ckpt")
    args = [harness.program("sweep-train"), "--data", dataset, "--checkpoint", good, "--stop-at", "20"]
    for name, value in dict(TINY, steps=60, eval_every=10, lr=0.003).items():
        args += ["--set", f"{name}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=harness.scaled(60), check=False)
    assert out.returncode == 4, out.stderr[-2000:]
    bad = os.path.join(trial_dir, "step-40.ckpt")
    with open(bad, "wb") as f:
        f.write(b"not a checkpoint" * 100)

    w = start(daemon, "--max-trials", "1")
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"),
               trial=trial(dataset, steps=60, checkpoint={"location": bad, "step": 40}))
    w.wait_log(r"checkpoint .*step-40\.ckpt is not usable")
    w.wait_log(r"resumed from older checkpoint .*step-20\.ckpt at step 20")
    while True:
        message = conn.recv()
        if message["op"] == "complete":
            break
        conn.reply(message)
    assert message["steps"] == 60, message
    conn.reply(message)
    conn.reply(conn.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    daemon.close()


def test_dotdot_checkpoint_starts_over():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon, "--max-trials", "1")
    conn, _ = daemon.accept()
    location = os.path.join(daemon.dir, "ckpt", "..", "..", "step-10.ckpt")
    conn.reply(conn.expect("lease"),
               trial=trial(dataset, steps=30, checkpoint={"location": location, "step": 10}))
    w.wait_log(r'contains "\.\."; not reading it')
    w.wait_log(r"no usable checkpoint; starting over from step 0")
    while True:
        message = conn.recv()
        if message["op"] == "complete":
            break
        conn.reply(message)
    conn.reply(message)
    conn.reply(conn.expect("bye"))
    assert w.wait(30) == 0, w.log_text(40)
    daemon.close()


if __name__ == "__main__":
    harness.main(globals())
