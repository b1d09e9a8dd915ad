// Seeded GPU randomness (shaders/random.wgsl): a counter-based generator — element i of the
// stream for `seed` is a keyed integer hash of i — so results depend only on (seed, index),
// never on launch shape or device, and dropout's backward regenerates its mask from the seed.
// `cpuBits` / `cpuUniform` are the same generator in TypeScript (bit-identical).
import { makeNode, type Tensor } from '../tensor.ts';
import { fromData, runtime } from '../runtime.ts';
import { assertFloat, grid1d, numel } from './util.ts';
import { randomParams } from '../kernels/random.ts';

/** Wellons' lowbias32: a bijective 32-bit integer hash with low bias. */
function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

function checkSeed(seed: number, op: string): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`${op}: seed ${seed} must be an integer in [0, 2^32)`);
  return seed;
}

/** The stream keys for a seed (computed once on the CPU, passed to the kernel). */
export function streamKeys(seed: number): [number, number] {
  const k1 = mix32((seed + 0x9e3779b9) >>> 0);
  const k2 = mix32((k1 + 0x632be5ab) >>> 0);
  return [k1, k2];
}

/** Raw 32-bit value at position `index` of the stream for `seed` (what the GPU computes). */
export function cpuBits(seed: number, index: number): number {
  const [k1, k2] = streamKeys(checkSeed(seed, 'cpuBits'));
  return mix32((mix32((index + k1) >>> 0) ^ k2) >>> 0);
}

/** The first n uniforms in [0, 1) of the stream for `seed`, exactly as randUniform makes them. */
export function cpuUniform(seed: number, n: number): Float32Array {
  const [k1, k2] = streamKeys(checkSeed(seed, 'cpuUniform'));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (mix32((mix32((i + k1) >>> 0) ^ k2) >>> 0) >>> 8) / 16777216;
  return out;
}

function kernel(kind: 'UNIFORM' | 'NORMAL' | 'DROPOUT') {
  return { family: 'random', defs: { UNIFORM: kind === 'UNIFORM', NORMAL: kind === 'NORMAL', DROPOUT: kind === 'DROPOUT' }, gen: { PARAMS: randomParams.wgsl } };
}

function checkSize(n: number, op: string, shape: number[]): void {
  // NORMAL uses stream positions up to 2n; keep every position a distinct u32.
  if (n > 0x7fffffff) throw new Error(`${op}: shape [${shape}] has ${n} elements; at most 2^31 - 1 supported`);
}

/** Uniform random tensor in [lo, hi) (default [0, 1)): element i = lo + (hi − lo)·u_i. */
export function randUniform(shape: number[], seed: number, lo = 0, hi = 1): Tensor {
  checkSeed(seed, 'randUniform');
  const n = numel(shape);
  checkSize(n, 'randUniform', shape);
  const [k1, k2] = streamKeys(seed);
  const [y] = makeNode('rand_uniform', [], [{ shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('UNIFORM'), bindings: [y], params: randomParams.pack({ n, k1, k2, lo, hi }, true), workgroups: grid1d(n) });
    },
  });
  return y;
}

/**
 * Normal(0, std²) tensor: z_i = std · q[bits(i) >> 16], where q[k] = Φ⁻¹((k + ½)/65536) is a
 * table of standard-normal quantiles computed on the CPU in float64 (so z is a normal
 * quantised to 65536 equiprobable levels, |z| ≤ 4.33). Bit-identical on every WebGPU
 * implementation, unlike Box–Muller with the loosely specified built-in log/cos.
 */
export function randNormal(shape: number[], seed: number, std = 1): Tensor {
  checkSeed(seed, 'randNormal');
  const n = numel(shape);
  checkSize(n, 'randNormal', shape);
  const [k1, k2] = streamKeys(seed);
  const q = quantileTable();
  const [y] = makeNode('rand_normal', [q], [{ shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('NORMAL'), bindings: [q, y], params: randomParams.pack({ n, k1, k2, stddev: std }, true), workgroups: grid1d(n) });
    },
  });
  return y;
}

let quantiles: { device: unknown; table: Tensor } | null = null;

/** Φ⁻¹((k + ½)/65536) for k < 65536 as f32 (uploaded once per device). */
export function normalQuantiles(): Float32Array {
  const out = new Float32Array(65536);
  for (let k = 0; k < 65536; k++) out[k] = inverseNormalCdf((k + 0.5) / 65536);
  return out;
}

function quantileTable(): Tensor {
  const device = runtime().device;
  if (!quantiles || quantiles.device !== device) quantiles = { device, table: fromData(normalQuantiles(), [65536], 'f32', 'normal quantiles') };
  return quantiles.table;
}

/** Φ⁻¹(p): Acklam's rational approximation refined by one Halley step (≈1e-15). */
export function inverseNormalCdf(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  let x: number;
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - 0.02425) {
    const q = p - 0.5, r = q * q;
    x = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const e = 0.5 * erfc(-x / Math.SQRT2) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

/** erfc to ~1e-15 (series near 0, continued fraction in the tails). */
function erfc(x: number): number {
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    let sum = ax, term = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    r = 1 - (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let f = 0;
    for (let n = 80; n >= 1; n--) f = n / 2 / (ax + f);
    r = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  }
  return x < 0 ? 2 - r : r;
}

/** CPU twin of randNormal (bit-identical). */
export function cpuNormal(seed: number, n: number, std = 1): Float32Array {
  const q = normalQuantiles();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(std * q[cpuBits(seed, i) >>> 16]);
  return out;
}

/**
 * Inverted dropout: y_i = x_i / (1 − p) where u_i ≥ p (u_i the seed's stream), else 0.
 * The op is linear in x with a mask fixed by (seed, index), so its backward is the same op
 * applied to dy (the mask is regenerated, never stored). p = 0 returns x itself.
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  assertFloat(x, 'dropout');
  checkSeed(seed, 'dropout');
  if (!(p >= 0 && p < 1)) throw new Error(`dropout(${x}): p = ${p} must be in [0, 1)`);
  if (p === 0) return x;
  const n = x.size;
  checkSize(n, 'dropout', x.shape);
  const [k1, k2] = streamKeys(seed);
  const scale = 1 / (1 - p);
  const [y] = makeNode('dropout', [x], [{ shape: x.shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('DROPOUT'), bindings: [x, y], params: randomParams.pack({ n, k1, k2, drop: p, keepScale: scale }, true), workgroups: grid1d(n) });
    },
    backward([dy]) {
      return [dropout(dy!, p, seed)];
    },
  });
  return y;
}

/**
 * A small seeded CPU generator (mulberry32) for host-side choices: weight init, data order,
 * sampling. Uniform in [0, 1).
 */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
