// Strided copy: dst[dstOff + Σ c_d·ds_d] = src[srcOff + Σ c_d·ss_d] over an index box of
// up to 8 axes. Serves permute, slice, concat and split (and their backward).
// Specialisation: ACCUMULATE (bool): dst += src instead of dst = src.
// (copyruns.wgsl: the same copy with one invocation per run of the innermost axis.)

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // n, rank, srcOff, dstOff, dims, ss, ds: src/graph/kernels/copy.ts
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;

#include "lib/grid"
#include "lib/copy_index"

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.n) { return; }
  var si: u32;
  var di: u32;
  if (p.rank == 1u) {
    // One axis (a merged contiguous box): no division.
    si = p.srcOff + i * p.ss[0].x;
    di = p.dstOff + i * p.ds[0].x;
  } else {
    let o = copy_offsets(i, i32(p.rank) - 1);
    si = o.x;
    di = o.y;
  }
#if ${ACCUMULATE}
  dst[di] += src[si];
#else
  dst[di] = src[si];
#endif
}
