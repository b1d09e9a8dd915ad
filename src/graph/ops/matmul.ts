// Matrix products: batched `matmul` with transposed operands and `linear` (PyTorch layout).
import { makeNode, type Tensor } from '../tensor.ts';
import { assertDtype, isCpuAdapter, P } from './util.ts';
import { kernelOverride } from '../kernels/overrides.ts';

import { sumTo } from './elementwise.ts';
import { reshape } from './shape.ts';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: Tensor;
}

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


/**
 * Tile configuration for an M×N output. REGISTER blocks were tuned on llvmpipe (bench/matmul.ts):
 * a wide uniform column strip (RN) amortises the per-lane A loads; small outputs get smaller
 * blocks so little work is wasted on clamped edges (each distinct block is one more pipeline).
 */
export function matmulTiles(M: number, N: number, kind: 'register' | 'tiled' = 'tiled'): MatmulTiles {
  if (kind === 'register') {
    // Small outputs (tests, tiny heads): a small block compiles fast and wastes little.
    if (M * N <= 64 * 64) return { kind, TM: 0, TN: 0, BK: 0, RM: 4, RN: 8, WG: 8 };
    // Few rows (decode steps): 32 rows per workgroup, so little of each strip is padding.
    const block = kernelOverride('matmulRegisterBlock');
    if (M <= 32 && !block) return { kind, TM: 0, TN: 0, BK: 0, RM: 4, RN: 16, WG: 8 };
    // Mid-size: 8×16 compiles in about a second; the big block (2× the code, several seconds
    // to compile on llvmpipe, cached on disk by Mesa) pays off only where the product is large.
    if (M * N < 256 * 256 && !block) return { kind, TM: 0, TN: 0, BK: 0, RM: 8, RN: 16, WG: 8 };
    return { kind, TM: 0, TN: 0, BK: 0, RM: 16, RN: 16, WG: 8, ...block };
  }
  if (M * N <= 64 * 64) return { kind, TM: 32, TN: 32, BK: 16, RM: 4, RN: 4, WG: 0 };
  return { kind, TM: 64, TN: 64, BK: 16, RM: 4, RN: 4, WG: 0 };
}


/**
 * The fully unrolled body of the REGISTER kernel: RM×RN scalar accumulators, the B row of
 * the workgroup's column strip loaded once per k at uniform addresses, A per lane (vec4 when
 * `av`). Names: c{i}_{j} accumulators, r{i} rows, ao{i} A offsets, bo{j} B offsets.
 */
export function registerBody(t: MatmulTiles, transA: boolean, transB: boolean, hasBias: boolean, av: boolean, bv: boolean): string {
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
  L.push('  for (var k = 0u; k < p.K; k++) {');
  if (av) for (let g = 0; g < RM / 4; g++) L.push(`    let a${g} = A[ag${g} + k * M4];`);
  else for (let i = 0; i < RM; i++) L.push(`    let a${i} = A[ao${i} + k${transA ? ' * p.M' : ''}];`);
  const comp = ['x', 'y', 'z', 'w'];
  const aOf = (i: number) => (av ? `a${Math.floor(i / 4)}.${comp[i % 4]}` : `a${i}`);
  if (bv) {
    L.push('    let kq = k * N4;');
    for (let j4 = 0; j4 < RN / 4; j4++) {
      L.push(`    let bv${j4} = B[bq${j4} + kq];`);
      for (let c = 0; c < 4; c++) L.push(`    let b${4 * j4 + c} = bv${j4}.${comp[c]};`);
    }
  } else {
    L.push(`    let kb = k${transB ? '' : ' * p.N'};`);
    for (let j = 0; j < RN; j++) L.push(`    let b${j} = B[bo${j} + kb];`);
  }
  for (let i = 0; i < RM; i++) for (let j = 0; j < RN; j++) L.push(`    c${i}_${j} = fma(${aOf(i)}, b${j}, c${i}_${j});`);
  L.push('  }');
  for (let j = 0; j < RN; j++) L.push(`  let bias${j} = ${hasBias ? `bias[min(n0 + ${j}u, p.N - 1u)]` : '0.0'};`);
  for (let i = 0; i < RM; i++) {
    L.push(`  if (r${i} < p.M) {`);
    L.push(`    let o = baseC + r${i} * p.N + n0;`);
    for (let j = 0; j < RN; j++) L.push(`    if (n0 + ${j}u < p.N) { C[o + ${j}u] = c${i}_${j} + bias${j}; }`);
    L.push('  }');
  }
  return L.join('\n');
}

/**
 * C = op(A)·op(B) over a batch: A is [M,K] (or [K,M] with transA), optionally with one
 * leading batch dim; same for B. A batch of 1 (or a 2-D operand) broadcasts.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias } = opts;
  assertDtype(a, 'f32', 'matmul', 'A');
  assertDtype(b, 'f32', 'matmul', 'B');
  if (a.rank < 2 || a.rank > 3 || b.rank < 2 || b.rank > 3) throw new Error(`matmul: operands must be 2-D or 3-D, got ${a} and ${b}`);
  const bA = a.rank === 3 ? a.shape[0] : 1, bB = b.rank === 3 ? b.shape[0] : 1;
  if (bA !== bB && bA !== 1 && bB !== 1) throw new Error(`matmul: batch sizes ${bA} and ${bB} differ`);
  const batch = Math.max(bA, bB);
  const [ra, ca] = a.shape.slice(-2), [rb, cb] = b.shape.slice(-2);
  const M = transA ? ca : ra, K = transA ? ra : ca;
  const K2 = transB ? cb : rb, N = transB ? rb : cb;
  if (K !== K2) throw new Error(`matmul: inner sizes differ: ${a}${transA ? 'ᵀ' : ''} · ${b}${transB ? 'ᵀ' : ''}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N)) throw new Error(`matmul: bias ${bias} must be [${N}]`);
  const outShape = a.rank === 3 || b.rank === 3 ? [batch, M, N] : [M, N];
  const inputs = bias ? [a, b, bias] : [a, b];
  const [c] = makeNode('matmul', inputs, [{ shape: outShape }], {
    encode(ctx) {
      const kind = kernelOverride('matmul') ?? (isCpuAdapter() ? 'register' : 'tiled');
      const { kind: _k, ...t } = matmulTiles(M, N, kind);
      const params = P().u(M, N, K, batch, bA === 1 ? 0 : M * K, bB === 1 ? 0 : K * N, M * N, 0);
      const bindings = bias ? [a, b, c, bias] : [a, b, c];
      if (kind === 'register') {
        // vec4 A loads need 16-byte aligned rows (and batch strides): K % 4 (transA: M % 4).
        // vec4 loads: A with transA across 4 rows (M % 4), B without transB across 4 columns
        // (N % 4). (vec4 along k was tried: the 4-k loop body it needs makes LLVM hoist all
        // products and spill them; one k per iteration with scalar loads ran ~1.6× faster.)
        const av = transA && M % 4 === 0;
        const bv = !transB && N % 4 === 0;
        ctx.dispatch({
          kernel: {
            family: 'matmul',
            defs: { REGISTER: true, TRANS_A: transA, TRANS_B: transB, HAS_BIAS: !!bias, AV: av, BV: bv, ...t, REG_BODY: registerBody({ kind, ...t }, transA, transB, !!bias, av, bv) },
          },
          bindings,
          params,
          workgroups: [Math.ceil(N / t.RN), Math.ceil(M / (t.WG * t.RM)), batch],
        });
        return;
      }
      ctx.dispatch({
        kernel: { family: 'matmul', defs: { REGISTER: false, TRANS_A: transA, TRANS_B: transB, HAS_BIAS: !!bias, AV: false, BV: false, ...t, REG_BODY: '' } },
        bindings,
        params,
        workgroups: [Math.ceil(N / t.TN), Math.ceil(M / t.TM), batch],
      });
    },
    backward([dc]) {
      const g = dc!;
      // dA = dC·op(B)ᵀ (or its transpose), dB likewise; broadcast batches are summed.
      let da: Tensor | null = null, db: Tensor | null = null;
      if (a.requiresGrad) {
        da = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
        if (da.rank === 3 && (a.rank === 2 || a.shape[0] === 1) && da.shape[0] !== 1) da = sumTo(da, [1, ...da.shape.slice(1)]);
        da = reshape(da, a.shape);
      }
      if (b.requiresGrad) {
        db = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
        if (db.rank === 3 && (b.rank === 2 || b.shape[0] === 1) && db.shape[0] !== 1) db = sumTo(db, [1, ...db.shape.slice(1)]);
        db = reshape(db, b.shape);
      }
      const dbias = bias?.requiresGrad ? sumTo(g, [N]) : null;
      return bias ? [da, db, dbias] : [da, db];
    },
  });
  return c;
}

/** y = x·Wᵀ + b for x [..., in], W [out, in] (PyTorch nn.Linear). */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const inF = x.shape[x.rank - 1];
  if (w.rank !== 2 || w.shape[1] !== inF) throw new Error(`linear: weight ${w} does not take ${x} (in features ${inF})`);
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [lead.reduce((p, q) => p * q, 1), inF]);
  const y = matmul(x2, w, { transB: true, bias: b ?? undefined });
  return reshape(y, [...lead, w.shape[0]]);
}

