#!/usr/bin/env bash
# Append latency while Tier-2 drains a backlog (issue 21, acceptance 1; docs/performance.md),
# interleaved, each run on a fresh default `nadi standalone` (local Tier-2 on the same disk):
#
#   benches/after-burst.sh [ROUNDS] [NADI] [OLD_NADI]
#
# Each round runs, one after the other, each once the disk is quiet (`disk_quiet`, lib.sh):
# - burst: `nadi bench` at the maximum rate for BURST seconds (default 10: 7–10 GB of 1 KiB
#   events over 16 segments), then at once 50,000 × 1 KiB events/s for 10 s on another stream
#   of 16 segments, while Tier-2 drains what the burst left in Tier-1;
# - idle:  the same 50,000/s on a fresh store whose Tier-2 has nothing to drain;
# - old:   the burst run with OLD_NADI (another build), if given.
#
# Prints one line per run: round, what, load average, the burst's MB/s, the Tier-1 backlog
# (bytes not yet in Tier-2, `nadi_container_tier1_bytes`) before and after the 10 s, the bytes
# Tier-2 took in those 10 s (`nadi_tier2_moved_bytes_total`), the seconds its background I/O
# paused for appends (`nadi_tier2_yielded_seconds_total`), and the steady phase's latency.
set -euo pipefail
ROUNDS=${1:-3}
NADI=${2:-target/release/nadi}
OLD=${3:-}
BURST=${BURST:-10}
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

# Sum of a metric's samples on the admin endpoint $1.
metric() {
  curl -s "$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%.3f", s}'
}

run() {
  local round=$1 what=$2 nadi=$3 burst=$4 dir="$work/$2-$RANDOM"
  disk_quiet "$work"
  "$nadi" standalone --data-dir "$dir" --controller-listen 127.0.0.1:0 --segment-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "admin http://"
  local ctl http
  ctl=$(grep -o "controller http://[0-9.:]*" "$dir.log" | head -1 | cut -d' ' -f2)
  http=$(grep -o "admin http://[0-9.:]*" "$dir.log" | head -1 | cut -d' ' -f2)
  local burst_mb=0
  if [ "$burst" != 0 ]; then
    burst_mb=$("$nadi" --controller "$ctl" bench --stream b/burst --segments 16 --event-size 1024 \
      --duration "$burst" | python3 -c "import json,sys; print(round(json.load(sys.stdin)['mb_per_sec']))")
  fi
  local b0 m0 y0 b1 m1 y1 out
  b0=$(metric "$http" nadi_container_tier1_bytes); m0=$(metric "$http" nadi_tier2_moved_bytes_total)
  y0=$(metric "$http" nadi_tier2_yielded_seconds_total)
  out=$("$nadi" --controller "$ctl" bench --stream b/steady --segments 16 --event-size 1024 --rate 50000 \
    --duration 10)
  b1=$(metric "$http" nadi_container_tier1_bytes); m1=$(metric "$http" nadi_tier2_moved_bytes_total)
  y1=$(metric "$http" nadi_tier2_yielded_seconds_total)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  python3 - "$round" "$what" "$(cut -d' ' -f1 /proc/loadavg)" "$burst_mb" "$b0" "$b1" "$m0" "$m1" "$y0" "$y1" "$out" <<'PY'
import json, sys
r, what, load, burst, b0, b1, m0, m1, y0, y1, out = sys.argv[1:]
j = json.loads(out); l = j["latency_ms"]
print(f"{r} {what:5} load {load} burst {burst} MB/s | backlog {float(b0)/1e6:,.0f} -> {float(b1)/1e6:,.0f} MB, "
      f"Tier-2 took {(float(m1)-float(m0))/1e6:,.0f} MB in 10 s, paused {float(y1)-float(y0):.1f} s | "
      f"{j['events_per_sec']:,.0f}/s p50 {l['p50']} p99 {l['p99']} p99.9 {l['p999']} max {l['max']} ms")
PY
}

for r in $(seq "$ROUNDS"); do
  [ -n "$OLD" ] && run "$r" old "$OLD" "$BURST"
  run "$r" burst "$NADI" "$BURST"
  run "$r" idle "$NADI" 0
done
