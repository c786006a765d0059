#!/bin/sh
# Builds the libFuzzer targets in tests/fuzz/fuzz_*.c with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for FUZZ_SECONDS
# (default 60) on a copy of its committed seed corpus
# (tests/fuzz/corpus/NAME), with the dictionary tests/fuzz/NAME.dict when one
# exists. New inputs found stay in build-fuzz/corpus/NAME;
# a crash leaves its input in build-fuzz/ and fails the run.
#
#   make fuzz                      # 60 s per target
#   FUZZ_SECONDS=1800 make fuzz    # the long run
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
seconds=${FUZZ_SECONDS:-60}
make -j2 BUILD=build-fuzz SAN=fuzz CC=clang fuzzers
status=0
for bin in build-fuzz/fuzz/fuzz_*; do
    name=$(basename "$bin" | sed 's/^fuzz_//')
    corpus="build-fuzz/corpus/$name"
    mkdir -p "$corpus"
    cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    dict=""
    if [ -f "tests/fuzz/$name.dict" ]; then
        dict="-dict=../tests/fuzz/$name.dict"
    fi
    echo "== fuzz $name for $seconds s"
    if ! (cd build-fuzz && "../$bin" -max_total_time="$seconds" -max_len=65536 \
            -print_final_stats=1 $dict "../$corpus" 2>&1 | tail -n 25); then
        status=1
    fi
done
exit $status
