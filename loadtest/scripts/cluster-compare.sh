#!/usr/bin/env bash
# Two builds of Starling on the local cluster (2 session nodes, 1 edge, Kafka, Redis, Cassandra),
# alternately, in one sitting: 1,000 pairs whose two users are owned by different session nodes,
# chat at an even aggregate rate (open loop) and closed loop (one message in flight per sender).
# For changes to the cluster path that must not cost speed.
#   loadtest/scripts/cluster-compare.sh BEFORE_BIN AFTER_BIN [ROUNDS]   (default 2: A B A B)
# RATE (default 2000) msg/s; DURATION (default 15) s per run. The harness is the release
# starling-loadtest of $CARGO_TARGET_DIR. Results: $OUT/{before,after}-{rate,closed}-N.json and
# summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
BEFORE=$1 AFTER=$2 ROUNDS=${3:-2}
RATE=${RATE:-2000} DURATION=${DURATION:-15} PAIRS=1000
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
OUT=${OUT:-/tmp/starling-cluster-compare}
LT=$CARGO_TARGET_DIR/release/starling-loadtest
mkdir -p "$OUT"
: > "$OUT/summary.txt"

run() { # build-name round
  local name=$1 round=$2 bin=$3
  # More accounts than pairs need: the partitions split the users unevenly between the nodes.
  STARLING_BIN=$bin loadtest/scripts/cluster-local.sh up 2 1 $((3 * PAIRS)) > "$OUT/$name-$round-cluster.txt" 2>&1
  loadtest/scripts/owner-pairs.py cross "$PAIRS" $((3 * PAIRS)) > "$OUT/cross.txt"
  for mode in rate closed; do
    local args=(--rate "$RATE"); [ "$mode" = closed ] && args=(--rate 0 --window 1)
    "$LT" chat --host 127.0.0.1 --port 36221 --password secret --quiet --duration "$DURATION" --warmup-seconds 2 \
      --user-list "$OUT/cross.txt" --users $((2 * PAIRS)) "${args[@]}" --json-out "$OUT/$name-$mode-$round.json" > "$OUT/$name-$mode-$round.txt" 2>&1 || true
    python3 - "$OUT/$name-$mode-$round.json" "$name $mode #$round" >> "$OUT/summary.txt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["chat"]; lat = c["latency"]
print(f"{sys.argv[2]:<18} sent {c['sent']:>7} received {c['received']:>7} lost {c['lost']:>3}  {c['throughput_per_second']:>7.0f} msg/s"
      f"  p50 {lat['p50_us'] / 1000:>6.2f} ms  p99 {lat['p99_us'] / 1000:>7.2f} ms")
PY
    tail -1 "$OUT/summary.txt"
  done
  loadtest/scripts/cluster-local.sh down > /dev/null 2>&1
}

for round in $(seq "$ROUNDS"); do
  run before "$round" "$BEFORE"
  run after "$round" "$AFTER"
done
echo "summary in $OUT/summary.txt"
