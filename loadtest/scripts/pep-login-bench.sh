#!/usr/bin/env bash
# What a login costs with PEP: user 0 has CONTACTS contacts that each published one item to a node
# its client asks for (+notify in its caps); it logs in LOGINS times, one after another, and each
# time every contact's last item comes to the new session (XEP-0163 §4.3.3). The release server is
# pinned to CPU 0, the harness to CPU 1; embedded store, TLS + SCRAM.
#   loadtest/scripts/pep-login-bench.sh            CONTACTS=200 LOGINS=30 override
# Results: $OUT/pep-login-CONTACTS.json and a line on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONTACTS=${CONTACTS:-200}
LOGINS=${LOGINS:-30}
USERS=$((CONTACTS + 1))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/starling/target}
cargo build --release -q -p starling-server -p starling-loadtest
BIN=$CARGO_TARGET_DIR/release
WORK=${WORK:-/tmp/starling-pep-login-bench}
OUT=${OUT:-$WORK/results}
mkdir -p "$WORK" "$OUT"
cat > "$WORK/conf.toml" <<TOML
[server]
domain = "localhost"
data_dir = "$WORK/data"
[c2s]
starttls_listen = ["127.0.0.1:37422"]
direct_tls_listen = ["127.0.0.1:37423"]
ping_idle_seconds = 600
[admin]
listen = "127.0.0.1:37480"
TOML
rm -rf "$WORK/data"
"$BIN/starling" -c "$WORK/conf.toml" user add-bulk --prefix user --count "$USERS" --password secret > /dev/null
taskset -c 0 "$BIN/starling" -c "$WORK/conf.toml" serve > "$WORK/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:37480/readyz)" = 200 ]; do sleep 0.1; done
taskset -c 1 "$BIN/starling-loadtest" pep-login --host 127.0.0.1 --port 37422 --domain localhost --password secret --users "$USERS" --quiet \
  --logins "$LOGINS" --server-pid "$server_pid" --json-out "$OUT/pep-login-$CONTACTS.json" > "$OUT/pep-login-$CONTACTS.txt" 2>&1 || true
python3 - "$OUT/pep-login-$CONTACTS.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r["pep_login"]
print(f"{p['contacts']} contacts, {p['complete']}/{p['rounds']} logins complete: login p50 {p['login']['p50_us'] / 1000:.1f} ms "
      f"p99 {p['login']['p99_us'] / 1000:.1f} ms; last items p50 {p['last_items']['p50_us'] / 1000:.1f} ms "
      f"p99 {p['last_items']['p99_us'] / 1000:.1f} ms; server CPU per login {p['server_cpu_ms_per_login'] or 0:.1f} ms")
PY
echo "results in $OUT"
