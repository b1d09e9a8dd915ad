#!/usr/bin/env bash
# Everything a fresh machine needs before `npm start` / `npm test`: npm packages (with the
# Deno binary they bring) and, where missing, the system packages (scripts/setup-system.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/deno ] || [ ! -d node_modules/vitest ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ "$(id -u)" = 0 ] || ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  bash scripts/setup-system.sh
fi
