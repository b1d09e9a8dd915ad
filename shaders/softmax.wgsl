// Softmax / log-softmax over the last axis (rows of K), one workgroup of WG threads per row
// with workgroup tree reductions (max, then Σexp), and their backward passes.
// Optional mask (broadcast to x by strides): where mask == 0 the logit is replaced by -1e9
// (PyTorch masked_fill(mask == 0, -1e9)), so a fully masked row comes out uniform.
// Specialisation (one kind flag true): SOFTMAX, LOG_SOFTMAX, SOFTMAX_GRAD, LOG_SOFTMAX_GRAD;
// HAS_MASK, MASK_I32 (bool); WG (u32, power of two), SUBGROUPS: src/graph/kernels/softmax.ts.

#if ${F16}
enable f16;
#endif
#if ${SUBGROUPS}
enable subgroups;   // row max and sum through subgroup operations (lib/reduce)
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // rows, K, lrank, mlast, dims, ms: src/graph/kernels/softmax.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

const WG: u32 = ${WG}u;
const MASK_FILL: f32 = -1e9;
const LOWEST: f32 = -3.4028234663852886e38;

const RED_N: u32 = WG;
#include "lib/reduce"   // red, wg_sum, wg_max

#if ${HAS_MASK}
#if ${MASK_I32}
@group(0) @binding(3) var<storage, read> mask: array<i32>;
fn mask_zero(k: u32) -> bool { return mask[k] == 0; }
#else
@group(0) @binding(3) var<storage, read> mask: array<f32>;
fn mask_zero(k: u32) -> bool { return mask[k] == 0.0; }
#endif
// Offset of row `row`'s first element in the mask.
fn mask_base(row: u32) -> u32 {
  var rem = row;
  var off = 0u;
  for (var d = i32(p.lrank) - 1; d >= 0; d--) {
    let u = u32(d);
    let n = p.dims[u / 4u][u % 4u];
    off += (rem % n) * p.ms[u / 4u][u % 4u];
    rem = rem / n;
  }
  return off;
}
#endif

#if ${SOFTMAX}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.K;
#if ${HAS_MASK}
  let mb = mask_base(row);
#endif
  var mx = LOWEST;
  for (var j = li; j < p.K; j += WG) {
    var z = f32(x[base + j]);
#if ${HAS_MASK}
    if (mask_zero(mb + j * p.mlast)) { z = MASK_FILL; }
#endif
    mx = max(mx, z);
  }
  mx = wg_max(mx, li);
  var s = 0.0;
  for (var j = li; j < p.K; j += WG) {
    var z = f32(x[base + j]);
#if ${HAS_MASK}
    if (mask_zero(mb + j * p.mlast)) { z = MASK_FILL; }
#endif
    s += exp(z - mx);
  }
  s = wg_sum(s, li);
  for (var j = li; j < p.K; j += WG) {
    var z = f32(x[base + j]);
#if ${HAS_MASK}
    if (mask_zero(mb + j * p.mlast)) { z = MASK_FILL; }
#endif
    y[base + j] = T(exp(z - mx) / s);
  }
}
#elif ${LOG_SOFTMAX}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.K;
  var mx = LOWEST;
  for (var j = li; j < p.K; j += WG) { mx = max(mx, f32(x[base + j])); }
  mx = wg_max(mx, li);
  var s = 0.0;
  for (var j = li; j < p.K; j += WG) { s += exp(f32(x[base + j]) - mx); }
  let ls = log(wg_sum(s, li));
  for (var j = li; j < p.K; j += WG) { y[base + j] = T((f32(x[base + j]) - mx) - ls); }
}
#elif ${SOFTMAX_GRAD}
// dx = y ⊙ (dy − Σ dy⊙y), and 0 where the mask replaced the logit.
@group(0) @binding(1) var<storage, read> y: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
#if ${HAS_MASK}
@group(0) @binding(4) var<storage, read_write> dx: array<T>;
#else
@group(0) @binding(3) var<storage, read_write> dx: array<T>;
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.K;
  var s = 0.0;
  for (var j = li; j < p.K; j += WG) { s += f32(dy[base + j]) * f32(y[base + j]); }
  s = wg_sum(s, li);
#if ${HAS_MASK}
  let mb = mask_base(row);
#endif
  for (var j = li; j < p.K; j += WG) {
    var g = f32(y[base + j]) * (f32(dy[base + j]) - s);
#if ${HAS_MASK}
    if (mask_zero(mb + j * p.mlast)) { g = 0.0; }
#endif
    dx[base + j] = T(g);
  }
}
#elif ${LOG_SOFTMAX_GRAD}
// dx = dy − exp(y)·Σ dy
@group(0) @binding(1) var<storage, read> y: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.K;
  var s = 0.0;
  for (var j = li; j < p.K; j += WG) { s += f32(dy[base + j]); }
  s = wg_sum(s, li);
  for (var j = li; j < p.K; j += WG) { dx[base + j] = T(f32(dy[base + j]) - exp(f32(y[base + j])) * s); }
}
#endif
