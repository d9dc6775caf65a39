#!/usr/bin/env bash
# Builds and tests the Nadi Flink connector without Maven Central.
#
#   connectors/flink/build.sh            fetch, generate, compile, package, run the tests
#   connectors/flink/build.sh --no-test  everything but the tests
#   connectors/flink/build.sh --test 'NameITCase'   only the test classes matching a regex
#
# Fetches (idempotently) what it needs: Debian's gRPC Java, protobuf, netty and JUnit 5 (apt),
# and Flink's jars from the PyPI wheel `apache-flink-libraries` into connectors/flink/.cache.
# The Java stubs are generated from the repository's own proto/ files. Tests start the real
# `nadi` binary: build it first (`cargo build -p nadi-server`), or point NADI_BIN at one.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
FLINK_VERSION=2.3.0
VERSION=0.1.0
CACHE="${NADI_FLINK_CACHE:-$HERE/.cache}"
OUT="$HERE/build"
FLINK_LIB="$CACHE/flink-$FLINK_VERSION/lib"
JARS=/usr/share/java

RUN_TESTS=1
TEST_FILTER='.*(Test|Tests|ITCase)$'
while [ $# -gt 0 ]; do
  case "$1" in
    --no-test) RUN_TESTS=0 ;;
    --test) TEST_FILTER="$2"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# --- 1. Debian packages (JDK 17, gRPC Java 1.41, protobuf 3.21, netty 4.1, JUnit 5) ----------
APT_PACKAGES="libgrpc-java libprotobuf-java protobuf-compiler protobuf-compiler-grpc-java-plugin
  libnetty-java libperfmark-java libgoogle-gson-java libgoogle-common-protos-java junit5
  libgeronimo-annotation-1.3-spec-java openjdk-17-jdk-headless"
need_apt=0
command -v javac >/dev/null 2>&1 || need_apt=1
for f in "$JARS/grpc-netty.jar" "$JARS/protobuf.jar" "$JARS/proto-google-common-protos.jar" \
         "$JARS/junit-platform-console-standalone.jar" "$JARS/geronimo-annotation-1.3-spec.jar" \
         /usr/bin/protoc /usr/bin/grpc_java_plugin; do
  [ -e "$f" ] || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  echo "== installing Debian packages: $(echo $APT_PACKAGES)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
fi

# --- 2. Flink jars from the PyPI wheel -------------------------------------------------------
if [ ! -f "$FLINK_LIB/flink-dist-$FLINK_VERSION.jar" ] || [ ! -f "$FLINK_LIB/../bin/bash-java-utils.jar" ]; then
  echo "== fetching apache-flink-libraries==$FLINK_VERSION (PyPI) into $CACHE"
  mkdir -p "$CACHE/wheels"
  WHEEL="$(ls "$CACHE"/wheels/apache_flink_libraries-"$FLINK_VERSION"-*.whl 2>/dev/null | head -1 || true)"
  if [ -z "$WHEEL" ]; then
    python3 -m pip download --quiet --no-deps -d "$CACHE/wheels" "apache-flink-libraries==$FLINK_VERSION"
    WHEEL="$(ls "$CACHE"/wheels/apache_flink_libraries-"$FLINK_VERSION"-*.whl | head -1)"
  fi
  rm -rf "$CACHE/unpack" && mkdir -p "$CACHE/unpack"
  (cd "$CACHE/unpack" && python3 -m zipfile -e "$WHEEL" . >/dev/null)
  mkdir -p "$FLINK_LIB" "$FLINK_LIB/../bin"
  cp "$CACHE"/unpack/pyflink/lib/*.jar "$FLINK_LIB/"
  cp "$CACHE"/unpack/pyflink/bin/bash-java-utils.jar "$FLINK_LIB/../bin/" # for run-on-cluster.sh
  rm -rf "$CACHE/unpack"
fi

# Class paths. flink-dist relocates its own netty/guava/jackson, so Debian's unshaded gRPC stack
# sits beside it without clashes.
GRPC_CP="$JARS/grpc-api.jar:$JARS/grpc-core.jar:$JARS/grpc-netty.jar:$JARS/grpc-stub.jar:$JARS/grpc-protobuf.jar"
GRPC_CP="$GRPC_CP:$JARS/grpc-protobuf-lite.jar:$JARS/grpc-context.jar:$JARS/protobuf.jar"
GRPC_CP="$GRPC_CP:$JARS/proto-google-common-protos.jar:$JARS/guava.jar:$JARS/perfmark-api.jar:$JARS/gson.jar"
for m in buffer codec codec-http codec-http2 common handler resolver transport codec-socks handler-proxy \
         transport-native-unix-common; do
  GRPC_CP="$GRPC_CP:$JARS/netty-$m.jar"
done
FLINK_CP="$FLINK_LIB/flink-dist-$FLINK_VERSION.jar:$FLINK_LIB/flink-table-api-java-uber-$FLINK_VERSION.jar"
FLINK_CP="$FLINK_CP:$FLINK_LIB/flink-table-runtime-$FLINK_VERSION.jar"
FLINK_TEST_CP="$FLINK_CP:$FLINK_LIB/flink-table-planner-loader-$FLINK_VERSION.jar"
FLINK_TEST_CP="$FLINK_TEST_CP:$FLINK_LIB/flink-json-$FLINK_VERSION.jar:$FLINK_LIB/flink-csv-$FLINK_VERSION.jar"
FLINK_TEST_CP="$FLINK_TEST_CP:$FLINK_LIB/flink-cep-$FLINK_VERSION.jar" # the planner loads CEP classes
for j in log4j-api log4j-core log4j-slf4j-impl log4j-1.2-api; do
  FLINK_TEST_CP="$FLINK_TEST_CP:$(ls "$FLINK_LIB"/$j-*.jar | head -1)"
done

# --- 3. Java stubs from the repository's .proto files (no copies) ----------------------------
echo "== generating Java stubs from proto/"
rm -rf "$OUT" && mkdir -p "$OUT/gen" "$OUT/classes" "$OUT/test-classes"
PROTOS=(nadi/controller/v1/controller.proto nadi/controller/v1/transactions.proto nadi/segment/v1/segment.proto)
(cd "$ROOT/proto/proto" && protoc --java_out="$OUT/gen" --grpc-java_out="$OUT/gen" \
  --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin "${PROTOS[@]}")

# --- 4. Compile and package ------------------------------------------------------------------
echo "== compiling"
find "$OUT/gen" "$HERE/src/main/java" -name '*.java' > "$OUT/main-sources.txt"
javac -nowarn -encoding UTF-8 --release 17 -d "$OUT/classes" \
  -cp "$FLINK_CP:$GRPC_CP:$JARS/geronimo-annotation-1.3-spec.jar" @"$OUT/main-sources.txt"
cp -r "$HERE/src/main/resources/." "$OUT/classes/"

# One jar: the connector, its generated stubs and the gRPC stack it needs at run time (Debian's
# jars, unshaded: Flink shades its own copies), so that `flink run` needs nothing else. The
# gRPC jars' service files are merged, signatures dropped.
echo "== packaging"
STAGE="$OUT/stage" && rm -rf "$STAGE" && mkdir -p "$STAGE"
IFS=: read -ra DEPS <<< "$GRPC_CP"
for j in "${DEPS[@]}"; do
  (cd "$STAGE" && jar xf "$(readlink -f "$j")")
  if [ -d "$STAGE/META-INF/services" ]; then
    for s in "$STAGE"/META-INF/services/*; do
      [ -f "$s" ] && cat "$s" >> "$OUT/services-$(basename "$s")" && echo >> "$OUT/services-$(basename "$s")"
    done
    rm -rf "$STAGE/META-INF/services"
  fi
done
rm -rf "$STAGE"/META-INF/*.SF "$STAGE"/META-INF/*.RSA "$STAGE"/META-INF/*.DSA "$STAGE"/META-INF/MANIFEST.MF \
  "$STAGE"/META-INF/versions "$STAGE"/module-info.class
cp -r "$OUT/classes/." "$STAGE/"
mkdir -p "$STAGE/META-INF/services"
for s in "$OUT"/services-*; do
  [ -f "$s" ] || continue
  name="$(basename "$s")"; name="${name#services-}"
  grep -v '^\s*$' "$s" | grep -v '^#' | sort -u >> "$STAGE/META-INF/services/$name"
done
for s in "$HERE"/src/main/resources/META-INF/services/*; do
  cp "$s" "$STAGE/META-INF/services/$(basename "$s")"
done
JAR="$OUT/nadi-flink-connector-$VERSION.jar"
jar --create --file "$JAR" -C "$STAGE" .
rm -rf "$STAGE" "$OUT"/services-*
echo "== built $JAR ($(du -h "$JAR" | cut -f1))"

[ "$RUN_TESTS" = 1 ] || exit 0

# --- 5. Tests against the real `nadi` binary --------------------------------------------------
NADI_BIN="${NADI_BIN:-$ROOT/target/debug/nadi}"
if [ ! -x "$NADI_BIN" ]; then
  echo "error: $NADI_BIN not found: run 'cargo build -p nadi-server' first (or set NADI_BIN)" >&2
  exit 1
fi
echo "== compiling tests"
find "$HERE/src/test/java" -name '*.java' > "$OUT/test-sources.txt"
TEST_CP="$JAR:$FLINK_TEST_CP:$JARS/junit-platform-console-standalone.jar"
javac -nowarn -encoding UTF-8 --release 17 -d "$OUT/test-classes" -cp "$TEST_CP" @"$OUT/test-sources.txt"
cp -r "$HERE/src/test/resources/." "$OUT/test-classes/"
echo "== running tests (nadi: $NADI_BIN)"
# The launcher runs as a main class with everything on -cp (java -jar breaks Flink's class loading).
set +e
java -Xmx384m -XX:+UseSerialGC -Dnadi.bin="$NADI_BIN" -Dnadi.flink.jar="$JAR" \
  -cp "$OUT/test-classes:$TEST_CP" org.junit.platform.console.ConsoleLauncher \
  --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests --scan-classpath "$OUT/test-classes" \
  --include-classname "$TEST_FILTER" | tee "$OUT/test-output.txt"
STATUS=${PIPESTATUS[0]}
set -e
PASSED=$(sed -n 's/^\[ *\([0-9]*\) tests successful.*/\1/p' "$OUT/test-output.txt")
FAILED=$(sed -n 's/^\[ *\([0-9]*\) tests failed.*/\1/p' "$OUT/test-output.txt")
echo "flink-connector: ${PASSED:-0} passed, ${FAILED:-0} failed"
exit "$STATUS"
