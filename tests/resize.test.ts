import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { resizeBilinear } from '../src/graph/ops/resize.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, dot, expectWithin, finiteDiff, gamma, relL2, rng, U32 } from './util.ts';
import { resizeBilinearBackwardRef, resizeBilinearRef } from './ref/vision.ts';

// Error model (tests/util.ts) of shaders/resize.wgsl: the source coordinate
// src = max(scale·(o + 0.5) − 0.5, 0) with scale = in/out rounded, a product and a difference is
// within δ = γ₃·(in + 0.5) of the exact one; its fraction l = src − ⌊src⌋ is exact, 1 − l one
// rounding. Bilinear interpolation is continuous in src (also where ⌊src⌋ changes or the index
// is clamped) with slope |x_{i+1} − x_i| ≤ 2M per axis (M = the channel's max |x|), so
// |Δy| ≤ 2M(δ_y + δ_x) + γ₇·M (the weights' roundings, three products and sums). The backward
// dx_i = Σ_o w_o(i)·dy_o: each weight wy·wx within δ_y + δ_x + 3u, over the outputs whose taps
// (at src or src ± δ) include i, plus γ_n of Σ w·|dy| for its n terms.
function resizeBounds(X: Float64Array, DY: Float64Array, NC: number, H: number, W: number, OH: number, OW: number) {
  const dY = gamma(3) * (H + 0.5), dX = gamma(3) * (W + 0.5);
  const yB = new Float64Array(NC * OH * OW);
  for (let q = 0; q < NC; q++) {
    let M = 0;
    for (let i = 0; i < H * W; i++) M = Math.max(M, Math.abs(X[q * H * W + i]));
    yB.fill(2 * M * (dY + dX) + gamma(7) * M, q * OH * OW, (q + 1) * OH * OW);
  }
  // Outputs o of one axis whose taps may include input i.
  const window = (inS: number, outS: number, d: number) => {
    const w: number[][] = Array.from({ length: inS }, () => []);
    for (let o = 0; o < outS; o++) {
      const src = (o + 0.5) * (inS / outS) - 0.5;
      const hit = new Set<number>();
      for (const s of [src - 2 * d, src, src + 2 * d]) {
        const i0 = Math.min(Math.floor(Math.max(s, 0)), inS - 1);
        hit.add(i0).add(Math.min(i0 + 1, inS - 1));
      }
      for (const i of hit) w[i].push(o);
    }
    return w;
  };
  const wy = window(H, OH, dY), wx = window(W, OW, dX);
  const mag = resizeBilinearBackwardRef(abs(DY), NC, H, W, OH, OW);
  const dxB = new Float64Array(NC * H * W);
  for (let q = 0; q < NC; q++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        let s = 0;
        for (const oh of wy[h]) for (const ow of wx[w]) s += Math.abs(DY[(q * OH + oh) * OW + ow]);
        const i = (q * H + h) * W + w, n = wy[h].length * wx[w].length;
        dxB[i] = 1.001 * ((dY + dX + 3 * U32) * s + gamma(n + 1) * mag[i]);
      }
  return { y: yB, dx: dxB };
}

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
      const fd = finiteDiff((v) => dot(resizeBilinearRef(v, NC, H, W, OH, OW), DY), X, 1e-3);
      expect(relL2(dxRef, fd)).toBeLessThan(1e-8);
      expectWithin(await read(dx!), dxRef, bnd.dx, `${name} dx`);
    });
  }
});
