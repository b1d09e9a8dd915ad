// Optimiser kernels.
// ADAMW: one parameter tensor, in place, torch 1.13 single-tensor AdamW order of operations
//   with every scalar precomputed on the CPU (as f32, as torch casts Python scalars):
//   p *= decay (= 1 − lr·wd); m = m·β1 + (1−β1)·g; v = v·β2 + (1−β2)·g·g;
//   [vmax = max(vmax, v); use vmax for v]; p += −stepSize · (m / (sqrt(v)/bc2sqrt + eps)).
//   AMSGRAD adds the vmax binding; GUARD adds a tensor whose element 0 must be finite, else
//   nothing is written (a non-finite loss skips the whole update without a CPU read-back).
// SUMSQ: sum of squares of one tensor, by one workgroup, into slot `slot` of `sums`.
// NORM: total = sqrt(Σ_i sqrt(sums_i)²) over `count` slots (torch: norm of per-tensor norms).
// SCALE: out = g · min(1, maxNorm / (total + 1e-6)) (torch.nn.utils.clip_grad_norm_).
// Gradients may be f16 (T; mixed-precision training keeps them f16, scaled by the loss
// scale): every kernel reads a gradient as f32(g)·gradScale (1 for f32 gradients, 1/scale to
// unscale), so no unscaled f32 copy of the gradients is ever stored. Everything else is f32.

#if ${F16}
enable f16;
#endif
alias T = ${T};

${PARAMS}   // n, slot, count, AdamW scalars, gradScale, maxNorm: src/graph/kernels/optim.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

#if ${ADAMW}
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<T>;
@group(0) @binding(3) var<storage, read_write> expAvg: array<f32>;
@group(0) @binding(4) var<storage, read_write> expAvgSq: array<f32>;
#if ${AMSGRAD}
@group(0) @binding(5) var<storage, read_write> maxExpAvgSq: array<f32>;
#if ${GUARD}
@group(0) @binding(6) var<storage, read> guard: array<f32>;
#endif
#else
#if ${GUARD}
@group(0) @binding(5) var<storage, read> guard: array<f32>;
#endif
#endif

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
#if ${GUARD}
  // Inf and NaN have an all-ones exponent.
  if ((bitcast<u32>(guard[0]) & 0x7f800000u) == 0x7f800000u) { return; }
#endif
  let g = f32(grad[i]) * p.gradScale;
  let pd = param[i] * p.decay;
  let m = expAvg[i] * p.beta1 + p.omb1 * g;
  let v = expAvgSq[i] * p.beta2 + p.omb2 * g * g;
  expAvg[i] = m;
  expAvgSq[i] = v;
#if ${AMSGRAD}
  let vm = max(maxExpAvgSq[i], v);
  maxExpAvgSq[i] = vm;
#else
  let vm = v;
#endif
  let denom = sqrt(vm) / p.bc2sqrt + p.eps;
  param[i] = pd + (-p.stepSize) * (m / denom);
}
#elif ${SUMSQ}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;
const RED_N: u32 = 256u;
#include "lib/reduce"   // red, red_tree_sum

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  // Kahan-compensated partial sums keep big tensors accurate in f32.
  var s = 0.0;
  var c = 0.0;
  for (var i = li; i < p.n; i += 256u) {
    let g = f32(x[i]) * p.gradScale;
    let y = g * g - c;
    let t = s + y;
    c = (t - s) - y;
    s = t;
  }
  red[li] = s;
  red_tree_sum(li, RED_N, 1u);
  if (li == 0u) { sums[p.slot] = red[0]; }
}
#elif ${NORM}
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32>;

@compute @workgroup_size(1)
fn main() {
  var s = 0.0;
  for (var i = 0u; i < p.count; i++) {
    let norm = sqrt(sums[i]);
    s += norm * norm;
  }
  total[0] = sqrt(s);
}
#elif ${SCALE}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> total: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  let coef = min(p.maxNorm / (total[0] + 1e-6), 1.0);
  out[i] = f32(x[i]) * p.gradScale * coef;
}
#endif
