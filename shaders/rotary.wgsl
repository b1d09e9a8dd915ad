// Rotary position embedding (rotary_embedding_torch, interleaved pairs), one thread per
// element of x [rows, dh] where row = (…, pos) and pos = row % n. Features
// [start, start + 2m) rotate in pairs (2i, 2i+1) relative to start by θ = sign·f32(pos)·freqs[i]:
//   out[2i] = x[2i] cos θ − x[2i+1] sin θ,  out[2i+1] = x[2i+1] cos θ + x[2i] sin θ;
// all other features are copied. sign = −1 is the backward pass (rotation by −θ).
// sin/cos are computed here with an explicit range reduction because WGSL only promises
// 2^-11 absolute error for the built-ins.

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // total, n, dh, start, m, sign, offset: src/graph/kernels/rotary.ts
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;

#include "lib/grid"

// (sin a, cos a): Cody–Waite reduction by π/2 (three-part constant), then the Cephes sinf/cosf
// minimax polynomials on [−π/4, π/4]; a few ulp for |a| up to ~1e4.
fn sincos(a: f32) -> vec2<f32> {
  let k = round(a * 0.63661977236758134);
  var r = a - k * 1.5703125;
  r = r - k * 4.837512969970703125e-4;
  r = r - k * 7.54978995489188216e-8;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  let q = i32(k) & 3;
  if (q == 0) { return vec2<f32>(s, c); }
  if (q == 1) { return vec2<f32>(c, -s); }
  if (q == 2) { return vec2<f32>(-s, -c); }
  return vec2<f32>(-c, s);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  if (e >= p.total) { return; }
  let c = e % p.dh;
  let v = f32(x[e]);
  if (c < p.start || c >= p.start + 2u * p.m) {
    out[e] = T(v);
    return;
  }
  let pos = (e / p.dh) % p.n;
  let rel = c - p.start;
  let theta = f32(pos + p.offset) * freqs[rel / 2u] * p.sign;
  let sc = sincos(theta);
  if ((rel & 1u) == 0u) {
    out[e] = T(v * sc.y - f32(x[e + 1u]) * sc.x);
  } else {
    out[e] = T(v * sc.y + f32(x[e - 1u]) * sc.x);
  }
}
