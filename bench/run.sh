#!/bin/sh
# Runs every benchmark script bench/bench_*.sh with the build directory as its
# argument. Results go to stdout and into docs/BENCHMARKS.md by hand.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
status=0
for script in "$top"/bench/bench_*.sh; do
    [ -f "$script" ] || continue
    echo "== $(basename "$script")"
    sh "$script" "$build" || status=1
done
exit $status
