"""sweep-train --max-memory against Shampoo: the limit check counts the
optimizer's state, scratch and per-thread root workspaces before any of
them is allocated, and the figure it checks is exactly the run's reported
bytes_allocated plus the dataset. A limit one byte below is rejected with
both figures named; the exact limit is accepted.
"""

import os
import re

import harness
from test_break_trainer_inputs import sweep_train, text_file

SHAMPOO = ["--set", "optimizer=shampoo", "--set", "n_layer=1", "--set", "d_model=64", "--set", "n_head=2",
           "--set", "seq_len=16", "--set", "batch_size=2", "--set", "eval_batches=1", "--set", "steps=2",
           "--set", "eval_every=1", "--threads", "2"]


def test_shampoo_limit_is_exact():
    tmp = harness.tmp_dir()
    data = text_file(tmp, "data.txt", 20000)
    rc, _, err = sweep_train(["--data", data] + SHAMPOO)
    assert rc == 0, err[-400:]
    match = re.search(r"bytes_allocated=(\d+)", err)
    assert match, err[-400:]
    need = int(match.group(1)) + os.path.getsize(data)

    rc, _, err = sweep_train(["--data", data, "--max-memory", str(need - 1)] + SHAMPOO)
    assert rc == 1, f"exit status {rc}: {err[-400:]}"
    assert f"run needs {need} bytes" in err, err[-400:]
    assert f"above the memory limit of {need - 1} bytes" in err, err[-400:]

    rc, _, err = sweep_train(["--data", data, "--max-memory", str(need)] + SHAMPOO)
    assert rc == 0, f"exit status {rc} at the exact limit: {err[-400:]}"


def test_root_threads_counted():
    # A second root thread adds a root workspace of the largest block side
    # (64 here): at least 6 * 64^2 doubles.
    tmp = harness.tmp_dir()
    data = text_file(tmp, "data.txt", 20000)
    figures = []
    for threads in ("1", "2"):
        args = list(SHAMPOO)
        args[args.index("--threads") + 1] = threads
        rc, _, err = sweep_train(["--data", data] + args)
        assert rc == 0, err[-400:]
        figures.append(int(re.search(r"bytes_allocated=(\d+)", err).group(1)))
    assert figures[1] - figures[0] >= 6 * 64 * 64 * 8, figures


if __name__ == "__main__":
    harness.main(globals())
