#!/usr/bin/env bash
# TLS and authentication on against off, interleaved, each run on a fresh standalone
# (issue 19, acceptance 4; docs/performance.md):
#
#   benches/security.sh [ROUNDS] [NADI]
#   RATE=300000 benches/security.sh 2    # at a fixed rate (events/s): latency without queueing
#
# - off: `nadi standalone` as it starts by default (no TLS, no authentication);
# - on:  `nadi standalone --tls-cert/--tls-key/--tls-ca --auth required --token-file` with a
#        certificate made here by openssl, and the bench presenting a token whose principal has
#        write on the stream (not a superuser: every call is checked against the grants).
#
# Each run: `nadi bench --stream b/s16 --segments 16 --producers 1 --event-size 1024 --rate max
# --duration 10`. Prints one line per run: round, what, load average, the bench's JSON, and the
# server's CPU per event (µs, from /proc).
set -euo pipefail
ROUNDS=${1:-3}
NADI=${2:-target/release/nadi}
RATE=${RATE:-max}
BENCH=(bench --stream b/s16 --segments 16 --producers 1 --event-size 1024 --rate "$RATE" --duration 10)
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

# A CA and a server certificate for 127.0.0.1 / localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/node.key" -out "$work/node.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > "$work/ext"
openssl x509 -req -in "$work/node.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/ext" -out "$work/node.pem" 2>/dev/null
# Tokens: an admin (superuser) that sets up, and the bench's principal with write on b/s16.
"$NADI" auth token admin > "$work/admin.token" 2> "$work/tokens.toml"
"$NADI" auth token bench > "$work/bench.token" 2>> "$work/tokens.toml"

run() {
  local name=$1 dir="$work/$1-$RANDOM"; shift
  "$NADI" standalone --data-dir "$dir" --controller-listen 127.0.0.1:0 --segment-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --tier2 none "$@" 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "nadi standalone ready"
  local ctl client=()
  ctl=$(grep -o 'controller https\?://[0-9.:]*' "$dir.log" | head -1 | cut -d' ' -f2)
  if [ "$name" = on ]; then
    client=(--tls-ca "$work/ca.pem")
    "$NADI" --controller "$ctl" "${client[@]}" --token "$(cat "$work/admin.token")" scope create b >/dev/null
    "$NADI" --controller "$ctl" "${client[@]}" --token "$(cat "$work/admin.token")" \
      stream create b/s16 --segments 16 >/dev/null
    "$NADI" --controller "$ctl" "${client[@]}" --token "$(cat "$work/admin.token")" \
      acl grant bench write prn::/scope:b/stream:s16 >/dev/null
    client+=(--token "$(cat "$work/bench.token")")
  fi
  local before after json
  before=$(cpu "$pid")
  json=$("$NADI" --controller "$ctl" "${client[@]}" "${BENCH[@]}" 2>/dev/null | tail -1)
  after=$(cpu "$pid")
  echo "$name $(cut -d' ' -f1-3 /proc/loadavg) $json cpu_us_per_event=$(python3 -c "import json,sys; j=json.loads(sys.argv[1]); print('%.3f' % ((float(sys.argv[3])-float(sys.argv[2]))*1e6/j['events']))" "$json" "$before" "$after")"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir" "$dir.log"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  run off
  run on --tls-cert "$work/node.pem" --tls-key "$work/node.key" --tls-ca "$work/ca.pem" \
    --auth required --token-file "$work/tokens.toml" --superusers admin
done
