// Mixture-of-experts kernels: top-k gating, GPU-side routing (token slots grouped by
// expert, each expert's segment padded to whole row tiles), row gather / combine between
// token order and expert order, and grouped matmuls whose row tiles each belong to one
// expert. Nothing is read back to the CPU; sums are in a fixed order (no float atomics).
// Slot s = t·k + j is token t's j-th choice; "rows" are the permuted, expert-grouped order.
// Kinds (one flag true): GATE_FWD, GATE_BWD, ROUTE, GATHER, COMBINE, SLOT_DOT, GMM, GMM_WGRAD,
// GMM_REG, GMM_WGRAD_REG (CPU adapters; WG and REG_BODY from matmul.ts's registerBody).
// Specialisation: T (element type of the float tensors; sums and the gate softmax are f32), WEIGHTED (gather/combine scale by the slot weight), HAS_DP, HAS_DW,
// DW_BINDING (gate backward inputs), TRANS_B, TM, TN, BK, RM, RN (grouped matmul tiles).

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

#include "lib/grid"

#if ${GATE_FWD}
// probs = softmax(logits) per token; the k largest in descending order (ties: lower expert
// first) and their renormalised values.
${PARAMS}   // N, E, K: moeGateParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<T>;
@group(0) @binding(2) var<storage, read_write> probs: array<T>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;
@group(0) @binding(4) var<storage, read_write> weights: array<T>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id_wg(gid, nwg, 64u);
  if (t >= p.N) { return; }
  let base = t * p.E;
  var m = f32(logits[base]);
  for (var e = 1u; e < p.E; e++) { m = max(m, f32(logits[base + e])); }
  var sum = 0.0;
  for (var e = 0u; e < p.E; e++) { sum += exp(f32(logits[base + e]) - m); }
  for (var e = 0u; e < p.E; e++) { probs[base + e] = T(exp(f32(logits[base + e]) - m) / sum); }
  // j-th pick = the best expert after the previous pick in the order (prob desc, index asc),
  // on the f32 probabilities (recomputed: the stored ones may be rounded to f16).
  var prevP = 0.0;
  var prevE = -1;
  var picked = 0.0;
  for (var j = 0u; j < p.K; j++) {
    var bestP = -1.0;
    var bestE = -1;
    for (var e = 0u; e < p.E; e++) {
      let pe = exp(f32(logits[base + e]) - m) / sum;
      let after = prevE < 0 || pe < prevP || (pe == prevP && i32(e) > prevE);
      if (after && pe > bestP) { bestP = pe; bestE = i32(e); }
    }
    indices[t * p.K + j] = bestE;
    picked += bestP;
    prevP = bestP;
    prevE = bestE;
  }
  for (var j = 0u; j < p.K; j++) {
    let e = u32(indices[t * p.K + j]);
    weights[t * p.K + j] = T(exp(f32(logits[base + e]) - m) / sum / picked);
  }
}

#elif ${GATE_BWD}
// dLogits from dProbs (load-balancing loss) and dWeights (weighted combine):
// w_j = p_{i_j}/S  ⇒  dp_{i_m} += (dw_m − Σ_j dw_j w_j)/S; then the softmax backward.
${PARAMS}   // N, E, K: moeGateParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<T>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read> weights: array<T>;
@group(0) @binding(4) var<storage, read_write> dLogits: array<T>;
#if ${HAS_DP}
@group(0) @binding(5) var<storage, read> dProbs: array<T>;
#endif
#if ${HAS_DW}
@group(0) @binding(${DW_BINDING}) var<storage, read> dWeights: array<T>;
#endif

fn dProb(t: u32, e: u32, S: f32, wdw: f32) -> f32 {
  var g = 0.0;
#if ${HAS_DP}
  g = f32(dProbs[t * p.E + e]);
#endif
#if ${HAS_DW}
  for (var j = 0u; j < p.K; j++) {
    if (indices[t * p.K + j] == i32(e)) { g += (f32(dWeights[t * p.K + j]) - wdw) / S; }
  }
#endif
  return g;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat_id_wg(gid, nwg, 64u);
  if (t >= p.N) { return; }
  var S = 0.0;
  var wdw = 0.0;
  for (var j = 0u; j < p.K; j++) {
    S += f32(probs[t * p.E + u32(indices[t * p.K + j])]);
#if ${HAS_DW}
    wdw += f32(weights[t * p.K + j]) * f32(dWeights[t * p.K + j]);
#else
    wdw += 0.0 * f32(weights[t * p.K + j]);   // keeps the binding used
#endif
  }
  var pdp = 0.0;
  for (var e = 0u; e < p.E; e++) { pdp += f32(probs[t * p.E + e]) * dProb(t, e, S, wdw); }
  for (var e = 0u; e < p.E; e++) {
    let pe = f32(probs[t * p.E + e]);
    dLogits[t * p.E + e] = T(pe * (dProb(t, e, S, wdw) - pdp));
  }
}

#elif ${ROUTE}
// One workgroup. For each expert in turn: count its slots per thread chunk, exclusive scan
// over the threads, place the slots in slot order (deterministic), pad the segment to whole
// tiles of TM rows and label those tiles with the expert.
${PARAMS}   // nSlots, E, TM, capRows, capTiles: moeRouteParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> indices: array<i32>;          // [N·k] expert of each slot
@group(0) @binding(2) var<storage, read_write> pos: array<i32>;        // [N·k] row of each slot (−1: none)
@group(0) @binding(3) var<storage, read_write> rowSlot: array<i32>;    // [capRows] slot of each row (−1: padding)
@group(0) @binding(4) var<storage, read_write> tileExpert: array<i32>; // [capTiles] (−1: unused tile)
@group(0) @binding(5) var<storage, read_write> segs: array<i32>;       // [E][2] first row, end of real rows

const NT: u32 = 256u;
var<workgroup> scan: array<u32, NT>;
var<workgroup> total: u32;

@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_index) li: u32) {
  for (var i = li; i < p.capRows; i += NT) { rowSlot[i] = -1; }
  for (var i = li; i < p.capTiles; i += NT) { tileExpert[i] = -1; }
  for (var i = li; i < p.nSlots; i += NT) { pos[i] = -1; }
  storageBarrier();
  let chunk = (p.nSlots + NT - 1u) / NT;
  let s0 = min(li * chunk, p.nSlots);
  let s1 = min(s0 + chunk, p.nSlots);
  var base = 0u;
  for (var e = 0u; e < p.E; e++) {
    var c = 0u;
    for (var s = s0; s < s1; s++) { if (indices[s] == i32(e)) { c++; } }
    scan[li] = c;
    workgroupBarrier();
    if (li == 0u) {
      var run = 0u;
      for (var i = 0u; i < NT; i++) { let v = scan[i]; scan[i] = run; run += v; }
      total = run;
    }
    workgroupBarrier();
    var r = base + scan[li];
    for (var s = s0; s < s1; s++) {
      if (indices[s] == i32(e)) { pos[s] = i32(r); rowSlot[r] = i32(s); r++; }
    }
    let count = total;
    let tiles = (count + p.TM - 1u) / p.TM;
    for (var i = li; i < tiles; i += NT) { tileExpert[base / p.TM + i] = i32(e); }
    if (li == 0u) { segs[2u * e] = i32(base); segs[2u * e + 1u] = i32(base + count); }
    base += tiles * p.TM;
    workgroupBarrier();   // scan and total are reused by the next expert
  }
}

#elif ${GATHER}
// dst[r] = c · src[token of row r] (0 for padding rows); c = weight of the row's slot or 1.
${PARAMS}   // rows, d, K: moeGatherParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;        // [N, d]
@group(0) @binding(2) var<storage, read> rowSlot: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<T>;  // [rows, d]
#if ${WEIGHTED}
@group(0) @binding(4) var<storage, read> w: array<T>;          // [N·k]
#endif

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.rows * p.d) { return; }
  let slot = rowSlot[i / p.d];
  var v = 0.0;
  if (slot >= 0) {
    v = f32(src[(u32(slot) / p.K) * p.d + i % p.d]);
#if ${WEIGHTED}
    v *= f32(w[u32(slot)]);
#endif
  }
  dst[i] = T(v);
}

#elif ${COMBINE}
// dst[t] = Σ_j c_j · src[row of slot t·k+j], j in order; c_j = weight or 1.
${PARAMS}   // N, d, K: moeCombineParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;        // [rows, d]
@group(0) @binding(2) var<storage, read> pos: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<T>;  // [N, d]
#if ${WEIGHTED}
@group(0) @binding(4) var<storage, read> w: array<T>;
#endif

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_id(gid, nwg);
  if (i >= p.N * p.d) { return; }
  let t = i / p.d;
  let c = i % p.d;
  var acc = 0.0;
  for (var j = 0u; j < p.K; j++) {
    let r = pos[t * p.K + j];
    if (r < 0) { continue; }
#if ${WEIGHTED}
    acc = fma(f32(w[t * p.K + j]), f32(src[u32(r) * p.d + c]), acc);
#else
    acc += f32(src[u32(r) * p.d + c]);
#endif
  }
  dst[i] = T(acc);
}

#elif ${SLOT_DOT}
// out[s] = a[token of s] · b[row of s] (the gradient of a slot weight).
${PARAMS}   // nSlots, d, K: moeSlotDotParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;          // [N, d]
@group(0) @binding(2) var<storage, read> b: array<T>;          // [rows, d]
@group(0) @binding(3) var<storage, read> pos: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;  // [N·k]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let s = flat_id_wg(gid, nwg, 64u);
  if (s >= p.nSlots) { return; }
  let r = pos[s];
  var acc = 0.0;
  if (r >= 0) {
    let ab = (s / p.K) * p.d;
    let bb = u32(r) * p.d;
    for (var c = 0u; c < p.d; c++) { acc = fma(f32(a[ab + c]), f32(b[bb + c]), acc); }
  }
  out[s] = T(acc);
}

#elif ${GMM}
// C[r] = A[r] · op(W[e]) with e = the expert owning row tile r / TM; W is [E, N, K]
// (TRANS_B, PyTorch Linear layout) or [E, K, N]. Unused tiles write zeros and stop.
${PARAMS}   // M, N, K: moeGmmParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<T>;
@group(0) @binding(2) var<storage, read> W: array<T>;
@group(0) @binding(3) var<storage, read_write> C: array<T>;
@group(0) @binding(4) var<storage, read> tileExpert: array<i32>;

#include "lib/gemm_tile"   // TM … NT, As, Bs, gemm_tile_fma
var<workgroup> tileE: i32;

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  if (li == 0u) { tileE = tileExpert[wid.y]; }
  let e = workgroupUniformLoad(&tileE);
  if (e < 0) {
    for (var i = 0u; i < RM; i++) {
      for (var j = 0u; j < RN; j++) {
        let m = m0 + lid.y + i * TY;
        let n = n0 + lid.x + j * TX;
        if (m < p.M && n < p.N) { C[m * p.N + n] = T(0.0); }
      }
    }
    return;
  }
  let baseW = u32(e) * p.N * p.K;
  var acc: array<array<f32, RN>, RM>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    for (var x = li; x < BK * TM; x += NT) {
      let k = x % BK;
      let m = x / BK;
      var v = 0.0;
      if (m0 + m < p.M && k0 + k < p.K) { v = f32(A[(m0 + m) * p.K + k0 + k]); }
      As[k * TM + m] = v;
    }
    for (var x = li; x < BK * TN; x += NT) {
#if ${TRANS_B}
      let k = x % BK;
      let n = x / BK;
#else
      let n = x % TN;
      let k = x / TN;
#endif
      var v = 0.0;
      if (k0 + k < p.K && n0 + n < p.N) {
#if ${TRANS_B}
        v = f32(W[baseW + (n0 + n) * p.K + k0 + k]);
#else
        v = f32(W[baseW + (k0 + k) * p.N + n0 + n]);
#endif
      }
      Bs[k * TN + n] = v;
    }
    workgroupBarrier();
    gemm_tile_fma(lid, &acc);
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let m = m0 + lid.y + i * TY;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * TX;
      if (n < p.N) { C[m * p.N + n] = T(acc[i][j]); }
    }
  }
}

#elif ${GMM_REG}
// GMM for CPU adapters (the REGISTER kernel of shaders/matmul.wgsl): no workgroup memory, no
// barriers; a workgroup's WG·RM rows are one row tile (one expert, read at a uniform address),
// its RN columns a uniform strip of W[e]. REG_BODY is matmul.ts's registerBody.
${PARAMS}   // M, N, K: moeGmmParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<T>;
@group(0) @binding(2) var<storage, read> B: array<T>;          // W [E, N, K] (TRANS_B) or [E, K, N]
@group(0) @binding(3) var<storage, read_write> C: array<T>;
@group(0) @binding(4) var<storage, read> tileExpert: array<i32>;
const WG: u32 = ${WG}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = tileExpert[wid.y];
  let n0 = wid.x * ${RN}u;
  let m4 = wid.y * (WG * ${RM}u) + 4u * lid.x;
  if (e < 0) {
    for (var i = 0u; i < ${RM}u; i++) {
      let r = m4 + (i / 4u) * 4u * WG + i % 4u;
      for (var j = 0u; j < ${RN}u; j++) {
        if (r < p.M && n0 + j < p.N) { C[r * p.N + n0 + j] = T(0.0); }
      }
    }
    return;
  }
  let baseA = 0u;
  let baseB = u32(e) * p.N * p.K;
  let baseC = 0u;
${REG_BODY}
}

#elif ${GMM_WGRAD_REG}
// GMM_WGRAD for CPU adapters: out[e] = G[seg e]ᵀ · A[seg e] as the REGISTER kernel with
// transposed A over the expert's row segment (segK rows; an empty segment stores zeros).
${PARAMS}   // M, N, rows: moeWgradParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<T>;          // G [rows, M]
@group(0) @binding(2) var<storage, read> B: array<T>;          // A [rows, N]
@group(0) @binding(3) var<storage, read_write> C: array<T>;    // [E, M, N]
@group(0) @binding(4) var<storage, read> segs: array<i32>;
const WG: u32 = ${WG}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = wid.z;
  let start = u32(segs[2u * e]);
  let segK = u32(segs[2u * e + 1u]) - start;
  let baseA = start * p.M;
  let baseB = start * p.N;
  let baseC = e * p.M * p.N;
  let n0 = wid.x * ${RN}u;
  let m4 = wid.y * (WG * ${RM}u) + 4u * lid.x;
${REG_BODY}
}

#elif ${GMM_WGRAD}
// dW[e] = Σ_{rows r of expert e} G[r]ᵀ · A[r]: out [E, M, N] from G [rows, M], A [rows, N];
// the reduction runs over that expert's segment only (an empty segment gives zeros).
${PARAMS}   // M, N, rows: moeWgradParams (src/graph/kernels/moe.ts)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> G: array<T>;
@group(0) @binding(2) var<storage, read> A: array<T>;
@group(0) @binding(3) var<storage, read_write> Out: array<T>;
@group(0) @binding(4) var<storage, read> segs: array<i32>;

#include "lib/gemm_tile"   // TM … NT, As, Bs, gemm_tile_fma
var<workgroup> segStart: u32;
var<workgroup> segEnd: u32;

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let e = wid.z;
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  if (li == 0u) {
    segStart = u32(segs[2u * e]);
    segEnd = u32(segs[2u * e + 1u]);
  }
  let start = workgroupUniformLoad(&segStart);
  let end = workgroupUniformLoad(&segEnd);
  var acc: array<array<f32, RN>, RM>;
  for (var k0 = start; k0 < end; k0 += BK) {
    for (var x = li; x < BK * TM; x += NT) {
      let m = x % TM;
      let k = x / TM;
      var v = 0.0;
      if (k0 + k < end && m0 + m < p.M) { v = f32(G[(k0 + k) * p.M + m0 + m]); }
      As[k * TM + m] = v;
    }
    for (var x = li; x < BK * TN; x += NT) {
      let n = x % TN;
      let k = x / TN;
      var v = 0.0;
      if (k0 + k < end && n0 + n < p.N) { v = f32(A[(k0 + k) * p.N + n0 + n]); }
      Bs[k * TN + n] = v;
    }
    workgroupBarrier();
    gemm_tile_fma(lid, &acc);
    workgroupBarrier();
  }
  let baseO = e * p.M * p.N;
  for (var i = 0u; i < RM; i++) {
    let m = m0 + lid.y + i * TY;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * TX;
      if (n < p.N) { Out[baseO + m * p.N + n] = T(acc[i][j]); }
    }
  }
}
#endif
