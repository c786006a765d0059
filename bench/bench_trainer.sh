#!/bin/sh
# Trainer throughput: sweep-train's engine (bench_trainer) against PyTorch CPU
# training the same architecture (bench_trainer_torch.py), side by side in one
# run, for configs S, M, M256 and L at 1 and 2 threads. It also reports the
# sgemm-only floor and the achieved fraction, peak memory, and two 1-thread
# runs at once against one. Prints a markdown table; raw JSON lines go to
# BUILD/bench-trainer.jsonl.
#
#   sh bench/bench_trainer.sh BUILD
#
# BENCH_SECONDS (default 3) is the timed part of each run. BENCH_ROUNDS
# (default 3) alternates ours and PyTorch that many times per config and
# thread count, and the table keeps each side's best round, so that a burst of
# load from other jobs on a shared machine does not decide the ratio.
set -u
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/$build/bench/bench_trainer"
torch_script="$top/bench/bench_trainer_torch.py"
python=${PYTHON:-/usr/bin/python3}
secs=${BENCH_SECONDS:-3}
rounds=${BENCH_ROUNDS:-3}
configs=${BENCH_CONFIGS:-"S M M256 L"}

if [ ! -x "$bin" ]; then
    echo "bench_trainer: $bin not built; run make BUILD=$build benches" >&2
    exit 1
fi
have_torch=1
if ! "$python" -c "import torch" 2>/dev/null; then
    have_torch=0
    echo "bench_trainer: python3-torch is not installed; PyTorch columns are skipped" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Real English text that every Debian system ships (about 300 kB).
cat /usr/share/common-licenses/* > "$tmp/text.txt"
out="$top/$build/bench-trainer.jsonl"
: > "$out"

status=0
for config in $configs; do
    for threads in 1 2; do
        round=0
        while [ "$round" -lt "$rounds" ]; do
            "$bin" --data "$tmp/text.txt" --config "$config" --threads "$threads" --seconds "$secs" >> "$out" ||
                status=1
            if [ "$have_torch" = 1 ]; then
                "$python" "$torch_script" --data "$tmp/text.txt" --config "$config" --threads "$threads" \
                    --seconds "$secs" >> "$out" || status=1
            fi
            round=$((round + 1))
        done
    done
done

# One 1-thread run alone, then two at once, BENCH_ROUNDS times. Lines are
# tagged "single" or "pair" and the round number.
for config in $(echo "$configs" | tr ' ' '\n' | grep -E '^(S|M)$'); do
    round=0
    while [ "$round" -lt "$rounds" ]; do
        "$bin" --data "$tmp/text.txt" --config "$config" --threads 1 --seconds "$secs" |
            sed "s/\"impl\":\"sweep-train\"/\"impl\":\"single\",\"round\":$round/" >> "$out" || status=1
        "$bin" --data "$tmp/text.txt" --config "$config" --threads 1 --seconds "$secs" > "$tmp/pair_a" &
        a=$!
        "$bin" --data "$tmp/text.txt" --config "$config" --threads 1 --seconds "$secs" > "$tmp/pair_b" &
        b=$!
        wait $a || status=1
        wait $b || status=1
        sed "s/\"impl\":\"sweep-train\"/\"impl\":\"pair\",\"round\":$round/" "$tmp/pair_a" "$tmp/pair_b" >> "$out"
        round=$((round + 1))
    done
done

"$python" - "$out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def best_rounds(impl):
    best = {}
    for r in rows:
        key = (r["config"], r["threads"])
        if r["impl"] == impl and (key not in best or r["best_tokens_per_s"] > best[key]["best_tokens_per_s"]):
            best[key] = r
    return best
ours, torch = best_rounds("sweep-train"), best_rounds("pytorch")
targets = {"S": 2.0, "M": 1.6, "M256": 2.0, "L": 1.4}
order = ["S", "M", "M256", "L"]
print("Tokens/s of the fastest step of the best round (that round's mean in brackets); ratio = ours / PyTorch, fastest steps.")
print()
print("| config | threads | sweep-train tok/s | PyTorch tok/s | ratio | 1-thread target | sgemm floor ms | step ms | floor fraction | peak RSS MB ours / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(ours, key=lambda k: (order.index(k[0]), k[1])):
    o, t = ours[key], torch.get(key)
    ratio = "%.2fx" % (o["best_tokens_per_s"] / t["best_tokens_per_s"]) if t else "-"
    theirs = "%.0f (%.0f)" % (t["best_tokens_per_s"], t["tokens_per_s"]) if t else "-"
    target = "%.1fx" % targets[key[0]] if key[1] == 1 else ""
    print("| %s | %d | %.0f (%.0f) | %s | %s | %s | %.1f | %.1f | %.2f | %.0f / %s |" % (
        key[0], key[1], o["best_tokens_per_s"], o["tokens_per_s"], theirs, ratio, target, o["sgemm_ms"],
        o["best_step_ms"], o["sgemm_fraction"], o["peak_rss_bytes"] / 2**20,
        "%.0f" % (t["peak_rss_bytes"] / 2**20) if t else "-"))
pairs, singles = {}, {}
for r in rows:
    if r["impl"] == "pair":
        pairs.setdefault((r["config"], r["round"]), []).append(r["tokens_per_s"])
    elif r["impl"] == "single":
        singles[(r["config"], r["round"])] = r["tokens_per_s"]
for config in order:
    rounds = [(sum(tps) / singles[key], key[1], tps, singles[key]) for key, tps in pairs.items()
              if key[0] == config and len(tps) == 2 and key in singles]
    if not rounds:
        continue
    ratio, rnd, tps, single = max(rounds)
    print("\ntwo 1-thread runs at once, config %s, best of %d rounds (mean tok/s): %.0f + %.0f = %.0f, "
          "%.2fx one run alone just before (%.0f); target 1.9x" % (config, len(rounds), tps[0], tps[1], sum(tps), ratio, single))
EOF
exit $status
