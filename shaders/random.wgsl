// Counter-based random numbers: element i of a stream with keys (k1, k2) derived from the
// seed on the CPU is bits(i) = mix(mix(i + k1) ^ k2), mix = Wellons' lowbias32 (a bijective
// integer hash). Pure u32 arithmetic (wrapping multiply, shifts, xor), so every WebGPU
// implementation and the TypeScript copy in src/graph/ops/random.ts give identical bits.
// Uniform floats take the top 24 bits: (bits >> 8) · 2^-24, exact in f32, in [0, 1).
// Specialisation: one of UNIFORM (out = lo + (hi-lo)·u), NORMAL (out = stddev·q[bits >> 16], q a
// 65536-entry table of standard-normal quantiles made on the CPU: only a table read and one
// correctly rounded multiply, so every implementation gives the same bits — built-in log/cos
// are too loosely specified for that), DROPOUT (out = x·keepScale where u ≥ drop, else 0).

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // n, k1, k2, lo, hi, stddev, drop, keepScale: src/graph/kernels/random.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

fn mix32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn bits(i: u32) -> u32 {
  return mix32(mix32(i + p.k1) ^ p.k2);
}

fn unit(i: u32) -> f32 {
  return f32(bits(i) >> 8u) * (1.0 / 16777216.0);
}

#if ${UNIFORM}
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = T(p.lo + (p.hi - p.lo) * unit(i));
}
#elif ${NORMAL}
@group(0) @binding(1) var<storage, read> quantiles: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = T(p.stddev * quantiles[bits(i) >> 16u]);
}
#elif ${DROPOUT}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = T(select(0.0, f32(x[i]) * p.keepScale, unit(i) >= p.drop));
}
#endif
