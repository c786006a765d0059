"""sweepctl watch against a real sweepd. In a pseudo-terminal it draws the
progress bar and one row per worker, and redraws as heartbeats and trial
results arrive. --until-done ends it when the sweep finishes, and Ctrl-C
(SIGINT) ends it with the cursor shown again. Off a terminal it prints status
lines.

Trials are ended by the protocol-speaking FakeWorker of test_cli_commands.
Every wait reads the watch output until a pattern appears (or a deadline
passes); nothing sleeps.
"""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import harness
from test_cli_commands import FakeWorker, ctl_ok, grid_spec, write_spec


class WatchProcess:
    """sweepctl watch with stdout on a pseudo-terminal (tty=True) or a pipe."""

    def __init__(self, daemon, *args, tty=True, columns=120):
        argv = [harness.program("sweepctl"), "--connect", "unix:" + daemon.socket_path,
                "watch"] + [str(a) for a in args]
        self.output = b""
        if tty:
            self.fd, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                                         stderr=subprocess.PIPE)
            os.close(slave)
        else:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.fd = self.proc.stdout.fileno()

    def read_until(self, regex, timeout=20.0):
        """Read output until regex matches the text after the last full
        redraw (or anywhere, off a terminal). Returns the text searched."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + harness.scaled(timeout)
        while True:
            text = self.output.decode("utf-8", errors="replace")
            # A frame begins after the last cursor-up sequence.
            frame = re.split(r"\x1b\[\d+A", text)[-1]
            if pattern.search(frame):
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"watch output never matched {regex!r}; last frame:\n"
                                   + frame[-3000:])
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and not self._read_chunk():
                raise RuntimeError(f"watch exited ({self.proc.poll()}) before {regex!r}; "
                                   f"output:\n{frame[-3000:]}\nstderr:\n{self.stderr()}")

    def read_raw_until(self, predicate, timeout=20.0):
        """Read output until predicate(all bytes so far) is true; returns them."""
        deadline = time.monotonic() + harness.scaled(timeout)
        while not predicate(self.output):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("watch output never matched; tail:\n"
                                   + self.output[-2000:].decode(errors="replace"))
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and not self._read_chunk():
                raise RuntimeError(f"watch exited ({self.proc.poll()}); stderr:\n"
                                   + self.stderr())
        return self.output

    def _read_chunk(self):
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the pseudo-terminal's other side closed
            chunk = b""
        self.output += chunk
        return bool(chunk)

    def wait(self, timeout=20.0):
        """Wait for the exit, draining the output; returns the exit status."""
        deadline = time.monotonic() + harness.scaled(timeout)
        while self._read_chunk_ready(deadline):
            pass
        status = self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        return status

    def _read_chunk_ready(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], left)
        return bool(ready) and self._read_chunk()

    def stderr(self):
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode("utf-8", errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is None:
            os.close(self.fd)


def submit_grid(daemon, name, threshold=2.0):
    d = harness.tmp_dir()
    spec = grid_spec(name=name, threshold=threshold)
    out = ctl_ok(daemon, "submit", write_spec(d, "grid.json", spec))
    return int(out.split("submitted sweep ")[1].split()[0])


def test_watch_tty_until_done():
    with harness.Daemon() as daemon:
        sweep = submit_grid(daemon, "watched")
        worker = FakeWorker(daemon, name="wpty", host="ptyhost")
        trial = worker.lease()
        worker.heartbeat(trial, step=5, loss=3.25, tokens_per_s=2048.0)

        watch = WatchProcess(daemon, sweep, "--until-done")
        try:
            frame = watch.read_until(r"\[\.+\] 0/4 done .*running 1")
            assert "ETA" in frame, frame
            frame = watch.read_until(r"wpty\s+ptyhost\s+\d+\s+\S+\s+%d\s+5\s+3\.2500\s+2048"
                                     % trial["trial"])
            assert f'sweep {sweep} "watched"' in frame, frame

            # A heartbeat event updates the worker row.
            worker.heartbeat(trial, step=8, loss=2.125, tokens_per_s=2048.0)
            watch.read_until(r"wpty.*\s8\s+2\.1250")

            # Finishing trials moves the bar; the last one ends the watch.
            worker.complete(trial, final_loss=1.5)
            # The per-optimizer block comes from a tickets request, so it may
            # reach the screen one frame after the progress bar moves.
            frame = watch.read_until(r"\[#+\.+\] 1/4 done(?s:.*)\b(adam|sm3)\b")
            assert re.search(r"adam|sm3", frame), frame
            for loss in [2.5, 1.75, 3.0]:
                worker.complete(worker.lease(), final_loss=loss)
            status = watch.wait()
            assert status == 0, (status, watch.stderr())
            text = watch.output.decode("utf-8", errors="replace")
            final = re.split(r"\x1b\[\d+A", text)[-1]
            assert re.search(r"\[#+\] 4/4 done", final), final
            assert "finished" in final, final
            assert re.search(r"adam\s+2\s+1\.5000", final), final
            assert text.rstrip().endswith("\x1b[?25h"), repr(text[-200:])
        finally:
            watch.close()
            worker.close()


def test_watch_ctrl_c_restores_cursor():
    with harness.Daemon() as daemon:
        sweep = submit_grid(daemon, "interrupted")
        watch = WatchProcess(daemon, sweep, columns=60)
        try:
            frame = watch.read_until(r"0/4 done")
            assert "no workers connected" in frame, frame
            for line in frame.split("\n"):
                visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line).rstrip("\r")
                assert len(visible) < 60, (len(visible), visible)
            watch.proc.send_signal(signal.SIGINT)
            assert watch.wait() == 0, watch.stderr()
            text = watch.output.decode("utf-8", errors="replace")
            assert "\x1b[?25l" in text, repr(text[-200:])
            assert text.rstrip().endswith("\x1b[?25h"), repr(text[-200:])
        finally:
            watch.close()


def test_watch_status_lines_off_tty():
    with harness.Daemon() as daemon:
        sweep = submit_grid(daemon, "piped")
        worker = FakeWorker(daemon, name="wpipe", host="pipehost")
        watch = WatchProcess(daemon, sweep, "--interval", "1", "--until-done", tty=False)
        try:
            watch.read_until(rf"sweep {sweep} running: 0/4 done, running 0, failed 0, "
                             r"best loss -, workers 1")
            trial = worker.lease()
            worker.complete(trial, final_loss=1.25)
            watch.read_until(rf"sweep {sweep} running: 1/4 done.*best loss 1\.2500")
            trial = worker.lease()
            worker.failed(trial)
            # A failed report requeues up to max_failures; cancel ends the sweep.
            ctl_ok(daemon, "cancel", sweep)
            assert watch.wait() == 0, watch.stderr()
            text = watch.output.decode()
            assert "\x1b" not in text, repr(text)
            assert re.search(rf"sweep {sweep} cancelled", text), text
        finally:
            watch.close()
            worker.close()


def test_watch_newest_sweep_without_threshold():
    with harness.Daemon() as daemon:
        older = submit_grid(daemon, "older")
        ctl_ok(daemon, "cancel", older)
        sweep = submit_grid(daemon, "newest", threshold=None)
        submit_grid(daemon, "cancelled", threshold=None)
        ctl_ok(daemon, "cancel", sweep + 1)
        worker = FakeWorker(daemon, name="wnew", host="newhost")
        watch = WatchProcess(daemon, "--until-done", columns=100)
        try:
            # Without SWEEP, watch shows the newest sweep that is still running.
            watch.read_until(rf'sweep {sweep} "newest"  running')
            worker.complete(worker.lease(), final_loss=1.25)
            frame = watch.read_until(r"\[#+\.+\] 1/4 done")
            frame = watch.read_until(r"no ticket_threshold in the spec")
            assert re.search(r"adam\s+1\s+1\.2500\s+-\s+-", frame), frame

            # A narrower terminal: SIGWINCH clears the screen and the next
            # frame fits the new width.
            fcntl.ioctl(watch.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 50, 0, 0))
            mark = len(watch.output)
            watch.proc.send_signal(signal.SIGWINCH)
            after = watch.read_raw_until(lambda raw: b"\x1b[2J" in raw[mark:] and
                                         b"Ctrl-C" in raw[mark:].split(b"\x1b[2J")[-1])
            frame = after[mark:].split(b"\x1b[2J")[-1].decode()
            for line in frame.split("\n"):
                visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line).rstrip("\r")
                assert len(visible) < 50, (len(visible), visible)

            ctl_ok(daemon, "cancel", sweep)
            assert watch.wait() == 0, watch.stderr()
        finally:
            watch.close()
            worker.close()


if __name__ == "__main__":
    harness.main(dict(globals()))
