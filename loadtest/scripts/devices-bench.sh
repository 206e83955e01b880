#!/usr/bin/env bash
# IoT devices on one core: the release server pinned to CPU 0, the harness to CPU 1, embedded store,
# TLS + SCRAM, the server's default limits (a device is one small user). USERS sessions, of which
# the first USERS/100 are owners and the rest devices publishing XEP-0323-shaped readings to them
# at each aggregate rate of RATES for DURATION seconds; each run reports the server's RSS per
# session (idle, after the logins) and its CPU per reading.
#   loadtest/scripts/devices-bench.sh          USERS=17000 RATES="170 1700 5000" DURATION=20 override
# Results: $OUT/devices-RATE.json and a line each on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
USERS=${USERS:-17000}
RATES=${RATES:-170 1700 5000}
DURATION=${DURATION:-20}
WORK=${WORK:-/tmp/starling-devices-bench}
PORT=37322
DEFAULT_LIMITS=1
source loadtest/scripts/one-core-server.sh
LT="taskset -c 1 $BIN/starling-loadtest"
for rate in $RATES; do
  start_server
  $LT devices --host 127.0.0.1 --port "$PORT" --domain localhost --password secret --users "$USERS" --concurrency 200 --quiet \
    --rate "$rate" --duration "$DURATION" --idle-seconds 10 --drain-seconds 10 --login-timeout 120 --server-pid "$server_pid" \
    --json-out "$OUT/devices-$rate.json" > "$OUT/devices-$rate.txt" 2>&1 || true
  stop_server
  python3 - "$OUT/devices-$rate.json" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); d, m, l = r["devices"], r["memory"], r["logins"]; lat = d["latency"]
cpu = (r["usage"].get("server") or {}).get("cores_used") or 0
print(f"{sys.argv[2]:>6} readings/s: {m['sessions']} sessions ({l['succeeded']} logins at {l['logins_per_second']:.0f}/s), "
      f"RSS {m['server_rss_per_session_bytes'] / 1024:.1f} KiB/session; delivered {d['readings_delivered']}/{d['readings_sent']}, "
      f"p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms, server {cpu:.2f} cores, "
      f"{d['server_cpu_us_per_reading']:.1f} µs CPU/reading, harness {r['usage']['harness']['cores_used']:.2f} cores")
PY
done
echo "results in $OUT"
