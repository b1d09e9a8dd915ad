import { describe, expect, it } from 'vitest';
import { dot, expectGradMatchesFiniteDiff, rng } from './util.ts';

// The gradient check every float64 reference backward goes through (tests/util.ts): it must pass
// a right gradient whatever its size against |f|/h, and fail a wrong one.
describe('expectGradMatchesFiniteDiff', () => {
  const R = rng('finite-diff');
  // f(x) = Σ g_i·tanh(a_i·x_i) + Σ x_i·x_{i+1}·b_i + c: smooth, every term in the gradient.
  const make = (n: number) => {
    const a = R.uniform(n, 0.5, 2), b = R.randn(n), g = R.randn(n), X = R.randn(n);
    const f = (x: Float64Array) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += g[i] * Math.tanh(a[i] * x[i]) + (i + 1 < n ? b[i] * x[i] * x[i + 1] : 0);
      return s;
    };
    const grad = Float64Array.from(X, (v, i) =>
      g[i] * a[i] / Math.cosh(a[i] * v) ** 2 + (i + 1 < n ? b[i] * X[i + 1] : 0) + (i > 0 ? b[i - 1] * X[i - 1] : 0));
    return { f, grad, X, g, a, b };
  };

  it('passes the exact gradient, and fails a dropped term, a sign, a 1e-4 scale', () => {
    const n = R.int(1, 40);
    const { f, grad, X, g, a } = make(n);
    for (const h of [1e-3, 1e-5, 1e-7]) expectGradMatchesFiniteDiff(grad, f, X, h, `exact, h ${h}`);
    // The neighbour coupling dropped (when there is one), one sign flipped, all scaled by 1 + 1e-4.
    const dropped = Float64Array.from(X, (v, i) => g[i] * a[i] / Math.cosh(a[i] * v) ** 2);
    const i = R.int(0, n - 1), sign = Float64Array.from(grad);
    sign[i] = -sign[i];
    const scaled = grad.map((v) => v * (1 + 1e-4));
    if (n > 1 && dot(dropped.map((v, j) => v - grad[j]), dropped.map((v, j) => v - grad[j])) > 1e-12) {
      expect(() => expectGradMatchesFiniteDiff(dropped, f, X, 1e-5, 'dropped')).toThrow(/dropped: ‖gradient − central differences‖/);
    }
    if (Math.abs(grad[i]) > 1e-6) expect(() => expectGradMatchesFiniteDiff(sign, f, X, 1e-5, 'sign')).toThrow(/sign/);
    expect(() => expectGradMatchesFiniteDiff(scaled, f, X, 1e-5, 'scaled')).toThrow(/scaled/);
  });

  it('passes a gradient far below |f|·u/h (where a fixed relative threshold fails)', () => {
    // f = C + ε·(smooth f above): the differences carry C's rounding, u·C/h ≈ 1e-8 per element at
    // h = 1e-5, ~1e-4 of a gradient of size ε = 1e-4 — far above a fixed 1e-6 relative threshold,
    // the case batch norm over 2 values per channel hit; the floor 2⁸·u·C/h is 2.8e-6.
    const n = R.int(2, 30);
    const { f, grad, X } = make(n);
    const C = 1e3, eps = 1e-4;
    const fc = (x: Float64Array) => C + eps * f(x);
    expectGradMatchesFiniteDiff(grad.map((v) => eps * v), fc, X, 1e-5, 'small gradient', { scale: C });
    // …and still sees a gradient that is wrong by its own size.
    expect(() => expectGradMatchesFiniteDiff(grad.map((v) => 2 * eps * v), fc, X, 1e-5, 'small doubled', { scale: C })).toThrow(/small doubled/);
  });

  it('leaves out the elements whose stencil crosses a kink', () => {
    const n = R.int(2, 20), X = R.randn(n), k = R.int(0, n - 1);
    X[k] = 1e-7; // |x| at 1e-7 with h = 1e-5: the stencil crosses 0
    const f = (x: Float64Array) => x.reduce((s, v) => s + Math.abs(v), 0);
    const grad = X.map(Math.sign);
    expect(() => expectGradMatchesFiniteDiff(grad, f, X, 1e-5, 'kink', { scale: n * 3 })).toThrow(/kink/);
    expectGradMatchesFiniteDiff(grad, f, X, 1e-5, 'kink skipped', { skip: (i) => i === k, scale: n * 3 });
  });
});
