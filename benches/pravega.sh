#!/usr/bin/env bash
# The Pravega front end against Nadi's own protocol, interleaved, each run on a fresh standalone
# (issue 20, acceptance 5; docs/performance.md):
#
#   benches/pravega.sh [ROUNDS] [NADI] [PYTHON]
#
# - native: `nadi bench --stream b/s --segments 16 --producers 1 --event-size 1024 --keys 1024
#           --rate max --duration 10` (the Rust client over Nadi's gRPC protocol);
# - pravega: the unmodified Pravega Python client (`pravega==0.3.8`, PYTHON defaults to
#           target/pravega/bin/python) writing the same events for 10 s at its full speed
#           (`tests/python/pravega_data.py bench`, `max_inflight_events` $INFLIGHT, default
#           1000), then `flush`.
#
# Prints one line per run: round, what, load average, the client's JSON, the server's CPU per
# event (µs, from /proc) and the client's CPU per event (µs).
set -euo pipefail
ROUNDS=${1:-3}
NADI=${2:-target/release/nadi}
PYTHON=${3:-target/pravega/bin/python}
INFLIGHT=${INFLIGHT:-1000}
SCRIPT=tests/python/pravega_data.py
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

# Runs a command and prints its children's CPU seconds on stderr.
child_cpu() {
  python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime, file=sys.stderr)' "$@"
}

run() {
  local name=$1 dir="$work/$1-$RANDOM"
  "$NADI" standalone --data-dir "$dir" --controller-listen 127.0.0.1:0 --segment-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --tier2 none \
    --pravega-controller-listen 127.0.0.1:0 --pravega-segment-listen 127.0.0.1:0 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "nadi standalone ready"
  local ctl pravega before after json client
  ctl=$(grep -o 'controller http://[0-9.:]*' "$dir.log" | head -1 | cut -d' ' -f2)
  pravega=$(grep -o 'pravega controller tcp://[0-9.:]*' "$dir.log" | head -1 | cut -d' ' -f3)
  before=$(cpu "$pid")
  if [ "$name" = native ]; then
    json=$(child_cpu "$NADI" --controller "$ctl" bench --stream b/s --segments 16 --producers 1 \
      --event-size 1024 --keys 1024 --rate max --duration 10 2>"$work/client-cpu" | tail -1)
  else
    json=$(child_cpu "$PYTHON" "$SCRIPT" "$pravega" bench b s 10 1024 1024 16 "$INFLIGHT" \
      2>"$work/client-cpu" | tail -1)
  fi
  after=$(cpu "$pid")
  client=$(tail -1 "$work/client-cpu")
  echo "$name $(cut -d' ' -f1-3 /proc/loadavg) $json $(python3 -c "
import json, sys
j = json.loads(sys.argv[1]); n = j['events']
print('server_cpu_us_per_event=%.3f client_cpu_us_per_event=%.3f' % ((float(sys.argv[3]) - float(sys.argv[2])) * 1e6 / n, float(sys.argv[4]) * 1e6 / n))" \
    "$json" "$before" "$after" "$client")"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir" "$dir.log"
}

for r in $(seq "$ROUNDS"); do
  echo "# round $r"
  run native
  run pravega
done
