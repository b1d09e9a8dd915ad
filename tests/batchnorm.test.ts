import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { batchNorm2d, setBatchNormReductionWidth } from '../src/graph/ops/batchnorm.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { dot, finiteDiff, relL2, rng } from './util.ts';
import { batchNormBackwardRef, batchNormRef } from './ref/vision.ts';

beforeAll(async () => {
  await init();
});

describe('batchNorm2d', () => {
  const R = rng('batchnorm');
  // Both channel-reduction widths on any adapter (8: CPU adapters' default, 256: GPUs').
  for (const training of [true, false]) for (const width of [8, 256] as const) {
    it(`${training ? 'training (batch statistics, running-stat update)' : 'eval (running statistics)'}, odd sizes, reduction width ${width}`, async () => {
      setBatchNormReductionWidth(width);
      const N = R.int(1, 3), C = R.int(1, 6), H = R.int(1, 9) | 1, W = R.int(2, 8);
      const HW = H * W, momentum = training ? 0.1 + 0.3 * R.next() : 0.1, eps = 1e-5;
      // Off-centre, scaled input so the mean subtraction matters.
      const X = R.randn(N * C * HW).map((v) => Math.fround(3 * v + 2));
      const Wt = R.randn(C), B = R.randn(C), RM = R.randn(C), RV = R.uniform(C, 0.5, 2), DY = R.randn(N * C * HW);
      const x = param(fromData(X, [N, C, H, W]));
      const weight = param(fromData(Wt, [C])), bias = param(fromData(B, [C]));
      const runningMean = fromData(RM, [C]), runningVar = fromData(RV, [C]);
      const { y, update } = batchNorm2d(x, { weight, bias, runningMean, runningVar }, { training, momentum, eps });
      expect(update === null).toBe(!training);
      const [dx, dw, db] = grad(y, [x, weight, bias], fromData(DY, y.shape));
      await realize([y, dx!, dw!, db!], { effects: update ? [update] : [] });
      setBatchNormReductionWidth('auto');

      const ref = batchNormRef(X, N, C, HW, Wt, B, RM, RV, training, momentum, eps);
      expect(relL2(await read(y), ref.y)).toBeLessThan(1e-5);
      // Running statistics: updated in place when training, untouched in eval.
      expect(relL2(await read(runningMean), ref.newRunningMean)).toBeLessThan(1e-6);
      expect(relL2(await read(runningVar), ref.newRunningVar)).toBeLessThan(1e-6);

      const bw = batchNormBackwardRef(X, DY, N, C, HW, Wt, ref.mean, ref.varUsed, training, eps);
      // Reference gradients against finite differences of the reference forward (through the
      // batch statistics when training).
      const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) =>
        dot(batchNormRef(xx, N, C, HW, ww, bb, RM, RV, training, momentum, eps).y, DY);
      expect(relL2(bw.dx, finiteDiff((v) => loss(v, Wt, B), X, 1e-5))).toBeLessThan(1e-6);
      expect(relL2(bw.dw, finiteDiff((v) => loss(X, v, B), Wt, 1e-5))).toBeLessThan(1e-6);
      expect(relL2(bw.db, finiteDiff((v) => loss(X, Wt, v), B, 1e-5))).toBeLessThan(1e-6);

      expect(relL2(await read(dx!), bw.dx)).toBeLessThan(1e-5);
      expect(relL2(await read(dw!), bw.dw)).toBeLessThan(1e-5);
      expect(relL2(await read(db!), bw.db)).toBeLessThan(1e-5);
    });
  }

  for (const width of [8, 256] as const) it(`training over more values per channel than one workgroup covers, reduction width ${width}`, async () => {
    setBatchNormReductionWidth(width);
    const N = 2, C = 3, H = 23, W = 17, HW = H * W;
    const X = R.randn(N * C * HW).map((v) => Math.fround(v - 1.5)), Wt = R.randn(C), B = R.randn(C), RM = R.randn(C), RV = R.uniform(C, 0.5, 2);
    const x = fromData(X, [N, C, H, W]);
    const runningMean = fromData(RM, [C]), runningVar = fromData(RV, [C]);
    const { y, update } = batchNorm2d(x, { weight: fromData(Wt, [C]), bias: fromData(B, [C]), runningMean, runningVar }, { training: true });
    await realize([y], { effects: [update!] });
    setBatchNormReductionWidth('auto');
    const ref = batchNormRef(X, N, C, HW, Wt, B, RM, RV, true);
    expect(relL2(await read(y), ref.y)).toBeLessThan(1e-5);
    expect(relL2(await read(runningVar), ref.newRunningVar)).toBeLessThan(1e-6);
  });

  it('rejects a parameter of the wrong size', () => {
    const x = fromData(new Float32Array(2 * 3 * 2 * 2), [2, 3, 2, 2]);
    const v = fromData(new Float32Array(3), [3]), bad = fromData(new Float32Array(4), [4]);
    expect(() => batchNorm2d(x, { weight: bad, bias: v, runningMean: v, runningVar: v }, { training: true })).toThrow(/weight/);
  });
});
