# Shared by the reference-server scripts (sourced). Everything lives under $REF_DIR.
REF_DIR=${REF_DIR:-/tmp/starling-refs}
REF_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$REF_DIR"
# Self-signed certificate for domain `localhost` (shared by both servers).
ensure_cert() {
  if [ ! -f "$REF_DIR/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
      -addext subjectAltName=DNS:localhost -keyout "$REF_DIR/key.pem" -out "$REF_DIR/cert.pem" 2>/dev/null
    cat "$REF_DIR/key.pem" "$REF_DIR/cert.pem" > "$REF_DIR/combined.pem"
    chmod 644 "$REF_DIR"/*.pem
  fi
}
# wait_port HOST PORT [SECONDS]: until a TCP connect succeeds.
wait_port() {
  local t=$(( ${3:-60} * 10 ))
  for ((i = 0; i < t; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1:$2 not up" >&2; return 1
}
# stop_pidfile FILE: TERM the process, wait up to 20 s, then KILL.
stop_pidfile() {
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
