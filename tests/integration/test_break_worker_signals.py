"""Signals at awkward times against a real sweep-worker and a scripted daemon:
a SIGTERM already pending when the process starts, SIGTERM during a dataset
download, during a checkpoint upload and before the first lease, two
signals back to back, and SIGSTOP/SIGCONT while training (heartbeats resume;
a lease lost meanwhile drops the trial). Every wait is on a protocol
message, a log line, an HTTP request reaching the test's server or the
process exit.
"""

import http.server
import os
import signal
import sys
import threading

import harness
from test_worker_protocol import ScriptedDaemon, start, trial
from test_worker_sweep import make_dataset


class SlowServer:
    """A loopback HTTP server run by the test. GET /big answers 200 with a
    Content-Length of 64 MiB, sends 1 KiB and then holds the connection until
    close(). PUT stores the body under its path; the first PUT is held until
    release_put is set. got_get and got_put are set when those requests
    arrive, so the test can signal the worker in the middle of them."""

    def __init__(self):
        self.got_get = threading.Event()
        self.got_put = threading.Event()
        self.release_put = threading.Event()
        self.closing = threading.Event()
        self.bodies = {}
        self.puts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path in outer.bodies:
                    body = outer.bodies[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(64 << 20))
                self.end_headers()
                self.wfile.write(b"x" * 1024)
                self.wfile.flush()
                outer.got_get.set()
                outer.closing.wait(harness.scaled(60))
                self.close_connection = True

            def do_PUT(self):
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                first = not outer.puts
                outer.puts.append(self.path)
                outer.bodies[self.path] = body
                if first:
                    outer.got_put.set()
                    outer.release_put.wait(harness.scaled(60))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_DELETE(self):
                outer.bodies.pop(self.path, None)
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.closing.set()
        self.release_put.set()
        self.server.shutdown()
        self.server.server_close()


def leave(conn, w, expect_status=0):
    """Answer until bye, then check the exit status and the sanitizer log."""
    conn.reply(conn.expect("bye"))
    assert w.wait(60) == expect_status, w.log_text(40)
    w.check_sanitizers()


def test_pending_sigterm_at_start():
    # The parent blocks SIGTERM and sends it before exec: the worker starts
    # with the signal pending, before any handler of its own exists.
    daemon = ScriptedDaemon()
    argv = [harness.program("sweep-worker"), "--connect", "unix:" + daemon.path, "--name", "w",
            "--cache-dir", os.path.join(daemon.dir, "cache")]
    launcher = ("import os, signal, sys\n"
                "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
                "os.kill(os.getpid(), signal.SIGTERM)\n"
                "os.execv(sys.argv[1], sys.argv[1:])\n")
    w = harness.LoggedProcess([sys.executable, "-c", launcher] + argv,
                              os.path.join(daemon.dir, "worker.log"))
    assert w.wait(60) == 0, w.log_text(40)
    w.wait_log(r"Terminated: stopping at the next step boundary")
    w.check_sanitizers()
    daemon.close()


def test_sigterm_before_first_lease():
    daemon = ScriptedDaemon()
    w = start(daemon)
    conn, _ = daemon.accept()
    lease = conn.expect("lease")
    assert lease["wait"] is True, lease
    w.proc.send_signal(signal.SIGTERM)
    leave(conn, w)
    daemon.close()


def start_slow_download(daemon, web):
    """Start a worker, lease it a trial whose dataset is web's held GET and
    return (worker, conn) once the download is in flight."""
    w = start(daemon)
    conn, _ = daemon.accept()
    conn.reply(conn.expect("lease"), trial=trial(web.url("/big")))
    assert web.got_get.wait(harness.scaled(30)), w.log_text(40)
    return w, conn


def test_sigterm_during_download():
    daemon = ScriptedDaemon()
    web = SlowServer()
    try:
        w, conn = start_slow_download(daemon, web)
        w.proc.send_signal(signal.SIGTERM)

        # Stopped before any training: preempted with no checkpoint.
        preempted = conn.expect("preempted")
        assert "location" not in preempted, preempted
        conn.reply(preempted)
        leave(conn, w)
        cache = os.path.join(daemon.dir, "cache", "datasets")
        assert os.listdir(cache) == [], os.listdir(cache)
    finally:
        web.close()
        daemon.close()


def test_sigterm_during_checkpoint_upload():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    web = SlowServer()
    try:
        w = harness.LoggedProcess(
            [harness.program("sweep-worker"), "--connect", "unix:" + daemon.path, "--name", "w",
             "--checkpoint-url", web.url("/ck"), "--checkpoint-every", "5", "--cache-dir",
             os.path.join(daemon.dir, "cache")], os.path.join(daemon.dir, "worker.log"))
        conn, _ = daemon.accept()
        conn.reply(conn.expect("lease"), trial=trial(dataset))
        assert web.got_put.wait(harness.scaled(60)), w.log_text(40)
        w.proc.send_signal(signal.SIGTERM)
        w.wait_log(r"Terminated: stopping at the next step boundary")
        web.release_put.set()

        # The held upload completes and the trainer stops at the next step
        # boundary. The state there is the one just stored, so preempted
        # names that checkpoint and nothing is uploaded twice.
        preempted = conn.expect("preempted")
        assert web.puts == ["/ck/1/1/step-5.ckpt"], web.puts
        assert preempted["location"] == web.url(web.puts[0]), (preempted, web.puts)
        assert preempted["step"] == 5, preempted
        conn.reply(preempted)
        leave(conn, w)
    finally:
        web.close()
        daemon.close()


def test_two_signals_during_download():
    daemon = ScriptedDaemon()
    web = SlowServer()
    try:
        w, _ = start_slow_download(daemon, web)
        # Two signals sent before the first is delivered merge into one
        # (standard signals are not queued), so the second goes out once the
        # worker logged the first.
        w.proc.send_signal(signal.SIGINT)
        w.wait_log(r"Interrupt: stopping at the next step boundary")
        w.proc.send_signal(signal.SIGINT)
        assert w.wait(60) == 128 + signal.SIGINT, w.log_text(40)
        w.wait_log(r"second Interrupt: exiting at once")
    finally:
        web.close()
        daemon.close()


def progress_beat(conn):
    """Return the next heartbeat that carries a step, answering the rest."""
    while True:
        message = conn.recv()
        assert message is not None, "connection closed while waiting for a heartbeat"
        if message["op"] == "heartbeat" and "step" in message:
            return message
        conn.reply(message)


def stop_and_wait(w):
    """Send SIGSTOP and return once the kernel reports the worker stopped."""
    w.proc.send_signal(signal.SIGSTOP)
    pid, status = os.waitpid(w.pid, os.WUNTRACED)
    assert pid == w.pid, (pid, w.pid)
    assert os.WIFSTOPPED(status), status


def test_sigstop_sigcont_heartbeats_resume():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept(heartbeat_timeout_ms=300)
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    before = progress_beat(conn)
    conn.reply(before)
    stop_and_wait(w)
    w.proc.send_signal(signal.SIGCONT)
    after = progress_beat(conn)
    assert after["lease"] == before["lease"], (before, after)
    assert after["step"] >= before["step"], (before, after)
    conn.reply(after)
    w.proc.send_signal(signal.SIGTERM)
    conn.reply(conn.expect("preempted"))
    leave(conn, w)
    daemon.close()


def test_sigstop_lost_lease_drops_trial():
    daemon = ScriptedDaemon()
    dataset = make_dataset(daemon.dir)
    w = start(daemon)
    conn, _ = daemon.accept(heartbeat_timeout_ms=300)
    conn.reply(conn.expect("lease"), trial=trial(dataset))
    conn.reply(progress_beat(conn))
    stop_and_wait(w)

    # While the worker is stopped, the lease expires: the daemon requeued the
    # trial, so the first heartbeat after SIGCONT is rejected as stale.
    w.proc.send_signal(signal.SIGCONT)
    beat = progress_beat(conn)
    conn.send({"id": beat["id"], "ok": False,
               "error": {"code": "stale_lease", "message": "lease expired; trial requeued"}})
    w.wait_log(r"sweep=1 trial=1 attempt=1 dropped: stale_lease")

    # No final report for the dropped trial: the next request about trials is
    # a new lease. Metrics sent before the stale reply arrived may come first.
    while True:
        message = conn.recv()
        assert message is not None, w.log_text(40)
        assert message["op"] not in ("preempted", "complete", "failed", "diverged"), message
        if message["op"] == "lease":
            break
        conn.reply(message)
    w.proc.send_signal(signal.SIGTERM)
    leave(conn, w)
    daemon.close()


if __name__ == "__main__":
    harness.main(globals())
