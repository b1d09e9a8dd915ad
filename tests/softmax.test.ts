import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { logSoftmax, softmax } from '../src/graph/ops/softmax.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { dot, expectWithin, finiteDiff, gamma, relL2, rng, TINY32, U32, ulps } from './util.ts';
import { logSoftmaxBackRef, logSoftmaxRef, maskZeros, numel, softmaxBackRef, softmaxRef } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});

const R = rng('softmax');

// Error model (tests/util.ts) per row of K: d_j = z_j − max is one rounding (u|d_j|, which exp
// turns into a relative u|d_j|); WGSL exp is within 3 + 2|d| ULP (exp2-based: 3 + 3|d| covers
// the log₂e scaling); the sum of K positive terms adds γ_K plus the terms' own errors weighted
// by their share y_k; the division 2.5 ULP. Hence, relative to y_j,
//   ε_j = ulps(3 + 3|d_j|) + 3u|d_j|,  ε_S = Σ_k ε_k·y_k + γ_K,  |Δy_j| ≤ y_j(ε_j + ε_S + ulps(2.5)).
// The backward dx_j = y_j(w_j − Σ_k w_k·y_k) then carries the forward errors (the kernel reads
// its own y) and a γ_K sum plus three roundings. Second-order terms: factor 1.001. Results that
// underflow may be flushed to zero: TINY32 absolute terms.
function rowErrors(X: Float64Array, K: number, zero: boolean[] | undefined, yr: Float64Array) {
  const eps = new Float64Array(X.length), epsS = new Float64Array(X.length / K);
  for (let b = 0, r = 0; b < X.length; b += K, r++) {
    let mx = -Infinity;
    for (let j = 0; j < K; j++) mx = Math.max(mx, zero?.[b + j] ? -1e9 : X[b + j]);
    let es = gamma(K);
    for (let j = 0; j < K; j++) {
      const d = Math.abs((zero?.[b + j] ? -1e9 : X[b + j]) - mx);
      eps[b + j] = ulps(3 + 3 * d) + 3 * U32 * d;
      es += eps[b + j] * yr[b + j];
    }
    epsS[r] = es;
  }
  return { eps, epsS };
}

function softmaxBounds(X: Float64Array, W: Float64Array, K: number, zero: boolean[] | undefined, yr: Float64Array) {
  const { eps, epsS } = rowErrors(X, K, zero, yr);
  // Plus 2·TINY32 absolute: exp(d) and the quotient may underflow to subnormals, flushed to 0.
  const dy = yr.map((y, i) => 1.001 * y * (eps[i] + epsS[Math.floor(i / K)] + ulps(2.5)) + 2 * TINY32);
  const dg = new Float64Array(X.length);
  for (let b = 0; b < X.length; b += K) {
    let s = 0, sAbs = 0, sErr = 0;
    for (let j = 0; j < K; j++) {
      s += W[b + j] * yr[b + j];
      sAbs += Math.abs(W[b + j]) * yr[b + j];
      sErr += Math.abs(W[b + j]) * dy[b + j];
    }
    for (let j = b; j < b + K; j++)
      dg[j] = 1.001 * (dy[j] * (Math.abs(W[j]) + Math.abs(s) + sErr) + yr[j] * (sErr + gamma(K) * sAbs) + gamma(3) * yr[j] * (Math.abs(W[j]) + sAbs)) + 2 * TINY32 * (Math.abs(W[j]) + sAbs + 1);
  }
  return { y: dy, dx: dg };
}

interface MaskSpec {
  shape: number[];
  dtype: 'f32' | 'i32';
  data: Float64Array;
}

/** Softmax forward + backward on GPU vs the float64 reference; optionally checks the reference gradient by finite differences. */
async function checkSoftmax(shape: number[], mask: MaskSpec | null, fd: boolean, scale = 1) {
  const K = shape[shape.length - 1];
  const X = R.randn(numel(shape), scale);
  const x = param(fromData(X, shape));
  const m = mask ? fromData(mask.data, mask.shape, mask.dtype) : undefined;
  const y = softmax(x, m);
  const W = R.randn(numel(shape));
  const [gx] = grad(y, [x], fromData(W, shape));
  await realize([y, gx!]);
  const zero = mask ? maskZeros(mask.data, mask.shape, shape) : undefined;
  const yr = softmaxRef(X, K, zero);
  const gr = softmaxBackRef(yr, W, K, zero);
  const bound = softmaxBounds(X, W, K, zero, yr);
  expectWithin(await read(y), yr, bound.y, `softmax ${JSON.stringify(shape)} y`);
  // Per element, so near one-hot rows (scale 300: y⊙(dy − Σdy⊙y) cancels) need no special case.
  expectWithin(await read(gx!), gr, bound.dx, `softmax ${JSON.stringify(shape)} dx`);
  if (fd) {
    const f = (xx: Float64Array) => dot(W, softmaxRef(xx, K, zero));
    expect(relL2(gr, finiteDiff(f, X, 1e-5))).toBeLessThan(1e-6);
  }
  return { yr, y: await read(y), zero };
}

function randomMask(shape: number[], dtype: 'f32' | 'i32', pZero: number): MaskSpec {
  const data = Float64Array.from({ length: numel(shape) }, () => (R.next() < pZero ? 0 : dtype === 'i32' ? R.int(1, 3) : Math.fround(0.5 + R.next())));
  return { shape, dtype, data };
}

describe('softmax', () => {
  it('random shapes, rows short and long (one workgroup per row)', async () => {
    for (let k = 0; k < 3; k++) {
      const rank = R.int(1, 4);
      const shape = Array.from({ length: rank }, () => R.int(1, 5));
      shape[rank - 1] = R.int(1, 40);
      await checkSoftmax(shape, null, true);
    }
    await checkSoftmax([R.int(1, 3), R.int(65, 128)], null, false);
    await checkSoftmax([R.int(1, 3), R.int(257, 700)], null, false);
  });

  it('more rows than one grid dimension holds (65535 workgroups)', async () => {
    await checkSoftmax([R.int(65536, 70000), 3], null, false);
  });

  it('is stable for large logits', async () => {
    const { y } = await checkSoftmax([3, R.int(20, 90)], null, false, 300);
    expect(Array.from(y).every(Number.isFinite)).toBe(true);
  });

  it('f32 mask [b,1,q,k] against [b,H,q,k], with fully masked rows', async () => {
    const b = R.int(1, 2), H = R.int(1, 3), q = R.int(2, 6), k = R.int(2, 9);
    const mask = randomMask([b, 1, q, k], 'f32', 0.4);
    for (let j = 0; j < k; j++) mask.data[j] = 0; // row 0 of sample 0 fully masked
    const { y, zero } = await checkSoftmax([b, H, q, k], mask, true);
    // A fully masked row is uniform (PyTorch masked_fill(-1e9) + softmax).
    // exp(0) = 1 exactly, a sum of k ones is exact, the division 2.5 ULP.
    for (let h = 0; h < H; h++) for (let j = 0; j < k; j++) expect(Math.abs(y[h * q * k + j] - 1 / k)).toBeLessThanOrEqual(ulps(2.5) / k);
    // Other masked entries are exactly 0.
    for (let e = 0; e < y.length; e++) {
      const row = Math.floor(e / k);
      const full = zero!.slice(row * k, row * k + k).every(Boolean);
      if (zero![e] && !full) expect(y[e]).toBe(0);
    }
  });

  it('i32 causal mask [b,1,q,k] against [b,H,q,k], long rows', async () => {
    const b = R.int(1, 2), H = R.int(1, 2), q = R.int(2, 4), k = R.int(60, 300);
    const data = new Float64Array(b * q * k);
    for (let s = 0; s < b; s++) for (let i = 0; i < q; i++) for (let j = 0; j < k; j++) data[(s * q + i) * k + j] = j <= i * 7 ? 1 : 0;
    // NumPy broadcasting aligns from the right, so the per-sample mask needs its head axis.
    await checkSoftmax([b, H, q, k], { shape: [b, 1, q, k], dtype: 'i32', data }, false);
  });

  it('mask broadcast along the last axis ([rows, 1]) and a rank-1 mask', async () => {
    await checkSoftmax([3, 4, 5], randomMask([3, 4, 1], 'f32', 0.5), true);
    await checkSoftmax([2, 3, 7], randomMask([7], 'i32', 0.3), true);
  });

  it('rejects masks that do not broadcast', () => {
    const x = fromData(new Float32Array(12), [3, 4]);
    expect(() => softmax(x, fromData(new Float32Array(3), [3]))).toThrow(/broadcast/);
    expect(() => softmax(x, fromData(new Float32Array(24), [2, 3, 4]))).toThrow(/broadcast/);
  });
});

describe('logSoftmax', () => {
  for (const [label, shapeOf] of [
    ['small random shapes', () => [R.int(1, 4), R.int(1, 3), R.int(1, 30)]],
    ['long rows', () => [R.int(1, 3), R.int(200, 600)]],
  ] as [string, () => number[]][]) {
    it(`forward and backward, ${label}`, async () => {
      const shape = shapeOf();
      const K = shape[shape.length - 1];
      const X = R.randn(numel(shape), 3);
      const x = param(fromData(X, shape));
      const y = logSoftmax(x);
      const W = R.randn(numel(shape));
      const [gx] = grad(y, [x], fromData(W, shape));
      await realize([y, gx!]);
      const yr = logSoftmaxRef(X, K);
      const gr = logSoftmaxBackRef(yr, W, K);
      // y_j = d_j − log S: the subtraction's rounding of d (u|d|), log S off by S's relative
      // error ε_S (see rowErrors; S ≥ 1) plus log's own 3 ULP (absolute 2⁻²¹ on [0.5, 2]), and
      // one rounding of the result. dx_j = w_j − exp(y_j)·Σw: exp's 3 + 2|y| ULP and y's error
      // relative to p_j = exp(y_j), the sum γ_K, two roundings.
      const p = yr.map(Math.exp);
      const { epsS } = rowErrors(X, K, undefined, p);
      const yB = new Float64Array(yr.length), gB = new Float64Array(yr.length);
      for (let b = 0, r = 0; b < yr.length; b += K, r++) {
        let mx = -Infinity, ws = 0, wAbs = 0;
        for (let j = 0; j < K; j++) {
          mx = Math.max(mx, X[b + j]);
          ws += W[b + j];
          wAbs += Math.abs(W[b + j]);
        }
        const ls = Math.abs(yr[b] - (X[b] - mx));
        for (let j = b; j < b + K; j++) {
          const d = Math.abs(X[j] - mx);
          yB[j] = 1.001 * (U32 * d + epsS[r] + Math.max(ulps(3) * ls, 2 ** -21) + U32 * (d + ls));
          gB[j] = 1.001 * (p[j] * (ulps(3 + 2 * Math.abs(yr[j])) + yB[j]) * (Math.abs(ws) + gamma(K) * wAbs) + p[j] * gamma(K) * wAbs + gamma(2) * (Math.abs(W[j]) + p[j] * wAbs));
        }
      }
      expectWithin(await read(y), yr, yB, `logSoftmax ${JSON.stringify(shape)} y`);
      expectWithin(await read(gx!), gr, gB, `logSoftmax ${JSON.stringify(shape)} dx`);
      if (numel(shape) <= 400) {
        const f = (xx: Float64Array) => dot(W, logSoftmaxRef(xx, K));
        expect(relL2(gr, finiteDiff(f, X, 1e-5))).toBeLessThan(1e-6);
      }
    });
  }
});
