#!/usr/bin/env bash
# Installs the system libraries SAPIEN needs to render without a GPU: Mesa >= 24.3 (lavapipe, from Debian
# bookworm-backports) and the Vulkan/EGL loaders. Skips the work when a Vulkan device is already there.
set -euo pipefail
if command -v vulkaninfo >/dev/null 2>&1 && vulkaninfo --summary 2>/dev/null | grep -q "deviceName"; then
  exit 0
fi
if dpkg-query -W -f='${Version}\n' mesa-vulkan-drivers 2>/dev/null | grep -q "bpo12"; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: need root to apt-get install mesa-vulkan-drivers (>= 24.3) libvulkan1 libegl1 libgl1" >&2
  exit 2
fi
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/backports.list
  target=(-t bookworm-backports)
else
  target=()
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${target[@]}" mesa-vulkan-drivers libvulkan1 libegl1 libgl1 >/dev/null
