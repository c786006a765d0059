#!/bin/sh
# Runs every unit test binary in BUILD/tests and every integration test script
# in tests/integration against the programs in BUILD. Prints one line per test
# and closes with "N passed, N failed"; exits non-zero when any test failed.
#
#   sh tests/run.sh BUILD [NAME_FILTER]
#
# Integration tests are Python 3 scripts (Debian's /usr/bin/python3, standard
# library and numpy only). Each test gets its own timeout (TEST_TIMEOUT seconds,
# default 600) and its output goes to BUILD/test-logs/NAME.log.
set -u
build=${1:?usage: tests/run.sh BUILD [FILTER]}
filter=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$top" && cd "$build" && pwd)
logs="$build/test-logs"
results="$build/test-results.txt"
mkdir -p "$logs"
: > "$results"
timeout_s=${TEST_TIMEOUT:-600}
python=${PYTHON:-/usr/bin/python3}

san=0
case "$build" in *-san) san=1 ;; esac
export SWEEPD_BUILD="$build" SWEEPD_SAN="$san" SWEEPD_TOP="$top"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

passed=0
failed=0
failed_names=""

run_one() {
    name=$1; shift
    case "$name" in *"$filter"*) ;; *) return ;; esac
    mkdir -p "$logs/$(dirname "$name")"
    start=$(date +%s)
    if (cd "$top" && timeout -k 10 "$timeout_s" "$@") > "$logs/$name.log" 2>&1; then
        status=PASS
        passed=$((passed + 1))
    else
        status=FAIL
        failed=$((failed + 1))
        failed_names="$failed_names $name"
    fi
    secs=$(( $(date +%s) - start ))
    printf '%s %-40s %4ss\n' "$status" "$name" "$secs"
    echo "$status $name $secs" >> "$results"
    if [ "$status" = FAIL ]; then
        echo "---- last lines of $logs/$name.log"
        tail -n 30 "$logs/$name.log"
        echo "----"
    fi
}

for bin in "$build"/tests/test_*; do
    [ -x "$bin" ] || continue
    run_one "unit/$(basename "$bin")" "$bin"
done

for script in "$top"/tests/integration/test_*.py; do
    [ -f "$script" ] || continue
    if [ "$san" = 1 ] && grep -q '^# release-only' "$script"; then
        continue
    fi
    run_one "integration/$(basename "$script" .py)" "$python" "$script"
done

echo "build $(basename "$build"):$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
