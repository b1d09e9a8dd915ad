import { beforeAll, describe, expect, it } from 'vitest';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { batchNorm2d } from '../src/graph/ops/batchnorm.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, rng } from './util.ts';
import { batchNormBackwardRef, batchNormBounds, batchNormRef } from './ref/vision.ts';

beforeAll(async () => {
  await init();
});

// Error model: tests/ref/vision.ts batchNormBounds.

describe('batchNorm2d', () => {
  const R = rng('batchnorm');
  // Both channel-reduction widths on any adapter (8: CPU adapters' default, 256: GPUs').
  for (const training of [true, false]) for (const width of [8, 256] as const) {
    it(`${training ? 'training (batch statistics, running-stat update)' : 'eval (running statistics)'}, odd sizes, reduction width ${width}`, async () => {
      setKernelOverrides({ batchNormWidth: width });
      const N = R.int(1, 3), C = R.int(1, 6), H = R.int(1, 9) | 1, W = R.int(2, 8);
      // f32 momentum and ε: the kernel and the reference see the same values.
      const HW = H * W, momentum = Math.fround(training ? 0.1 + 0.3 * R.next() : 0.1), eps = Math.fround(1e-5);
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
      setKernelOverrides({ batchNormWidth: undefined });

      const ref = batchNormRef(X, N, C, HW, Wt, B, RM, RV, training, momentum, eps);
      const bw = batchNormBackwardRef(X, DY, N, C, HW, Wt, ref.mean, ref.varUsed, training, eps);
      const bound = batchNormBounds(X, DY, N, C, HW, Wt, B, RM, RV, momentum, eps, training, ref, bw.dw, bw.db);
      expectWithin(await read(y), ref.y, bound.y, 'y');
      // Running statistics: updated in place when training, untouched (bit-exact) in eval. The
      // earlier relative-L2 bound 1e-6 failed for seed 1242465562: (1 − m)·r + m·μ cancels when
      // r ≈ −m·μ/(1 − m), and a norm-relative bound cannot see that; the bound is per channel.
      expectWithin(await read(runningMean), ref.newRunningMean, training ? bound.runningMean : 0, 'running mean');
      expectWithin(await read(runningVar), ref.newRunningVar, training ? bound.runningVar : 0, 'running variance');

      // Reference gradients against finite differences of the reference forward (through the
      // batch statistics when training).
      const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) =>
        dot(batchNormRef(xx, N, C, HW, ww, bb, RM, RV, training, momentum, eps).y, DY);
      // The loss Σ y·dy cancels: its rounding scales with Σ|y·dy|.
      const scale = dot(abs(ref.y), abs(DY));
      expectGradMatchesFiniteDiff(bw.dx, (v) => loss(v, Wt, B), X, 1e-5, 'reference dx', { scale });
      expectGradMatchesFiniteDiff(bw.dw, (v) => loss(X, v, B), Wt, 1e-5, 'reference dweight', { scale });
      expectGradMatchesFiniteDiff(bw.db, (v) => loss(X, Wt, v), B, 1e-5, 'reference dbias', { scale });

      expectWithin(await read(dx!), bw.dx, bound.dx, 'dx');
      expectWithin(await read(dw!), bw.dw, bound.dw, 'dweight');
      expectWithin(await read(db!), bw.db, bound.db, 'dbias');
    });
  }

  for (const width of [8, 256] as const) it(`training over more values per channel than one workgroup covers, reduction width ${width}`, async () => {
    setKernelOverrides({ batchNormWidth: width });
    const N = 2, C = 3, H = 23, W = 17, HW = H * W;
    const X = R.randn(N * C * HW).map((v) => Math.fround(v - 1.5)), Wt = R.randn(C), B = R.randn(C), RM = R.randn(C), RV = R.uniform(C, 0.5, 2);
    const x = fromData(X, [N, C, H, W]);
    const runningMean = fromData(RM, [C]), runningVar = fromData(RV, [C]);
    const { y, update } = batchNorm2d(x, { weight: fromData(Wt, [C]), bias: fromData(B, [C]), runningMean, runningVar }, { training: true });
    await realize([y], { effects: [update!] });
    setKernelOverrides({ batchNormWidth: undefined });
    const momentum = Math.fround(0.1), eps = Math.fround(1e-5);
    const ref = batchNormRef(X, N, C, HW, Wt, B, RM, RV, true, momentum, eps);
    const zeros = new Float64Array(X.length);
    const bound = batchNormBounds(X, zeros, N, C, HW, Wt, B, RM, RV, momentum, eps, true, ref, new Float64Array(C), new Float64Array(C));
    expectWithin(await read(y), ref.y, bound.y, 'y');
    expectWithin(await read(runningMean), ref.newRunningMean, bound.runningMean, 'running mean');
    expectWithin(await read(runningVar), ref.newRunningVar, bound.runningVar, 'running variance');
  });

  it('rejects a parameter of the wrong size', () => {
    const x = fromData(new Float32Array(2 * 3 * 2 * 2), [2, 3, 2, 2]);
    const v = fromData(new Float32Array(3), [3]), bad = fromData(new Float32Array(4), [4]);
    expect(() => batchNorm2d(x, { weight: bad, bias: v, runningMean: v, runningVar: v }, { training: true })).toThrow(/weight/);
  });
});
