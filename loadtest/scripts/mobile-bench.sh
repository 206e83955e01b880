#!/usr/bin/env bash
# XEP-0198 under load on one node: the `mobile` scenario in rounds of drops, then a reconnect
# storm, each on a fresh server (release build, embedded store, archive on, STARTTLS + SCRAM),
# server pinned to CPU 0, harness to CPU 1.
#
#   loadtest/scripts/mobile-bench.sh [STARLING_BIN]
#
# ROUND_PAIRS (default 1000) receivers with their own senders at ROUND_RATE msg/s (default 1000)
# for 30 s, 10 % of them dropping every 5 s; then STORM (default 10000) receivers fed by 100
# senders at 1000 msg/s, all dropping at once half-way through a 20 s run and coming back after
# 2 s; and (cost) chat without and with stream management, no drops, ROUND_PAIRS pairs at COST_RATE
# msg/s (default 5000): the server CPU per message it costs; and (logins) LOGIN_USERS (default
# 5000) logins of each kind — RFC 6120 SASL + bind, SASL2 + Bind2, FAST token — with the server's
# CPU per login. RUNS (default "rounds storm cost logins") picks the runs. JSON reports in $OUT; a
# summary is printed for the logins.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-/var/cache/starling/target}
BIN=${1:-$TARGET/release/starling}
LT_BIN=${LT_BIN:-$TARGET/release/starling-loadtest}
ROUND_PAIRS=${ROUND_PAIRS:-1000} ROUND_RATE=${ROUND_RATE:-1000} STORM=${STORM:-10000} RUNS=${RUNS:-rounds storm cost logins} LOGIN_USERS=${LOGIN_USERS:-5000} COST_RATE=${COST_RATE:-5000}
WORK=${WORK:-/tmp/starling-mobile-bench}
OUT=${OUT:-$WORK/results}
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
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
"$BIN" -c "$WORK/conf.toml" user add-bulk --prefix user --count $((STORM + 200)) --password secret >/dev/null
mv "$WORK/data" "$WORK/pristine"

server_pid=
start_server() {
  rm -rf "$WORK/data"; cp -r "$WORK/pristine" "$WORK/data"
  taskset -c 0 "$BIN" -c "$WORK/conf.toml" serve > "$WORK/server.log" 2>&1 &
  server_pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:35280/readyz)" = 200 ]; do sleep 0.1; done
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop_server EXIT
LT="taskset -c 1 $LT_BIN"
COMMON="--host 127.0.0.1 --port 35222 --domain localhost --password secret --source-addresses 127.0.0.2-127.0.0.20 --quiet --concurrency 200"

if [[ " $RUNS " == *" rounds "* ]]; then
  start_server
  $LT mobile $COMMON --pairs "$ROUND_PAIRS" --rate "$ROUND_RATE" --duration 30 --drop-every 5 --drop-fraction 0.1 \
    --server-pid "$server_pid" --json-out "$OUT/rounds.json"
  stop_server
fi
if [[ " $RUNS " == *" cost "* ]]; then
  # What stream management costs per message: the same traffic with and without it, no drops.
  for scenario in chat mobile; do
    start_server
    extra=(); [[ $scenario == mobile ]] && extra=(--drop-every 1000)
    $LT $scenario $COMMON --pairs "$ROUND_PAIRS" --rate "$COST_RATE" --duration 20 "${extra[@]}" \
      --server-pid "$server_pid" --json-out "$OUT/cost-$scenario.json"
    stop_server
  done
fi
if [[ " $RUNS " == *" storm "* ]]; then
  start_server
  $LT mobile $COMMON --pairs "$STORM" --senders 100 --rate 1000 --duration 20 --storm --reconnect-delay-ms 2000 \
    --login-timeout 60 --server-pid "$server_pid" --json-out "$OUT/storm.json"
  stop_server
fi
if [[ " $RUNS " == *" logins "* ]]; then
  # One core for the server: logins/s and server CPU per login, each kind on a fresh server.
  for method in rfc6120 sasl2 fast; do
    start_server
    $LT connect $COMMON --users "$LOGIN_USERS" --hold-seconds 0 --login "$method" \
      --server-pid "$server_pid" --json-out "$OUT/logins-$method.json"
    stop_server
  done
  python3 - "$OUT" <<'PY'
import json, sys
for method in ("rfc6120", "sasl2", "fast"):
    r = json.load(open(f"{sys.argv[1]}/logins-{method}.json"))
    l, cpu = r["logins"], r["hold"]["server_cpu_per_login_ms"]
    print(f"{method:8} {l['succeeded']:>6} ok {l['failed']:>4} failed  {l['logins_per_second']:>8.0f} logins/s  "
          f"p50 {l['latency']['p50_us'] / 1000:.1f} ms  p99 {l['latency']['p99_us'] / 1000:.1f} ms  server CPU {cpu:.3f} ms/login")
PY
fi
