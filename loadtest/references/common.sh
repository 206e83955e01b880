# Shared by the reference-server scripts (sourced). Everything lives under $REF_DIR.
REF_DIR=${REF_DIR:-/tmp/starling-refs}
REF_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$REF_DIR"
# Self-signed ECDSA P-256 certificate for domain `localhost`, shared by all three servers (an RSA
# key would make every server's handshake several times dearer than Starling's default key type).
ensure_cert() {
  if ! openssl pkey -in "$REF_DIR/key.pem" -noout -text 2>/dev/null | grep -q prime256v1; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 -subj /CN=localhost \
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
