#!/bin/sh
# Optimizer overhead on config M: Shampoo (precondition_every 1, 10, 100) and
# SM3 against Adam at batch 16 and 256, at 1 and 2 threads, then whole
# training steps at batch 16 with the synchronous and asynchronous root
# refresh. See bench/bench_optim.c for how the step is split and
# docs/BENCHMARKS.md ("Optimizer overhead") for results.
#
#   sh bench/bench_optim.sh BUILD        (run by bench/run.sh)
set -u
build=${1:-build}
bin="$build/bench/bench_optim"
if [ ! -x "$bin" ]; then
    echo "bench_optim: $bin is missing; build it with make BUILD=$build benches" >&2
    exit 1
fi
# bench_optim sets OpenBLAS's thread count itself (--threads), for Adam and
# Shampoo alike.
status=0
for threads in 1 2; do
    for batch in 16 256; do
        "$bin" --batch "$batch" --repeats 5 --threads "$threads" || status=1
    done
done
"$bin" --batch 16 --repeats 5 --root-method newton || status=1
for threads in 1 2; do
    "$bin" --batch 16 --repeats 3 --threads "$threads" --end-to-end 20 || status=1
done
exit $status
