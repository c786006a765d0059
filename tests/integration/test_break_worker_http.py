"""HTTP dataset edge cases against a real sweep-worker, a scripted daemon and
a loopback HTTP server run by this script: a redirect loop, a body above
--max-dataset-size (with and without Content-Length), a body shorter than
its Content-Length, a gzip Content-Encoding, a 404, a dataset that is not a
regular file, and a file that changes on the server between trials (the
cache keeps the first copy until dataset_sha256 asks for another).
Each failure must reach the daemon as `failed` with a message that names the
URL and the cause, and must leave no file in the cache.
"""

import gzip
import hashlib
import http.server
import os
import threading

import harness
from test_worker_protocol import ScriptedDaemon, trial
from test_worker_sweep import make_dataset

LIMIT_BYTES = 256 * 1024


class DatasetServer:
    """Serves the cases by path; counts GET requests per path in gets."""

    def __init__(self, text):
        self.text = text
        self.changing = text
        self.gets = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, **headers):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                if "Content_Length" not in headers and "Transfer_Encoding" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with outer.lock:
                    outer.gets[self.path] = outer.gets.get(self.path, 0) + 1
                if self.path == "/loop":
                    self.reply(302, b"", Location="/loop")
                elif self.path == "/big-length":
                    self.reply(200, b"", Content_Length=str(4 * LIMIT_BYTES))
                    self.close_connection = True
                elif self.path == "/big-chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"y" * 65536
                    try:
                        for _ in range(8):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.write(b"0\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                elif self.path == "/short":
                    self.reply(200, outer.text[:1000], Content_Length=str(len(outer.text)))
                    self.close_connection = True
                elif self.path == "/gzip":
                    self.reply(200, gzip.compress(outer.text), Content_Encoding="gzip")
                elif self.path == "/changing":
                    self.reply(200, outer.changing)
                else:
                    self.reply(404, b"not found\n")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def get_count(self, path):
        with self.lock:
            return self.gets.get(path, 0)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Setup:
    """One daemon, one server and one worker that runs trial after trial."""

    def __init__(self):
        self.daemon = ScriptedDaemon()
        dataset = make_dataset(self.daemon.dir)
        with open(dataset, "rb") as f:
            self.text = f.read()
        self.web = DatasetServer(self.text)
        self.cache = os.path.join(self.daemon.dir, "cache")
        self.worker = harness.LoggedProcess(
            [harness.program("sweep-worker"), "--connect", "unix:" + self.daemon.path, "--name", "w",
             "--checkpoint-dir", os.path.join(self.daemon.dir, "ckpt"), "--cache-dir", self.cache,
             "--max-dataset-size", str(LIMIT_BYTES)],
            os.path.join(self.daemon.dir, "worker.log"))
        self.conn, _ = self.daemon.accept()
        self.next_id = 1

    def run(self, dataset, **params):
        """Lease one short trial on dataset; return the worker's final report."""
        lease = trial(dataset, steps=2, eval_every=1, **params)
        lease.update(trial=self.next_id, lease="l%d" % self.next_id)
        self.next_id += 1
        self.conn.reply(self.conn.expect("lease"), trial=lease)
        while True:
            message = self.conn.recv()
            assert message is not None, self.worker.log_text(40)
            self.conn.reply(message)
            if message["op"] in ("complete", "failed", "diverged", "preempted"):
                return message

    def cache_files(self):
        directory = os.path.join(self.cache, "datasets")
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []

    def close(self):
        self.worker.proc.send_signal(harness.signal.SIGTERM)
        while True:
            message = self.conn.recv()
            assert message is not None, self.worker.log_text(40)
            if message["op"] == "bye":
                self.conn.reply(message)
                break
            if message["op"] != "lease":  # a daemon holds a lease until a trial is ready
                self.conn.reply(message)
        status = self.worker.wait(60)
        self.web.close()
        self.daemon.close()
        assert status == 0, self.worker.log_text(40)
        self.worker.check_sanitizers()


def cache_key(url):
    return hashlib.sha256(url.encode()).hexdigest()


def expect_failure(setup, path, *phrases):
    url = setup.web.url(path)
    before = setup.cache_files()
    report = setup.run(url)
    assert report["op"] == "failed", report
    assert url in report["error"], report
    for phrase in phrases:
        assert phrase in report["error"], (phrase, report)
    assert setup.cache_files() == before, (before, setup.cache_files())


def test_http_dataset_failures():
    setup = Setup()
    try:
        expect_failure(setup, "/loop", "more than 5 redirects")
        expect_failure(setup, "/big-length", "larger than the limit of %d bytes" % LIMIT_BYTES)
        expect_failure(setup, "/big-chunked", "larger than the limit of %d bytes" % LIMIT_BYTES)
        expect_failure(setup, "/short", "ended before its Content-Length")
        expect_failure(setup, "/missing.txt", "HTTP status 404")
        assert setup.web.get_count("/loop") == 6, setup.web.gets
    finally:
        setup.close()


def test_gzip_body_is_decoded():
    setup = Setup()
    try:
        url = setup.web.url("/gzip")
        digest = hashlib.sha256(setup.text).hexdigest()
        report = setup.run(url, dataset_sha256=digest)
        assert report["op"] == "complete", report
        with open(os.path.join(setup.cache, "datasets", cache_key(url)), "rb") as f:
            assert f.read() == setup.text
    finally:
        setup.close()


def test_not_regular_file_rejected():
    setup = Setup()
    try:
        report = setup.run(setup.daemon.dir, dataset_sha256="0" * 64)
        assert report["op"] == "failed", report
        assert "not a regular file" in report["error"], report
        fifo = os.path.join(setup.daemon.dir, "fifo")
        os.mkfifo(fifo)
        report = setup.run(fifo, dataset_sha256="0" * 64)
        assert report["op"] == "failed", report
        assert "not a regular file" in report["error"], report
    finally:
        setup.close()


def test_changed_remote_file_and_cache():
    setup = Setup()
    try:
        url = setup.web.url("/changing")
        first = setup.run(url)
        assert first["op"] == "complete", first
        assert setup.web.get_count("/changing") == 1
        assert setup.cache_files() == [cache_key(url)], setup.cache_files()

        # The server's copy changes. Without dataset_sha256 the cache wins and
        # the server is not asked.
        setup.web.changing = setup.text[::-1]
        second = setup.run(url)
        assert second["op"] == "complete", second
        assert setup.web.get_count("/changing") == 1, setup.web.gets
        setup.worker.wait_log(r"trial=2 attempt=1 dataset .* \(cache hit\)")

        # A dataset_sha256 of the new content does not match the cached copy,
        # so the worker fetches the URL again.
        new_digest = hashlib.sha256(setup.web.changing).hexdigest()
        third = setup.run(url, dataset_sha256=new_digest)
        assert third["op"] == "complete", third
        assert setup.web.get_count("/changing") == 2, setup.web.gets
        setup.worker.wait_log(r"trial=3 attempt=1 dataset .* \(downloaded again")
        with open(os.path.join(setup.cache, "datasets", cache_key(url)), "rb") as f:
            assert f.read() == setup.web.changing

        # A digest that matches neither copy: fetched again, rejected with
        # both digests named, and the cache entry removed.
        wrong = "ab" * 32
        fourth = setup.run(url, dataset_sha256=wrong)
        assert fourth["op"] == "failed", fourth
        assert new_digest in fourth["error"], fourth
        assert wrong in fourth["error"], fourth
        assert setup.web.get_count("/changing") == 3, setup.web.gets
        assert setup.cache_files() == [], setup.cache_files()
    finally:
        setup.close()


if __name__ == "__main__":
    harness.main(globals())
