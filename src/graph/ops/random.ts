// Seeded GPU randomness (shaders/random.wgsl): a counter-based generator — element i of the
// stream for `seed` is a keyed integer hash of i — so results depend only on (seed, index),
// never on launch shape or device, and dropout's backward regenerates its mask from the seed.
// `cpuBits` / `cpuUniform` are the same generator in TypeScript (bit-identical).
import { makeNode, type Tensor } from '../tensor.ts';
import { assertDtype, grid1d, numel, P } from './util.ts';

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
  return { family: 'random', defs: { UNIFORM: kind === 'UNIFORM', NORMAL: kind === 'NORMAL', DROPOUT: kind === 'DROPOUT' } };
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
      ctx.dispatch({ kernel: kernel('UNIFORM'), bindings: [y], params: P().u(n, k1, k2, 0).f(lo, hi), workgroups: grid1d(n) });
    },
  });
  return y;
}

/**
 * Normal(0, std²) tensor by Box–Muller: z_i = std · sqrt(−2 ln u) cos(2π v − π) with
 * u = (bits(2i) >> 8 + 1)·2^-24 ∈ (0, 1] and v = (bits(2i+1) >> 8)·2^-24.
 */
export function randNormal(shape: number[], seed: number, std = 1): Tensor {
  checkSeed(seed, 'randNormal');
  const n = numel(shape);
  checkSize(n, 'randNormal', shape);
  const [k1, k2] = streamKeys(seed);
  const [y] = makeNode('rand_normal', [], [{ shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('NORMAL'), bindings: [y], params: P().u(n, k1, k2, 0).f(std, 0), workgroups: grid1d(n) });
    },
  });
  return y;
}

/**
 * Inverted dropout: y_i = x_i / (1 − p) where u_i ≥ p (u_i the seed's stream), else 0.
 * The op is linear in x with a mask fixed by (seed, index), so its backward is the same op
 * applied to dy (the mask is regenerated, never stored). p = 0 returns x itself.
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  assertDtype(x, 'f32', 'dropout');
  checkSeed(seed, 'dropout');
  if (!(p >= 0 && p < 1)) throw new Error(`dropout(${x}): p = ${p} must be in [0, 1)`);
  if (p === 0) return x;
  const n = x.size;
  checkSize(n, 'dropout', x.shape);
  const [k1, k2] = streamKeys(seed);
  const scale = 1 / (1 - p);
  const [y] = makeNode('dropout', [x], [{ shape: x.shape }], {
    encode(ctx) {
      ctx.dispatch({ kernel: kernel('DROPOUT'), bindings: [x, y], params: P().u(n, k1, k2, 0).f(p, scale), workgroups: grid1d(n) });
    },
    backward([dy]) {
      return [dropout(dy!, p, seed)];
    },
  });
  return y;
}
