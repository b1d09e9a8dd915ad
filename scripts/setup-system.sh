#!/usr/bin/env bash
# Installs what the project needs from the system, only where it is missing:
# a WebGPU adapter for Deno (Mesa's software Vulkan from bookworm-backports when no
# Vulkan driver is present) and Chromium for the browser tests.
set -euo pipefail
need_apt=()
have_vulkan_icd() { ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; }
if ! have_vulkan_icd; then need_apt+=(mesa-vulkan-drivers); fi
if [ "${MICAR_SKIP_CHROMIUM:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "setup: need root to apt-get install ${need_apt[*]}" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
# Mesa 25 (bookworm-backports) runs lavapipe faster than bookworm's Mesa 22.
if . /etc/os-release && [ "${VERSION_CODENAME:-}" = bookworm ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > /etc/apt/sources.list.d/backports.sources
fi
apt-get update -qq
for p in "${need_apt[@]}"; do
  if [ "$p" = mesa-vulkan-drivers ] && [[ "$(apt-cache policy mesa-vulkan-drivers)" == *bpo* ]]; then
    apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
  else
    apt-get install -y -qq "$p" >/dev/null
  fi
done
