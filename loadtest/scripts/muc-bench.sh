#!/usr/bin/env bash
# Multi-user chat on one core: the release server pinned to CPU 0, the harness to CPU 1, embedded
# store, archive on (rooms archive their groupchat), TLS + SCRAM. For each room size, 1,000 users
# fill rooms of that size and send groupchat at increasing aggregate rates; each run reports the
# deliveries/s every occupant counted (reflections included) and the fan-out latency.
#   loadtest/scripts/muc-bench.sh            SIZES="10 100 1000" RATES="..." override
#   USERS=10000 SIZES=10000 PRESENCE_BROADCAST=moderator loadtest/scripts/muc-bench.sh   one big room,
#     only moderators' presence broadcast (what makes 10,000 joins cheap; see docs/benchmarks.md)
# The per-occupant rate limit is off ([muc] occupant_rate = 0): the harness's senders would hit it
# first at high aggregate rates. Results: $OUT/muc-SIZE-RATE.json and a line each on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
USERS=${USERS:-1000}
SIZES=${SIZES:-10 100 1000}
WORK=${WORK:-/tmp/starling-muc-bench}
PORT=37222
EXTRA_TOML='[muc]
occupant_rate = 0.0
max_occupants = 10000'
source loadtest/scripts/one-core-server.sh
LT="taskset -c 1 $BIN/starling-loadtest"
COMMON="--host 127.0.0.1 --port 37222 --domain localhost --password secret --users $USERS --quiet"
for size in $SIZES; do
  rooms=$((USERS / size))
  # Aggregate messages/s; deliveries/s is that times the room size.
  case $size in
    10) default_rates="1000 2000 4000 6000 8000" ;;
    100) default_rates="100 200 400 600 800" ;;
    1000) default_rates="10 20 40 60 80" ;;
    *) default_rates="1 2 4 6 8" ;;
  esac
  for rate in ${RATES:-$default_rates}; do
    start_server
    $LT muc $COMMON --rooms "$rooms" --rate "$rate" ${PRESENCE_BROADCAST:+--presence-broadcast "$PRESENCE_BROADCAST"} --setup-timeout 300 --duration 15 --drain-seconds 10 --server-pid "$server_pid" --json-out "$OUT/muc-$size-$rate.json" > "$OUT/muc-$size-$rate.txt" 2>&1 || true
    stop_server
    python3 - "$OUT/muc-$size-$rate.json" "$size" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["muc"]; lat = m["latency"]
cpu = (r["usage"].get("server") or {}).get("cores_used") or 0
print(f"rooms of {sys.argv[2]:>4}, {sys.argv[3]:>5} msg/s: deliveries {m['deliveries']}/{m['expected_deliveries']} "
      f"= {m['deliveries_per_second']:.0f}/s, p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms, "
      f"server {cpu:.2f} cores, harness {r['usage']['harness']['cores_used']:.2f} cores")
PY
  done
done
echo "results in $OUT"
