"""sweepd --workers N with the real sweep-worker binary. Children start,
join over the unix socket and get their log lines prefixed. A crashed child is
restarted with backoff, and the daemon stops every child before it exits 0.
"""

import os
import re
import signal

import harness
from harness import Client, Daemon


def test_local_workers_join_and_restart():
    with Daemon(args=["--workers", "2"]) as d:
        for k in (1, 2):
            d.wait_log(rf"worker: worker=local-{k} conn=\d+ .* joined", timeout=30)
        names = sorted(w["worker"] for w in Client(d.socket_path).ok("workers")["workers"])
        assert names == ["local-1", "local-2"]
        assert any(line.startswith("local-1 | ") for line in d.lines), "child lines carry the prefix"

        pid = int(d.wait_log(r"worker=local-1 started pid=(\d+)").group(1))
        mark = d.log_mark()
        os.kill(pid, signal.SIGKILL)
        d.wait_log(r"worker=local-1 died \(exit 0, signal 9\) after [0-9.]+ s; restarting in 1\.0 s", since=mark)
        restarted = d.wait_log(r"worker=local-1 started pid=(\d+)", since=mark, timeout=30)
        assert int(restarted.group(1)) != pid
        d.wait_log(r"worker: worker=local-1 conn=\d+ .* joined", since=mark, timeout=30)
    stopped = [line for line in d.lines if re.search(r"local: worker=local-\d stopped", line)]
    assert len(stopped) == 2, stopped


if __name__ == "__main__":
    harness.main(globals())
