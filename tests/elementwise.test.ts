// Activations, broadcasting arithmetic and sumTo against float64 references, with
// gradients checked by finite differences.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { activation, add, addScalar, div, exp, log, maximum, minimum, mul, rsqrt, scale, sqrt, square, sub, sumTo, unary, type UnaryOp } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { dot, finiteDiff, relL2, rng } from './util.ts';
import { act } from './ref/cpu.ts';

beforeAll(async () => {
  await init();
});

const R = rng('elementwise');

const REF: Record<string, (x: number) => number> = {
  ...act,
  exp: Math.exp, log: Math.log, neg: (x) => -x, sqrt: Math.sqrt, square: (x) => x * x, abs: Math.abs, rsqrt: (x) => 1 / Math.sqrt(x),
};

describe('unary ops', () => {
  for (const op of ['relu', 'silu', 'gelu', 'selu', 'telu', 'sigmoid', 'tanh', 'exp', 'log', 'neg', 'sqrt', 'square', 'abs', 'rsqrt'] as UnaryOp[]) {
    it(`${op}: forward and backward`, async () => {
      const n = R.int(1, 3000);
      const positive = ['log', 'sqrt', 'rsqrt'].includes(op);
      // Keep inputs away from kinks (relu/abs at 0) so finite differences are meaningful.
      const X = positive ? R.uniform(n, 0.2, 4) : R.uniform(n, -4, 4).map((v) => (Math.abs(v) < 1e-3 ? 0.5 : v));
      const G = R.randn(n);
      const x = param(fromData(X, [n]));
      const y = unary(op, x);
      const [gx] = grad(y, [x], fromData(G, [n]));
      await realize([y, gx!]);
      const f = REF[op];
      const yRef = X.map(f);
      const tol = op === 'telu' || op === 'gelu' ? 2e-6 : 1e-6;
      expect(relL2(await read(y), yRef)).toBeLessThan(tol);
      const gRef = finiteDiff((xx) => dot(G, xx.map(f)), X, 1e-6);
      // f32 derivative formulas vs float64 central differences.
      expect(relL2(await read(gx!), gRef)).toBeLessThan(1e-5);
    });
  }

  it('activation() names and errors', () => {
    expect(() => activation('swish' as never, fromData([1], [1]))).toThrow(/unknown activation/);
  });

  it('affine helpers', async () => {
    const n = R.int(5, 500);
    const X = R.randn(n);
    const x = fromData(X, [n]);
    const a = scale(x, 2.5), b = addScalar(x, -1.25);
    await realize([a, b]);
    expect(relL2(await read(a), X.map((v) => 2.5 * v))).toBeLessThan(1e-7);
    expect(relL2(await read(b), X.map((v) => v - 1.25))).toBeLessThan(1e-7);
    void [exp, log, sqrt, square, rsqrt];
  });
});

/** Broadcast strides helper for the reference. */
function bidx(shape: number[], out: number[], flat: number): number {
  let rem = flat, idx = 0, stride = 1;
  const off = out.length - shape.length;
  const coords: number[] = [];
  for (let d = out.length - 1; d >= 0; d--) {
    coords[d] = rem % out[d];
    rem = Math.floor(rem / out[d]);
  }
  for (let d = shape.length - 1; d >= 0; d--) {
    idx += (shape[d] === 1 ? 0 : coords[d + off]) * stride;
    stride *= shape[d];
  }
  return idx;
}

describe('broadcasting binary ops', () => {
  const ops: [string, (a: never, b: never) => never, (x: number, y: number) => number][] = [
    ['add', add as never, (x, y) => x + y],
    ['sub', sub as never, (x, y) => x - y],
    ['mul', mul as never, (x, y) => x * y],
    ['div', div as never, (x, y) => x / y],
    ['maximum', maximum as never, Math.max],
    ['minimum', minimum as never, Math.min],
  ];
  for (const [name, fn, f] of ops) {
    it(`${name} with broadcast shapes, gradients summed over broadcast axes`, async () => {
      const full = [R.int(1, 4), R.int(1, 5), R.int(1, 6)];
      const sa = full.map((d) => (R.next() < 0.3 ? 1 : d)).slice(R.int(0, 1));
      const sb = full.map((d) => (R.next() < 0.3 ? 1 : d));
      const off = full.length - sa.length;
      // NumPy broadcast of the two shapes (where both have 1 the output has 1).
      const out = full.map((_, i) => Math.max(sa[i - off] ?? 1, sb[i]));
      const na = sa.reduce((p, q) => p * q, 1), nb = sb.reduce((p, q) => p * q, 1), no = out.reduce((p, q) => p * q, 1);
      const A = R.uniform(na, 0.5, 2).map((v) => (R.next() < 0.5 ? -v : v));
      const B = R.uniform(nb, 0.5, 2.5);
      const G = R.randn(no);
      const a = param(fromData(A, sa)), b = param(fromData(B, sb));
      const y = (fn as unknown as (a: unknown, b: unknown) => ReturnType<typeof add>)(a, b);
      expect(y.shape).toEqual(out);
      const [ga, gb] = grad(y, [a, b], fromData(G, y.shape));
      await realize([y, ga!, gb!]);
      const lossOf = (Ax: Float64Array, Bx: Float64Array) => {
        let s = 0;
        for (let i = 0; i < no; i++) s += G[i] * f(Ax[bidx(sa, out, i)], Bx[bidx(sb, out, i)]);
        return s;
      };
      const yRef = Float64Array.from({ length: no }, (_, i) => f(A[bidx(sa, out, i)], B[bidx(sb, out, i)]));
      expect(relL2(await read(y), yRef)).toBeLessThan(1e-6);
      expect(relL2(await read(ga!), finiteDiff((x) => lossOf(x, B), A, 1e-5))).toBeLessThan(1e-5);
      expect(relL2(await read(gb!), finiteDiff((x) => lossOf(A, x), B, 1e-5))).toBeLessThan(1e-5);
    });
  }

  it('shape errors name the op and shapes', () => {
    expect(() => add(fromData([1, 2, 3], [3]), fromData([1, 2], [2]))).toThrow(/add: shapes \[3\] and \[2\]/);
  });

  it('sumTo reduces leading and size-1 axes', async () => {
    const shape = [R.int(1, 4), R.int(2, 5), R.int(1, 7)];
    const n = shape.reduce((p, q) => p * q, 1);
    const X = R.randn(n);
    const x = fromData(X, shape);
    const s1 = sumTo(x, [shape[1], 1]);
    const s2 = sumTo(x, []);
    await realize([s1, s2]);
    const r1 = new Float64Array(shape[1]);
    for (let i = 0; i < n; i++) r1[Math.floor(i / shape[2]) % shape[1]] += X[i];
    // f32 sums: error bounded relative to Σ|x| (a total near zero makes relative error meaningless).
    const abs1 = new Float64Array(shape[1]);
    for (let i = 0; i < n; i++) abs1[Math.floor(i / shape[2]) % shape[1]] += Math.abs(X[i]);
    const got1 = await read(s1);
    for (let j = 0; j < shape[1]; j++) expect(Math.abs(got1[j] - r1[j])).toBeLessThanOrEqual(1e-6 * abs1[j]);
    const total = X.reduce((p, q) => p + q, 0), absTotal = X.reduce((p, q) => p + Math.abs(q), 0);
    expect(Math.abs((await read(s2))[0] - total)).toBeLessThanOrEqual(1e-6 * absTotal);
  });
});
