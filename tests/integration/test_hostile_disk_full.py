"""A full disk under a running sweepd: the database lives on a 2 MiB tmpfs
that the test mounts (it needs root), and a filler file takes the free space.
The state directory's sweepd.db is a symbolic link into the tmpfs, which
SQLite follows, so its WAL and shared-memory files sit there too, while the
daemon's log stays on a disk with room.
Writes must fail with disk_full and store nothing, reads must keep working,
and once the filler is deleted the same writes must succeed. The test prints
SKIP and passes when mounting is not permitted.
"""

import errno
import os
import subprocess

import harness
from harness import Client, Daemon
from test_hostile_inputs import db_snapshot, lease_fields

SPEC = {"name": "disk", "method": "grid",
        "parameters": {"optimizer": {"values": ["adam", "sm3"]}, "lr": {"values": [0.01, 0.001]}}}


def mount_tmpfs(path, size):
    """Mount a tmpfs of size at path; returns an error text, or None on success."""
    if os.geteuid() != 0:
        return "not running as root"
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return f"mount failed: {result.stderr.strip()}"
    return None


def fill(path):
    """Write zeros to path until the file system is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        # Take the last partial block too.
        for size in (4096, 512, 1):
            while True:
                try:
                    written += f.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def test_disk_full_then_recovers():
    state = harness.tmp_dir()
    disk = os.path.join(state, "disk")
    os.mkdir(disk)
    error = mount_tmpfs(disk, "2m")
    if error:
        print(f"SKIP test_disk_full_then_recovers: {error}; it needs root to mount a tmpfs", flush=True)
        return
    try:
        os.symlink(os.path.join(disk, "sweepd.db"), os.path.join(state, "sweepd.db"))
        with Daemon(state_dir=state) as d:
            assert os.path.exists(os.path.join(disk, "sweepd.db-wal")), "the WAL is on the tmpfs"
            c = Client(d.socket_path)
            sweep = c.ok("submit", spec=SPEC)["sweep"]
            w = Client(d.socket_path)
            w.ok("hello", version=1, role="worker", name="w1")
            running = lease_fields(w.ok("lease")["trial"])
            w.ok("metrics", points=[{"step": 1, "train_loss": 3.0, "val_loss": 3.0}], **running)

            filler = os.path.join(disk, "filler")
            filled = fill(filler)
            print(f"filler took {filled} bytes of the 2 MiB tmpfs", flush=True)
            before = db_snapshot(d)

            # Writes larger than any free space inside the WAL and database files.
            big_spec = dict(SPEC, description="x" * 600000)
            points = [{"step": step, "train_loss": 2.0, "val_loss": 2.0} for step in range(2, 12002)]
            full_submit = c.request("submit", spec=big_spec)
            assert full_submit["ok"] is False, full_submit
            assert full_submit["error"]["code"] == "disk_full", full_submit
            assert "free disk space" in full_submit["error"]["message"]
            full_metrics = w.request("metrics", points=points, **running)
            assert full_metrics["ok"] is False, full_metrics
            assert full_metrics["error"]["code"] == "disk_full", full_metrics
            d.wait_log(r"COMMIT failed: database or disk is full")

            # Reads keep working and show nothing of the failed writes.
            assert [s["sweep"] for s in c.ok("list")["sweeps"]] == [sweep]
            status = c.ok("status", sweep=sweep)
            assert status["counts"]["running"] == 1
            trials = c.ok("trials", sweep=sweep)["trials"]
            assert len(trials) == 1
            assert w.ok("heartbeat", step=1, loss=3.0, **running)["ok"] is True
            assert db_snapshot(d) == before, "a failed write left rows behind"

            # Space returns: the same writes succeed.
            os.unlink(filler)
            again = c.ok("submit", spec=big_spec)
            assert again["sweep"] == sweep + 1
            assert w.ok("metrics", points=points, **running)["stored"] == len(points)
            assert len(c.ok("list")["sweeps"]) == 2
            w.ok("complete", final_loss=1.5, **running)
            assert c.ok("status", sweep=sweep)["counts"]["completed"] == 1
            w.close()
            c.close()
    finally:
        subprocess.run(["umount", disk], check=False)


if __name__ == "__main__":
    harness.main(globals())
