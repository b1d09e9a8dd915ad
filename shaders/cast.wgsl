// Element type conversion between f32 and f16 storage (needs the shader-f16 feature).
// Specialisation: TO_F16 (bool): f32 → f16, else f16 → f32.
enable f16;

${PARAMS}   // n: src/graph/kernels/cast.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

#if ${TO_F16}
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f16>;
#else
@group(0) @binding(1) var<storage, read> src: array<f16>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
#endif

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
#if ${TO_F16}
  dst[i] = f16(src[i]);
#else
  dst[i] = f32(src[i]);
#endif
}
