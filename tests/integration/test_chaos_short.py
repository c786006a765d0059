"""The short chaos run of make test: chaos.py with its default 200 trials and
4 workers under a fixed seed, against the build being tested. The long run
is make chaos. See chaos.py for the faults and the invariants checked.
"""

import os

import chaos
import harness


def test_chaos_short_run():
    status = chaos.main(["--build", harness.build_dir(), "--seed", "7"])
    if status != 0:
        os.environ["SWEEPD_KEEP_TMP"] = "1"  # keep the daemon and worker logs
    assert status == 0, "the chaos run found violations; see the VIOLATION lines above"


if __name__ == "__main__":
    harness.main(globals())
