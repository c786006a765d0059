"""Every spec in sweep_specs/ validates and is accepted by a real sweepd, with
the trial count its method implies, and its first trials carry parameters the
trainer accepts (checked with sweep-train on a tiny corpus, which parses the
same hyperparameter table)."""

import glob
import json
import os
import subprocess

import harness

SPEC_DIR = os.path.join(harness.REPO, "sweep_specs")


def spec_paths():
    paths = sorted(glob.glob(os.path.join(SPEC_DIR, "*.json")))
    assert paths, f"no specs found in {SPEC_DIR}"
    return paths


def load_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def expected_size(spec):
    """Trial count implied by the spec: run_cap for random, the product of
    the value counts for a grid (the example grids use value/values only)."""
    if spec["method"] == "random":
        return spec["run_cap"]
    size = 1
    for p in spec["parameters"].values():
        if "values" in p:
            size *= len(p["values"])
    return size if "run_cap" not in spec else min(size, spec["run_cap"])


def submit_text(client, op, text, **fields):
    """Send the spec text verbatim (as sweepctl does), so integer and float
    literals keep their kinds."""
    submit_text.next_id += 1
    request_id = 100000 + submit_text.next_id
    extra = "".join(f',"{k}":{json.dumps(v)}' for k, v in fields.items())
    line = f'{{"id":{request_id},"op":"{op}","spec":{" ".join(text.split(chr(10)))}{extra}}}\n'
    client.send_raw(line.encode())
    return client.reply(request_id)


submit_text.next_id = 0


def test_specs_validate_and_submit():
    with harness.Daemon() as daemon, harness.Client(daemon.socket_path) as client:
        for path in spec_paths():
            text = load_text(path)
            spec = json.loads(text)
            name = os.path.basename(path)

            reply = submit_text(client, "validate", text, show=3)
            assert reply.get("ok"), f"{name}: validate failed: {reply}"
            assert reply["size"] == expected_size(spec), f"{name}: size {reply['size']}"
            assert len(reply["trials"]) == 3, f"{name}: {len(reply['trials'])} trials shown"

            reply = submit_text(client, "submit", text)
            assert reply.get("ok"), f"{name}: submit failed: {reply}"
            assert reply["size"] == expected_size(spec), f"{name}: size {reply['size']}"

        listed = client.ok("list")["sweeps"]
        assert len(listed) == len(spec_paths()), listed


def test_spec_trials_accepted_by_trainer():
    """The first trials of each spec parse as a sweep-train config, with the
    model shrunk and the dataset replaced so the check runs in a second."""
    work = harness.tmp_dir()
    corpus = os.path.join(work, "tiny.txt")
    with open(corpus, "w") as f:
        f.write("the quick brown fox jumps over the lazy dog. " * 400)

    with harness.Daemon() as daemon, harness.Client(daemon.socket_path) as client:
        for path in spec_paths():
            reply = submit_text(client, "validate", load_text(path), show=6)
            assert reply.get("ok"), reply
            for params in reply["trials"]:
                config = dict(params)
                config.update(n_layer=1, d_model=16, n_head=2, seq_len=16, batch_size=2,
                              steps=2, eval_every=1, eval_batches=1, warmup_steps=0)
                config_path = os.path.join(work, "config.json")
                with open(config_path, "w") as f:
                    json.dump(config, f)
                run = subprocess.run(
                    [harness.program("sweep-train"), "--data", corpus, "--config", config_path],
                    capture_output=True, text=True, timeout=harness.scaled(60))
                assert run.returncode in (0, 3), (
                    f"{os.path.basename(path)}: sweep-train rejected {params}: {run.stderr[-800:]}")


if __name__ == "__main__":
    harness.main(globals())
