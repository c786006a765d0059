"""Hostile inputs to sweep-train: datasets that are not regular files, runs
too large for memory, and checkpoints damaged in the header, the payload and
the checksum. Each case runs the real sweep-train and checks its exit status
and the reason it gives.

Regressions covered: a FIFO as dataset hung in open(); a directory was read
as a 2^63-byte file; runs larger than memory were allocated and then killed.
"""

import os
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HEADER_BYTES = 112
TINY = ["--set", "n_layer=1", "--set", "d_model=8", "--set", "n_head=2", "--set", "seq_len=8",
        "--set", "batch_size=2", "--set", "eval_batches=1", "--set", "eval_every=2"]


def sweep_train(args, timeout=60):
    """Run sweep-train and return (exit status, stdout, stderr)."""
    proc = subprocess.run([harness.program("sweep-train")] + args, capture_output=True, text=True,
                          timeout=harness.scaled(timeout))
    return proc.returncode, proc.stdout, proc.stderr


def expect_error(args, reason, what):
    """Run sweep-train, expect exit status 1 and reason in stderr."""
    rc, _, err = sweep_train(args)
    assert rc == 1, f"{what}: exit status {rc}, expected 1; stderr: {err[-300:]}"
    assert reason in err, f"{what}: expected '{reason}' in stderr, got: {err[-300:]}"


def text_file(directory, name, size):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write((b"the quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[:size])
    return path


def test_dataset_fifo_rejected():
    tmp = harness.tmp_dir()
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    # Without a writer, a blocking open() never returns; the timeout turns that into a failure.
    expect_error(["--data", fifo, "--set", "steps=1"] + TINY, "is a FIFO, not a regular file", "FIFO dataset")


def test_dataset_directory_rejected():
    tmp = harness.tmp_dir()
    expect_error(["--data", tmp, "--set", "steps=1"] + TINY, "is a directory, not a regular file",
                 "directory dataset")


def test_dataset_symlink_loop_rejected():
    tmp = harness.tmp_dir()
    os.symlink(os.path.join(tmp, "b"), os.path.join(tmp, "a"))
    os.symlink(os.path.join(tmp, "a"), os.path.join(tmp, "b"))
    expect_error(["--data", os.path.join(tmp, "a"), "--set", "steps=1"] + TINY, "Too many levels of symbolic links",
                 "symlink loop dataset")


def test_dataset_size_boundary():
    # seq_len 8, batch 2: the training split needs 18 bytes and the validation split 9, so 90 bytes
    # is the smallest file (10% of it is 9) and 89 bytes is too small.
    tmp = harness.tmp_dir()
    expect_error(["--data", text_file(tmp, "small", 89), "--set", "steps=1"] + TINY, "is too small",
                 "89-byte dataset")
    rc, out, err = sweep_train(["--data", text_file(tmp, "exact", 90), "--set", "steps=1"] + TINY)
    assert rc == 0, f"90-byte dataset: exit status {rc}: {err[-300:]}"
    assert '"status":"done"' in out, out[:200]


def test_dataset_nul_bytes_train():
    tmp = harness.tmp_dir()
    path = os.path.join(tmp, "binary")
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * 8)
    rc, out, err = sweep_train(["--data", path, "--set", "steps=2"] + TINY)
    assert rc == 0, f"binary dataset: exit status {rc}: {err[-300:]}"
    assert '"status":"done"' in out, out[:200]


def test_huge_model_rejected_before_allocation():
    tmp = harness.tmp_dir()
    data = text_file(tmp, "text", 20000)
    # seq_len 8192 with the default model needs about 34 GiB of activations. Under a 1 GiB address
    # space limit an attempt to allocate it would fail with "out of memory", so the memory-limit
    # message proves the check came first.
    args = ["--data", data, "--set", "seq_len=8192", "--set", "batch_size=1", "--set", "steps=1",
            "--max-memory", "1G"]
    expect_error(args, "above the memory limit of 1073741824 bytes", "seq_len 8192 under --max-memory 1G")
    expect_error(["--data", data, "--set", "d_model=4096", "--set", "n_head=64", "--set", "n_layer=64",
                  "--set", "seq_len=2", "--set", "batch_size=1", "--set", "steps=1", "--max-memory", "1G"],
                 "above the memory limit", "n_layer 64 d_model 4096")
    expect_error(["--data", data, "--set", "steps=1000000000", "--set", "eval_every=1", "--max-memory", "1G"],
                 "above the memory limit", "curve of 10^9 evaluations")


def test_memory_limit_default_is_physical():
    tmp = harness.tmp_dir()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # A sparse file is large enough for batch 65536 x seq_len 8192 and costs no disk; the
    # largest model of the table needs about 2^58 bytes, far above any machine.
    big = os.path.join(tmp, "sparse")
    with open(big, "wb") as f:
        f.truncate(600_000_000)
    rc, _, err = sweep_train(["--data", big, "--set", "seq_len=8192", "--set", "batch_size=65536",
                              "--set", "steps=1", "--set", "n_head=256", "--set", "d_model=4096",
                              "--set", "n_layer=64"])
    assert rc == 1, f"largest model: exit status {rc}: {err[-300:]}"
    match = re.search(r"memory limit of (\d+) bytes", err)
    assert match, f"no memory-limit message: {err[-300:]}"
    assert 0 < int(match.group(1)) <= physical, f"limit {match.group(1)} above physical memory {physical}"


def test_max_memory_option_rejects_bad_values():
    for value in ["0", "10X", "", "-5", "99999999999999999999T"]:
        rc, _, err = sweep_train(["--data", "/nonexistent", "--max-memory", value])
        assert rc == 2, f"--max-memory '{value}': exit status {rc}, expected 2: {err[-200:]}"
        assert "invalid --max-memory" in err, err[-200:]


def make_checkpoint(tmp):
    data = text_file(tmp, "text", 4000)
    ckpt = os.path.join(tmp, "run.ckpt")
    rc, _, err = sweep_train(["--data", data, "--set", "steps=4", "--checkpoint", ckpt, "--stop-at", "2"] + TINY)
    assert rc == 4, f"checkpoint run: exit status {rc}: {err[-300:]}"
    with open(ckpt, "rb") as f:
        return data, f.read()


def resume(tmp, data, blob, name):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(blob)
    return sweep_train(["--data", data, "--resume", path])


def test_checkpoint_header_truncated_everywhere():
    tmp = harness.tmp_dir()
    data, good = make_checkpoint(tmp)
    for cut in range(0, HEADER_BYTES + 1):
        rc, _, err = resume(tmp, data, good[:cut], "cut.ckpt")
        assert rc == 1, f"cut at {cut}: exit status {rc}: {err[-200:]}"
        assert "truncated" in err, f"cut at {cut}: {err[-200:]}"


def test_checkpoint_bit_flips_rejected():
    tmp = harness.tmp_dir()
    data, good = make_checkpoint(tmp)
    # Header fields, the config, parameters, the curve and the checksum itself.
    positions = list(range(0, HEADER_BYTES, 3)) + [HEADER_BYTES + 5, len(good) // 2, len(good) - 30,
                                                   len(good) - 8, len(good) - 1]
    for pos in positions:
        for bit in (0, 7):
            blob = bytearray(good)
            blob[pos] ^= 1 << bit
            rc, _, err = resume(tmp, data, bytes(blob), "flip.ckpt")
            assert rc == 1, f"flip of bit {bit} at byte {pos}: exit status {rc}: {err[-200:]}"
            assert any(r in err for r in ("corrupted", "truncated", "bad magic", "format version")), \
                f"flip at byte {pos}: no reason in: {err[-200:]}"


def test_checkpoint_huge_claimed_sections():
    tmp = harness.tmp_dir()
    data, good = make_checkpoint(tmp)
    for offset, value in [(16, 1 << 62), (24, 1 << 39), (32, 1 << 43), (40, 1 << 31), (24, (1 << 64) - 1)]:
        blob = bytearray(good)
        blob[offset:offset + 8] = struct.pack("<Q", value)
        rc, _, err = resume(tmp, data, bytes(blob), "huge.ckpt")
        assert rc == 1, f"section size {value} at offset {offset}: exit status {rc}: {err[-200:]}"
        assert "out of memory" not in err, f"offset {offset}: allocated the claimed size: {err[-200:]}"
        assert "corrupted" in err or "truncated" in err, f"offset {offset}: {err[-200:]}"


def test_checkpoint_not_regular_file():
    tmp = harness.tmp_dir()
    data, _ = make_checkpoint(tmp)
    fifo = os.path.join(tmp, "ckpt.fifo")
    os.mkfifo(fifo)
    rc, _, err = sweep_train(["--data", data, "--resume", fifo])
    assert rc == 1, f"FIFO checkpoint: exit status {rc}: {err[-200:]}"
    assert "is a FIFO" in err, f"FIFO checkpoint: {err[-200:]}"
    rc, _, err = sweep_train(["--data", data, "--resume", tmp])
    assert rc == 1, f"directory checkpoint: exit status {rc}: {err[-200:]}"
    assert "is a directory" in err, f"directory checkpoint: {err[-200:]}"
    rc, _, err = sweep_train(["--data", data, "--resume", data])
    assert rc == 1, f"dataset as checkpoint: exit status {rc}: {err[-200:]}"
    assert "bad magic" in err, f"dataset as checkpoint: {err[-200:]}"


def test_checkpoint_other_shape_rejected():
    tmp = harness.tmp_dir()
    data, good = make_checkpoint(tmp)
    path = os.path.join(tmp, "good.ckpt")
    with open(path, "wb") as f:
        f.write(good)
    rc, _, err = sweep_train(["--data", data, "--resume", path, "--set", "d_model=16"])
    assert rc == 1, f"other shape: exit status {rc}: {err[-200:]}"
    assert "does not match" in err, f"other shape: {err[-200:]}"
    assert "d_model" in err, f"other shape: {err[-200:]}"
    rc, _, err = sweep_train(["--data", data, "--resume", path, "--set", "optimizer=sm3"])
    assert rc == 1, f"other optimizer: exit status {rc}: {err[-200:]}"
    assert "does not match" in err, f"other optimizer: {err[-200:]}"
    assert "optimizer" in err, f"other optimizer: {err[-200:]}"


if __name__ == "__main__":
    harness.main(globals())
