// Fused scaled-dot-product attention for [BH, S, d] heads, with an optional [b, Sq, Sk]
// keep-mask (0 = masked: the score is replaced by -1e9, as PyTorch masked_fill does).
// Kinds (one flag true): FWD (scores, mask, online softmax and P·V in one pass; writes the
// per-row running max and sum of exp for the backward), PROBS (re-materialises P from those
// row statistics, for attention maps and the backward), SM_BWD (dS = scale·P⊙(dP − Σ P⊙dP),
// zero where masked).
// FWD_REG, PROBS_REG: FWD and PROBS for CPU adapters (generated REG_BODY, see attention.ts).
// Specialisation: T (element type of Q, K, V, O, P, dP, dS; scores, softmax statistics and
// sums are f32, and the row statistics are stored as f32), D, DV (head sizes), KVD = max(D, DV), QB, KB (query / key rows per tile),
// RWG (register kinds: query rows per workgroup), OWG, SKP (ONE_Q: lanes, key count),
// HAS_MASK, MASK_F32 (mask words are f32; else i32), MASK_BINDING (its binding number).
// Which kind and sizes run is the tunable configuration of src/graph/kernels/attention.ts.

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // BH, H, Sq, Sk, scale, mb, mq, mk: src/graph/kernels/attention.ts
@group(0) @binding(0) var<uniform> p: Params;

#include "lib/grid"

const D: u32 = ${D}u;
const DV: u32 = ${DV}u;
const MASKED: f32 = -1e9;

#if ${HAS_MASK}
@group(0) @binding(${MASK_BINDING}) var<storage, read> mask: array<u32>;
fn keep(b: u32, i: u32, j: u32) -> bool {
  let w = mask[b * p.mb + i * p.mq + j * p.mk];
#if ${MASK_F32}
  return (w & 0x7fffffffu) != 0u;   // +0.0 and -0.0 both mean masked
#else
  return w != 0u;
#endif
}
#endif

#if ${FWD}
@group(0) @binding(1) var<storage, read> Q: array<T>;
@group(0) @binding(2) var<storage, read> K: array<T>;
@group(0) @binding(3) var<storage, read> V: array<T>;
@group(0) @binding(4) var<storage, read_write> O: array<T>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;   // [BH*Sq][2]: row max, Σ exp(s − max)

const QB: u32 = ${QB}u;
const KB: u32 = ${KB}u;
const KVD: u32 = ${KVD}u;
const NT: u32 = QB * 4u;            // four threads per query row
const DVT: u32 = (DV + 3u) / 4u;    // output columns per thread
const KT: u32 = KB / 4u;            // scores per thread per key tile
const NONE: f32 = -3.0e38;          // below any real or masked score: exp(NONE − m) = 0

var<workgroup> Qs: array<f32, QB * D>;
var<workgroup> KVs: array<f32, KB * KVD>;   // the K tile, then the V tile (saves workgroup memory)
var<workgroup> Ss: array<f32, QB * KB>;

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.y;
  let b = bh / p.H;
  let q0 = wid.x * QB;
  let r = li / 4u;
  let t4 = li % 4u;
  let row = q0 + r;
  let qBase = bh * p.Sq * D;
  let kBase = bh * p.Sk * D;
  let vBase = bh * p.Sk * DV;
  for (var e = li; e < QB * D; e += NT) {
    let qr = q0 + e / D;
    var val = 0.0;
    if (qr < p.Sq) { val = f32(Q[qBase + qr * D + e % D]); }
    Qs[e] = val;
  }
  var m = NONE;
  var l = 0.0;
  var acc: array<f32, DVT>;
  for (var k0 = 0u; k0 < p.Sk; k0 += KB) {
    workgroupBarrier();   // the previous tile's V reads are done
    for (var e = li; e < KB * D; e += NT) {
      let kr = k0 + e / D;
      var val = 0.0;
      if (kr < p.Sk) { val = f32(K[kBase + kr * D + e % D]); }
      KVs[e] = val;
    }
    workgroupBarrier();
    for (var j = 0u; j < KT; j++) {
      let kk = t4 + 4u * j;
      let key = k0 + kk;
      var s = NONE;
      if (key < p.Sk) {
        var dot = 0.0;
        for (var c = 0u; c < D; c++) { dot = fma(Qs[r * D + c], KVs[kk * D + c], dot); }
        s = dot * p.scale;
#if ${HAS_MASK}
        if (row < p.Sq) {
          if (!keep(b, row, key)) { s = MASKED; }
        }
#endif
      }
      Ss[r * KB + kk] = s;
    }
    workgroupBarrier();
    for (var e = li; e < KB * DV; e += NT) {
      let kr = k0 + e / DV;
      var val = 0.0;
      if (kr < p.Sk) { val = f32(V[vBase + kr * DV + e % DV]); }
      KVs[e] = val;
    }
    workgroupBarrier();
    // Online softmax: rescale what was accumulated to the new running max.
    let kn = min(KB, p.Sk - k0);
    var tmax = NONE;
    for (var kk = 0u; kk < kn; kk++) { tmax = max(tmax, Ss[r * KB + kk]); }
    let mnew = max(m, tmax);
    let alpha = exp(m - mnew);
    l *= alpha;
    for (var c = 0u; c < DVT; c++) { acc[c] *= alpha; }
    for (var kk = 0u; kk < kn; kk++) {
      let pr = exp(Ss[r * KB + kk] - mnew);
      l += pr;
      for (var c = 0u; c < DVT; c++) {
        let col = t4 + 4u * c;
        if (col < DV) { acc[c] = fma(pr, KVs[kk * DV + col], acc[c]); }
      }
    }
    m = mnew;
  }
  if (row < p.Sq) {
    let ob = (bh * p.Sq + row) * DV;
    for (var c = 0u; c < DVT; c++) {
      let col = t4 + 4u * c;
      if (col < DV) { O[ob + col] = T(acc[c] / l); }
    }
    // max and sum kept apart: m + log(l) would lose log(l) next to a masked −1e9 max.
    if (t4 == 0u) {
      stats[2u * (bh * p.Sq + row)] = m;
      stats[2u * (bh * p.Sq + row) + 1u] = l;
    }
  }
}

#elif ${FWD_REG}
// FWD for CPU adapters: no workgroup memory, no barriers. One lane per query row (its q row in
// registers); every lane walks the same keys, so K and V are read at workgroup-uniform
// addresses; online softmax one key at a time. REG_BODY: generated in attention.ts.
@group(0) @binding(1) var<storage, read> Q: array<T>;
@group(0) @binding(2) var<storage, read> K: array<T>;
@group(0) @binding(3) var<storage, read> V: array<T>;
@group(0) @binding(4) var<storage, read_write> O: array<T>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;   // [BH*Sq][2]: row max, Σ exp(s − max)
const NONE: f32 = -3.0e38;
const RWG: u32 = ${RWG}u;

@compute @workgroup_size(RWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.y;
  let b = bh / p.H;
  let row = wid.x * RWG + li;
  let qRow = min(row, p.Sq - 1u);
  let qb = (bh * p.Sq + qRow) * D;
  let kBase = bh * p.Sk * D;
  let vBase = bh * p.Sk * DV;
${REG_BODY}
}

#elif ${PROBS_REG}
// PROBS for CPU adapters: one lane per query row, keys walked uniformly (K at uniform
// addresses); the same dot-product order as FWD_REG.
@group(0) @binding(1) var<storage, read> Q: array<T>;
@group(0) @binding(2) var<storage, read> K: array<T>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> P: array<T>;   // [BH, Sq, Sk]
const RWG: u32 = ${RWG}u;

@compute @workgroup_size(RWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.y;
  let b = bh / p.H;
  let row = wid.x * RWG + li;
  let qRow = min(row, p.Sq - 1u);
  let qb = (bh * p.Sq + qRow) * D;
  let kBase = bh * p.Sk * D;
${REG_BODY}
}

#elif ${PROBS}
@group(0) @binding(1) var<storage, read> Q: array<T>;
@group(0) @binding(2) var<storage, read> K: array<T>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> P: array<T>;   // [BH, Sq, Sk]

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.BH * p.Sq * p.Sk) { return; }
  let j = idx % p.Sk;
  let i = (idx / p.Sk) % p.Sq;
  let bh = idx / (p.Sk * p.Sq);
  let qb = (bh * p.Sq + i) * D;
  let kb = (bh * p.Sk + j) * D;
  // Same summation order as FWD, so P matches the normalisation it computed.
  var dot = 0.0;
  for (var c = 0u; c < D; c++) { dot = fma(f32(Q[qb + c]), f32(K[kb + c]), dot); }
  var s = dot * p.scale;
#if ${HAS_MASK}
  if (!keep(bh / p.H, i, j)) { s = MASKED; }
#endif
  let sr = 2u * (bh * p.Sq + i);
  P[idx] = T(exp(s - stats[sr]) / stats[sr + 1u]);
}

#elif ${ONE_Q}
// One query row per head (decoding steps): one workgroup per (batch, head). Lanes stride over
// the keys for the scores (kept in workgroup memory), every lane then takes the row max and
// sum, the scores become probabilities, and lanes stride over the output columns. Writes the
// same row statistics as FWD (max, Σ exp(s − max)), and P when WRITE_P.
@group(0) @binding(1) var<storage, read> Q: array<T>;
@group(0) @binding(2) var<storage, read> K: array<T>;
@group(0) @binding(3) var<storage, read> V: array<T>;
@group(0) @binding(4) var<storage, read_write> O: array<T>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
#if ${WRITE_P}
@group(0) @binding(${P_BINDING}) var<storage, read_write> P: array<T>;   // [BH, 1, Sk]
#endif
const OWG: u32 = ${OWG}u;
const NONE: f32 = -3.0e38;
var<workgroup> S: array<f32, ${SKP}>;

@compute @workgroup_size(OWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bh = wid.x + wid.y * 65535u;
  if (bh >= p.BH) { return; }
  let qb = bh * D;
  let kBase = bh * p.Sk * D;
  let vBase = bh * p.Sk * DV;
  for (var key = li; key < p.Sk; key += OWG) {
    let kb = kBase + key * D;
    var dot = 0.0;
    for (var c = 0u; c < D; c++) { dot = fma(f32(Q[qb + c]), f32(K[kb + c]), dot); }
    var s = dot * p.scale;
#if ${HAS_MASK}
    if (!keep(bh / p.H, 0u, key)) { s = MASKED; }
#endif
    S[key] = s;
  }
  workgroupBarrier();
  var m = NONE;
  for (var key = 0u; key < p.Sk; key++) { m = max(m, S[key]); }
  var l = 0.0;
  for (var key = 0u; key < p.Sk; key++) { l += exp(S[key] - m); }
  workgroupBarrier();
  for (var key = li; key < p.Sk; key += OWG) {
    let pr = exp(S[key] - m) / l;
    S[key] = pr;
#if ${WRITE_P}
    P[bh * p.Sk + key] = T(pr);
#endif
  }
  workgroupBarrier();
  for (var c = li; c < DV; c += OWG) {
    var o = 0.0;
    for (var key = 0u; key < p.Sk; key++) { o = fma(S[key], f32(V[vBase + key * DV + c]), o); }
    O[bh * DV + c] = T(o);
  }
  if (li == 0u) {
    stats[2u * bh] = m;
    stats[2u * bh + 1u] = l;
  }
}

#elif ${SM_BWD}
@group(0) @binding(1) var<storage, read> P: array<T>;
@group(0) @binding(2) var<storage, read> dP: array<T>;
@group(0) @binding(3) var<storage, read_write> dS: array<T>;

// One thread per query row.
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let rowId = flat_id(gid, nwg);
  if (rowId >= p.BH * p.Sq) { return; }
  let base = rowId * p.Sk;
  var dsum = 0.0;
  for (var j = 0u; j < p.Sk; j++) { dsum = fma(f32(P[base + j]), f32(dP[base + j]), dsum); }
#if ${HAS_MASK}
  let i = rowId % p.Sq;
  let b = rowId / p.Sq / p.H;
#endif
  for (var j = 0u; j < p.Sk; j++) {
    var g = p.scale * f32(P[base + j]) * (f32(dP[base + j]) - dsum);
#if ${HAS_MASK}
    // A masked score is a constant: no gradient (matters only for a fully masked row).
    if (!keep(b, i, j)) { g = 0.0; }
#endif
    dS[base + j] = T(g);
  }
}
#endif
