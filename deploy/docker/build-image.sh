#!/usr/bin/env bash
# Builds the `nadi` image on a machine that cannot pull images.
#
#   deploy/docker/build-image.sh             # release build of `nadi`, image nadi:dev
#   NADI_BIN=path/to/nadi deploy/docker/build-image.sh   # use this binary instead of building
#
# Steps, each skipped when its result is already there (so a second run takes seconds):
#   1. the base image $NADI_BASE_IMAGE (default nadi-base:bookworm): if absent, a Debian
#      bookworm root made with `debootstrap --variant=minbase` and `docker import`ed (needs
#      root, debootstrap and a Debian mirror: $NADI_DEBIAN_MIRROR, default deb.debian.org);
#   2. the binary: $NADI_BIN, else `cargo build --release -p nadi-server --bin nadi`;
#   3. the image $NADI_IMAGE (default nadi:dev) FROM that base, unless an image of that tag
#      already holds the same binary (label nadi.binary-sha256) and the same Dockerfile.
#
# The binary must run on the base's glibc (2.36): build it on bookworm or older.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=${NADI_BASE_IMAGE:-nadi-base:bookworm}
IMAGE=${NADI_IMAGE:-nadi:dev}
MIRROR=${NADI_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# 1. The base image.
if docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "== base image $BASE: present"
else
  echo "== base image $BASE: debootstrap --variant=minbase bookworm from $MIRROR"
  command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root" >&2; exit 1; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # Package lists and caches are of no use in a runtime image.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
  trap - EXIT
  echo "== base image $BASE: made"
fi

# 2. The binary.
if [ -n "${NADI_BIN:-}" ]; then
  bin=$NADI_BIN
else
  echo "== cargo build --release -p nadi-server --bin nadi"
  cargo build --release -p nadi-server --bin nadi
  bin=target/release/nadi
fi
[ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 1; }

# 3. The image. The label names what went into it, so an unchanged input is not rebuilt.
sum=$( (sha256sum "$bin" | cut -d' ' -f1; cat deploy/docker/Dockerfile deploy/docker/nadi-ready; echo "$BASE") \
  | sha256sum | cut -d' ' -f1)
have=$(docker image inspect --format '{{ index .Config.Labels "nadi.build-inputs" }}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
  echo "== image $IMAGE: up to date"
  exit 0
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp deploy/docker/Dockerfile deploy/docker/nadi-ready "$ctx/"
# Debug info is for debuggers, not for the image (a debug build shrinks several times).
objcopy --strip-debug "$bin" "$ctx/nadi" 2>/dev/null || cp "$bin" "$ctx/nadi"
echo "== docker build $IMAGE (FROM $BASE)"
docker build --quiet --build-arg "BASE=$BASE" --label "nadi.build-inputs=$sum" -t "$IMAGE" "$ctx" >/dev/null
echo "== image $IMAGE: built"
