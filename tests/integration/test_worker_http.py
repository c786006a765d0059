"""sweep-worker with datasets and checkpoints over HTTP from a throwaway
nginx on loopback (WebDAV PUT/GET/DELETE), against a real sweepd.

Cases: a cached download with a SHA-256 check, checkpoints PUT to a URL and a
resume from one on another worker. Then the failures a worker must report
clearly while the daemon keeps going: a 500 reply, a stalled server, a wrong
digest and a checkpoint server that rejects every PUT.
"""

import hashlib
import os
import signal
import sqlite3

import harness
from harness import Client, Daemon
from nginx import Nginx, StallServer
from test_worker_sweep import make_dataset, spec


def start(d, name, root, *args):
    return harness.start_worker(d.socket_path, "--name", name, "--cache-dir",
                                os.path.join(root, "cache-" + name), *args)


def trial_rows(d):
    db = sqlite3.connect(d.db_path())
    try:
        return db.execute("SELECT id, state, attempt, error, checkpoint FROM trials ORDER BY id").fetchall()
    finally:
        db.close()


def test_dataset_cache_and_checkpoint_urls():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    with open(dataset, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with Nginx(root) as web, Daemon() as d:
        url = web.url("/data/tiny.txt")
        ckpt_url = web.url("/dav/ck")
        Client(d.socket_path).ok("submit", spec=spec(url, 1500, dataset_sha256=digest,
                                                     lr={"values": [0.003, 0.001]}))
        first = start(d, "first", root, "--checkpoint-url", ckpt_url, "--checkpoint-every", "10")
        first.wait_log(r"dataset .* \(downloaded\)", 30)
        first.wait_log(r"attempt=1 step=30 saved http://127\.0\.0\.1:\d+/dav/ck/1/1/step-30\.ckpt", 60)
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, first.log_text(40)
        first.check_sanitizers()

        # The cache file is named by the SHA-256 of the URL.
        cached = os.path.join(root, "cache-first", "datasets", hashlib.sha256(url.encode()).hexdigest())
        with open(cached, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest

        second = start(d, "second", root, "--checkpoint-url", ckpt_url, "--checkpoint-every", "500",
                       "--max-trials", "2")
        second.wait_log(r"resumed from http://127\.0\.0\.1:\d+/dav/ck/1/1/step-\d+\.ckpt", 60)
        second.wait_log(r"trial=2 attempt=1 dataset .* \(cache hit\)", 90)
        assert second.wait(120) == 0, second.log_text(40)
        second.check_sanitizers()

        rows = trial_rows(d)
        assert [(state, attempt) for _, state, attempt, _, _ in rows] == [("completed", 2), ("completed", 1)], rows
        # The two newest checkpoints of each trial stay on the server. The
        # resumed trial also keeps the first attempt's second newest, which
        # a URL store cannot list.
        for trial_id, _, attempt, _, _ in rows:
            kept = sorted(os.listdir(os.path.join(web.dav_dir, "ck", "1", str(trial_id))),
                          key=lambda name: int(name[5:-5]))
            assert 1 <= len(kept) <= attempt + 1, (trial_id, kept)
            assert kept[-1] == "step-1500.ckpt", kept


def failed_trial(root, dataset_url, *worker_args, **params):
    """Run one trial that must fail; return (error, worker log, status reply
    that shows the daemon still serves requests)."""
    with Daemon() as d:
        sweep = dict(spec(dataset_url, 50, **params), max_failures=1)
        Client(d.socket_path).ok("submit", spec=sweep)
        w = start(d, "w", root, "--max-trials", "1", *worker_args)
        assert w.wait(60) == 0, w.log_text(40)
        w.check_sanitizers()
        (_, state, _, error, _), = trial_rows(d)
        assert state == "failed", (state, error)
        status = Client(d.socket_path).ok("status")
        return error, w.log_text(), status


def test_dataset_http_500_fails_trial():
    root = harness.tmp_dir()
    with Nginx(root) as web:
        url = web.url("/error/tiny.txt")
        error, log, status = failed_trial(root, url)
        assert "HTTP status 500" in error, error
        assert url in error, error
        assert "HTTP status 500" in log
        assert status["ok"] is True


def test_stalled_dataset_server_fails_trial():
    root = harness.tmp_dir()
    with StallServer() as stall:
        url = stall.url("/tiny.txt")
        error, log, _ = failed_trial(root, url, "--http-stall-timeout", "1")
        assert stall.accepted.is_set()
        assert url in error, error
        assert "too slow" in error or "timed out" in error.lower(), error


def test_dataset_digest_mismatch_fails_trial():
    root = harness.tmp_dir()
    make_dataset(root)
    with Nginx(root) as web:
        error, _, _ = failed_trial(root, web.url("/data/tiny.txt"), dataset_sha256="0" * 64)
        assert "SHA-256 is" in error, error
        assert "0" * 64 in error, error
        # The bad download does not stay in the cache.
        assert os.listdir(os.path.join(root, "cache-w", "datasets")) == []


def test_checkpoint_put_500_keeps_training():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    with Nginx(root) as web, Daemon() as d:
        Client(d.socket_path).ok("submit", spec=spec(dataset, 60))
        w = start(d, "w", root, "--checkpoint-url", web.url("/error/ck"), "--checkpoint-every", "20",
                  "--max-trials", "1")
        w.wait_log(r"step=20 checkpoint failed: PUT http://127\.0\.0\.1:\d+/error/ck/1/1/step-20\.ckpt "
                   r"failed: HTTP status 500; training goes on", 30)
        assert w.wait(60) == 0, w.log_text(40)
        (_, state, _, _, checkpoint), = trial_rows(d)
        assert state == "completed", state
        assert checkpoint is None, checkpoint


if __name__ == "__main__":
    harness.main(globals())
