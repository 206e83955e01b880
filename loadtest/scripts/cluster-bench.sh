#!/usr/bin/env bash
# Issue 3's cluster measurements on one machine: one-to-one chat through the single-process server
# (baseline), through one session node, and through two session nodes with each pair's users on
# the same owner or on different owners — the same harness, accounts and rates each time. All
# clients connect to edge 1 (127.0.0.1:36221). Results (JSON per run, summary.txt) go to $OUT.
#   loadtest/scripts/cluster-bench.sh   (RATE=1000 PAIRS=50 DURATION=15 WARMUP=2 KAFKA_LINGER_MS=0 ARCHIVE=1)
# WARMUP seconds at the start are kept out of the latency percentiles (see docs/loadtest.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
export WORK=${WORK:-/tmp/starling-cluster}
OUT=${OUT:-/tmp/starling-cluster-bench}
RATE=${RATE:-1000} PAIRS=${PAIRS:-50} DURATION=${DURATION:-15} WARMUP=${WARMUP:-2}
LT=$CARGO_TARGET_DIR/release/starling-loadtest
mkdir -p "$OUT"

chat() { # name args...
  local name=$1; shift
  "$LT" chat --host 127.0.0.1 --port 36221 --password secret --quiet --duration "$DURATION" --warmup-seconds "$WARMUP" --json-out "$OUT/$name.json" "$@" \
    > "$OUT/$name.txt" 2>&1 || { cat "$OUT/$name.txt"; return 1; }
  python3 - "$OUT/$name.json" "$name" >> "$OUT/summary.txt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["chat"]
lat = c["latency"]
print(f"{sys.argv[2]:<22} sent {c['sent']:>7} received {c['received']:>7} lost {c['lost']:>4} bounced {c['bounced']:>4}"
      f"  {c['throughput_per_second']:>8.0f} msg/s  p50 {lat['p50_us'] / 1000:>7.2f} ms  p99 {lat['p99_us'] / 1000:>8.2f} ms")
PY
  tail -1 "$OUT/summary.txt"
}

: > "$OUT/summary.txt"
loadtest/scripts/cluster-local.sh up 0 1 2000
chat single-rate --pairs "$PAIRS" --rate "$RATE"
chat single-saturation --pairs "$PAIRS" --rate 0 --window 16
loadtest/scripts/cluster-local.sh down

loadtest/scripts/cluster-local.sh up 1 1 2000
chat one-node-rate --pairs "$PAIRS" --rate "$RATE"
chat one-node-saturation --pairs "$PAIRS" --rate 0 --window 16
loadtest/scripts/cluster-local.sh down

loadtest/scripts/cluster-local.sh up 2 1 2000
loadtest/scripts/owner-pairs.py same "$PAIRS" > "$OUT/same.txt"
loadtest/scripts/owner-pairs.py cross "$PAIRS" > "$OUT/cross.txt"
chat two-same-rate --user-list "$OUT/same.txt" --users $((2 * PAIRS)) --rate "$RATE"
chat two-cross-rate --user-list "$OUT/cross.txt" --users $((2 * PAIRS)) --rate "$RATE"
chat two-same-saturation --user-list "$OUT/same.txt" --users $((2 * PAIRS)) --rate 0 --window 16
chat two-cross-saturation --user-list "$OUT/cross.txt" --users $((2 * PAIRS)) --rate 0 --window 16
loadtest/scripts/cluster-local.sh down
echo "summary in $OUT/summary.txt"
