// Kernel family `matmul` (shaders/matmul.wgsl): its uniform schema, configuration type, the
// hand-picked configuration, the candidates the tuner times, and the REGISTER body emitter.
import type { DeviceProfile } from '../../gpu/profile.ts';
import type { KernelRef } from '../../gpu/pipelines.ts';
import { kernelOverride } from './overrides.ts';
import { type KernelFamily, pow2Bucket } from './catalogue.ts';
import { uniformSchema } from './uniforms.ts';

export const matmulParams = uniformSchema('matmul', {
  M: 'u32', N: 'u32', K: 'u32', batch: 'u32',
  // Per-batch element strides (0 = broadcast).
  strideA: 'u32', strideB: 'u32', strideC: 'u32',
});

/** Kernel configuration (see shaders/matmul.wgsl): REGISTER for CPU adapters, else TILED. */
export interface MatmulTiles {
  kind: 'register' | 'tiled';
  /** TILED: C tile per workgroup and K step. */
  TM: number;
  TN: number;
  BK: number;
  /** Rows × columns of C per invocation (REGISTER: RM per lane, RN per workgroup). */
  RM: number;
  RN: number;
  /** REGISTER: invocations per workgroup. */
  WG: number;
}

export interface MatmulGeometry {
  M: number; N: number; K: number; batch: number;
  transA: boolean; transB: boolean; bias: boolean;
  /** Storage types of A and B when not both f32 (f16 variants are other pipelines). */
  types?: [string, string];
}

const reg = (WG: number, RM: number, RN: number): MatmulTiles => ({ kind: 'register', TM: 0, TN: 0, BK: 0, RM, RN, WG });
const tiled = (TM: number, TN: number, BK: number, RM: number, RN: number): MatmulTiles => ({ kind: 'tiled', TM, TN, BK, RM, RN, WG: 0 });

/**
 * Hand-picked tile configuration for an M×N output. REGISTER blocks were tuned on llvmpipe
 * (bench/matmul.ts): a wide uniform column strip (RN) amortises the per-lane A loads; small
 * outputs get smaller blocks so little work is wasted on clamped edges (each distinct block is
 * one more pipeline).
 */
export function matmulTiles(M: number, N: number, kind: 'register' | 'tiled' = 'tiled'): MatmulTiles {
  if (kind === 'register') {
    // Small outputs (tests, tiny heads): a small block compiles fast and wastes little.
    if (M * N <= 64 * 64) return reg(8, 4, 8);
    const block = kernelOverride('matmulRegisterBlock');
    // Few rows (decode steps): 32 rows per workgroup, so little of each strip is padding.
    if (M <= 32 && !block) return reg(8, 4, 16);
    // Mid-size: 8×16 compiles in about a second; the big block (2× the code, several seconds
    // to compile on llvmpipe, cached on disk by Mesa) pays off only where the product is large,
    // and only with ≥ 128 rows: 16 rows × 8 lanes cover 128, so M = 64 left half the lanes'
    // rows as padding (the tuner switched every such class to 8×16, 1.5–1.9×: bench tune).
    if ((M * N < 256 * 256 || M < 128) && !block) return reg(8, 8, 16);
    return { ...reg(8, 16, 16), ...block };
  }
  if (M * N <= 64 * 64) return tiled(32, 32, 16, 4, 4);
  return tiled(64, 64, 16, 4, 4);
}

/** Today's hand-picked choice: REGISTER on software adapters that compile unrolled bodies, else TILED. */
function handPicked(g: MatmulGeometry, profile: DeviceProfile): MatmulTiles {
  const kind = kernelOverride('matmul') ?? (profile.software ? 'register' : 'tiled');
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
    }
  }
  if (profile.software) out.push(matmulTiles(g.M, g.N, 'tiled'));
  else for (const [TM, TN, BK, RM, RN] of tiles) if (TM <= 2 * Math.max(g.M, 32) && TN <= 2 * Math.max(g.N, 32)) out.push(tiled(TM, TN, BK, RM, RN));
  const hand = handPicked(g, profile);
  if (!out.some((c) => configKey(c) === configKey(hand))) out.unshift(hand);
  return out;
}

function configKey(t: MatmulTiles): string {
  return t.kind === 'register' ? `register:${t.WG}x${t.RM}x${t.RN}` : `tiled:${t.TM}x${t.TN}x${t.BK}/${t.RM}x${t.RN}`;
}

function parseConfig(s: string): MatmulTiles | null {
  let m = /^register:(\d+)x(\d+)x(\d+)$/.exec(s);
  if (m) {
    const [WG, RM, RN] = m.slice(1).map(Number);
    return RM % 4 === 0 && RN % 4 === 0 && WG > 0 ? reg(WG, RM, RN) : null;
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
 * `av`). Names: c{i}_{j} accumulators, r{i} rows, ao{i} A offsets, bo{j} B offsets. `kExtent`:
 * the WGSL expression bounding k (grouped expert products reduce over a segment).
 */
export function registerBody(t: MatmulTiles, transA: boolean, transB: boolean, hasBias: boolean, av: boolean, bv: boolean, kExtent = 'p.K'): string {
  const { RM, RN } = t;
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
  for (let j = 0; j < RN; j++) L.push(`  let bias${j} = ${hasBias ? `f32(bias[min(n0 + ${j}u, p.N - 1u)])` : '0.0'};`);
  for (let i = 0; i < RM; i++) {
    L.push(`  if (r${i} < p.M) {`);
    L.push(`    let o = baseC + r${i} * p.N + n0;`);
    for (let j = 0; j < RN; j++) L.push(`    if (n0 + ${j}u < p.N) { C[o + ${j}u] = T(c${i}_${j} + bias${j}); }`);
    L.push('  }');
  }
  return L.join('\n');
}

/** Generated bodies by configuration (encoding runs every step; the text never changes). */
const bodies = new Map<string, string>();
function bodyOf(t: MatmulTiles, transA: boolean, transB: boolean, bias: boolean, av: boolean, bv: boolean): string {
  const key = `${t.WG},${t.RM},${t.RN}:${transA}${transB}${bias}${av}${bv}`;
  let body = bodies.get(key);
  if (body === undefined) bodies.set(key, (body = registerBody(t, transA, transB, bias, av, bv)));
  return body;
}

/** The pipeline and grid of one matmul dispatch with configuration `t`. */
export function matmulLaunch(g: MatmulGeometry, t: MatmulTiles): { kernel: KernelRef; workgroups: [number, number, number] } {
  const { transA, transB, bias } = g;
  const base = { TRANS_A: transA, TRANS_B: transB, HAS_BIAS: bias, TM: t.TM, TN: t.TN, BK: t.BK, RM: t.RM, RN: t.RN, WG: t.WG };
  if (t.kind === 'register') {
    // vec4 loads: A with transA across 4 rows (M % 4), B without transB across 4 columns
    // (N % 4). (vec4 along k was tried: the 4-k loop body it needs makes LLVM hoist all
    // products and spill them; one k per iteration with scalar loads ran ~1.6× faster.)
    const av = transA && g.M % 4 === 0 && t.RM % 4 === 0;
    const bv = !transB && g.N % 4 === 0 && t.RN % 4 === 0;
    return {
      kernel: { family: 'matmul', defs: { REGISTER: true, AV: av, BV: bv, ...base }, gen: { PARAMS: matmulParams.wgsl, REG_BODY: bodyOf(t, transA, transB, bias, av, bv) } },
      workgroups: [Math.ceil(g.N / t.RN), Math.ceil(g.M / (t.WG * t.RM)), g.batch],
    };
  }
  return {
    kernel: { family: 'matmul', defs: { REGISTER: false, AV: false, BV: false, ...base }, gen: { PARAMS: matmulParams.wgsl, REG_BODY: '' } },
    workgroups: [Math.ceil(g.N / t.TN), Math.ceil(g.M / t.TM), g.batch],
  };
}
