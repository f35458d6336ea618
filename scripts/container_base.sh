#!/usr/bin/env bash
# Print the base image to build docker/Dockerfile on, making one locally when no registry can be reached.
#
#   scripts/container_base.sh [IMAGE]     # IMAGE default: docker.io/library/python:3.11.16-slim-bookworm
#   DOCKER=podman scripts/container_base.sh
#
# In order: IMAGE when the engine already has it or can pull it; else the local bootstrap
# $CHIMERA_LOCAL_BASE (default localhost/chimera-base:bookworm) when it exists; else that image made
# here with debootstrap (Debian bookworm minbase + python3.11, python3-venv, ca-certificates; needs
# root and the debootstrap package, about 80 s), as on an air-gapped machine with a Debian mirror.
# Both are Debian bookworm with CPython 3.11, so the pinned sets resolve the same on either.
# Notices go to stderr; stdout is only the image name, for `--build-arg BASE_IMAGE=$(...)`.
set -euo pipefail

DOCKER="${DOCKER:-docker}"
IMAGE="${1:-docker.io/library/python:3.11.16-slim-bookworm}"
LOCAL="${CHIMERA_LOCAL_BASE:-localhost/chimera-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if have "$IMAGE" || "$DOCKER" pull -q "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
echo "container_base: cannot pull $IMAGE (no registry reachable?); using the local base $LOCAL" >&2
if have "$LOCAL"; then
  echo "$LOCAL"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v debootstrap >/dev/null; then
  echo "container_base: $LOCAL does not exist and making it needs root and debootstrap" \
       "(apt-get install debootstrap); or pass an image you have: BASE_IMAGE=..." >&2
  exit 2
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "container_base: debootstrap bookworm from $MIRROR into $rootfs (about a minute)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$MIRROR" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$DOCKER" import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$LOCAL" >&2
echo "$LOCAL"
