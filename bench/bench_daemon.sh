#!/bin/sh
# sweepd throughput: bench/loadgen.c drives a real sweepd over its unix socket
# with N simulated workers that lease a trial and complete it at once.
# Prints JSON lines: lifecycles/s, lease latency, commits/s and requests per
# commit for N = 1, 10, 100, 1000 on an empty sweep (closed loop, plus an
# open loop of 1000 workers offering 2000 and 10000 leases/s, plus synchronous=normal
# beside full), again at 100k and 1M finished trials, the time of status and
# tickets on the 1M-trial sweep (grouped tickets cold, then with the cached
# counts), memory per idle connection, and beside them Optuna ask/tell and a
# raw SQLite loop (bench/optuna_compare.py).
#
#   sh bench/bench_daemon.sh BUILD          (BENCH_DAEMON_MAX=100000 stops the fill early)
set -eu
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$top" && cd "$build" && pwd)
max=${BENCH_DAEMON_MAX:-1000000}
dir=$(mktemp -d /tmp/bench-sweepd.XXXXXX)
sock="$dir/sweepd.sock"
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$dir"' EXIT

# Starts sweepd with the given extra options and waits for its ready line.
start() {
    : > "$dir/log"
    "$build/sweepd" --state-dir "$dir" --foreground --max-connections 4096 "$@" 2>>"$dir/log" &
    pid=$!
    while ! grep -q "listening on" "$dir/log"; do
        if ! kill -0 "$pid" 2>/dev/null; then cat "$dir/log" >&2; exit 1; fi
        sleep 0.05
    done
}
stop() {
    kill "$pid"
    wait "$pid"
    pid=""
}
lifecycles() {  # WORKERS COUNT LABEL [loadgen options]
    printf '{"phase":"%s",' "$3"
    workers=$1 count=$2
    shift 3
    "$build/bench/loadgen" --socket "$sock" --workers "$workers" --lifecycles "$count" "$@" | sed 's/^{//'
}
finished() {
    sqlite3 "$dir/sweepd.db" "SELECT count(*) FROM trials WHERE state = 'completed'"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
start
/usr/bin/python3 - "$sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
spec = {"name": "bench", "method": "random", "run_cap": 5000000,
        "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                       "lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.1}}}
s.sendall(json.dumps({"id": 1, "op": "submit", "spec": spec}).encode() + b"\n")
reply = json.loads(s.makefile().readline())
assert reply["ok"] and reply["sweep"] == 1, reply
PY
# Before any load, so freed memory does not hide the growth.
"$build/bench/loadgen" --socket "$sock" --idle 1000 --pid "$pid"
echo "synchronous=full (default), empty sweep:"
lifecycles 1 2000 "empty,1"
lifecycles 10 10000 "empty,10"
lifecycles 100 40000 "empty,100"
lifecycles 1000 40000 "empty,1000"
# Open loop: a fleet of 1000 workers asking for 2000 leases/s in total.
lifecycles 1000 20000 "empty,1000,open2000" --rate 2000
lifecycles 1000 50000 "empty,1000,open10000" --rate 10000
stop

echo "synchronous=normal, same sweep:"
start --synchronous normal
lifecycles 1 2000 "normal,1"
lifecycles 100 40000 "normal,100"
lifecycles 1000 40000 "normal,1000"
stop

# Fill with synchronous=normal (same rows, faster), then measure with full.
for target in 100000 "$max"; do
    [ "$target" -le "$max" ] || continue
    have=$(finished)
    if [ "$have" -lt "$target" ]; then
        start --synchronous normal
        "$build/bench/loadgen" --socket "$sock" --workers 100 --lifecycles $((target - have)) >/dev/null
        stop
    fi
    start
    echo "synchronous=full, $(finished) finished trials:"
    lifecycles 100 40000 "at$target,100"
    lifecycles 1000 40000 "at$target,1000"
    lifecycles 1000 20000 "at$target,1000,open2000" --rate 2000
    lifecycles 1000 50000 "at$target,1000,open10000" --rate 10000
    stop
done

start
echo "queries on $(finished) finished trials:"
"$build/bench/loadgen" --socket "$sock" --query status --sweep 1 --repeat 5
"$build/bench/loadgen" --socket "$sock" --query tickets --sweep 1 --repeat 5 --extra ',"threshold":1.5'
# The first grouped request counts per value with one index scan; the
# following ones use the counts the daemon then keeps.
"$build/bench/loadgen" --socket "$sock" --query tickets --sweep 1 --repeat 1 --extra ',"threshold":1.5,"by":"optimizer"'
"$build/bench/loadgen" --socket "$sock" --query tickets --sweep 1 --repeat 5 --extra ',"threshold":1.5,"by":"optimizer"'
stop

echo "comparison points:"
/usr/bin/python3 "$top/bench/optuna_compare.py" "$dir" --trials 2000 --processes 4
