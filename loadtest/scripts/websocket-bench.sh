#!/usr/bin/env bash
# Issue 17's measure: XMPP over WebSocket (RFC 7395, wss://) against the XML stream over direct TLS
# (XEP-0368, the same TLS from the first byte, so the difference is the framing) on a one-core
# server, with the bundled harness on the other core: logins/s and server memory per idle session
# ($USERS sessions held), then chat at even rates, many users each sending a little ($PAIRS pairs
# at each of $RATES messages/s in all). Prints one table; every run's JSON is in $OUT.
#   BIN=dir/with/starling and starling-loadtest (default: a release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/tmp/starling-websocket-bench}
PORT=${PORT:-35622}
WS_PORT=$((PORT + 2))
USERS=${USERS:-10000}
PAIRS=${PAIRS:-1000}
RATES=${RATES:-"2000 10000"}
EXTRA_TOML="[websocket]
tls_listen = [\"127.0.0.1:$WS_PORT\"]"
rm -rf "$WORK"
source loadtest/scripts/one-core-server.sh
LT="taskset -c 1 $BIN/starling-loadtest"
COMMON="--host 127.0.0.1 --domain localhost --password secret --source-addresses 127.0.0.2-127.0.0.9 --quiet"
declare -A TRANSPORT=([tls]="--direct-tls --port $((PORT + 1))" [ws]="--websocket --port $WS_PORT")
for transport in tls ws; do
  start_server
  $LT connect $COMMON ${TRANSPORT[$transport]} --users "$USERS" --concurrency 200 --hold-seconds 5 \
    --server-pid "$server_pid" --json-out "$OUT/$transport-connect.json"
  stop_server
  for rate in $RATES; do
    start_server
    $LT chat $COMMON ${TRANSPORT[$transport]} --pairs "$PAIRS" --rate "$rate" --duration 20 \
      --server-pid "$server_pid" --json-out "$OUT/$transport-chat-$rate.json"
    stop_server
  done
done
python3 - "$OUT" $RATES <<'PY'
import json, sys
out, rates = sys.argv[1], sys.argv[2:]
load = lambda name: json.load(open(f"{out}/{name}.json"))
print(f"{'':28}{'direct TLS':>14}{'WebSocket':>14}")
c = {t: load(f"{t}-connect") for t in ("tls", "ws")}
row = lambda label, f: print(f"{label:28}" + "".join(f"{f(c[t]):>14}" for t in ("tls", "ws")))
row("logins/s", lambda r: f"{r['logins']['logins_per_second']:.0f}")
row("login p50/p99 ms", lambda r: f"{r['logins']['latency']['p50_us']/1000:.1f}/{r['logins']['latency']['p99_us']/1000:.1f}")
row("server RSS/session KiB", lambda r: f"{r['hold']['server_rss_per_session_bytes']/1024:.1f}")
row("server CPU ms/login", lambda r: f"{r['hold']['server_cpu_per_login_ms']:.2f}")
for rate in rates:
    c = {t: load(f"{t}-chat-{rate}") for t in ("tls", "ws")}
    row(f"chat {rate}/s received/s", lambda r: f"{r['chat']['throughput_per_second']:.0f}")
    row(f"chat {rate}/s lost", lambda r: f"{r['chat']['lost']}")
    row(f"chat {rate}/s p50/p99 ms", lambda r: f"{r['chat']['latency']['p50_us']/1000:.1f}/{r['chat']['latency']['p99_us']/1000:.1f}")
    row(f"chat {rate}/s server cores", lambda r: f"{r['usage']['server']['cores_used']:.2f}")
    row(f"chat {rate}/s harness cores", lambda r: f"{r['usage']['harness']['cores_used']:.2f}")
PY
