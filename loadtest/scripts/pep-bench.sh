#!/usr/bin/env bash
# PEP notification fan-out on one core: the release server pinned to CPU 0, the harness to CPU 1,
# embedded store, TLS + SCRAM. One publisher and CONTACTS contacts whose clients ask for its node
# (+notify in their caps); the publisher publishes at increasing rates; each run reports the
# notifications/s the contacts counted and their latency.
#   loadtest/scripts/pep-bench.sh            CONTACTS=1000 RATES="..." override
# Results: $OUT/pep-CONTACTS-RATE.json and a line each on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONTACTS=${CONTACTS:-1000}
USERS=$((CONTACTS + 1))
WORK=${WORK:-/tmp/starling-pep-bench}
PORT=37322
source loadtest/scripts/one-core-server.sh
for rate in ${RATES:-10 20 40 60 80}; do
  start_server
  taskset -c 1 "$BIN/starling-loadtest" pep --host 127.0.0.1 --port 37322 --domain localhost --password secret --users "$USERS" --quiet \
    --rate "$rate" --duration 15 --drain-seconds 10 --server-pid "$server_pid" --json-out "$OUT/pep-$CONTACTS-$rate.json" > "$OUT/pep-$CONTACTS-$rate.txt" 2>&1 || true
  stop_server
  python3 - "$OUT/pep-$CONTACTS-$rate.json" "$CONTACTS" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r["pep"]; lat = p["latency"]; s = r["setup"]
cpu = (r["usage"].get("server") or {}).get("cores_used") or 0
print(f"{sys.argv[2]} contacts, {sys.argv[3]:>4} items/s: notifications {p['notifications']}/{p['expected_notifications']} "
      f"= {p['notifications_per_second']:.0f}/s, p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms, "
      f"server {cpu:.2f} cores; setup {s['seconds']:.1f}s, caps queries {s['caps_queries']}")
PY
done
echo "results in $OUT"
