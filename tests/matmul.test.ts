import { beforeAll, describe, expect, it } from 'vitest';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { matmul, linear, matmulTiles } from '../src/graph/ops/matmul.ts';
import { mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectNormWithin, expectWithin, gamma, norm2, relL2, rng } from './util.ts';
import { matmulRef } from './ref/cpu.ts';

beforeAll(async () => {
  const r = await init();
  console.log(`adapter: ${r.gpu.adapterName}`);
});

// Error model (tests/util.ts): a product over K terms, in any order, is within γ_K·(|A||B|)_ij of
// the exact value per element, γ_{K+1} with a bias; norm-wise ‖Ĉ − C‖_F ≤ γ_K‖A‖_F‖B‖_F. The
// gradients are products too: dA = dC·Bᵀ over N terms, dB = Aᵀ·dC over M terms.
/** Per-element bound γ_{K(+1)}·(|A||B| + |bias|) for one batch of a product. */
function productBound(A: Float64Array, B: Float64Array, M: number, N: number, K: number, transA: boolean, transB: boolean, bias?: Float64Array): Float64Array {
  const mag = matmulRef(abs(A), abs(B), M, N, K, transA, transB);
  if (bias) mag.forEach((v, i) => (mag[i] = v + Math.abs(bias[i % N])));
  return mag.map((v) => gamma(K + (bias ? 1 : 0)) * v);
}

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
      const bound = new Float64Array(batch * M * N);
      let gaBound2 = 0, gbBound2 = 0;
      for (let i = 0; i < batch; i++) {
        const Ai = A.subarray(i * M * K, (i + 1) * M * K), Bi = B.subarray(i * K * N, (i + 1) * K * N), Wi = W.subarray(i * M * N, (i + 1) * M * N);
        ref.set(matmulRef(Ai, Bi, M, N, K, transA, transB), i * M * N);
        bound.set(productBound(Ai, Bi, M, N, K, transA, transB), i * M * N);
        gaBound2 += (gamma(N) * norm2(Wi) * norm2(Bi)) ** 2;
        gbBound2 += (gamma(M) * norm2(Ai) * norm2(Wi)) ** 2;
      }
      expectWithin(await read(c), ref, bound, 'C');
      // Loss is linear in each operand, so float64 finite differences are exact up to float64
      // rounding (~1e-16 relative: nothing next to the f32 bounds). The float64 gradients
      // dA = W·Bᵀ, dB = Aᵀ·W (in the operands' layouts) are checked against them at sampled
      // indices; every element of the GPU's is then checked against the float64 ones (central
      // differences at every element cost a full product each: seconds per run, for nothing more).
      const fa = new Float64Array(A.length), fb = new Float64Array(B.length);
      for (let i = 0; i < batch; i++) {
        const Ai = A.subarray(i * M * K, (i + 1) * M * K), Bi = B.subarray(i * K * N, (i + 1) * K * N), Wi = W.subarray(i * M * N, (i + 1) * M * N);
        // dA[m,k] = Σ_n W[m,n]·B(k,n); stored [K,M] when transA. dB[k,n] = Σ_m A(m,k)·W[m,n]; stored [N,K] when transB.
        fa.set(transA ? matmulRef(Bi, Wi, K, M, N, transB, true) : matmulRef(Wi, Bi, M, K, N, false, !transB), i * M * K);
        fb.set(transB ? matmulRef(Wi, Ai, N, K, M, true, transA) : matmulRef(Ai, Wi, K, N, M, !transA, false), i * K * N);
      }
      const sampleFd = (g: Float64Array, f: (v: Float64Array) => number, v: Float64Array) => {
        const idx = Array.from({ length: Math.min(v.length, 12) }, () => R.int(0, v.length - 1));
        const fd = idx.map((j) => {
          const y = Float64Array.from(v);
          y[j] = v[j] + 1e-3;
          const fp = f(y);
          y[j] = v[j] - 1e-3;
          return (fp - f(y)) / 2e-3;
        });
        expect(relL2(idx.map((j) => g[j]), fd)).toBeLessThan(1e-7);
      };
      sampleFd(fa, (x) => lossOf(x, B), A);
      sampleFd(fb, (x) => lossOf(A, x), B);
      expectNormWithin(await read(ga!), fa, Math.sqrt(gaBound2), 'dA = dC·Bᵀ');
      expectNormWithin(await read(gb!), fb, Math.sqrt(gbBound2), 'dB = Aᵀ·dC');
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
    expectWithin(await read(y), ref, productBound(X, Wt, 2 * rows, outF, inF, false, true, Bi), 'y = xWᵀ + b');
    // d/dW sum(XWᵀ) = column sums of X: 2·rows terms each.
    const gwRef = new Float64Array(outF * inF), gwMag = new Float64Array(outF * inF);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) for (let r = 0; r < 2 * rows; r++) {
      gwRef[o * inF + i] += X[r * inF + i];
      gwMag[o * inF + i] += Math.abs(X[r * inF + i]);
    }
    expectWithin(await read(gw!), gwRef, gwMag.map((m) => gamma(2 * rows) * m), 'dW');
    // d/dbias = the row count: a sum of ones, exact in f32.
    expectWithin(await read(gbias!), new Float64Array(outF).fill(2 * rows), 0, 'dbias');
  });
  // Both kernels on any adapter. REGISTER reads A as vec4 with transA when M % 4 == 0 and B as
  // vec4 without transB when N % 4 == 0: aligned and odd sizes cover every load path; small
  // outputs use the small block, the last cases the mid-size, few-row and big ones.
  it('REGISTER kernel: vec4 and scalar load paths, transposes, bias, small and big blocks', async () => {
    setKernelOverrides({ matmul: 'register' });
    try {
      const cases: [boolean, boolean, boolean, number, number, number][] = [];
      for (const transA of [false, true]) for (const transB of [false, true]) for (const aligned of [true, false]) {
        const pick = (lo: number, hi: number) => (aligned ? 4 * R.int(lo, hi) : 2 * R.int(lo, hi) + 1);
        cases.push([transA, transB, aligned, pick(1, 15), pick(1, 15), pick(1, 10)]);
      }
      // Big block (M·N > 64²): the common linear layout, aligned, and a ragged plain product.
      cases.push([false, true, true, 4 * R.int(17, 25), 4 * R.int(17, 25), 4 * R.int(2, 10)]);
      cases.push([false, false, false, 2 * R.int(33, 45) + 1, 2 * R.int(33, 45) + 1, 2 * R.int(3, 10) + 1]);
      // Few rows, many columns (decode steps); and the big block (M·N ≥ 256²) with ragged M.
      cases.push([false, true, false, R.int(5, 32), 2 * R.int(40, 90) + 1, 2 * R.int(3, 10) + 1]);
      cases.push([false, false, true, 2 * R.int(128, 140) + 1, 4 * R.int(64, 70), R.int(2, 6)]);
      for (const [transA, transB, aligned, M, N, K] of cases) {
        const batch = R.int(1, 2), withBias = R.next() < 0.5;
        const A = R.randn(batch * M * K), B = R.randn(batch * K * N), Bi = R.randn(N);
        const a = fromData(A, transA ? [batch, K, M] : [batch, M, K]);
        const b = fromData(B, transB ? [batch, N, K] : [batch, K, N]);
        const c = matmul(a, b, { transA, transB, bias: withBias ? fromData(Bi, [N]) : undefined });
        const ref = new Float64Array(batch * M * N);
        for (let i = 0; i < batch; i++) ref.set(matmulRef(A.subarray(i * M * K), B.subarray(i * K * N), M, N, K, transA, transB), i * M * N);
        const bound = new Float64Array(batch * M * N);
        for (let i = 0; i < batch; i++) bound.set(productBound(A.subarray(i * M * K, (i + 1) * M * K), B.subarray(i * K * N, (i + 1) * K * N), M, N, K, transA, transB, withBias ? Bi : undefined), i * M * N);
        if (withBias) ref.forEach((v, i) => (ref[i] = v + Bi[i % N]));
        const label = `transA=${transA} transB=${transB} aligned=${aligned} batch=${batch} M=${M} N=${N} K=${K} bias=${withBias} block=${JSON.stringify(matmulTiles(M, N, 'register'))}`;
        expectWithin(await read(c), ref, bound, label);
      }
    } finally {
      setKernelOverrides({ matmul: undefined });
    }
  });

  it('TILED kernel (GPUs) forward, all transposes, with bias', async () => {
    setKernelOverrides({ matmul: 'tiled' });
    try {
      for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
        const M = R.int(1, 90), N = R.int(1, 90), K = R.int(1, 40);
        const A = R.randn(M * K), B = R.randn(K * N), Bi = R.randn(N);
        const c = matmul(fromData(A, transA ? [K, M] : [M, K]), fromData(B, transB ? [N, K] : [K, N]), { transA, transB, bias: fromData(Bi, [N]) });
        const ref = matmulRef(A, B, M, N, K, transA, transB).map((v, i) => v + Bi[i % N]);
        expectWithin(await read(c), ref, productBound(A, B, M, N, K, transA, transB, Bi), `tiled transA=${transA} transB=${transB} M=${M} N=${N} K=${K}`);
      }
    } finally {
      setKernelOverrides({ matmul: undefined });
    }
  });
});
