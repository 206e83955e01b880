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
WORK=${WORK:-/tmp/starling-pep-login-bench}
PORT=37422
source loadtest/scripts/one-core-server.sh
start_server
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
