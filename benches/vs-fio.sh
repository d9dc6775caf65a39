#!/usr/bin/env bash
# Maximum rate against the disk's own speed (issue 21, acceptance 4; docs/performance.md), in
# one run, interleaved:
#
#   benches/vs-fio.sh [ROUNDS] [NADI] [FIO_SIZE]
#
# Each round: fio writes 1 MiB blocks with an fdatasync after each, overwriting a file of
# FIO_SIZE (default 1G) it wrote once before (as recycled log files are overwritten), then
# `nadi bench` writes 1 KiB events at the maximum rate for 10 s over 16 segments with one
# producer, on a fresh default `nadi standalone` in the same filesystem. Prints both speeds,
# the ratio and the load average. Needs fio (Debian package `fio`).
set -euo pipefail
ROUNDS=${1:-3}
NADI=${2:-target/release/nadi}
SIZE=${3:-1G}
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"
command -v fio >/dev/null || { echo "fio is not installed (apt-get install fio)" >&2; exit 1; }

fio_mbps() {
  disk_quiet "$work"
  fio --name=over --filename="$work/fio.dat" --rw=write --bs=1M --size="$SIZE" --fdatasync=1 \
    --ioengine=psync --output-format=json |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['jobs'][0]['write']['bw_bytes'] / 1e6))"
}

nadi_mbps() {
  local dir="$work/nadi-$RANDOM"
  disk_quiet "$work"
  "$NADI" standalone --data-dir "$dir" --controller-listen 127.0.0.1:0 --segment-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "admin http://"
  local ctl
  ctl=$(grep -o "controller http://[0-9.:]*" "$dir.log" | head -1 | cut -d' ' -f2)
  "$NADI" --controller "$ctl" bench --stream b/max --segments 16 --event-size 1024 --duration 10 |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['mb_per_sec']))"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

# The file fio overwrites is written once first.
fio --name=fill --filename="$work/fio.dat" --rw=write --bs=1M --size="$SIZE" --ioengine=psync \
  --output-format=json >/dev/null
for r in $(seq "$ROUNDS"); do
  f=$(fio_mbps)
  n=$(nadi_mbps)
  python3 -c "print(f'$r load $(cut -d' ' -f1 /proc/loadavg) fio {$f:,} MB/s nadi {$n:,} MB/s ratio {$n / $f:.2f}')"
done
