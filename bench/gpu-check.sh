#!/usr/bin/env bash
# One prepared check for a machine with a real GPU (about 5 minutes): prints the adapter, then
# runs the tuner, matmul and conv (against tfjs and the FMA ceiling), the price of each kind of
# load in multiply-adds (loadcost: what shapes the kernels on this GPU), a training step of the
# tiny and paper configs, decoding (KV cache vs recomputation, greedy tokens read back in
# batches vs every step), and the paper report benchmark; each prints one JSON line, gathered
# at the end. Usage:
#   bash bench/gpu-check.sh                 # stops early when Deno finds no hardware adapter
#   bash bench/gpu-check.sh --allow-software --quick   # the same steps on llvmpipe, short
# Needs a Vulkan driver for the GPU (Deno's WebGPU is wgpu on Vulkan on Linux): e.g. the
# NVIDIA driver's Vulkan ICD, or Mesa's radv/anv (apt-get install mesa-vulkan-drivers).
set -uo pipefail
cd "$(dirname "$0")/.."
allow_software=0; quick=0
for a in "$@"; do
  case "$a" in
    --allow-software) allow_software=1 ;;
    --quick) quick=1 ;;
    *) echo "gpu-check: unknown option $a (use --allow-software, --quick)" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d)
export MICAR_CACHE_DIR="${MICAR_CACHE_DIR:-$out/cache}"
json=()
step() { # step NAME TIMEOUT_S ARGS...: runs one benchmark, keeps its last JSON line
  local name=$1 t=$2; shift 2
  echo "== $name ($*) =="
  local log="$out/$name.log" t0=$SECONDS
  timeout "$t" bash scripts/run-deno.sh run -A bench/run.ts "$@" 2>&1 | tee "$log" | tail -n 4
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E '^\{.*"bench"' "$log" | tail -n 1)
  if [ -z "$line" ]; then line="{\"bench\":\"$name\",\"failed\":true,\"exit\":$rc,\"seconds\":$((SECONDS - t0)),\"log\":\"$log\"}"; fi
  json+=("$line")
}

step adapter 60 adapter
if ! grep -q '"hardware":true' "$out/adapter.log"; then
  if ! grep -q '"bench":"adapter"' "$out/adapter.log"; then
    echo "gpu-check: Deno found no WebGPU adapter at all (see $out/adapter.log). A Vulkan driver is needed." >&2
    exit 3
  fi
  echo "gpu-check: Deno found NO HARDWARE ADAPTER, only a CPU implementation ($(grep -o '"adapter":"[^"]*"' "$out/adapter.log")):" >&2
  echo "  install the GPU's Vulkan driver (NVIDIA driver with its Vulkan ICD, or mesa-vulkan-drivers for AMD/Intel)" >&2
  echo "  and check 'vulkaninfo --summary' lists the GPU. The numbers below would be the CPU's." >&2
  [ "$allow_software" = 1 ] || exit 3
fi

if [ "$quick" = 1 ]; then
  step tune 150 tune 20 1 64
  step matmul 90 matmul quick
  step conv 90 conv --quick
  step loadcost 60 loadcost
  step trainstep-tiny 90 trainstep tiny 2 2
  step trainstep-paper 120 trainstep paper 1 2
  step generate 120 generate --quick
else
  step tune 90 tune 45 2 224
  step matmul 45 matmul
  step conv 45 conv
  step loadcost 30 loadcost
  step trainstep-tiny 30 trainstep tiny 16 3
  step trainstep-paper 45 trainstep paper 8 3
  step generate 45 generate --quick
fi
weights="${MICAR_PAPER_WEIGHTS:-/tmp/paperw/paper/weights.safetensors}"
if [ -f "$weights" ]; then
  step report 45 report "$weights"
else
  echo "== report: skipped (paper weights not at $weights; see bench/report.ts for how to make them) =="
  json+=("{\"bench\":\"report\",\"skipped\":\"no paper weights at $weights\"}")
fi
echo "== gpu-check summary (one JSON line per step; logs in $out) =="
printf '%s\n' "${json[@]}"
