#!/bin/sh
# Optimizer overhead on config M: Shampoo (precondition_every 1, 10, 100) and
# SM3 against Adam at batch 16 and 256, on 1 and 2 threads, and whole
# training steps at batch 16 with the synchronous and asynchronous root
# refresh. These are the commands behind docs/BENCHMARKS.md ("Optimizer
# overhead"); bench/bench_optim.c explains the method and the clocks.
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
# Shampoo alike. CPU-time clocks keep the figures steady on a shared
# machine; the last two runs give wall time, which on an idle machine is
# what a user sees.
status=0
"$bin" --batch 16 --repeats 7 --threads 1 --clock cpu || status=1
"$bin" --batch 256 --repeats 3 --threads 1 --clock cpu || status=1
"$bin" --batch 16 --repeats 5 --threads 1 --clock cpu --root-method newton || status=1
"$bin" --batch 16 --repeats 5 --threads 2 --clock thread || status=1
"$bin" --batch 16 --repeats 3 --threads 1 --clock thread --end-to-end 20 || status=1
for threads in 1 2; do
    "$bin" --batch 16 --repeats 3 --threads "$threads" --end-to-end 20 || status=1
done
exit $status
