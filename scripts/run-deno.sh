#!/usr/bin/env bash
# Runs the project's Deno (from node_modules) with what wgpu's Vulkan loader expects.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# gc() for src/graph/runtime.ts collectBindGroups: bind groups are freed only by the garbage
# collector, and Mesa's lavapipe holds a memory mapping per bind group (vm.max_map_count).
export DENO_V8_FLAGS="${DENO_V8_FLAGS:+$DENO_V8_FLAGS,}--expose-gc"
exec node_modules/.bin/deno "$@"
