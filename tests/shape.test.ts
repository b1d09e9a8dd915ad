// Shape ops (reshape view, permute, slice, concat, split) and the autograd core: gradient
// accumulation where a tensor is used twice, liveness reuse inside one submission.
import { beforeAll, describe, expect, it } from 'vitest';
import { fromData, init, lastStats, read, realize, runtime } from '../src/graph/runtime.ts';
import { add, mul, sumTo } from '../src/graph/ops/elementwise.ts';
import { matmul } from '../src/graph/ops/matmul.ts';
import { concat, permute, reshape, slice, split, transpose } from '../src/graph/ops/shape.ts';
import { grad, param } from '../src/graph/autograd.ts';
import { expectWithin, gamma, relL2, rng } from './util.ts';

beforeAll(async () => {
  await init();
});

const R = rng('shape');

function strides(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

function permuteRef(X: Float64Array, shape: number[], perm: number[]): Float64Array {
  const out = perm.map((p) => shape[p]);
  const xs = strides(shape), os = strides(out);
  const Y = new Float64Array(X.length);
  for (let i = 0; i < X.length; i++) {
    let rem = i, src = 0;
    for (let d = 0; d < out.length; d++) {
      const c = Math.floor(rem / os[d]);
      rem %= os[d];
      src += c * xs[perm[d]];
    }
    Y[i] = X[src];
  }
  return Y;
}

describe('shape ops', () => {
  it('permute of random rank-2..5 tensors, and its gradient is the inverse permute', async () => {
    for (let k = 0; k < 4; k++) {
      const rank = R.int(2, 5);
      const shape = Array.from({ length: rank }, () => R.int(1, 5));
      const perm = shape.map((_, i) => i).sort(() => R.next() - 0.5);
      const n = shape.reduce((a, b) => a * b, 1);
      const X = R.randn(n), G = R.randn(n);
      const x = param(fromData(X, shape));
      const y = permute(x, perm);
      const [gx] = grad(y, [x], fromData(G, y.shape));
      await realize([y, gx!]);
      expect(Array.from(await read(y))).toEqual(Array.from(permuteRef(X, shape, perm)));
      const inv: number[] = [];
      perm.forEach((p, i) => (inv[p] = i));
      expect(Array.from(await read(gx!))).toEqual(Array.from(permuteRef(G, y.shape, inv)));
    }
  });

  it('slice / concat / split round trip and gradients', async () => {
    const shape = [R.int(1, 4), R.int(3, 9), R.int(1, 5)];
    const n = shape.reduce((a, b) => a * b, 1);
    const X = R.randn(n);
    const x = param(fromData(X, shape));
    const a = R.int(1, shape[1] - 2), b = R.int(1, shape[1] - a - 1);
    const parts = split(x, [a, b, shape[1] - a - b], 1);
    const back = concat([parts[2], parts[0], parts[1]], 1);
    const W = R.randn(n);
    const loss = sumTo(mul(back, fromData(W, back.shape)), []);
    const [gx] = grad(loss, [x]);
    await realize([back, gx!, parts[1]]);
    // Reference: rotate the middle axis.
    const ref = new Float64Array(n), gRef = new Float64Array(n);
    const order = [...Array(shape[1]).keys()].slice(a + b).concat([...Array(a + b).keys()]);
    for (let i = 0; i < shape[0]; i++)
      for (let j = 0; j < shape[1]; j++)
        for (let k = 0; k < shape[2]; k++) {
          const dst = (i * shape[1] + j) * shape[2] + k, src = (i * shape[1] + order[j]) * shape[2] + k;
          ref[dst] = X[src];
          gRef[src] = W[dst];
        }
    expect(Array.from(await read(back))).toEqual(Array.from(ref));
    expect(Array.from(await read(gx!))).toEqual(Array.from(gRef));
    const mid = await read(parts[1]);
    expect(mid.length).toBe(shape[0] * b * shape[2]);
    expect(() => slice(x, 1, shape[1] - 1, 2)).toThrow(/out of range/);
    // A part that differs off the concat axis (its first axis is one longer): [1, 1, 1] alone
    // would be a valid part when the drawn shape is [1, s, 1] (seed 1507437097).
    const off = [shape[0] + 1, 1, shape[2]];
    expect(() => concat([x, fromData(new Float32Array(off[0] * off[2]), off)], 1)).toThrow(/does not match/);
  });

  it('reshape is a free view (no dispatch) and transpose swaps two axes', async () => {
    const X = R.randn(24);
    const x = fromData(X, [2, 3, 4]);
    const v = reshape(x, [6, -1]);
    expect(v.shape).toEqual([6, 4]);
    await realize([v]);
    expect(lastStats.dispatches).toBe(0);
    expect(Array.from(await read(v))).toEqual(Array.from(Float32Array.from(X)));
    const t = transpose(x, 0, 2);
    expect(t.shape).toEqual([4, 3, 2]);
    expect(Array.from(await read(t))).toEqual(Array.from(permuteRef(X, [2, 3, 4], [2, 1, 0])).map(Math.fround));
    expect(() => reshape(x, [5, 5])).toThrow(/cannot view/);
  });
});

describe('autograd and scheduler', () => {
  it('gradients accumulate where a tensor is used more than once', async () => {
    // f(x) = sum(x·x + x·W·x…): x feeds three ops; df/dx = 2x + (W + Wᵀ)x summed as rows.
    const n = R.int(2, 12);
    const X = R.randn(n * n), W = R.randn(n * n);
    const x = param(fromData(X, [n, n]));
    const w = fromData(W, [n, n]);
    const f = sumTo(add(mul(x, x), matmul(matmul(x, w), x, { transA: false })), []);
    const [gx] = grad(f, [x]);
    await realize([f, gx!]);
    // Reference gradient by central differences (f is quadratic: exact up to rounding).
    const F = (xx: Float64Array) => {
      let s = 0;
      for (let i = 0; i < n * n; i++) s += xx[i] * xx[i];
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let v = 0;
          for (let k = 0; k < n; k++) {
            let xw = 0;
            for (let m = 0; m < n; m++) xw += xx[i * n + m] * W[m * n + k];
            v += xw * xx[k * n + j];
          }
          s += v;
        }
      return s;
    };
    const g = new Float64Array(n * n);
    for (let i = 0; i < n * n; i++) {
      const p = Float64Array.from(X), m = Float64Array.from(X);
      p[i] += 1e-3;
      m[i] -= 1e-3;
      g[i] = (F(p) - F(m)) / 2e-3;
    }
    // The float64 gradient 2X_ab + Σ_k W_bk·Σ_j X_kj + Σ_i Σ_m X_im·W_ma against them (~1e-13).
    const ga = new Float64Array(n * n), mag = new Float64Array(n * n);
    for (let a = 0; a < n; a++)
      for (let b = 0; b < n; b++) {
        let t = 2 * X[a * n + b], m = 2 * Math.abs(X[a * n + b]);
        for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) { t += W[b * n + k] * X[k * n + j]; m += Math.abs(W[b * n + k] * X[k * n + j]); }
        for (let i = 0; i < n; i++) for (let q = 0; q < n; q++) { t += X[i * n + q] * W[q * n + a]; m += Math.abs(X[i * n + q] * W[q * n + a]); }
        ga[a * n + b] = t; mag[a * n + b] = m;
      }
    expect(relL2(ga, g)).toBeLessThan(1e-7);
    // The GPU's: every term passes at most two n-term sums (the two products' backward) and the
    // three-way accumulation: γ_{2n+3}·Σ|terms| per element (tests/util.ts).
    expectWithin(await read(gx!), ga, mag.map((m) => gamma(2 * n + 3) * m), 'accumulated gradient');
  });

  it('a chain of ops reuses freed buffers within one submission (liveness)', async () => {
    const n = 4096;
    let x = fromData(R.randn(n), [n]);
    const x0 = x;
    for (let i = 0; i < 40; i++) x = add(x, x0);
    const before = runtime().pool.liveBytes;
    const stats = await realize([x]);
    expect(stats.submissions).toBe(1);
    expect(stats.dispatches).toBe(40);
    // 40 intermediates of 16 KiB each, but at most two are alive at once.
    expect(stats.peakBytes - before).toBeLessThanOrEqual(2 * 16384);
  });

  it('reading a tensor freed after its last use is a clear error', async () => {
    const a = fromData([1, 2, 3], [3]);
    const b = add(a, a);
    const c = add(b, a);
    await realize([c]);
    await expect(read(b)).rejects.toThrow(/already freed/);
  });
});
