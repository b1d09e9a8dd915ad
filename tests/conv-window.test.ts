// The forward conv as im2col + matmul's WINDOW kernel, against float64: 3×3 with padding, stride
// 2, 1×1, a 7×7 stem-like kernel (K = 147, not a multiple of 4: the weight is packed), several
// images (NCHW stores across image boundaries), bias or none, and K = C·9 long enough to be summed
// in chunks of the weight's windows.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read } from '../src/graph/runtime.ts';
import { withTrial } from '../src/graph/kernels/catalogue.ts';
import { type ConvGemmConfig, convWindowApplies } from '../src/graph/kernels/conv.ts';
import { type MatmulTiles, windowPlan } from '../src/graph/kernels/matmul.ts';
import { conv2d } from '../src/graph/ops/conv.ts';
import { conv2dRef, convOut } from './ref/vision.ts';
import { expectWithin, gamma, rng } from './util.ts';

beforeAll(async () => {
  await init();
});

const cases = [
  { name: '3×3 pad 1, 2 images, bias', N: 2, C: 5, H: 9, W: 7, O: 11, K: 3, stride: 1, pad: 1, bias: true, RN: 8, chunks: 1 },
  { name: '3×3 stride 2, no bias', N: 3, C: 8, H: 10, W: 11, O: 20, K: 3, stride: 2, pad: 1, bias: false, RN: 16, chunks: 1 },
  { name: '1×1, 16 columns of windows', N: 1, C: 12, H: 6, W: 6, O: 40, K: 1, stride: 1, pad: 0, bias: true, RN: 16, chunks: 1 },
  { name: '7×7 stride 2 pad 3 (stem, K = 147)', N: 2, C: 3, H: 17, W: 15, O: 9, K: 7, stride: 2, pad: 3, bias: true, RN: 8, chunks: 1 },
  { name: 'K = 2340 in chunks', N: 2, C: 260, H: 5, W: 4, O: 12, K: 3, stride: 1, pad: 1, bias: true, RN: 8, chunks: 2 },
];

describe('conv2d forward as im2col + WINDOW against float64', () => {
  const R = rng('conv-window');
  for (const c of cases) {
    it(c.name, async () => {
      const g = { N: c.N, C: c.C, H: c.H, W: c.W, O: c.O, K: c.K, stride: c.stride, pad: c.pad };
      const [OH, OW] = convOut(g);
      const cfg: ConvGemmConfig = { kind: 'window', WG: 8, RM: 8, RN: c.RN };
      const M = c.N * OH * OW;
      expect(convWindowApplies({ pass: 'fwd', ...g, bias: c.bias, M, cols: c.O, CR: c.C })).toBe(true);
      const t: MatmulTiles = { kind: 'window', TM: 0, TN: 0, BK: 0, WG: 8, RM: 8, RN: c.RN };
      expect(windowPlan({ M, N: c.O, K: c.C * c.K * c.K, batch: 1, transA: false, transB: true, bias: c.bias }, t, true)!.nChunks).toBe(c.chunks);
      const X = R.randn(c.N * c.C * c.H * c.W), Wt = R.randn(c.O * c.C * c.K * c.K), B = R.randn(c.O);
      const y = withTrial('conv', cfg, () => conv2d(fromData(X, [c.N, c.C, c.H, c.W]), fromData(Wt, [c.O, c.C, c.K, c.K]), c.bias ? fromData(B, [c.O]) : null, { stride: c.stride, padding: c.pad }));
      expect(y.shape).toEqual([c.N, c.O, OH, OW]);
      const zero = new Float64Array(c.O);
      const ref = conv2dRef(X, Wt, c.bias ? B : zero, g);
      const mag = conv2dRef(X.map(Math.abs), Wt.map(Math.abs), (c.bias ? B : zero).map(Math.abs), g);
      // Length-L f32 dot products (L = C·K² + 1 with the bias): |error| ≤ γ_L · Σ|terms|.
      expectWithin(await read(y), ref, (i) => gamma(c.C * c.K * c.K + 1) * mag[i] + 1e-30, c.name);
    });
  }
});
