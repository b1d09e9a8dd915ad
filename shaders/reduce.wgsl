// Reductions along one axis: x is viewed as [outer, n, inner] and reduced over n.
// A workgroup of 256 threads covers COLS adjacent inner columns of one outer index with
// 256/COLS lanes each (COLS = 1: one workgroup per contiguous row, a tree reduction over
// 256 lanes; larger COLS for strided axes keeps the loads coalesced across columns).
// Specialisation (one kind flag true): SUM (out = scale·Σ), MAX (values + index of the
// first maximum; NaN counts as the largest), BCAST (backward of SUM: dx = scale·dy broadcast
// along n), MAX_GRAD (backward of MAX: dy routed to the recorded index). COLS (u32).

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // outer, n, inner, tiles, scale, total: src/graph/kernels/reduce.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

const WG: u32 = 256u;
const COLS: u32 = ${COLS}u;
const LANES: u32 = WG / COLS;

#if ${SUM}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

const RED_N: u32 = WG;
#include "lib/reduce"   // red, red_tree_sum

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let w = flat_wg_id(wid, nwg);
  let o = w / p.tiles;
  if (o >= p.outer) { return; }
  let c = li % COLS;
  let lane = li / COLS;
  let i = (w % p.tiles) * COLS + c;
  var acc = 0.0;
  if (i < p.inner) {
    let base = o * p.n * p.inner + i;
    for (var j = lane; j < p.n; j += LANES) {
      acc += f32(x[base + j * p.inner]);
    }
  }
  red[li] = acc;
  red_tree_sum(li, LANES, COLS);
  if (lane == 0u && i < p.inner) {
    out[o * p.inner + i] = T(red[c] * p.scale);
  }
}
#elif ${MAX}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@group(0) @binding(3) var<storage, read_write> idx: array<i32>;

var<workgroup> redv: array<f32, WG>;
var<workgroup> redi: array<u32, WG>;

#include "lib/nan"   // is_nan

// a beats b: larger, NaN beats numbers and nothing beats NaN (torch.max propagates NaN). The
// NaN cases come first: with NaN operands the comparison itself is not to be trusted.
fn beats(a: f32, b: f32) -> bool {
  if (is_nan(b)) { return false; }
  if (is_nan(a)) { return true; }
  return a > b;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let w = flat_wg_id(wid, nwg);
  let o = w / p.tiles;
  if (o >= p.outer) { return; }
  let c = li % COLS;
  let lane = li / COLS;
  let i = (w % p.tiles) * COLS + c;
  var best = -3.4028234663852886e38;
  var bi = 0xffffffffu;   // no element seen
  if (i < p.inner) {
    let base = o * p.n * p.inner + i;
    for (var j = lane; j < p.n; j += LANES) {
      let v = f32(x[base + j * p.inner]);
      // j increases, so strict comparison keeps the first maximum of this lane.
      if (bi == 0xffffffffu || beats(v, best)) { best = v; bi = j; }
    }
  }
  redv[li] = best;
  redi[li] = bi;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    if (lane < s) {
      let v2 = redv[li + s * COLS];
      let i2 = redi[li + s * COLS];
      let v1 = redv[li];
      let i1 = redi[li];
      // Take the other lane's candidate if it is larger, or equal with a smaller index.
      let take = i2 != 0xffffffffu && (i1 == 0xffffffffu || beats(v2, v1) || (!beats(v1, v2) && i2 < i1));
      if (take) { redv[li] = v2; redi[li] = i2; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && i < p.inner) {
    out[o * p.inner + i] = T(redv[c]);
    idx[o * p.inner + i] = i32(redi[c]);
  }
}
#elif ${BCAST}
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  if (e >= p.total) { return; }
  let i = e % p.inner;
  let o = e / (p.n * p.inner);
  dx[e] = T(f32(dy[o * p.inner + i]) * p.scale);
}
#elif ${MAX_GRAD}
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read> dy: array<T>;
@group(0) @binding(3) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  if (e >= p.total) { return; }
  let i = e % p.inner;
  let j = (e / p.inner) % p.n;
  let o = e / (p.n * p.inner);
  let k = o * p.inner + i;
  dx[e] = select(T(0.0), dy[k], idx[k] == i32(j));
}
#endif
