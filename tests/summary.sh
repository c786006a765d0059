#!/bin/sh
# Adds up the result files of tests/run.sh over several build trees.
passed=0
failed=0
for f in "$@"; do
    [ -f "$f" ] || continue
    p=$(grep -c '^PASS ' "$f")
    q=$(grep -c '^FAIL ' "$f")
    passed=$((passed + p))
    failed=$((failed + q))
done
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
