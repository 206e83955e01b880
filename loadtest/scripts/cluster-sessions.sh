#!/usr/bin/env bash
# Idle sessions beyond one process's 20,000 descriptors: a local cluster (cluster-local.sh) with
# EDGES edge processes, one harness process per edge holding PER_EDGE sessions each (their own
# slice of the user space and their own source addresses), then `merge` into one report.
#   loadtest/scripts/cluster-sessions.sh   (EDGES=3 PER_EDGE=17000 SESSION_NODES=1 HOLD=30 CONCURRENCY=200)
# Results: $OUT/edge-K.{json,txt}, $OUT/merged.json, $OUT/usage.txt (CPU seconds and RSS of every
# process before the logins and while the sessions are held). The cluster is left running for inspection; `cluster-local.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
export WORK=${WORK:-/tmp/starling-cluster}
EDGES=${EDGES:-3} PER_EDGE=${PER_EDGE:-17000} SESSION_NODES=${SESSION_NODES:-1}
HOLD=${HOLD:-30} CONCURRENCY=${CONCURRENCY:-200}
OUT=${OUT:-/tmp/starling-cluster-sessions}
LT=$CARGO_TARGET_DIR/release/starling-loadtest
mkdir -p "$OUT"

loadtest/scripts/cluster-local.sh up "$SESSION_NODES" "$EDGES" $((EDGES * PER_EDGE))

# CPU seconds and RSS of every Starling process and of the services (Kafka, Cassandra, Redis).
usage() { # label
  local pids=() dir name pid
  for dir in "$WORK"/session* "$WORK"/edge*; do pids+=("$(basename "$dir"):$(cat "$dir/pid")"); done
  for name in kafka cassandra redis; do
    pid=$(cat "/var/cache/starling/state/$name/$name.pid" 2>/dev/null || true)
    [ -n "$pid" ] && pids+=("$name:$pid")
  done
  for entry in "${pids[@]}"; do
    pid=${entry#*:}
    [ -r "/proc/$pid/stat" ] || continue
    awk -v label="$1" -v name="${entry%%:*}" -v tick="$(getconf CLK_TCK)" \
      'FNR == NR { cpu = ($14 + $15) / tick; next } /VmRSS/ { printf "%s %s cpu_seconds=%.1f rss_mib=%.1f\n", label, name, cpu, $2 / 1024 }' \
      "/proc/$pid/stat" "/proc/$pid/status"
  done | tee -a "$OUT/usage.txt"
}
: > "$OUT/usage.txt"
usage before

for k in $(seq 1 "$EDGES"); do
  # Each process logs in its own slice and binds its own source addresses (127.0.k.2-9).
  "$LT" connect --host 127.0.0.1 --port $((36220 + k)) --password secret --quiet \
    --first-user $((1 + (k - 1) * PER_EDGE)) --users "$PER_EDGE" --concurrency "$CONCURRENCY" \
    --hold-seconds "$HOLD" --login-timeout 120 --source-addresses "127.0.$k.2-127.0.$k.9" \
    --server-pid "$(cat "$WORK/edge$k/pid")" --json-out "$OUT/edge-$k.json" > "$OUT/edge-$k.txt" 2>&1 &
done
# Sampled once every harness process has logged in all its sessions (they hold for HOLD seconds).
until (( $(loadtest/scripts/cluster-local.sh connections) >= EDGES * PER_EDGE )) || ! jobs -r | grep -q .; do sleep 1; done
sleep 3
usage held
wait
"$LT" merge "$OUT"/edge-*.json -o "$OUT/merged.json"
python3 - "$OUT/merged.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l, h = r["logins"], r["hold"]
print(f"logins {l['succeeded']} ok / {l['attempted']} in {l['elapsed_seconds']:.1f} s = {l['logins_per_second']:.0f}/s, "
      f"p50 {l['latency']['p50_us'] / 1000:.1f} ms, p99 {l['latency']['p99_us'] / 1000:.1f} ms; "
      f"sessions held at end {h['sessions_at_end']} of {h['sessions_at_start']}")
PY
