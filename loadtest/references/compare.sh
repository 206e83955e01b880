#!/usr/bin/env bash
# Starling vs ejabberd vs Prosody with starling-loadtest, one server at a time, server on CPU 0 and
# harness on CPU 1, a freshly started server for each run.
#   loadtest/references/compare.sh [SERVERS...]      (default: starling ejabberd prosody)
# Environment: SESSIONS (connect, default 19000), PAIRS (chat, 100), WINDOW (closed loop, 64),
#   DURATION (s of chat, 20), CONCURRENCY (logins in flight, 200), MAM_RATES (archive queries/s,
#   "200 1000"), MUC_SIZES (room sizes of the muc stage, "10 100"), MUC_RATES_<SIZE> (groupchat
#   messages/s for that size), STAGES ("connect chat mam"; "muc" adds group chat: 1,000 users in
#   rooms of each size, needs SESSIONS >= 1000), OUT (result dir), REF_DIR (server state,
#   /tmp/starling-refs), SKIP_BUILD=1, SKIP_PROVISION=1.
# Results: $OUT/<server>-{connect,chat-saturation,chat-half,mam-RATE}.json and $OUT/summary.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export REF_DIR=${REF_DIR:-/tmp/starling-refs}
SESSIONS=${SESSIONS:-19000}; PAIRS=${PAIRS:-100}; WINDOW=${WINDOW:-64}
DURATION=${DURATION:-20}; CONCURRENCY=${CONCURRENCY:-200}
MAM_RATES=${MAM_RATES:-200 1000}; STAGES=${STAGES:-connect chat mam}
OUT=${OUT:-$REF_DIR/results-$(date -u +%Y%m%dT%H%M%SZ)}
SERVERS=("$@"); [ ${#SERVERS[@]} -gt 0 ] || SERVERS=(starling ejabberd prosody)
NACC=$(( SESSIONS > 2 * PAIRS ? SESSIONS : 2 * PAIRS ))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release -q -p starling-server -p starling-loadtest)
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$OUT"
source "$HERE/common.sh"

# --- Starling (as in loadtest/scripts/baseline-starling.sh) ---
SW=$REF_DIR/starling
starling_provision() {
  rm -rf "$SW/data"; mkdir -p "$SW"; ensure_cert
  cat > "$SW/conf.toml" <<TOML
[server]
domain = "localhost"
data_dir = "$SW/data"
[c2s]
starttls_listen = ["127.0.0.1:35222"]
ping_idle_seconds = 600
[admin]
listen = "127.0.0.1:35280"
[tls]
cert_file = "$REF_DIR/cert.pem"
key_file = "$REF_DIR/key.pem"
# As the references are configured: no per-occupant rate limit, big rooms.
[muc]
occupant_rate = 0.0
max_occupants = 10000
TOML
  "$BIN/starling" -c "$SW/conf.toml" user add-bulk --prefix user --count "$1" --password secret
}
starling_start() {
  ulimit -n "$(ulimit -Hn)"
  taskset -c 0 "$BIN/starling" -c "$SW/conf.toml" serve > "$SW/server.log" 2>&1 &
  echo $! > "$SW/server.pid"
  until [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:35280/readyz)" = 200 ]; do sleep 0.1; done
  cat "$SW/server.pid"
}
starling_stop() { stop_pidfile "$SW/server.pid"; }

port_of() { case $1 in starling) echo 35222;; ejabberd) echo 45222;; prosody) echo 55222;; esac; }
start() { if [ "$1" = starling ]; then starling_start; else CPUS=0 "$HERE/$1/start"; fi; }
stop() { if [ "$1" = starling ]; then starling_stop; else "$HERE/$1/stop"; fi; }
provision() {
  local t0=$SECONDS
  case $1 in
    starling) starling_provision "$NACC" ;;
    ejabberd) rm -rf "$REF_DIR/ejabberd/db"; start ejabberd >/dev/null; "$HERE/ejabberd/provision" "$NACC" secret; stop ejabberd ;;
    prosody) rm -rf "$REF_DIR/prosody/data"; "$HERE/prosody/provision" "$NACC" secret ;;
  esac
  echo "provisioned $NACC accounts for $1 in $((SECONDS - t0)) s" | tee -a "$OUT/provision.txt"
}
trap 'for s in "${SERVERS[@]}"; do stop "$s" 2>/dev/null || true; done' EXIT

# measure NAME SCENARIO ARGS...: one harness run against a freshly started $S, results in
# $OUT/$S-NAME.{json,txt}; a failed run leaves its text and the others go on.
measure() {
  local name=$1; shift
  local pid; pid=$(start "$S")
  "${LT[@]}" "$@" "${COMMON[@]}" --login-timeout 60 --server-pid "$pid" --json-out "$OUT/$S-$name.json" \
    | tee "$OUT/$S-$name.txt" || true
  stop "$S"
}

for S in "${SERVERS[@]}"; do
  # Mechanism: all three offer SCRAM-SHA-256 in this configuration.
  COMMON=(--host 127.0.0.1 --port "$(port_of "$S")" --domain localhost --password secret
          --mechanism SCRAM-SHA-256 --source-addresses 127.0.0.2-127.0.0.9 --quiet)
  LT=(taskset -c 1 "$BIN/starling-loadtest")
  for s in starling ejabberd prosody; do stop "$s" 2>/dev/null || true; done
  [ -n "${SKIP_PROVISION:-}" ] || provision "$S"

  if [[ " $STAGES " == *" connect "* ]]; then
    echo "== $S: connect $SESSIONS (fresh server)"
    measure connect connect --users "$SESSIONS" --concurrency "$CONCURRENCY" --hold-seconds 20
  fi
  if [[ " $STAGES " == *" chat "* ]]; then
    echo "== $S: chat closed loop, $PAIRS pairs, window $WINDOW (fresh server)"
    measure chat-saturation chat --pairs "$PAIRS" --rate 0 --window "$WINDOW" --duration "$DURATION"
    RATE=$(python3 -c "import json;print(max(1,int(json.load(open('$OUT/$S-chat-saturation.json'))['chat']['throughput_per_second']/2)))" 2>/dev/null || echo 100)
    echo "== $S: chat open loop at $RATE msg/s (50 % of saturation, fresh server)"
    measure chat-half chat --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION"
  fi
  if [[ " $STAGES " == *" mam "* ]]; then
    for R in $MAM_RATES; do
      # 1,000 users each archive 50 messages to a partner, then query their newest page of 50.
      echo "== $S: archive queries, newest page of 50 at $R/s (fresh server)"
      measure "mam-$R" mam --users 1000 --seed-messages 50 --page 50 --rate "$R" --duration 15
    done
  fi
  if [[ " $STAGES " == *" muc "* ]]; then
    for SIZE in ${MUC_SIZES:-10 100}; do
      rates_var=MUC_RATES_$SIZE
      for R in ${!rates_var:-$((10000 / SIZE)) $((20000 / SIZE)) $((40000 / SIZE)) $((80000 / SIZE))}; do
        # 1,000 users in rooms of SIZE; R groupchat messages/s, so R x SIZE deliveries/s.
        echo "== $S: group chat, rooms of $SIZE, $R messages/s (fresh server)"
        measure "muc-$SIZE-$R" muc --users 1000 --rooms $((1000 / SIZE)) --rate "$R" --duration 15 --drain-seconds 10
      done
    done
  fi
done

MAM_RATES="$MAM_RATES" python3 "$HERE/summary.py" "$OUT" "${SERVERS[@]}" | tee "$OUT/summary.md"
echo "results in $OUT"
