"""Comparison points for bench/bench_daemon.sh, printed as JSON lines:

  optuna  Optuna ask/tell on its SQLite (RDB) storage with P processes. Each
          trial is reported with tell() right after ask(), so the figure is
          Optuna's storage overhead per trial lifecycle (Debian's python3-optuna).
  floor   a raw SQLite loop in one process: per lifecycle one transaction that
          inserts a trial row and one that updates it, WAL and synchronous
          FULL as sweepd uses; the cost of durability with no protocol at all.

usage: optuna_compare.py DIR [--trials N] [--processes P]
"""

import argparse
import json
import multiprocessing
import os
import sqlite3
import sys
import time


def optuna_worker(url, name, count):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url)
    for _ in range(count):
        trial = study.ask()
        x = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        study.tell(trial, x)


def run_optuna(directory, trials, processes):
    try:
        import optuna
    except ImportError:
        return {"bench": "optuna", "skipped": "python3-optuna is not installed"}
    url = "sqlite:///" + os.path.join(directory, "optuna.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="bench", storage=url, sampler=optuna.samplers.RandomSampler())
    per = trials // processes
    start = time.monotonic()
    procs = [multiprocessing.Process(target=optuna_worker, args=(url, "bench", per)) for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.monotonic() - start
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    result = {"bench": "optuna", "version": optuna.__version__, "processes": processes,
              "lifecycles": per * processes, "seconds": round(seconds, 3),
              "lifecycles_per_s": round(per * processes / seconds)}
    if failed:
        result["failed_processes"] = failed
    return result


def run_floor(directory, trials):
    db = sqlite3.connect(os.path.join(directory, "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, state TEXT, params TEXT, final_loss REAL)")
    start = time.monotonic()
    for i in range(trials):
        db.execute("BEGIN")
        cur = db.execute("INSERT INTO trials (state, params) VALUES ('running', ?)", (json.dumps({"lr": i}),))
        db.execute("COMMIT")
        db.execute("BEGIN")
        db.execute("UPDATE trials SET state = 'completed', final_loss = ? WHERE id = ?", (1.0, cur.lastrowid))
        db.execute("COMMIT")
    seconds = time.monotonic() - start
    return {"bench": "sqlite_floor", "sqlite": sqlite3.sqlite_version, "lifecycles": trials,
            "seconds": round(seconds, 3), "lifecycles_per_s": round(trials / seconds)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(run_floor(args.directory, args.trials)), flush=True)
    print(json.dumps(run_optuna(args.directory, args.trials, args.processes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
