import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, read, realize } from '../src/graph/runtime.ts';
import { cpuBits, cpuNormal, cpuUniform, dropout, normalQuantiles, randNormal, randUniform } from '../src/graph/ops/random.ts';
import { erf } from './ref/cpu.ts';
import { mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { abs, expectGradMatchesFiniteDiff, expectWithin, gamma, rng, sumBound } from './util.ts';
import { dropoutRef } from './ref/random.ts';

beforeAll(async () => {
  const r = await init();
  console.log(`adapter: ${r.gpu.adapterName}`);
});

const R = rng('random');
const seedOf = () => Math.floor(R.next() * 2 ** 32);

function mean(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s / a.length;
}
function variance(a: ArrayLike<number>): number {
  const m = mean(a);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - m) ** 2;
  return s / a.length;
}
function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const ma = mean(a), mb = mean(b);
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

describe('random', () => {
  it('randUniform is bit-identical to the CPU generator (odd shapes, 2-D launch grid)', async () => {
    // > 65535·256 elements would need the y fold of grid1d; 3·2^16+odd exercises several
    // hundred workgroups and a ragged last one.
    const shapes = [[R.int(1, 9)], [R.int(2, 40), R.int(2, 40), R.int(1, 7)], [3 * 65536 + R.int(1, 999)]];
    for (const shape of shapes) {
      const seed = seedOf();
      const n = shape.reduce((a, b) => a * b, 1);
      const t = randUniform(shape, seed);
      const got = new Uint32Array((await read(t)).buffer);
      const want = new Uint32Array(cpuUniform(seed, n).buffer);
      let mismatches = 0;
      for (let i = 0; i < n; i++) if (got[i] !== want[i]) mismatches++;
      expect(mismatches, `seed ${seed} shape [${shape}]`).toBe(0);
    }
  });

  it('the stream depends only on (seed, index): prefix property, seeds differ', async () => {
    const seed = seedOf();
    const a = await read(randUniform([1000], seed));
    const b = await read(randUniform([37], seed));
    expect(Array.from(b)).toEqual(Array.from(a.subarray(0, 37)));
    const c = await read(randUniform([1000], (seed + 1) >>> 0));
    let same = 0;
    for (let i = 0; i < 1000; i++) if (a[i] === c[i]) same++;
    expect(same).toBeLessThan(5);
    // cpuBits agrees with cpuUniform's top 24 bits
    expect((cpuBits(seed, 5) >>> 8) / 16777216).toBe(cpuUniform(seed, 6)[5]);
  });

  it('randUniform with a range (f32 affine map of the same uniforms)', async () => {
    const seed = seedOf(), n = R.int(100, 5000);
    const lo = Math.fround(R.uniform(1, -3, 0)[0]), hi = Math.fround(lo + 0.5 + R.next() * 4);
    const got = await read(randUniform([n], seed, lo, hi));
    const u = cpuUniform(seed, n);
    const ref = Float64Array.from(u, (v) => lo + (hi - lo) * v);
    // Not bit-exact: a driver may contract lo + d·u into one fma; f32 rounding only: d = hi − lo,
    // d·u and the sum, three roundings at most (γ₃ of |lo| + d·u).
    expectWithin(got, ref, Float64Array.from(u, (v) => gamma(3) * (Math.abs(lo) + (hi - lo) * v)), 'randUniform range');
    for (const v of got) expect(v >= lo && v < hi).toBe(true);
  });

  it('statistics: uniform moments, 32-bin chi-square, serial and cross-seed correlation', async () => {
    const n = 1 << 18, seed = seedOf();
    const [t1, t2] = [randUniform([n], seed), randUniform([n], (seed ^ 1) >>> 0)];
    await realize([t1, t2]);
    const u = await read(t1), v = await read(t2);
    // mean 1/2 (σ = sqrt(1/12/n) ≈ 5.6e-4), variance 1/12; 6σ bounds.
    expect(Math.abs(mean(u) - 0.5)).toBeLessThan(6 * Math.sqrt(1 / 12 / n));
    expect(Math.abs(variance(u) - 1 / 12)).toBeLessThan(6 * Math.sqrt(1 / 180 / n));
    const bins = new Array(32).fill(0);
    for (const x of u) bins[Math.floor(x * 32)]++;
    const e = n / 32;
    const chi2 = bins.reduce((s, o) => s + (o - e) ** 2 / e, 0);
    // df = 31: P(χ² > 80) ≈ 3e-6.
    expect(chi2).toBeLessThan(80);
    // correlations ~ N(0, 1/n): |r| < 6/sqrt(n) ≈ 0.012
    expect(Math.abs(correlation(u.subarray(1), u.subarray(0, n - 1)))).toBeLessThan(6 / Math.sqrt(n));
    expect(Math.abs(correlation(u, v))).toBeLessThan(6 / Math.sqrt(n));
  });

  it('randNormal is bit-exact against its CPU twin and has N(0, std²) statistics', async () => {
    const seed = seedOf(), std = Math.fround(0.5 + R.next() * 2);
    const small = R.int(1, 3000);
    const got = await read(randNormal([small], seed, std));
    const want = cpuNormal(seed, small, std);
    let mismatches = 0;
    for (let i = 0; i < small; i++) if (got[i] !== want[i]) mismatches++;
    expect(mismatches).toBe(0);
    // The quantile table: Φ(q[k]) = (k + ½)/65536 checked against an independent erf.
    const q = normalQuantiles();
    for (const k of [0, 1, 100, 32767, 32768, 50000, 65535]) {
      const p = 0.5 * (1 + erf(q[k] / Math.SQRT2));
      expect(Math.abs(p - (k + 0.5) / 65536)).toBeLessThan(1e-7 + 1e-6 * Math.min(p, 1 - p));
    }
    const n = 1 << 17;
    const z = await read(randNormal([n], seed, 1));
    expect(Math.abs(mean(z))).toBeLessThan(6 / Math.sqrt(n));
    expect(Math.abs(variance(z) - 1)).toBeLessThan(6 * Math.sqrt(2 / n));
    let inside = 0;
    for (const x of z) if (Math.abs(x) < 1) inside++;
    // P(|z| < 1) = 0.682689; binomial σ = sqrt(p(1−p)/n)
    expect(Math.abs(inside / n - 0.682689)).toBeLessThan(6 * Math.sqrt(0.6827 * 0.3173 / n));
    for (const x of z) expect(Number.isFinite(x)).toBe(true);
  });

  it('dropout forward is bit-exact, keeps ≈ 1−p, p = 0 is the identity', async () => {
    const n = R.int(2000, 20000), p = 0.05 + R.next() * 0.85, seed = seedOf();
    const X = R.randn(n);
    const x = fromData(X, [n]);
    expect(dropout(x, 0, seed)).toBe(x);
    const y = await read(dropout(x, p, seed));
    const ref = dropoutRef(X, p, seed);
    let mismatches = 0, kept = 0;
    for (let i = 0; i < n; i++) {
      if (y[i] !== ref[i]) mismatches++;
      if (ref[i] !== 0) kept++;
    }
    expect(mismatches).toBe(0);
    expect(Math.abs(kept / n - (1 - p))).toBeLessThan(6 * Math.sqrt(p * (1 - p) / n));
  });

  it('dropout backward regenerates the mask from the seed (vs analytic and finite differences)', async () => {
    const shape = [R.int(1, 9), R.int(1, 33)], n = shape[0] * shape[1];
    const p = 0.1 + R.next() * 0.7, seed = seedOf();
    const X = R.randn(n), W = R.randn(n);
    const x = param(fromData(X, shape));
    const w = fromData(W, shape);
    const loss = sumTo(mul(dropout(x, p, seed), w), []);
    const [gx] = grad(loss, [x]);
    // Second-order: the backward is itself dropout, so its own gradient exists.
    await realize([loss, gx!]);
    const f = (v: Float64Array) => {
      const d = dropoutRef(v, p, seed, false);
      let s = 0;
      for (let i = 0; i < n; i++) s += d[i] * W[i];
      return s;
    };
    // Σ (x·scale)·w over n terms: the scale 1/(1 − p) rounded, two products, the sum: γ_{n+3}.
    expectWithin(await read(loss), [f(X)], sumBound([dropoutRef(abs(X), p, seed, false).reduce((t, v, i) => t + v * Math.abs(W[i]), 0)], n + 3), 'dropout loss');
    // Analytic gradient of the reference: mask·scale·w. The mask is fixed by the seed, so
    // the reference is linear in x and central differences are exact up to rounding.
    const analytic = dropoutRef(W, p, seed, false);
    expectGradMatchesFiniteDiff(analytic, f, X, 1e-3, 'reference dropout gradient', { scale: dropoutRef(abs(X), p, seed, false).reduce((t, v, i) => t + v * Math.abs(W[i]), 0) });
    // The backward is a dropout of w: the rounded scale and one product per element.
    expectWithin(await read(gx!), analytic, analytic.map((v) => gamma(2) * Math.abs(v)), 'dropout dx');
  });

  it('rejects bad seeds and p', () => {
    expect(() => randUniform([3], -1)).toThrow(/seed/);
    expect(() => randUniform([3], 1.5)).toThrow(/seed/);
    expect(() => dropout(fromData([1, 2], [2]), 1, 3)).toThrow(/p = 1/);
  });
});
