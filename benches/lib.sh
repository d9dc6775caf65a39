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
