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
import { relL2, rng } from './util.ts';
import { matmulRef } from './ref/cpu.ts';
import { type ActName, moeRef, randomExperts, randomRoute } from './ref/moe.ts';

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
      const errs: Record<string, number> = {
        y: relL2(await read(y), ref),
        dx: relL2(await read(grads[0]!), matmulRef(G, Wd, B, K, N)),
        dW: relL2(await read(grads[1]!), matmulRef(G, X, N, K, B, true, false)),
      };
      if (b) {
        const db = new Float64Array(N);
        for (let r = 0; r < B; r++) for (let o = 0; o < N; o++) db[o] += G[r * N + o];
        errs.db = relL2(await read(grads[2]!), db);
      }
      console.log(`rowsLinear lanes ${lanes} ${JSON.stringify(s)}: ${JSON.stringify(errs)}`);
      for (const e of Object.values(errs)) expect(e).toBeLessThan(1e-5);
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
      const got = await read(y);
      const errs = { ref: relL2(got, ref.out), training: relL2(got, await read(yTrain)) };
      console.log(`expertsForRows lanes ${lanes} ${JSON.stringify(c)}: ${JSON.stringify(errs)}`);
      expect(errs.ref).toBeLessThan(1e-5);
      expect(errs.training).toBeLessThan(1e-5);
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
