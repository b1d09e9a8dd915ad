#!/usr/bin/env bash
# Runs the project's Deno (from node_modules) with what wgpu's Vulkan loader expects.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
exec node_modules/.bin/deno "$@"
