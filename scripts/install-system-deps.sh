#!/usr/bin/env bash
# Installs the system packages bench needs without a GPU: Mesa >= 24.3 (lavapipe, from Debian
# bookworm-backports) and the Vulkan/EGL loaders, so SAPIEN can render; Chromium and its WebDriver, for the
# test that opens `bench report`'s page in a real browser. Installs only what is missing (safe to rerun).
set -euo pipefail
mesa=yes
browser=yes
if command -v vulkaninfo >/dev/null 2>&1 && vulkaninfo --summary 2>/dev/null | grep -q "deviceName"; then
  mesa=no
fi
if dpkg-query -W -f='${Version}\n' mesa-vulkan-drivers 2>/dev/null | grep -q "bpo12"; then
  mesa=no
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  browser=no
fi
if [ "$mesa" = no ] && [ "$browser" = no ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: need root to apt-get install mesa-vulkan-drivers (>= 24.3) libvulkan1 libegl1 libgl1" \
       "chromium chromium-driver fonts-dejavu-core" >&2
  exit 2
fi
. /etc/os-release
target=()
if [ "$mesa" = yes ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/backports.list
  target=(-t bookworm-backports)
fi
apt-get update -qq
export DEBIAN_FRONTEND=noninteractive
if [ "$mesa" = yes ]; then
  apt-get install -y -qq "${target[@]}" mesa-vulkan-drivers libvulkan1 libegl1 libgl1 >/dev/null
fi
if [ "$browser" = yes ]; then
  apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
fi
