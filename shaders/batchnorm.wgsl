// BatchNorm2d over NCHW: per-channel batch statistics, normalisation, the backward reductions
// and input gradient, and the in-place running-statistics update.
// Entry chosen by one flag: STATS, APPLY, BWD_REDUCE, BWD_DX (TRAINING selects the full
// batch-statistics gradient, else the eval one), UPDATE. ROWS (APPLY, training BWD_DX): one
// invocation per (n, c) row, for CPU adapters (integer division is scalarised there).
// Channel reductions use one RWG-thread workgroup per channel: each thread sums a strided
// part sequentially, then a tree in workgroup memory (deterministic). RWG and ROWS are the
// tunable layout of src/graph/kernels/batchnorm.ts (hand pick: 256 lanes on GPUs; 8 and ROWS on
// CPU adapters, where a barrier costs a switch between every group of lanes of the workgroup).

#if ${F16}
enable f16;
#endif
#if ${SUBGROUPS}
enable subgroups;   // row / channel sums through subgroup operations (lib/reduce)
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // N, C, HW, total, eps, momentum: src/graph/kernels/batchnorm.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

const RWG: u32 = ${RWG}u;
const RED_N: u32 = RWG;
#include "lib/reduce_pair"   // red, red2, red_pair_sum

#if ${STATS}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> bvar: array<f32>;   // biased

@compute @workgroup_size(RWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let c = wid.x;
  let cnt = f32(p.N * p.HW);
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let base = (n * p.C + c) * p.HW;
    for (var i = li; i < p.HW; i += RWG) { s += f32(x[base + i]); }
  }
  red[li] = s;
  red2[li] = 0.0;
  red_pair_sum(li);
  let mu = red[0] / cnt;
  workgroupBarrier();
  // Second pass around the mean (no cancellation from E[x²] − E[x]²).
  var q = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let base = (n * p.C + c) * p.HW;
    for (var i = li; i < p.HW; i += RWG) { let d = f32(x[base + i]) - mu; q += d * d; }
  }
  red[li] = 0.0;
  red2[li] = q;
  red_pair_sum(li);
  if (li == 0u) {
    mean[c] = mu;
    bvar[c] = red2[0] / cnt;
  }
}
#elif ${APPLY}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> weight: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> vr: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
#if ${ROWS}
  // One invocation per (n, c) row of HW values: the channel division once per row.
  let row = flat_id(gid, nwg);
  if (row >= p.N * p.C) { return; }
  let c = row % p.C;
  let inv = 1.0 / sqrt(vr[c] + p.eps);
  let sc = inv * f32(weight[c]);
  let mu = mean[c];
  let bc = f32(bias[c]);
  for (var j = 0u; j < p.HW; j++) {
    let i = row * p.HW + j;
    y[i] = T((f32(x[i]) - mu) * sc + bc);
  }
#else
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let c = (i / p.HW) % p.C;
  let inv = 1.0 / sqrt(vr[c] + p.eps);
  y[i] = T((f32(x[i]) - mean[c]) * inv * f32(weight[c]) + f32(bias[c]));
#endif
}
#elif ${BWD_REDUCE}
// dbias[c] = Σ dy, dweight[c] = Σ dy·x̂.
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> vr: array<f32>;
@group(0) @binding(5) var<storage, read_write> dweight: array<T>;
@group(0) @binding(6) var<storage, read_write> dbias: array<T>;

@compute @workgroup_size(RWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let c = wid.x;
  let mu = mean[c];
  let inv = 1.0 / sqrt(vr[c] + p.eps);
  var s = 0.0;
  var sx = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let base = (n * p.C + c) * p.HW;
    for (var i = li; i < p.HW; i += RWG) {
      let g = f32(dy[base + i]);
      s += g;
      sx += g * (f32(x[base + i]) - mu);
    }
  }
  red[li] = s;
  red2[li] = sx;
  red_pair_sum(li);
  if (li == 0u) {
    dbias[c] = T(red[0]);
    dweight[c] = T(red2[0] * inv);
  }
}
#elif ${BWD_DX}
#if ${TRAINING}
// dx = w·inv·(dy − Σdy/M − x̂·Σdy·x̂/M)
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read> weight: array<T>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> vr: array<f32>;
@group(0) @binding(6) var<storage, read> sdyx: array<T>;   // Σ dy·x̂ (= dweight)
@group(0) @binding(7) var<storage, read> sdy: array<T>;    // Σ dy (= dbias)
@group(0) @binding(8) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let cnt = f32(p.N * p.HW);
#if ${ROWS}
  // One invocation per (n, c) row (see APPLY).
  let row = flat_id(gid, nwg);
  if (row >= p.N * p.C) { return; }
  let c = row % p.C;
  let inv = 1.0 / sqrt(vr[c] + p.eps);
  let mu = mean[c];
  let wi = f32(weight[c]) * inv;
  let mdy = f32(sdy[c]) / cnt;
  let mdyx = f32(sdyx[c]) / cnt;
  for (var j = 0u; j < p.HW; j++) {
    let i = row * p.HW + j;
    let xhat = (f32(x[i]) - mu) * inv;
    dx[i] = T(wi * (f32(dy[i]) - mdy - xhat * mdyx));
  }
#else
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let c = (i / p.HW) % p.C;
  let inv = 1.0 / sqrt(vr[c] + p.eps);
  let xhat = (f32(x[i]) - mean[c]) * inv;
  dx[i] = T(f32(weight[c]) * inv * (f32(dy[i]) - f32(sdy[c]) / cnt - xhat * f32(sdyx[c]) / cnt));
#endif
}
#else
// Eval: the statistics are constants, dx = w·inv·dy.
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read> weight: array<T>;
@group(0) @binding(3) var<storage, read> vr: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let c = (i / p.HW) % p.C;
  dx[i] = T(f32(weight[c]) * f32(dy[i]) / sqrt(vr[c] + p.eps));
}
#endif
#elif ${UPDATE}
// running = (1 − momentum)·running + momentum·batch, with the unbiased batch variance.
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> bvar: array<f32>;
@group(0) @binding(3) var<storage, read_write> runningMean: array<f32>;
@group(0) @binding(4) var<storage, read_write> runningVar: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat_id(gid, nwg);
  if (c >= p.C) { return; }
  let cnt = f32(p.N * p.HW);
  runningMean[c] = (1.0 - p.momentum) * runningMean[c] + p.momentum * mean[c];
  runningVar[c] = (1.0 - p.momentum) * runningVar[c] + p.momentum * bvar[c] * (cnt / (cnt - 1.0));
}
#endif
