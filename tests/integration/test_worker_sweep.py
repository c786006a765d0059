"""sweep-worker against a real sweepd and real training on a tiny model.

Cases: a sweep run by two workers. SIGTERM mid-trial, with a bit-identical
resume on another worker that is checked against an uninterrupted sweep-train
run. SIGKILL mid-trial, with a requeue. SIGKILL of sweepd mid-sweep, followed
by a restart that loses nothing and counts nothing twice. A TCP connection
with a right and a wrong token. Every wait is on a log line or a process exit.
"""

import json
import os
import signal
import sqlite3
import subprocess

import harness
from harness import Client, Daemon

TINY = {"n_layer": 1, "d_model": 16, "n_head": 2, "seq_len": 16, "batch_size": 4,
        "eval_batches": 2}


def make_dataset(directory):
    """Write about 60 KB of varied English-like text and return its path."""
    words = ("the of and to in is was he for it with as his on be at by had not are but from or "
             "have an they which one you were her all she there would their we him been has when "
             "who will more no if out so said what up its about into than them can only other").split()
    lines = []
    state = 12345
    for _ in range(2000):
        line = []
        for _ in range(6):
            state = (state * 1103515245 + 12345) % (1 << 31)
            line.append(words[state % len(words)])
        lines.append(" ".join(line).capitalize() + ".")
    path = os.path.join(directory, "tiny.txt")
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines))
    return path


def spec(dataset, steps, run_cap=None, **params):
    parameters = {name: {"value": value} for name, value in TINY.items()}
    parameters.update({"dataset": {"value": dataset}, "steps": {"value": steps},
                       "eval_every": {"value": 50}})
    for name, value in params.items():
        parameters[name] = value if isinstance(value, dict) else {"value": value}
    result = {"method": "random" if run_cap else "grid", "seed": 7, "parameters": parameters}
    if run_cap:
        result["run_cap"] = run_cap
    return result


def worker(d, name, *args, ckpt_dir):
    return harness.start_worker(d.socket_path, "--name", name, "--checkpoint-dir", ckpt_dir,
                                "--cache-dir", os.path.join(os.path.dirname(ckpt_dir), "cache-" + name), *args)


def trials(d):
    db = sqlite3.connect(d.db_path())
    try:
        return db.execute("SELECT id, state, attempt, final_loss, params FROM trials ORDER BY id").fetchall()
    finally:
        db.close()


def sweep_train_final_loss(params, dataset):
    """Run the same trial uninterrupted with sweep-train; return its final loss."""
    config = os.path.join(harness.tmp_dir(), "config.json")
    with open(config, "w", encoding="utf-8") as f:
        json.dump(params, f)
    out = subprocess.run([harness.program("sweep-train"), "--config", config, "--data", dataset,
                          "--threads", "1"], capture_output=True, text=True,
                         timeout=harness.scaled(120), check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["final_loss"]


def test_two_workers_finish_sweep():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    ckpt = os.path.join(root, "ckpt")
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=spec(dataset, 60, run_cap=4,
                                                     lr={"distribution": "log_uniform_values",
                                                         "min": 0.001, "max": 0.01}))
        workers = [worker(d, f"w{i}", "--exit-when-idle", "2", "--checkpoint-every", "20",
                          ckpt_dir=ckpt) for i in range(2)]
        for w in workers:
            assert w.wait(60) == 0, w.log_text(40)
            w.check_sanitizers()
        rows = trials(d)
        assert len(rows) == 4, rows
        assert all(state == "completed" for _, state, _, _, _ in rows), rows
        assert all(loss is not None and 0 < loss < 6 for _, _, _, loss, _ in rows), rows
        db = sqlite3.connect(d.db_path())
        points = db.execute("SELECT trial, count(*) FROM metrics GROUP BY trial").fetchall()
        db.close()
        assert sorted(points) == [(row[0], 2) for row in rows], points
        leased = "".join(w.log_text() for w in workers).count(" leased")
        assert leased == 4, leased
        # Each trial keeps at most its two newest checkpoints.
        for sweep_dir in os.listdir(ckpt):
            for trial_dir in os.listdir(os.path.join(ckpt, sweep_dir)):
                kept = os.listdir(os.path.join(ckpt, sweep_dir, trial_dir))
                assert len(kept) <= 2, kept


def test_sigterm_resumes_bit_identical():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    ckpt = os.path.join(root, "ckpt")
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=spec(dataset, 1500, lr=0.003))
        first = worker(d, "first", "--checkpoint-every", "10", ckpt_dir=ckpt)
        first.wait_log(r"ckpt: sweep=\d+ trial=\d+ attempt=1 step=30 saved", 60)
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, first.log_text(40)
        first.check_sanitizers()
        stop = first.wait_log(r"reported preempted")
        assert stop
        d.wait_log(r"preempted at step \d+")

        second = worker(d, "second", "--max-trials", "1", "--checkpoint-every", "10", ckpt_dir=ckpt)
        second.wait_log(r"resumed from .*step-\d+\.ckpt at step \d+", 60)
        assert second.wait(90) == 0, second.log_text(40)
        second.check_sanitizers()

        (trial_id, state, attempt, final_loss, params), = trials(d)
        assert state == "completed", state
        assert attempt == 2, attempt
        expected = sweep_train_final_loss(json.loads(params), dataset)
        assert final_loss == expected, (final_loss.hex(), expected.hex())


def test_sigkill_requeues_to_other_worker():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    ckpt = os.path.join(root, "ckpt")
    with Daemon() as d:
        Client(d.socket_path).ok("submit", spec=spec(dataset, 1500))
        doomed = worker(d, "doomed", "--checkpoint-every", "10", ckpt_dir=ckpt)
        doomed.wait_log(r"attempt=1 step=20 saved", 60)
        doomed.kill(signal.SIGKILL)
        d.wait_log(r"worker=doomed requeued: disconnect")

        rescuer = worker(d, "rescuer", "--max-trials", "1", ckpt_dir=ckpt)
        rescuer.wait_log(r"attempt=2 lease=\w+ leased, resuming from ", 30)
        assert rescuer.wait(90) == 0, rescuer.log_text(40)
        rescuer.check_sanitizers()
        (_, state, attempt, final_loss, _), = trials(d)
        assert state == "completed", state
        assert attempt == 2, attempt
        assert final_loss is not None


def test_daemon_sigkill_and_restart():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    ckpt = os.path.join(root, "ckpt")
    state_dir = harness.tmp_dir()
    d = Daemon(state_dir=state_dir)
    try:
        Client(d.socket_path).ok("submit", spec=spec(dataset, 600, run_cap=3, lr={
            "distribution": "log_uniform_values", "min": 0.001, "max": 0.01}))
        workers = [worker(d, f"r{i}", "--exit-when-idle", "3", "--checkpoint-every", "10",
                          ckpt_dir=ckpt) for i in range(2)]
        marks = []
        for w in workers:
            w.wait_log(r"step=20 saved", 60)
            marks.append(w.log_mark())
        d.kill(signal.SIGKILL)
        for w, mark in zip(workers, marks):
            w.wait_log(r"lost the connection to sweepd", 30, since=mark)
    finally:
        d.ensure_dead()

    with Daemon(state_dir=state_dir) as again:
        for w, mark in zip(workers, marks):
            w.wait_log(r"lease accepted again after reconnecting", 60, since=mark)
        for w in workers:
            assert w.wait(90) == 0, w.log_text(40)
            w.check_sanitizers()
        rows = trials(again)
        assert len(rows) == 3, rows
        assert all(state == "completed" for _, state, _, _, _ in rows), rows
        db = sqlite3.connect(again.db_path())
        outcomes = db.execute("SELECT trial, count(*) FROM attempts WHERE outcome = 'completed' "
                              "GROUP BY trial").fetchall()
        points = db.execute("SELECT trial, count(*), count(DISTINCT step) FROM metrics "
                            "GROUP BY trial").fetchall()
        db.close()
        assert sorted(outcomes) == [(row[0], 1) for row in rows], outcomes
        assert all(total == distinct == 600 // 50 for _, total, distinct in points), points


def test_tcp_with_token():
    root = harness.tmp_dir()
    dataset = make_dataset(root)
    token = os.path.join(root, "token")
    wrong = os.path.join(root, "wrong")
    for path, text in ((token, "0123456789abcdef0123\n"), (wrong, "not-the-right-token-at-all\n")):
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
        os.chmod(path, 0o600)
    with Daemon(args=["--listen", "127.0.0.1:0", "--token-file", token]) as d:
        host, port = d.tcp_address
        Client(d.socket_path).ok("submit", spec=spec(dataset, 40))
        base = [harness.program("sweep-worker"), "--connect", f"tcp:{host}:{port}",
                "--checkpoint-dir", os.path.join(root, "ckpt"), "--cache-dir", os.path.join(root, "cache")]

        rejected = harness.LoggedProcess(base + ["--name", "bad", "--token-file", wrong],
                                         os.path.join(root, "bad.log"))
        rejected.wait_log(r"hello rejected: unauthorized: .*\(check --token-file\)", 30)
        assert rejected.wait(30) == 1, rejected.log_text(40)
        rejected.check_sanitizers()

        accepted = harness.LoggedProcess(base + ["--name", "good", "--token-file", token,
                                                 "--max-trials", "1"],
                                         os.path.join(root, "good.log"))
        assert accepted.wait(60) == 0, accepted.log_text(40)
        accepted.check_sanitizers()
        (_, state, _, _, _), = trials(d)
        assert state == "completed", state


if __name__ == "__main__":
    harness.main(globals())
