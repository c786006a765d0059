"""Shared helpers for the integration tests: start real sweepd and sweep-worker
processes, talk the newline-delimited JSON protocol to them, wait on their log
lines, and run a script's test_* functions with one PASS/FAIL line each.

Standard library only. Programs come from build_dir() (env SWEEPD_BUILD,
default <repo>/build). Nothing here sleeps to synchronise: waits block on a log
line (a reader thread signals a condition variable) or on a socket read.
"""

import itertools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.environ.get("SWEEPD_TOP") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Sanitizer builds run several times slower, so every default timeout is scaled.
SAN = os.environ.get("SWEEPD_SAN") == "1"
TIMEOUT_SCALE = 4.0 if SAN else 1.0


def build_dir():
    """Return the build directory holding sweepd, sweep-worker and sweepctl."""
    return os.path.abspath(os.environ.get("SWEEPD_BUILD") or os.path.join(REPO, "build"))


def program(name):
    """Return the path of a built program, raising when it is missing."""
    path = os.path.join(build_dir(), name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing; build it with make -j2 BUILD={build_dir()}")
    return path


def scaled(seconds):
    """Return a timeout in seconds scaled for sanitizer builds."""
    return seconds * TIMEOUT_SCALE


_tmp_dirs = []


def tmp_dir(prefix="sweepd-test-"):
    """Create a fresh directory under /tmp, removed when the script ends unless
    SWEEPD_KEEP_TMP=1. Kept short because a unix socket path is at most 107 bytes."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    _tmp_dirs.append(path)
    return path


def _remove_tmp_dirs():
    if os.environ.get("SWEEPD_KEEP_TMP") == "1":
        return
    for path in _tmp_dirs:
        shutil.rmtree(path, ignore_errors=True)


class LoggedProcess:
    """A child process whose stderr is copied to a log file and kept as lines
    in memory, so tests can wait for a line instead of sleeping."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = list(argv)
        self.log_path = log_path
        self.lines = []
        self._cond = threading.Condition()
        self._eof = False
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self._log_file = open(log_path, "w", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=full_env, cwd=cwd)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self._log_file.write(line + "\n")
            self._log_file.flush()
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        self._log_file.close()

    @property
    def pid(self):
        return self.proc.pid

    def log_mark(self):
        """Return the number of lines seen so far, for wait_log(since=...)."""
        with self._cond:
            return len(self.lines)

    def log_text(self, last=None):
        with self._cond:
            lines = self.lines if last is None else self.lines[-last:]
            return "\n".join(lines)

    def wait_log(self, regex, timeout=10.0, since=0):
        """Wait until a stderr line at index >= since matches regex (re.search).
        Returns the match object; raises TimeoutError showing the log tail, or
        RuntimeError when the process closed stderr first."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + scaled(timeout)
        index = since
        with self._cond:
            while True:
                while index < len(self.lines):
                    match = pattern.search(self.lines[index])
                    index += 1
                    if match:
                        return match
                if self._eof:
                    raise RuntimeError(f"{self.argv[0]} closed stderr (exit {self.proc.poll()}) "
                                       f"before a line matched {regex!r}; log:\n"
                                       + "\n".join(self.lines[-40:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matched {regex!r} within {scaled(timeout)} s; "
                                       f"log {self.log_path}:\n" + "\n".join(self.lines[-40:]))
                self._cond.wait(left)

    def kill(self, sig=signal.SIGKILL, timeout=10.0):
        """Send sig and wait for the exit; returns the exit status (negative
        for a signal, as subprocess reports it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout=10.0):
        """Wait for the exit and for stderr to reach EOF; returns the status."""
        try:
            status = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.argv[0]} pid {self.proc.pid} did not exit within "
                               f"{scaled(timeout)} s; log:\n" + self.log_text(40)) from None
        self._reader.join(scaled(timeout))
        return status

    def check_sanitizers(self):
        """Raise when the log contains an ASan/UBSan/LSan report."""
        text = self.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in text:
                raise AssertionError(f"sanitizer report in {self.log_path}:\n" + text[-4000:])

    def stop(self, timeout=20.0):
        """SIGTERM, wait, and assert a clean exit 0 with no sanitizer report."""
        status = self.kill(signal.SIGTERM, timeout)
        self.check_sanitizers()
        if status != 0:
            raise AssertionError(f"{self.argv[0]} exited with {status} after SIGTERM; log:\n"
                                 + self.log_text(40))
        return status

    def ensure_dead(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


class Daemon(LoggedProcess):
    """A sweepd started with --state-dir D --foreground plus args. The
    constructor returns once the daemon logged its "listening on" line.

        with Daemon(args=["--heartbeat-timeout", "1"]) as d:
            c = Client(d.socket_path)

    Leaving the with block stops it with SIGTERM and asserts exit 0 (unless
    the test already stopped or killed it)."""

    def __init__(self, state_dir=None, args=(), env=None, ready_timeout=20.0):
        self.state_dir = state_dir or tmp_dir()
        os.makedirs(self.state_dir, exist_ok=True)
        args = list(args)
        self.socket_path = os.path.join(self.state_dir, "sweepd.sock")
        if "--socket" in args:
            self.socket_path = args[args.index("--socket") + 1]
        log_path = os.path.join(self.state_dir, f"sweepd-{os.getpid()}-{time.monotonic_ns()}.log")
        argv = [program("sweepd"), "--state-dir", self.state_dir, "--foreground"] + args
        super().__init__(argv, log_path, env=env)
        self.tcp_address = None
        try:
            match = self.wait_log(r"listening on (.*)$", ready_timeout)
        except Exception:
            self.ensure_dead()
            raise
        # The ready line reads "listening on unix:PATH [tcp:HOST:PORT]".
        for word in match.group(1).split():
            if word.startswith("tcp:"):
                host, _, port = word[4:].rpartition(":")
                self.tcp_address = (host.strip("[]"), int(port))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.proc.poll() is None:
            if exc_type is None:
                self.stop()
            else:
                self.ensure_dead()
        else:
            self.ensure_dead()
        return False

    def db_path(self):
        return os.path.join(self.state_dir, "sweepd.db")


class ProtocolError(Exception):
    pass


class Client:
    """A protocol connection to sweepd over a unix socket path or a
    (host, port) TCP address. request() assigns ids and returns the reply;
    pushed events met on the way are queued for next_event()."""

    def __init__(self, address, timeout=10.0):
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=scaled(timeout))
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(scaled(timeout))
            self.sock.connect(address)
        self.timeout = scaled(timeout)
        self._buf = b""
        self._ids = itertools.count(1)
        self.events = queue.Queue()
        self._replies = {}
        self.closed = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send_raw(self, data):
        """Send bytes as they are (no framing added)."""
        self.sock.sendall(data)

    def send(self, op, **fields):
        """Send a request without waiting; returns its id."""
        request_id = next(self._ids)
        message = {"id": request_id, "op": op}
        message.update(fields)
        self.send_raw(json.dumps(message).encode() + b"\n")
        return request_id

    def recv_line(self, timeout=None):
        """Return the next raw line (bytes, no newline), or None at EOF."""
        self.sock.settimeout(self.timeout if timeout is None else scaled(timeout))
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def recv(self, timeout=None):
        """Return the next message (dict) from the socket, or None at EOF."""
        line = self.recv_line(timeout)
        if line is None:
            return None
        return json.loads(line)

    def reply(self, request_id, timeout=None):
        """Wait for the reply to request_id, queueing events and keeping
        replies to other ids for their own reply() call."""
        if request_id in self._replies:
            return self._replies.pop(request_id)
        while True:
            message = self.recv(timeout)
            if message is None:
                raise ProtocolError(f"connection closed while waiting for reply {request_id}")
            if "event" in message and "id" not in message:
                self.events.put(message)
            elif message.get("id") == request_id:
                return message
            else:
                self._replies[message.get("id")] = message

    def request(self, op, timeout=None, **fields):
        """Send a request and return its reply dict (ok or not)."""
        return self.reply(self.send(op, **fields), timeout)

    def ok(self, op, **fields):
        """Send a request and return its reply, raising unless "ok" is true."""
        reply = self.request(op, **fields)
        if reply.get("ok") is not True:
            raise ProtocolError(f"{op} {fields} failed: {reply}")
        return reply

    def next_event(self, timeout=10.0):
        """Return the next pushed event; raises TimeoutError when none arrives."""
        try:
            return self.events.get_nowait()
        except queue.Empty:
            pass
        deadline = time.monotonic() + scaled(timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event within {scaled(timeout)} s")
            try:
                message = self.recv(left / TIMEOUT_SCALE)
            except socket.timeout:
                raise TimeoutError(f"no event within {scaled(timeout)} s") from None
            if message is None:
                raise ProtocolError("connection closed while waiting for an event")
            if "event" in message and "id" not in message:
                return message
            self._replies[message.get("id")] = message

    def wait_event(self, timeout=10.0, **match):
        """Return the first event whose fields equal every key=value in match,
        dropping the events before it."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            left = (deadline - time.monotonic()) / TIMEOUT_SCALE
            event = self.next_event(max(left, 0.001))
            if all(event.get(k) == v for k, v in match.items()):
                return event

    def wait_closed(self, timeout=10.0):
        """Read until the daemon closes the connection; returns the messages
        received before EOF."""
        messages = []
        while True:
            message = self.recv(timeout)
            if message is None:
                return messages
            messages.append(message)


def start_worker(socket_path, *args, log_path=None, env=None):
    """Start build/sweep-worker --connect unix:SOCKET args...; returns a
    LoggedProcess (wait_log, stop, kill)."""
    if log_path is None:
        log_path = os.path.join(tmp_dir("sweep-worker-"), "worker.log")
    argv = [program("sweep-worker"), "--connect", "unix:" + socket_path] + list(args)
    return LoggedProcess(argv, log_path, env=env)


def main(namespace):
    """Run every test_* function of namespace in definition order (optionally
    only those whose name contains argv[1]), print PASS/FAIL for each, and
    exit 1 when any failed."""
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    tests = [(name, fn) for name, fn in namespace.items()
             if name.startswith("test_") and callable(fn) and only in name]
    failed = []
    for name, fn in tests:
        start = time.monotonic()
        try:
            fn()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"FAIL {name} ({time.monotonic() - start:.2f} s)", flush=True)
        else:
            print(f"PASS {name} ({time.monotonic() - start:.2f} s)", flush=True)
    _remove_tmp_dirs()
    print(f"{len(tests) - len(failed)} passed, {len(failed)} failed", flush=True)
    sys.exit(1 if failed or not tests else 0)
