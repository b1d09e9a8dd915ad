import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { resizeBilinear } from '../src/graph/ops/resize.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, rng } from './util.ts';
import { resizeBilinearBackwardRef, resizeBilinearRef, resizeBounds } from './ref/vision.ts';

// Error model: tests/ref/vision.ts resizeBounds.

beforeAll(async () => {
  await init();
});

describe('resizeBilinear (align_corners=False)', () => {
  const R = rng('resize');
  const cases: [string, () => [number, number, number, number]][] = [
    ['7×7 → 14×14 (FPN ×2 up)', () => [7, 7, 14, 14]],
    ['7×7 → 56×56 (×8 up)', () => [7, 7, 56, 56]],
    ['13×11 → 5×7 (down, odd)', () => [13, 11, 5, 7]],
    ['3×4 → 10×9 (non-integer up)', () => [3, 4, 10, 9]],
    ['1×5 → 4×2 (single row)', () => [1, 5, 4, 2]],
    ['random sizes', () => [R.int(1, 12), R.int(1, 12), R.int(1, 20), R.int(1, 20)]],
  ];
  for (const [name, sizes] of cases) {
    it(name, async () => {
      const [H, W, OH, OW] = sizes();
      const N = R.int(1, 2), C = R.int(1, 3), NC = N * C;
      const X = R.randn(NC * H * W), DY = R.randn(NC * OH * OW);
      const x = param(fromData(X, [N, C, H, W]));
      const y = resizeBilinear(x, OH, OW);
      expect(y.shape).toEqual([N, C, OH, OW]);
      const [dx] = grad(y, [x], fromData(DY, y.shape));
      await realize([y, dx!].filter((t) => t !== x));
      const bnd = resizeBounds(X, DY, NC, H, W, OH, OW);
      expectWithin(await read(y), resizeBilinearRef(X, NC, H, W, OH, OW), bnd.y, `${name} y`);
      const dxRef = resizeBilinearBackwardRef(DY, NC, H, W, OH, OW);
      // The float64 backward against central differences (linear in x: exact up to rounding).
      expectGradMatchesFiniteDiff(dxRef, (v) => dot(resizeBilinearRef(v, NC, H, W, OH, OW), DY), X, 1e-3, `${name} reference dx`, { scale: dot(resizeBilinearRef(abs(X), NC, H, W, OH, OW), abs(DY)) });
      expectWithin(await read(dx!), dxRef, bnd.dx, `${name} dx`);
    });
  }
});
