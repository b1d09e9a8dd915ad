// Test helpers: seeded random data (seed logged, fresh each run unless MICAR_SEED is set),
// error measures, and float64 finite differences.

declare const Deno: { env: { get(k: string): string | undefined } } | undefined;

function envSeed(): number | undefined {
  const s = typeof Deno !== 'undefined' ? Deno.env.get('MICAR_SEED') : (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.MICAR_SEED;
  return s ? Number(s) : undefined;
}

/** A seeded generator; logs its seed with `label` so a failure can be replayed. */
export function rng(label: string): Rng {
  const seed = envSeed() ?? Math.floor(Math.random() * 2 ** 31);
  console.log(`[seed] ${label}: MICAR_SEED=${seed}`);
  return new Rng(seed);
}

export class Rng {
  private s: number;
  constructor(public seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
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

/** Central finite-difference gradient of a scalar float64 function. */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  const y = Float64Array.from(x);
  for (let i = 0; i < x.length; i++) {
    y[i] = x[i] + h;
    const fp = f(y);
    y[i] = x[i] - h;
    const fm = f(y);
    y[i] = x[i];
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
