"""Compares `sweep-train optim-trace` with the numpy references in
tests/optim_reference.py, step by step, for every optimizer and the Shampoo
settings that take different code paths (blocks, grafts, nesterov, b2 == 1,
weight decay, 1-D tensors, max_precond_dim, start_preconditioning_step,
precondition_every, eigh and newton roots, and the asynchronous refresh).

Tolerance: |c - r| <= TOLERANCE * max(1, |r|) per value. The C code keeps
parameters and momenta in float32, so a few steps drift by about 1e-7
relative. 2e-6 leaves room for that and for Newton roots. A wrong formula
moves the parameters by about lr (1e-3 or more) and fails.
"""

import json
import os
import subprocess
import sys

import numpy as np

TOP = os.environ.get("SWEEPD_TOP", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SWEEPD_BUILD", os.path.join(TOP, "build"))
sys.path.insert(0, os.path.join(TOP, "tests"))

import optim_reference  # noqa: E402

TOLERANCE = 2e-6
STEPS = 5

# (optimizer, settings passed as --set and to the reference, shape)
CASES = [
    ("adam", {}, (2, 2)),
    ("adam", {"weight_decay": 0.1, "lr": 0.01}, (3, 2)),
    ("adam", {"b1": 0.5, "b2": 0.9, "eps": 1e-3}, (4,)),
    ("adamw", {}, (2, 2)),
    ("adamw", {"weight_decay": 0.3, "lr": 0.05}, (4,)),
    ("sm3", {}, (2, 2)),
    ("sm3", {}, (3, 2)),
    ("sm3", {"b2": 0.9, "weight_decay": 0.1}, (3, 2)),
    ("sm3", {"b1": 0.0}, (4,)),
    ("shampoo", {}, (2, 2)),
    ("shampoo", {"precondition_every": 1}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "start_preconditioning_step": 0}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "nesterov": False}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "b2": 1.0}, (2, 2)),
    ("shampoo", {"precondition_every": 1, "weight_decay": 0.5, "lr": 0.01}, (2, 2)),
    ("shampoo", {"precondition_every": 1, "block_size": 2}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "block_size": 1}, (2, 2)),
    ("shampoo", {"precondition_every": 2, "start_preconditioning_step": 3}, (3, 2)),
    ("shampoo", {"precondition_every": 3, "root_method": "newton"}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "root_method": "newton", "block_size": 2}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "max_precond_dim": 2}, (3, 2)),
    ("shampoo", {"precondition_every": 1}, (4,)),
    ("shampoo", {"precondition_every": 1, "graft": "sgd"}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "adagrad"}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "rmsprop"}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "rmsprop", "graft_beta2": 1.0}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "adam", "graft_beta2": 0.9}, (2, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "sm3"}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "sm3"}, (4,)),
    ("shampoo", {"precondition_every": 1, "graft": "none"}, (3, 2)),
    ("shampoo", {"precondition_every": 1, "graft": "none", "lr": 1e-4}, (4,)),
    # The published sweep's combination: Shampoo grafted onto SM3, heavy ball.
    ("shampoo", {"graft": "sm3", "nesterov": False, "b2": 0.99, "precondition_every": 1}, (3, 2)),
    ("shampoo", {"graft": "sm3", "nesterov": False, "b2": 0.99, "graft_beta2": 1.0}, (2, 2)),
    # precondition_async: roots of the statistics at refresh step k are used
    # from step k + precondition_every on.
    ("shampoo", {"precondition_every": 1, "precondition_async": True}, (3, 2)),
    ("shampoo", {"precondition_every": 2, "precondition_async": True, "block_size": 2}, (3, 2)),
    ("shampoo", {"graft": "sm3", "nesterov": False, "b2": 0.99, "precondition_every": 1,
                 "precondition_async": True}, (3, 2)),
]


def as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value)


def run_trace(optimizer, settings, shape, w0, grads):
    cmd = [os.path.join(BUILD, "sweep-train"), "optim-trace", "--optimizer", optimizer]
    for name, value in settings.items():
        cmd += ["--set", "%s=%s" % (name, as_text(value))]
    payload = json.dumps({"shape": list(shape), "w0": [float(x) for x in w0],
                          "grads": [[float(x) for x in g] for g in grads]})
    proc = subprocess.run(cmd, input=payload, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), proc.returncode, proc.stderr.strip()))
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return cmd, lines


def check_case(rng, optimizer, settings, shape):
    numel = int(np.prod(shape))
    # float32 values, so the C side reads exactly what the reference uses.
    w0 = rng.standard_normal(numel).astype(np.float32)
    grads = [rng.standard_normal(numel).astype(np.float32) for _ in range(STEPS)]
    cmd, lines = run_trace(optimizer, settings, shape, w0, grads)
    expected = optim_reference.run(optimizer, settings, shape, w0, grads)

    label = "%s %s shape=%s" % (optimizer, settings, list(shape))
    failures = []
    if len(lines) != STEPS:
        failures.append("%s: %d output lines, expected %d" % (label, len(lines), STEPS))
        return failures, 0.0
    worst = 0.0
    for t, (line, ref) in enumerate(zip(lines, expected), start=1):
        got = np.array([np.nan if x is None else x for x in line["param"]], dtype=np.float64)
        ref = ref.reshape(-1)
        if line["step"] != t:
            failures.append("%s: step field %s, expected %d" % (label, line["step"], t))
        if line.get("rejected_roots", 0) != 0:
            failures.append("%s: %d rejected roots" % (label, line["rejected_roots"]))
        err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
        step_worst = float(np.nanmax(err)) if np.all(np.isfinite(got)) else float("inf")
        worst = max(worst, step_worst)
        if not step_worst <= TOLERANCE:
            failures.append("%s step %d: max relative difference %.3g > %g\n  got %s\n  want %s"
                            % (label, t, step_worst, TOLERANCE, got.tolist(), ref.tolist()))
    # Every case must move the parameters, or the comparison proves little.
    if np.max(np.abs(expected[-1].reshape(-1) - w0)) < 1e-6:
        failures.append("%s: the reference did not move the parameters" % label)
    return failures, worst


def check_rejects_bad_input():
    """Malformed input exits 1 with a message that names the field."""
    failures = []
    cases = [
        ('{"shape": [2, 2], "w0": [1, 2, 3], "grads": []}', "w0"),
        ('{"shape": [2, 2, 2], "w0": [], "grads": []}', "shape"),
        ('{"shape": [2], "w0": [1, 2], "grads": [[1]]}', "grads[0]"),
        ('not json', "JSON"),
    ]
    for payload, word in cases:
        proc = subprocess.run([os.path.join(BUILD, "sweep-train"), "optim-trace", "--optimizer", "adam"],
                              input=payload, capture_output=True, text=True, timeout=60)
        if proc.returncode != 1 or word not in proc.stderr:
            failures.append("input %r: exit %d, stderr %r (expected exit 1 naming %s)"
                            % (payload, proc.returncode, proc.stderr.strip(), word))
    proc = subprocess.run([os.path.join(BUILD, "sweep-train"), "optim-trace", "--optimizer", "adam",
                           "--set", "no_such_name=1"], input="{}", capture_output=True, text=True, timeout=60)
    if proc.returncode != 2:
        failures.append("unknown --set name: exit %d, expected 2" % proc.returncode)
    return failures


def main():
    rng = np.random.default_rng(20240501)
    failures = []
    for optimizer, settings, shape in CASES:
        case_failures, worst = check_case(rng, optimizer, settings, shape)
        status = "FAIL" if case_failures else "ok"
        print("%-4s %-8s %-80s max rel diff %.2e" % (status, optimizer, "%s %s" % (settings, list(shape)), worst))
        failures += case_failures
    failures += check_rejects_bad_input()
    for failure in failures:
        print("FAIL " + failure)
    print("%d cases, %d failures (tolerance %g)" % (len(CASES), len(failures), TOLERANCE))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
