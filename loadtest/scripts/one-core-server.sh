# Sourced by the one-core benchmarks (muc-bench.sh, pep-bench.sh, pep-login-bench.sh): builds the
# release server and harness, writes $WORK/conf.toml for a server on 127.0.0.1:$PORT (direct TLS on
# PORT+1, admin on PORT+58) with the caller's extra TOML ($EXTRA_TOML), and defines start_server
# (fresh store, $USERS accounts user1.. with password "secret", pinned to CPU 0, waits until ready;
# sets $server_pid) and stop_server (also on exit). $BIN is the release directory.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
cargo build --release -q -p starling-server -p starling-loadtest
BIN=$CARGO_TARGET_DIR/release
OUT=${OUT:-$WORK/results}
mkdir -p "$WORK" "$OUT"
ADMIN_PORT=$((PORT + 58))
cat > "$WORK/conf.toml" <<TOML
[server]
domain = "localhost"
data_dir = "$WORK/data"
[c2s]
starttls_listen = ["127.0.0.1:$PORT"]
direct_tls_listen = ["127.0.0.1:$((PORT + 1))"]
ping_idle_seconds = 600
read_rate_bytes = 0
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
# A few users far beyond one person's rate: the per-user and per-connection limits are off.
[sessions]
message_rate = 0
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
