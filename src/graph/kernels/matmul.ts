// Kernel family `matmul` (shaders/matmul.wgsl): its uniform schema, configuration type, the
// hand-picked configuration, the candidates the tuner times, and the REGISTER body emitter.
import type { DeviceProfile } from '../../gpu/profile.ts';
import type { KernelRef } from '../../gpu/pipelines.ts';
import { kernelOverride } from './overrides.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { uniformSchema } from './uniforms.ts';
import { grid1d } from './grid.ts';

export const matmulParams = uniformSchema('matmul', {
  M: 'u32', N: 'u32', K: 'u32', batch: 'u32',
  // Per-batch element strides (0 = broadcast).
  strideA: 'u32', strideB: 'u32', strideC: 'u32',
  // C's row stride and first element (a product written into columns of a wider C: the conv
  // family's matmul kind stores each chunk of output pixels in place).
  ldC: 'u32', offC: 'u32',
  // A's first element (the conv weight gradient's product reads a chunk of dYᵀ's rows).
  offA: 'u32',
});

/**
 * Per-window uniforms of the WINDOW kernel: C[.., M, N] (columns nBase … nBase+Nc of it) from A
 * packed [.., M, 4·K4] (vec4 along k) and a uniform window of Nc rows of Bᵀ [N, 4·K4].
 */
export const matmulWindowParams = uniformSchema('matmul_window', {
  // K4: vec4s of k this dispatch sums; KA4: A's row length in vec4s, kBase4 this dispatch's
  // first vec4 of it; WR4: the window's row length in vec4s; acc: 1 adds to C (a later chunk
  // of K), 0 stores (with the bias).
  M: 'u32', N: 'u32', K4: 'u32', KA4: 'u32', kBase4: 'u32', WR4: 'u32', acc: 'u32', Nc: 'u32', nBase: 'u32',
  // vec4 offset of A's first batch and per-batch vec4 stride (wid.z); same for C in elements.
  baseA4: 'u32', strideA4: 'u32', baseC: 'u32', strideC: 'u32',
  // P > 0: C is stored as [M / P, N, P] (NCHW: rows are an image's P pixels; conv2d), else [M, N].
  P: 'u32',
});

/** Repacking for the WINDOW kernel: rows of [R, K] (or columns of [K, R]) into windows of Nc rows of Kp. */
export const matmulPackParams = uniformSchema('matmul_pack', {
  // Window w, chunk q: rows w·Nc … of the source, columns q·Kc … (Kc per window row).
  R: 'u32', K: 'u32', Kc: 'u32', nChunks: 'u32', Nc: 'u32', nWin: 'u32', WS: 'u32', total: 'u32',
  // Source element (r, k) at r·K + k, or at k·R + r (colsFirst); per-batch source stride R·K.
  colsFirst: 'u32',
});

/** Kernel configuration (see shaders/matmul.wgsl): REGISTER for CPU adapters, else TILED; WINDOW reads B through uniform windows. */
export interface MatmulTiles {
  kind: 'register' | 'tiled' | 'window';
  /** TILED: C tile per workgroup and K step. */
  TM: number;
  TN: number;
  BK: number;
  /** Rows × columns of C per invocation (REGISTER: RM per lane, RN per workgroup). */
  RM: number;
  RN: number;
  /** REGISTER: invocations per workgroup. */
  WG: number;
  /**
   * REGISTER, A not transposed: A is first copied transposed ([K, M]) into scratch and read as
   * with transA, 4 rows per vec4 load (transposesA). On llvmpipe a lane's scalar loads of
   * rows of A (one gather per row per k) cost more than the copy: see handPicked.
   */
  TA?: boolean;
  /** REGISTER, B transposed: Bᵀ is first copied to [K, N] and read 4 columns per vec4 load (transposesB). */
  TB?: boolean;
}

export interface MatmulGeometry {
  M: number; N: number; K: number; batch: number;
  transA: boolean; transB: boolean; bias: boolean;
  /** The bias is per row of C (conv's output channels as rows: the conv family's matmul kind), not per column. */
  biasRows?: boolean;
  /** Storage types of A and B when not both f32 (f16 variants are other pipelines). */
  types?: [string, string];
  /** C += A·B (the conv weight gradient sums its chunks' products), instead of C = A·B. */
  accumulate?: boolean;
}

const reg = (WG: number, RM: number, RN: number, TA = false, TB = false): MatmulTiles => ({ kind: 'register', TM: 0, TN: 0, BK: 0, RM, RN, WG, ...(TA ? { TA } : {}), ...(TB ? { TB } : {}) });

/** Whether configuration `t` runs `g` from a transposed copy of A (vec4 loads need M % 4 = 0). */
export function transposesA(g: MatmulGeometry, t: MatmulTiles): boolean {
  return t.kind === 'register' && !!t.TA && !g.transA && g.M % 4 === 0 && t.RM % 4 === 0;
}

/** Whether configuration `t` runs `g` from a copy of Bᵀ laid out [K, N] (vec4 loads need N % 4 = 0). */
export function transposesB(g: MatmulGeometry, t: MatmulTiles): boolean {
  return t.kind === 'register' && !!t.TB && g.transB && g.N % 4 === 0 && t.RN % 4 === 0;
}
const win = (WG: number, RM: number, RN: number): MatmulTiles => ({ kind: 'window', TM: 0, TN: 0, BK: 0, RM, RN, WG });
/**
 * WINDOW blocks (lanes × rows per lane × window rows per workgroup), timed on llvmpipe at the
 * bench shapes (square 1024; 1280×2048×512 with Bᵀ; 1280×512×2048), each the fastest on one of
 * them: 8×8×8 (the hand pick), 8×8×16, 8×4×16, 8×4×32. (8×8×32: 256 accumulators, seconds more
 * to compile, never ahead of 8×8×16.)
 */
export const WINDOW_BLOCKS: [number, number, number][] = [[8, 8, 8], [8, 8, 16], [8, 4, 16], [8, 4, 32]];
const tiled = (TM: number, TN: number, BK: number, RM: number, RN: number): MatmulTiles => ({ kind: 'tiled', TM, TN, BK, RM, RN, WG: 0 });

/**
 * Hand-picked tile configuration for an M×N output. REGISTER blocks were tuned on llvmpipe
 * (bench/matmul.ts): a wide uniform column strip (RN) amortises the per-lane A loads; small
 * outputs get smaller blocks so little work is wasted on clamped edges (each distinct block is
 * one more pipeline).
 */
export function matmulTiles(M: number, N: number, kind: 'register' | 'tiled' = 'tiled'): MatmulTiles {
  if (kind === 'register') {
    // Small outputs (tests, tiny heads): a small block compiles fast and wastes little. With
    // 33–64 rows, 8 rows a lane cover them in one workgroup as 4 rows do in two, without the
    // second's A and B loads: 1.13–1.90× on all 7 such products of the tiny and paper configs
    // (10 order-alternating pairs each, llvmpipe; e.g. 64×64×784 with Aᵀ 0.77 → 0.40 ms; the
    // tuner had switched 2–5 of them per bench tune run). Above 64 rows it made no difference
    // (0.96–1.06 on 4 products).
    if (M * N <= 64 * 64) return M > 32 && M <= 64 ? reg(8, 8, 8) : reg(8, 4, 8);
    const block = kernelOverride('matmulRegisterBlock');
    // Few rows (decode steps): 32 rows per workgroup, so little of each strip is padding.
    if (M <= 32 && !block) return reg(8, 4, 16);
    // Mid-size: 8×16 compiles in about a second; the big block (2× the code, several seconds
    // to compile on llvmpipe, cached on disk by Mesa) pays off only where the product is large,
    // and only with ≥ 128 rows: 16 rows × 8 lanes cover 128, so M = 64 left half the lanes'
    // rows as padding (the tuner switched every such class to 8×16, 1.5–1.9×: bench tune).
    if ((M * N < 256 * 256 || M < 128) && !block) return reg(8, 8, 16);
    // Rows that leave a last 128-row workgroup at most half used: 8 rows a lane pad less
    // (M = 192: 256 rows against 192; 784: 896 against 832): on the 6 such products of the tiny
    // and paper configs, 1.00–1.26× and, measured again after the change, 0.99–1.33× (geomean
    // 1.15; order-alternating pairs, llvmpipe); where 128 divides M, 8 rows were 0.86–1.11 of
    // 16 (geomean 0.99 over 14).
    if (M % 128 > 0 && M % 128 <= 64 && !block) return reg(8, 8, 16);
    return { ...reg(8, 16, 16), ...block };
  }
  if (M * N <= 64 * 64) return tiled(32, 32, 16, 4, 4);
  return tiled(64, 64, 16, 4, 4);
}

/** Today's hand-picked choice: REGISTER on software adapters that compile unrolled bodies, else TILED. */
function handPicked(g: MatmulGeometry, profile: DeviceProfile): MatmulTiles {
  const forced = kernelOverride('matmul');
  const kind = forced ?? (profile.software ? 'register' : 'tiled');
  // llvmpipe, f32 products of 256³ and more with A not transposed, each window dispatch doing
  // ≥ 2²³ multiply-adds: the WINDOW kernel, 1.4–2× the register kernel (bench matmul shapes:
  // square 1024, paper 1280×2048×512 with Bᵀ, 1280×512×2048: 17–21 M per dispatch). With fewer
  // rows a dispatch is a few workgroups plus ~0.07 ms of encoding and launch, and it lost
  // 1.5–4.5× to the register kernel (bench tune, the paper config's 64- and 128-row products:
  // 0.3–2 M per dispatch). The tiny model's products (≤ 512×128×64 and the like) ran its
  // training step 7% slower with it (bench trainstep ab), and with A transposed its packing
  // made it no faster (512×2048×1280: 0.39 against 0.45 of the ceiling).
  //
  // Before both: A not transposed, products with ≥ 512 columns, K ≥ 256 and ≥ 2²⁴ multiply-adds
  // run the register kernel from a transposed copy of A (TA): its lanes then read 4 rows per
  // vec4 load instead of one scalar gather per row, and those loads dominate the kernel on
  // llvmpipe. Timed against the WINDOW pick (timeTrialPair / best of alternating runs):
  // square 1024 and 2048 0.31–0.37 → 0.74–0.82 of the FMA ceiling, the paper's X·W
  // (1280×2048×512) 0.40 → 0.71, dY·Wᵀ (1280×512×2048) 0.40 → 0.49; against the register pick
  // on the paper config's 80-row products 1.17–1.32× (80×512×512, 80×1024×512, 80×1536×512).
  // Where N < 512 or K < 256 the copy (and its dispatch) cost more than it saved: 0.25–0.87×
  // on every product of the tiny config and on the paper's narrower ones.
  if (!forced && profile.software && profile.unrolledKernels && !g.transA && g.M % 4 === 0 && g.N >= 512 && g.K >= 256 && g.M * g.N * g.K >= 2 ** 24) {
    return { ...matmulTiles(g.M, g.N, 'register'), TA: true };
  }
  if (!forced && profile.software && profile.unrolledKernels && !g.transA && windowApplies(g) && g.M * g.N * g.K >= 256 ** 3 &&
    windowMacsPerDispatch(g, win(8, 8, 8)) >= 2 ** 23) return win(8, 8, 8);
  return matmulTiles(g.M, g.N, kind);
}

/**
 * Candidates for a geometry: register blocks around the hand-picked ones and GPU tiles. On
 * software adapters the tiled kernels (workgroup memory + barriers) are 3–10× slower, so only
 * the hand-picked one is kept as a reference point; blocks larger than the output are pruned.
 */
function candidates(g: MatmulGeometry, profile: DeviceProfile): MatmulTiles[] {
  const out: MatmulTiles[] = [];
  // (8×8×32 was dropped: it compiled in ~25 s on llvmpipe and never won.)
  const regs: [number, number, number][] = [[8, 4, 8], [8, 4, 16], [8, 8, 8], [8, 8, 16], [8, 16, 8], [8, 16, 16], [16, 8, 16]];
  // Each block is one more pipeline per operand layout (seconds each on llvmpipe): blocks over
  // 128 accumulators are timed only where the product is big enough to use them.
  const tiles: [number, number, number, number, number][] = [[32, 32, 16, 4, 4], [64, 64, 16, 4, 4], [64, 64, 8, 8, 8], [32, 64, 16, 4, 4], [64, 32, 16, 4, 4], [128, 64, 8, 8, 8]];
  if (profile.unrolledKernels || kernelOverride('matmul') === 'register') {
    for (const [WG, RM, RN] of regs) {
      // A block much taller or wider than the output only computes clamped padding.
      if (WG * RM > 2 * Math.max(g.M, 32) || RN > 2 * Math.max(g.N, 8)) continue;
      // 256 accumulators: seconds to compile on llvmpipe; worth timing only for big products.
      if (RM * RN > 128 && g.M * g.N * g.K < 128 * 128 * 128) continue;
      if (RM * RN === 128 && g.M * g.N < 64 * 64) continue;
      out.push(reg(WG, RM, RN));
      // Operands transposed into scratch first (vec4 loads of 4 rows of A / 4 columns of B):
      // the copy pays only in products this big (see handPicked: every product of the tiny
      // config, N ≤ 288 or K ≤ 288, ran 0.25–0.87× with it), blocks of ≥ 128 accumulators.
      // (Each is another pipeline to compile: seconds of the tuning budget on llvmpipe.)
      if (RM * RN < 128 || g.M * g.N * g.K < 128 ** 3 || g.N < 256 || g.K < 256) continue;
      const ta = !g.transA && g.M % 4 === 0;
      const tb = g.transB && g.N % 4 === 0 && g.M >= 256;
      if (ta) out.push(reg(WG, RM, RN, true));
      if (tb) out.push(reg(WG, RM, RN, ta, true));
    }
  }
  // Uniform windows of B (shaders/matmul.wgsl WINDOW): f32 only (uniform arrays of f16 vec4
  // would need a 16-byte stride), and only where a window holds at least one strip of RN rows.
  // Below 128³ the extra dispatches (the pack, one per window) cost more than the loads save.
  if ((profile.unrolledKernels || kernelOverride('matmul') === 'register') && windowApplies(g) && g.M * g.N * g.K >= 128 ** 3) {
    for (const [WG, RM, RN] of WINDOW_BLOCKS) {
      if (WG * RM <= 2 * Math.max(g.M, 32) && RN <= 2 * Math.max(g.N, 8)) out.push(win(WG, RM, RN));
    }
  }
  if (profile.software) out.push(matmulTiles(g.M, g.N, 'tiled'));
  else for (const [TM, TN, BK, RM, RN] of tiles) if (TM <= 2 * Math.max(g.M, 32) && TN <= 2 * Math.max(g.N, 32)) out.push(tiled(TM, TN, BK, RM, RN));
  const hand = handPicked(g, profile);
  if (!out.some((c) => configKey(c) === configKey(hand))) out.unshift(hand);
  return out;
}

function configKey(t: MatmulTiles): string {
  if (t.kind === 'window') return `window:${t.WG}x${t.RM}x${t.RN}`;
  return t.kind === 'register' ? `register:${t.WG}x${t.RM}x${t.RN}${t.TA ? '/tA' : ''}${t.TB ? '/tB' : ''}` : `tiled:${t.TM}x${t.TN}x${t.BK}/${t.RM}x${t.RN}`;
}

function parseConfig(s: string): MatmulTiles | null {
  let m = /^register:(\d+)x(\d+)x(\d+)(\/tA)?(\/tB)?$/.exec(s);
  if (m) {
    const [WG, RM, RN] = m.slice(1, 4).map(Number);
    return RM % 4 === 0 && RN % 4 === 0 && WG > 0 ? reg(WG, RM, RN, !!m[4], !!m[5]) : null;
  }
  m = /^window:(\d+)x(\d+)x(\d+)$/.exec(s);
  if (m) {
    const [WG, RM, RN] = m.slice(1).map(Number);
    return WINDOW_BLOCKS.some(([w, r, n]) => w === WG && r === RM && n === RN) ? win(WG, RM, RN) : null;
  }
  m = /^tiled:(\d+)x(\d+)x(\d+)\/(\d+)x(\d+)$/.exec(s);
  if (!m) return null;
  const [TM, TN, BK, RM, RN] = m.slice(1).map(Number);
  return TM % RM === 0 && TN % RN === 0 && BK > 0 ? tiled(TM, TN, BK, RM, RN) : null;
}

export const matmulFamily: KernelFamily<MatmulGeometry, MatmulTiles> = {
  name: 'matmul',
  bucket: (g) => `${pow2Bucket(g.M)}x${pow2Bucket(g.N)}x${pow2Bucket(g.K)}b${pow2Bucket(g.batch)}${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'}${g.bias ? '+b' : ''}${g.types ? `:${g.types.join('')}` : ''}`,
  handPicked,
  candidates,
  configKey,
  parseConfig,
  forced: () => (kernelOverride('matmul') !== undefined || kernelOverride('matmulRegisterBlock') !== undefined),
};

/**
 * The fully unrolled body of the REGISTER kernel: RM×RN scalar accumulators, the B row of
 * the workgroup's column strip loaded once per k at uniform addresses, A per lane (vec4 when
 * `av`). Names: c{i}_{j} accumulators, r{i} rows, ao{i} A offsets, bo{j} B offsets. Options:
 * `kExtent`, the WGSL expression bounding k (grouped expert products reduce over a segment);
 * `rowStrideC`, C's row stride (matmul: p.ldC); `accumulate`, C += A·B.
 */
export function registerBody(
  t: MatmulTiles, transA: boolean, transB: boolean, hasBias: boolean | 'rows', av: boolean, bv: boolean,
  opts: { kExtent?: string; rowStrideC?: string; accumulate?: boolean } = {},
): string {
  const { RM, RN } = t;
  const { kExtent = 'p.K', rowStrideC = 'p.N', accumulate = false } = opts;
  const L: string[] = [];
  for (let i = 0; i < RM; i++) L.push(`  let r${i} = m4 + ${Math.floor(i / 4) * 4}u * WG + ${i % 4}u;`);
  // A offsets (rows clamped so edge lanes read valid memory; their results are not stored).
  if (av) {
    if (!transA) throw new Error('registerBody: vec4 A loads are for transA (4 rows per load)');
    for (let g = 0; g < RM / 4; g++) L.push(`  let ag${g} = (baseA + min(r${4 * g}, p.M - 4u)) / 4u;`);
    L.push('  let M4 = p.M / 4u;');
  } else {
    for (let i = 0; i < RM; i++) L.push(`  let ao${i} = baseA + min(r${i}, p.M - 1u)${transA ? '' : ' * p.K'};`);
  }
  if (bv) {
    if (transB) throw new Error('registerBody: vec4 B loads are for B without transB (4 columns per load)');
    for (let j4 = 0; j4 < RN / 4; j4++) L.push(`  let bq${j4} = (baseB + min(n0 + ${4 * j4}u, p.N - 4u)) / 4u;`);
    L.push('  let N4 = p.N / 4u;');
  } else {
    for (let j = 0; j < RN; j++) L.push(`  let bo${j} = baseB + min(n0 + ${j}u, p.N - 1u)${transB ? ' * p.K' : ''};`);
  }
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`  var c${i}_${j}: f32 = 0.0;`);
  // One k per iteration: the B row segment at uniform addresses, A per lane, then RM×RN fmas.
  // (Bigger iterations let LLVM hoist every product ahead of the adds and spill them all.)
  L.push(`  for (var k = 0u; k < ${kExtent}; k++) {`);
  if (av) for (let g = 0; g < RM / 4; g++) L.push(`    let a${g} = vec4<f32>(A[ag${g} + k * M4]);`);
  else for (let i = 0; i < RM; i++) L.push(`    let a${i} = f32(A[ao${i} + k${transA ? ' * p.M' : ''}]);`);
  const comp = ['x', 'y', 'z', 'w'];
  const aOf = (i: number) => (av ? `a${Math.floor(i / 4)}.${comp[i % 4]}` : `a${i}`);
  if (bv) {
    L.push('    let kq = k * N4;');
    for (let j4 = 0; j4 < RN / 4; j4++) {
      L.push(`    let bv${j4} = vec4<f32>(B[bq${j4} + kq]);`);
      for (let c = 0; c < 4; c++) L.push(`    let b${4 * j4 + c} = bv${j4}.${comp[c]};`);
    }
  } else {
    L.push(`    let kb = k${transB ? '' : ' * p.N'};`);
    for (let j = 0; j < RN; j++) L.push(`    let b${j} = f32(B[bo${j} + kb]);`);
  }
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`    c${i}_${j} = fma(${aOf(i)}, b${j}, c${i}_${j});`);
  L.push('  }');
  // (bias per column as bias{j}, or with 'rows' per row as rowBias)
  if (hasBias !== 'rows') for (let j = 0; j < RN; j++) L.push(`  let bias${j} = ${hasBias ? `f32(bias[min(n0 + ${j}u, p.N - 1u)])` : '0.0'};`);
  for (let i = 0; i < RM; i++) {
    L.push(`  if (r${i} < p.M) {`);
    L.push(`    let o = baseC + r${i} * ${rowStrideC} + n0;`);
    if (hasBias === 'rows') L.push(`    let rowBias = f32(bias[r${i}]);`);
    for (let j = 0; j < RN; j++) L.push(`    if (n0 + ${j}u < p.N) { C[o + ${j}u] = T(${accumulate ? `f32(C[o + ${j}u]) + ` : ''}c${i}_${j} + ${hasBias === 'rows' ? 'rowBias' : `bias${j}`}); }`);
    L.push('  }');
  }
  return L.join('\n');
}

/** Generated bodies by configuration (encoding runs every step; the text never changes). */
const bodies = new Map<string, string>();
function bodyOf(t: MatmulTiles, transA: boolean, transB: boolean, bias: boolean | 'rows', av: boolean, bv: boolean, accumulate: boolean): string {
  const key = `${t.WG},${t.RM},${t.RN}:${transA}${transB}${bias}${av}${bv}${accumulate}`;
  let body = bodies.get(key);
  if (body === undefined) bodies.set(key, (body = registerBody(t, transA, transB, bias, av, bv, { rowStrideC: 'p.ldC', accumulate })));
  return body;
}

/** The pipeline and grid of one matmul dispatch with configuration `t`. */
export function matmulLaunch(g: MatmulGeometry, t: MatmulTiles): { kernel: KernelRef; workgroups: [number, number, number] } {
  const { transA, transB, bias } = g;
  const base = { TRANS_A: transA, TRANS_B: transB, HAS_BIAS: bias, TM: t.TM, TN: t.TN, BK: t.BK, RM: t.RM, RN: t.RN, WG: t.WG };
  if (g.accumulate && t.kind !== 'register') throw new Error(`matmulLaunch: C += A·B is a register-kernel form, not ${t.kind}`);
  if (t.kind === 'register') {
    // vec4 loads: A with transA across 4 rows (M % 4), B without transB across 4 columns
    // (N % 4). (vec4 along k was tried: the 4-k loop body it needs makes LLVM hoist all
    // products and spill them; one k per iteration with scalar loads ran ~1.6× faster.)
    const av = transA && g.M % 4 === 0 && t.RM % 4 === 0;
    const bv = !transB && g.N % 4 === 0 && t.RN % 4 === 0;
    return {
      // (ACCUM keys the pipeline: it changes only the generated body)
      kernel: { family: 'matmul', defs: { REGISTER: true, WINDOW: false, PACK: false, NW: 0, AV: av, BV: bv, BIAS_ROWS: !!(bias && g.biasRows), ACCUM: !!g.accumulate, ...base }, gen: { PARAMS: matmulParams.wgsl, REG_BODY: bodyOf(t, transA, transB, bias && g.biasRows ? 'rows' : bias, av, bv, !!g.accumulate) } },
      workgroups: [Math.ceil(g.N / t.RN), Math.ceil(g.M / (t.WG * t.RM)), g.batch],
    };
  }
  return {
    kernel: { family: 'matmul', defs: { REGISTER: false, WINDOW: false, PACK: false, NW: 0, AV: false, BV: false, BIAS_ROWS: false, ...base }, gen: { PARAMS: matmulParams.wgsl, REG_BODY: '' } },
    workgroups: [Math.ceil(g.N / t.TN), Math.ceil(g.M / t.TM), g.batch],
  };
}


// ---- WINDOW: B through 64 KiB uniform windows -----------------------------------------------
// On llvmpipe every storage-buffer load is a per-lane gather with a bounds check per lane (the
// same for an address every lane shares), while a uniform-buffer load at a lane-invariant
// address is one scalar load and a broadcast. The WINDOW kernel therefore reads B (as Bᵀ, rows
// of K) from uniform windows of at most 64 KiB (every adapter binds that much), A per lane as
// vec4 along k, and dispatches once per window. Layouts it cannot read directly (transposed A,
// B not transposed, K not a multiple of 4, windows off the 256-byte alignment) are first
// repacked into scratch by the PACK kernel: O(M·K + N·K) copies against O(M·N·K) products.

/** Floats in a 64 KiB uniform window (WebGPU's guaranteed maxUniformBufferBindingSize). */
const WINDOW_FLOATS = 16384;

export interface WindowPlan {
  /** K padded to a multiple of 4 (packed layouts; = K when read directly). */
  Kp: number;
  /** K per window row: all of Kp, or (a window too small for RN rows of Kp) chunks of Kc summed by successive dispatches. */
  Kc: number;
  nChunks: number;
  /** Rows of Bᵀ (columns of C) per window, a multiple of RN unless one window holds all N. */
  Nc: number;
  nWin: number;
  /** Floats per window in the bound layout (the uniform array's length × 4). */
  WS: number;
  /** A is repacked to [.., M, Kp] first (transposed, or K % 4 ≠ 0); B always is, into whole windows. */
  packA: boolean;
}

/**
 * How the WINDOW kernel runs `g` with block `t`. `aPadded`: A is already [.., M, Kp] with zeros
 * past K (conv2d's im2col), so it is never repacked. B is always repacked into whole 64 KiB
 * windows: one uniform array length for every geometry, so each block is one pipeline (a
 * window sized to the geometry made every geometry class compile its own, 10–20 s of tuning
 * per class on llvmpipe), and every window offset is aligned.
 */
export function windowPlan(g: MatmulGeometry, t: MatmulTiles, aPadded = false): WindowPlan {
  const Kp = Math.ceil(g.K / 4) * 4;
  const perWin = Math.floor(WINDOW_FLOATS / Kp);
  const packA = !aPadded && (g.transA || g.K % 4 !== 0);
  const common = { Kp, WS: WINDOW_FLOATS, packA };
  if (perWin < t.RN) {
    // K too long for RN rows of it in one window: windows of RN rows × Kc, chunk q of K in the
    // q-th dispatch of a strip, which adds to C what the earlier ones stored.
    const Kc = Math.floor(WINDOW_FLOATS / t.RN / 4) * 4;
    return { ...common, Kc, nChunks: Math.ceil(Kp / Kc), Nc: t.RN, nWin: Math.ceil(g.N / t.RN) };
  }
  // Window w = rows w·Nc … of Bᵀ (zero rows past N).
  const Nc = g.N <= perWin ? g.N : Math.floor(perWin / t.RN) * t.RN;
  return { ...common, Kc: Kp, nChunks: 1, Nc, nWin: Math.ceil(g.N / Nc) };
}

/** Multiply-adds of one WINDOW dispatch (one window of Nc rows of Bᵀ, one chunk of K, all M rows). */
export function windowMacsPerDispatch(g: MatmulGeometry, t: MatmulTiles): number {
  const p = windowPlan(g, t);
  return g.M * Math.min(p.Nc, g.N) * Math.min(p.Kc, g.K);
}

export function windowApplies(g: MatmulGeometry): boolean {
  return !g.types;
}

/**
 * The WINDOW kernel's body: lane l of the workgroup owns rows m0 + i·WG + l (i < RM), the
 * workgroup a strip of RN window rows; per 4 k: RM per-lane vec4 loads of A, RN uniform vec4
 * loads of the window, RM·RN·4 fmas in k order (the same order as the other kernels).
 */
export function windowBody(t: MatmulTiles, hasBias: boolean): string {
  const { RM, RN } = t;
  const L: string[] = [];
  const comp = ['x', 'y', 'z', 'w'];
  L.push('  let j0 = wid.x * ' + RN + 'u;');
  L.push(`  let m0 = wid.y * ${t.WG * RM}u;`);
  L.push('  let aB = p.baseA4 + wid.z * p.strideA4;');
  L.push('  let cB = p.baseC + wid.z * p.strideC;');
  for (let i = 0; i < RM; i++) L.push(`  let r${i} = m0 + ${i * t.WG}u + lid.x;\n  let ao${i} = aB + min(r${i}, p.M - 1u) * p.KA4 + p.kBase4;`);
  for (let j = 0; j < RN; j++) L.push(`  let bo${j} = min(j0 + ${j}u, p.Nc - 1u) * p.WR4;`);
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`  var c${i}_${j}: f32 = 0.0;`);
  L.push('  for (var k4 = 0u; k4 < p.K4; k4++) {');
  for (let i = 0; i < RM; i++) L.push(`    let a${i} = vec4<f32>(A[ao${i} + k4]);`);
  for (let j = 0; j < RN; j++) L.push(`    let b${j} = Bw[bo${j} + k4];`);
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) {
    let e = `c${i}_${j}`;
    for (let u = 0; u < 4; u++) e = `fma(a${i}.${comp[u]}, b${j}.${comp[u]}, ${e})`;
    L.push(`    c${i}_${j} = ${e};`);
  }
  L.push('  }');
  for (let j = 0; j < RN; j++) {
    L.push(`  let n${j} = p.nBase + j0 + ${j}u;`);
    L.push(`  let ok${j} = j0 + ${j}u < p.Nc && n${j} < p.N;`);
    L.push(`  let bias${j} = ${hasBias ? `f32(bias[min(n${j}, p.N - 1u)])` : '0.0'};`);
  }
  // A later chunk of K adds to what the earlier chunks stored (the bias came with the first).
  // Row r, column n at o + n·cs: [M, N] (o = r·N, cs = 1) or NCHW (o = image·N·P + pixel, cs = P).
  L.push('  let cs = select(1u, p.P, p.P != 0u);');
  for (let i = 0; i < RM; i++) {
    L.push(`  if (r${i} < p.M) {`);
    L.push(`    let o = cB + select(r${i} * p.N, (r${i} / max(p.P, 1u)) * p.N * p.P + r${i} % max(p.P, 1u), p.P != 0u);`);
    L.push('    if (p.acc != 0u) {');
    for (let j = 0; j < RN; j++) L.push(`      if (ok${j}) { C[o + n${j} * cs] = T(f32(C[o + n${j} * cs]) + c${i}_${j}); }`);
    L.push('    } else {');
    for (let j = 0; j < RN; j++) L.push(`      if (ok${j}) { C[o + n${j} * cs] = T(c${i}_${j} + bias${j}); }`);
    L.push('    }');
    L.push('  }');
  }
  return L.join('\n');
}

const windowBodies = new Map<string, string>();

const packKernel: KernelRef = { family: 'matmul', defs: { REGISTER: false, WINDOW: false, PACK: true, NW: 0, AV: false, BV: false, TRANS_A: false, TRANS_B: false, HAS_BIAS: false, TM: 0, TN: 0, BK: 0, RM: 0, RN: 0, WG: 0 }, gen: { PARAMS: matmulPackParams.wgsl, REG_BODY: '' } };
const packGrid = (total: number): [number, number, number] => [...grid1d(total), 1];

/**
 * The PACK dispatch of a TA or TB configuration: `batch` matrices [cols][K] (A, or B with
 * transB) to [K][cols] (row k gathered from column k of the source).
 */
export function transposeStep(K: number, cols: number, batch: number): { kernel: KernelRef; params: ReturnType<typeof matmulPackParams.pack>; workgroups: [number, number, number] } {
  const total = batch * K * cols;
  return { kernel: packKernel, params: matmulPackParams.pack({ R: K, K: cols, Kc: cols, nChunks: 1, Nc: K, nWin: 1, WS: K * cols, total, colsFirst: 1 }), workgroups: packGrid(total) };
}

/** One dispatch of the WINDOW path, its bindings named by role (the op maps them to tensors and scratch). */
export interface WindowStep {
  kernel: KernelRef;
  params: ReturnType<typeof matmulWindowParams.pack> | ReturnType<typeof matmulPackParams.pack>;
  workgroups: [number, number, number];
  /** 'packA' / 'packB': source operand → scratch; 'window': A (or packed A), a window of packed B, C, bias. */
  role: 'packA' | 'packB' | 'window';
  /** window role: byte range of packed B bound as the uniform window. */
  window?: { offset: number; size: number };
}

/**
 * The dispatches of `g` with WINDOW block `t`: the packs (if any), then one dispatch per window
 * (per B batch when B is batched; A and C advance per wid.z when B is shared).
 */
export function windowSteps(g: MatmulGeometry, t: MatmulTiles, p: WindowPlan, batchA: number, batchB: number, nchwP = 0): WindowStep[] {
  const steps: WindowStep[] = [];
  const { M, N, K, batch } = g;
  const { Kp, Kc, nChunks, Nc, nWin, WS } = p;
  if (p.packA) {
    const total = batchA * M * Kp;
    steps.push({ role: 'packA', kernel: packKernel, params: matmulPackParams.pack({ R: M, K, Kc: Kp, nChunks: 1, Nc: M, nWin: 1, WS: M * Kp, total, colsFirst: g.transA ? 1 : 0 }), workgroups: packGrid(total) });
  }
  const totalB = batchB * nWin * nChunks * WS;
  steps.push({ role: 'packB', kernel: packKernel, params: matmulPackParams.pack({ R: N, K, Kc, nChunks, Nc, nWin, WS, total: totalB, colsFirst: g.transB ? 0 : 1 }), workgroups: packGrid(totalB) });
  const bodyKey = `${t.WG},${t.RM},${t.RN}:${g.bias}`;
  let body = windowBodies.get(bodyKey);
  if (body === undefined) windowBodies.set(bodyKey, (body = windowBody(t, g.bias)));
  const kernel: KernelRef = {
    family: 'matmul',
    defs: { REGISTER: false, WINDOW: true, PACK: false, AV: false, BV: false, TRANS_A: false, TRANS_B: false, HAS_BIAS: g.bias, TM: 0, TN: 0, BK: 0, RM: t.RM, RN: t.RN, WG: t.WG, NW: WINDOW_FLOATS / 4 },
    gen: { PARAMS: matmulWindowParams.wgsl, REG_BODY: body },
  };
  const KA4 = Kp / 4;
  const strideA4 = batchA === 1 ? 0 : M * KA4;
  const shared = batchB === 1;
  for (let b = 0; b < (shared ? 1 : batch); b++) {
    for (let w = 0; w < nWin; w++) {
      const nBase = w * Nc;
      for (let q = 0; q < nChunks; q++) {
        const offsetFloats = ((b * nWin + w) * nChunks + q) * WS;
        steps.push({
          role: 'window', kernel,
          params: matmulWindowParams.pack({
            M, N, K4: Math.min(Kc, Kp - q * Kc) / 4, KA4, kBase4: (q * Kc) / 4, WR4: Kc / 4, acc: q > 0 ? 1 : 0, Nc, nBase,
            baseA4: shared ? 0 : b * strideA4, strideA4: shared ? strideA4 : 0, baseC: shared ? 0 : b * M * N, strideC: shared ? M * N : 0, P: nchwP,
          }),
          workgroups: [Math.ceil(Nc / t.RN), Math.ceil(M / (t.WG * t.RM)), shared ? batch : 1],
          window: { offset: offsetFloats * 4, size: WS * 4 },
        });
      }
    }
  }
  return steps;
}
