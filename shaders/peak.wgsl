// Arithmetic ceiling: every invocation runs CHAINS independent vec4 FMA chains for p.iters
// rounds (independent chains hide FMA latency; vec4 fills SIMD lanes on CPU adapters).
// The loop count is a uniform and the result is stored, so nothing can be folded away.
// Specialisation: WG (workgroup size), CHAINS (independent accumulators, ≤ 16).

struct Params { iters: u32, seed: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> outv: array<f32>;

#include "lib/grid"

const WG: u32 = ${WG}u;
const CHAINS: u32 = ${CHAINS}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id_wg(gid, nwg, WG);
  let x = vec4<f32>(f32(i) * 1e-9, p.seed, 1e-7, 2e-7);
  // Multiplier just below 1 and a tiny addend keep values finite and normal for any count.
  let mulv = vec4<f32>(0.9999999, 0.9999998, 0.9999997, 0.9999996);
  let addv = vec4<f32>(1e-8, 2e-8, 3e-8, 4e-8);
  var acc: array<vec4<f32>, CHAINS>;
  for (var c = 0u; c < CHAINS; c++) { acc[c] = x + vec4<f32>(f32(c) * 1e-3); }
  for (var it = 0u; it < p.iters; it++) {
    for (var c = 0u; c < CHAINS; c++) { acc[c] = fma(acc[c], mulv, addv); }
  }
  var s = vec4<f32>(0.0);
  for (var c = 0u; c < CHAINS; c++) { s += acc[c]; }
  outv[i] = s.x + s.y + s.z + s.w;
}
