// Cross entropy with an ignored label, mean over the counted rows (PyTorch F.cross_entropy
// with ignore_index), for logits [N, V] and i32 labels [N].
//   CE_ROWS  one workgroup per row: lse = max + log Σ exp(x − max); rowLoss = lse − x[label]
//            (0 for an ignored row; NaN for a label outside [0, V), which PyTorch rejects).
//   CE_MEAN  one workgroup: loss = Σ rowLoss / count (0 when no row counts), count saved.
//   CE_GRAD  one thread per logit: dx = dloss/count · (softmax(x) − onehot(label)), 0 on
//            ignored rows.
// Specialisation (one kind flag true): CE_ROWS, CE_MEAN, CE_GRAD; WG (u32, power of two) and
// SUBGROUPS: CE_ROWS's are src/graph/kernels/loss.ts's tunable choice.

#if ${F16}
enable f16;
#endif
#if ${SUBGROUPS}
enable subgroups;   // CE_ROWS: row max and sum through subgroup operations (lib/reduce)
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // N, V, ignore, total: src/graph/kernels/loss.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

const WG: u32 = ${WG}u;
const LOWEST: f32 = -3.4028234663852886e38;

const RED_N: u32 = WG;
#include "lib/reduce"   // red, wg_sum, wg_max

fn counted(label: i32) -> bool { return label != p.ignore; }

#if ${CE_ROWS}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = flat_wg_id(wid, nwg);
  if (row >= p.N) { return; }
  let base = row * p.V;
  var mx = LOWEST;
  for (var j = li; j < p.V; j += WG) { mx = max(mx, f32(x[base + j])); }
  mx = wg_max(mx, li);
  var s = 0.0;
  for (var j = li; j < p.V; j += WG) { s += exp(f32(x[base + j]) - mx); }
  let ls = log(wg_sum(s, li));
  if (li == 0u) {
    lse[row] = mx + ls;
    let label = labels[row];
    var l = 0.0;
    if (counted(label)) {
      if (label >= 0 && u32(label) < p.V) {
        l = (mx - f32(x[base + u32(label)])) + ls;
      } else {
        // A NaN that depends on a run-time value: constant NaN is a compile error in Tint.
        l = bitcast<f32>(0x7fc00000u | (p.V & 0u));
      }
    }
    rowLoss[row] = l;
  }
}
#elif ${CE_MEAN}
@group(0) @binding(1) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> count: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  var c = 0.0;
  for (var r = li; r < p.N; r += WG) {
    s += rowLoss[r];
    if (counted(labels[r])) { c += 1.0; }
  }
  s = wg_sum(s, li);
  c = wg_sum(c, li);
  if (li == 0u) {
    count[0] = c;
    loss[0] = select(0.0, s / c, c > 0.0);
  }
}
#elif ${CE_GRAD}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> count: array<f32>;
@group(0) @binding(5) var<storage, read> dloss: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  if (e >= p.total) { return; }
  let row = e / p.V;
  let j = e % p.V;
  let label = labels[row];
  var g = 0.0;
  if (counted(label) && count[0] > 0.0) {
    let pr = exp(f32(x[e]) - lse[row]);
    g = (pr - select(0.0, 1.0, i32(j) == label)) * (dloss[0] / count[0]);
  }
  dx[e] = T(g);
}
#endif
