# Shared by the benches/*.sh scripts (sourced, not run): a work dir removed on exit with the
# servers started into `pids`, waiting for a log line, and CPU seconds of processes.

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until FILE has a line containing TEXT.
wait_for() {
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

# CPU seconds (user + system) the processes PIDS… have used so far.
cpu() {
  local t=0
  for p in "$@"; do
    read -r -a f < "/proc/$p/stat"
    t=$((t + f[13] + f[14]))
  done
  python3 -c "print($t / $(getconf CLK_TCK))"
}

# Waits, at most 120 s, until the disk under DIR has been quiet for 3 s in a row (fewer than
# 20 reads, writes and discards completed per second), and prints on stderr how long it
# waited: the previous run's writeback and the deletion of its gigabytes stay out of the next
# run. (It does not make the disk's own flush stalls go away; docs/performance.md, 2026-12-08.)
disk_quiet() {
  local dev stat quiet=0 prev cur waited=0
  dev=$(basename "$(df --output=source "$1" | tail -1)")
  stat=/sys/class/block/$dev/stat
  [ -r "$stat" ] || return 0
  sync
  prev=$(awk '{print $1 + $5 + $12}' "$stat")
  while [ "$quiet" -lt 3 ] && [ "$waited" -lt 120 ]; do
    sleep 1; waited=$((waited + 1))
    cur=$(awk '{print $1 + $5 + $12}' "$stat")
    if [ $((cur - prev)) -lt 20 ]; then quiet=$((quiet + 1)); else quiet=0; fi
    prev=$cur
  done
  echo "disk quiet after ${waited} s" >&2
}
