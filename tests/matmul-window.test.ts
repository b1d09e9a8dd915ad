// matmul's WINDOW kernel (B repacked into 64 KiB uniform windows, A repacked when it cannot be
// read per lane as vec4 along k) on every path of its plan, against float64: B transposed or
// not, K not a multiple of 4, A packed (transposed) or read in place, a shared B with batched A,
// a batched B, one window or many, bias, and K too long for a window (chunks of K summed into C
// by successive dispatches).
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, runtime } from '../src/graph/runtime.ts';
import { withTrial } from '../src/graph/kernels/catalogue.ts';
import { matmulFamily, type MatmulGeometry, type MatmulTiles, windowMacsPerDispatch, windowPlan } from '../src/graph/kernels/matmul.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import { expectWithin, gamma, rng } from './util.ts';
import { matmulRef } from './ref/cpu.ts';

const block = (RM: number, RN: number): MatmulTiles => ({ kind: 'window', TM: 0, TN: 0, BK: 0, WG: 8, RM, RN });

beforeAll(async () => {
  await init();
});

interface Case {
  name: string;
  M: number; N: number; K: number;
  batchA: number; batchB: number;
  transA: boolean; transB: boolean; bias: boolean;
  t: MatmulTiles;
  /** What the plan must be for this case (so each path is really taken). */
  expect: { packA: boolean; manyWindows: boolean; chunks: number };
}

const cases: Case[] = [
  // Bᵀ in windows of Nc = 16384/K rounded to RN = 32 rows → 3 windows for N = 80, the last partly zero.
  { name: 'Bᵀ in 3 windows', M: 37, N: 80, K: 512, batchA: 1, batchB: 1, transA: false, transB: true, bias: true, t: block(8, 16), expect: { packA: false, manyWindows: true, chunks: 1 } },
  // B in one window (N·K ≤ 16384).
  { name: 'B in one window', M: 70, N: 48, K: 64, batchA: 1, batchB: 1, transA: false, transB: true, bias: false, t: block(4, 16), expect: { packA: false, manyWindows: false, chunks: 1 } },
  // B not transposed: packed into windows; K % 4 ≠ 0: A packed too, zero-padded along k.
  { name: 'packed A and B, odd K', M: 21, N: 300, K: 131, batchA: 1, batchB: 1, transA: false, transB: false, bias: true, t: block(8, 16), expect: { packA: true, manyWindows: true, chunks: 1 } },
  // Transposed A (packed), shared B, batched A and C (wid.z).
  { name: 'transposed A, shared B, batch 3', M: 40, N: 96, K: 256, batchA: 3, batchB: 1, transA: true, transB: true, bias: false, t: block(8, 8), expect: { packA: true, manyWindows: true, chunks: 1 } },
  // Batched B (one pass of windows per batch), broadcast A.
  { name: 'batched B, broadcast A', M: 19, N: 72, K: 300, batchA: 1, batchB: 2, transA: false, transB: false, bias: true, t: block(8, 32), expect: { packA: false, manyWindows: true, chunks: 1 } },
  // transB with N·K % 64 ≠ 0 (windows are whole 64 KiB blocks of the packed copy, always aligned).
  { name: 'transB off alignment', M: 33, N: 75, K: 260, batchA: 2, batchB: 2, transA: false, transB: true, bias: false, t: block(8, 16), expect: { packA: false, manyWindows: true, chunks: 1 } },
  // K = 2048: a window holds 8 rows of it, fewer than RN = 16, so chunks of 1024 (bias once).
  { name: 'K in chunks, bias', M: 29, N: 40, K: 2048, batchA: 1, batchB: 1, transA: false, transB: true, bias: true, t: block(8, 16), expect: { packA: false, manyWindows: true, chunks: 2 } },
  // K = 2601 (odd, not a multiple of 4) with a transposed A and a batched B: 3 chunks, the last short.
  { name: 'K in chunks, odd K, transposed A, batched B', M: 18, N: 20, K: 2601, batchA: 2, batchB: 2, transA: true, transB: false, bias: false, t: block(8, 16), expect: { packA: true, manyWindows: true, chunks: 3 } },
  // RN = 8: chunks of 2048 for K = 4100 (3 chunks, the last 4 long), a shared B with batched A.
  { name: 'K in chunks, short last chunk, batched A', M: 45, N: 70, K: 4100, batchA: 2, batchB: 1, transA: false, transB: true, bias: true, t: block(8, 8), expect: { packA: false, manyWindows: true, chunks: 3 } },
];

describe('matmul WINDOW kernel: every path of the plan against float64', () => {
  const R = rng('matmul-window');
  for (const c of cases) {
    it(c.name, async () => {
      const { M, N, K, batchA, batchB, transA, transB } = c;
      const batch = Math.max(batchA, batchB);
      const g: MatmulGeometry = { M, N, K, batch, transA, transB, bias: c.bias };
      const plan = windowPlan(g, c.t)!;
      expect({ packA: plan.packA, manyWindows: plan.nWin > 1, chunks: plan.nChunks }).toEqual(c.expect);
      const A = R.randn(batchA * M * K), B = R.randn(batchB * K * N), Bi = R.randn(N);
      const a = fromData(A, batchA > 1 ? (transA ? [batchA, K, M] : [batchA, M, K]) : (transA ? [K, M] : [M, K]));
      const b = fromData(B, batchB > 1 ? (transB ? [batchB, N, K] : [batchB, K, N]) : (transB ? [N, K] : [K, N]));
      const out = withTrial('matmul', c.t, () => matmul(a, b, { transA, transB, bias: c.bias ? fromData(Bi, [N]) : undefined }));
      expect(out.shape).toEqual(batch > 1 ? [batch, M, N] : [M, N]);
      const ref = new Float64Array(batch * M * N), mag = new Float64Array(batch * M * N);
      const absA = A.map(Math.abs), absB = B.map(Math.abs);
      for (let i = 0; i < batch; i++) {
        const ia = batchA > 1 ? i : 0, ib = batchB > 1 ? i : 0;
        ref.set(matmulRef(A.subarray(ia * M * K), B.subarray(ib * K * N), M, N, K, transA, transB), i * M * N);
        mag.set(matmulRef(absA.subarray(ia * M * K), absB.subarray(ib * K * N), M, N, K, transA, transB), i * M * N);
      }
      if (c.bias) ref.forEach((v, i) => (ref[i] = v + Bi[i % N]));
      // f32 dot product of length K (+ bias): |error| ≤ γ_{K+1} · (Σ|a||b| + |bias|), any order.
      expectWithin(await read(out), ref, (i) => gamma(K + 1) * (mag[i] + (c.bias ? Math.abs(Bi[i % N]) : 0)) + 1e-30, c.name);
    });
  }

});

describe('matmul: the hand pick on a software adapter that compiles unrolled bodies', () => {
  it('takes the register kernel from a transposed copy of A for wide products, the window kernel where each window dispatch does at least 2^23 multiply-adds', () => {
    const profile = { ...runtime().profile, software: true, unrolledKernels: true };
    const g = (M: number, N: number, K: number, transB = true): MatmulGeometry => ({ M, N, K, batch: 1, transA: false, transB, bias: false });
    const pick = (x: MatmulGeometry) => matmulFamily.configKey(matmulFamily.handPicked(x, profile));
    // The bench matmul shapes (0.71–0.82 of the FMA ceiling against the window kernel's
    // 0.31–0.40) and the paper's 80-row products with ≥ 512 columns.
    for (const x of [g(1024, 1024, 1024, false), g(1280, 2048, 512), g(1280, 512, 2048, false), g(2048, 2048, 2048, false)]) expect(pick(x)).toBe('register:8x16x16/tA');
    for (const x of [g(80, 512, 512, false), g(80, 1536, 512, false)]) expect(pick(x)).toBe('register:8x8x16/tA');
    // Narrower than 512 columns or K < 256: the copy cost more than it saved (0.25–0.87×).
    for (const x of [g(80, 192, 2304, false), g(80, 512, 192, false), g(784, 64, 288, false)]) expect(pick(x)).toMatch(/^register:\d+x\d+x\d+$/);
    // Not wide, but ≥ 2^23 multiply-adds per window dispatch: the window kernel.
    const tall = g(4096, 256, 1024);
    expect(windowMacsPerDispatch(tall, { kind: 'window', TM: 0, TN: 0, BK: 0, WG: 8, RM: 8, RN: 8 })).toBeGreaterThanOrEqual(2 ** 23);
    expect(pick(tall)).toBe('window:8x8x8');
    // The paper config's 64- and 128-row products below both rules.
    for (const x of [g(128, 256, 1024), g(64, 256, 4096, false), g(100, 256, 512, false)]) expect(pick(x)).toMatch(/^register:\d+x\d+x\d+$/);
    // Below 256³ never the window; a transposed A is read in place; M % 4 ≠ 0 has no copy.
    expect(pick(g(200, 200, 200))).toMatch(/^register:\d+x\d+x\d+$/);
    expect(pick({ ...g(1024, 1024, 1024), transA: true })).toBe('register:8x16x16');
    expect(pick(g(1026, 1024, 1024, false))).toBe('window:8x8x8');
  });
});
