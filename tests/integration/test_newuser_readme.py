"""The README's first steps as a new user types them, with real processes.

The first case runs the "Your own sweeps" sequence: a detached sweepd with
--state-dir, SWEEPD_SOCKET, validate, submit, a worker, watch, tickets, a CSV
export read back with the csv module, and a stop by the pid in sweepd.lock.
Others check that `sweepctl workers` shows an idle worker without a step or
a loss, and that names from other training code (learning_rate) get ours
suggested. The last two start sweep-worker over TCP with a missing or a wrong
token, which must end it with a usage error (2) or a fatal error (1) instead
of retries.
Waits are on a process exit, a pidfd or a log line, never a sleep.
"""

import csv
import json
import os
import re
import subprocess

import harness
from harness import Client, Daemon
from test_daemon_detach import wait_exit
from test_worker_sweep import make_dataset

# A model small enough that a trial trains in well under a second.
TINY = {"n_layer": 1, "d_model": 16, "n_head": 2, "seq_len": 16, "batch_size": 4,
        "steps": 20, "eval_every": 10, "eval_batches": 2}


def user_env(home, **extra):
    """Return an environment like a fresh login: HOME under the test directory
    and no XDG or SWEEPD variables from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("XDG_") and k != "SWEEPD_SOCKET"}
    env["HOME"] = home
    env.update(extra)
    return env


def run(argv, env, cwd, timeout=60):
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=harness.scaled(timeout))


def test_readme_own_sweep_steps():
    home = harness.tmp_dir("sweepd-home-")
    corpus = make_dataset(home)
    parameters = {name: {"value": value} for name, value in TINY.items()}
    parameters.update({"dataset": {"value": corpus},
                       "optimizer": {"values": ["adam", "sm3", "shampoo"]},
                       "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1}})
    spec_path = os.path.join(home, "my_spec.json")
    with open(spec_path, "w", encoding="ascii") as f:
        json.dump({"method": "random", "run_cap": 3, "seed": 1, "ticket_threshold": 4.0,
                   "parameters": parameters}, f)
    state = os.path.join(home, "sweeps")
    sweepctl = harness.program("sweepctl")

    # Without SWEEPD_SOCKET, sweepctl looks in the default state directory
    # and must print which socket it tried and how to point it elsewhere.
    env = user_env(home)
    started = run([harness.program("sweepd"), "--state-dir", state], env, home)
    assert started.returncode == 0, started.stderr
    pid_text = open(os.path.join(state, "sweepd.lock"), encoding="ascii").read().strip()
    daemon_pid = int(pid_text)
    try:
        lost = run([sweepctl, "list"], env, home)
        assert lost.returncode == 3, lost
        assert os.path.join(home, ".local/state/sweepd/sweepd.sock") in lost.stderr, lost.stderr
        assert "--connect unix:DIR/sweepd.sock" in lost.stderr, lost.stderr

        # The README's sequence, with SWEEPD_SOCKET exported.
        env = user_env(home, SWEEPD_SOCKET=os.path.join(state, "sweepd.sock"))
        preview = run([sweepctl, "validate", "my_spec.json", "--show", "3"], env, home)
        assert preview.returncode == 0, preview.stderr
        assert "valid, 3 trials" in preview.stdout, preview.stdout
        previewed_lrs = re.findall(r"lr=(\S+)", preview.stdout)
        assert len(previewed_lrs) == 3, preview.stdout

        submitted = run([sweepctl, "submit", "my_spec.json"], env, home)
        assert submitted.returncode == 0, submitted.stderr
        assert re.search(r"^submitted sweep 1 .*: 3 trials, method random, seed 1$",
                         submitted.stdout, re.M), submitted.stdout

        worker = harness.LoggedProcess([harness.program("sweep-worker"), "--max-trials", "3"],
                                       os.path.join(home, "worker.log"), env=env, cwd=home)
        try:
            watched = run([sweepctl, "watch", "1", "--until-done"], env, home, timeout=120)
            assert watched.returncode == 0, watched.stderr
            assert "sweep 1 finished: 3/3 done" in watched.stdout, watched.stdout
            assert worker.wait(60) == 0, worker.log_text(40)
        finally:
            worker.ensure_dead()
        worker.check_sanitizers()

        tickets = run([sweepctl, "tickets", "1", "--threshold", "4.0", "--by", "optimizer"],
                      env, home)
        assert tickets.returncode == 0, tickets.stderr
        assert re.search(r"^overall\s+3\s", tickets.stdout, re.M), tickets.stdout

        # The seeded spec runs exactly the previewed trials.
        out = os.path.join(home, "sweep1.csv")
        exported = run([sweepctl, "export", "1", "--format", "csv", "--output", out], env, home)
        assert exported.returncode == 0, exported.stderr
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert [row["state"] for row in rows] == ["completed"] * 3, rows
        assert [row["lr"] for row in rows] == previewed_lrs, (rows, previewed_lrs)
        assert all(float(row["final_loss"]) > 0 for row in rows), rows
    finally:
        # The README stops the detached daemon by the pid in its lock file.
        os.kill(daemon_pid, 15)
        wait_exit(daemon_pid, 30)
    log = open(os.path.join(state, "sweepd.log"), encoding="utf-8").read()
    assert "stopped (exit 0)" in log, log[-2000:]


def test_idle_worker_row_has_no_loss():
    root = harness.tmp_dir()
    with Daemon() as d, Client(d.socket_path) as c:
        # An idle sweep-worker sends bare heartbeats; the reply to one is the
        # event after which the daemon's worker row holds its values.
        c.ok("hello", version=1, role="worker", name="idler", host="localhost",
             pid=os.getpid(), capabilities={"threads": 1, "checkpoint": "dir"})
        c.ok("heartbeat")
        listed = run([harness.program("sweepctl"), "--connect", "unix:" + d.socket_path,
                      "workers"], dict(os.environ), root)
    assert listed.returncode == 0, listed.stderr
    row = [line.split() for line in listed.stdout.splitlines() if line.startswith("idler")]
    assert len(row) == 1, listed.stdout
    # worker, host, pid, state, trial, step, loss, tokens/s, heartbeat
    assert row[0][3:8] == ["idle", "-", "-", "-", "-"], listed.stdout


def test_spec_common_names_suggest_ours():
    root = harness.tmp_dir()
    cases = [("learning_rate", "lr"), ("beta2", "b2"), ("num_layers", "n_layer"),
             ("n_embd", "d_model"), ("max_steps", "steps"), ("n_layers", "n_layer")]
    with Daemon() as d:
        for alias, name in cases:
            path = os.path.join(root, alias + ".json")
            with open(path, "w", encoding="ascii") as f:
                json.dump({"method": "grid", "parameters": {alias: {"value": 1}}}, f)
            checked = run([harness.program("sweepctl"), "--connect", "unix:" + d.socket_path,
                           "validate", path], dict(os.environ), root)
            assert checked.returncode == 4, (alias, checked)
            assert f'"{alias}" is not a trainer hyperparameter; did you mean "{name}"?' \
                in checked.stderr, checked.stderr
    trained = run([harness.program("sweep-train"), "--data", "/dev/null", "--set",
                   "learning_rate=0.01"], dict(os.environ), root)
    assert trained.returncode != 0, trained
    assert "did you mean 'lr'" in trained.stderr, trained.stderr


def tcp_daemon(root):
    token = os.path.join(root, "token")
    with open(token, "w", encoding="ascii") as f:
        f.write("a-token-of-at-least-16-characters\n")
    os.chmod(token, 0o600)
    return Daemon(args=["--listen", "127.0.0.1:0", "--token-file", token])


def test_worker_tcp_without_token():
    root = harness.tmp_dir()
    with tcp_daemon(root) as d:
        host, port = d.tcp_address
        address = f"tcp:{host}:{port}"
        for name, args, env in (("option", ["--connect", address], None),
                                ("environment", [], {"SWEEPD_SOCKET": address})):
            worker = harness.LoggedProcess([harness.program("sweep-worker")] + args,
                                           os.path.join(root, f"{name}.log"), env=env)
            try:
                assert worker.wait(30) == 2, (name, worker.log_text(20))
            finally:
                worker.ensure_dead()
            assert "needs a token: pass --token-file FILE" in worker.log_text(), worker.log_text()


def test_worker_wrong_token_exits():
    root = harness.tmp_dir()
    wrong = os.path.join(root, "wrong")
    with open(wrong, "w", encoding="ascii") as f:
        f.write("not-the-daemon-token-at-all\n")
    with tcp_daemon(root) as d:
        host, port = d.tcp_address
        mark = d.log_mark()
        worker = harness.LoggedProcess(
            [harness.program("sweep-worker"), "--connect", f"tcp:{host}:{port}",
             "--token-file", wrong, "--cache-dir", os.path.join(root, "cache")],
            os.path.join(root, "worker.log"))
        try:
            assert worker.wait(30) == 1, worker.log_text(20)
        finally:
            worker.ensure_dead()
        worker.check_sanitizers()
        text = worker.log_text()
        assert "hello rejected: unauthorized" in text, text
        assert "restart it with --token-file" in text, text
        d.wait_log(r"wrong token", 10, since=mark)
        with Client(d.socket_path) as c:
            assert c.ok("workers")["workers"] == [], "a rejected worker is listed"


if __name__ == "__main__":
    harness.main(globals())
