#!/usr/bin/env bash
# RF 1 against RF 3 on this one machine, interleaved, each run on fresh data directories
# (issue 17, acceptance 6; docs/performance.md):
#
#   benches/replication.sh [ROUNDS] [NADI] [OLD_NADI]
#   RF3=0 benches/replication.sh 3 NADI OTHER_NADI     # standalone against standalone only
#
# - RF 1: `nadi standalone` (single-copy containers, the default);
# - RF 3: one controller with --replication-factor 3 and three `nadi segment-store
#   --container-log raft` processes (replicas placed by the controller), all on this machine;
# - with OLD_NADI, also `nadi standalone` of that binary (RF 1 against an older build, or a
#   build without the `metrics` feature).
#
# Each run: `nadi bench --stream b/s16 --segments 16 --producers 1 --event-size 1024 --rate max
# --duration 10`. Prints one line per run: round, what, load average, the bench's JSON, and the
# server's CPU per event (task-clock of the server processes, from /proc, in µs).
set -euo pipefail
ROUNDS=${1:-3}
NADI=${2:-target/release/nadi}
OLD=${3:-}
BENCH=(bench --stream b/s16 --segments 16 --producers 1 --event-size 1024 --rate max --duration 10)
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs the bench against CONTROLLER; prints its JSON and the servers' CPU µs per event.
run_bench() {
  local ctl=$1; shift
  local before after json
  before=$(cpu "$@")
  json=$("$NADI" --controller "$ctl" "${BENCH[@]}" 2>/dev/null | tail -1)
  after=$(cpu "$@")
  python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(sys.argv[1], 'cpu_us_per_event=%.3f' % ((float(sys.argv[3])-float(sys.argv[2]))*1e6/j['events']))" "$json" "$before" "$after"
}

standalone() {
  local bin=$1 name=$2 dir="$work/$2-$RANDOM"
  "$bin" standalone --data-dir "$dir" --controller-listen 127.0.0.1:0 --segment-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --tier2 none 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "nadi standalone ready"
  local ctl
  ctl=$(grep -o 'controller http://[0-9.:]*' "$dir.log" | head -1 | cut -d' ' -f2)
  echo "$name $(cut -d' ' -f1-3 /proc/loadavg) $(run_bench "$ctl" "$pid")"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  # A run writes about 7 GB: kept until the end, four rounds filled this disk.
  rm -rf "$dir" "$dir.log"
}

rf3() {
  local dir="$work/rf3-$RANDOM" cp
  mkdir -p "$dir"
  cp=$(port)
  "$NADI" controller --id 1 --listen "127.0.0.1:$cp" --peers "1=127.0.0.1:$cp" --data-dir "$dir/c" \
    --replication-factor 3 2>"$dir/c.log" &
  local procs=($!); pids+=("$!")
  wait_for "$dir/c.log" "ready"
  for i in 1 2 3; do
    "$NADI" --controller "http://127.0.0.1:$cp" segment-store --listen "127.0.0.1:$(port)" \
      --data-dir "$dir/s$i" --container-log raft --tier2 none 2>"$dir/s$i.log" &
    procs+=($!); pids+=("$!")
  done
  for i in 1 2 3; do wait_for "$dir/s$i.log" "nadi segment-store ready"; done
  # Every container's group has its three voters and is led by its preferred replica (the
  # hand-overs after placement are over).
  for _ in $(seq 300); do
    "$NADI" --controller "http://127.0.0.1:$cp" cluster info --json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)["containers"]
ok = c and all(len(x["voters"]) == 3 and not x["changing"] and x["replicas"] and x["store_id"] == x["replicas"][0] for x in c)
sys.exit(0 if ok else 1)' && break
    sleep 0.2
  done
  echo "rf3 $(cut -d' ' -f1-3 /proc/loadavg) $(run_bench "http://127.0.0.1:$cp" "${procs[@]}")"
  for p in "${procs[@]}"; do kill -9 "$p"; wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  standalone "$NADI" rf1
  if [ "${RF3:-1}" != 0 ]; then rf3; fi
  if [ -n "$OLD" ]; then standalone "$OLD" old-rf1; fi
done
