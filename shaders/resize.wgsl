// Bilinear resize of NCHW planes, F.interpolate(mode='bilinear', align_corners=False):
// source coordinate (o + 0.5)·in/out − 0.5 clamped at 0, taps i0 = ⌊src⌋, i1 = min(i0+1, in−1).
// The backward runs one thread per INPUT element and gathers from the output rows/columns
// whose taps can reach it (deterministic, no float atomics); weights are recomputed with the
// forward's exact formula, so both passes agree bit for bit on which taps are used.
// Entry chosen by one flag: FWD or BWD.

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // NC, H, W, OH, OW, total, scaleY, scaleX: src/graph/kernels/resize.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

struct Taps { i0: u32, i1: u32, l1: f32 }

fn taps(o: u32, inSize: u32, scale: f32) -> Taps {
  let src = max(scale * (f32(o) + 0.5) - 0.5, 0.0);
  let i0 = min(u32(floor(src)), inSize - 1u);
  return Taps(i0, min(i0 + 1u, inSize - 1u), src - f32(i0));
}

// Weight of input index i in output o's interpolation along one axis.
fn weightOf(o: u32, i: u32, inSize: u32, scale: f32) -> f32 {
  let t = taps(o, inSize, scale);
  return select(0.0, 1.0 - t.l1, t.i0 == i) + select(0.0, t.l1, t.i1 == i);
}

// Output indices that may use input index i: src ∈ [i − 1, i + 1), widened by one each side.
fn outRange(i: u32, outSize: u32, scale: f32) -> vec2<u32> {
  let lo = floor((f32(i) - 0.5) / scale - 0.5) - 1.0;
  let hi = ceil((f32(i) + 1.5) / scale - 0.5) + 1.0;
  return vec2<u32>(u32(max(lo, 0.0)), u32(clamp(hi, 0.0, f32(outSize - 1u))));
}

#if ${FWD}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let ow = i % p.OW;
  let oh = (i / p.OW) % p.OH;
  let q = i / (p.OW * p.OH);
  let ty = taps(oh, p.H, p.scaleY);
  let tx = taps(ow, p.W, p.scaleX);
  let base = q * p.H * p.W;
  let r0 = base + ty.i0 * p.W;
  let r1 = base + ty.i1 * p.W;
  let top = (1.0 - tx.l1) * f32(x[r0 + tx.i0]) + tx.l1 * f32(x[r0 + tx.i1]);
  let bot = (1.0 - tx.l1) * f32(x[r1 + tx.i0]) + tx.l1 * f32(x[r1 + tx.i1]);
  y[i] = T((1.0 - ty.l1) * top + ty.l1 * bot);
}
#elif ${BWD}
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.total) { return; }
  let iw = i % p.W;
  let ih = (i / p.W) % p.H;
  let q = i / (p.W * p.H);
  let ry = outRange(ih, p.OH, p.scaleY);
  let rx = outRange(iw, p.OW, p.scaleX);
  var acc = 0.0;
  for (var oh = ry.x; oh <= ry.y; oh++) {
    let wy = weightOf(oh, ih, p.H, p.scaleY);
    if (wy == 0.0) { continue; }
    let row = (q * p.OH + oh) * p.OW;
    var accRow = 0.0;
    for (var ow = rx.x; ow <= rx.y; ow++) {
      accRow += weightOf(ow, iw, p.W, p.scaleX) * f32(dy[row + ow]);
    }
    acc += wy * accRow;
  }
  dx[i] = T(acc);
}
#endif
