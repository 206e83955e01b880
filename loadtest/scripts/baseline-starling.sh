#!/usr/bin/env bash
# Starling's single-node baseline on one machine: server pinned to CPU 0, harness to CPU 1.
#   loadtest/scripts/baseline-starling.sh [SESSIONS]   (default 18000: both processes stay under
#   this machine's 20,000-descriptor limit). Results: $OUT/*.json and a summary on stdout.
#   STAGES="connect chat" (default) picks what runs ("mam" adds archive queries at MAM_RATE, default
#   1000/s); the archive is on, as by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
SESSIONS=${1:-18000}
STAGES=${STAGES:-connect chat}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
cargo build --release -q -p starling-server -p starling-loadtest
BIN=$CARGO_TARGET_DIR/release
WORK=${WORK:-/tmp/starling-baseline}
OUT=${OUT:-$WORK/results}
rm -rf "$WORK/data"; mkdir -p "$WORK" "$OUT"
cat > "$WORK/conf.toml" <<TOML
[server]
domain = "localhost"
data_dir = "$WORK/data"
[c2s]
starttls_listen = ["127.0.0.1:35222"]
direct_tls_listen = ["127.0.0.1:35223"]
ping_idle_seconds = 600
read_rate_bytes = 0
[admin]
listen = "127.0.0.1:35280"
# A few users far beyond one person's rate: the per-user and per-connection limits are off.
[sessions]
message_rate = 0
TOML
"$BIN/starling" -c "$WORK/conf.toml" user add-bulk --prefix user --count "$SESSIONS" --password secret
server_pid=
start_server() {
  taskset -c 0 "$BIN/starling" -c "$WORK/conf.toml" serve > "$WORK/server.log" 2>&1 &
  server_pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:35280/readyz)" = 200 ]; do sleep 0.1; done
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop_server EXIT
LT="taskset -c 1 $BIN/starling-loadtest"
COMMON="--host 127.0.0.1 --port 35222 --domain localhost --password secret --source-addresses 127.0.0.2-127.0.0.9 --quiet"

if [[ " $STAGES " == *" connect "* ]]; then
  echo "== idle sessions and logins ($SESSIONS, fresh server)"
  start_server
  $LT connect $COMMON --users "$SESSIONS" --concurrency 200 --hold-seconds 20 --server-pid "$server_pid" --json-out "$OUT/connect.json"
  stop_server
fi

if [[ " $STAGES " == *" chat "* ]]; then
  echo "== chat at saturation (fresh server)"
  start_server
  $LT chat $COMMON --pairs 100 --rate 0 --window 64 --duration 20 --server-pid "$server_pid" --json-out "$OUT/chat-saturation.json"
  stop_server
  RATE=${HALF_RATE:-$(python3 -c "import json;print(int(json.load(open('$OUT/chat-saturation.json'))['chat']['throughput_per_second']/2))" 2>/dev/null || echo 20000)}

  echo "== chat at half of saturation ($RATE msg/s)"
  start_server
  $LT chat $COMMON --pairs 100 --rate "$RATE" --duration 20 --server-pid "$server_pid" --json-out "$OUT/chat-half.json"
  stop_server
fi
if [[ " $STAGES " == *" mam "* ]]; then
  echo "== archive queries: newest page of 50 at ${MAM_RATE:=1000} queries/s (needs 1,000 accounts)"
  start_server
  $LT mam $COMMON --users 1000 --seed-messages 50 --page 50 --rate "$MAM_RATE" --duration 15 --server-pid "$server_pid" --json-out "$OUT/mam-$MAM_RATE.json"
  stop_server
fi
echo "results in $OUT"
