// Test helpers: seeded random data (seed logged, fresh each run unless MICAR_SEED is set),
// error measures, and float64 finite differences.

declare const Deno: { env: { get(k: string): string | undefined } } | undefined;

export function envVar(k: string): string | undefined {
  return typeof Deno !== 'undefined' ? Deno.env.get(k) : (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[k];
}

/** The run's base seed: MICAR_SEED, else fresh. Each test reseeds from it and its own name
 *  (tests/setup.ts), so `MICAR_SEED=s vitest run file -t name` replays one test alone. */
export const baseSeed = { value: envVar('MICAR_SEED') ? Number(envVar('MICAR_SEED')) : Math.floor(Math.random() * 2 ** 31) };
const live = new Set<Rng>();
/** Draws from all generators so far (the sweep repeats only tests that draw). */
export const rngDraws = { count: 0 };
let currentTest = '';

/** FNV-1a of a string, mixed into a seed. */
function mixSeed(seed: number, text: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Called before each test (tests/setup.ts): every generator restarts from (seed, test, label). */
export function reseedForTest(testName: string, seed = baseSeed.value): void {
  currentTest = testName;
  baseSeed.value = seed;
  for (const r of live) r.reseed(mixSeed(mixSeed(seed, testName), r.label));
}

/** A seeded generator; logs its seed with `label` so a failure can be replayed. */
export function rng(label: string): Rng {
  console.log(`[seed] ${label}: MICAR_SEED=${baseSeed.value}`);
  const r = new Rng(mixSeed(mixSeed(baseSeed.value, currentTest), label), label);
  live.add(r);
  return r;
}

export class Rng {
  private s: number;
  constructor(public seed: number, readonly label = '') {
    this.s = seed >>> 0 || 1;
  }
  reseed(seed: number): void {
    this.seed = seed;
    this.s = seed >>> 0 || 1;
  }
  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    rngDraws.count++;
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  normal(): number {
    const u = 1 - this.next(), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** Float32-representable normals (so the f64 reference sees exactly the GPU's inputs). */
  randn(n: number, scale = 1): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.fround(this.normal() * scale);
    return a;
  }
  uniform(n: number, lo = -1, hi = 1): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.fround(lo + (hi - lo) * this.next());
    return a;
  }
}

/** ‖a − b‖ / ‖b‖ (b is the reference). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relL2: lengths ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Number(a[i]) - Number(b[i]);
    num += d * d;
    den += Number(b[i]) * Number(b[i]);
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** f64 unit roundoff. */
export const U64 = 2 ** -53;

/**
 * Asserts that `g`, a float64 gradient of the scalar f at x, matches central differences within
 * an error estimate of the differences themselves (a fixed relative threshold fails wherever the
 * gradient is small against |f|/h: sweep seed 1481134093 drew a batch norm over 2 values per
 * channel, whose dx is nearly 0, and 1e-6 relative was below the differences' rounding).
 *
 * D(h) = f′ + c·h² + O(h⁴) + n_h, n_h the rounding of f's two float64 evaluations divided by 2h.
 * - D(2h) − D(h) = 3c·h² + n_2h − n_h measures the truncation of D(h) three times over;
 * - D(h/2) − D(h) = n_{h/2} − n_h − ¾c·h² measures its rounding (n_{h/2} ≈ 2·n_h in scale and
 *   not aligned with it);
 * - a floor of 2⁸·u₆₄·S/h per element covers rounding both estimates could miss by chance
 *   (S = max |f| over the stencil, or the caller's Σ|terms of f| where f cancels); 2⁸ roundings
 *   is more than any reference here chains into one value.
 * Tolerance over the kept elements: ‖g − D(h)‖ ≤ 4·(‖D(2h) − D(h)‖ + ‖D(h/2) − D(h)‖) + √n·floor.
 * A wrong gradient (a dropped term, a sign, an index) errs by O(‖g‖), far above this wherever f
 * is smooth over the stencil; elements whose stencil crosses a kink are left out by `skip`.
 */
export function expectGradMatchesFiniteDiff(
  g: ArrayLike<number>, f: (x: Float64Array) => number, x: Float64Array, h: number, what: string,
  opts: { skip?: (i: number) => boolean; scale?: number } = {},
): void {
  if (g.length !== x.length) throw new Error(`${what}: gradient has ${g.length} values, x has ${x.length}`);
  const keep = Array.from({ length: x.length }, (_, i) => !opts.skip?.(i));
  const y = Float64Array.from(x);
  let S = opts.scale ?? 0;
  const diff = (step: number) => {
    const d = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      if (!keep[i]) continue;
      y[i] = x[i] + step;
      const fp = f(y);
      y[i] = x[i] - step;
      const fm = f(y);
      y[i] = x[i];
      S = Math.max(S, Math.abs(fp), Math.abs(fm));
      d[i] = (fp - fm) / (2 * step);
    }
    return d;
  };
  const d1 = diff(h), d2 = diff(2 * h), dHalf = diff(h / 2);
  let err = 0, trunc = 0, noise = 0, n = 0, worst = -1, worstErr = 0;
  for (let i = 0; i < x.length; i++) {
    if (!keep[i]) continue;
    const e = Number(g[i]) - d1[i];
    err += e * e; trunc += (d2[i] - d1[i]) ** 2; noise += (dHalf[i] - d1[i]) ** 2; n++;
    if (!(Math.abs(e) <= worstErr)) { worstErr = Math.abs(e); worst = i; }
  }
  const floor = 2 ** 8 * U64 * S / h;
  const tol = 4 * (Math.sqrt(trunc) + Math.sqrt(noise)) + Math.sqrt(n) * floor;
  if (envVar('MICAR_BOUND_REPORT')) console.log(`[bound] ${what} (finite differences): error/tolerance ${(Math.sqrt(err) / tol).toExponential(2)}`);
  if (!(Math.sqrt(err) <= tol)) {
    throw new Error(`${what}: ‖gradient − central differences‖ ${Math.sqrt(err).toExponential(3)} > tolerance ${tol.toExponential(3)} over ${n} values (h = ${h}: ‖D(2h) − D(h)‖ ${Math.sqrt(trunc).toExponential(2)}, ‖D(h/2) − D(h)‖ ${Math.sqrt(noise).toExponential(2)}, floor ${floor.toExponential(2)}); worst [${worst}]: gradient ${g[worst]}, difference ${d1[worst]}`);
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// ---- Error bounds from the arithmetic -----------------------------------------------------
// Model (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 2–3): the inputs are f32
// values (Rng.randn/uniform round them), each f32 +, −, ×, ÷ is exact then rounded to nearest,
// |fl(a∘b) − a∘b| ≤ u·|a∘b| with u = 2⁻²⁴ (a fused multiply-add rounds once: never worse). A sum or
// dot product of n terms in any order (sequential, tree, strided workgroup) is then within
// γ_{n−1}·Σ|terms| of the exact value, γ_n = n·u/(1 − n·u). WGSL built-ins are less exact than
// one rounding: the spec allows exp 3 + 2·|x| ULP, log 3 ULP (absolute 2⁻²¹ on [0.5, 2]),
// inverseSqrt 2 ULP, ÷ 2.5 ULP, sqrt inherited (1/inverseSqrt: 4.5 ULP); one ULP ≤ 2u relative.
// A wrong kernel (a dropped term, a wrong index, a missing scale) errs by O(one term) ≫ these.

/** f32 unit roundoff. */
export const U32 = 2 ** -24;
/** γ_n = n·u/(1 − n·u): relative bound on n chained roundings. */
export function gamma(n: number, u = U32): number {
  if (n * u >= 1) throw new Error(`gamma: n·u = ${n * u} ≥ 1`);
  return (n * u) / (1 - n * u);
}
/** The smallest normal f32: WGSL may flush subnormal results to zero, an absolute error up to this. */
export const TINY32 = 2 ** -126;
/** k ULP as a relative error (an f32 ULP is at most 2u of the value). */
export const ulps = (k: number) => 2 * k * U32;

/** |x| elementwise (the magnitude operands of a bound: run the float64 reference on them). */
export function abs(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a as ArrayLike<number>, (v) => Math.abs(v));
}

/** Bound for n-term sums/dot products: γ_{n}·mag_i per element (mag = Σ|terms| of element i);
 *  one more rounding than the sum needs, for storing the result. */
export function sumBound(mag: ArrayLike<number>, n: number, extraRoundings = 0): Float64Array {
  const g = gamma(Math.max(n, 1) + extraRoundings);
  return Float64Array.from(mag as ArrayLike<number>, (m) => g * Math.abs(m));
}

/**
 * Asserts |actual_i − ref_i| ≤ bound_i for every i (bound: one number for all, an array, or a
 * function of i). On failure names `what`, the worst element (by error/bound), its values and
 * how many elements exceeded.
 */
export function expectWithin(actual: ArrayLike<number>, ref: ArrayLike<number>, bound: number | ArrayLike<number> | ((i: number) => number), what: string): void {
  if (actual.length !== ref.length) throw new Error(`${what}: ${actual.length} values, reference has ${ref.length}`);
  const b = typeof bound === 'number' ? () => bound : typeof bound === 'function' ? bound : (i: number) => bound[i];
  let worst = -1, worstRatio = 0, over = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(Number(actual[i]) - Number(ref[i])), bi = b(i);
    const r = e === 0 ? 0 : e / bi;
    if (!(r <= 1)) over++;
    if (!(r <= worstRatio) || Number.isNaN(r)) { worstRatio = r; worst = i; }
  }
  if (envVar('MICAR_BOUND_REPORT')) console.log(`[bound] ${what}: worst error/bound ${worstRatio.toExponential(2)}`);
  if (over > 0) {
    throw new Error(`${what}: ${over} of ${ref.length} values outside the error bound; worst [${worst}]: got ${actual[worst]}, reference ${ref[worst]}, |error| ${Math.abs(Number(actual[worst]) - Number(ref[worst])).toExponential(3)} > bound ${b(worst).toExponential(3)} (×${worstRatio.toPrecision(3)})`);
  }
}

/** ‖x‖₂ (Frobenius for a flattened matrix). */
export function norm2(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Number(a[i]) * Number(a[i]);
  return Math.sqrt(s);
}

/**
 * Asserts ‖actual − ref‖₂ ≤ bound (a norm-wise bound, for products where the per-element
 * magnitudes cost as much as the reference: ‖ |A||B| ‖_F ≤ ‖A‖_F‖B‖_F by Cauchy–Schwarz, so
 * ‖Ĉ − C‖_F ≤ γ_K‖A‖_F‖B‖_F for a product over K terms).
 */
export function expectNormWithin(actual: ArrayLike<number>, ref: ArrayLike<number>, bound: number, what: string): void {
  if (actual.length !== ref.length) throw new Error(`${what}: ${actual.length} values, reference has ${ref.length}`);
  let s = 0;
  for (let i = 0; i < ref.length; i++) s += (Number(actual[i]) - Number(ref[i])) ** 2;
  const e = Math.sqrt(s);
  if (envVar('MICAR_BOUND_REPORT')) console.log(`[bound] ${what}: error/bound ${(e / bound).toExponential(2)}`);
  if (!(e <= bound)) throw new Error(`${what}: ‖error‖₂ ${e.toExponential(3)} > bound ${bound.toExponential(3)} (×${(e / bound).toPrecision(3)})`);
}
