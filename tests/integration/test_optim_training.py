"""Checks that every optimizer trains: each one lowers the validation loss of
a small model on real English text (the repository's own docs), run as a
real `sweep-train` process.

The baseline is the validation loss of the same model and seed after one step
at lr 0, so nothing is hard-coded. An optimizer passes when its final
validation loss is at least MIN_DROP_NATS below that baseline.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

TOP = os.environ.get("SWEEPD_TOP", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SWEEPD_BUILD", os.path.join(TOP, "build"))
TRAIN = os.path.join(BUILD, "sweep-train")

# A small model so every run takes a few seconds, even under ASan.
MODEL = ["n_layer=1", "d_model=32", "n_head=2", "seq_len=32", "batch_size=8", "eval_batches=4"]
STEPS = 60
MIN_DROP_NATS = 0.5
TEXT_BYTES = 60000

OPTIMIZERS = [
    ("adam", []),
    ("adamw", []),
    ("sm3", []),
    ("shampoo", ["precondition_every=1"]),
    ("shampoo", ["root_method=newton", "block_size=16"]),
    # The published sweep's combination: Shampoo grafted onto SM3, heavy ball.
    ("shampoo", ["graft=sm3", "nesterov=false", "b2=0.99"]),
]


def make_text(path):
    """Writes up to TEXT_BYTES of the repository's Markdown docs to path."""
    parts = []
    for doc in sorted(glob.glob(os.path.join(TOP, "docs", "*.md"))):
        with open(doc, "rb") as f:
            parts.append(f.read())
    text = b"\n".join(parts)[:TEXT_BYTES]
    if len(text) < 20000:
        raise RuntimeError("only %d bytes of docs text; expected at least 20000" % len(text))
    with open(path, "wb") as f:
        f.write(text)


def train(data, settings, steps):
    """Runs sweep-train and returns its JSON summary."""
    cmd = [TRAIN, "--data", data]
    for s in MODEL + ["steps=%d" % steps, "eval_every=%d" % steps] + settings:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s" % (" ".join(cmd), proc.returncode, proc.stderr[-2000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        make_text(data)
        baseline = train(data, ["optimizer=adam", "lr=0"], 1)["final_loss"]
        print("baseline validation loss (lr 0): %.4f nats/byte" % baseline)
        for optimizer, extra in OPTIMIZERS:
            summary = train(data, ["optimizer=" + optimizer] + extra, STEPS)
            drop = baseline - summary["final_loss"]
            ok = summary["status"] == "done" and drop >= MIN_DROP_NATS
            print("%-4s %-8s %-45s final %.4f, drop %.4f (need >= %.2f)"
                  % ("ok" if ok else "FAIL", optimizer, " ".join(extra), summary["final_loss"], drop,
                     MIN_DROP_NATS))
            if not ok:
                failures.append("%s %s: status %s, loss drop %.4f" % (optimizer, extra, summary["status"], drop))
    for failure in failures:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
