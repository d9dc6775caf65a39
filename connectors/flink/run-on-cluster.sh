#!/usr/bin/env bash
# Runs the example job jar on a real standalone Flink cluster (`flink run`), against a real
# `nadi standalone`: the check that the connector jar works outside the tests' MiniCluster.
#
#   connectors/flink/run-on-cluster.sh        (after build.sh; needs target/debug/nadi)
#
# Assembles a Flink home in connectors/flink/.cache from the PyPI wheels `apache-flink` (bin/,
# conf/) and `apache-flink-libraries` (lib/), starts a one-TaskManager cluster on free local
# ports, fills stream demo/in with keyed events through `nadi write`, runs
# `flink run -c io.nadi.flink.examples.KeyedCopyJob` (bounded), and checks with `nadi read` that
# demo/out holds every event once, in per-key order. Stops the cluster and nadi in any case.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
FLINK_VERSION=2.3.0
CACHE="${NADI_FLINK_CACHE:-$HERE/.cache}"
JAR="$HERE/build/nadi-flink-connector-0.1.0.jar"
NADI="${NADI_BIN:-$ROOT/target/debug/nadi}"
EVENTS="${EVENTS:-20000}"
KEYS=50

[ -f "$JAR" ] || "$HERE/build.sh" --no-test
[ -x "$NADI" ] || { echo "error: $NADI not found: cargo build -p nadi-server" >&2; exit 1; }

# --- Flink home: scripts and conf from apache-flink, jars from apache-flink-libraries ---------
FLINK_HOME="$CACHE/flink-home-$FLINK_VERSION"
if [ ! -x "$FLINK_HOME/bin/flink" ] || [ ! -f "$FLINK_HOME/bin/bash-java-utils.jar" ]; then
  mkdir -p "$CACHE/wheels"
  WHEEL="$(ls "$CACHE"/wheels/apache_flink-"$FLINK_VERSION"-*.whl 2>/dev/null | head -1 || true)"
  if [ -z "$WHEEL" ]; then
    python3 -m pip download --quiet --no-deps -d "$CACHE/wheels" "apache-flink==$FLINK_VERSION"
    WHEEL="$(ls "$CACHE"/wheels/apache_flink-"$FLINK_VERSION"-*.whl | head -1)"
  fi
  rm -rf "$CACHE/unpack-cli" "$FLINK_HOME" && mkdir -p "$CACHE/unpack-cli" "$FLINK_HOME"
  (cd "$CACHE/unpack-cli" && python3 -m zipfile -e "$WHEEL" . >/dev/null)
  cp -r "$CACHE/unpack-cli/pyflink/bin" "$CACHE/unpack-cli/pyflink/conf" "$FLINK_HOME/"
  cp "$CACHE/flink-$FLINK_VERSION/bin/bash-java-utils.jar" "$FLINK_HOME/bin/"
  chmod +x "$FLINK_HOME"/bin/*.sh "$FLINK_HOME/bin/flink"
  mkdir -p "$FLINK_HOME/lib" "$FLINK_HOME/log"
  cp "$CACHE/flink-$FLINK_VERSION"/lib/*.jar "$FLINK_HOME/lib/"
  rm -rf "$CACHE/unpack-cli"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK="$(mktemp -d)"
CTL_PORT=$(free_port); SEG_PORT=$(free_port); HTTP_PORT=$(free_port); REST_PORT=$(free_port)
export NADI_CONTROLLER="http://127.0.0.1:$CTL_PORT"

# A private copy of the conf: local ports only, small memory.
CONF="$WORK/conf" && cp -r "$FLINK_HOME/conf" "$CONF"
cat >> "$CONF/config.yaml" <<YAML
rest.port: $REST_PORT
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
jobmanager.bind-host: 127.0.0.1
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
jobmanager.rpc.port: $(free_port)
taskmanager.rpc.port: $(free_port)
taskmanager.data.port: $(free_port)
jobmanager.memory.process.size: 640m
taskmanager.memory.process.size: 1024m
taskmanager.memory.managed.size: 64m
taskmanager.numberOfTaskSlots: 2
parallelism.default: 2
YAML
export FLINK_CONF_DIR="$CONF" FLINK_LOG_DIR="$WORK/log"
mkdir -p "$FLINK_LOG_DIR"

NADI_PID=""
cleanup() {
  "$FLINK_HOME/bin/stop-cluster.sh" >/dev/null 2>&1 || true
  # Keep the last run's logs for a look (cluster and nadi).
  rm -rf "$CACHE/last-cluster-run" && mkdir -p "$CACHE/last-cluster-run"
  cp -r "$FLINK_LOG_DIR" "$WORK/nadi.log" "$CACHE/last-cluster-run/" 2>/dev/null || true
  [ -n "$NADI_PID" ] && kill "$NADI_PID" 2>/dev/null && wait "$NADI_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$NADI" standalone --data-dir "$WORK/nadi" --controller-listen "127.0.0.1:$CTL_PORT" \
  --segment-listen "127.0.0.1:$SEG_PORT" --http-listen "127.0.0.1:$HTTP_PORT" --log-file-size 20MiB \
  >"$WORK/nadi.log" 2>&1 &
NADI_PID=$!
for _ in $(seq 1 100); do "$NADI" scope create demo >/dev/null 2>&1 && break; sleep 0.1; done
"$NADI" stream create demo/in --segments 3 >/dev/null
"$NADI" stream create demo/out --segments 2 >/dev/null
python3 -c "
for i in range($EVENTS):
    print(f'key{i % $KEYS},{i // $KEYS}')" | "$NADI" write demo/in --key-sep ,

echo "== starting a standalone Flink cluster (REST on 127.0.0.1:$REST_PORT)"
"$FLINK_HOME/bin/start-cluster.sh"
echo "== flink run -c io.nadi.flink.examples.KeyedCopyJob $(basename "$JAR") --controller $NADI_CONTROLLER --input demo/in --output demo/out --bounded"
START=$(date +%s)
"$FLINK_HOME/bin/flink" run -m "127.0.0.1:$REST_PORT" -c io.nadi.flink.examples.KeyedCopyJob "$JAR" \
  --controller "$NADI_CONTROLLER" --input demo/in --output demo/out --bounded
echo "== job finished in $(( $(date +%s) - START )) s; checking demo/out"
"$NADI" read demo/out --from-start --idle-timeout 2 > "$WORK/out.txt"
python3 - "$WORK/out.txt" "$EVENTS" "$KEYS" <<'PY'
import sys
lines = open(sys.argv[1]).read().split()
total, keys = int(sys.argv[2]), int(sys.argv[3])
nxt, bad = {}, 0
for line in lines:
    k, seq = line.split(',')
    if int(seq) != nxt.get(k, 0):
        bad += 1
    nxt[k] = int(seq) + 1
ok = len(lines) == total and bad == 0 and sum(nxt.values()) == total
print(f"demo/out: {len(lines)} events (expected {total}), {bad} out of order or duplicated")
print("run-on-cluster: 1 passed, 0 failed" if ok else "run-on-cluster: 0 passed, 1 failed")
sys.exit(0 if ok else 1)
PY
