"""The short chaos run of make test: chaos.py with its default 200 trials and
4 workers under a fixed seed, against the build being tested. The long run
is make chaos. See chaos.py for the faults and the invariants checked.
"""

import harness
import chaos


def test_chaos_short_run():
    status = chaos.main(["--build", harness.build_dir(), "--seed", "7"])
    assert status == 0, "the chaos run found violations; see the VIOLATION lines above"


if __name__ == "__main__":
    harness.main(globals())
