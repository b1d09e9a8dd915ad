// rmsNorm's row reductions at both widths on any adapter: 8 lanes (CPU adapters' default)
// and the GPU widths (32–256 by row length), against the float64 reference.
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { rmsNorm } from '../src/graph/ops/norm.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { expectWithin, rng } from './util.ts';
import { numel, rmsNormBackRef, rmsNormBounds, rmsNormRef } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});
afterAll(() => setKernelOverrides({ rmsNormWidth: undefined }));

describe('rmsNorm row-reduction widths', () => {
  const R = rng('norm-width');
  for (const width of [8, 'gpu'] as const) {
    it(`width ${width}: short, odd and long rows`, async () => {
      setKernelOverrides({ rmsNormWidth: width });
      // D ≥ 2: with one feature y = ±w, dx = r·w·dy·eps/(x²+eps) is pure f32 cancellation.
      for (const shape of [[R.int(1, 4), R.int(2, 7)], [R.int(3, 9), R.int(33, 90)], [2, R.int(257, 600)]]) {
        const D = shape[shape.length - 1];
        const X = R.randn(numel(shape)), Wt = R.uniform(D, 0.5, 1.5), G = R.randn(numel(shape));
        const x = param(fromData(X, shape)), w = param(fromData(Wt, [D]));
        const y = rmsNorm(x, w, 1e-6);
        const [gx, gw] = grad(y, [x, w], fromData(G, shape));
        await realize([y, gx!, gw!]);
        const { dx, dw } = rmsNormBackRef(X, Wt, G, D, 1e-6);
        const bound = rmsNormBounds(X, Wt, G, D, 1e-6);
        expectWithin(await read(y), rmsNormRef(X, Wt, D, 1e-6), bound.y, `width ${width} ${JSON.stringify(shape)} y`);
        expectWithin(await read(gx!), dx, bound.dx, `width ${width} ${JSON.stringify(shape)} dx`);
        expectWithin(await read(gw!), dw, bound.dw, `width ${width} ${JSON.stringify(shape)} dw`);
      }
    });
  }
});
