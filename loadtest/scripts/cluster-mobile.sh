#!/usr/bin/env bash
# Issue 13's `mobile` scenario on a 2-edge, 2-session-node cluster on one machine (Kafka, Redis,
# Cassandra; loadtest/scripts/cluster-local.sh): receivers log in through edge 1, every other
# resumption goes through edge 2 (--resume-elsewhere-port), the rest through edge 1.
#   loadtest/scripts/cluster-mobile.sh   (ROUND_PAIRS=500 ROUND_RATE=500 STORM=10000 RUNS="rounds storm")
# rounds: ROUND_PAIRS receivers with their own senders at ROUND_RATE msg/s for 30 s, 10 % of them
# dropping every 5 s; storm: STORM receivers fed by 100 senders at 500 msg/s, all dropping at once
# half-way through 20 s and coming back after 2 s. JSON reports and a summary in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
export WORK=${WORK:-/tmp/starling-cluster}
OUT=${OUT:-/tmp/starling-cluster-mobile}
ROUND_PAIRS=${ROUND_PAIRS:-500} ROUND_RATE=${ROUND_RATE:-500} STORM=${STORM:-10000} RUNS=${RUNS:-rounds storm}
LT=$CARGO_TARGET_DIR/release/starling-loadtest
mkdir -p "$OUT"
loadtest/scripts/cluster-local.sh up 2 2 $((2 * ROUND_PAIRS + STORM + 200))
trap 'loadtest/scripts/cluster-local.sh down' EXIT
COMMON=(--host 127.0.0.1 --port 36221 --resume-elsewhere-port 36222 --domain localhost --password secret
        --source-addresses 127.0.0.2-127.0.0.20 --quiet --concurrency 200)
if [[ " $RUNS " == *" rounds "* ]]; then
  "$LT" mobile "${COMMON[@]}" --pairs "$ROUND_PAIRS" --rate "$ROUND_RATE" --duration 30 --drop-every 5 --drop-fraction 0.1 \
    --json-out "$OUT/rounds.json" | tee "$OUT/rounds.txt"
fi
if [[ " $RUNS " == *" storm "* ]]; then
  "$LT" mobile "${COMMON[@]}" --first-user $((2 * ROUND_PAIRS + 1)) --pairs "$STORM" --senders 100 --rate 500 --duration 20 --storm \
    --reconnect-delay-ms 2000 --login-timeout 120 --drain-seconds 15 --json-out "$OUT/storm.json" | tee "$OUT/storm.txt"
fi
