// Batched matmul C[b] = op(A[b]) · op(B[b]) (+ bias[n]), op = optional transpose.
// Any M, N, K (edges are bounds-checked). Two kernels (src/graph/ops/matmul.ts picks one):
//
// REGISTER (CPU adapters such as llvmpipe, which run a workgroup's invocations as SIMD lanes):
//   no workgroup memory, no barriers. Each invocation owns RM rows of C; the workgroup owns a
//   strip of RN columns, so every B element is loaded at a workgroup-uniform address while A
//   is loaded per lane. On llvmpipe every load instruction has a large fixed cost (~20 cycles,
//   uniform or per-lane alike; measured 2026-11 with a probe), so big RM×RN register blocks
//   amortise the loads over many FMAs, and vec4 loads (AV, BV) cut their number; the body is
//   generated fully unrolled in matmul.ts (REG_BODY) so the accumulators stay in registers
//   instead of a dynamically indexed array. AV: A is read as vec4 (4 k's, or with transA 4
//   rows, per load), needing K % 4 == 0 (or M % 4 == 0 with transA). BV: B is read as vec4
//   (4 columns, N % 4 == 0; or with transB 4 k's, K % 4 == 0): a quarter of the offsets.
//
// TILED (GPUs): each workgroup computes a TM×TN tile of C with (TM/RM)×(TN/RN) threads, each
//   thread an RM×RN register block; K advances BK at a time through workgroup memory.
//
// WINDOW (CPU adapters, f32): B through 64 KiB uniform windows, which llvmpipe reads with one
//   broadcast load per workgroup instead of a bounds-checked load per lane; PACK repacks
//   operands it cannot read directly. See src/graph/kernels/matmul.ts (windowPlan).
//
// Specialisation: T (element type of A, B, C, bias: f32 | f16; accumulation is f32), REGISTER, WINDOW, PACK, TRANS_A, TRANS_B, HAS_BIAS, BIAS_ROWS (REGISTER: the bias per row of C; its body reads it), ACCUM (REGISTER: C += A·B; only its body differs, the def keys the pipeline), AV, BV (bool); TM, TN, BK, RM, RN, WG,
// NW (u32); generated (src/graph/kernels/matmul.ts): PARAMS (the uniform struct), REG_BODY (empty for TILED and PACK).

#if ${F16}
enable f16;
#endif
// Element type of the float tensors (f32 or f16, from the bound tensors); arithmetic is f32.
alias T = ${T};

${PARAMS}   // M, N, K, batch; strideA/B/C: per-batch element strides (0 = broadcast): src/graph/kernels/matmul.ts

@group(0) @binding(0) var<uniform> p: Params;
#if ${REGISTER}
#if ${AV}
@group(0) @binding(1) var<storage, read> A: array<vec4<T>>;
#else
@group(0) @binding(1) var<storage, read> A: array<T>;
#endif
#if ${BV}
@group(0) @binding(2) var<storage, read> B: array<vec4<T>>;
#else
@group(0) @binding(2) var<storage, read> B: array<T>;
#endif
@group(0) @binding(3) var<storage, read_write> C: array<T>;
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif

const WG: u32 = ${WG}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let baseA = p.offA + wid.z * p.strideA;
  let baseB = wid.z * p.strideB;
  let baseC = p.offC + wid.z * p.strideC;
  let n0 = wid.x * ${RN}u;
  // Rows of this invocation: groups of 4 consecutive rows, group g at m4 + g*4*WG.
  let m4 = wid.y * (WG * ${RM}u) + 4u * lid.x;
${REG_BODY}
}
#elif ${WINDOW}
// WINDOW (f32): B read through a uniform window of NW vec4s (64 KiB, a whole window of the
// packed copy): Nc rows of Bᵀ (WR4 vec4s each, all of K or one chunk of it); A packed [.., M, 4·KA4] read per lane as vec4 along k; one dispatch
// per window (and chunk). Body: windowBody in src/graph/kernels/matmul.ts.
@group(0) @binding(1) var<storage, read> A: array<vec4<T>>;
@group(0) @binding(2) var<uniform> Bw: array<vec4<f32>, ${NW}>;
@group(0) @binding(3) var<storage, read_write> C: array<T>;
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif

const WG: u32 = ${WG}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${REG_BODY}
}
#elif ${PACK}
// PACK: out[b][w][q][r][k] (r < Nc rows of window w, k < Kc columns of chunk q) = source element
// (w·Nc + r, q·Kc + k) of batch b, 0 past R rows, K columns or Nc·Kc floats (windows padded to WS).
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;

#include "lib/grid"

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = flat_id(gid, nwg);
  if (o >= p.total) { return; }
  let perBatch = p.nWin * p.nChunks * p.WS;
  let b = o / perBatch;
  let wq = (o % perBatch) / p.WS;
  let w = wq / p.nChunks;
  let q = wq % p.nChunks;
  let e = o % p.WS;
  let rl = e / p.Kc;
  let k = q * p.Kc + e % p.Kc;
  let r = w * p.Nc + rl;
  var v = T(0.0);
  if (rl < p.Nc && r < p.R && k < p.K) {
    let s = b * p.R * p.K;
    if (p.colsFirst != 0u) { v = src[s + k * p.R + r]; } else { v = src[s + r * p.K + k]; }
  }
  dst[o] = v;
}
#else
@group(0) @binding(1) var<storage, read> A: array<T>;
@group(0) @binding(2) var<storage, read> B: array<T>;
@group(0) @binding(3) var<storage, read_write> C: array<T>;
#if ${HAS_BIAS}
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif

#include "lib/gemm_tile"   // TM … NT, As, Bs, gemm_tile_fma

fn loadA(base: u32, m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
#if ${TRANS_A}
  return f32(A[base + k * p.M + m]);
#else
  return f32(A[base + m * p.K + k]);
#endif
}

fn loadB(base: u32, k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) { return 0.0; }
#if ${TRANS_B}
  return f32(B[base + n * p.K + k]);
#else
  return f32(B[base + k * p.N + n]);
#endif
}

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let batch = wid.z;
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  let baseA = p.offA + batch * p.strideA;
  let baseB = batch * p.strideB;
  var acc: array<array<f32, RN>, RM>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // Cooperative loads of the A (TM×BK) and B (BK×TN) tiles.
    for (var e = li; e < BK * TM; e += NT) {
#if ${TRANS_A}
      let m = e % TM; let k = e / TM;    // consecutive threads read consecutive m
#else
      let k = e % BK; let m = e / BK;    // consecutive threads read consecutive k
#endif
      As[k * TM + m] = loadA(baseA, m0 + m, k0 + k);
    }
    for (var e = li; e < BK * TN; e += NT) {
#if ${TRANS_B}
      let k = e % BK; let n = e / BK;
#else
      let n = e % TN; let k = e / TN;
#endif
      Bs[k * TN + n] = loadB(baseB, k0 + k, n0 + n);
    }
    workgroupBarrier();
    gemm_tile_fma(lid, &acc);
    workgroupBarrier();
  }
  let baseC = p.offC + batch * p.strideC;
  for (var i = 0u; i < RM; i++) {
    let m = m0 + lid.y + i * TY;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * TX;
      if (n >= p.N) { continue; }
#if ${HAS_BIAS}
      C[baseC + m * p.ldC + n] = T(acc[i][j] + f32(bias[n]));
#else
      C[baseC + m * p.ldC + n] = T(acc[i][j]);
#endif
    }
  }
}
#endif
