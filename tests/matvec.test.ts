// Few-row products of decoding steps (src/graph/ops/matvec.ts) against float64 references:
// rowsLinear (forward, bias, gradients) and the top-k-only experts, with both workgroup widths
// (8 lanes: CPU adapters; 64: GPUs) on any adapter, vec4 and scalar loads, k tails and
// several row blocks.
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { expertsForRows, rowsLinear } from '../src/graph/ops/matvec.ts';
import { moeExperts, stackExpertWeights } from '../src/graph/ops/moe.ts';
import { mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, expectWithin, relL2, rng, sumBound } from './util.ts';
import { matmulRef } from './ref/cpu.ts';
import { type ActName, moeBounds, moeRef, randomExperts, randomRoute } from './ref/moe.ts';
import { unaryErr, unaryGradErr } from './ref/elementwise-err.ts';

beforeAll(async () => {
  await init();
});

for (const lanes of [8, 64] as const) describe(`few-row products, ${lanes} lanes per workgroup`, () => {
  const R = rng(`matvec-${lanes}`);
  beforeAll(() => setKernelOverrides({ matvecLanes: lanes }));
  afterAll(() => setKernelOverrides({ matvecLanes: undefined }));

  // K: multiples of 4 (vec4 loads) with and without a tail past the lanes, and odd (scalar).
  const shapes = [
    { B: R.int(1, 3), K: 4 * lanes * R.int(1, 3), N: R.int(1, 40) },
    { B: R.int(4, 11), K: 4 * R.int(1, 40), N: R.int(20, 70) },
    { B: R.int(1, 9), K: 2 * R.int(1, 60) + 1, N: R.int(1, 50) },
  ];
  for (const [ci, s] of shapes.entries()) {
    it(`rowsLinear B ${s.B}, K ${s.K}, N ${s.N}${ci === 1 ? ' with bias' : ''}: forward and gradients`, async () => {
      const { B, K, N } = s;
      const X = R.randn(B * K), Wd = R.randn(N * K, 1 / Math.sqrt(K)), bd = R.randn(N), G = R.randn(B * N);
      const hasBias = ci === 1;
      const x = param(fromData(X, [B, K])), W = param(fromData(Wd, [N, K])), b = hasBias ? param(fromData(bd, [N])) : null;
      const y = rowsLinear(x, W, b);
      expect(y.shape).toEqual([B, N]);
      const grads = grad(sumTo(mul(y, fromData(G, [B, N])), []), b ? [x, W, b] : [x, W]);
      await realize([y, ...grads.map((g) => g!)]);
      const ref = matmulRef(X, Wd, B, N, K, false, true);
      if (b) for (let r = 0; r < B; r++) for (let o = 0; o < N; o++) ref[r * N + o] += bd[o];
      // Sums of products: γ_n·Σ|terms| per element (n = K, plus the bias; N for dx; B for dW, db),
      // the magnitudes from the same products of |operands|.
      const yMag = matmulRef(abs(X), abs(Wd), B, N, K, false, true);
      if (b) for (let r = 0; r < B; r++) for (let o = 0; o < N; o++) yMag[r * N + o] += Math.abs(bd[o]);
      const gotY = await read(y), gotDx = await read(grads[0]!), gotDW = await read(grads[1]!);
      const dxRef = matmulRef(G, Wd, B, K, N), dWRef = matmulRef(G, X, N, K, B, true, false);
      const what = `rowsLinear lanes ${lanes} ${JSON.stringify(s)}`;
      expectWithin(gotY, ref, sumBound(yMag, K + 1), `${what} y`);
      expectWithin(gotDx, dxRef, sumBound(matmulRef(abs(G), abs(Wd), B, K, N), N), `${what} dx`);
      expectWithin(gotDW, dWRef, sumBound(matmulRef(abs(G), abs(X), N, K, B, true, false), B), `${what} dW`);
      const errs: Record<string, number> = { y: relL2(gotY, ref), dx: relL2(gotDx, dxRef), dW: relL2(gotDW, dWRef) };
      if (b) {
        const db = new Float64Array(N), dbMag = new Float64Array(N);
        for (let r = 0; r < B; r++) for (let o = 0; o < N; o++) { db[o] += G[r * N + o]; dbMag[o] += Math.abs(G[r * N + o]); }
        const gotDb = await read(grads[2]!);
        expectWithin(gotDb, db, sumBound(dbMag, B), `${what} db`);
        errs.db = relL2(gotDb, db);
      }
      console.log(`${what}: ${JSON.stringify(errs)}`);
    });
  }

  const moeCases: { B: number; E: number; k: number; d: number; F: number; act: ActName; mode: 'sum' | 'weighted' }[] = [
    // Fewer token slots than experts: some experts are skipped.
    { B: R.int(1, 3), E: R.int(5, 8), k: 1, d: 4 * R.int(2, 12), F: 4 * R.int(2, 20), act: 'silu', mode: 'sum' },
    { B: R.int(3, 10), E: R.int(2, 6), k: 2, d: 4 * R.int(2, 12), F: 4 * R.int(2, 20), act: 'gelu', mode: 'weighted' },
    { B: R.int(2, 6), E: R.int(3, 6), k: 2, d: 2 * R.int(2, 12) + 1, F: 2 * R.int(2, 20) + 1, act: 'telu', mode: 'sum' },
  ];
  for (const c of moeCases) {
    it(`expertsForRows ${JSON.stringify(c)} equals the float64 MoE and the training path`, async () => {
      const { B, E, k, d, F, act, mode } = c;
      const X = R.randn(B * d);
      const ex = randomExperts(R, E, d, F);
      // Route only to a subset of the experts when there are enough, so others are skipped.
      const allowed = Array.from({ length: E }, (_, e) => e).filter((e) => E - k < 2 || e !== E - 1);
      const { idx, w } = randomRoute(R, B, k, allowed);
      const experts = ex.map((e) => ({ w1: fromData(e.w1, [F, d]), w3: fromData(e.w3, [F, d]), w2: fromData(e.w2, [d, F]) }));
      const st = stackExpertWeights(experts);
      const x = fromData(X, [B, d]), indices = fromData(idx, [B, k], 'i32'), weights = fromData(w, [B, k]);
      const y = expertsForRows(x, indices, weights, st, act, mode);
      const yTrain = moeExperts(x, { indices, weights }, experts, act, mode);
      await realize([y, yTrain]);
      const ref = moeRef(X, idx, w, ex, B, d, F, k, act, mode);
      // Per element within the f32 error model of tests/ref/moe.ts moeBounds; the training path
      // is within the same bound of the reference, so the two paths within twice it of each other.
      const bnd = moeBounds(X, idx, w, ex, B, d, F, k, act, mode, undefined, unaryErr, unaryGradErr).out;
      const got = await read(y), gotTrain = await read(yTrain);
      const what = `expertsForRows lanes ${lanes} ${JSON.stringify(c)}`;
      expectWithin(got, ref.out, bnd, what);
      expectWithin(got, gotTrain, bnd.map((v) => 2 * v), `${what} vs the training path`);
      console.log(`${what}: ${JSON.stringify({ ref: relL2(got, ref.out), training: relL2(got, gotTrain) })}`);
    });
  }

  it('expertsForRows refuses a backward pass and bad shapes with clear errors', () => {
    const x = param(fromData(R.randn(2 * 8), [2, 8]));
    const W1 = fromData(R.randn(3 * 4 * 8), [3, 4, 8]), W2 = fromData(R.randn(3 * 8 * 4), [3, 8, 4]);
    const indices = fromData(new Int32Array([0, 2]), [2, 1], 'i32'), weights = fromData(new Float64Array([1, 1]), [2, 1]);
    const y = expertsForRows(x, indices, weights, { W1, W3: W1, W2 }, 'silu', 'sum');
    expect(() => grad(sumTo(y, []), [x])).toThrow(/inference-only/);
    expect(() => expertsForRows(x, indices, weights, { W1, W3: W1, W2: W1 }, 'silu', 'sum')).toThrow(/W2 .* must be \[3,8,4\]/);
    expect(() => rowsLinear(x, fromData(R.randn(5 * 7), [5, 7]))).toThrow(/rowsLinear/);
  });
});
