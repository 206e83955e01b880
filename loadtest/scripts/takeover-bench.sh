#!/usr/bin/env bash
# Issue 12's takeover measurements on a local cluster (2 session nodes, 2 edges, release build):
#  1. KILLS times: a chat run at an even RATE over PAIRS pairs (users on both owners), one session
#     node killed with `kill -9` KILL_AT seconds in, then started again. Per kill: the survivor's
#     first assignment after the kill (detection + rebalance), the largest delivery latency of the
#     run (a message sent just after the kill waits for the takeover), lost and bounced messages.
#  2. False takeovers under load: a LOAD_SECONDS chat run at LOAD_RATE with no fault; every
#     partition revoked during it is one (the group thought a live node dead).
# KILLS=0 runs the load part alone.
#   loadtest/scripts/takeover-bench.sh   (SESSION_TIMEOUT_MS=1500 KILLS=20 RATE=400 PAIRS=200 LOAD_RATE=8000 LOAD_PAIRS=1000 LOAD_SECONDS=60)
# The Kafka broker must allow the session timeout (scripts/infra/kafka sets
# group.min.session.timeout.ms=1000). Results (JSON per run, summary.txt) go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
export WORK=${WORK:-/tmp/starling-cluster}
export SESSION_TIMEOUT_MS=${SESSION_TIMEOUT_MS:-1500}
OUT=${OUT:-/tmp/starling-takeover-bench}
KILLS=${KILLS:-20} RATE=${RATE:-400} PAIRS=${PAIRS:-200} KILL_AT=${KILL_AT:-4} DURATION=${DURATION:-12}
LOAD_RATE=${LOAD_RATE:-8000} LOAD_PAIRS=${LOAD_PAIRS:-1000} LOAD_SECONDS=${LOAD_SECONDS:-60}
LT=$CARGO_TARGET_DIR/release/starling-loadtest
CLUSTER=loadtest/scripts/cluster-local.sh
rm -rf "$OUT"; mkdir -p "$OUT"

# Lines "owner partitions …" of a node's log after byte $2, as "epoch-seconds kind partitions".
moves() {
  tail -c +"$(( $2 + 1 ))" "$WORK/$1/server.log" | sed 's/\x1b\[[0-9;]*m//g' \
    | sed -n 's/^\([0-9TZ:.-]*\) .*owner partitions \(assigned\|revoked\) partitions=\[\([0-9, ]*\)\].*/\1 \2 \3/p' \
    | while read -r stamp kind parts; do echo "$(date -d "$stamp" +%s.%N) $kind $parts"; done
}

chat() { # name duration rate pairs
  "$LT" chat --host 127.0.0.1 --port 36221 --password secret --quiet --duration "$2" --warmup-seconds 1 \
    --pairs "$4" --rate "$3" --json-out "$OUT/$1.json" > "$OUT/$1.txt" 2>&1
}

$CLUSTER up 2 2 $(( 2 * (LOAD_PAIRS > PAIRS ? LOAD_PAIRS : PAIRS) ))
: > "$OUT/kills.tsv"
for i in $(seq 1 "$KILLS"); do
  victim=session$(( (i - 1) % 2 + 1 )); survivor=session$(( i % 2 + 1 ))
  since=$(stat -c %s "$WORK/$survivor/server.log")
  chat "kill-$i" "$DURATION" "$RATE" "$PAIRS" &
  runner=$!
  sleep "$KILL_AT"
  killed=$(date +%s.%N)
  $CLUSTER kill "$victim"
  wait "$runner" || true
  assigned=$(moves "$survivor" "$since" | awk -v t="$killed" '$1 > t && $2 == "assigned" && NF > 2 { print $1; exit }')
  python3 - "$OUT/kill-$i.json" "$killed" "${assigned:-}" "$victim" >> "$OUT/kills.tsv" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["chat"]
killed, assigned = float(sys.argv[2]), sys.argv[3]
took = f"{float(assigned) - killed:.2f}" if assigned else "none"
print(f"{sys.argv[4]}\t{took}\t{c['latency']['max_us'] / 1e6:.2f}\t{c['lost']}\t{c['bounced']}\t{c['sent']}\t{c['received']}")
PY
  tail -1 "$OUT/kills.tsv"
  $CLUSTER start "$victim" > /dev/null
  sleep 2
done

# False takeovers: no fault, a heavy even load; any revocation is the group losing a live node.
before=$(for n in session1 session2; do stat -c %s "$WORK/$n/server.log"; done | paste -sd' ')
read -r s1 s2 <<< "$before"
chat load "$LOAD_SECONDS" "$LOAD_RATE" "$LOAD_PAIRS" || true
false_moves=$(( $(moves session1 "$s1" | grep -c revoked || true) + $(moves session2 "$s2" | grep -c revoked || true) ))
$CLUSTER down

python3 - "$OUT" "$false_moves" "$SESSION_TIMEOUT_MS" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
out, false_moves, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [line.split("\t") for line in open(f"{out}/kills.tsv") if line.strip()]
def dist(values):
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return f"min {values[0]:.2f}  median {statistics.median(values):.2f}  p90 {q(0.9):.2f}  max {values[-1]:.2f} s"
assigned = [float(r[1]) for r in rows if r[1] != "none"]
print(f"session timeout {timeout} ms, {len(rows)} kills")
if rows:
    print(f"kill -9 -> survivor assigned the partitions: {dist(assigned)}" + (f" ({len(rows) - len(assigned)} not seen)" if len(assigned) < len(rows) else ""))
    print(f"largest delivery latency of each run:       {dist([float(r[2]) for r in rows])}")
    print(f"lost {sum(int(r[3]) for r in rows)}, bounced {sum(int(r[4]) for r in rows)} of {sum(int(r[5]) for r in rows)} sent")
load = json.load(open(f"{out}/load.json"))["chat"]
print(f"load without faults: {load['throughput_per_second']:.0f} msg/s delivered, p99 {load['latency']['p99_us'] / 1000:.1f} ms, "
      f"lost {load['lost']}; partitions revoked during it (false takeovers): {false_moves}")
PY
