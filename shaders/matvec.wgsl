// Products for the few rows of a decoding step (B tokens: one per image and hypothesis,
// typically 1 to 12). Such products read every weight once and do little arithmetic per
// weight, so the kernels are laid out for the weight stream rather than for reuse.
// W is in PyTorch layout [N, K] (out × in); X is [B, K]; Y is [B, N].
//
// Kinds (one flag true):
//   LINEAR       Y[r, o] = Σ_k X[r, k]·W[o, k] (+ bias[o]).
//   EXPERT_UP    for each expert e (workgroup z) that some row routes to (indices [B, k]):
//                H1[e, r, f] = W1[e, f, :]·X[r], H3[e, r, f] = W3[e, f, :]·X[r]. Experts no row
//                selects return at once, so their weights are never read.
//   EXPERT_DOWN  Y[e, r, o] = W2[e, o, :]·H[e, r, :] for the selected experts e.
//   COMBINE      out[r, o] = Σ_j c_rj·Y[indices[r, j], r, o], c_rj = 1 (sum) or weights[r, j].
// Layout (LINEAR / EXPERT_*): the LANES invocations of a workgroup stride along k, so each
//   weight row is read in contiguous runs (coalesced on GPUs; on CPU adapters such as
//   llvmpipe, contiguous per-lane loads stream at ~8-11 GB/s where workgroup-uniform loads
//   manage ~1-2 GB/s). Each lane keeps partial sums for the workgroup's RB rows × RN outputs
//   in registers (generated unrolled: BODY), then they are summed across lanes in a fixed order.
// Specialisation: T (element type of X, W, Y, bias, weights; sums are f32), the kind flags, EXPERT (EXPERT_UP or EXPERT_DOWN), VEC (X, W read as vec4;
// K % 4 == 0), HAS_BIAS, WEIGHTED,
// LANES (8 on CPU adapters: one SIMD vector; 64 on GPUs), RB, RN, NW (weight matrices: 2 for
// EXPERT_UP), KFULL, SUBGROUPS (the cross-lane sums through subgroupAdd; the tuner offers it
// where the device has the feature); generated: PARAMS, BODY.

#if ${F16}
enable f16;
#endif
#if ${SUBGROUPS}
enable subgroups;   // the cross-lane sums through subgroupAdd (a tunable choice)
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // B, N, K, k: src/graph/kernels/matvec.ts
@group(0) @binding(0) var<uniform> p: Params;

#if ${COMBINE}
@group(0) @binding(1) var<storage, read> Y: array<T>;         // [E, B, N]
@group(0) @binding(2) var<storage, read> indices: array<i32>;   // [B, k]
@group(0) @binding(3) var<storage, read_write> out: array<T>; // [B, N]
#if ${WEIGHTED}
@group(0) @binding(4) var<storage, read> weights: array<T>;   // [B, k]
#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.B * p.N) { return; }
  let r = i / p.N;
  let o = i % p.N;
  var acc = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let e = u32(indices[r * p.k + j]);
    let y = f32(Y[(e * p.B + r) * p.N + o]);
#if ${WEIGHTED}
    acc = fma(f32(weights[r * p.k + j]), y, acc);
#else
    acc += y;
#endif
  }
  out[i] = T(acc);
}
#else

#if ${VEC}
alias V = vec4<T>;
alias VF = vec4<f32>;
#else
alias V = T;
alias VF = f32;
#endif
@group(0) @binding(1) var<storage, read> X: array<V>;

#if ${LINEAR}
@group(0) @binding(2) var<storage, read> W: array<V>;
@group(0) @binding(3) var<storage, read_write> Y: array<T>;
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif
#endif

#if ${EXPERT_UP}
@group(0) @binding(2) var<storage, read> W1: array<V>;
@group(0) @binding(3) var<storage, read> W3: array<V>;
@group(0) @binding(4) var<storage, read> indices: array<i32>;
@group(0) @binding(5) var<storage, read_write> H1: array<T>;
@group(0) @binding(6) var<storage, read_write> H3: array<T>;
#endif

#if ${EXPERT_DOWN}
@group(0) @binding(2) var<storage, read> W: array<V>;
@group(0) @binding(3) var<storage, read> indices: array<i32>;
@group(0) @binding(4) var<storage, read_write> Y: array<T>;
#endif

const LANES: u32 = ${LANES}u;
const RB: u32 = ${RB}u;   // rows of X per workgroup
const RN: u32 = ${RN}u;   // outputs per workgroup
const NW: u32 = ${NW}u;   // weight matrices (2 for EXPERT_UP)
var<workgroup> part: array<f32, LANES * RB * RN * NW>;

#if ${EXPERT}
// Whether any row of this workgroup's block r0..r0+RB-1 routes to expert e (uniform: every
// lane reads the same words); a block none of whose rows selects e reads none of its weights.
fn selected(e: u32, r0: u32) -> bool {
  for (var i = r0 * p.k; i < min(r0 + RB, p.B) * p.k; i++) {
    if (u32(indices[i]) == e) { return true; }
  }
  return false;
}
#endif

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = wid.z;
  let r0 = wid.y * RB;
#if ${EXPERT}
  if (!selected(e, r0)) { return; }
#endif
  let t = lid.x;
  let o0 = wid.x * RN;
  let wbase = e * p.N;
#if ${EXPERT_DOWN}
  let xbase = e * p.B;
#else
  let xbase = 0u;
#endif
  // Partial sums of this lane's k's for RB rows × RN outputs (× NW), then across lanes.
${BODY}
  workgroupBarrier();
#if ${SUBGROUPS}
  // Every lane folds: rank r of the n active lanes of its subgroup takes partials r, r + n, …
  // of each sum, then subgroupAdd (WGSL relates subgroups to no lane numbering, so each
  // subgroup folds all LANES partials and ends with every sum); lane q % LANES stores sum q.
  let rank = subgroupExclusiveAdd(1u);
  let n = subgroupAdd(1u);
  for (var q = 0u; q < RB * RN * NW; q++) {
    var f = 0.0;
    for (var l = rank; l < LANES; l += n) { f += part[q * LANES + l]; }
    let s = subgroupAdd(f);
    if (q % LANES == t) { store(q, s, e, r0, o0); }
  }
#else
  // Each lane finishes every LANES-th of the RB·RN·NW sums (there may be more sums than lanes).
  for (var q = t; q < RB * RN * NW; q += LANES) {
    var s = 0.0;
    for (var l = 0u; l < LANES; l++) { s += part[q * LANES + l]; }
    store(q, s, e, r0, o0);
  }
#endif
}

// Sum q of the workgroup (row r0 + i, output o0 + j, weight matrix w) to its output.
fn store(q: u32, s: f32, e: u32, r0: u32, o0: u32) {
  let w = q % NW;
  let j = (q / NW) % RN;
  let i = q / (NW * RN);
  let r = r0 + i;
  let o = o0 + j;
  if (r < p.B && o < p.N) {
#if ${EXPERT_UP}
    if (w == 0u) { H1[(e * p.B + r) * p.N + o] = T(s); } else { H3[(e * p.B + r) * p.N + o] = T(s); }
#elif ${EXPERT_DOWN}
    Y[(e * p.B + r) * p.N + o] = T(s);
#elif ${HAS_BIAS}
    Y[r * p.N + o] = T(s + f32(bias[o]));
#else
    Y[r * p.N + o] = T(s);
#endif
  }
}
#endif
