import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { adaptiveAvgPool2d, maxPool2d } from '../src/graph/ops/pool.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, gamma, rng } from './util.ts';
import { adaptiveAvgPoolBackwardRef, adaptiveAvgPoolBound, adaptiveAvgPoolRef, maxPoolBackwardRef, maxPoolRef } from './ref/vision.ts';

beforeAll(async () => {
  await init();
});

describe('maxPool2d', () => {
  const R = rng('pool');
  const cases: [string, number, number, number, boolean][] = [
    ['3×3 stride 2 pad 1 (stem), odd sizes', 3, 2, 1, false],
    ['3×3 stride 2 pad 1 with ties (first maximum gets the gradient)', 3, 2, 1, true],
    ['2×2 stride 2 pad 0', 2, 2, 0, false],
    ['3×3 stride 1 pad 1', 3, 1, 1, false],
  ];
  for (const [name, k, s, pad, ties] of cases) {
    it(name, async () => {
      const N = R.int(1, 2), C = R.int(1, 3), H = R.int(k, 14) | 1, W = R.int(k, 12);
      const NC = N * C;
      // Ties: values from a 3-element set, so most windows hold repeated maxima.
      // No ties: a shuffled grid of values 6/n apart, so every window's maximum leads the rest by
      // more than the finite difference's 2h (random normals came within 2h: seed 969080984).
      const n = NC * H * W;
      const X = ties ? Float64Array.from({ length: n }, () => R.int(-1, 1)) : Float64Array.from({ length: n }, (_, i) => Math.fround(-3 + (6 * i) / n)); // f32 values: the max is exact
      if (!ties) for (let i = n - 1; i > 0; i--) { const j = R.int(0, i); [X[i], X[j]] = [X[j], X[i]]; }
      const x = param(fromData(X, [N, C, H, W]));
      const y = maxPool2d(x, { kernel: k, stride: s, padding: pad });
      const ref = maxPoolRef(X, NC, H, W, k, s, pad);
      expect(y.shape).toEqual([N, C, ref.OH, ref.OW]);
      const DY = R.randn(y.size);
      const [dx] = grad(y, [x], fromData(DY, y.shape));
      await realize([y, dx!]);
      // The maximum is one of the inputs: exact.
      expectWithin(await read(y), ref.y, 0, `${name}: y`);
      const dxRef = maxPoolBackwardRef(DY, ref.arg, NC, H, W, ref.OH, ref.OW);
      if (!ties) {
        // Distinct values: the max is locally linear, so finite differences apply.
        expectGradMatchesFiniteDiff(dxRef, (v) => dot(maxPoolRef(v, NC, H, W, k, s, pad).y, DY), X, 1e-4, `${name}: reference dx`, { scale: dot(abs(ref.y), abs(DY)) });
      }
      // Each input gathers dy from the windows it is the maximum of: at most ⌈k/s⌉² terms.
      const dxMag = maxPoolBackwardRef(abs(DY), ref.arg, NC, H, W, ref.OH, ref.OW);
      expectWithin(await read(dx!), dxRef, dxMag.map((v) => gamma(Math.ceil(k / s) ** 2) * v), `${name}: dx`);
    });
  }

  it('propagates NaN as PyTorch does (the last NaN of a window wins, no number replaces it)', async () => {
    // PyTorch's CPU kernel: `if (val > max || isnan(val))` in scan order. WGSL compilers may
    // fold `v != v` away (llvmpipe does), so this checks the kernel's bit-pattern NaN test.
    const H = 5, W = 5;
    const X = new Float32Array(H * W).map((_, i) => i % 7);
    X[6] = NaN; X[8] = NaN; X[12] = 100;
    const x = fromData(X, [1, 1, H, W]);
    const y = await read(maxPool2d(x, { kernel: 3, stride: 2, padding: 0 }));
    const want = new Float64Array(4);
    for (let oh = 0; oh < 2; oh++) for (let ow = 0; ow < 2; ow++) {
      let best = 0, bi = -1;
      for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
        const v = X[(2 * oh + ky) * W + 2 * ow + kx];
        if (bi < 0 || v > best || Number.isNaN(v)) (best = v), (bi = 1);
      }
      want[oh * 2 + ow] = best;
    }
    expect(Array.from(y)).toEqual(Array.from(want));
    expect(Number.isNaN(y[0]) && Number.isNaN(y[1])).toBe(true); // windows holding a NaN and the 100
  });

  it('rejects padding over half the kernel', () => {
    expect(() => maxPool2d(fromData(new Float32Array(16), [1, 1, 4, 4]), { kernel: 3, stride: 2, padding: 2 })).toThrow(/padding/);
  });
});

describe('adaptiveAvgPool2d', () => {
  const R = rng('adaptive-pool');
  const cases: [string, () => [number, number, number, number]][] = [
    ['13×11 → 7×7 (overlapping bins)', () => [13, 11, 7, 7]],
    ['56×56 → 7×7 (exact bins)', () => [56, 56, 7, 7]],
    ['5×3 → 7×4 (output larger than input)', () => [5, 3, 7, 4]],
    ['random sizes', () => [R.int(1, 17), R.int(1, 17), R.int(1, 8), R.int(1, 8)]],
  ];
  for (const [name, sizes] of cases) {
    it(name, async () => {
      const [H, W, OH, OW] = sizes();
      const N = R.int(1, 2), C = R.int(1, 3), NC = N * C;
      const X = R.randn(NC * H * W), DY = R.randn(NC * OH * OW);
      const x = param(fromData(X, [N, C, H, W]));
      const y = adaptiveAvgPool2d(x, OH, OW);
      const [dx] = grad(y, [x], fromData(DY, y.shape));
      await realize([y, dx!]);
      // Error model: tests/ref/vision.ts adaptiveAvgPoolBound. Backward: each input lies in at
      // most (⌈OH/H⌉ + 1)(⌈OW/W⌉ + 1) bins, each adding dy/|bin| (two roundings).
      const bins = (Math.ceil(OH / H) + 1) * (Math.ceil(OW / W) + 1);
      expectWithin(await read(y), adaptiveAvgPoolRef(X, NC, H, W, OH, OW), adaptiveAvgPoolBound(X, NC, H, W, OH, OW), `${name}: y`);
      const dxRef = adaptiveAvgPoolBackwardRef(DY, NC, H, W, OH, OW);
      expectGradMatchesFiniteDiff(dxRef, (v) => dot(adaptiveAvgPoolRef(v, NC, H, W, OH, OW), DY), X, 1e-3, `${name}: reference dx`, { scale: dot(adaptiveAvgPoolRef(abs(X), NC, H, W, OH, OW), abs(DY)) });
      const dxMag = adaptiveAvgPoolBackwardRef(abs(DY), NC, H, W, OH, OW);
      expectWithin(await read(dx!), dxRef, dxMag.map((v) => gamma(bins + 2) * v), `${name}: dx`);
    });
  }
});
