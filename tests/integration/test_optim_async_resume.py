#!/usr/bin/python3
"""Runs Shampoo's root threads and asynchronous refresh through real
`sweep-train` processes and checkpoint files.

- precondition_async: a run stopped while a snapshot's roots are pending,
  then resumed in a new process, matches the uninterrupted run bit for bit
  (loss at every step and the final checkpoint). Reruns are identical, and
  the mode differs from the synchronous one, so it was in effect.
- The root pool: --threads 2 gives the same losses on rerun, as every run
  must.

Exits non-zero when any check fails.
"""
import json
import os
import subprocess
import sys
import tempfile

TOP = os.environ.get("SWEEPD_TOP", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SWEEPD_BUILD", os.path.join(TOP, "build"))
TRAIN = os.path.join(BUILD, "sweep-train")

# A small model with block_size 8: 16x16 and 48x16 matrices give several
# blocks each, so the background thread has many roots per refresh.
SHAMPOO = ["n_layer=1", "d_model=16", "n_head=2", "seq_len=16", "batch_size=4", "eval_batches=2",
           "optimizer=shampoo", "block_size=8", "precondition_every=3", "lr=0.01", "eval_every=6"]
STEPS = 18

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, expect):
    """Runs sweep-train; returns (exit status, summary dict or None)."""
    p = subprocess.run([TRAIN] + args, capture_output=True, text=True, timeout=300)
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    summary = None
    if lines:
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            summary = None
    if p.returncode != expect:
        print("exit %d, expected %d, for %s\nstderr:\n%s" % (p.returncode, expect, args, p.stderr[-3000:]))
    return p.returncode, summary


def sets(extra):
    out = []
    for s in SHAMPOO + extra:
        out += ["--set", s]
    return out


def make_text(path):
    phrases = ["the quick brown fox jumps over the lazy dog. ", "a stitch in time saves nine. ",
               "all that glitters is not gold. ", "to be or not to be, that is the question. "]
    with open(path, "w") as f:
        for i in range(3000):
            f.write(phrases[(i * 7) % len(phrases)])


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def straight_run(tmp, text, name, extra, threads="1"):
    """Runs STEPS steps uninterrupted; returns (loss lines, checkpoint bytes)."""
    ckpt, log = os.path.join(tmp, name + ".ckpt"), os.path.join(tmp, name + ".log")
    rc, summary = run(["--data", text, "--threads", threads, "--checkpoint", ckpt, "--loss-log", log]
                      + sets(["steps=%d" % STEPS] + extra), 0)
    check(rc == 0 and summary is not None and summary["steps"] == STEPS, "%s: %d steps" % (name, STEPS))
    if rc != 0:
        return [], b""
    return read_lines(log), read_bytes(ckpt)


def test_async_resume(tmp, text):
    async_set = ["precondition_async=true"]
    lines, ckpt = straight_run(tmp, text, "async", async_set)
    rerun_lines, rerun_ckpt = straight_run(tmp, text, "async-rerun", async_set)
    check(len(lines) == STEPS and lines == rerun_lines, "async rerun: identical loss at every step")
    check(ckpt == rerun_ckpt, "async rerun: identical final checkpoint")

    sync_lines, _ = straight_run(tmp, text, "sync", [])
    # Step 0 uses the initial roots I in async mode and the roots of step
    # 0's statistics in sync mode, so the losses part after the first step.
    check(len(sync_lines) == STEPS and sync_lines[1:] != lines[1:], "async differs from sync, so it was in effect")

    # Refreshes are at k = 0, 3, 6, ...: stopping after 7, 8 or 9 steps
    # leaves the snapshot of k = 6 pending. After 9, the next step (k = 9)
    # is the one that installs it.
    for stop in (7, 8, 9):
        split_ckpt, split_log = os.path.join(tmp, "split%d.ckpt" % stop), os.path.join(tmp, "split%d.log" % stop)
        rc, half = run(["--data", text, "--checkpoint", split_ckpt, "--loss-log", split_log, "--stop-at", str(stop)]
                       + sets(["steps=%d" % STEPS] + async_set), 4)
        check(rc == 4 and half is not None and half["steps"] == stop, "async run stops after %d steps" % stop)
        rc, resumed = run(["--resume", split_ckpt, "--checkpoint", split_ckpt, "--loss-log", split_log], 0)
        check(rc == 0 and resumed is not None and resumed["steps"] == STEPS,
              "resumed process finishes the run from step %d" % stop)
        if rc != 0:
            continue
        check(read_lines(split_log) == lines, "resume after %d steps: identical loss at every step" % stop)
        check(read_bytes(split_ckpt) == ckpt, "resume after %d steps: identical final checkpoint" % stop)


def test_pool_reruns(tmp, text):
    every = ["precondition_every=1"]
    first, first_ckpt = straight_run(tmp, text, "pool", every, threads="2")
    second, second_ckpt = straight_run(tmp, text, "pool-rerun", every, threads="2")
    check(len(first) == STEPS and first == second, "--threads 2: identical loss at every step on rerun")
    check(first_ckpt == second_ckpt, "--threads 2: identical final checkpoint on rerun")


def main():
    if not os.path.exists(TRAIN):
        print("missing %s; build it first" % TRAIN)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "text.txt")
        make_text(text)
        test_async_resume(tmp, text)
        test_pool_reruns(tmp, text)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
