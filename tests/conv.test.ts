import { beforeAll, describe, expect, it } from 'vitest';
import { setKernelOverrides } from '../src/graph/kernels/overrides.ts';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { conv2d } from '../src/graph/ops/conv.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectWithin, gamma, relL2, rng } from './util.ts';
import { conv2dBackwardRef, conv2dRef, type ConvGeom, convOut } from './ref/vision.ts';

beforeAll(async () => {
  await init();
});

/** Central differences of f at a few indices of v (f is linear in v: exact up to rounding). */
function fdAt(f: (v: Float64Array) => number, v: Float64Array, idx: number[], h = 1e-3): number[] {
  return idx.map((i) => {
    const y = Float64Array.from(v);
    y[i] = v[i] + h;
    const fp = f(y);
    y[i] = v[i] - h;
    return (fp - f(y)) / (2 * h);
  });
}

describe('conv2d', () => {
  const R = rng('conv');
  const cases: [string, () => ConvGeom, boolean][] = [
    ['3×3 pad 1 stride 1, odd 13×11, bias', () => ({ N: 2, C: R.int(1, 5), H: 13, W: 11, O: R.int(1, 6), K: 3, stride: 1, pad: 1 }), true],
    ['3×3 pad 1 stride 2, odd sizes', () => ({ N: R.int(1, 2), C: R.int(1, 4), H: R.int(5, 13) | 1, W: R.int(4, 12), O: R.int(1, 5), K: 3, stride: 2, pad: 1 }), true],
    ['7×7 pad 3 stride 2 (stem), no bias', () => ({ N: 1, C: 3, H: R.int(9, 17), W: R.int(9, 17), O: R.int(2, 5), K: 7, stride: 2, pad: 3 }), false],
    ['1×1 stride 1, bias', () => ({ N: 2, C: R.int(1, 9), H: R.int(1, 9), W: R.int(1, 9), O: R.int(1, 9), K: 1, stride: 1, pad: 0 }), true],
    // dX runs per stride-parity class: stride 3 with pad 2 (classes with no taps at some offsets).
    ['3×3 pad 2 stride 3, odd sizes', () => ({ N: 2, C: R.int(1, 5), H: R.int(7, 14), W: R.int(7, 14), O: R.int(1, 6), K: 3, stride: 3, pad: 2 }), true],
    ['1×1 stride 2 (downsample), odd, no bias', () => ({ N: 2, C: R.int(1, 6), H: 13, W: 11, O: R.int(1, 6), K: 1, stride: 2, pad: 0 }), false],
    ['3×3 multi-block (M, O and C past one register block)', () => ({ N: 2, C: 20, H: 11, W: 13, O: 70, K: 3, stride: 1, pad: 1 }), true],
    // ≥ 512 rows: full 16-row register blocks and a partial last workgroup (forward and dX).
    ['3×3 with 529 output pixels', () => ({ N: 1, C: R.int(2, 6), H: 23, W: 23, O: R.int(5, 11), K: 3, stride: 1, pad: 1 }), true],
    // ≥ 512 output channels: full register blocks in dW (rows = O), many column groups in the forward.
    ['3×3 with 520 output channels', () => ({ N: 2, C: R.int(1, 2), H: 5, W: 4, O: 520, K: 3, stride: 2, pad: 1 }), false],
  ];
  // Both kernel families on any adapter (register: CPU adapters' default; gemm4: GPUs').
  for (const [name, geom, withBias] of cases) for (const kern of ['register', 'gemm4'] as const) {
    it(`${kern}: ${name}`, async () => {
      setKernelOverrides({ conv: kern });
      const g = geom();
      const [OH, OW] = convOut(g);
      const X = R.randn(g.N * g.C * g.H * g.W), Wt = R.randn(g.O * g.C * g.K * g.K), B = R.randn(g.O), DY = R.randn(g.N * g.O * OH * OW);
      const x = param(fromData(X, [g.N, g.C, g.H, g.W]));
      const w = param(fromData(Wt, [g.O, g.C, g.K, g.K]));
      const b = withBias ? param(fromData(B, [g.O])) : null;
      const y = conv2d(x, w, b, { stride: g.stride, padding: g.pad });
      expect(y.shape).toEqual([g.N, g.O, OH, OW]);
      const grads = grad(y, b ? [x, w, b] : [x, w], fromData(DY, y.shape));
      await realize([y, ...grads.map((t) => t!)]);
      setKernelOverrides({ conv: undefined });

      // Error model (tests/util.ts): each output is a sum of C·K² products (+ bias), each input
      // gradient of at most O·K² products, each weight or bias gradient of N·OH·OW: within γ_n
      // of the same computation on magnitudes (the references run on |X|, |W|, |B|, |DY|).
      const yRef = conv2dRef(X, Wt, withBias ? B : null, g);
      const yMag = conv2dRef(abs(X), abs(Wt), withBias ? abs(B) : null, g);
      expectWithin(await read(y), yRef, yMag.map((m) => gamma(g.C * g.K * g.K + 1) * m), `${kern} ${name}: y`);

      const ref = conv2dBackwardRef(X, Wt, DY, g);
      // The reference gradients against finite differences of the reference forward (the loss
      // Σ dy·y is linear in each operand, so central differences are exact up to rounding).
      const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array | null) => dot(conv2dRef(xx, ww, bb, g), DY);
      const pick = (n: number) => Array.from({ length: Math.min(n, 12) }, () => R.int(0, n - 1));
      const ix = pick(X.length), iw = pick(Wt.length);
      expect(relL2(ix.map((i) => ref.dx[i]), fdAt((v) => loss(v, Wt, null), X, ix))).toBeLessThan(1e-7);
      expect(relL2(iw.map((i) => ref.dw[i]), fdAt((v) => loss(X, v, null), Wt, iw))).toBeLessThan(1e-7);
      // (sampled like dx and dw: the full finite difference over 520 channels cost seconds per run)
      const ib = pick(B.length);
      if (withBias) expect(relL2(ib.map((i) => ref.db[i]), fdAt((v) => loss(X, Wt, v), B, ib))).toBeLessThan(1e-7);

      const mag = conv2dBackwardRef(abs(X), abs(Wt), abs(DY), g), rows = g.N * OH * OW;
      expectWithin(await read(grads[0]!), ref.dx, mag.dx.map((m) => gamma(g.O * g.K * g.K) * m), `${kern} ${name}: dx`);
      expectWithin(await read(grads[1]!), ref.dw, mag.dw.map((m) => gamma(rows) * m), `${kern} ${name}: dw`);
      if (withBias) expectWithin(await read(grads[2]!), ref.db, mag.db.map((m) => gamma(rows) * m), `${kern} ${name}: db`);
    });
  }

  it('rejects mismatched channels and non-square kernels', () => {
    const x = fromData(new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    expect(() => conv2d(x, fromData(new Float32Array(4 * 2 * 3 * 3), [4, 2, 3, 3]), null, {})).toThrow(/input channels/);
    expect(() => conv2d(x, fromData(new Float32Array(4 * 3 * 3 * 1), [4, 3, 3, 1]), null, {})).toThrow(/square/);
  });
});
