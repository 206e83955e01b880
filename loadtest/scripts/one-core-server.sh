# Sourced by the one-core benchmarks (muc-bench.sh, pep-bench.sh, pep-login-bench.sh,
# refused-flood.sh): builds the release server and harness (unless $BIN names a directory with a
# `starling` already), writes $WORK/conf.toml for a server on 127.0.0.1:$PORT (direct TLS on PORT+1,
# admin on PORT+58) with the caller's extra TOML ($EXTRA_TOML), and defines start_server (fresh
# store, $USERS accounts user1.. with password "secret", pinned to CPU 0, waits until ready; sets
# $server_pid) and stop_server (also on exit). The per-user message rate and the per-connection read
# shaper are off (a few users far beyond one person's rate), unless $DEFAULT_LIMITS is set.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p starling-server -p starling-loadtest
  BIN=$CARGO_TARGET_DIR/release
fi
OUT=${OUT:-$WORK/results}
mkdir -p "$WORK" "$OUT"
ADMIN_PORT=$((PORT + 58))
LIMITS_OFF_C2S="read_rate_bytes = 0"
LIMITS_OFF="[sessions]
message_rate = 0"
if [ -n "${DEFAULT_LIMITS:-}" ]; then LIMITS_OFF_C2S=""; LIMITS_OFF=""; fi
cat > "$WORK/conf.toml" <<TOML
[server]
domain = "localhost"
data_dir = "$WORK/data"
[c2s]
starttls_listen = ["127.0.0.1:$PORT"]
direct_tls_listen = ["127.0.0.1:$((PORT + 1))"]
ping_idle_seconds = 600
$LIMITS_OFF_C2S
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
$LIMITS_OFF
${EXTRA_TOML:-}
TOML
server_pid=
start_server() {
  rm -rf "$WORK/data"
  "$BIN/starling" -c "$WORK/conf.toml" user add-bulk --prefix user --count "$USERS" --password secret > /dev/null
  taskset -c 0 "$BIN/starling" -c "$WORK/conf.toml" serve > "$WORK/server.log" 2>&1 &
  server_pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$ADMIN_PORT/readyz")" = 200 ]; do sleep 0.1; done
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop_server EXIT
