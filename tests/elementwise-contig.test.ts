// Binary ops whose operands both have the output's shape take the CONTIG kernel path (no
// index arithmetic); against float64 references, gradients against finite differences.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { add, div, maximum, minimum, mul, sub } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { abs, expectGradMatchesFiniteDiff, expectWithin, rng } from './util.ts';
import { binaryRef } from './ref/elementwise-err.ts';

beforeAll(async () => {
  await init();
});

describe('same-shape binary ops (CONTIG path)', () => {
  const R = rng('elementwise-contig');
  const ops: [string, (a: Tensor, b: Tensor) => Tensor, (x: number, y: number) => number][] = [
    ['add', add, (x, y) => x + y],
    ['sub', sub, (x, y) => x - y],
    ['mul', mul, (x, y) => x * y],
    ['div', div, (x, y) => x / y],
    ['maximum', maximum, Math.max],
    ['minimum', minimum, Math.min],
  ];
  for (const [name, fn, f] of ops) {
    it(`${name}, odd rank-3 shape past one workgroup`, async () => {
      const shape = [R.int(1, 4), R.int(5, 17), R.int(7, 23)];
      const n = shape.reduce((p, q) => p * q, 1);
      const A = R.uniform(n, 0.5, 2).map((v) => (R.next() < 0.5 ? -v : v));
      const B = R.uniform(n, 0.5, 2.5);
      const G = R.randn(n);
      const a = param(fromData(A, shape)), b = param(fromData(B, shape));
      const y = fn(a, b);
      const [ga, gb] = grad(y, [a, b], fromData(G, shape));
      await realize([y, ga!, gb!]);
      // Per element within the f32 error model of tests/ref/elementwise-err.ts binaryRef.
      const r = binaryRef(name, A, B, G, (i) => i, (i) => i);
      expectWithin(await read(y), r.y, r.yB, `${name} ${JSON.stringify(shape)} forward`);
      expectWithin(await read(ga!), r.ga, r.gaB, `${name} grad a`);
      expectWithin(await read(gb!), r.gb, r.gbB, `${name} grad b`);
      // The float64 gradients against finite differences on a subset of indices (float64 central
      // differences: errors ~1e-10 relative, ≪ 1e-7). max/min have a kink at a = b: a stencil of
      // ±h that crosses it (|a − b| < h; ~1e-5 per element here) measures the kink, not the
      // gradient, so those elements are left out (seed 1464372540: |a − b| = 4.6e-6).
      const h = 1e-5;
      const smooth = (i: number) => (name !== 'maximum' && name !== 'minimum') || Math.abs(A[i] - B[i]) > 2 * h;
      const idx = Array.from({ length: 16 }, () => R.int(0, n - 1)).filter(smooth);
      const lossAt = (i: number) => (x: Float64Array) => G[i] * f(x[0], x[1]);
      for (const i of idx) expectGradMatchesFiniteDiff([r.ga[i], r.gb[i]], lossAt(i), Float64Array.from([A[i], B[i]]), h, `${name} reference gradient [${i}]`);
    });
  }
});
