#!/usr/bin/env bash
# Install Debian's podman and make it work on a sandboxed host like this project's CI machines.
#
#   sudo scripts/setup_podman.sh       # then: DOCKER=podman make docker-cpu bench-cpu-docker
#
# Measured on the CI machines: crun, podman's default runtime, refuses
# the kernel's hybrid cgroups; runc with the cgroupfs manager works; the default ulimits exceed what the
# sandbox permits; and only the host network reaches PyPI and Debian's mirror. Those four settings go
# into /etc/containers/containers.conf (an existing file is left alone unless it is ours). A machine
# where podman already runs containers needs none of this.
set -euo pipefail

CONF=/etc/containers/containers.conf
MARK="# written by chimera-bench scripts/setup_podman.sh"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq podman runc debootstrap
fi

if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "setup_podman: $CONF exists and is not ours; leaving it as it is" >&2
else
  $SUDO mkdir -p "$(dirname "$CONF")"
  $SUDO tee "$CONF" >/dev/null <<CONF
$MARK
[containers]
netns = "host"
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi
podman --version
podman run --rm --help >/dev/null
