#!/usr/bin/env bash
# A local Starling cluster on one machine, for load runs: N session nodes and M edge nodes, each its
# own process, on Cassandra (store), Kafka (bus) and Redis (registry) started by scripts/infra.
#   loadtest/scripts/cluster-local.sh up [SESSIONS=2] [EDGES=2] [ACCOUNTS=2000]
#   loadtest/scripts/cluster-local.sh down
#   loadtest/scripts/cluster-local.sh connections             (client connections the edges hold now)
#   loadtest/scripts/cluster-local.sh kill NODE | start NODE   (e.g. session1: kill -9, or start again
#                                                             and wait until the group settled)
# SESSIONS=0 starts the single-process server (role all) on the same store instead, as the baseline,
# listening where edge 1 would. KAFKA_LINGER_MS (default 0) sets [cluster] kafka_linger_ms; ARCHIVE=0
# turns message archiving off (on by default, as in the server). SESSION_TIMEOUT_MS sets
# [cluster] session_timeout_ms (unset: the server's default, and a config older builds still read).
# loadtest/scripts/owner-pairs.py writes --user-list files of pairs on the same or different owners.
# Edge k listens for STARTTLS on 127.0.0.1:(36220+k); admin ports 36280+n. Accounts user1..N,
# password "secret". State and logs in $WORK (default /tmp/starling-cluster). STARLING_BIN runs another
# `starling` binary (e.g. an earlier build, to compare two in one sitting); LEGACY_CONFIG=1 leaves out
# what builds from before 2026-12-06 refuse (read and message rates, the CQL login: run Cassandra
# with CASSANDRA_AUTHENTICATOR=AllowAllAuthenticator for them).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
WORK=${WORK:-/tmp/starling-cluster}
BIN=${STARLING_BIN:-$CARGO_TARGET_DIR/release/starling}

config() { # role index
  local role=$1 n=$2
  cat <<TOML
[server]
domain = "localhost"
data_dir = "$WORK/$role$n/data"
[c2s]
starttls_listen = ["127.0.0.1:$((36220 + n))"]
direct_tls_listen = ["127.0.0.1:$((36240 + n))"]
ping_idle_seconds = 600
$([[ -z ${LEGACY_CONFIG:-} ]] && echo "read_rate_bytes = 0")
[admin]
listen = "ADMIN"
# A few users far beyond one person's rate: the per-user and per-connection limits are off.
$([[ -z ${LEGACY_CONFIG:-} ]] && printf '[sessions]\nmessage_rate = 0')
[store]
backend = "scylla"
scylla_contact_points = ["127.0.0.1:29042"]
scylla_keyspace = "$KEYSPACE"
$([[ -z ${LEGACY_CONFIG:-} ]] && printf 'scylla_username = "cassandra"\nscylla_password_file = "%s"' "$CASSANDRA_PASSWORD_FILE")
[archive]
enabled = $([[ ${ARCHIVE:-1} == 0 ]] && echo false || echo true)
[cluster]
role = "$role"
node_id = "$role$n"
kafka_brokers = "127.0.0.1:19092"
kafka_prefix = "$PREFIX"
kafka_linger_ms = ${KAFKA_LINGER_MS:-0}
$([[ -n ${SESSION_TIMEOUT_MS:-} ]] && echo "session_timeout_ms = $SESSION_TIMEOUT_MS")
partitions = 16
replication = 1
redis_url = "redis://127.0.0.1:26379/"
TOML
}

up() {
  local sessions=${1:-2} edges=${2:-2} accounts=${3:-2000}
  cargo build --release -q -p starling-server -p starling-loadtest
  scripts/infra/cassandra start >/dev/null
  scripts/infra/kafka start >/dev/null
  scripts/infra/redis start >/dev/null
  rm -rf "$WORK"; mkdir -p "$WORK"
  KEYSPACE="cluster_$(date +%s)"; PREFIX="cl$(date +%s)"
  # scripts/infra/cassandra's login (cassandra / cassandra), from a file as a Secret would be.
  CASSANDRA_PASSWORD_FILE="$WORK/cassandra.password"; echo cassandra > "$CASSANDRA_PASSWORD_FILE"
  echo "KEYSPACE=$KEYSPACE PREFIX=$PREFIX" > "$WORK/env"
  local roles="session edge"
  if [[ $sessions == 0 ]]; then roles="all"; edges=1; fi
  for role in $roles; do
    local count=$sessions; [[ $role != session ]] && count=$edges
    for n in $(seq 1 "$count"); do
      mkdir -p "$WORK/$role$n"
      local admin=$((36280 + n)); [[ $role != session ]] && admin=$((36290 + n))
      config "$role" "$n" | sed "s|ADMIN|127.0.0.1:$admin|" > "$WORK/$role$n/starling.toml"
    done
  done
  local first="$WORK/session1"; [[ $sessions == 0 ]] && first="$WORK/all1"
  "$BIN" -c "$first/starling.toml" user add-bulk --prefix user --count "$accounts" --password secret
  for dir in "$WORK"/session* "$WORK"/edge* "$WORK"/all*; do
    [ -d "$dir" ] && launch "$dir"
  done
  for dir in "$WORK"/session* "$WORK"/edge* "$WORK"/all*; do
    [ -d "$dir" ] && await_ready "$dir"
  done
  settle "$sessions"
  echo "cluster up: $sessions session nodes, $edges edges (STARTTLS 127.0.0.1:36221..)"
}

launch() { # node directory; its log is appended to, so `settle` reads from where this process began
  stat -c %s "$1/server.log" > "$1/log_start" 2>/dev/null || echo 0 > "$1/log_start"
  "$BIN" -c "$1/starling.toml" serve >> "$1/server.log" 2>&1 &
  echo $! > "$1/pid"
}

await_ready() { # node directory
  local admin; admin=$(admin_of "$1")
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/readyz")" = 200 ]; do
    kill -0 "$(cat "$1/pid")" 2>/dev/null || { echo "$1 did not start:" >&2; tail -20 "$1/server.log" >&2; down; exit 1; }
    sleep 0.2
  done
}

settle() { # session nodes
  local sessions=$1
  # The group settles (a cooperative rebalance takes two rounds): wait until every session node
  # holds partitions and nothing changed for 3 s, so a load run does not start mid-rebalance.
  local last="" same=0 waited=0
  while (( same < 3 )); do
    local now; now=$(cat "$WORK"/session*/server.log | grep -c "owner partitions" || true)
    local holding=0 log
    for dir in "$WORK"/session*; do
      # awk reads to the end (no early exit to cut the pipe short); colour codes stripped.
      if tail -c +"$(( $(cat "$dir/log_start") + 1 ))" "$dir/server.log" \
        | awk '{ gsub(/\033\[[0-9;]*m/, "") } /owner partitions assigned partitions=\[[0-9]/ { found = 1 } END { exit !found }'; then
        holding=$((holding + 1))
      fi
    done
    if [[ $now == "$last" && $holding == "$sessions" ]] || [[ $sessions == 0 ]]; then same=$((same + 1)); else same=0; fi
    last=$now; sleep 1; waited=$((waited + 1))
    (( waited < 90 )) || { echo "the group did not settle in 90 s" >&2; exit 1; }
  done
}

admin_of() { # node directory: its admin address
  grep -A1 '^\[admin\]' "$1/starling.toml" | sed -n 's/.*"\(.*\)"/\1/p'
}

connections() { # the connections the edges hold now, summed (their /metrics)
  local total=0 dir n
  for dir in "$WORK"/edge*; do
    n=$(curl -s "http://$(admin_of "$dir")/metrics" | awk '/^starling_connections_open / { print $2 }')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

down() {
  for pid in "$WORK"/*/pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  echo "cluster down"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  kill) kill -9 "$(cat "$WORK/$2/pid")"; wait "$(cat "$WORK/$2/pid")" 2>/dev/null || true ;;
  start) launch "$WORK/$2"; await_ready "$WORK/$2"; settle "$(ls -d "$WORK"/session* 2>/dev/null | wc -l)" ;;
  connections) connections ;;
  *) echo "usage: $0 up [SESSIONS] [EDGES] [ACCOUNTS] | down | kill NODE | start NODE | connections" >&2; exit 2 ;;
esac
