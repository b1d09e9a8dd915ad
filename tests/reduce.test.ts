import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { argmax, max, mean, sum } from '../src/graph/ops/reduce.ts';
import { grad, param } from '../src/graph/autograd.ts';
import type { Tensor } from '../src/graph/tensor.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, gamma, relL2, rng } from './util.ts';
import { axisSplit, maxBackRef, maxRef, numel, sumBackRef, sumRef } from './ref/nn.ts';

beforeAll(async () => {
  await init();
});

const R = rng('reduce');

function randomShape(): number[] {
  const rank = R.int(1, 4);
  return Array.from({ length: rank }, () => R.int(1, 9));
}

type Op = 'sum' | 'mean' | 'max';
const OPS: Record<Op, (x: Tensor, axis: number, keepdim?: boolean) => Tensor> = { sum, mean, max };

function refOf(op: Op, X: Float64Array, shape: number[], axis: number): Float64Array {
  if (op === 'max') return maxRef(X, shape, axis).y;
  return sumRef(X, shape, axis, op === 'mean' ? 1 / axisSplit(shape, axis).n : 1);
}

function backRefOf(op: Op, X: Float64Array, W: Float64Array, shape: number[], axis: number): Float64Array {
  if (op === 'max') return maxBackRef(W, maxRef(X, shape, axis).idx, shape, axis);
  return sumBackRef(W, shape, axis, op === 'mean' ? 1 / axisSplit(shape, axis).n : 1);
}

/** Forward and backward of `op` on GPU against the float64 reference (and the reference's gradient by finite differences). */
async function check(op: Op, shape: number[], axis: number, keepdim: boolean, fd: boolean) {
  const X = R.randn(numel(shape));
  const x = param(fromData(X, shape));
  const y = OPS[op](x, axis, keepdim);
  const a = axis < 0 ? axis + shape.length : axis;
  const want = keepdim ? shape.map((s, i) => (i === a ? 1 : s)) : shape.filter((_, i) => i !== a);
  expect(y.shape).toEqual(want);
  const W = R.randn(y.size);
  const [gx] = grad(y, [x], fromData(W, y.shape));
  await realize([y, gx!]);
  const ref = refOf(op, X, shape, axis);
  const gref = backRefOf(op, X, W, shape, axis);
  // Max selects one input exactly: the GPU must match bit for bit. A sum of n terms (any order) is
  // within γ_{n−1}·Σ|x|; mean's scale by 1/n adds two roundings (1/n, the product); the sum's
  // backward broadcasts w exactly, mean's scales it (two roundings).
  const n = axisSplit(shape, axis).n;
  const yBound = op === 'max' ? 0 : refOf(op, abs(X), shape, axis).map((m) => gamma(n + 1) * m);
  const gBound = op === 'max' ? 0 : op === 'sum' ? 0 : gref.map((g) => gamma(2) * Math.abs(g));
  expectWithin(await read(y), ref, yBound, `${op} over axis ${axis} of ${JSON.stringify(shape)}`);
  expectWithin(await read(gx!), gref, gBound, `${op} backward over axis ${axis} of ${JSON.stringify(shape)}`);
  if (fd) {
    // Loss Σ W·op(x) is piecewise linear in x: differences are exact up to rounding
    // (for max, ties are measure-zero with normal inputs and h is far below the gaps).
    const f = (xx: Float64Array) => dot(W, refOf(op, xx, shape, axis));
    expectGradMatchesFiniteDiff(gref, f, X, 1e-7, 'reference gradient');
  }
}

describe('reduce', () => {
  for (const op of ['sum', 'mean', 'max'] as Op[]) {
    it(`${op}: random small shapes and axes (negative too), keepdim both ways`, async () => {
      for (let k = 0; k < 4; k++) {
        const shape = randomShape();
        const axis = R.int(0, shape.length - 1) - (R.next() < 0.5 ? shape.length : 0);
        await check(op, shape, axis, R.next() < 0.5, true);
      }
    });
    it(`${op}: long contiguous rows and wide strided columns (several tiles)`, async () => {
      await check(op, [R.int(1, 3), R.int(300, 700)], -1, false, false);
      await check(op, [R.int(1, 3), R.int(20, 40), R.int(65, 150)], 1, true, false);
      await check(op, [R.int(200, 400), R.int(5, 12)], 0, false, false);
      // More output rows than one grid dimension holds (65535 workgroups).
      await check(op, [R.int(65536, 68000), 2], 1, false, false);
    });
  }

  it('max routes the gradient to the first of tied maxima', async () => {
    const shape = [R.int(2, 5), R.int(20, 40), R.int(1, 5)];
    // Values from a tiny set so most columns have ties for the maximum.
    const X = Float64Array.from({ length: numel(shape) }, () => R.int(0, 3));
    const x = param(fromData(X, shape));
    const y = max(x, 1);
    const W = R.randn(y.size);
    const [gx] = grad(y, [x], fromData(W, y.shape));
    await realize([y, gx!]);
    const { y: yr, idx } = maxRef(X, shape, 1);
    expect(Array.from(await read(y))).toEqual(Array.from(yr));
    expect(relL2(await read(gx!), maxBackRef(W, idx, shape, 1))).toBe(0);
  });

  it('argmax: index of the first maximum, NaN counting as the maximum (torch.argmax), f32 and f16, any axis', async () => {
    // Exact: an index, compared with a sequential scan. Values from a tiny set (most rows tie),
    // with ±Infinity and NaN sprinkled in, NaN sometimes first.
    const ref = (X: ArrayLike<number>, shape: number[], axis: number) => {
      const { outer, n, inner } = axisSplit(shape, axis);
      const out = new Int32Array(outer * inner);
      for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
        let bi = 0;
        for (let j = 1; j < n; j++) {
          const v = X[(o * n + j) * inner + i], b = X[(o * n + bi) * inner + i];
          if (Number.isNaN(b)) break;
          if (Number.isNaN(v) || v > b) bi = j;
        }
        out[o * inner + i] = bi;
      }
      return out;
    };
    for (const dtype of ['f32', 'f16'] as const) for (let t = 0; t < 6; t++) {
      const shape = t < 2 ? [R.int(1, 5), R.int(1, 700)] : [R.int(1, 4), R.int(1, 40), R.int(1, 70)];
      const axis = t < 2 ? 1 : R.int(0, 2);
      const X = Float64Array.from({ length: numel(shape) }, () => {
        const u = R.next();
        return u < 0.02 ? NaN : u < 0.04 ? Infinity : u < 0.06 ? -Infinity : R.int(-3, 3);
      });
      const got = await read(argmax(fromData(X, shape, dtype), axis));
      const what = `${dtype} [${shape}] axis ${axis}`;
      expect(Array.from(got), what).toEqual(Array.from(ref(X, shape, axis)));
      const kept = argmax(fromData(X, shape, dtype), axis, true);
      expect(kept.shape, what).toEqual(shape.map((s, i) => (i === axis ? 1 : s)));
      expect(kept.dtype).toBe('i32');
    }
  });

  it('rejects a bad axis', () => {
    const x = fromData([1, 2, 3], [3]);
    expect(() => sum(x, 1)).toThrow(/axis 1 out of range/);
    expect(() => max(x, -2)).toThrow(/axis -2 out of range/);
  });
});
