#!/bin/sh
# make demo: a real optimizer sweep on the Brown corpus, end to end.
#
# Installs missing Debian packages (or prints the command), builds, prepares
# data/brown.txt, starts sweepd on a fresh state directory under build/ with
# one 1-thread worker per core, submits sweep_specs/demo.json, shows
# `sweepctl watch` until the sweep is done, prints the winning-ticket table by
# optimizer and the best trial of each optimizer, then stops sweepd and leaves
# the database for inspection.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

sh tools/install_deps.sh
make -j2 BUILD=build programs >/dev/null
make data

state="$top/build/demo-state"
sock="$state/sweepd.sock"
bin="$top/build"
rm -rf "$state"
mkdir -p "$state"
log="$state/sweepd.log"

echo "demo: starting sweepd (state in $state, log in $log)"
"$bin/sweepd" --state-dir "$state" --workers auto --foreground 2> "$log" &
daemon=$!
stop_daemon() {
    if kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon"
        wait "$daemon" || true
    fi
}
trap stop_daemon EXIT INT TERM

# sweepd logs "listening on" once its socket accepts connections.
tries=0
until grep -q 'listening on' "$log" 2>/dev/null; do
    if ! kill -0 "$daemon" 2>/dev/null; then
        echo "demo: sweepd exited early; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { echo "demo: sweepd did not start in 30 s" >&2; exit 1; }
    sleep 0.1
done

ctl() { "$bin/sweepctl" --connect "unix:$sock" "$@"; }

sweep=$(ctl --json submit sweep_specs/demo.json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep"])')
echo "demo: submitted sweep $sweep (sweep_specs/demo.json)"

ctl watch "$sweep" --until-done

echo
echo "== winning tickets by optimizer (threshold from sweep_specs/demo.json)"
ctl tickets "$sweep" --by optimizer
echo
echo "== best trial of each optimizer"
for opt in adam sm3 shampoo; do
    echo "-- $opt"
    ctl trials "$sweep" --state completed --sort final_loss --limit 1 --where "optimizer=$opt"
done

stop_daemon
trap - EXIT INT TERM
cat <<MSG

demo: done. sweepd is stopped; the database is $state/sweepd.db.
Inspect it with sweepctl after starting the daemon again on the same state
directory (without --foreground it detaches once it listens):
  build/sweepd --state-dir $state
  build/sweepctl --connect unix:$sock status $sweep
  build/sweepctl --connect unix:$sock trials $sweep --sort final_loss --limit 10
  build/sweepctl --connect unix:$sock tickets $sweep --threshold 2.5 --by optimizer
  build/sweepctl --connect unix:$sock export $sweep --format csv > demo.csv
  kill \$(cat $state/sweepd.lock)      # the lock file contains the daemon's pid
or with the sqlite3 shell, read-only, whether or not sweepd runs:
  sqlite3 -readonly $state/sweepd.db \\
    "SELECT id, state, final_loss, json_extract(params, '\$.optimizer') FROM trials ORDER BY final_loss LIMIT 5"
MSG
