#!/usr/bin/env bash
# Issue 20's hostile shape: one user floods another who is offline with a full offline queue, for
# $SECONDS_ s (default 60) at $RATE messages a second (default 0: as fast as the server reads), against a one-core server with the default limits. Reports what was
# sent, what was refused and how, and how much the store grew: the data directory (embedded), or
# with STORE=scylla the keyspace's directory plus the commit log of the Cassandra that
# scripts/infra/cassandra runs (no JMX there, so no flush: unflushed writes show in the commit log,
# which grows in 32 MiB segments).
#   BIN=dir/with/starling (default target/release); PY=python with slixmpp (tests/interop venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
PY=${PY:-/var/cache/starling/venv/bin/python}
WORK=${WORK:-/tmp/starling-refused-flood}
PORT=${PORT:-35422}
rm -rf "$WORK"; mkdir -p "$WORK"
cat > "$WORK/conf.toml" <<TOML
[server]
domain = "localhost"
data_dir = "$WORK/data"
[c2s]
starttls_listen = ["127.0.0.1:$PORT"]
direct_tls_listen = ["127.0.0.1:$((PORT + 1))"]
ping_idle_seconds = 600
[admin]
listen = "127.0.0.1:$((PORT + 58))"
TOML
CASSANDRA_STATE=${STARLING_STATE:-/var/cache/starling/state/cassandra}
KEYSPACE=refused_flood_$(date +%s)
if [ "${STORE:-embedded}" = scylla ]; then
  printf '[store]\nbackend = "scylla"\nscylla_contact_points = ["127.0.0.1:29042"]\nscylla_keyspace = "%s"\n' "$KEYSPACE" >> "$WORK/conf.toml"
fi
store_bytes() {
  if [ "${STORE:-embedded}" = scylla ]; then
    du -scb "$CASSANDRA_STATE/data/$KEYSPACE" "$CASSANDRA_STATE/commitlog" | tail -1 | cut -f1
  else
    du -sb "$WORK/data" | cut -f1
  fi
}
"$BIN/starling" -c "$WORK/conf.toml" user add-bulk --prefix user --count 2 --password secret > /dev/null
taskset -c 0 "$BIN/starling" -c "$WORK/conf.toml" serve > "$WORK/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null || true' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$((PORT + 58))/readyz")" = 200 ]; do sleep 0.1; done
before=$(store_bytes)
result=$(taskset -c 1 "$PY" loadtest/scripts/refused-flood.py --port "$PORT" --seconds "${SECONDS_:-60}" --rate "${RATE:-0}")
after=$(store_bytes)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
metrics=$(curl -s "127.0.0.1:$((PORT + 58))/metrics" | grep -E '^starling_(quota_refusals|archive_withdrawn|archive_written|offline_stored)' | tr '\n' ' ')
echo "$result"
echo "store grew $(( (after - before) / 1024 )) KiB; server peak RSS $((rss / 1024)) MiB"
echo "$metrics"
