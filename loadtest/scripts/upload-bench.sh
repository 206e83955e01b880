#!/usr/bin/env bash
# Issue 17's upload measure: XEP-0363 throughput on a one-core server (release build pinned to
# CPU 0; the client, and for S3 the Versity S3 Gateway, on CPU 1), on the filesystem store and on
# S3, for small files with many uploads at once and large files with a few: MB/s and files/s each
# way, upload latency, server CPU and peak RSS (streaming: RSS must not grow with file size).
#   STORES="filesystem s3" CASES="SIZE:FILES:CONCURRENCY ..." override; BIN=dir with a release build
# The S3 store needs scripts/infra/s3 start (this script starts it, and stops it if it did).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/tmp/starling-upload-bench}
PORT=${PORT:-36222}
HTTP_PORT=$((PORT + 3))
USERS=64
STORES=${STORES:-"filesystem s3"}
CASES=${CASES:-"1048576:512:1 1048576:512:16 1048576:512:64 52428800:16:1 52428800:16:8"}
PYTHON=${PYTHON:-/var/cache/starling/venv/bin/python}
rm -rf "$WORK"
started_s3=
if [[ " $STORES " == *" s3 "* ]] && ! scripts/infra/s3 status > /dev/null; then
  scripts/infra/s3 start > /dev/null
  started_s3=1
fi
s3_pid=$(cat /var/cache/starling/state/s3/versitygw.pid 2>/dev/null || echo 0)
[ "$s3_pid" != 0 ] && taskset -cp 1 "$s3_pid" > /dev/null
for store in $STORES; do
  EXTRA_TOML="[websocket]
listen = [\"127.0.0.1:$HTTP_PORT\"]
[upload]
enabled = true
public_url = \"http://127.0.0.1:$HTTP_PORT\"
max_file_bytes = 104857600
quota_bytes = 0
store = \"$store\"
[upload.s3]
endpoint = \"${S3_ENDPOINT:-http://127.0.0.1:27070}\"
bucket = \"${S3_BUCKET:-starling-test}\"
access_key_id = \"${S3_ACCESS_KEY_ID:-starling}\"
secret_access_key = \"${S3_SECRET_ACCESS_KEY:-starling-test-secret}\""
  source loadtest/scripts/one-core-server.sh
  for case in $CASES; do
    IFS=: read -r size files concurrency <<< "$case"
    start_server
    extra=()
    [ "$store" = s3 ] && extra=(--s3-pid "$s3_pid")
    taskset -c 1 "$PYTHON" loadtest/scripts/upload-bench.py --port "$PORT" --size "$size" --files "$files" --concurrency "$concurrency" \
      --server-pid "$server_pid" "${extra[@]}" --json-out "$OUT/$store-$size-$concurrency.json" > /dev/null
    stop_server
    "$PYTHON" - "$OUT/$store-$size-$concurrency.json" "$store" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p, g = r["put"], r["get"]
mb = lambda b: f"{b / 2**20:.0f} MiB"
s3 = p["usage"].get("s3")
print(f"{sys.argv[2]:10} {r['size'] / 2**20:5.0f} MiB x {r['files']:4} at {r['concurrency']:3}: "
      f"PUT {p['mb_per_second']:6.0f} MB/s {p['files_per_second']:6.1f} files/s p50 {p['latency_p50_ms']:7.1f} ms p99 {p['latency_p99_ms']:7.1f} ms, "
      f"server {p['usage']['server']['cores_used']:.2f} cores peak RSS {mb(p['usage']['server']['peak_rss_bytes'])}"
      + (f", S3 {s3['cores_used']:.2f} cores" if s3 else "")
      + f" | GET {g['mb_per_second']:6.0f} MB/s server {g['usage']['server']['cores_used']:.2f} cores peak RSS {mb(g['usage']['server']['peak_rss_bytes'])}"
      + (f" | {r['failed']} failed {r['failures']}" if r['failed'] else ""))
PY
  done
done
[ -n "$started_s3" ] && scripts/infra/s3 stop > /dev/null
echo "results in $OUT"
