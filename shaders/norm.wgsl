// RMSNorm over the last axis (rows of D): y = x · r · w with r = 1/sqrt(mean(x²) + eps),
// one workgroup of WG threads per row; r is saved per row for the backward pass.
// Backward: dx = r·w⊙dy − x · r³/D · Σ(w⊙dy⊙x) (one workgroup per row);
// dw[j] = Σ_rows dy·x·r, a column reduction: each workgroup takes DW_COLS adjacent columns
// with WG/DW_COLS lanes splitting the rows (coalesced, deterministic, no atomics).
// Specialisation: T (element type of x, w, y and gradients; sums and rstd are f32),
// (one kind flag true): FWD, DX, DW; WG (u32, power of two).

#if ${F16}
enable f16;
#endif
#if ${SUBGROUPS}
enable subgroups;   // row / channel sums through subgroup operations (lib/reduce)
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // rows, D, eps: src/graph/kernels/norm.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

const WG: u32 = ${WG}u;

const RED_N: u32 = WG;
#include "lib/reduce"   // red, wg_sum, wg_max

#if ${FWD}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.D;
  var ss = 0.0;
  for (var j = li; j < p.D; j += WG) { let v = f32(x[base + j]); ss += v * v; }
  ss = wg_sum(ss, li);
  let r = 1.0 / sqrt(ss / f32(p.D) + p.eps);
  for (var j = li; j < p.D; j += WG) { y[base + j] = T(f32(x[base + j]) * r * f32(w[j])); }
  if (li == 0u) { rstd[row] = r; }
}
#elif ${DX}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<T>;
@group(0) @binding(5) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.D;
  var s = 0.0;
  for (var j = li; j < p.D; j += WG) { s += f32(w[j]) * f32(dy[base + j]) * f32(x[base + j]); }
  s = wg_sum(s, li);
  let r = rstd[row];
  let c = r * r * r * s / f32(p.D);
  for (var j = li; j < p.D; j += WG) { dx[base + j] = T(r * f32(w[j]) * f32(dy[base + j]) - f32(x[base + j]) * c); }
}
#elif ${DW}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<T>;
@group(0) @binding(4) var<storage, read_write> dw: array<T>;

const DW_COLS: u32 = 32u;
const LANES: u32 = WG / DW_COLS;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let c = li % DW_COLS;
  let lane = li / DW_COLS;
  let j = flat_wg_id(wid, nwg) * DW_COLS + c;
  var acc = 0.0;
  if (j < p.D) {
    for (var r = lane; r < p.rows; r += LANES) {
      acc += f32(dy[r * p.D + j]) * f32(x[r * p.D + j]) * rstd[r];
    }
  }
  red[li] = acc;
  red_tree_sum(li, LANES, DW_COLS);
  if (lane == 0u && j < p.D) { dw[j] = T(red[c]); }
}
#endif
