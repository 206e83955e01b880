#!/usr/bin/env bash
# Issue 20's hostile shape: one user floods another who is offline with a full offline queue, for
# $SECONDS_ s (default 60) at $RATE messages a second (default 0: as fast as the server reads),
# against a one-core server with the default limits. Reports what was sent, what was refused and
# how, and how much the store grew: the data directory (embedded), or with STORE=scylla the
# keyspace's directory plus the commit log of the Cassandra that scripts/infra/cassandra runs (no
# JMX there, so no flush: unflushed writes show in the commit log, which grows in 32 MiB segments).
#   BIN=dir/with/starling (default: a release build); PY=python with slixmpp (tests/interop venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/var/cache/starling/venv/bin/python}
WORK=${WORK:-/tmp/starling-refused-flood}
PORT=${PORT:-35422}
USERS=2
DEFAULT_LIMITS=1
CASSANDRA_STATE=${STARLING_STATE:-/var/cache/starling/state/cassandra}
KEYSPACE=refused_flood_$(date +%s)
EXTRA_TOML=
if [ "${STORE:-embedded}" = scylla ]; then
  mkdir -p "$WORK.secrets" && echo cassandra > "$WORK.secrets/cassandra.password"  # scripts/infra/cassandra's login
  EXTRA_TOML=$(printf '[store]\nbackend = "scylla"\nscylla_contact_points = ["127.0.0.1:29042"]\nscylla_keyspace = "%s"\nscylla_username = "cassandra"\nscylla_password_file = "%s"\n' "$KEYSPACE" "$WORK.secrets/cassandra.password")
fi
rm -rf "$WORK"
source loadtest/scripts/one-core-server.sh
store_bytes() {
  if [ "${STORE:-embedded}" = scylla ]; then
    du -scb "$CASSANDRA_STATE/data/$KEYSPACE" "$CASSANDRA_STATE/commitlog" | tail -1 | cut -f1
  else
    du -sb "$WORK/data" | cut -f1
  fi
}
start_server
before=$(store_bytes)
result=$(taskset -c 1 "$PY" loadtest/scripts/refused-flood.py --port "$PORT" --seconds "${SECONDS_:-60}" --rate "${RATE:-0}")
after=$(store_bytes)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
metrics=$(curl -s "127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^starling_(quota_refusals|archive_withdrawn|archive_written|offline_stored)' | tr '\n' ' ')
echo "$result"
echo "store grew $(( (after - before) / 1024 )) KiB; server peak RSS $((rss / 1024)) MiB"
echo "$metrics"
