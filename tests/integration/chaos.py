"""Chaos run for sweepd: one daemon and several sweep-worker processes train a
random sweep of tiny models while a seeded schedule SIGKILLs, SIGTERMs and
freezes (SIGSTOP, later SIGCONT) workers and SIGKILLs and restarts the daemon.
At the end the database (read-only) and the protocol must show that no result
was lost, duplicated or reported under a stale lease. Prints one summary line
and exits 1 on any violation. The invariants checked are listed in
docs/RELIABILITY.md ("Chaos runs").

    /usr/bin/python3 tests/integration/chaos.py --build build [--seed N]
        [--trials N] [--workers N] [--long]
"""

import argparse
import os
import random
import re
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, Daemon, ProtocolError, start_worker  # noqa: E402

TERMINAL = ("completed", "diverged", "failed", "cancelled")
# attempts.outcome values written when the daemon takes a lease back.
REQUEUE_OUTCOMES = ("disconnect", "heartbeat_timeout", "preempted", "restart")
# Both daemon log lines that reject a lease which is not the trial's current one.
STALE_LINE = re.compile(r"trial=(\d+) attempt=(\d+) worker=(\S+) "
                        r"(?:stale lease rejected|re-presented a lease that is not current)")
# A worker's log line once the daemon acknowledged its final report.
REPORTED_LINE = re.compile(r"sweep=(\d+) trial=(\d+) attempt=(\d+) reported (\w+)")
# A preempted report past max_requeues fails the trial for good.
REPORTED_OUTCOME = {"complete": ("completed",), "diverged": ("diverged",), "failed": ("failed",),
                    "preempted": ("preempted", "failed")}
# attempts.outcome values written from a worker's own final report.
FINAL_OUTCOMES = ("completed", "diverged", "failed", "preempted")


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Chaos run against sweepd and sweep-worker.")
    parser.add_argument("--build", default=None, help="build directory (default $SWEEPD_BUILD or build)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the sweep")
    parser.add_argument("--trials", type=int, default=None, help="trials in the sweep (default 200, long 1000)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default 4, long 6)")
    parser.add_argument("--long", action="store_true", help="more trials, more faults, longer freezes")
    args = parser.parse_args(argv)
    if args.build:
        os.environ["SWEEPD_BUILD"] = os.path.abspath(args.build)
    if args.trials is None:
        args.trials = 1000 if args.long else 200
    if args.workers is None:
        args.workers = 6 if args.long else 4
    if args.trials < 1 or args.workers < 2:
        parser.error("--trials must be >= 1 and --workers >= 2 (one worker stays unfrozen)")
    return args


def write_dataset(directory, rng):
    """Write a small text of random English words; 40 KB is enough for
    training and validation windows of 16 bytes."""
    words = ("sweep trial worker lease daemon loss step model token batch layer head "
             "adam shampoo grid random seed fault crash restart result metric").split()
    path = os.path.join(directory, "text.txt")
    with open(path, "w", encoding="utf-8") as f:
        size = 0
        while size < 40000:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + ". "
            f.write(sentence)
            size += len(sentence)
    return path


def tiny_parameters(dataset, steps, eval_every):
    """Sweep parameters of a tiny run: 1 layer, d_model 16, batch 4 windows of
    16 bytes. A step takes well under a millisecond in a release build."""
    return {
        "dataset": {"value": dataset},
        "n_layer": {"value": 1},
        "d_model": {"value": 16},
        "n_head": {"value": 2},
        "seq_len": {"value": 16},
        "batch_size": {"value": 4},
        "steps": {"value": steps},
        "eval_every": {"value": eval_every},
        "eval_batches": {"value": 1},
    }


def chaos_spec(dataset, trials, seed, steps, eval_every):
    """A random sweep of tiny runs: tens of milliseconds each, so faults
    mostly hit the protocol path rather than the arithmetic."""
    parameters = tiny_parameters(dataset, steps, eval_every)
    parameters["optimizer"] = {"values": ["adam", "sm3", "shampoo"]}
    parameters["lr"] = {"distribution": "log_uniform_values", "min": 0.001, "max": 0.03}
    return {
        "name": "chaos",
        "method": "random",
        "run_cap": trials,
        "seed": seed,
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": parameters,
    }


def now_ms():
    return int(time.time() * 1000)


class Slot:
    """One worker position: its current process, frozen or not. A killed
    worker is replaced by a new process with the next generation's name."""

    def __init__(self, index):
        self.index = index
        self.generation = 0
        self.proc = None
        self.name = None
        self.frozen_since_ms = None
        self.thaw_at = None          # monotonic seconds
        self.restarts_while_frozen = 0
        self.held_at_freeze = []     # (trial, attempt) open in the database at the SIGSTOP
        self.log_mark_at_freeze = 0  # daemon log line count at the SIGSTOP


class Chaos:
    """The processes, the fault schedule and the fault counts of one run."""

    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.dir = harness.tmp_dir("sweepd-chaos-")
        self.state_dir = os.path.join(self.dir, "state")
        self.ckpt_dir = os.path.join(self.dir, "ck")
        self.cache_dir = os.path.join(self.dir, "cache")
        for path in (self.state_dir, self.ckpt_dir, self.cache_dir):
            os.makedirs(path)
        # Sanitizer builds run slower: scale every protocol deadline alike.
        self.heartbeat_timeout_s = harness.scaled(1.0)
        # The restart grace outlasts the longest freeze, so a worker frozen
        # across a daemon restart always re-presents its lease in time.
        self.freeze_range_s = (self.heartbeat_timeout_s * 1.5, self.heartbeat_timeout_s * 3.0)
        self.grace_s = self.freeze_range_s[1] + harness.scaled(2.0)
        self.daemon_args = ["--heartbeat-timeout", f"{self.heartbeat_timeout_s:g}",
                            "--grace", f"{self.grace_s:g}", "--log-level", "debug"]

        self.steps = 40 if args.long else 30
        self.eval_every = 5
        # Mean seconds between faults, whose gaps are exponentially distributed.
        self.fault_gap_s = harness.scaled(0.1 if args.long else 0.12)

        self.daemons = []
        self.daemon = None
        self.watcher = None
        self.sweep = None
        self.slots = [Slot(i) for i in range(args.workers)]
        self.all_workers = []
        self.counts = {"worker_kill": 0, "worker_term": 0, "worker_freeze": 0, "daemon_kill": 0,
                       "daemon_kill_in_write": 0}
        self.zombies = set()     # (trial, attempt) held by a frozen worker and requeued meanwhile
        self.unread_leases = set()  # the same, but the worker had not logged the lease
        self.violations = []

    # ---- processes ----

    def start_daemon(self):
        self.daemon = Daemon(state_dir=self.state_dir, args=self.daemon_args)
        self.daemons.append(self.daemon)

    def open_watcher(self):
        self.watcher = Client(self.daemon.socket_path)
        self.watcher.ok("watch", sweep=self.sweep)

    def start_worker(self, slot):
        slot.generation += 1
        slot.name = f"w{slot.index}g{slot.generation}"
        log_path = os.path.join(self.dir, f"{slot.name}.log")
        slot.proc = start_worker(self.daemon.socket_path, "--name", slot.name,
                                 "--checkpoint-dir", self.ckpt_dir, "--checkpoint-every", "10",
                                 "--cache-dir", self.cache_dir, log_path=log_path)
        slot.frozen_since_ms = None
        slot.thaw_at = None
        self.all_workers.append(slot.proc)

    # ---- database ----

    def db(self):
        uri = "file:" + os.path.join(self.state_dir, "sweepd.db") + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=30)

    def held_by(self, worker):
        with self.db() as db:
            return db.execute("SELECT trial, attempt FROM attempts WHERE worker = ? AND outcome IS NULL",
                              (worker,)).fetchall()

    def still_open(self, leases):
        with self.db() as db:
            return [(t, a) for t, a in leases
                    if db.execute("SELECT outcome IS NULL FROM attempts WHERE trial = ? AND attempt = ?",
                                  (t, a)).fetchone() == (1,)]

    def taken_back_since(self, worker, since_ms):
        """Leases of worker the daemon took back since since_ms: by the
        heartbeat timer, or at the end of a restart grace."""
        with self.db() as db:
            return db.execute("SELECT trial, attempt FROM attempts WHERE worker = ? AND "
                              "outcome IN ('heartbeat_timeout', 'restart') AND ended_ms >= ?",
                              (worker, since_ms)).fetchall()

    # ---- faults ----

    def kill_worker(self, slot, sig):
        if slot.frozen_since_ms is not None and sig != signal.SIGKILL:
            return
        status = slot.proc.kill(sig, timeout=30)
        if sig == signal.SIGTERM:
            self.counts["worker_term"] += 1
            # SIGTERM means: checkpoint, report preempted, say bye, exit 0.
            if status != 0:
                self.violations.append(f"worker {slot.name} exited {status} after SIGTERM")
        else:
            self.counts["worker_kill"] += 1
        slot.proc.check_sanitizers()
        self.start_worker(slot)

    def freeze_worker(self, slot):
        status = slot.proc.proc.poll()
        if status is not None:
            self.violations.append(f"worker {slot.name} exited with status {status} unprompted")
            slot.proc.check_sanitizers()
            self.start_worker(slot)
            return
        slot.proc.proc.send_signal(signal.SIGSTOP)
        slot.frozen_since_ms = now_ms()
        slot.restarts_while_frozen = 0
        slot.held_at_freeze = self.held_by(slot.name)
        slot.log_mark_at_freeze = self.daemon.log_mark()
        slot.thaw_at = time.monotonic() + self.rng.uniform(*self.freeze_range_s)
        self.counts["worker_freeze"] += 1

    def thaw_worker(self, slot):
        status = slot.proc.proc.poll()
        if status is not None:
            # Nothing here ends a frozen worker, so it died on its own.
            self.violations.append(f"worker {slot.name} exited with status {status} while frozen")
            slot.proc.check_sanitizers()
            self.start_worker(slot)
            return
        # A lease still open while the same daemon watched the whole freeze
        # must be taken back: by the heartbeat timer, or by the restart grace
        # when an earlier restart had cut the worker off and it was frozen
        # again before it reconnected. Wait for that line. A report already
        # in flight at the SIGSTOP may have closed the lease instead.
        waited = []
        if slot.restarts_while_frozen == 0:
            waited = self.still_open(slot.held_at_freeze)
            for trial, attempt in waited:
                self.daemon.wait_log(rf"trial={trial} attempt={attempt} worker={re.escape(slot.name)} "
                                     r"requeued: (heartbeat_timeout|restart)", timeout=30,
                                     since=slot.log_mark_at_freeze)
        # A lease the worker logged before the SIGSTOP makes a zombie. One
        # whose reply was still unread may be read after the SIGCONT (the
        # connection survived) or never (it was lost with the connection),
        # so its rejection is allowed but not awaited.
        taken_back = set(self.taken_back_since(slot.name, slot.frozen_since_ms)) | set(waited)
        log = slot.proc.log_text()
        zombies = {(t, a) for t, a in taken_back if f"trial={t} attempt={a} lease=" in log}
        self.unread_leases |= taken_back - zombies
        mark = self.daemon.log_mark()
        slot.proc.proc.send_signal(signal.SIGCONT)
        slot.frozen_since_ms = None
        slot.thaw_at = None
        # The woken worker still believes in those leases: its first message
        # about each must be rejected as stale.
        for trial, attempt in zombies:
            self.zombies.add((trial, attempt))
            self.daemon.wait_log(rf"trial={trial} attempt={attempt} worker={re.escape(slot.name)} "
                                 r"(stale lease rejected|re-presented a lease that is not current)",
                                 timeout=30, since=mark)

    def kill_daemon(self, in_write):
        self.watcher.close()
        if in_write:
            # Debug lines for a lease or a trial end are logged before the
            # iteration's commit, so killing right after one often lands
            # between the write and its commit.
            mark = self.daemon.log_mark()
            try:
                self.daemon.wait_log(r"leased$| -> completed$", timeout=5, since=mark)
                self.counts["daemon_kill_in_write"] += 1
            except TimeoutError:
                pass
        self.daemon.kill(signal.SIGKILL, timeout=30)
        self.counts["daemon_kill"] += 1
        self.daemon.check_sanitizers()
        for slot in self.slots:
            if slot.frozen_since_ms is not None:
                slot.restarts_while_frozen += 1
        self.start_daemon()
        self.open_watcher()

    def pick_fault(self):
        running = [s for s in self.slots if s.frozen_since_ms is None]
        kinds = ["worker_kill", "worker_term", "worker_freeze", "daemon_kill", "daemon_kill_in_write"]
        kind = self.rng.choices(kinds, [3, 3, 3, 1, 1])[0]
        # At least one worker stays unfrozen so the sweep always progresses.
        if kind == "worker_freeze" and len(running) <= 1:
            kind = "worker_kill"
        # A worker that has not connected yet may not have installed its
        # SIGTERM handler, and would die of the signal: kill it instead.
        if kind == "worker_term":
            running = [s for s in running if s.proc.log_mark() and "connected as" in s.proc.log_text()]
            if not running:
                kind = "worker_kill"
        if kind in ("worker_term", "worker_freeze"):
            return kind, self.rng.choice(running)
        if kind == "worker_kill":
            # Frozen workers are killed too, but rarely, so most freezes end
            # with a SIGCONT and a woken zombie.
            frozen = [s for s in self.slots if s.frozen_since_ms is not None]
            pool = frozen if frozen and self.rng.random() < 0.1 else [s for s in self.slots if s not in frozen]
            return kind, self.rng.choice(pool)
        return kind, None

    def apply_fault(self, kind, slot):
        if kind == "worker_kill":
            self.kill_worker(slot, signal.SIGKILL)
        elif kind == "worker_term":
            self.kill_worker(slot, signal.SIGTERM)
        elif kind == "worker_freeze":
            self.freeze_worker(slot)
        else:
            self.kill_daemon(in_write=kind == "daemon_kill_in_write")

    # ---- the run ----

    def sweep_status(self):
        return self.watcher.ok("status", sweep=self.sweep)

    def wait_finish_event(self, seconds):
        """Read watch events for up to seconds; returns True once the sweep
        finished."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                event = self.watcher.next_event(left / harness.TIMEOUT_SCALE)
            except TimeoutError:
                return False
            if event.get("event") == "sweep" and event.get("state") == "finished":
                return True

    def run(self):
        text = write_dataset(self.dir, self.rng)
        self.start_daemon()
        spec = chaos_spec(text, self.args.trials, self.args.seed, self.steps, self.eval_every)
        self.sweep = Client(self.daemon.socket_path).ok("submit", spec=spec)["sweep"]
        self.open_watcher()
        for slot in self.slots:
            self.start_worker(slot)

        deadline = time.monotonic() + harness.scaled(600 if self.args.long else 240)
        started = time.monotonic()
        # Faults stop once most trials are done: a daemon killed more often
        # than its restart grace never requeues the trials of workers that
        # died unseen, so the run needs a quiet tail to converge.
        faults_until_done = int(self.args.trials * 0.9)
        next_fault = time.monotonic() + self.rng.expovariate(1.0 / self.fault_gap_s)
        while True:
            if time.monotonic() > deadline:
                self.violations.append(f"the sweep did not finish within {deadline - started:.0f} s")
                break
            thaws = [s.thaw_at for s in self.slots if s.thaw_at is not None]
            wake = min([next_fault] + thaws) if next_fault else min(thaws + [deadline])
            if self.wait_finish_event(wake - time.monotonic()):
                break
            for slot in self.slots:
                if slot.thaw_at is not None and slot.thaw_at <= time.monotonic():
                    self.thaw_worker(slot)
            if next_fault and time.monotonic() >= next_fault:
                self.apply_fault(*self.pick_fault())
                status = self.sweep_status()
                if status["state"] == "finished":
                    break
                if status["done"] >= faults_until_done:
                    next_fault = None
                else:
                    next_fault = time.monotonic() + self.rng.expovariate(1.0 / self.fault_gap_s)
        elapsed = time.monotonic() - started

        # Wake the frozen, so their zombie reports meet the daemon before the end.
        for slot in self.slots:
            if slot.frozen_since_ms is not None:
                self.thaw_worker(slot)
        return elapsed

    def stop_all(self):
        for slot in self.slots:
            status = slot.proc.kill(signal.SIGTERM, timeout=30)
            slot.proc.check_sanitizers()
            if status != 0:
                self.violations.append(f"worker {slot.name} exited {status} after the final SIGTERM")
        self.watcher.close()
        self.daemon.stop(timeout=30)

    def cleanup(self):
        for proc in self.all_workers:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGCONT)
            proc.ensure_dead()
        for d in self.daemons:
            d.ensure_dead()


# ---- checks ----

def check_protocol(chaos, violations):
    """Status and trials through the protocol must agree with the database."""
    client = Client(chaos.daemon.socket_path)
    status = client.ok("status", sweep=chaos.sweep)
    trials = client.ok("trials", sweep=chaos.sweep, limit=100000)["trials"]
    client.close()
    if status["state"] != "finished":
        violations.append(f"status says the sweep is {status['state']}, expected finished")
    if status["done"] != status["total"] or status["total"] != chaos.args.trials:
        violations.append(f"status done={status['done']} total={status['total']}, expected "
                          f"{chaos.args.trials} of {chaos.args.trials}")
    counts = {state: 0 for state in status["counts"]}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
        if t["state"] not in TERMINAL:
            violations.append(f"trial {t['trial']} is {t['state']} in the trials reply")
    if counts != status["counts"]:
        violations.append(f"trials reply counts {counts} differ from status counts {status['counts']}")
    with chaos.db() as db:
        rows = dict(db.execute("SELECT id, attempt FROM trials WHERE sweep = ?", (chaos.sweep,)).fetchall())
    for t in trials:
        if rows.get(t["trial"]) != t["attempts"]:
            violations.append(f"trial {t['trial']}: trials reply says {t['attempts']} attempts, "
                              f"database {rows.get(t['trial'])}")


def check_database(chaos, violations):
    """Every invariant that the database alone can show. Returns figures for
    the summary line."""
    with chaos.db() as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            violations.append(f"PRAGMA integrity_check: {integrity}")
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            violations.append(f"PRAGMA foreign_key_check: {fk[:5]}")

        sweep_state = db.execute("SELECT state FROM sweeps WHERE id = ?", (chaos.sweep,)).fetchone()
        if sweep_state != ("finished",):
            violations.append(f"sweep state {sweep_state}, expected finished")
        trials = db.execute("SELECT id, idx, state, attempt, worker, final_loss, requeues FROM trials "
                            "WHERE sweep = ? ORDER BY idx", (chaos.sweep,)).fetchall()
        indexes = [t[1] for t in trials]
        if indexes != list(range(chaos.args.trials)):
            violations.append(f"trial indexes are not 0..{chaos.args.trials - 1}: {len(indexes)} rows")
        attempts = {}
        for trial, attempt, worker, outcome in db.execute(
                "SELECT trial, attempt, worker, outcome FROM attempts ORDER BY trial, attempt"):
            attempts.setdefault(trial, []).append((attempt, worker, outcome))
        duplicated_steps = db.execute("SELECT trial, step, count(*) FROM metrics GROUP BY trial, step "
                                      "HAVING count(*) > 1").fetchall()
        steps_by_trial = {}
        for trial, step in db.execute("SELECT trial, step FROM metrics"):
            steps_by_trial.setdefault(trial, set()).add(step)

    lost = duplicated = 0
    expected_steps = set(range(chaos.eval_every, chaos.steps + 1, chaos.eval_every))
    for trial, idx, state, attempt, worker, final_loss, _ in trials:
        rows = attempts.get(trial, [])
        if state not in TERMINAL:
            violations.append(f"trial {trial} (index {idx}) is {state}, not terminal")
        if state not in ("completed", "diverged"):
            lost += 1
            violations.append(f"trial {trial} (index {idx}) ended {state}")
        if [r[0] for r in rows] != list(range(1, attempt + 1)):
            violations.append(f"trial {trial}: attempts {[r[0] for r in rows]} are not 1..{attempt}")
        open_rows = [r for r in rows if r[2] is None]
        if open_rows:
            violations.append(f"trial {trial}: attempts {open_rows} never ended")
        completed = [r for r in rows if r[2] == "completed"]
        if state == "completed":
            if len(completed) != 1:
                duplicated += max(len(completed) - 1, 0)
                violations.append(f"trial {trial}: {len(completed)} completed attempts, expected 1")
            elif completed[0][0] != attempt or completed[0][1] != worker:
                duplicated += 1
                violations.append(f"trial {trial}: result from attempt {completed[0][0]} of "
                                  f"{completed[0][1]}, but the trial's current lease is attempt {attempt} "
                                  f"of {worker}")
            if final_loss is None:
                violations.append(f"trial {trial}: completed without a final loss")
            missing = expected_steps - steps_by_trial.get(trial, set())
            if missing:
                violations.append(f"trial {trial}: no metrics stored for steps {sorted(missing)}")
        elif completed:
            duplicated += len(completed)
            violations.append(f"trial {trial} is {state} but has completed attempts {completed}")
    if duplicated_steps:
        violations.append(f"metric steps stored twice: {duplicated_steps[:5]}")
    requeues = sum(1 for rows in attempts.values() for r in rows if r[2] in REQUEUE_OUTCOMES)
    return {"lost": lost, "duplicated": duplicated, "requeues": requeues, "attempts": attempts}


def check_acknowledged(chaos, attempts, violations):
    """Each final report a worker saw acknowledged is in the database under
    the same attempt. Returns the set of acknowledged (trial, attempt)."""
    outcome_of = {(trial, a[0]): a[2] for trial, rows in attempts.items() for a in rows}
    acknowledged = set()
    for proc in chaos.all_workers:
        for line in proc.lines:
            match = REPORTED_LINE.search(line)
            if not match:
                continue
            key = (int(match.group(2)), int(match.group(3)))
            acknowledged.add(key)
            allowed = REPORTED_OUTCOME.get(match.group(4), ())
            if outcome_of.get(key) not in allowed:
                violations.append(f"{proc.log_path}: acknowledged {match.group(4)} of trial {key[0]} attempt "
                                  f"{key[1]}, but the database has outcome {outcome_of.get(key)}")
    return acknowledged


def check_stale(chaos, attempts, acknowledged, violations):
    """Stale-lease rejections must match the woken zombies, or leases taken
    back from a frozen worker before it had read them. Two other cases are
    legitimate. The daemon stored a final report and was killed before its
    reply went out, so the worker, never acknowledged, re-presents the lease
    after reconnecting (a replay). Or the restart grace ran out while the
    worker was frozen or still reconnecting, so its lease was requeued just
    before it came back (a late return). Returns (rejections, replays)."""
    rejected = set()
    for d in chaos.daemons:
        for line in d.lines:
            match = STALE_LINE.search(line)
            if match:
                rejected.add((int(match.group(1)), int(match.group(2))))
    outcome_of = {(trial, a[0]): a[2] for trial, rows in attempts.items() for a in rows}
    missing = chaos.zombies - rejected
    if missing:
        violations.append(f"zombie leases never rejected as stale: {sorted(missing)[:10]}")
    replays = 0
    for key in sorted(rejected - chaos.zombies - chaos.unread_leases):
        outcome = outcome_of.get(key)
        if outcome in FINAL_OUTCOMES and key not in acknowledged and chaos.counts["daemon_kill"]:
            replays += 1
        elif outcome == "restart":
            pass
        elif key in acknowledged:
            violations.append(f"trial {key[0]} attempt {key[1]}: a message with the lease was rejected as "
                              f"stale after the worker's {outcome} report was acknowledged")
        else:
            violations.append(f"stale rejection of trial {key[0]} attempt {key[1]} (outcome {outcome}) "
                              f"matches no woken zombie")
    return len(rejected), replays


def main(argv):
    args = parse_args(argv)
    chaos = Chaos(args)
    violations = chaos.violations
    elapsed = 0.0
    try:
        elapsed = chaos.run()
        check_protocol(chaos, violations)
        chaos.stop_all()
        figures = check_database(chaos, violations)
        acknowledged = check_acknowledged(chaos, figures["attempts"], violations)
        stale, replays = check_stale(chaos, figures["attempts"], acknowledged, violations)
    except (AssertionError, ProtocolError, RuntimeError, TimeoutError, OSError, sqlite3.Error) as e:
        violations.append(f"{type(e).__name__}: {e}")
        figures, acknowledged, stale, replays = None, set(), 0, 0
    finally:
        chaos.cleanup()

    for v in violations[:50]:
        print("VIOLATION:", v, flush=True)
    c = chaos.counts
    lost = figures["lost"] if figures else "?"
    duplicated = figures["duplicated"] if figures else "?"
    print(f"chaos seed={args.seed} trials={args.trials} workers={args.workers} "
          f"sigkill={c['worker_kill']} sigterm={c['worker_term']} sigstop={c['worker_freeze']} "
          f"daemon_restarts={c['daemon_kill']} (in_write={c['daemon_kill_in_write']}) "
          f"requeues={figures['requeues'] if figures else '?'} zombies={len(chaos.zombies)} "
          f"stale_rejections={stale} (replays={replays}) acknowledged={len(acknowledged)} "
          f"lost={lost} duplicated={duplicated} seconds={elapsed:.1f} "
          f"violations={len(violations)}", flush=True)
    if violations:
        print(f"logs kept in {chaos.dir}", flush=True)
    else:
        harness._remove_tmp_dirs()
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
