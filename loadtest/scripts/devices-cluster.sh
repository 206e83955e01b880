#!/usr/bin/env bash
# IoT devices beyond one process's 20,000 descriptors: a local cluster (cluster-local.sh: one
# session node, EDGES edges, Cassandra, Kafka, Redis) and one `starling-loadtest devices` per edge,
# each with its own slice of the accounts (its owners are the first hundredth of its slice) and
# source addresses, publishing RATE readings/s in total. Usage of every process is sampled before
# the logins, once every session is held (during the harnesses' idle time) and at the end: RSS per
# session on edges and on the session node, and the CPU of every Starling process per reading.
#   loadtest/scripts/devices-cluster.sh       (EDGES=6 PER_EDGE=16700 RATE=1000 DURATION=30 IDLE=40)
#   UP=0 loadtest/scripts/devices-cluster.sh   again on the cluster an earlier run left (another RATE)
# Results: $OUT/edge-K.{json,txt}, $OUT/usage.txt, a summary on stdout. The cluster is left
# running; `cluster-local.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
export WORK=${WORK:-/tmp/starling-cluster}
EDGES=${EDGES:-6} PER_EDGE=${PER_EDGE:-16700} RATE=${RATE:-1000} DURATION=${DURATION:-30} IDLE=${IDLE:-40}
OUT=${OUT:-/tmp/starling-devices-cluster}
LT=$CARGO_TARGET_DIR/release/starling-loadtest
mkdir -p "$OUT"

[ "${UP:-1}" = 0 ] || loadtest/scripts/cluster-local.sh up 1 "$EDGES" $((EDGES * PER_EDGE))

usage() { # label: CPU seconds and RSS of every Starling process
  local dir
  for dir in "$WORK"/session* "$WORK"/edge*; do
    awk -v label="$1" -v name="$(basename "$dir")" -v tick="$(getconf CLK_TCK)" \
      'FNR == NR { cpu = ($14 + $15) / tick; next } /VmRSS/ { printf "%s %s cpu_seconds=%.2f rss_kib=%d\n", label, name, cpu, $2 }' \
      "/proc/$(cat "$dir/pid")/stat" "/proc/$(cat "$dir/pid")/status"
  done | tee -a "$OUT/usage.txt"
}
: > "$OUT/usage.txt"
usage before
rate_each=$(python3 -c "print($RATE / $EDGES)")
for k in $(seq 1 "$EDGES"); do
  "$LT" devices --host 127.0.0.1 --port $((36220 + k)) --password secret --quiet \
    --first-user $((1 + (k - 1) * PER_EDGE)) --users "$PER_EDGE" --concurrency 100 --login-timeout 300 \
    --source-addresses "127.0.$k.2-127.0.$k.9" --rate "$rate_each" --duration "$DURATION" \
    --idle-seconds "$IDLE" --drain-seconds 15 --server-pid "$(cat "$WORK/edge$k/pid")" \
    --json-out "$OUT/edge-$k.json" > "$OUT/edge-$k.txt" 2>&1 &
done
until (( $(loadtest/scripts/cluster-local.sh connections) >= EDGES * PER_EDGE )) || ! jobs -r | grep -q .; do sleep 1; done
sleep 5
usage held
wait
usage end
python3 - "$OUT" "$EDGES" "$PER_EDGE" <<'PY'
import glob, json, re, sys
out, edges, per_edge = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
usage = {}
for line in open(f"{out}/usage.txt"):
    label, name, cpu, rss = line.split()
    usage[(label, name)] = (float(cpu.split("=")[1]), int(rss.split("=")[1]))
reports = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/edge-*.json"))]
sessions = sum(r["memory"]["sessions"] for r in reports)
sent = sum(r["devices"]["readings_sent"] for r in reports)
delivered = sum(r["devices"]["readings_delivered"] for r in reports)
logins = sum(r["logins"]["succeeded"] for r in reports)
p99 = max(r["devices"]["latency"]["p99_us"] for r in reports) / 1000
p50 = sorted(r["devices"]["latency"]["p50_us"] for r in reports)[len(reports) // 2] / 1000
names = sorted({name for _, name in usage})
edge_kib = [(usage[("held", n)][1] - usage[("before", n)][1]) / per_edge for n in names if n.startswith("edge")]
session_kib = sum(usage[("held", n)][1] - usage[("before", n)][1] for n in names if n.startswith("session")) / sessions
# Each edge's CPU over its readings window exactly (its report); the session node's from 'held' to
# the end (the rest of the idle time and the drain included: an upper bound).
edge_cpu = sum((r["usage"]["server"] or {}).get("cpu_seconds") or 0 for r in reports)
session_cpu = sum(usage[("end", n)][0] - usage[("held", n)][0] for n in names if n.startswith("session"))
print(f"sessions {sessions} (logins {logins}), edge RSS {min(edge_kib):.1f}-{max(edge_kib):.1f} KiB/session, session node {session_kib:.1f} KiB/session")
print(f"readings delivered {delivered}/{sent}, p50 {p50:.1f} ms (median of edges), p99 {p99:.1f} ms (worst edge)")
print(f"CPU per reading: edges {edge_cpu * 1e6 / max(sent, 1):.0f} µs (readings window), session node at most {session_cpu * 1e6 / max(sent, 1):.0f} µs")
PY
