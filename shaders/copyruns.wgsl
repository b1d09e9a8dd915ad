// Strided copy as in copy.wgsl, with one invocation per run of the innermost axis (p.n =
// runs): the index arithmetic (integer division, which CPU adapters cannot vectorise) is done
// once per run instead of once per element. Chosen by ops/shape.ts stridedCopy on CPU adapters.
// Specialisation: ACCUMULATE (bool): dst += src instead of dst = src.

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
  let o = copy_offsets(i, i32(p.rank) - 2);   // the run's start
  let si = o.x;
  let di = o.y;
  let last = p.rank - 1u;
  let len = p.dims[last / 4u][last % 4u];
  let sst = p.ss[last / 4u][last % 4u];
  let dstr = p.ds[last / 4u][last % 4u];
  for (var j = 0u; j < len; j++) {
#if ${ACCUMULATE}
    dst[di + j * dstr] += src[si + j * sst];
#else
    dst[di + j * dstr] = src[si + j * sst];
#endif
  }
}
