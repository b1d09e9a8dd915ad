import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { matmul, linear } from '../src/graph/ops/matmul.ts';
import { mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { dot, finiteDiff, relL2, rng } from './util.ts';
import { matmulRef } from './ref/cpu.ts';

beforeAll(async () => {
  const r = await init();
  console.log(`adapter: ${r.gpu.adapterName}`);
});

describe('matmul', () => {
  const R = rng('matmul');
  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
    it(`forward and backward, transA=${transA} transB=${transB}, odd shapes, batched`, async () => {
      const batch = R.int(1, 3), M = R.int(1, 70), N = R.int(1, 70), K = R.int(1, 40);
      const A = R.randn(batch * M * K), B = R.randn(batch * K * N), W = R.randn(batch * M * N);
      const a = param(fromData(A, transA ? [batch, K, M] : [batch, M, K]));
      const b = param(fromData(B, transB ? [batch, N, K] : [batch, K, N]));
      const w = fromData(W, [batch, M, N]);
      const c = matmul(a, b, { transA, transB });
      const loss = sumTo(mul(c, w), []);
      const [ga, gb] = grad(loss, [a, b]);
      await realize([c, ga!, gb!]);
      const ref = new Float64Array(batch * M * N);
      const lossOf = (Ax: Float64Array, Bx: Float64Array) => {
        let s = 0;
        for (let i = 0; i < batch; i++) {
          const Ci = matmulRef(Ax.subarray(i * M * K), Bx.subarray(i * K * N), M, N, K, transA, transB);
          s += dot(Ci, W.subarray(i * M * N));
        }
        return s;
      };
      for (let i = 0; i < batch; i++) ref.set(matmulRef(A.subarray(i * M * K), B.subarray(i * K * N), M, N, K, transA, transB), i * M * N);
      expect(relL2(await read(c), ref)).toBeLessThan(1e-5);
      // Loss is linear in each operand, so finite differences are exact up to rounding.
      const fa = finiteDiff((x) => lossOf(x, B), A, 1e-3);
      const fb = finiteDiff((x) => lossOf(A, x), B, 1e-3);
      expect(relL2(await read(ga!), fa)).toBeLessThan(1e-5);
      expect(relL2(await read(gb!), fb)).toBeLessThan(1e-5);
    });
  }

  it('linear with bias and a broadcast 2-D weight', async () => {
    const rows = R.int(1, 33), inF = R.int(1, 50), outF = R.int(1, 50);
    const X = R.randn(2 * rows * inF), Wt = R.randn(outF * inF), Bi = R.randn(outF);
    const x = fromData(X, [2, rows, inF]);
    const wt = param(fromData(Wt, [outF, inF]));
    const bi = param(fromData(Bi, [outF]));
    const y = linear(x, wt, bi);
    const loss = sumTo(y, []);
    const [gw, gbias] = grad(loss, [wt, bi]);
    await realize([y, gw!, gbias!]);
    const ref = matmulRef(X, Wt, 2 * rows, outF, inF, false, true).map((v, i) => v + Bi[i % outF]);
    expect(relL2(await read(y), ref)).toBeLessThan(1e-5);
    // d/dW sum(XWᵀ) = column sums of X
    const gwRef = new Float64Array(outF * inF);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) for (let r = 0; r < 2 * rows; r++) gwRef[o * inF + i] += X[r * inF + i];
    expect(relL2(await read(gw!), gwRef)).toBeLessThan(1e-5);
    expect(relL2(await read(gbias!), new Float64Array(outF).fill(2 * rows))).toBeLessThan(1e-6);
  });
});
