#!/usr/bin/env bash
# Two builds of Starling measured in one sitting, alternately, on the same data: logins/s and chat
# at 1,000 pairs each sending at an even rate (open loop), embedded store, archive on, STARTTLS +
# SCRAM. Server pinned to CPU 0, harness to CPU 1. For refactors that must not cost speed.
#
#   loadtest/scripts/compare-builds.sh BEFORE_BIN AFTER_BIN [ROUNDS]    (default 2 rounds: A B A B)
#
# BEFORE_BIN/AFTER_BIN are `starling` binaries (release builds); the harness is the release
# `starling-loadtest` of $CARGO_TARGET_DIR. RATES (default "10000 20000") are the aggregate chat
# rates; USERS (default 4000) the logins measured. Each run starts a fresh server on a fresh copy
# of one data directory. A summary table is printed; JSON reports stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
BEFORE=$1 AFTER=$2 ROUNDS=${3:-2}
RATES=${RATES:-10000 20000}
USERS=${USERS:-4000}
PAIRS=1000
LT_BIN=${LT_BIN:-${CARGO_TARGET_DIR:-/var/cache/starling/target}/release/starling-loadtest}
WORK=${WORK:-/tmp/starling-compare}
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
[admin]
listen = "127.0.0.1:35280"
TOML
"$BEFORE" -c "$WORK/conf.toml" user add-bulk --prefix user --count "$USERS" --password secret >/dev/null
mv "$WORK/data" "$WORK/pristine"

server_pid=
start_server() { # binary
  rm -rf "$WORK/data"; cp -r "$WORK/pristine" "$WORK/data"
  taskset -c 0 "$1" -c "$WORK/conf.toml" serve > "$WORK/server.log" 2>&1 &
  server_pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:35280/readyz)" = 200 ]; do sleep 0.1; done
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop_server EXIT
LT="taskset -c 1 $LT_BIN"
COMMON="--host 127.0.0.1 --port 35222 --domain localhost --password secret --source-addresses 127.0.0.2-127.0.0.9 --quiet"

for round in $(seq 1 "$ROUNDS"); do
  for side in before after; do
    bin=$BEFORE; [[ $side == after ]] && bin=$AFTER
    start_server "$bin"
    $LT connect $COMMON --users "$USERS" --concurrency 200 --hold-seconds 1 --server-pid "$server_pid" --json-out "$OUT/$side-r$round-logins.json"
    stop_server
    for rate in $RATES; do
      start_server "$bin"
      $LT chat $COMMON --pairs "$PAIRS" --rate "$rate" --duration 20 --server-pid "$server_pid" --json-out "$OUT/$side-r$round-chat-$rate.json"
      stop_server
    done
  done
done

python3 - "$OUT" <<'PY'
import json, sys, glob, os, collections
out = sys.argv[1]
rows = collections.defaultdict(list)
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    side, _, what = os.path.basename(path)[:-5].split("-", 2)
    report = json.load(open(path))
    if what.startswith("logins"):
        logins, server = report["logins"], report["login_usage"]["server"]
        cpu_us = server["cpu_seconds"] * 1e6 / max(logins["succeeded"], 1)
        rows[("logins", side)].append(f"{logins['logins_per_second']:,.0f}/s {cpu_us:.0f} µs CPU each")
    else:
        chat, server = report["chat"], report["usage"]["server"]
        cpu_us = server["cpu_seconds"] * 1e6 / max(chat["received"], 1)
        latency = chat["latency"]
        rows[("chat " + what.rsplit("-", 1)[1], side)].append(
            f"{chat['throughput_per_second']:,.0f}/s p50 {latency['p50_us'] / 1000:.2f} p99 {latency['p99_us'] / 1000:.2f} ms, {cpu_us:.1f} µs CPU each")
print(f"{'measure':<12}{'build':<8}per run (server CPU per login / per delivered message)")
for (what, side), runs in sorted(rows.items()):
    print(f"{what:<12}{side:<8}" + "; ".join(runs))
PY
