#!/usr/bin/env bash
# Federation between two Starling processes, each on one core: server A (a.test) pinned to CPU 0,
# server B (b.test) to CPU 1, routed to each other by [s2s] hosts on loopback (dialback on their
# self-signed certificates), embedded store, archive on, TLS + SCRAM for the clients. PAIRS senders
# on A each message their own receiver on B at an even aggregate rate (each of RATES) for DURATION
# seconds, so that every message crosses one s2s stream; the harness is not pinned (it shares the
# two cores). Reports delivered, latency from write to read, and each server's CPU per message.
#   loadtest/scripts/s2s-bench.sh            PAIRS=1000 RATES="1000 5000 10000 20000" DURATION=20 override
# Results: $OUT/s2s-RATE.json and a line each on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${PAIRS:-1000}
RATES=${RATES:-1000 5000 10000 20000}
DURATION=${DURATION:-20}
WORK=${WORK:-/tmp/starling-s2s-bench}
OUT=${OUT:-$WORK/results}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p starling-server -p starling-loadtest
  BIN=$CARGO_TARGET_DIR/release
fi
mkdir -p "$OUT"
# name domain c2s-port s2s-port admin-port peer-domain peer-s2s-port
write_config() {
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/conf.toml" <<TOML
[server]
domain = "$2"
data_dir = "$WORK/$1/data"
[c2s]
starttls_listen = ["127.0.0.1:$3"]
direct_tls_listen = []
ping_idle_seconds = 600
read_rate_bytes = 0
[admin]
listen = "127.0.0.1:$5"
[sessions]
message_rate = 0
[s2s]
enabled = true
listen = ["127.0.0.1:$4"]
dialback_secret = "s2s-bench-$1"
hosts = { "$6" = "127.0.0.1:$7" }
stanza_rate = 1000000
stanza_burst = 1000000
queue = 100000
TOML
}
write_config a a.test 38322 38324 38380 b.test 38334
write_config b b.test 38332 38334 38390 a.test 38324
pids=()
start() { # name cpu admin-port
  rm -rf "$WORK/$1/data"
  "$BIN/starling" -c "$WORK/$1/conf.toml" user add-bulk --prefix user --count "$PAIRS" --password secret > /dev/null
  taskset -c "$2" "$BIN/starling" -c "$WORK/$1/conf.toml" serve > "$WORK/$1/server.log" 2>&1 &
  pids+=($!)
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$3/readyz")" = 200 ]; do sleep 0.1; done
}
stop() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
trap stop EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for rate in $RATES; do
  start a 0 38380
  start b 1 38390
  a=${pids[0]} b=${pids[1]}
  # The first message opens the stream (DNS-free route, TLS, dialback) outside the measurement.
  "$BIN/starling-loadtest" chat --host 127.0.0.1 --port 38322 --domain a.test --password secret --users 2 --pairs 1 \
    --receivers-at 127.0.0.1:38332 --receivers-domain b.test --rate 10 --duration 1 --drain-seconds 2 --quiet > /dev/null 2>&1 || true
  before_a=$(cpu_ticks "$a") before_b=$(cpu_ticks "$b") rss_a=$(rss_kib "$a") rss_b=$(rss_kib "$b")
  "$BIN/starling-loadtest" chat --host 127.0.0.1 --port 38322 --domain a.test --password secret --pairs "$PAIRS" --users $((2 * PAIRS)) \
    --receivers-at 127.0.0.1:38332 --receivers-domain b.test --concurrency 100 --quiet \
    --rate "$rate" --duration "$DURATION" --drain-seconds 10 --warmup-seconds 2 \
    --json-out "$OUT/s2s-$rate.json" > "$OUT/s2s-$rate.txt" 2>&1 || true
  after_a=$(cpu_ticks "$a") after_b=$(cpu_ticks "$b") rss_a2=$(rss_kib "$a") rss_b2=$(rss_kib "$b")
  stop
  python3 - "$OUT/s2s-$rate.json" "$rate" "$((after_a - before_a))" "$((after_b - before_b))" "$rss_a" "$rss_a2" "$rss_b" "$rss_b2" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["chat"]; lat = c["latency"]
rate, ticks_a, ticks_b = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]); hz = int(sys.argv[9])
delivered = c["received"] or 1
us = lambda ticks: ticks / hz * 1e6 / delivered
print(f"{rate:>6} msg/s offered: delivered {c['received']}/{c['sent']} ({c['out_of_order']} out of order, {c['bounced']} bounced), p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms; "
      f"CPU per message A {us(ticks_a):.1f} µs, B {us(ticks_b):.1f} µs; RSS A {sys.argv[5]}→{sys.argv[6]} KiB, B {sys.argv[7]}→{sys.argv[8]} KiB")
PY
done
echo "results in $OUT"
