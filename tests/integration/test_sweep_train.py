#!/usr/bin/python3
"""End-to-end tests of sweep-train as a real process on small generated text:
learning, exact resume in a new process, bit-identical reruns, rejected
checkpoints, a too-small dataset, invalid hyperparameters and --help.

Each case prints what it compares and exits non-zero on the first failure."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

BUILD = os.environ.get("SWEEPD_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
TRAIN = os.path.join(BUILD, "sweep-train")

# A tiny model keeps every run to a few seconds even under ASan.
TINY = ["n_layer=1", "d_model=16", "n_head=2", "seq_len=16", "batch_size=4", "eval_batches=2"]

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, expect=None):
    """Runs sweep-train; returns (exit status, summary dict or None, stderr)."""
    p = subprocess.run([TRAIN] + args, capture_output=True, text=True, timeout=300)
    summary = None
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if lines:
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            summary = None
    if expect is not None and p.returncode != expect:
        print("unexpected exit %d (wanted %d) for %s\nstderr:\n%s" % (p.returncode, expect, args, p.stderr[-3000:]))
    return p.returncode, summary, p.stderr


def sets(extra):
    out = []
    for s in TINY + extra:
        out += ["--set", s]
    return out


def make_text(path, repeats):
    phrases = ["the quick brown fox jumps over the lazy dog. ", "a stitch in time saves nine. ",
               "all that glitters is not gold. ", "to be or not to be, that is the question. "]
    with open(path, "w") as f:
        for i in range(repeats):
            f.write(phrases[i % len(phrases)])
            f.write(phrases[(i * 3 + 1) % len(phrases)])


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_learns(tmp, text):
    rc, s, err = run(["--data", text] + sets(["steps=300", "lr=0.01", "warmup_steps=20", "eval_every=100",
                                               "n_layer=2", "d_model=32", "seq_len=32", "batch_size=8"]), expect=0)
    check(rc == 0 and s is not None and s["status"] == "done", "training run finishes with status done")
    if s:
        print("     final validation loss %.4f nats (log 256 = 5.545)" % s["final_loss"])
        check(s["final_loss"] < 1.0, "loss on repetitive text falls well below log(256): %.3f < 1.0" % s["final_loss"])
        check(abs(s["final_bits_per_byte"] - s["final_loss"] / 0.6931471805599453) < 1e-9, "bits per byte reported")
        check(s["best_loss"] <= s["final_loss"], "best loss <= final loss")
        for key in ("steps", "seconds", "tokens_per_s", "peak_rss_bytes", "bytes_allocated", "config"):
            check(key in s, "summary has %s" % key)
        check("val_loss=" in err and "tokens_per_s=" in err and "eta_s=" in err, "progress lines on stderr")


def test_resume(tmp, text):
    n = 40
    common = sets(["steps=%d" % n, "eval_every=7", "warmup_steps=5", "lr=0.005"])
    straight_ckpt, straight_log = os.path.join(tmp, "straight.ckpt"), os.path.join(tmp, "straight.log")
    split_ckpt, split_log = os.path.join(tmp, "split.ckpt"), os.path.join(tmp, "split.log")

    rc, full, _ = run(["--data", text, "--checkpoint", straight_ckpt, "--loss-log", straight_log] + common, 0)
    check(rc == 0, "straight run of %d steps" % n)
    rc, half, _ = run(["--data", text, "--checkpoint", split_ckpt, "--loss-log", split_log,
                       "--stop-at", str(n // 2)] + common, 4)
    check(rc == 4 and half and half["status"] == "stopped" and half["steps"] == n // 2,
          "first half stops at step %d with a checkpoint" % (n // 2))
    # A new process resumes from the file alone.
    rc, resumed, _ = run(["--resume", split_ckpt, "--checkpoint", split_ckpt, "--loss-log", split_log], 0)
    check(rc == 0 and resumed and resumed["steps"] == n, "resumed process finishes the run")

    a, b = read_lines(straight_log), read_lines(split_log)
    check(len(a) == n and a == b, "identical train loss at every one of %d steps (%d vs %d lines)" % (n, len(a), len(b)))
    if full and resumed:
        check(full["final_loss"] == resumed["final_loss"],
              "identical final validation loss %r vs %r" % (full["final_loss"], resumed["final_loss"]))
        check(full["best_loss"] == resumed["best_loss"], "identical best validation loss")
    with open(straight_ckpt, "rb") as f1, open(split_ckpt, "rb") as f2:
        check(f1.read() == f2.read(), "final checkpoints (parameters, optimizer and sampler state) bit-identical")
    return straight_ckpt


def test_reruns(tmp, text):
    for threads in ("1", "2"):
        logs = []
        for i in range(2):
            log = os.path.join(tmp, "rerun%s_%d.log" % (threads, i))
            rc, _, _ = run(["--data", text, "--threads", threads, "--loss-log", log] + sets(["steps=15", "eval_every=5"]), 0)
            logs.append(read_lines(log))
        check(len(logs[0]) == 15 and logs[0] == logs[1], "bit-identical losses on rerun with %s thread(s)" % threads)


def test_bad_checkpoints(tmp, text, good):
    data = open(good, "rb").read()
    cases = [
        ("truncated", data[: len(data) // 2], "truncated"),
        ("corrupted", data[:200] + bytes([data[200] ^ 0x55]) + data[201:], "checksum"),
        ("not a checkpoint", b"hello world, this is not a checkpoint file at all" * 4, "bad magic"),
        ("future version", data[:8] + bytes([9]) + data[9:], "version"),
    ]
    for name, content, reason in cases:
        path = os.path.join(tmp, name.replace(" ", "_") + ".ckpt")
        with open(path, "wb") as f:
            f.write(content)
        rc, _, err = run(["--resume", path, "--data", text], 1)
        check(rc == 1 and reason in err, "%s checkpoint rejected with reason '%s': %s" % (name, reason, err.strip()[-160:]))

    rc, _, err = run(["--resume", good, "--set", "d_model=32"], 1)
    check(rc == 1 and "d_model" in err and "does not match" in err, "other model shape rejected: " + err.strip()[-160:])
    rc, _, err = run(["--resume", good, "--set", "optimizer=sm3"], 1)
    check(rc == 1 and "optimizer" in err and "does not match" in err, "other optimizer rejected: " + err.strip()[-160:])


def test_bad_inputs(tmp, text):
    small = os.path.join(tmp, "small.txt")
    with open(small, "w") as f:
        f.write("too short")
    rc, _, err = run(["--data", small] + sets([]), 1)
    check(rc == 1 and "too small" in err, "too-small dataset rejected: " + err.strip()[-200:])

    rc, _, err = run(["--data", text, "--set", "d_model=30", "--set", "n_head=4"], 1)
    check(rc == 1 and "d_model=30" in err and "divisible by n_head=4" in err, "d_model not divisible by n_head: " + err.strip())
    rc, _, err = run(["--data", text, "--set", "n_layer=0"], 1)
    check(rc == 1 and "n_layer=0" in err and "[1, 64]" in err, "out-of-range value names the range: " + err.strip())
    rc, _, err = run(["--data", text, "--set", "lr_schedule=step"], 1)
    check(rc == 1 and "constant|cosine|linear" in err, "bad choice lists the choices: " + err.strip())
    rc, _, err = run(["--data", text, "--set", "lrr=0.1"], 1)
    check(rc == 1 and "did you mean 'lr'" in err, "unknown name suggests the closest: " + err.strip())
    rc, _, err = run(["--data", os.path.join(tmp, "missing.txt")] + sets([]), 1)
    check(rc == 1 and "missing.txt" in err, "missing dataset named: " + err.strip())


def test_help():
    p = subprocess.run([TRAIN, "--help"], capture_output=True, text=True, timeout=60)
    names = ["n_layer", "d_model", "n_head", "seq_len", "batch_size", "steps", "seed", "lr", "warmup_steps",
             "lr_schedule", "grad_clip", "eval_every", "eval_batches", "dataset", "dataset_sha256", "optimizer",
             "b1", "b2", "eps", "weight_decay", "matrix_eps", "block_size", "precondition_every",
             "start_preconditioning_step", "graft", "graft_beta2", "graft_eps", "nesterov", "root_method",
             "max_precond_dim"]
    listed = {line.split()[0] for line in p.stdout.splitlines() if line.startswith("  ") and line.split()}
    missing = [n for n in names if n not in listed]
    check(p.returncode == 0 and not missing, "--help lists every hyperparameter (missing: %s)" % missing)
    check("optim-trace" in p.stdout, "--help names the optim-trace subcommand")


def main():
    if not os.access(TRAIN, os.X_OK):
        print("FAIL sweep-train not built at " + TRAIN)
        return 1
    tmp = tempfile.mkdtemp(prefix="test_sweep_train.")
    try:
        text = os.path.join(tmp, "text.txt")
        make_text(text, 400)
        test_help()
        test_bad_inputs(tmp, text)
        test_reruns(tmp, text)
        good = test_resume(tmp, text)
        test_bad_checkpoints(tmp, text, good)
        test_learns(tmp, text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
