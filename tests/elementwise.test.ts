// Activations, broadcasting arithmetic and sumTo against float64 references, with
// gradients checked by finite differences.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { activation, add, addScalar, div, exp, log, maximum, minimum, mul, rsqrt, scale, sqrt, square, sub, sumTo, unary, type UnaryOp } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { planSchedule } from '../src/graph/scheduler.ts';
import { abs, dot, expectGradMatchesFiniteDiff, expectWithin, gamma, rng, sumBound, U32 } from './util.ts';
import { act } from './ref/cpu.ts';
import { actGrad } from './ref/moe.ts';
import { binaryRef, unaryErr, unaryGradErr } from './ref/elementwise-err.ts';

beforeAll(async () => {
  await init();
});

const R = rng('elementwise');

const REF: Record<string, (x: number) => number> = {
  ...act,
  exp: Math.exp, log: Math.log, neg: (x) => -x, sqrt: Math.sqrt, square: (x) => x * x, abs: Math.abs, rsqrt: (x) => 1 / Math.sqrt(x),
};
/** f′ in float64 (checked against finite differences of REF below). */
const DREF: Record<string, (x: number) => number> = {
  ...actGrad,
  sigmoid: (x) => { const s = 1 / (1 + Math.exp(-x)); return s * (1 - s); },
  tanh: (x) => 1 - Math.tanh(x) ** 2,
  exp: Math.exp, log: (x) => 1 / x, neg: () => -1, sqrt: (x) => 0.5 / Math.sqrt(x), square: (x) => 2 * x,
  abs: Math.sign, rsqrt: (x) => -0.5 * x ** -1.5,
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
      const f = REF[op], df = DREF[op];
      const yRef = X.map(f);
      // Per element within the error model of the kernel's formula (test./ref/elementwise-err.ts).
      expectWithin(await read(y), yRef, X.map((v) => unaryErr(op, v)), `${op} forward`);
      // dx = dy·f′(x): f′'s formula error times |dy|, and the product's rounding.
      const gRef = X.map((v, i) => G[i] * df(v));
      expectWithin(await read(gx!), gRef, X.map((v, i) => Math.abs(G[i]) * unaryGradErr(op, v) + U32 * Math.abs(gRef[i])), `${op} backward`);
      // The float64 derivative itself against central differences (float64: truncation h²·f‴/6
      // and rounding 1e-16·|f|/h, both ≪ 1e-7 of these O(1) values away from the kinks).
      if (n <= 500) expectGradMatchesFiniteDiff(gRef, (xx) => dot(G, xx.map(f)), X, 1e-6, `${op} reference derivative`, { scale: dot(abs(G), abs(yRef)) });
    });
  }

  it('relu: the backward reads the output (gradient 0 at x ≤ 0, as torch\'s threshold_backward), so the input is not held for it', async () => {
    const X = [-2, -0, 0, 1e-30, 3, -1e-3, 5, -1e-30];
    const G = [1, 2, 3, 4, 5, 6, 7, 8];
    const p = param(fromData(X, [X.length]));
    const x = scale(p, 1); // an input computed in the step, as a BatchNorm's output is
    const y = unary('relu', x);
    const [gp] = grad(y, [p], fromData(G, [X.length]));
    const plan = planSchedule([y, gp!], [], (t) => t === y || t === gp);
    const at = plan.steps.findIndex((st) => st.node === y.node);
    // x is released by relu itself; the gradient node reads y.
    expect(plan.lifetimes.get(x)!.end).toBe(at);
    await realize([y, gp!]);
    expect([...await read(gp!)]).toEqual(X.map((v, i) => (v > 0 ? G[i] : 0)));
  });

  it('activation() names and errors', () => {
    expect(() => activation('swish' as never, fromData([1], [1]))).toThrow(/unknown activation/);
  });

  it('affine helpers', async () => {
    const n = R.int(5, 500);
    const X = R.randn(n);
    const x = fromData(X, [n]);
    const a = scale(x, 2.5), b = addScalar(x, -1.25);
    await realize([a, b]);
    // alpha·x + beta: a product and a sum, two roundings at most.
    expectWithin(await read(a), X.map((v) => 2.5 * v), X.map((v) => gamma(2) * 2.5 * Math.abs(v)), 'scale');
    expectWithin(await read(b), X.map((v) => v - 1.25), X.map((v) => gamma(2) * (Math.abs(v) + 1.25)), 'addScalar');
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
      // Per element within the f32 error model of tests/ref/elementwise-err.ts binaryRef.
      const r = binaryRef(name, A, B, G, (i) => bidx(sa, out, i), (i) => bidx(sb, out, i));
      expectWithin(await read(y), r.y, r.yB, `${name} ${JSON.stringify(sa)} ${JSON.stringify(sb)} forward`);
      expectWithin(await read(ga!), r.ga, r.gaB, `${name} grad a`);
      expectWithin(await read(gb!), r.gb, r.gbB, `${name} grad b`);
      // The float64 gradients against central differences. max/min have a kink at a = b: where an
      // output's pair is within the stencil (|a − b| ≤ 2h; ~1e-5 per pair) the difference of
      // both of its inputs measures the kink, not the gradient, so those inputs are left out.
      const h = 1e-5, nearA = new Set<number>(), nearB = new Set<number>();
      if (name === 'maximum' || name === 'minimum') {
        for (let i = 0; i < no; i++) {
          const ia = bidx(sa, out, i), ib = bidx(sb, out, i);
          if (Math.abs(A[ia] - B[ib]) <= 2 * h) nearA.add(ia), nearB.add(ib);
        }
      }
      expectGradMatchesFiniteDiff(r.ga, (x) => lossOf(x, B), A, h, `${name} reference grad a`, { skip: (i) => nearA.has(i) });
      expectGradMatchesFiniteDiff(r.gb, (x) => lossOf(A, x), B, h, `${name} reference grad b`, { skip: (i) => nearB.has(i) });
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
    // γ_n·Σ|x| for n-term sums in any order.
    expectWithin(got1, r1, sumBound(abs1, n / shape[1]), 'sumTo [S1,1]');
    const total = X.reduce((p, q) => p + q, 0), absTotal = X.reduce((p, q) => p + Math.abs(q), 0);
    expectWithin(await read(s2), [total], sumBound([absTotal], n), 'sumTo []');
  });
});
