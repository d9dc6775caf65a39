#!/usr/bin/env bash
# Checks the unit files of this directory with `systemd-analyze verify`, failing on any
# complaint: systemd-analyze exits 0 after "Unknown key" or an unparsable value, it only
# prints them. It runs in a scratch root (these units, a copy of the system's unit directory
# and a stand-in /usr/local/bin/nadi), so nothing needs installing. Exits 0 with a note where
# systemd-analyze is missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v systemd-analyze >/dev/null; then
  echo "skipped: systemd-analyze not available"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
printf '#!/bin/sh\n' >"$root/usr/local/bin/nadi"
chmod +x "$root/usr/local/bin/nadi"
cp ./*.service "$root/etc/systemd/system/"
units=()
for f in ./*.service; do
  u=$(basename "$f")
  units+=("${u/@./@1.}")   # a template is checked as instance 1
done
out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "$out"
  exit 1
fi
echo "systemd-analyze verify: ${units[*]} ok"
