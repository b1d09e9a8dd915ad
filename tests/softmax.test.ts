import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { logSoftmax, softmax } from '../src/graph/ops/softmax.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, rng, ulps } from './util.ts';
import { logSoftmaxBackRef, logSoftmaxBounds, logSoftmaxRef, maskZeros, numel, softmaxBackRef, softmaxBounds, softmaxRef } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});

const R = rng('softmax');

// Error model: tests/ref/nn.ts softmaxRowErrors, softmaxBounds, logSoftmaxBounds.

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
    expectGradMatchesFiniteDiff(gr, f, X, 1e-5, 'reference dx');
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
      const { y: yB, dx: gB } = logSoftmaxBounds(X, W, K, yr);
      expectWithin(await read(y), yr, yB, `logSoftmax ${JSON.stringify(shape)} y`);
      expectWithin(await read(gx!), gr, gB, `logSoftmax ${JSON.stringify(shape)} dx`);
      if (numel(shape) <= 400) {
        const f = (xx: Float64Array) => dot(W, logSoftmaxRef(xx, K));
        expectGradMatchesFiniteDiff(gr, f, X, 1e-5, 'reference dx');
      }
    });
  }
});
