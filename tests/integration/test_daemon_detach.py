"""sweepd without --foreground: the starting process exits 0 only once the
detached daemon listens, the daemon logs to STATE_DIR/sweepd.log and holds
the state lock, and a start that fails exits 1 with the daemon's reason.
Also --workers N: each local sweep-worker gets --checkpoint-dir
STATE_DIR/checkpoints, and the worker hello reply names the same directory.
Waits use a pidfd or a log line, never a sleep.
"""

import os
import re
import select
import signal
import subprocess

import harness
from harness import Client, Daemon


def wait_exit(pid, timeout):
    """Block until process pid (not our child) exits, using a pidfd."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], harness.scaled(timeout))
        assert ready, f"pid {pid} still running after {timeout} s"
    finally:
        os.close(fd)


def start_detached(state_dir, *args):
    argv = [harness.program("sweepd"), "--state-dir", state_dir] + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=harness.scaled(30))


def test_detached_start_and_stop():
    state = harness.tmp_dir()
    proc = start_detached(state)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"running in the background as pid (\d+); log in (\S+)", proc.stdout)
    assert match, proc.stdout
    pid = int(match.group(1))
    try:
        assert match.group(2) == os.path.join(state, "sweepd.log")
        with open(os.path.join(state, "sweepd.lock")) as f:
            assert int(f.read()) == pid
        # Ready means listening: the first request needs no retry.
        with Client(os.path.join(state, "sweepd.sock")) as client:
            assert client.ok("list")["sweeps"] == []
        assert os.getsid(pid) != os.getsid(0), "the daemon runs in its own session"
        assert os.getsid(pid) != pid, "the daemon is not a session leader"

        second = start_detached(state)
        assert second.returncode == 1, second
        assert f"another sweepd (pid {pid}) holds {state}" in second.stderr, second.stderr
        assert "the daemon did not start" in second.stderr, second.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_exit(pid, 30)
    with open(os.path.join(state, "sweepd.log")) as f:
        log = f.read()
    assert "listening on unix:" in log
    assert "stopped (exit 0)" in log


def test_detached_start_failure_reported():
    state = harness.tmp_dir()
    bad_socket = os.path.join(state, "missing-dir", "sweepd.sock")
    proc = start_detached(state, "--socket", bad_socket)
    assert proc.returncode == 1, proc
    assert f"listening on unix:{bad_socket} failed" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_local_workers_get_checkpoint_dir():
    with Daemon(args=["--workers", "1"]) as d:
        expected = os.path.realpath(os.path.join(d.state_dir, "checkpoints"))
        assert os.path.isdir(expected)
        pid = int(d.wait_log(r"worker=local-1 started pid=(\d+)", timeout=30).group(1))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode().split("\0")
        assert "--checkpoint-dir" in argv, argv
        assert argv[argv.index("--checkpoint-dir") + 1] == expected, argv

        with Client(d.socket_path) as worker:
            reply = worker.ok("hello", version=1, role="worker", name="py")
            assert reply["checkpoint_dir"] == expected, reply
        with Client(d.socket_path) as client:
            assert "checkpoint_dir" not in client.ok("hello", version=1)


if __name__ == "__main__":
    harness.main(globals())
