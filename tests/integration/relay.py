"""A unix-socket relay between sweep-worker and sweepd for fault tests. It
passes the worker's request lines to the daemon and the daemon's lines back,
one JSON line at a time, and lets a test delay replies, swallow requests, and
drop replies or cut the connection at a chosen message. Each worker
connection gets its own connection to the daemon's socket path, so the
relay keeps working across daemon restarts."""

import json
import queue
import socket
import threading
import time

DELIVER, DROP, CUT = "deliver", "drop", "cut"


def _parse(line):
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _lines(sock):
    """Yields the newline-terminated lines read from sock until it closes."""
    buffered = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        buffered += data
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            yield line + b"\n"


class Relay:
    """delay: seconds each daemon line is held back, in order (a daemon whose
    acknowledgements are slow, as on a slow disk). request_filter(message)
    returns False to swallow a worker request. reply_filter(message) returns
    DELIVER, DROP, or CUT (drop it and close that worker's connection)."""

    def __init__(self, target, path, delay=0.0, request_filter=None, reply_filter=None):
        self.target, self.path, self.delay = target, path, delay
        self.request_filter = request_filter or (lambda message: True)
        self.reply_filter = reply_filter or (lambda message: DELIVER)
        self.lock = threading.Lock()
        self.open = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                daemon.connect(self.target)
            except OSError:
                client.close()  # no daemon now: the worker retries with backoff
                daemon.close()
                continue
            with self.lock:
                self.open.append((client, daemon))
            delayed = queue.Queue()
            threading.Thread(target=self._upstream, args=(client, daemon), daemon=True).start()
            threading.Thread(target=self._downstream, args=(daemon, delayed), daemon=True).start()
            threading.Thread(target=self._release, args=(delayed, client, daemon), daemon=True).start()

    def _close(self, client, daemon):
        for sock in (client, daemon):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _upstream(self, client, daemon):
        for line in _lines(client):
            if not self.request_filter(_parse(line)):
                continue
            try:
                daemon.sendall(line)
            except OSError:
                break
        self._close(client, daemon)

    def _downstream(self, daemon, delayed):
        for line in _lines(daemon):
            delayed.put((time.monotonic() + self.delay, line))
        delayed.put((time.monotonic() + self.delay, None))

    def _release(self, delayed, client, daemon):
        while True:
            due, line = delayed.get()
            time.sleep(max(0.0, due - time.monotonic()))  # the simulated latency, not a wait for an event
            if line is None:
                break
            action = self.reply_filter(_parse(line))
            if action == CUT:
                break
            if action == DROP:
                continue
            try:
                client.sendall(line)
            except OSError:
                break
        self._close(client, daemon)

    def cut(self):
        """Closes every open worker connection."""
        with self.lock:
            pairs, self.open = self.open, []
        for client, daemon in pairs:
            self._close(client, daemon)

    def close(self):
        self.cut()
        self.listener.close()
