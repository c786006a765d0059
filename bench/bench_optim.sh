#!/bin/sh
# Optimizer overhead on config M: Shampoo (precondition_every 1, 10, 100) and
# SM3 against Adam at batch 16 and 256. See bench/bench_optim.c for how the
# step is split and docs/BENCHMARKS.md ("Optimizer overhead") for results.
#
#   sh bench/bench_optim.sh BUILD        (run by bench/run.sh)
set -u
build=${1:-build}
bin="$build/bench/bench_optim"
if [ ! -x "$bin" ]; then
    echo "bench_optim: $bin is missing; build it with make BUILD=$build benches" >&2
    exit 1
fi
# One BLAS thread by default: on a small shared machine it gives steadier
# medians than two threads that compete with other load.
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS
status=0
for batch in 16 256; do
    "$bin" --batch "$batch" --repeats 5 || status=1
done
"$bin" --batch 16 --repeats 5 --root-method newton || status=1
exit $status
